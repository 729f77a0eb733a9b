//! Chat commands, all in one place. `/status` and `/cancel` are answered as soon as they
//! arrive (a cancel must not wait behind the job it cancels); `/new` waits its turn in the
//! queue, so it never forgets a session under a running job.

use crate::Vm;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Forget the conversation's session (its files stay).
    New,
    /// Session, today's spend, uptime and queue.
    Status,
    /// Stop the running job and everything it started.
    Cancel,
}

pub const FRESH_SESSION: &str = "Started a fresh session: the agent has forgotten this conversation (your files are still there).";

impl Command {
    /// The command a message is, if it is one (the whole message, trimmed).
    pub fn parse(text: &str) -> Option<Command> {
        match text.trim() {
            "/new" => Some(Command::New),
            "/status" => Some(Command::Status),
            "/cancel" => Some(Command::Cancel),
            _ => None,
        }
    }

    /// Answered at once instead of queued.
    pub fn is_immediate(self) -> bool {
        matches!(self, Command::Status | Command::Cancel)
    }
}

/// Carries out an immediate command and returns its answer.
pub fn answer_now(vm: &Vm, command: Command, conversation: &str) -> String {
    match command {
        Command::Cancel => cancel(vm, conversation).into(),
        Command::Status => status(vm, conversation),
        Command::New => start_fresh(vm, conversation).into(),
    }
}

/// `/new`, when its turn comes: the session and its warm process go.
pub fn start_fresh(vm: &Vm, conversation: &str) -> &'static str {
    let _ = vm.store.clear_session(conversation);
    vm.agents.forget(conversation);
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
        "Session: {session}\nSpent today (UTC): ${spent:.4}{cap}\nUp for: {}m {}s\nThis conversation: {running} running, {queued} queued",
        uptime / 60,
        uptime % 60
    )
}
