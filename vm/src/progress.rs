//! A job's status line: what the agent is doing now ("Running `cargo test` · 0:42"), from the
//! tool calls on its stream, sent to the relay as a [`contract::protocol::Status`] while the
//! job runs, and its summary when it ends ("Done in 1:12 · 7 tool calls · $0.0123"). The relay
//! decides how often each channel sees it ([`relay::status`] keeps Telegram and Discord to one
//! edit a second, WhatsApp to a rare message). Best effort, like typing: a lost update is
//! replaced by the next.

use crate::Vm;
use contract::protocol::{Callback, CallbackKind, Status};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the line is refreshed when nothing new happens (its clock moves on).
const REFRESH: Duration = Duration::from_secs(15);
/// The least time between two updates the vm sends.
const SPACING: Duration = Duration::from_secs(1);

/// What one job has done so far.
pub struct Progress {
    job: String,
    started: Instant,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    tool_calls: u32,
    doing: Option<String>,
}

impl Progress {
    pub fn new(job: &str) -> Progress {
        Progress {
            job: job.to_string(),
            started: Instant::now(),
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// The agent called `name` with `input`.
    pub fn tool(&self, name: &str, input: &Value) {
        let mut state = self.lock();
        state.tool_calls += 1;
        state.doing = Some(activity(name, input));
        drop(state);
        self.changed.notify_one();
    }

    pub fn tool_calls(&self) -> u32 {
        self.lock().tool_calls
    }

    /// "Running `cargo test` · 0:42".
    pub fn line(&self) -> String {
        let doing = self
            .lock()
            .doing
            .clone()
            .unwrap_or_else(|| "Thinking".into());
        format!("{doing} · {}", clock(self.started.elapsed()))
    }

    /// "Done in 1:12 · 7 tool calls · $0.0123".
    pub fn summary(&self, cost_usd: Option<f64>) -> String {
        let calls = self.tool_calls();
        let mut text = format!(
            "Done in {} · {calls} tool call{}",
            clock(self.started.elapsed()),
            if calls == 1 { "" } else { "s" }
        );
        if let Some(cost) = cost_usd {
            text.push_str(&format!(" · ${cost:.4}"));
        }
        text
    }

    fn status(&self, line: String, finished: bool) -> Callback {
        Callback {
            id: format!("status:{}:{}", self.job, self.started.elapsed().as_millis()),
            conversation: String::new(),
            kind: CallbackKind::Status,
            text: String::new(),
            images: vec![],
            question: None,
            status: Some(Status {
                job: self.job.clone(),
                line,
                finished,
                elapsed_secs: self.started.elapsed().as_secs(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends the line while the job runs: after each tool call (at most one update a second) and
/// every [`REFRESH`]. A job that calls no tool shows no line: its answer comes soon enough.
pub async fn report(vm: &Vm, conversation: &str, progress: &Progress) -> ! {
    let mut last_sent: Option<Instant> = None;
    loop {
        let _ = tokio::time::timeout(REFRESH, progress.changed.notified()).await;
        if let Some(at) = last_sent {
            tokio::time::sleep(SPACING.saturating_sub(at.elapsed())).await;
        }
        if progress.tool_calls() == 0 {
            continue;
        }
        send(vm, conversation, progress.status(progress.line(), false)).await;
        last_sent = Some(Instant::now());
    }
}

/// Ends the line with the job's summary, if it was ever shown.
pub async fn finish(vm: &Vm, conversation: &str, progress: &Progress, cost_usd: Option<f64>) {
    if progress.tool_calls() > 0 {
        let summary = progress.summary(cost_usd);
        send(vm, conversation, progress.status(summary, true)).await;
    }
}

async fn send(vm: &Vm, conversation: &str, mut callback: Callback) {
    callback.conversation = conversation.to_string();
    let _ = vm.relay.send(&callback, Duration::from_secs(10)).await;
}

/// `0:42`, `12:05`, `1:02:03`.
fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

/// What a tool call is, in a few words: "Running `cargo test`", "Editing src/lib.rs",
/// "Opening example.com".
pub fn activity(name: &str, input: &Value) -> String {
    let field = |key: &str| input[key].as_str().unwrap_or_default();
    let file = |key: &str| {
        let path = field(key);
        // The workspace's own path says nothing to the user; its last two parts do.
        let parts: Vec<&str> = path.rsplit('/').take(2).collect();
        parts.into_iter().rev().collect::<Vec<_>>().join("/")
    };
    let host = |url: &str| {
        url.split("://")
            .nth(1)
            .unwrap_or(url)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    match name {
        "Bash" => {
            let command = field("command").lines().next().unwrap_or_default();
            let short: String = command.chars().take(60).collect();
            let more = if command.chars().count() > 60 {
                "…"
            } else {
                ""
            };
            format!("Running `{short}{more}`")
        }
        "Edit" | "MultiEdit" | "Write" => format!("Editing {}", file("file_path")),
        "NotebookEdit" => format!("Editing {}", file("notebook_path")),
        "Read" => format!("Reading {}", file("file_path")),
        "Grep" | "Glob" | "LS" => "Searching the files".into(),
        "WebFetch" => format!("Opening {}", host(field("url"))),
        "WebSearch" => "Searching the web".into(),
        "TodoWrite" => "Planning".into(),
        "Task" => "Handing part of the work to a helper".into(),
        "mcp__playwright__browser_navigate" => {
            format!("Opening {} in the browser", host(field("url")))
        }
        name if name.starts_with("mcp__playwright__") => "Using the browser".into(),
        name => format!("Using {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn activities_say_what_the_agent_does_in_a_few_words() {
        assert_eq!(
            activity("Bash", &json!({"command": "cargo test\necho done"})),
            "Running `cargo test`"
        );
        assert_eq!(
            activity(
                "Edit",
                &json!({"file_path": "/data/workspaces/t_1/src/lib.rs"})
            ),
            "Editing src/lib.rs"
        );
        assert_eq!(
            activity("WebFetch", &json!({"url": "https://example.com/a?b"})),
            "Opening example.com"
        );
        assert_eq!(
            activity(
                "mcp__playwright__browser_navigate",
                &json!({"url": "http://127.0.0.1:9/sim/chat"})
            ),
            "Opening 127.0.0.1:9 in the browser"
        );
        assert!(activity("Bash", &json!({"command": "x".repeat(100)})).ends_with("…`"));
        assert_eq!(clock(Duration::from_secs(42)), "0:42");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn the_line_counts_tool_calls_and_the_summary_adds_the_cost() {
        let progress = Progress::new("j1");
        assert_eq!(progress.line(), "Thinking · 0:00");
        progress.tool("Bash", &json!({"command": "ls"}));
        progress.tool("Read", &json!({"file_path": "a/b.rs"}));
        assert_eq!(progress.line(), "Reading a/b.rs · 0:00");
        assert_eq!(
            progress.summary(Some(0.01234)),
            "Done in 0:00 · 2 tool calls · $0.0123"
        );
    }
}
