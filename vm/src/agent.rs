//! Running the agent once: `AGENT_CMD -p <text> --output-format stream-json --verbose
//! [--resume <id>] --mcp-config <file>` in the conversation's workspace, in its own process
//! group so a cancel or timeout kills everything it started (browsers, MCP servers).

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
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--strict-mcp-config",
            "--mcp-config",
        ])
        .arg(&mcp_file)
        .current_dir(workspace)
        .env("CLAUDE_CONFIG_DIR", config.data_dir.join("claude"))
        .env("HOME", config.data_dir.join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(session) = resume {
        command.args(["--resume", session]);
    }
    if let Some(key) = &config.anthropic_api_key {
        command.env("ANTHROPIC_API_KEY", key);
    }
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
