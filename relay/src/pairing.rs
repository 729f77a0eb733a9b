//! Pairing: the deploy gives the relay a one-time code (`PAIRING_CODE`, until
//! `PAIRING_EXPIRES_MS`), and the first private message carrying it makes its sender an owner,
//! as if they were in `ALLOWED_SENDERS`. The user never looks up their own id: the page's
//! button opens the bot with the code in the message (Telegram's `/start <code>` deep link,
//! WhatsApp's prefilled text, a pasted DM on Discord).
//!
//! The code is single use: once someone has paired, a later code-shaped message from anyone
//! else changes nothing and is told the deployment is already paired. While the code is
//! open, a wrong or expired one changes nothing and gets one sentence saying so. A stranger
//! gets at most one such answer every [`ANSWER_EVERY`], however often they try.
//!
//! Owners see and remove paired owners from the chat (`/owners`, `/unpair <sender>`), and
//! `relay unpair <sender>|--all` does it from outside (`textslash unpair`, through the
//! Machines API's exec, like `unregister-webhook`).

use crate::journal::InboundMessage;
use crate::{Admission, App};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How often a stranger is answered a pairing attempt at most.
pub const ANSWER_EVERY: Duration = Duration::from_secs(600);

/// When each stranger was last answered; forgets entries older than [`ANSWER_EVERY`].
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<String, Instant>>);

impl Throttle {
    /// Whether `sender` may be answered now (and counts it if so).
    pub fn allow(&self, sender: &str) -> bool {
        let now = Instant::now();
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > 10_000 {
            last.retain(|_, at| now.duration_since(*at) < ANSWER_EVERY);
        }
        match last.get(sender) {
            Some(at) if now.duration_since(*at) < ANSWER_EVERY => false,
            _ => {
                last.insert(sender.to_string(), now);
                true
            }
        }
    }
}

/// A code is 16 lowercase hex characters (64 random bits): fine in a `t.me` start parameter
/// (`A-Z a-z 0-9 _ -`, up to 64) and in a prefilled WhatsApp text.
pub const CODE_LEN: usize = 16;

#[derive(Clone)]
pub struct PairingConfig {
    pub code: String,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

pub const WELCOME: &str = "Welcome! You are paired: only you can talk to this agent. Send it a message to start (try: take a screenshot).";
pub const WRONG_CODE: &str =
    "That pairing code is not right, so nothing changed. Open the link on your deploy page again.";
pub const EXPIRED: &str = "That pairing code has expired, so nothing changed. Add your id to ALLOWED_SENDERS, or tear down and deploy again for a new code.";
pub const ALREADY_PAIRED: &str = "This deployment is already paired with its owner, so nothing changed. If it is yours, its owner can see who is paired with /owners and remove someone with /unpair.";

/// The code a message carries, if it is shaped like one: `/start <code>` (what Telegram sends
/// when the user taps Start on a deep link) or the code alone.
pub fn code_in(text: &str) -> Option<&str> {
    let text = text.trim();
    let candidate = text.strip_prefix("/start").map(str::trim).unwrap_or(text);
    (candidate.len() == CODE_LEN && candidate.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(candidate)
}

impl App {
    /// Whether `sender` may talk to the agent: listed in `ALLOWED_SENDERS`, or paired.
    /// An error (the journal could not be read) is no answer: the caller must not take the
    /// sender for a stranger, since a paired owner's message would then be dropped.
    pub fn is_allowed(&self, sender: &str) -> Result<bool, crate::journal::JournalError> {
        if self.config.is_allowed(sender) {
            return Ok(true);
        }
        self.journal.is_owner(sender)
    }

    /// A message from someone not allowed: a pairing attempt gets its answer, anything else
    /// `None` (a stranger's, dropped without a word).
    pub(crate) async fn try_pairing(&self, message: &InboundMessage) -> Option<Admission> {
        let pairing = self.config.pairing.as_ref()?;
        let given = code_in(&message.text)?;
        let answer_once = |answer: &'static str| async move {
            if self.pairing_answers.allow(&message.sender) {
                self.answer(message, "pairing", answer).await;
            }
            Some(Admission::PairingRefused)
        };
        match self.journal.pairing_done() {
            Ok(false) => {}
            // Paired already: the code is spent, and this sender is not the owner.
            Ok(true) => return answer_once(ALREADY_PAIRED).await,
            // Unreadable: no answer either way, so the channel is asked to send it again.
            Err(error) => {
                tracing::error!("could not read the pairing state: {error}");
                return Some(Admission::Unsaved);
            }
        }
        let given = given.to_ascii_lowercase();
        let right = bool::from(given.as_bytes().ct_eq(pairing.code.as_bytes()));
        let answer = if !right {
            return answer_once(WRONG_CODE).await;
        } else if crate::journal::now_ms() > pairing.expires_ms {
            return answer_once(EXPIRED).await;
        } else {
            match self.journal.pair(&message.sender).await {
                Ok(true) => {
                    tracing::info!("a sender paired with the deployment's code");
                    WELCOME
                }
                Ok(false) => return None,
                Err(error) => {
                    tracing::error!("could not record the pairing: {error}");
                    return Some(Admission::Unsaved);
                }
            }
        };
        self.answer(message, "pairing", answer).await;
        Some(Admission::Paired)
    }

    /// An owner's `/owners` or `/unpair <sender>`, answered here; `None` for anything else.
    pub(crate) async fn owner_command(&self, message: &InboundMessage) -> Option<Admission> {
        let text = message.text.trim();
        let reply = if text == "/owners" {
            match self.journal.owners() {
                Ok(owners) => owners_text(&owners, &self.config.allowed_senders),
                Err(error) => {
                    tracing::error!("could not read the owners: {error}");
                    return Some(Admission::Unsaved);
                }
            }
        } else if let Some(who) = text.strip_prefix("/unpair") {
            let who = who.trim();
            if who.is_empty() {
                "Say who: /unpair telegram:123 (see /owners).".to_string()
            } else {
                match self.journal.unpair(Some(who)).await {
                    Ok(removed) if removed.is_empty() => format!(
                        "{who} is not a paired owner, so nothing changed (owners listed in ALLOWED_SENDERS are changed in the relay app's settings)."
                    ),
                    Ok(_) => format!("{who} is no longer an owner."),
                    Err(error) => {
                        tracing::error!("could not remove an owner: {error}");
                        return Some(Admission::Unsaved);
                    }
                }
            }
        } else {
            return None;
        };
        self.answer(message, "owners", &reply).await;
        Some(Admission::Answered)
    }

    /// Queues `text` to the message's conversation, once per message and `kind`.
    async fn answer(&self, message: &InboundMessage, kind: &str, text: &str) {
        self.tell(message, format!("{kind}:{}", message.id), text)
            .await;
    }
}

/// What `/owners` says.
fn owners_text(paired: &[String], listed: &[String]) -> String {
    let mut lines = vec!["Who may talk to this agent:".to_string()];
    lines.extend(paired.iter().map(|s| format!("- {s} (paired)")));
    lines.extend(listed.iter().map(|s| format!("- {s} (ALLOWED_SENDERS)")));
    lines.push("Remove a paired owner with /unpair <id>.".into());
    lines.join("\n")
}

/// `relay unpair <sender>|--all`, run in the relay's machine: removes paired owners from the
/// journal and answers one JSON line, `{"removed": [..]}` (or an `"error"`).
pub async fn unpair(config: &crate::config::Config, who: Option<&str>) -> serde_json::Value {
    let who = match who {
        Some("--all") => None,
        Some(sender) => Some(sender),
        None => return serde_json::json!({"error": "say who: unpair <sender> or unpair --all"}),
    };
    let journal = match crate::journal::Journal::open(&config.data_dir.join("journal.db")) {
        Ok(journal) => journal,
        Err(error) => return serde_json::json!({"error": error.to_string()}),
    };
    match journal.unpair(who).await {
        Ok(removed) => serde_json::json!({"removed": removed}),
        Err(error) => serde_json::json!({"error": error.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_in_a_start_command_or_alone() {
        assert_eq!(code_in("/start 0123456789abcdef"), Some("0123456789abcdef"));
        assert_eq!(code_in("  0123456789abcdef\n"), Some("0123456789abcdef"));
        assert_eq!(code_in("/start"), None);
        assert_eq!(code_in("hello there"), None);
        assert_eq!(code_in("0123456789abcdefg"), None);
        assert_eq!(code_in("/start 0123456789abcdeZ"), None);
    }
}
