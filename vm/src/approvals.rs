//! Approvals: what the agent may do without asking, and the questions it asks an owner.
//!
//! Each conversation has a [`Mode`]. In `auto` the agent runs with the tools allowed up front
//! (`--allowedTools`, what textslash always did). In `ask`, Claude Code runs with
//! `--permission-mode acceptEdits --permission-prompt-tool stdio`, so:
//! - reading and searching (Read, Glob, Grep, and the read-only commands Claude Code itself
//!   lets through) and editing files inside the conversation's workspace run freely;
//! - anything else asks first: a shell command, a write outside the workspace, a web fetch
//!   or search, the browser (Playwright MCP), any other MCP tool.
//!
//! The CLI then waits on a `can_use_tool` request ([`crate::stream::PermissionRequest`]).
//! [`decide`] turns it into a [`Question`] for the conversation's owners, sent through the
//! relay, and waits for the answer up to `APPROVAL_WAIT_SECS`. Unanswered by then, the question
//! is *parked*: the agent process ends and the vm may go to sleep. An answer that comes later
//! ([`answer`]) resumes the session: the agent is told the decision, and an Allow is a grant
//! for exactly that call, once, so it runs without asking again.
//!
//! "Always allow" keeps the rules Claude Code proposed (`permission_suggestions`) for this
//! conversation: the running process gets them for its session, later ones on the command line.

use crate::store::{QuestionState, StoredQuestion};
use crate::stream::PermissionRequest;
use crate::{Vm, callbacks};
use contract::protocol::{Answer, Decision, Question, VmMessage};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// How freely a conversation's agent may use its tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Commands, the web and the browser ask an owner first.
    Ask,
    /// Every tool runs without asking.
    Auto,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ask" => Some(Mode::Ask),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ask => "ask",
            Mode::Auto => "auto",
        }
    }

    /// What `/mode` says of it.
    pub fn explained(self) -> &'static str {
        match self {
            Mode::Ask => {
                "ask: reading, searching and editing files in the workspace run freely; commands, writes elsewhere, the web and the browser ask you first"
            }
            Mode::Auto => "auto: the agent uses every tool without asking",
        }
    }
}

/// What the agent process is told about one tool call.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Run it; `rules` (Claude Code permission updates) apply for the rest of the session.
    Allow { rules: Vec<Value> },
    /// Do not; the message is the tool's error result, which the model reads.
    Deny(String),
    /// Nobody answered in time: end the process, the question waits for its answer.
    Park,
}

/// What the model reads when an owner says no.
pub const DENIED: &str =
    "The owner denied this. Do not try to do it another way; go on without it, or ask them.";

/// The questions whose agent process is waiting, by id.
#[derive(Default)]
pub struct Waiting(Mutex<HashMap<String, oneshot::Sender<Decision>>>);

impl Waiting {
    fn add(&self, id: &str) -> oneshot::Receiver<Decision> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.to_string(), tx);
        rx
    }

    fn take(&self, id: &str) -> Option<oneshot::Sender<Decision>> {
        self.lock().remove(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Decision>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The conversation's mode: its own, or the deployment's default (`APPROVAL_MODE`).
pub fn mode(vm: &Vm, conversation: &str) -> Mode {
    vm.store
        .mode(conversation)
        .ok()
        .flatten()
        .and_then(|m| Mode::parse(&m))
        .unwrap_or(vm.config.approval_mode)
}

/// The vm's [`crate::agent::Approve`]: a conversation's owners, asked through the relay.
pub struct AskOwners<'a> {
    pub vm: &'a Vm,
    pub conversation: &'a str,
}

impl crate::agent::Approve for AskOwners<'_> {
    fn decide<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>> {
        Box::pin(decide(self.vm, self.conversation, request))
    }
}

/// Decides a tool call the agent asked to make in `conversation`: a grant left by a parked
/// Allow answers at once; otherwise an owner is asked and the answer awaited.
pub async fn decide(vm: &Vm, conversation: &str, request: &PermissionRequest) -> Verdict {
    if vm
        .store
        .take_grant(conversation, &request.tool_name, &essential(&request.input))
        .unwrap_or(false)
    {
        return Verdict::Allow { rules: vec![] };
    }
    let id = callbacks::random_id();
    let stored = StoredQuestion {
        id: id.clone(),
        conversation: conversation.to_string(),
        tool: request.tool_name.clone(),
        input: request.input.clone(),
        state: QuestionState::Open,
        decision: None,
        answered_by: None,
    };
    if let Err(error) = vm.store.add_question(&stored) {
        tracing::error!("could not store a question: {error}");
        return Verdict::Deny("The question could not be asked (the agent's disk?).".into());
    }
    let rules = allow_rules(&request.suggestions);
    let mut choices = vec![Decision::Allow];
    if !rules.is_empty() {
        choices.push(Decision::AlwaysAllow);
    }
    choices.push(Decision::Deny);
    let answered = vm.approvals.add(&id);
    callbacks::ask(
        vm,
        conversation,
        Question {
            id: id.clone(),
            choices,
        },
        describe(request),
    );
    match tokio::time::timeout(vm.config.approval_wait, answered).await {
        Ok(Ok(decision)) => verdict_for(vm, conversation, decision, &request.suggestions),
        _ => {
            vm.approvals.take(&id);
            let _ = vm.store.close_question(&id, QuestionState::Parked);
            Verdict::Park
        }
    }
}

/// The answer to the process that asked, and "always" kept for the conversation.
fn verdict_for(vm: &Vm, conversation: &str, decision: Decision, suggestions: &[Value]) -> Verdict {
    match decision {
        Decision::Allow => Verdict::Allow { rules: vec![] },
        Decision::AlwaysAllow => {
            let _ = vm.store.add_rules(conversation, &allow_rules(suggestions));
            Verdict::Allow {
                rules: session_updates(suggestions),
            }
        }
        Decision::Deny => Verdict::Deny(DENIED.into()),
    }
}

/// What became of an owner's answer.
#[derive(Debug, PartialEq)]
pub enum Answered {
    /// The waiting process has it.
    Delivered,
    /// The question was parked: the answer is queued as a job that resumes the session.
    Resumes,
    /// The same answer message again (the relay delivers at least once): nothing to do.
    Repeated,
    /// A reply for the owner: the question is unknown, or already answered.
    Refused(String),
}

/// Applies an owner's answer (the relay checked it is an owner's, in this conversation).
pub fn answer(vm: &Vm, message: &VmMessage, answer: &Answer) -> Answered {
    let question = match vm.store.question(&answer.question) {
        Ok(Some(q)) if q.conversation == message.conversation => q,
        _ => return Answered::Refused("That question is not one the agent asked here.".into()),
    };
    if question.state == QuestionState::Answered {
        if question.answered_by.as_deref() == Some(message.id.as_str()) {
            return Answered::Repeated;
        }
        let said = question.decision.map(Decision::past).unwrap_or("Answered");
        return Answered::Refused(format!("That question was already answered: {said}."));
    }
    if !vm
        .store
        .answer_question(&question.id, answer.decision, &message.id)
        .unwrap_or(false)
    {
        return Answered::Refused("That question was already answered.".into());
    }
    if let Some(waiting) = vm.approvals.take(&question.id)
        && waiting.send(answer.decision).is_ok()
    {
        return Answered::Delivered;
    }
    // Parked (or its process just ended): the decision holds for a resumed session.
    if answer.decision != Decision::Deny {
        let _ = vm.store.add_grant(
            &question.conversation,
            &question.tool,
            &essential(&question.input),
        );
    }
    match vm.store.add_job(message) {
        Ok(_) => {
            vm.jobs_wake.notify_one();
            Answered::Resumes
        }
        Err(error) => {
            tracing::error!("could not queue an answer: {error}");
            Answered::Refused("The agent could not take the answer now; tap again.".into())
        }
    }
}

/// The prompt that resumes a session whose question was parked.
pub fn resume_prompt(vm: &Vm, answer: &Answer) -> String {
    let Ok(Some(question)) = vm.store.question(&answer.question) else {
        return "(An answer came for a question that is gone.)".into();
    };
    let call = call_summary(&question.tool, &question.input);
    match answer.decision {
        Decision::Deny => format!(
            "(Your earlier request to {call} was denied by the owner. Do not do it; go on without it, or ask them.)"
        ),
        _ => format!(
            "(The owner allowed your earlier request to {call}. Make that call now, exactly as before.)"
        ),
    }
}

/// What makes two calls the same call: the input without the model's own `description` of it,
/// which a resumed session words afresh.
fn essential(input: &Value) -> Value {
    let mut input = input.clone();
    if let Some(fields) = input.as_object_mut() {
        fields.remove("description");
    }
    input
}

/// `Bash(echo hi *)`: the `addRules` allow rules among Claude Code's suggestions, written as
/// `--allowedTools` takes them.
pub fn allow_rules(suggestions: &[Value]) -> Vec<String> {
    suggestions
        .iter()
        .filter(|s| s["type"] == "addRules" && s["behavior"] == "allow")
        .flat_map(|s| s["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|rule| {
            let tool = rule["toolName"].as_str()?;
            Some(match rule["ruleContent"].as_str() {
                Some(content) if !content.is_empty() => format!("{tool}({content})"),
                _ => tool.to_string(),
            })
        })
        .collect()
}

/// The same rules as permission updates for the running session only: never the CLI's
/// settings files, which sit where the agent can write.
fn session_updates(suggestions: &[Value]) -> Vec<Value> {
    suggestions
        .iter()
        .filter(|s| s["type"] == "addRules" && s["behavior"] == "allow")
        .map(|s| {
            let mut update = s.clone();
            update["destination"] = Value::String("session".into());
            update
        })
        .collect()
}

/// "run `cargo test`", "write src/lib.rs", "open https://example.com".
fn call_summary(tool: &str, input: &Value) -> String {
    let field = |name: &str| input[name].as_str().unwrap_or_default();
    match tool {
        "Bash" => format!("run `{}`", clip(field("command"), 300)),
        "Write" => format!("write {}", field("file_path")),
        "Edit" | "MultiEdit" => format!("edit {}", field("file_path")),
        "NotebookEdit" => format!("edit {}", field("notebook_path")),
        "WebFetch" => format!("open {}", field("url")),
        "WebSearch" => format!("search the web for \"{}\"", clip(field("query"), 200)),
        name if name.starts_with("mcp__playwright__") => {
            let action = name.trim_start_matches("mcp__playwright__browser_");
            match input["url"].as_str() {
                Some(url) => format!("use the browser ({action}) on {url}"),
                None => format!("use the browser ({action})"),
            }
        }
        name => format!("use {name}"),
    }
}

/// The question's text: what the call would do, with the command or a short diff.
pub fn describe(request: &PermissionRequest) -> String {
    let input = &request.input;
    let field = |name: &str| input[name].as_str().unwrap_or_default();
    let mut text = format!(
        "The agent asks to {}.",
        call_summary(&request.tool_name, input)
    );
    match request.tool_name.as_str() {
        "Bash" if field("command").len() > 300 || field("command").contains('\n') => {
            text.push_str(&format!("\n\n{}", clip(field("command"), 1500)));
        }
        "Edit" => {
            text.push_str(&format!(
                "\n\n{}",
                short_diff(field("old_string"), field("new_string"))
            ));
        }
        "Write" => {
            let content = field("content");
            text.push_str(&format!("\n\n{}", short_diff("", content)));
        }
        _ => {}
    }
    if let Some(description) = &request.description
        && !description.is_empty()
        && request.tool_name == "Bash"
    {
        text.push_str(&format!("\n({})", clip(description, 200)));
    }
    text
}

/// At most 12 lines of `-old` / `+new`, saying how many more there were.
fn short_diff(old: &str, new: &str) -> String {
    const SHOWN: usize = 12;
    let lines: Vec<String> = old
        .lines()
        .map(|l| format!("- {l}"))
        .chain(new.lines().map(|l| format!("+ {l}")))
        .collect();
    let mut diff: Vec<String> = lines.iter().take(SHOWN).map(|l| clip(l, 160)).collect();
    if lines.len() > SHOWN {
        diff.push(format!("… {} more lines", lines.len() - SHOWN));
    }
    diff.join("\n")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(tool: &str, input: Value) -> PermissionRequest {
        PermissionRequest {
            request_id: "r".into(),
            tool_name: tool.into(),
            input,
            description: None,
            suggestions: vec![],
        }
    }

    #[test]
    fn always_allow_keeps_the_proposed_allow_rules_for_this_session_only() {
        // As in the real capture (permission-stdio-allow.stdout.jsonl).
        let suggestions = vec![
            json!({"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "echo hi *"}], "behavior": "allow", "destination": "localSettings"}),
            json!({"type": "addDirectories", "directories": ["/home/agent/ws"], "destination": "session"}),
            json!({"type": "addRules", "rules": [{"toolName": "WebFetch"}], "behavior": "deny", "destination": "session"}),
        ];
        assert_eq!(allow_rules(&suggestions), ["Bash(echo hi *)"]);
        let updates = session_updates(&suggestions);
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0]["destination"], "session");
        assert_eq!(updates[0]["rules"][0]["ruleContent"], "echo hi *");
    }

    #[test]
    fn a_question_says_what_the_call_would_do() {
        let bash = request(
            "Bash",
            json!({"command": "cargo test", "description": "Run tests"}),
        );
        assert_eq!(describe(&bash), "The agent asks to run `cargo test`.");
        let edit = request(
            "Edit",
            json!({"file_path": "/w/src/lib.rs", "old_string": "a\nb", "new_string": "c"}),
        );
        assert_eq!(
            describe(&edit),
            "The agent asks to edit /w/src/lib.rs.\n\n- a\n- b\n+ c"
        );
        let long = request(
            "Write",
            json!({"file_path": "/etc/x", "content": "l\n".repeat(20)}),
        );
        assert!(
            describe(&long).ends_with("… 8 more lines"),
            "{}",
            describe(&long)
        );
        let browse = request(
            "mcp__playwright__browser_navigate",
            json!({"url": "https://example.com"}),
        );
        assert_eq!(
            describe(&browse),
            "The agent asks to use the browser (navigate) on https://example.com."
        );
        assert_eq!(Mode::parse(" Ask "), Some(Mode::Ask));
        assert_eq!(Mode::parse("sometimes"), None);
    }
}
