//! What travels between the relay and the vm.
//!
//! - relay → vm: `POST /messages` with a [`VmMessage`]; the vm answers 202 once it is queued.
//! - vm → relay: `POST /callback` with a [`Callback`] (typing, or a reply with images).
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
    fn callback_wire_format() {
        let callback: Callback =
            serde_json::from_str(r#"{"id":"c1","conversation":"telegram:1","kind":"typing"}"#)
                .unwrap();
        assert_eq!(callback.kind, CallbackKind::Typing);
        assert!(callback.text.is_empty() && callback.images.is_empty());
    }
}
