//! Running the agent once: `AGENT_CMD -p --output-format stream-json --verbose
//! --mcp-config <file> --allowedTools <list> [--resume <id>] -- <text>` in the conversation's
//! workspace, in its own process group so a cancel or timeout kills everything it started
//! (browsers, MCP servers).
//!
//! What the real CLI needs (Claude Code 2.1.330, `vm/tests/fixtures/claude-code-2.1.330/`):
//! - every option before `--` and the text after it, or a message starting with `-` is read
//!   as an option ("- list the files" → "unknown option");
//! - tools allowed up front: in `-p` mode a tool without permission is refused and the run
//!   still "succeeds" with `permission_denials` filled. `--allowedTools` works as root too
//!   (`--permission-mode bypassPermissions` is refused as root), so the image and the tests,
//!   which run as root, use the same flags;
//! - an environment with only what the agent needs: it never sees `VM_TOKEN` or the relay's
//!   callback URL, so a prompt injection that prints the environment cannot post as the bot.

use crate::config::Config;
use crate::stream::{AgentResult, StreamEvent, parse_line};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::oneshot;

/// How one run ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(AgentResult),
    /// `--resume` named a session Claude Code does not have.
    UnknownSession,
    /// The process ended without a result line.
    Failed {
        code: Option<i32>,
        stderr_tail: String,
    },
    TimedOut,
    Cancelled,
}

/// The tools the agent may use without asking (nobody can answer a prompt in `-p` mode):
/// editing files, running commands, the web, and every Playwright MCP tool.
pub const ALLOWED_TOOLS: &str = "Bash,Edit,Write,NotebookEdit,WebFetch,WebSearch,mcp__playwright";

/// Variables of the vm's own environment the agent inherits; everything else is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"];

pub struct Run<'a> {
    pub config: &'a Config,
    pub prompt: &'a str,
    pub resume: Option<&'a str>,
    pub workspace: &'a Path,
    /// Where Playwright MCP writes screenshots.
    pub image_dir: &'a Path,
    pub cancel: &'a mut oneshot::Receiver<()>,
}

/// The MCP configuration: Playwright in headless, isolated mode, writing into `image_dir`.
fn mcp_config(image_dir: &Path, chromium: Option<&str>) -> serde_json::Value {
    let mut args = vec![
        serde_json::json!("@playwright/mcp"),
        "--headless".into(),
        "--isolated".into(),
        "--no-sandbox".into(),
        "--output-dir".into(),
        serde_json::json!(image_dir),
    ];
    if let Some(path) = chromium {
        args.extend(["--executable-path".into(), serde_json::json!(path)]);
    }
    serde_json::json!({"mcpServers": {"playwright": {"command": "npx", "args": args}}})
}

/// Runs the agent and reports the session id as soon as it is known (`on_session`).
pub async fn run(run: Run<'_>, mut on_session: impl FnMut(&str)) -> std::io::Result<Outcome> {
    let Run {
        config,
        prompt,
        resume,
        workspace,
        image_dir,
        cancel,
    } = run;
    std::fs::create_dir_all(workspace)?;
    std::fs::create_dir_all(image_dir)?;
    let mcp_file = image_dir.join("mcp.json");
    std::fs::write(
        &mcp_file,
        mcp_config(image_dir, config.chromium_path.as_deref()).to_string(),
    )?;

    let (program, fixed_args) = config
        .agent_cmd
        .split_first()
        .expect("AGENT_CMD is not empty");
    let mut command = tokio::process::Command::new(program);
    command
        .args(fixed_args)
        .args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--strict-mcp-config",
            "--mcp-config",
        ])
        .arg(&mcp_file)
        .args(["--allowedTools", ALLOWED_TOOLS]);
    if let Some(session) = resume {
        command.args(["--resume", session]);
    }
    command
        .args(["--", prompt])
        .current_dir(workspace)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .env("CLAUDE_CONFIG_DIR", config.data_dir.join("claude"))
        .env("HOME", config.data_dir.join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(chromium) = &config.chromium_path {
        command.env("CHROMIUM_PATH", chromium);
    }
    if let Some(key) = &config.anthropic_api_key {
        command.env("ANTHROPIC_API_KEY", key);
    }
    if let Some(base) = &config.anthropic_base_url {
        command.env("ANTHROPIC_BASE_URL", base);
    }
    // No telemetry, update checks or other calls beside the model's: the agent talks to
    // Anthropic's API and to what its tools reach, nothing else.
    command.env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    std::fs::create_dir_all(config.data_dir.join("home"))?;
    if let Some(token) = &config.github_token {
        // git asks this helper for credentials; the token stays in the environment, not on disk.
        let git_config = config.data_dir.join("home/.gitconfig");
        std::fs::write(
            &git_config,
            "[credential \"https://github.com\"]\n\thelper = \"!f() { echo username=x-access-token; echo password=$GITHUB_TOKEN; }; f\"\n",
        )?;
        command.env("GITHUB_TOKEN", token).env("GH_TOKEN", token);
    }

    let mut child = command.spawn()?;
    let group = child.id().map(|pid| pid as i32);
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_task = tokio::spawn(async move {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer).await;
        let text = String::from_utf8_lossy(&buffer).into_owned();
        let start = text.len().saturating_sub(2000);
        text[text.ceil_char_boundary(start)..].to_string()
    });

    let mut lines = BufReader::new(stdout).lines();
    let mut result = None;
    let reading = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(&line) {
                Ok(StreamEvent::Init { session_id }) => on_session(&session_id),
                Ok(StreamEvent::Result(r)) => {
                    if let Some(id) = &r.session_id {
                        on_session(id);
                    }
                    result = Some(r);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("ignoring a line from the agent: {error}"),
            }
        }
    };
    let ended = tokio::select! {
        _ = reading => None,
        _ = tokio::time::sleep(config.agent_timeout) => Some(Outcome::TimedOut),
        _ = cancel => Some(Outcome::Cancelled),
    };
    if let Some(outcome) = ended {
        kill_group(group);
        let _ = child.wait().await;
        return Ok(outcome);
    }
    let status = child.wait().await?;
    // Whatever the agent left running in its group goes with it.
    kill_group(group);
    let stderr_tail = stderr_task.await.unwrap_or_default();
    Ok(match result {
        // The CLI says so in its result line (`error_during_execution`, "No conversation
        // found with session ID: …") and exits 1.
        Some(result)
            if resume.is_some()
                && result.is_error
                && result
                    .errors
                    .iter()
                    .any(|e| e.contains("No conversation found")) =>
        {
            Outcome::UnknownSession
        }
        Some(result) => Outcome::Finished(result),
        None if resume.is_some() && stderr_tail.contains("No conversation found") => {
            Outcome::UnknownSession
        }
        None => Outcome::Failed {
            code: status.code(),
            stderr_tail,
        },
    })
}

fn kill_group(group: Option<i32>) {
    if let Some(pgid) = group {
        // SAFETY: kill(2) with a negative pid signals the process group we created; no memory
        // is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}
