//! One agent process: Claude Code started once per conversation in streaming-input mode
//! (`AGENT_CMD -p --input-format stream-json --output-format stream-json --verbose
//! --mcp-config <file>`, the conversation's [`Mode`]'s permission flags, `[--resume <id>]`),
//! then fed one user message per
//! job on stdin. Between jobs it waits, warm, in [`crate::agents`], so the next message reaches
//! the model without paying the CLI's and the MCP server's start-up again. It runs in its own
//! process group: a cancel, a timeout or an eviction kills everything it started (browsers,
//! MCP servers).
//!
//! What the real CLI needs and does (Claude Code 2.1.330, `vm/tests/fixtures/claude-code-2.1.330/`):
//! - the message as a stream-json line on stdin (`{"type":"user","message":{…}}`), never on
//!   the command line, so text starting with `-` is never read as an option;
//! - permissions decided up front or asked for: in `-p` mode a tool without permission is
//!   refused and the run still "succeeds" with `permission_denials` filled. In `auto`
//!   `--allowedTools` allows them (it works as root; `bypassPermissions` is refused as root);
//!   in `ask` `--permission-prompt-tool stdio` makes the CLI write a `can_use_tool` request and
//!   wait for the answer on stdin ([`crate::approvals`]), as root too;
//! - one `system/init` and one `result` line per message; the result's `total_cost_usd` counts
//!   from the process's start, so a turn's cost is the difference from the previous result;
//! - an environment with only what the agent needs: it never sees `VM_TOKEN` or the relay's
//!   callback URL, so a prompt injection that prints the environment cannot post as the bot.

use crate::approvals::{Mode, Verdict};
use crate::config::Config;
use crate::stream::{AgentResult, PermissionRequest, StreamEvent, parse_line, permission_answer};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

/// Decides the tool calls the CLI asks about ([`crate::approvals::AskOwners`] in the vm).
pub trait Approve: Sync {
    fn decide<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>>;
}

/// How one message's turn ended.
#[derive(Debug)]
pub enum Outcome {
    /// The turn's result; `total_cost_usd` is this turn's own cost.
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
    /// A question went unanswered for `APPROVAL_WAIT_SECS`: the process must end, and the
    /// answer, whenever it comes, resumes the session.
    Parked,
}

/// The tools the agent may use without asking (nobody can answer a prompt in `-p` mode):
/// editing files, running commands, the web, and every Playwright MCP tool.
pub const ALLOWED_TOOLS: &str = "Bash,Edit,Write,NotebookEdit,WebFetch,WebSearch,mcp__playwright";

/// In `ask`: file edits within the working directory (`./**`, Claude Code's rule syntax for a
/// path below the current directory), which is the conversation's workspace.
pub const WORKSPACE_EDITS: &str = "Edit(./**),Write(./**),NotebookEdit(./**)";

/// Variables of the vm's own environment the agent inherits; everything else is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"];

/// How much of the agent's stderr is kept to explain a failure.
const STDERR_TAIL: usize = 2000;

/// Where and how to start an agent process for one conversation.
pub struct Start<'a> {
    pub config: &'a Config,
    pub resume: Option<&'a str>,
    pub workspace: &'a Path,
    /// Where Playwright MCP writes screenshots.
    pub image_dir: &'a Path,
    pub mode: Mode,
    /// The conversation's "always allow" rules (`Bash(git status)`), for `ask`.
    pub rules: &'a [String],
}

/// A running agent process, between messages or during one.
pub struct Process {
    child: Child,
    group: Option<i32>,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<String>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    /// The session it works in: the one it resumed, then the one its output names.
    session: Option<String>,
    resumed: bool,
    /// `total_cost_usd` of its last result (the CLI counts from the process's start).
    cost_so_far: f64,
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

/// The command line and environment of an agent process.
fn command(start: &Start<'_>, mcp_file: &Path) -> std::io::Result<tokio::process::Command> {
    let config = start.config;
    let (program, fixed_args) = config
        .agent_cmd
        .split_first()
        .expect("AGENT_CMD is not empty");
    let mut command = tokio::process::Command::new(program);
    command
        .args(fixed_args)
        .args([
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--strict-mcp-config",
            "--mcp-config",
        ])
        .arg(mcp_file);
    match start.mode {
        Mode::Auto => {
            command.args(["--allowedTools", ALLOWED_TOOLS]);
        }
        // Edits inside the working directory (the workspace) go through, and so does what
        // Claude Code's default mode allows (reading, searching); everything else is asked
        // for on stdout, every shell command included.
        Mode::Ask => {
            let mut allowed = vec![WORKSPACE_EDITS.to_string()];
            allowed.extend(start.rules.iter().cloned());
            command
                .args(["--permission-prompt-tool", "stdio"])
                .args(["--allowedTools", &allowed.join(",")]);
        }
    }
    if let Some(session) = start.resume {
        command.args(["--resume", session]);
    }
    command
        .current_dir(start.workspace)
        .env_clear()
        .envs(
            INHERITED_ENV
                .iter()
                .filter_map(|name| Some((name, std::env::var_os(name)?))),
        )
        .env("CLAUDE_CONFIG_DIR", config.data_dir.join("claude"))
        .env("HOME", config.data_dir.join("home"))
        .stdin(Stdio::piped())
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
    let home = config.data_dir.join("home");
    // Its own temporary folder: nothing it leaves there is shared with the machine's other
    // users (Playwright keeps its browser's socket in one), and nothing of theirs in its way.
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    command.env("TMPDIR", &tmp);
    if let Some(agent) = &config.agent_user {
        agent.give(&home)?;
        agent.give(&tmp)?;
        agent.confine(&mut command);
    }
    if let Some(token) = &config.github_token {
        // git asks this helper for credentials; the token stays in the environment, not on disk.
        let git_config = config.data_dir.join("home/.gitconfig");
        std::fs::write(
            &git_config,
            "[credential \"https://github.com\"]\n\thelper = \"!f() { echo username=x-access-token; echo password=$GITHUB_TOKEN; }; f\"\n",
        )?;
        command.env("GITHUB_TOKEN", token).env("GH_TOKEN", token);
    }
    Ok(command)
}

impl Process {
    /// Starts the agent; it waits for its first message.
    pub fn start(start: Start<'_>) -> std::io::Result<Process> {
        std::fs::create_dir_all(start.workspace)?;
        std::fs::create_dir_all(start.image_dir)?;
        if let Some(agent) = &start.config.agent_user {
            agent.give(start.workspace)?;
            agent.give(start.image_dir)?;
        }
        // Outside the agent's folders: it reads its MCP servers, and cannot change them.
        let configs = start.config.data_dir.join("agent-config");
        std::fs::create_dir_all(&configs)?;
        let mcp_file = configs.join(format!(
            "{}.json",
            start
                .image_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        std::fs::write(
            &mcp_file,
            mcp_config(start.image_dir, start.config.chromium_path.as_deref()).to_string(),
        )?;
        let mut child = command(&start, &mcp_file)?.spawn()?;
        let group = child.id().map(|pid| pid as i32);
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        let tail = stderr_tail.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                tail.push_str(&String::from_utf8_lossy(&chunk[..n]));
                if tail.len() > 2 * STDERR_TAIL {
                    let cut = tail.ceil_char_boundary(tail.len() - STDERR_TAIL);
                    tail.drain(..cut);
                }
            }
        });
        Ok(Process {
            child,
            group,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr_tail,
            stderr_reader: Some(stderr_reader),
            session: start.resume.map(str::to_string),
            resumed: start.resume.is_some(),
            cost_so_far: 0.0,
        })
    }

    /// The session this process works in, once known.
    /// Whether the process is still running: a warm one can exit while it waits (the CLI
    /// crashed, or was killed), and is no use for the next message.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The process's id (its process group's too).
    pub fn pid(&self) -> Option<u32> {
        self.group.map(|g| g as u32)
    }

    /// Sends one message and reads until its result; reports the session id as soon as it is
    /// known (`on_session`) and each tool call (`on_tool`), and asks `approve` about each tool
    /// call the CLI waits on. After
    /// anything but `Finished` the process is finished too: drop it.
    pub async fn turn(
        &mut self,
        prompt: &str,
        timeout: Duration,
        cancel: &mut oneshot::Receiver<()>,
        mut on_session: impl FnMut(&str),
        approve: &dyn Approve,
        on_tool: &(dyn Fn(&str, &serde_json::Value) + Sync),
    ) -> Outcome {
        let line = serde_json::json!({
            "type": "user",
            "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
        });
        let sent = async {
            self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
            self.stdin.flush().await
        };
        if sent.await.is_err() {
            // It is gone already (Claude Code answers an unknown `--resume` id before it reads
            // any input, then exits): what it printed on the way out is still to be read below,
            // and explains why.
            tracing::debug!("the agent closed its input before the message was written");
        }
        let mut result = None;
        let mut parked = false;
        let session = &mut self.session;
        let lines = &mut self.lines;
        let stdin = &mut self.stdin;
        let reading = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(&line) {
                    Ok(StreamEvent::Init { session_id }) => {
                        on_session(&session_id);
                        *session = Some(session_id);
                    }
                    Ok(StreamEvent::Result(r)) => {
                        if let Some(id) = &r.session_id {
                            on_session(id);
                            *session = Some(id.clone());
                        }
                        result = Some(r);
                        return;
                    }
                    Ok(StreamEvent::ToolUse(tools)) => {
                        for (name, input) in &tools {
                            on_tool(name, input);
                        }
                    }
                    Ok(StreamEvent::PermissionRequest(request)) => {
                        let line = match approve.decide(&request).await {
                            Verdict::Allow { rules } => {
                                permission_answer(&request.request_id, Ok((&request.input, &rules)))
                            }
                            Verdict::Deny(message) => {
                                permission_answer(&request.request_id, Err(&message))
                            }
                            Verdict::Park => {
                                parked = true;
                                return;
                            }
                        };
                        let written = async {
                            stdin.write_all(format!("{line}\n").as_bytes()).await?;
                            stdin.flush().await
                        };
                        if written.await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!("ignoring a line from the agent: {error}"),
                }
            }
        };
        tokio::select! {
            _ = reading => {}
            _ = tokio::time::sleep(timeout) => return Outcome::TimedOut,
            _ = cancel => return Outcome::Cancelled,
        }
        if parked {
            return Outcome::Parked;
        }
        match result {
            // The CLI says so in its result line (`error_during_execution`, "No conversation
            // found with session ID: …") and exits 1.
            Some(result)
                if self.resumed
                    && result.is_error
                    && result
                        .errors
                        .iter()
                        .any(|e| e.contains("No conversation found")) =>
            {
                Outcome::UnknownSession
            }
            Some(mut result) => {
                let total = result.total_cost_usd;
                result.total_cost_usd = (total - self.cost_so_far).max(0.0);
                self.cost_so_far = total;
                Outcome::Finished(result)
            }
            None => {
                let outcome = self.failed().await;
                match outcome {
                    Outcome::Failed {
                        ref stderr_tail, ..
                    } if self.resumed && stderr_tail.contains("No conversation found") => {
                        Outcome::UnknownSession
                    }
                    outcome => outcome,
                }
            }
        }
    }

    fn kill_group(&self) {
        if let Some(pgid) = self.group {
            // SAFETY: kill(2) with a negative pid signals the process group we created; no
            // memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    /// The process ended (or could not be written to): its exit code and last words.
    async fn failed(&mut self) -> Outcome {
        let code = match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        };
        // What it started may hold its stderr open: end them, then read what is left.
        self.kill_group();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let start = tail.ceil_char_boundary(tail.len().saturating_sub(STDERR_TAIL));
        Outcome::Failed {
            code,
            stderr_tail: tail[start..].to_string(),
        }
    }
}

impl Drop for Process {
    /// Whatever the agent started goes with it.
    fn drop(&mut self) {
        self.kill_group();
    }
}
