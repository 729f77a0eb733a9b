//! What travels between the relay and the vm.
//!
//! - relay → vm: `POST /messages` with a [`VmMessage`]; the vm answers 202 once it is queued.
//!   An owner's answer to a question travels the same way ([`VmMessage::answer`]): journaled,
//!   forwarded in order and waking the vm like any message, so a tap hours later is not lost.
//! - vm → relay: `POST /callback` with a [`Callback`] (typing, a reply with images, or a
//!   [`Question`] the agent asks before a tool call).
//!
//! Both directions carry `Authorization: Bearer <VM_TOKEN>`.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMessage {
    /// Unique per channel message; the vm ignores an id it has seen.
    pub id: String,
    /// Where replies go: `telegram:<chat id>`, `whatsapp:+15551234567` or
    /// `discord:<DM channel id>`.
    pub conversation: String,
    pub sender: String,
    pub text: String,
    #[serde(default)]
    pub images: Vec<Image>,
    /// Set when this is an owner's answer to a [`Question`] (a tap, or a numbered reply); the
    /// text then says it in words, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

/// What the owner decided about a tool call the agent asked to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// This call, once.
    Allow,
    /// This call, and from now on in this conversation the calls the rule Claude Code proposed
    /// covers (its `permission_suggestions`).
    AlwaysAllow,
    /// Not this call; the agent is told and goes on.
    Deny,
}

impl Decision {
    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "Allow",
            Decision::AlwaysAllow => "Always allow",
            Decision::Deny => "Deny",
        }
    }

    /// Said once the question is answered: "Allowed".
    pub fn past(self) -> &'static str {
        match self {
            Decision::Allow => "Allowed",
            Decision::AlwaysAllow => "Always allowed",
            Decision::Deny => "Denied",
        }
    }

    /// One letter, for channels that carry a choice in a short token (Telegram's
    /// `callback_data`, at most 64 bytes; Discord's `custom_id`).
    pub fn code(self) -> char {
        match self {
            Decision::Allow => 'a',
            Decision::AlwaysAllow => 'A',
            Decision::Deny => 'd',
        }
    }

    pub fn from_code(code: char) -> Option<Decision> {
        [Decision::Allow, Decision::AlwaysAllow, Decision::Deny]
            .into_iter()
            .find(|d| d.code() == code)
    }
}

/// An owner's answer to the question `question`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub question: String,
    pub decision: Decision,
}

/// A question the agent asks before a tool call. The callback's text says what the call
/// would do (the command, the file and a short diff); the relay shows `choices` as buttons,
/// or as numbered replies where the channel has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Unguessable, chosen by the vm; at most 32 characters, so a channel's token holds it.
    pub id: String,
    pub choices: Vec<Decision>,
}

/// A short token naming a question and a choice: `q:<id>:<code>` (Telegram's
/// `callback_data`, Discord's `custom_id`). Parsing it proves nothing: the relay still checks
/// the question is open, in this conversation, and the tap an owner's.
pub fn choice_token(question: &str, decision: Decision) -> String {
    format!("q:{question}:{}", decision.code())
}

/// The question id and choice of a [`choice_token`]; `None` for anything else.
pub fn parse_choice_token(token: &str) -> Option<(&str, Decision)> {
    let rest = token.strip_prefix("q:")?;
    let (id, code) = rest.rsplit_once(':')?;
    let mut chars = code.chars();
    let decision = Decision::from_code(chars.next()?)?;
    let plain = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    (chars.next().is_none() && plain).then_some((id, decision))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub content_type: String,
    pub data_base64: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// The agent is working: show a typing indicator.
    Typing,
    /// Text and/or images for the user.
    Message,
    /// A question for an owner of the conversation ([`Callback::question`]).
    Question,
    /// A job's status line ([`Callback::status`]): best effort, like typing.
    Status,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// Unique per callback; the relay ignores a repeated id, so the vm may retry freely.
    pub id: String,
    pub conversation: String,
    pub kind: CallbackKind,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub images: Vec<Image>,
    /// With [`CallbackKind::Question`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Question>,
    /// With [`CallbackKind::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// What a job is doing, for one line in the chat that the relay edits in place where the
/// channel can (Telegram, Discord) and sends rarely where it cannot (WhatsApp).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The job it belongs to: one line per job.
    pub job: String,
    /// "Running `cargo test` · 0:42", or once `finished`, the job's summary.
    pub line: String,
    /// The job is over: the line becomes its summary, and no update follows.
    #[serde(default)]
    pub finished: bool,
    /// Seconds the job has run.
    #[serde(default)]
    pub elapsed_secs: u64,
}

/// The channels a conversation can be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Telegram,
    Whatsapp,
    Discord,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Whatsapp => "whatsapp",
            Channel::Discord => "discord",
        }
    }
}

/// A conversation id, parsed: `telegram:<chat id>`, `whatsapp:+<number>` or
/// `discord:<channel id>` (the wire form, the journal's, and the allowlist's). Sender ids have
/// the same form (`discord:<user id>` for a Discord sender: a DM's channel is not its user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversation<'a> {
    pub channel: Channel,
    /// The chat id, or `+<number>`.
    pub address: &'a str,
}

impl<'a> Conversation<'a> {
    /// `None` for an unknown channel or an empty address.
    pub fn parse(id: &'a str) -> Option<Conversation<'a>> {
        let (channel, address) = id.split_once(':')?;
        let channel = match channel {
            "telegram" => Channel::Telegram,
            "whatsapp" => Channel::Whatsapp,
            "discord" => Channel::Discord,
            _ => return None,
        };
        (!address.is_empty()).then_some(Conversation { channel, address })
    }

    /// The id for `address` on `channel`.
    pub fn id(channel: Channel, address: impl std::fmt::Display) -> String {
        format!("{}:{address}", channel.name())
    }
}

/// Constant-time check of an `Authorization: Bearer <token>` header value.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    header
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }

    #[test]
    fn conversation_ids_parse_and_print_alike() {
        let chat = Conversation::parse("telegram:-100123").unwrap();
        assert_eq!(chat.channel, Channel::Telegram);
        assert_eq!(chat.address, "-100123");
        assert_eq!(
            Conversation::id(Channel::Telegram, -100123),
            "telegram:-100123"
        );
        let phone = Conversation::parse("whatsapp:+15551234567").unwrap();
        assert_eq!(phone.channel, Channel::Whatsapp);
        for bad in ["telegram:", "sms:+1555", "no-colon", ""] {
            assert_eq!(Conversation::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn choice_tokens_round_trip_and_refuse_anything_else() {
        let token = choice_token("3f9a0c", Decision::AlwaysAllow);
        assert_eq!(token, "q:3f9a0c:A");
        assert!(token.len() <= 64);
        assert_eq!(
            parse_choice_token(&token),
            Some(("3f9a0c", Decision::AlwaysAllow))
        );
        let long = format!("q:{}:a", "f".repeat(33));
        for bad in [
            "",
            "q:",
            "q::a",
            "q:abc",
            "q:abc:x",
            "q:abc:aa",
            "x:abc:a",
            "q:a-b:a",
            "q:a:b:a",
            long.as_str(),
        ] {
            assert_eq!(parse_choice_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn callback_wire_format() {
        let callback: Callback =
            serde_json::from_str(r#"{"id":"c1","conversation":"telegram:1","kind":"typing"}"#)
                .unwrap();
        assert_eq!(callback.kind, CallbackKind::Typing);
        assert!(callback.text.is_empty() && callback.images.is_empty());
    }
}
