//! `textslash-demo-agent`: a stand-in for `claude` that speaks the same command line and
//! `stream-json` (messages in on stdin, one result out per message), for the demo (no Anthropic key needed) and the vm's tests. Every reply says
//! it comes from the demo agent, so nobody mistakes it for Claude.
//!
//! It echoes the prompt; a prompt with "screenshot" writes a PNG into the Playwright output
//! folder named in `--mcp-config`. Sessions are remembered in `.demo-agent-sessions` in the
//! working directory, so `--resume` with an unknown id fails exactly as Claude Code does.
//! For tests, a prompt starting with one of these misbehaves on cue: `#replay` (prints the
//! real capture from `DEMO_AGENT_CAPTURE`), `#slow`, `#hang`, `#error`, `#huge`, `#denied`
//! (a result with `permission_denials`, as Claude Code reports a refused tool),
//! `#malformed`, `#exit3`.

use std::io::Write;
use std::time::Duration;

const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
/// The sessions it knows, where Claude Code keeps its own: the configuration folder the vm
/// gives it (`CLAUDE_CONFIG_DIR`), never the workspace, whose files are the user's work.
fn sessions_file() -> std::path::PathBuf {
    let dir = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let _ = std::fs::create_dir_all(&dir);
    dir.join(".demo-agent-sessions")
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn output_dir(args: &[String]) -> Option<std::path::PathBuf> {
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(flag(args, "--mcp-config")?).ok()?).ok()?;
    let list = config["mcpServers"]["playwright"]["args"].as_array()?;
    let i = list.iter().position(|a| a == "--output-dir")?;
    Some(list.get(i + 1)?.as_str()?.into())
}

/// The text of a stream-json user line (`{"type":"user","message":{"content":…}}`), whose
/// content is a string or a list of text blocks.
fn prompt_of(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let content = &value["message"]["content"];
    if let Some(text) = content.as_str() {
        return Some(text.to_string());
    }
    let parts: Vec<&str> = content
        .as_array()?
        .iter()
        .filter_map(|part| part["text"].as_str())
        .collect();
    Some(parts.join("\n"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One line per turn, holding the session id: turns of a session = lines with its id.
    let known = std::fs::read_to_string(sessions_file()).unwrap_or_default();
    let session = match flag(&args, "--resume") {
        Some(id) if known.lines().any(|l| l == id) => id,
        Some(id) => {
            // What Claude Code 2.1.330 prints for an unknown id
            // (tests/fixtures/claude-code-2.1.330/resume-unknown.stream.jsonl), then exit 1.
            emit(
                serde_json::json!({"type": "result", "subtype": "error_during_execution",
                "is_error": true, "session_id": id, "total_cost_usd": 0, "permission_denials": [],
                "errors": [format!("No conversation found with session ID: {id}")]}),
            );
            std::process::exit(1);
        }
        None => new_session_id(),
    };
    // Like Claude Code with `--input-format stream-json`: one user message per stdin line,
    // one result per message, until stdin closes.
    let mut cost_so_far = 0.0;
    for (message_number, line) in std::io::stdin().lines().map_while(Result::ok).enumerate() {
        let Some(prompt) = prompt_of(&line) else {
            continue;
        };
        cost_so_far += 0.0123;
        answer(&args, &session, &prompt, message_number + 1, cost_so_far);
    }
}

/// What a prompt-injected agent could leave for the vm to send as "images": links to a file
/// it cannot read itself (`target`), in both folders the vm looks in, a FIFO that would block
/// a reader, one too large to send, and one honest picture.
fn plant_images(args: &[String], target: &str) {
    let workspace = std::env::current_dir().unwrap_or_default();
    let _ = std::os::unix::fs::symlink(target, workspace.join("leak.png"));
    let _ = std::fs::write(workspace.join("big.png"), vec![0u8; 11 * 1024 * 1024]);
    let _ = std::process::Command::new("mkfifo")
        .arg(workspace.join("pipe.png"))
        .status();
    let _ = std::fs::write(workspace.join("fine.png"), PNG_1X1);
    if let Some(dir) = output_dir(args) {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::os::unix::fs::symlink(target, dir.join("also-leak.png"));
    }
}

/// One turn: a reply to `prompt`, or the misbehaviour it asks for.
fn answer(args: &[String], session: &str, prompt: &str, message_number: usize, cost: f64) {
    let known = std::fs::read_to_string(sessions_file()).unwrap_or_default();
    let turns = known.lines().filter(|l| *l == session).count();
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sessions_file())
        .and_then(|mut f| writeln!(f, "{session}"));

    if prompt.starts_with("#replay") {
        let capture =
            std::env::var("DEMO_AGENT_CAPTURE").expect("DEMO_AGENT_CAPTURE names the capture file");
        print!(
            "{}",
            std::fs::read_to_string(capture).expect("capture readable")
        );
        let _ = std::io::stdout().flush();
        return;
    }
    if prompt.starts_with("#exit3") {
        eprintln!("demo agent: failing on purpose");
        std::process::exit(3);
    }
    emit(
        serde_json::json!({"type": "system", "subtype": "init", "session_id": session, "model": "demo-agent", "tools": [], "cwd": std::env::current_dir().unwrap_or_default()}),
    );
    if prompt.starts_with("#malformed") {
        println!("this is not json");
        println!("{{\"type\": ");
        emit(serde_json::json!({"type": "rate_limit_event", "info": {}}));
    }
    if prompt.starts_with("#slow") {
        std::thread::sleep(Duration::from_secs(2));
    }
    if prompt.starts_with("#hang") {
        // A child in the same process group, to prove cancel and timeout kill the whole group.
        let _ = std::process::Command::new("sleep").arg("3600").spawn();
        std::thread::sleep(Duration::from_secs(3600));
    }
    if let Some(target) = prompt.strip_prefix("#plant ") {
        plant_images(args, target.trim());
    }
    if prompt.contains("screenshot")
        && let Some(dir) = output_dir(args)
    {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("page-demo.png"), PNG_1X1);
    }
    let text = if prompt.starts_with("#huge") {
        "lorem ipsum dolor sit amet ".repeat(8000)
    } else {
        let picture = if prompt.contains("screenshot") {
            " Here is a (tiny, blank) screenshot."
        } else {
            ""
        };
        format!(
            "[demo agent, not Claude] You said: {prompt}{picture} (turn {} of this session, message {message_number} of process {})",
            turns + 1,
            std::process::id()
        )
    };
    emit(
        serde_json::json!({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}, "session_id": session}),
    );
    let is_error = prompt.starts_with("#error");
    emit(serde_json::json!({
        "type": "result",
        "subtype": "success",
        "is_error": is_error,
        "api_error_status": if is_error { serde_json::json!(529) } else { serde_json::Value::Null },
        "result": if is_error { String::new() } else { text },
        "session_id": session,
        // Like Claude Code's: counted from the process's start.
        "total_cost_usd": cost,
        "permission_denials": if prompt.starts_with("#denied") {
            serde_json::json!([{"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {}},
                               {"tool_name": "Bash", "tool_use_id": "t2", "tool_input": {}},
                               {"tool_name": "Write", "tool_use_id": "t3", "tool_input": {}}])
        } else {
            serde_json::json!([])
        },
    }));
}
