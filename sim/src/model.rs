//! A fake of Anthropic's Messages API (`POST /anthropic/v1/messages`) that the real Claude Code
//! CLI can run against offline, with scripted replies.
//!
//! What it honours, as the real CLI was observed to use the API (Claude Code 2.1.330 against a
//! local fake; `vm/tests/fixtures/claude-code-2.1.330/SOURCE.md`) and as Anthropic documents
//! it (Messages API, streaming): the CLI posts `POST /v1/messages?beta=true` with `stream:
//! true` and the headers `x-api-key`, `anthropic-version`; a streamed answer is server-sent
//! events in this order: `message_start` (the message with id, type, role, model, empty
//! content, usage), then for each content block `content_block_start` (text, or `tool_use`
//! with id, name and an empty input), `content_block_delta` (`text_delta` or
//! `input_json_delta`), `content_block_stop`, then `message_delta` (stop_reason `end_turn` or
//! `tool_use`, usage) and `message_stop`. Errors have Anthropic's shape:
//! `{"type": "error", "error": {"type": …, "message": …}}` (401 `authentication_error`, 429
//! `rate_limit_error`, 529 `overloaded_error`).
//!
//! The script is chosen by words in the user's latest message, and advances with each tool
//! result the CLI sends back:
//! - "write a file": a `Bash` call that writes `hello.txt`, then a summary;
//! - "write with the write tool": a `Write` call for `note.txt`, then a summary;
//! - "dump the environment": a `Bash` call that saves `env` to `env.txt`, then a summary;
//! - "take a screenshot" (optionally "named shot.png"): `ToolSearch` to load Playwright's
//!   deferred tools, `browser_navigate` to the sim's chat page, `browser_take_screenshot`,
//!   then a summary;
//! - "try to get out": what a prompt-injected agent would try, in one `Bash` call that writes
//!   what it got to `loot.txt`: every process's environment (`/proc/*/environ`, the vm's
//!   `VM_TOKEN` among them), the vm's store
//!   (`../../vm.db`, read and appended to), and a `SessionStart` hook planted in its own
//!   settings that would leave `hook-ran` in the workspace on every later session;
//! - "long reply": one text of 6,000 characters;
//! - "overloaded" / "rate limited": a 529 / 429 error;
//! - "never end": a stream that starts and never finishes;
//! - anything else: "You said: <the message>".

use crate::Sim;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What the CLI sent, for tests (bodies only; never the key).
#[derive(Default)]
pub struct Model {
    requests: Mutex<Vec<Value>>,
}

impl Model {
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/anthropic/v1/messages", post(messages))
        .route(
            "/sim/anthropic/requests",
            get(|State(sim): State<Arc<Sim>>| async move { axum::Json(sim.model.requests()) }),
        )
        .with_state(sim)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// One content block of a scripted answer.
#[derive(Clone, Debug, PartialEq)]
enum Block {
    Text(String),
    Tool { name: String, input: Value },
}

/// A scripted turn: blocks, or an error answer, or a stream that never ends.
#[derive(Clone, Debug, PartialEq)]
enum Turn {
    Say(Vec<Block>),
    Fail(StatusCode, &'static str, &'static str),
    Hang,
}

fn say(text: impl Into<String>) -> Turn {
    Turn::Say(vec![Block::Text(text.into())])
}

/// As in the permission captures (`vm/tests/fixtures/claude-code-2.1.330/permission-stdio-*`):
/// one command that leaves a trace of each run. A program run through `sh -c`, so Claude Code
/// cannot tell it is only a write in the workspace, and asks.
fn note_a_run() -> Turn {
    call(
        "Bash",
        json!({"command": "sh -c 'echo ran >> ran.txt'", "description": "Note a run"}),
    )
}

fn call(name: &str, input: Value) -> Turn {
    Turn::Say(vec![Block::Tool {
        name: name.into(),
        input,
    }])
}

/// The user's latest message (without the CLI's `<system-reminder>` blocks), how many tool
/// results have come back since it, and the last one's text.
fn conversation_state(messages: &[Value]) -> (String, usize, String) {
    let texts = |m: &Value| -> Vec<String> {
        match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(parts) => parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
                .map(str::to_string)
                .collect(),
            _ => vec![],
        }
    };
    let is_tool_result = |m: &Value| {
        m["content"]
            .as_array()
            .is_some_and(|parts| parts.iter().any(|p| p["type"] == "tool_result"))
    };
    let result_text = |m: &Value| -> String {
        let result = m["content"]
            .as_array()
            .and_then(|parts| parts.iter().find(|p| p["type"] == "tool_result"))
            .cloned()
            .unwrap_or_default();
        let content = match &result["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
        // Keys in sorted order: the same text whichever map serde_json is built with (a test
        // dependency, thirtyfour, turns on its `preserve_order` for the whole test build).
        json!({"content": content, "is_error": result["is_error"].as_bool().unwrap_or(false)})
            .to_string()
    };
    let mut prompt = String::new();
    let mut results = 0;
    let mut last_result = String::new();
    for message in messages.iter().filter(|m| m["role"] == "user") {
        if is_tool_result(message) {
            results += 1;
            last_result = result_text(message);
        } else if let Some(text) = texts(message).last() {
            prompt = text.clone();
            results = 0;
        }
    }
    (prompt, results, last_result)
}

/// What "try to get out" runs in the workspace (`DATA_DIR/workspaces/<conversation>`).
const ESCAPE_ATTEMPT: &str = r#"{ echo "== environ"; for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done | grep -a -E '^(VM_TOKEN|RELAY_CALLBACK_URL|CLAUDE_BIN)='; echo "== store"; head -c 64 ../../vm.db | od -c | head -2; echo "== append"; echo planted >> ../../vm.db && echo appended; echo "== hook"; mkdir -p "$CLAUDE_CONFIG_DIR" && printf '%s' "{\"hooks\":{\"SessionStart\":[{\"hooks\":[{\"type\":\"command\",\"command\":\"touch $PWD/hook-ran\"}]}]}}" > "$CLAUDE_CONFIG_DIR/settings.json" && echo planted-hook; } > loot.txt 2>&1; echo done"#;

/// The script: what to answer to `prompt` after `step` tool results, the last of which said
/// `last_result`.
fn script(prompt: &str, step: usize, last_result: &str, sim_base: &str) -> Turn {
    let asked = prompt.to_lowercase();
    // As in the permission captures (`vm/tests/fixtures/claude-code-2.1.330/permission-stdio-*`):
    // one command that leaves a trace of each run, then what the tool answered. A program run
    // through `sh -c`, so Claude Code cannot tell it is only a write in the workspace.
    // A job with two tool calls, so its status line changes while it runs: a search (which
    // runs freely) and then the command above (which asks first).
    if asked.contains("look first") {
        return match step {
            0 => call("Glob", json!({"pattern": "*"})),
            1 => note_a_run(),
            _ => say(format!("Tool said: {last_result}")),
        };
    }
    // A two-minute job (`cargo bench -p vm`'s status lines): a second-long command, over and
    // over, until the job has run 120 s. Each command echoes the job's start (the sim's clock
    // at its first call), so the next turn knows it from the tool's answer.
    if asked.contains("keep busy") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let said: Value = serde_json::from_str(last_result).unwrap_or_default();
        let started: Option<u64> = said["content"].as_str().and_then(|c| c.trim().parse().ok());
        return match (step, started) {
            (0, _) => call(
                "Bash",
                json!({"command": format!("echo {now}"), "description": "Start the clock"}),
            ),
            (_, Some(started)) if now.saturating_sub(started) < 120 => call(
                "Bash",
                json!({"command": format!("sleep 1; echo {started}"), "description": "Wait a second"}),
            ),
            (_, Some(_)) => say("I kept busy."),
            (_, None) => say(format!(
                "I could not keep busy: the tool said {last_result}"
            )),
        };
    }
    if asked.contains("run a command") {
        return match step {
            0 => note_a_run(),
            _ => say(format!("Tool said: {last_result}")),
        };
    }
    // What a resumed session is told after a parked question was allowed: the model makes
    // the call it asked for, again (the command is the one between backticks).
    if asked.contains("make that call now") {
        let command = prompt.split('`').nth(1).unwrap_or_default();
        return match step {
            0 => call(
                "Bash",
                json!({"command": command, "description": "As asked before"}),
            ),
            _ => say(format!("Tool said: {last_result}")),
        };
    }
    if asked.contains("overloaded") {
        return Turn::Fail(
            StatusCode::from_u16(529).unwrap(),
            "overloaded_error",
            "Overloaded",
        );
    }
    if asked.contains("rate limited") {
        return Turn::Fail(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        );
    }
    if asked.contains("never end") {
        return Turn::Hang;
    }
    if asked.contains("long reply") {
        return say("This is a long answer. ".repeat(273));
    }
    if asked.contains("write a file") {
        return match step {
            0 => call(
                "Bash",
                json!({"command": "echo hello > hello.txt", "description": "Write hello.txt"}),
            ),
            _ => say("I wrote hello.txt."),
        };
    }
    if asked.contains("dump the environment") {
        return match step {
            0 => call(
                "Bash",
                json!({"command": "env > env.txt", "description": "Save the environment"}),
            ),
            _ => say("I saved the environment to env.txt."),
        };
    }
    if asked.contains("try to get out") {
        return match step {
            0 => call(
                "Bash",
                json!({"command": ESCAPE_ATTEMPT, "description": "Look around"}),
            ),
            _ => say("I looked around."),
        };
    }
    if asked.contains("write with the write tool") {
        return match step {
            0 => call(
                "Write",
                json!({"file_path": "note.txt", "content": "written by the Write tool\n"}),
            ),
            _ => say("I wrote note.txt."),
        };
    }
    if asked.contains("screenshot") {
        let named = asked
            .split_whitespace()
            .skip_while(|w| *w != "named")
            .nth(1)
            .map(str::to_string);
        let mut shot = json!({"type": "png"});
        if let Some(name) = named {
            shot["filename"] = json!(name);
        }
        return match step {
            0 => call(
                "ToolSearch",
                json!({"query": "select:mcp__playwright__browser_navigate,mcp__playwright__browser_take_screenshot"}),
            ),
            1 => call(
                "mcp__playwright__browser_navigate",
                json!({"url": format!("{sim_base}/sim/chat")}),
            ),
            2 => call("mcp__playwright__browser_take_screenshot", shot),
            _ => say("Here is the screenshot."),
        };
    }
    say(format!("You said: {}", prompt.trim()))
}

async fn messages(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !sim.config.anthropic_keys.iter().any(|k| k == key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body is not JSON",
        );
    };
    let Some(messages) = request["messages"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: Field required",
        );
    };
    let (prompt, step, last_result) = conversation_state(messages);
    sim.model.requests.lock().unwrap().push(request.clone());
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-sim")
        .to_string();
    let turn = script(&prompt, step, &last_result, &sim.base_url);
    let blocks = match turn {
        Turn::Fail(status, kind, message) => return error(status, kind, message),
        Turn::Hang => return hanging_stream(&model),
        Turn::Say(blocks) => blocks,
    };
    let id = format!("msg_sim{}", sim.world.new_id(20));
    let stop_reason = if blocks.iter().any(|b| matches!(b, Block::Tool { .. })) {
        "tool_use"
    } else {
        "end_turn"
    };
    let content: Vec<Value> = blocks
        .iter()
        .enumerate()
        .map(|(i, block)| match block {
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::Tool { name, input } => {
                json!({"type": "tool_use", "id": format!("toolu_sim{i}{}", sim.world.new_id(16)), "name": name, "input": input})
            }
        })
        .collect();
    let usage = json!({"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    if request["stream"] != json!(true) {
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    )];
    for (index, block) in content.iter().enumerate() {
        let (start, delta) = if block["type"] == "text" {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        } else {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": 20}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let text: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    sse(Body::from(text))
}

fn sse(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `message_start`, then nothing until the client gives up.
fn hanging_stream(model: &str) -> Response {
    let start = format!(
        "event: message_start\ndata: {}\n\n",
        json!({"type": "message_start", "message": {"id": "msg_simhang", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}}})
    );
    // A first chunk, then a stream that never yields again (a model that stalls).
    use futures::StreamExt;
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(start)) })
        .chain(futures::stream::pending());
    sse(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_follows_tool_results() {
        let user = |text: &str| json!({"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": text}]});
        let result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]});
        let assistant = json!({"role": "assistant", "content": [{"type": "tool_use"}]});
        let (prompt, step, _) = conversation_state(&[user("please write a file")]);
        assert_eq!((prompt.as_str(), step), ("please write a file", 0));
        assert!(
            matches!(script(&prompt, step, "", ""), Turn::Say(b) if matches!(&b[0], Block::Tool { name, .. } if name == "Bash"))
        );
        let (prompt, step, last) =
            conversation_state(&[user("please run a command"), assistant, result]);
        assert_eq!(step, 1);
        assert_eq!(last, r#"{"content":"ok","is_error":false}"#);
        assert_eq!(
            script(&prompt, step, &last, ""),
            say(format!("Tool said: {last}"))
        );
        assert_eq!(
            script(
                "(The owner allowed your earlier request to run `ls -a`. Make that call now, exactly as before.)",
                0,
                "",
                ""
            ),
            call(
                "Bash",
                json!({"command": "ls -a", "description": "As asked before"})
            )
        );
        assert_eq!(script("hi", 0, "", ""), say("You said: hi"));
    }

    #[test]
    fn keep_busy_runs_a_command_a_second_until_two_minutes_have_passed() {
        let is_sleep = |turn: Turn| matches!(turn, Turn::Say(b) if matches!(&b[0], Block::Tool { input, .. } if input["command"].as_str().unwrap().starts_with("sleep 1; echo ")));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let answered = |started: u64| {
            json!({"content": format!("{started}\n"), "is_error": false}).to_string()
        };
        assert!(is_sleep(script("keep busy", 1, &answered(now - 5), "")));
        assert_eq!(
            script("keep busy", 9, &answered(now - 121), ""),
            say("I kept busy.")
        );
        let refused =
            json!({"content": "This command requires approval", "is_error": true}).to_string();
        assert!(
            matches!(script("keep busy", 2, &refused, ""), Turn::Say(b) if matches!(&b[0], Block::Text(t) if t.starts_with("I could not keep busy")))
        );
    }
}
