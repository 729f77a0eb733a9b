//! The agent's questions on the relay's side. The vm sends one as a callback
//! ([`contract::protocol::Question`]); the outbox sends it with its choices: buttons where the
//! channel has them (Telegram's inline keyboard, Discord's message components, WhatsApp's
//! quick replies: [`crate::quick_replies`]), and on WhatsApp numbered replies too. An owner's
//! choice, a tap or a number, is checked here and journaled into the inbox as a message
//! carrying the answer, so it wakes the vm and survives a restart of either side like any
//! message.
//!
//! A choice changes nothing, and its maker is told why, when it is not an owner's, when the
//! question is not this conversation's (a forged or stale token), when the choice was not
//! offered, or when the question was answered already (a second tap, or a replay).

use crate::App;
use crate::journal::InboundMessage;
use contract::protocol::{Answer, Decision};

pub const NOT_OURS: &str = "That is not one of the agent's questions here.";
pub const NOT_AN_OWNER: &str = "Only an owner of this deployment can answer the agent.";
pub const NOT_OFFERED: &str = "That choice was not offered for this question.";

/// What became of an owner's choice.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Journaled: the vm will have it.
    Taken(Decision),
    /// Changed nothing; the words say why.
    Refused(String),
    /// Could not be journaled: the channel should deliver it again.
    Unsaved,
}

impl App {
    /// `sender` chose `decision` for `question` in `conversation`.
    pub async fn choose(
        &self,
        sender: &str,
        conversation: &str,
        question: &str,
        decision: Decision,
    ) -> Choice {
        match self.is_allowed(sender) {
            Ok(true) => {}
            Ok(false) => return Choice::Refused(NOT_AN_OWNER.into()),
            Err(error) => {
                tracing::error!("could not read the owners: {error}");
                return Choice::Unsaved;
            }
        }
        let asked = match self.journal.question(question) {
            Ok(Some(asked)) if asked.conversation == conversation => asked,
            Ok(_) => return Choice::Refused(NOT_OURS.into()),
            Err(error) => {
                tracing::error!("could not read a question: {error}");
                return Choice::Unsaved;
            }
        };
        if let Some(earlier) = asked.decision {
            return Choice::Refused(already(earlier));
        }
        if !asked.choices.contains(&decision) {
            return Choice::Refused(NOT_OFFERED.into());
        }
        let message = InboundMessage {
            // One answer per question: a second can never be journaled beside it.
            id: format!("answer:{question}"),
            conversation: conversation.to_string(),
            sender: sender.to_string(),
            text: decision.label().to_string(),
            media: vec![],
            answer: Some(Answer {
                question: question.to_string(),
                decision,
            }),
        };
        match self.journal.answer(decision, &message).await {
            Ok(true) => {
                let _ = self.inbox_arrivals.send(conversation.to_string());
                Choice::Taken(decision)
            }
            // Another tap got there first.
            Ok(false) => match self.journal.question(question) {
                Ok(Some(asked)) => Choice::Refused(already(asked.decision.unwrap_or(decision))),
                _ => Choice::Refused(NOT_OURS.into()),
            },
            Err(error) => {
                tracing::error!("could not journal an answer: {error}");
                Choice::Unsaved
            }
        }
    }

    /// A numbered reply ("1") to the conversation's open question, on a channel that shows
    /// numbers instead of buttons; `None` when the text is no such reply.
    pub async fn numbered_reply(&self, message: &InboundMessage) -> Option<Choice> {
        let number: usize = message.text.trim().parse().ok()?;
        let open = self.journal.open_question(&message.conversation).ok()??;
        let decision = *open.choices.get(number.checked_sub(1)?)?;
        Some(
            self.choose(&message.sender, &message.conversation, &open.id, decision)
                .await,
        )
    }
}

fn already(decision: Decision) -> String {
    format!("Already answered: {}.", decision.past())
}

/// The line that turns a question into numbered replies: "Reply 1 to allow, 2 to always
/// allow, 3 to deny."
pub fn numbered(choices: &[Decision]) -> String {
    let options: Vec<String> = choices
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{} to {}", i + 1, d.label().to_lowercase()))
        .collect();
    format!("Reply {}.", options.join(", "))
}

#[cfg(test)]
mod tests {
    use super::numbered;
    use contract::protocol::Decision;

    #[test]
    fn numbered_choices_read_as_a_sentence() {
        assert_eq!(
            numbered(&[Decision::Allow, Decision::AlwaysAllow, Decision::Deny]),
            "Reply 1 to allow, 2 to always allow, 3 to deny."
        );
        assert_eq!(
            numbered(&[Decision::Allow, Decision::Deny]),
            "Reply 1 to allow, 2 to deny."
        );
    }
}
