//! Chat commands, all in one place. `/status`, `/cancel`, `/mode`, `/rules` and `/diff` are
//! answered as soon as they arrive (a cancel must not wait behind the job it cancels); `/new` waits its
//! turn in the queue, so it never forgets a session under a running job.

use crate::approvals::{self, Mode};
use crate::{Vm, diff};
use base64::Engine;
use contract::protocol::Image;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Forget the conversation's session (its files stay).
    New,
    /// Session, today's spend, uptime and queue.
    Status,
    /// Stop the running job and everything it started.
    Cancel,
    /// Show the conversation's approval mode, or switch it (`/mode ask`, `/mode auto`).
    Mode(Option<String>),
    /// List the "always allow" rules, or clear them (`/rules clear`).
    Rules { clear: bool },
    /// What the agent changed in the workspace, as a `.diff` document with a summary line.
    Diff,
}

pub const FRESH_SESSION: &str = "Started a fresh session: the agent has forgotten this conversation (your files are still there).";

impl Command {
    /// The command a message is, if it is one (the whole message, trimmed).
    pub fn parse(text: &str) -> Option<Command> {
        let mut words = text.split_whitespace();
        let command = words.next()?;
        let argument = words.next().map(str::to_string);
        if words.next().is_some() {
            return None;
        }
        match (command, argument) {
            ("/new", None) => Some(Command::New),
            ("/status", None) => Some(Command::Status),
            ("/cancel", None) => Some(Command::Cancel),
            ("/diff", None) => Some(Command::Diff),
            ("/mode", argument) => Some(Command::Mode(argument)),
            ("/rules", None) => Some(Command::Rules { clear: false }),
            ("/rules", Some(word)) if word == "clear" => Some(Command::Rules { clear: true }),
            _ => None,
        }
    }

    /// Answered at once instead of queued.
    pub fn is_immediate(&self) -> bool {
        !matches!(self, Command::New)
    }
}

/// Carries out an immediate command and returns its answer (and, for `/diff`, the document).
pub async fn answer_now(vm: &Vm, command: Command, conversation: &str) -> (String, Vec<Image>) {
    let text = match command {
        Command::Cancel => cancel(vm, conversation).into(),
        Command::Status => status(vm, conversation),
        Command::New => start_fresh(vm, conversation).into(),
        Command::Mode(choice) => mode(vm, conversation, choice.as_deref()),
        Command::Rules { clear } => rules(vm, conversation, clear),
        Command::Diff => return diff(vm, conversation).await,
    };
    (text, vec![])
}

/// The workspace's changes as a document where the channel takes documents; WhatsApp takes
/// none that a diff could be (Twilio: images, audio, video, PDF and Office files), so it
/// gets the start of the diff as text.
async fn diff(vm: &Vm, conversation: &str) -> (String, Vec<Image>) {
    let workspace = crate::jobs::workspace(vm, conversation);
    let changes = diff::changes(&vm.config, &workspace).await;
    if changes.is_empty() {
        return ("No changes in the workspace.".into(), vec![]);
    }
    let summary = changes.summary();
    if conversation.starts_with("whatsapp:") {
        let start: String = changes.text.chars().take(1200).collect();
        let more = if start.len() < changes.text.len() {
            "\n(The start of the diff: WhatsApp takes no text files.)"
        } else {
            ""
        };
        return (format!("{summary}\n\n{start}{more}"), vec![]);
    }
    let document = Image {
        content_type: DIFF_CONTENT_TYPE.into(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(changes.text),
    };
    (summary, vec![document])
}

/// How a `/diff` document is labelled for the relay, which sends it as a file.
pub const DIFF_CONTENT_TYPE: &str = "text/x-diff";

fn mode(vm: &Vm, conversation: &str, choice: Option<&str>) -> String {
    let Some(choice) = choice else {
        return format!(
            "Mode {}.\nSwitch with /mode ask or /mode auto.",
            approvals::mode(vm, conversation).explained()
        );
    };
    let Some(mode) = Mode::parse(choice) else {
        return "Choose /mode ask or /mode auto.".into();
    };
    if vm.store.set_mode(conversation, mode.as_str()).is_err() {
        return "The mode could not be saved; try again.".into();
    }
    // The warm process runs with the old mode's flags: the next message starts one afresh.
    vm.agents.forget(conversation);
    format!("Mode {} (from the next message).", mode.explained())
}

fn rules(vm: &Vm, conversation: &str, clear: bool) -> String {
    if clear {
        let removed = vm.store.clear_rules(conversation).unwrap_or(0);
        vm.agents.forget(conversation);
        return format!("Cleared {removed} rule(s): the agent asks again from the next message.");
    }
    let rules = vm.store.rules(conversation).unwrap_or_default();
    if rules.is_empty() {
        "No \"always allow\" rules in this conversation.".into()
    } else {
        format!(
            "Always allowed here:\n{}\nClear them with /rules clear.",
            rules
                .iter()
                .map(|r| format!("• {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// `/new`, when its turn comes: the session and its warm process go.
pub fn start_fresh(vm: &Vm, conversation: &str) -> &'static str {
    let _ = vm.store.clear_session(conversation);
    vm.agents.forget(conversation);
    diff::forget_baseline(&vm.config, &crate::jobs::workspace(vm, conversation));
    FRESH_SESSION
}

fn cancel(vm: &Vm, conversation: &str) -> &'static str {
    let running = vm
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(conversation);
    match running {
        Some(cancel) => {
            let _ = cancel.send(());
            "Cancelling the running job…"
        }
        None => "Nothing is running.",
    }
}

fn status(vm: &Vm, conversation: &str) -> String {
    let session = vm
        .store
        .session(conversation)
        .ok()
        .flatten()
        .unwrap_or_else(|| "none yet".into());
    let spent = vm.store.spend_today().unwrap_or(0.0);
    let cap = vm
        .config
        .max_daily_usd
        .map(|c| format!(" of ${c:.2}"))
        .unwrap_or_default();
    let (running, queued) = vm.store.counts(Some(conversation)).unwrap_or((0, 0));
    let uptime = vm.started.elapsed().as_secs();
    format!(
        "Session: {session}\nSpent today (UTC): ${spent:.4}{cap}\nUp for: {}m {}s\nThis conversation: {running} running, {queued} queued\nMode: {}",
        uptime / 60,
        uptime % 60,
        approvals::mode(vm, conversation).as_str()
    )
}
