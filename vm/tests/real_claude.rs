//! The vm running the real Claude Code CLI (`CLAUDE_BIN`, installed by `cargo xtask install`
//! at the version `deploy/vm.Dockerfile` pins) against the sim's fake Messages API, offline.
//! `cargo xtask test` runs these (`--ignored`, since they need the CLI).
//!
//! The agent runs with the flags the image uses (`--allowedTools`, which Claude Code accepts
//! as root too), so these tests, which run as root, exercise exactly what production does.

use contract::protocol::{Answer, Callback, CallbackKind, Decision, VmMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "vm-real-claude-token";

/// A relay stand-in that keeps every callback but typing, status lines apart.
#[derive(Clone, Default)]
struct Relay {
    replies: Arc<Mutex<Vec<Callback>>>,
    statuses: Arc<Mutex<Vec<Callback>>>,
}

impl Relay {
    async fn start() -> (Relay, String) {
        let relay = Relay::default();
        let state = relay.clone();
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::post(move |axum::Json(callback): axum::Json<Callback>| {
                let relay = state.clone();
                async move {
                    // Typing and status lines are best effort and come at any time.
                    if callback.kind == CallbackKind::Status {
                        relay.statuses.lock().unwrap().push(callback);
                    } else if callback.kind != CallbackKind::Typing {
                        let mut replies = relay.replies.lock().unwrap();
                        if !replies.iter().any(|r| r.id == callback.id) {
                            replies.push(callback);
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (relay, url)
    }

    /// Waits for the `count`-th reply in `conversation` (up to `within`).
    async fn reply(&self, conversation: &str, count: usize, within: Duration) -> Callback {
        let started = Instant::now();
        loop {
            let replies: Vec<Callback> = self
                .replies
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.conversation == conversation)
                .cloned()
                .collect();
            if replies.len() >= count {
                return replies[count - 1].clone();
            }
            assert!(
                started.elapsed() < within,
                "no reply #{count} in {conversation}: {replies:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct World {
    sim: sim::SimHandle,
    relay: Relay,
    vm_url: String,
    data: tempfile::TempDir,
    env: HashMap<String, String>,
    vm: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl World {
    async fn start(extra: &[(&str, &str)]) -> World {
        let data = tempfile::tempdir().unwrap();
        // Fenced as in the image: the agent runs as its own user, which must be able to pass
        // through to its folders below this one.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let agent_user = std::env::var("TEXTSLASH_TEST_AGENT_USER")
            .expect("TEXTSLASH_TEST_AGENT_USER: cargo xtask test sets it (and creates the user)");
        let sim = sim::start(
            sim::SimConfig::new(data.path().join("sim")),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let (relay, callback_url) = Relay::start().await;
        let claude = std::env::var("CLAUDE_BIN").expect("CLAUDE_BIN: cargo xtask test sets it");
        let mut env: HashMap<String, String> = HashMap::from([
            ("VM_TOKEN".to_string(), TOKEN.to_string()),
            ("RELAY_CALLBACK_URL".into(), callback_url),
            (
                "DATA_DIR".into(),
                data.path().join("vm").display().to_string(),
            ),
            ("AGENT_CMD".into(), claude),
            ("ANTHROPIC_API_KEY".into(), sim::SIM_ANTHROPIC_KEY.into()),
            (
                "ANTHROPIC_BASE_URL".into(),
                format!("{}/anthropic", sim.base_url()),
            ),
            ("HEARTBEAT_MS".into(), "1000".into()),
            ("IDLE_TIMEOUT_SECS".into(), "600".into()),
            ("AGENT_USER".into(), agent_user),
        ]);
        for (name, value) in extra {
            env.insert(name.to_string(), value.to_string());
        }
        let (vm_url, vm, stop) = start_vm(&env).await;
        World {
            sim,
            relay,
            vm_url,
            data,
            env,
            vm,
            _stop: stop,
        }
    }

    /// The machine started again on the same volume, as Fly does on the next request.
    async fn restart_vm(&mut self) {
        let (vm_url, vm, stop) = start_vm(&self.env).await;
        self.vm_url = vm_url;
        self.vm = vm;
        self._stop = stop;
    }

    /// The conversation's workspace (`DATA_DIR/workspaces/<conversation, made a name>`).
    fn workspace_of(&self, conversation: &str) -> std::path::PathBuf {
        self.data
            .path()
            .join("vm/workspaces")
            .join(conversation.replace(':', "_"))
    }

    async fn send(&self, id: &str, conversation: &str, text: &str) {
        self.deliver(VmMessage {
            id: id.into(),
            conversation: conversation.into(),
            sender: conversation.into(),
            text: text.into(),
            images: vec![],
            answer: None,
        })
        .await
    }

    /// An owner's answer, as the relay forwards a tap.
    async fn answer(&self, id: &str, conversation: &str, question: &str, decision: Decision) {
        self.deliver(VmMessage {
            id: id.into(),
            conversation: conversation.into(),
            sender: conversation.into(),
            text: decision.label().into(),
            images: vec![],
            answer: Some(Answer {
                question: question.into(),
                decision,
            }),
        })
        .await
    }

    async fn deliver(&self, message: VmMessage) {
        let started = Instant::now();
        loop {
            let answer = reqwest::Client::new()
                .post(format!("{}/messages", self.vm_url))
                .bearer_auth(TOKEN)
                .json(&message)
                .send()
                .await;
            if let Ok(answer) = answer {
                assert!(answer.status().is_success(), "{}", answer.status());
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the vm never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The workspace of the one conversation this world has had.
    fn workspace(&self) -> std::path::PathBuf {
        let dirs: Vec<_> = std::fs::read_dir(self.data.path().join("vm/workspaces"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    }

    /// The user texts the model saw, in order.
    fn prompts(&self) -> Vec<String> {
        self.sim
            .sim
            .model
            .requests()
            .iter()
            .flat_map(|r| r["messages"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["role"] == "user")
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    }
}

async fn start_vm(
    env: &HashMap<String, String>,
) -> (
    String,
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let config = vm::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vm_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let vm = tokio::spawn(async move {
        vm::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (vm_url, vm, stop)
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn the_agent_runs_tools_and_its_files_stay_in_the_workspace() {
    let world = World::start(&[]).await;
    world
        .send("m1", "telegram:1", "please write a file for me")
        .await;
    let reply = world.relay.reply("telegram:1", 1, LONG).await;
    assert_eq!(
        reply.text, "I wrote hello.txt.\n\n1 file changed, +1 −0 (/diff shows them)",
        "{reply:?}"
    );
    let file = world.workspace().join("hello.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "hello");
    // The model's requests carried the key to the sim and nothing of the vm's own secrets.
    let requests = world.sim.sim.model.requests();
    assert!(requests.len() >= 2, "a tool call and its result");
    assert!(!serde_json::to_string(&requests).unwrap().contains(TOKEN));
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_message_starting_with_a_dash_is_text_and_a_session_carries_on() {
    let world = World::start(&[]).await;
    world.send("d1", "telegram:2", "- list the files").await;
    let first = world.relay.reply("telegram:2", 1, LONG).await;
    assert_eq!(first.text, "You said: - list the files");
    world.send("d2", "telegram:2", "--version").await;
    let second = world.relay.reply("telegram:2", 2, LONG).await;
    assert_eq!(second.text, "You said: --version");
    // The second run resumed the first: the model saw both messages in one conversation.
    let last = world.sim.sim.model.requests().last().cloned().unwrap();
    let texts = serde_json::to_string(&last["messages"]).unwrap();
    assert!(
        texts.contains("- list the files") && texts.contains("--version"),
        "{texts}"
    );
    assert!(world.prompts().iter().any(|p| p == "--version"));
    // Both went to one process, which now waits for the next message.
    let health: serde_json::Value = reqwest::get(format!("{}/health", world.vm_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["warm_agents"], 1, "{health}");
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn an_unknown_session_starts_afresh_with_a_note() {
    // No warm processes: each message starts the CLI with --resume, as after a vm restart.
    let world = World::start(&[("WARM_AGENTS", "0")]).await;
    world.send("u1", "telegram:3", "hello").await;
    world.relay.reply("telegram:3", 1, LONG).await;
    // The CLI's own record of the session goes (a wiped config folder, say).
    std::fs::remove_dir_all(world.data.path().join("vm/claude/projects")).unwrap();
    world.send("u2", "telegram:3", "are you there").await;
    let reply = world.relay.reply("telegram:3", 2, LONG).await;
    assert!(
        reply
            .text
            .starts_with("(Your previous session could not be found"),
        "{}",
        reply.text
    );
    assert!(
        reply.text.ends_with("You said: are you there"),
        "{}",
        reply.text
    );
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_model_error_gives_a_sentence_and_a_stuck_run_times_out() {
    let world = World::start(&[("AGENT_TIMEOUT_SECS", "20")]).await;
    world.send("e1", "telegram:4", "are you overloaded").await;
    let reply = world.relay.reply("telegram:4", 1, LONG).await;
    assert_eq!(
        reply.text,
        "Anthropic's API is overloaded right now. Try again in a minute."
    );
    world.send("e2", "telegram:5", "never end this").await;
    let stuck = world.relay.reply("telegram:5", 1, LONG).await;
    assert!(stuck.text.contains("ran out of time"), "{}", stuck.text);
    // And the vm still serves.
    world.send("e3", "telegram:5", "still there").await;
    let after = world.relay.reply("telegram:5", 2, LONG).await;
    assert!(
        after.text.ends_with("You said: still there"),
        "{}",
        after.text
    );
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn the_agent_sees_none_of_the_vm_s_secrets() {
    let world = World::start(&[]).await;
    world
        .send("s1", "telegram:6", "please dump the environment")
        .await;
    let reply = world.relay.reply("telegram:6", 1, LONG).await;
    assert!(
        reply
            .text
            .starts_with("I saved the environment to env.txt."),
        "{}",
        reply.text
    );
    let env = std::fs::read_to_string(world.workspace().join("env.txt")).unwrap();
    assert!(env.contains("ANTHROPIC_BASE_URL="), "{env}");
    for withheld in ["VM_TOKEN", "RELAY_CALLBACK_URL", TOKEN] {
        assert!(!env.contains(withheld), "the agent sees {withheld}");
    }
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn screenshots_through_playwright_mcp_arrive_as_images_named_or_not() {
    let world = World::start(&[("CHROMIUM_PATH", "/usr/bin/chromium")]).await;
    world.send("p1", "telegram:7", "take a screenshot").await;
    let shot = world.relay.reply("telegram:7", 1, LONG).await;
    assert_eq!(shot.text, "Here is the screenshot.", "{shot:?}");
    assert_eq!(shot.images.len(), 1, "{:?}", shot.text);
    assert_eq!(shot.images[0].content_type, "image/png");
    // Given a file name, Playwright writes into the workspace instead of its output folder.
    world
        .send("p2", "telegram:7", "take a screenshot named shot.png")
        .await;
    let named = world.relay.reply("telegram:7", 2, LONG).await;
    assert_eq!(named.images.len(), 1, "{named:?}");
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(&named.images[0].data_base64)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a real PNG");
    assert!(
        world.workspace().join("shot.png").is_file(),
        "the named screenshot is in the workspace"
    );
}

/// What a prompt-injected agent would try, done by the real Claude Code as the image runs it:
/// it finds no other process's `VM_TOKEN`, callback URL or environment (this test is the vm's
/// process, and only it has `CLAUDE_BIN`), cannot write the vm's store, and the hook it plants
/// in its own settings never runs in its next session (Claude Code's managed settings, root's,
/// turn hooks off).
#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_prompt_injected_agent_finds_nothing_of_the_vm_s() {
    assert!(
        vm::fence::hooks_pinned_off(),
        "{} must turn hooks off (cargo xtask install puts it there)",
        vm::fence::MANAGED_SETTINGS
    );
    let world = World::start(&[]).await;
    let store = world.data.path().join("vm/vm.db");
    world.send("e1", "telegram:9", "try to get out").await;
    let reply = world.relay.reply("telegram:9", 1, LONG).await;
    // The reply ends with what changed in the workspace (the loot file).
    assert!(reply.text.starts_with("I looked around."), "{}", reply.text);
    let loot = std::fs::read_to_string(world.workspace().join("loot.txt")).unwrap();
    let leaked: Vec<&str> = loot
        .lines()
        .filter(|line| {
            ["VM_TOKEN=", "RELAY_CALLBACK_URL=", "CLAUDE_BIN="]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the agent read the vm's environment: {leaked:?}"
    );
    assert!(loot.contains("== store"), "the attempt ran: {loot}");
    assert!(
        !loot.contains("appended"),
        "the agent wrote the vm's store: {loot}"
    );
    assert!(
        loot.contains("planted-hook"),
        "the hook was planted: {loot}"
    );
    let stored = std::fs::read(&store).unwrap();
    assert!(!stored.ends_with(b"planted\n"), "the store was written");

    // A new session would run the planted SessionStart hook, were hooks on.
    world.send("e2", "telegram:9", "/new").await;
    world.relay.reply("telegram:9", 2, LONG).await;
    world.send("e3", "telegram:9", "hello again").await;
    let again = world.relay.reply("telegram:9", 3, LONG).await;
    assert!(again.text.contains("You said: hello again"), "{again:?}");
    assert!(
        !world.workspace().join("hook-ran").exists(),
        "the agent's planted hook ran in its next session"
    );
}

/// The lines of `ran.txt` in a workspace: one per run of "please run a command"'s command.
fn runs(workspace: &std::path::Path) -> usize {
    std::fs::read_to_string(workspace.join("ran.txt"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// The question in a callback, checked to be one.
fn question_in(callback: &Callback) -> contract::protocol::Question {
    assert_eq!(callback.kind, CallbackKind::Question, "{callback:?}");
    callback.question.clone().unwrap()
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn in_ask_mode_a_command_waits_for_allow_and_always_allow_stops_asking() {
    let world = World::start(&[("APPROVAL_MODE", "ask")]).await;
    let chat = "telegram:11";
    let workspace = world.workspace_of(chat);

    world.send("r1", chat, "please run a command").await;
    let asked = world.relay.reply(chat, 1, LONG).await;
    let question = question_in(&asked);
    assert_eq!(
        question.choices,
        [Decision::Allow, Decision::AlwaysAllow, Decision::Deny]
    );
    assert!(
        asked.text.contains("`sh -c 'echo ran >> ran.txt'`"),
        "{}",
        asked.text
    );
    assert_eq!(runs(&workspace), 0, "nothing runs before the answer");
    world
        .answer("a1", chat, &question.id, Decision::Allow)
        .await;
    let reply = world.relay.reply(chat, 2, LONG).await;
    assert_eq!(reply.kind, CallbackKind::Message);
    assert!(reply.text.contains(r#""is_error":false"#), "{}", reply.text);
    assert_eq!(runs(&workspace), 1);

    // Allow is for that call only: the same command asks again.
    world.send("r2", chat, "please run a command").await;
    let question = question_in(&world.relay.reply(chat, 3, LONG).await);
    world
        .answer("a2", chat, &question.id, Decision::AlwaysAllow)
        .await;
    world.relay.reply(chat, 4, LONG).await;
    assert_eq!(runs(&workspace), 2);

    // Always allow: the same command runs without asking, in this process and in a new one.
    world.send("r3", chat, "please run a command").await;
    let reply = world.relay.reply(chat, 5, LONG).await;
    assert_eq!(reply.kind, CallbackKind::Message, "{reply:?}");
    assert_eq!(runs(&workspace), 3);
    world.send("c1", chat, "/rules").await;
    let listed = world.relay.reply(chat, 6, LONG).await;
    assert!(listed.text.contains("Bash("), "{}", listed.text);
    world.send("c2", chat, "/mode ask").await;
    world.relay.reply(chat, 7, LONG).await;
    world.send("r4", chat, "please run a command").await;
    let reply = world.relay.reply(chat, 8, LONG).await;
    assert_eq!(reply.kind, CallbackKind::Message, "{reply:?}");
    assert_eq!(runs(&workspace), 4);

    // A second tap on an answered question changes nothing and says so.
    world.answer("a3", chat, &question.id, Decision::Deny).await;
    let said = world.relay.reply(chat, 9, LONG).await;
    assert_eq!(
        said.text,
        "That question was already answered: Always allowed."
    );
    // The relay delivering the same answer twice is not a second tap.
    world
        .answer("a2", chat, &question.id, Decision::AlwaysAllow)
        .await;
    world.send("r5", chat, "hello").await;
    assert_eq!(
        world.relay.reply(chat, 10, LONG).await.text,
        "You said: hello"
    );
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_denied_command_does_not_run_and_the_agent_is_told_why() {
    let world = World::start(&[("APPROVAL_MODE", "ask")]).await;
    let chat = "telegram:12";
    world.send("r1", chat, "please run a command").await;
    let question = question_in(&world.relay.reply(chat, 1, LONG).await);
    world.answer("a1", chat, &question.id, Decision::Deny).await;
    let reply = world.relay.reply(chat, 2, LONG).await;
    assert!(reply.text.contains(r#""is_error":true"#), "{}", reply.text);
    assert!(
        reply.text.contains("The owner denied this"),
        "{}",
        reply.text
    );
    assert_eq!(runs(&world.workspace_of(chat)), 0);
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_question_outlives_the_machine_and_its_answer_runs_the_call_once() {
    let mut world = World::start(&[
        ("APPROVAL_MODE", "ask"),
        ("APPROVAL_WAIT_SECS", "1"),
        ("IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let chat = "telegram:13";
    world.send("r1", chat, "please run a command").await;
    let question = question_in(&world.relay.reply(chat, 1, LONG).await);
    let parked = world.relay.reply(chat, 2, LONG).await;
    assert_eq!(parked.text, vm::reply::PARKED);
    // Nothing waits any more: the vm goes idle and exits, so Fly would stop the machine.
    tokio::time::timeout(LONG, &mut world.vm)
        .await
        .expect("the vm exits when idle")
        .unwrap();

    // Hours later the tap wakes the machine; the answer resumes the session.
    world.restart_vm().await;
    world
        .answer("a1", chat, &question.id, Decision::Allow)
        .await;
    let reply = world.relay.reply(chat, 3, LONG).await;
    assert!(reply.text.contains(r#""is_error":false"#), "{}", reply.text);
    assert_eq!(runs(&world.workspace_of(chat)), 1, "the call ran once");
    assert!(
        world.prompts().iter().any(|p| p.contains(
            "The owner allowed your earlier request to run `sh -c 'echo ran >> ran.txt'`"
        )),
        "{:?}",
        world.prompts()
    );
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn in_ask_mode_edits_in_the_workspace_run_without_asking() {
    let world = World::start(&[("APPROVAL_MODE", "ask")]).await;
    let chat = "telegram:14";
    world
        .send("w1", chat, "please write with the write tool")
        .await;
    let reply = world.relay.reply(chat, 1, LONG).await;
    assert_eq!(reply.kind, CallbackKind::Message, "{reply:?}");
    assert_eq!(
        std::fs::read_to_string(world.workspace_of(chat).join("note.txt")).unwrap(),
        "written by the Write tool\n"
    );
}

#[tokio::test]
#[ignore = "needs the Claude Code CLI; cargo xtask test installs and runs it"]
async fn a_job_that_changed_files_says_so_and_diff_sends_the_changes() {
    let mut world = World::start(&[]).await;
    let chat = "telegram:15";
    let workspace = world.workspace_of(chat);
    // A repository the user cloned earlier, with one committed file.
    let repo = workspace.join("proj");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    git(&["add", "a.txt"]);
    git(&["commit", "-q", "-m", "first"]);

    world.send("w1", chat, "please write a file for me").await;
    let reply = world.relay.reply(chat, 1, LONG).await;
    assert_eq!(
        reply.text,
        "I wrote hello.txt.\n\n1 file changed, +1 −0 (/diff shows them)"
    );
    // A job that changes nothing says nothing of files, also after the machine slept (the
    // vm restarts on the same volume).
    world.send("w2", chat, "hello").await;
    assert_eq!(
        world.relay.reply(chat, 2, LONG).await.text,
        "You said: hello"
    );
    world.restart_vm().await;
    world.send("w2b", chat, "hello").await;
    assert_eq!(
        world.relay.reply(chat, 3, LONG).await.text,
        "You said: hello"
    );

    // The repository's file changes too (as the agent's edit would).
    std::fs::write(repo.join("a.txt"), "two\n").unwrap();
    world.send("d1", chat, "/diff").await;
    let diff = world.relay.reply(chat, 4, LONG).await;
    assert_eq!(diff.text, "2 files changed, +2 −1");
    assert_eq!(diff.images.len(), 1);
    assert_eq!(diff.images[0].content_type, "text/x-diff");
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&diff.images[0].data_base64)
            .unwrap(),
    )
    .unwrap();
    assert!(
        text.contains("--- a/proj/a.txt\n+++ b/proj/a.txt"),
        "{text}"
    );
    assert!(text.contains("-one\n+two"), "{text}");
    assert!(
        text.contains("+++ b/hello.txt") && text.contains("+hello"),
        "{text}"
    );

    // After /new the baseline is the workspace as it then is.
    world.send("n1", chat, "/new").await;
    world.relay.reply(chat, 5, LONG).await;
    world.send("w3", chat, "hello again").await;
    world.relay.reply(chat, 6, LONG).await;
    world.send("d2", chat, "/diff").await;
    let after = world.relay.reply(chat, 7, LONG).await;
    assert_eq!(
        after.text, "1 file changed, +1 −1",
        "only the repository's change is left"
    );
}
