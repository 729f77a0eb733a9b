//! Status lines: one message per job that says what the agent is doing, kept within what each
//! channel allows. The vm sends updates as often as something happens
//! ([`contract::protocol::Status`]); the relay keeps only the newest and shows it:
//!
//! - where messages can be edited (Telegram, Discord): the first update is a message, later
//!   ones edit it, at most one edit every [`EDIT_SPACING`] per line (Telegram allows about a
//!   message a second per chat; Discord's edit route is rate-limited per channel); the last
//!   edit turns it into the job's summary.
//! - where they cannot (WhatsApp, where every message costs the user money): nothing until
//!   the job has run [`WHATSAPP_FIRST`], then at most [`WHATSAPP_MAX`] messages in all, at
//!   least [`WHATSAPP_SPACING`] apart; no summary, since the reply follows.
//!
//! Status lines are not journaled: a lost one is replaced by the next, and they stop mattering
//! when the job ends. Typing indicators carry on beside them.

use crate::App;
use contract::protocol::{Conversation, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const EDIT_SPACING: Duration = Duration::from_secs(1);
pub const WHATSAPP_FIRST: Duration = Duration::from_secs(90);
pub const WHATSAPP_SPACING: Duration = Duration::from_secs(600);
pub const WHATSAPP_MAX: u32 = 2;
/// A line not heard of for this long is forgotten (its job ended without a summary).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The lines of running jobs, by job id.
#[derive(Default)]
pub struct StatusLines(Mutex<HashMap<String, Line>>);

struct Line {
    conversation: String,
    /// The newest update, not shown yet.
    pending: Option<Status>,
    /// The message to edit, once the first update went out.
    message: Option<String>,
    /// When the next message or edit may go.
    next_at: Instant,
    /// A task is sending this line's updates.
    sending: bool,
    sent: u32,
    heard: Instant,
}

impl StatusLines {
    /// Takes an update; a task sends it (or the newest that replaced it) when the line's
    /// spacing allows.
    pub fn update(&self, app: &Arc<App>, conversation: &str, status: Status) {
        let now = Instant::now();
        let job = status.job.clone();
        let mut lines = self.lock();
        lines.retain(|_, line| now.duration_since(line.heard) < FORGET_AFTER);
        let line = lines.entry(job.clone()).or_insert_with(|| Line {
            conversation: conversation.to_string(),
            pending: None,
            message: None,
            next_at: now,
            sending: false,
            sent: 0,
            heard: now,
        });
        if line.conversation != conversation {
            return;
        }
        line.heard = now;
        line.pending = Some(status);
        if !line.sending {
            line.sending = true;
            let app = app.clone();
            tokio::spawn(async move { send_line(&app, &job).await });
        }
    }

    /// How many lines are live (`/health` reports it: a count, nothing of what they say).
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Line>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What to do with the newest update of a line.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Wait until then, and look again.
    WaitUntil(Instant),
    /// Send it as a new message.
    Send,
    /// Edit the line's message.
    Edit(String),
    /// Not worth a message on this channel.
    Drop,
}

/// Decides what the channel sees of `status` now: a pure function of the line's past.
fn step(
    can_edit: bool,
    status: &Status,
    message: Option<&str>,
    sent: u32,
    next_at: Instant,
    now: Instant,
) -> Step {
    if can_edit {
        if now < next_at {
            return Step::WaitUntil(next_at);
        }
        return match message {
            Some(id) => Step::Edit(id.to_string()),
            // A job that ends before its line was shown needs no line.
            None if status.finished => Step::Drop,
            None => Step::Send,
        };
    }
    // No edits: rare messages, and no summary (the reply says the job is over).
    let long_enough = Duration::from_secs(status.elapsed_secs) >= WHATSAPP_FIRST;
    if status.finished || !long_enough || sent >= WHATSAPP_MAX {
        return Step::Drop;
    }
    if now < next_at {
        return Step::Drop;
    }
    Step::Send
}

async fn send_line(app: &App, job: &str) {
    loop {
        let now = Instant::now();
        let (status, decision, address, outlet_channel) = {
            let mut lines = app.status.lock();
            let Some(line) = lines.get_mut(job) else {
                return;
            };
            let Some(conversation) = Conversation::parse(&line.conversation) else {
                lines.remove(job);
                return;
            };
            let Some(outlet) = app.outlet(conversation.channel) else {
                lines.remove(job);
                return;
            };
            let Some(status) = line.pending.clone() else {
                line.sending = false;
                return;
            };
            let decision = step(
                outlet.can_edit(),
                &status,
                line.message.as_deref(),
                line.sent,
                line.next_at,
                now,
            );
            if !matches!(decision, Step::WaitUntil(_)) {
                line.pending = None;
            }
            (
                status,
                decision,
                conversation.address.to_string(),
                conversation.channel,
            )
        };
        let Some(outlet) = app.outlet(outlet_channel) else {
            return;
        };
        let spacing = if outlet.can_edit() {
            EDIT_SPACING
        } else {
            WHATSAPP_SPACING
        };
        let outcome = match &decision {
            Step::WaitUntil(at) => {
                tokio::time::sleep_until((*at).into()).await;
                continue;
            }
            Step::Drop => None,
            Step::Send => Some(outlet.send_status(app, &address, &status.line).await),
            Step::Edit(id) => Some(
                outlet
                    .edit_status(app, &address, id, &status.line)
                    .await
                    .map(|()| Some(id.clone())),
            ),
        };
        let mut lines = app.status.lock();
        let Some(line) = lines.get_mut(job) else {
            return;
        };
        match outcome {
            Some(Ok(message)) => {
                line.message = message.or(line.message.take());
                line.sent += 1;
                line.next_at = Instant::now() + spacing;
            }
            Some(Err(error)) => {
                tracing::debug!("a status line was not shown: {error}");
                line.next_at = Instant::now() + spacing;
            }
            None => {}
        }
        if status.finished {
            lines.remove(job);
            return;
        }
    }
}

/// When a channel would show a job's status line, on a virtual clock: `updates` are the
/// moments (since the job started) the vm sent one, the last being the summary. Returns the
/// moments a message or an edit went out (the bench prints them; the tests bound them).
pub fn shown_at(can_edit: bool, updates: &[Duration]) -> Vec<Duration> {
    /// One line's past, as [`send_line`] keeps it.
    struct Simulated {
        base: Instant,
        can_edit: bool,
        message: Option<String>,
        sent: u32,
        next_at: Instant,
        shown: Vec<Duration>,
    }
    impl Simulated {
        /// Shows `status` at `at` if the rules allow; when it must wait, until when.
        fn show(&mut self, at: Instant, status: &Status) -> Option<Instant> {
            let spacing = if self.can_edit {
                EDIT_SPACING
            } else {
                WHATSAPP_SPACING
            };
            match step(
                self.can_edit,
                status,
                self.message.as_deref(),
                self.sent,
                self.next_at,
                at,
            ) {
                Step::Send | Step::Edit(_) => {
                    self.shown.push(at - self.base);
                    self.message = Some("sent".into());
                    self.sent += 1;
                    self.next_at = at + spacing;
                    None
                }
                Step::WaitUntil(until) => Some(until),
                Step::Drop => None,
            }
        }
    }
    let base = Instant::now();
    let mut line = Simulated {
        base,
        can_edit,
        message: None,
        sent: 0,
        next_at: base,
        shown: Vec::new(),
    };
    let mut waiting: Option<(Instant, Status)> = None;
    for (i, at) in updates.iter().enumerate() {
        let now = base + *at;
        // A newer update replaces one still waiting, unless its time came first.
        if let Some((until, status)) = waiting.take()
            && until <= now
        {
            line.show(until, &status);
        }
        let status = Status {
            job: "simulated".into(),
            line: String::new(),
            finished: i + 1 == updates.len(),
            elapsed_secs: at.as_secs(),
        };
        if let Some(until) = line.show(now, &status) {
            waiting = Some((until, status));
        }
    }
    if let Some((until, status)) = waiting {
        line.show(until, &status);
    }
    line.shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_minute_job_stays_within_each_channel_s_limits() {
        // A tool call every 300 ms for two minutes, and the summary.
        let updates: Vec<Duration> = (0..=400).map(|i| Duration::from_millis(300 * i)).collect();
        let edits = shown_at(true, &updates);
        assert!(
            edits.windows(2).all(|w| w[1] - w[0] >= EDIT_SPACING),
            "{edits:?}"
        );
        // The first message, then an edit a second at most (the summary within a second of
        // the job's end).
        assert!(edits.len() <= 122, "{}", edits.len());
        assert!(
            *edits.last().unwrap() <= Duration::from_secs(121),
            "the summary is shown"
        );
        let messages = shown_at(false, &updates);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0] >= WHATSAPP_FIRST);
    }

    fn status(elapsed_secs: u64, finished: bool) -> Status {
        Status {
            job: "j".into(),
            line: "Running `ls` · 0:01".into(),
            finished,
            elapsed_secs,
        }
    }

    #[test]
    fn editable_channels_send_once_then_edit_at_most_once_a_second() {
        let now = Instant::now();
        let later = now + Duration::from_millis(400);
        assert_eq!(step(true, &status(1, false), None, 0, now, now), Step::Send);
        assert_eq!(
            step(true, &status(1, false), Some("5"), 1, later, now),
            Step::WaitUntil(later)
        );
        assert_eq!(
            step(true, &status(2, false), Some("5"), 1, now, now),
            Step::Edit("5".into())
        );
        assert_eq!(
            step(true, &status(2, true), Some("5"), 2, now, now),
            Step::Edit("5".into())
        );
        assert_eq!(step(true, &status(2, true), None, 0, now, now), Step::Drop);
    }

    #[test]
    fn whatsapp_hears_only_of_long_jobs_and_rarely() {
        let now = Instant::now();
        assert_eq!(
            step(false, &status(30, false), None, 0, now, now),
            Step::Drop
        );
        assert_eq!(
            step(false, &status(95, false), None, 0, now, now),
            Step::Send
        );
        let spaced = now + WHATSAPP_SPACING;
        assert_eq!(
            step(false, &status(100, false), None, 1, spaced, now),
            Step::Drop
        );
        assert_eq!(
            step(false, &status(700, false), None, 1, now, now),
            Step::Send
        );
        assert_eq!(
            step(false, &status(1300, false), None, WHATSAPP_MAX, now, now),
            Step::Drop
        );
        assert_eq!(
            step(false, &status(1300, true), None, 1, now, now),
            Step::Drop
        );
    }
}
