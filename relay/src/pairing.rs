//! Pairing: the deploy gives the relay a one-time code (`PAIRING_CODE`, until
//! `PAIRING_EXPIRES_MS`), and the first private message carrying it makes its sender an owner,
//! as if they were in `ALLOWED_SENDERS`. The user never looks up their own id: the page's
//! button opens the bot with the code in the message (Telegram's `/start <code>` deep link,
//! WhatsApp's prefilled text, a pasted DM on Discord).
//!
//! The code is single use: once someone has paired, every later code-shaped message is a
//! stranger's and gets nothing. While the code is open, a wrong or expired one changes nothing
//! and gets one sentence saying so.

use crate::journal::InboundMessage;
use crate::{Admission, App};
use subtle::ConstantTimeEq;

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
        match self.journal.pairing_done() {
            Ok(false) => {}
            // Paired already: the code is spent, and this is a stranger.
            Ok(true) => return None,
            // Unreadable: no answer either way, so the channel is asked to send it again.
            Err(error) => {
                tracing::error!("could not read the pairing state: {error}");
                return Some(Admission::Unsaved);
            }
        }
        let given = given.to_ascii_lowercase();
        let right = bool::from(given.as_bytes().ct_eq(pairing.code.as_bytes()));
        let answer = if !right {
            WRONG_CODE
        } else if crate::journal::now_ms() > pairing.expires_ms {
            EXPIRED
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
        let reply_id = format!("pairing:{}", message.id);
        match self
            .journal
            .enqueue(&reply_id, &message.conversation, answer, &[])
            .await
        {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(error) => tracing::warn!("could not queue the pairing answer: {error}"),
        }
        Some(if answer == WELCOME {
            Admission::Paired
        } else {
            Admission::PairingRefused
        })
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
