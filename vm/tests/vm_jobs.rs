//! The vm over real HTTP on loopback, with the demo agent as its agent program and a small
//! axum app as the relay.

use contract::protocol::{Callback, CallbackKind, VmMessage};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "vm-test-token";

#[derive(Clone, Default)]
struct FakeRelay {
    messages: Arc<Mutex<Vec<Callback>>>,
    typing: Arc<AtomicUsize>,
    /// Answer 503 to this many callbacks first (a relay outage).
    fail_first: Arc<AtomicUsize>,
    /// Answer 413 to any callback with images (a body over the relay's limit).
    refuse_images: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRelay {
    async fn start() -> (FakeRelay, String) {
        let relay = FakeRelay::default();
        let state = relay.clone();
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::post(
                move |headers: axum::http::HeaderMap,
                      axum::Json(callback): axum::Json<Callback>| {
                    let relay = state.clone();
                    async move {
                        if !contract::protocol::bearer_matches(
                            headers.get("authorization").and_then(|v| v.to_str().ok()),
                            TOKEN,
                        ) {
                            return axum::http::StatusCode::UNAUTHORIZED;
                        }
                        if callback.kind == CallbackKind::Typing {
                            relay.typing.fetch_add(1, Ordering::SeqCst);
                            return axum::http::StatusCode::OK;
                        }
                        if relay.refuse_images.load(Ordering::SeqCst) && !callback.images.is_empty()
                        {
                            return axum::http::StatusCode::PAYLOAD_TOO_LARGE;
                        }
                        if relay.fail_first.load(Ordering::SeqCst) > 0 {
                            relay.fail_first.fetch_sub(1, Ordering::SeqCst);
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let mut messages = relay.messages.lock().unwrap();
                        if !messages.iter().any(|m| m.id == callback.id) {
                            messages.push(callback);
                        }
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (relay, url)
    }

    fn texts(&self, conversation: &str) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.conversation == conversation)
            .map(|m| m.text.clone())
            .collect()
    }

    /// Waits until a job has started working (its first typing heartbeat) since `seen`
    /// heartbeats were counted.
    async fn wait_typing_after(&self, seen: usize) {
        let started = Instant::now();
        while self.typing.load(Ordering::SeqCst) <= seen {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no job started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for(&self, conversation: &str, count: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let texts = self.texts(conversation);
            if texts.len() >= count {
                return texts;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited for {count} replies in {conversation}, have {texts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct RunningVm {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), vm::StartError>>,
}

fn agent_cmd() -> String {
    let capture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude_stream_json.jsonl");
    format!(
        "env DEMO_AGENT_CAPTURE={} {}",
        capture.display(),
        env!("CARGO_BIN_EXE_textslash-demo-agent")
    )
}

impl RunningVm {
    async fn start(data_dir: &Path, relay_url: &str, extra: &[(&str, &str)]) -> RunningVm {
        let mut env: HashMap<String, String> = HashMap::from([
            ("VM_TOKEN".to_string(), TOKEN.to_string()),
            ("RELAY_CALLBACK_URL".into(), relay_url.into()),
            ("DATA_DIR".into(), data_dir.display().to_string()),
            ("AGENT_CMD".into(), agent_cmd()),
            ("HEARTBEAT_MS".into(), "200".into()),
        ]);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = vm::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(vm::run(config, listener, async {
            let _ = stopped.await;
        }));
        RunningVm {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn send(&self, id: &str, conversation: &str, text: &str) -> u16 {
        let message = VmMessage {
            id: id.into(),
            conversation: conversation.into(),
            sender: conversation.into(),
            text: text.into(),
            images: vec![],
            answer: None,
        };
        reqwest::Client::new()
            .post(format!("{}/messages", self.url))
            .bearer_auth(TOKEN)
            .json(&message)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn health(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/health", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `/health` reports `count` warm agent processes.
    async fn wait_warm(&self, count: u64) {
        let started = Instant::now();
        loop {
            let health = self.health().await;
            if health["warm_agents"] == count {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited for {count} warm agents: {health}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("clean exit")
            .unwrap()
            .unwrap();
    }
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}

#[tokio::test]
async fn replies_keep_order_per_conversation_and_sessions_survive_restarts() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[]).await;
    assert_eq!(vm.send("a1", "telegram:1", "#slow first").await, 202);
    assert_eq!(vm.send("a2", "telegram:1", "second").await, 202);
    assert_eq!(
        vm.send("a2", "telegram:1", "second").await,
        202,
        "a repeated id is accepted and ignored"
    );
    assert_eq!(vm.send("b1", "telegram:2", "other chat").await, 202);
    let b = relay.wait_for("telegram:2", 1).await;
    assert!(
        relay.texts("telegram:1").is_empty(),
        "b ran while a1 was still working"
    );
    assert!(b[0].contains("You said: other chat"), "{b:?}");
    let a = relay.wait_for("telegram:1", 2).await;
    assert!(
        a[0].contains("#slow first") && a[0].contains("turn 1"),
        "{a:?}"
    );
    assert!(
        a[1].contains("You said: second") && a[1].contains("turn 2"),
        "resumed the same session: {a:?}"
    );
    assert!(
        relay.typing.load(Ordering::SeqCst) > 0,
        "typing heartbeats while working"
    );
    vm.shut_down().await;

    let vm = RunningVm::start(&data, &url, &[]).await;
    vm.send("a3", "telegram:1", "after restart").await;
    let a = relay.wait_for("telegram:1", 3).await;
    assert!(a[2].contains("turn 3"), "session kept on DATA_DIR: {a:?}");
    assert_eq!(relay.texts("telegram:1").len(), 3, "a2 ran once");
    vm.shut_down().await;
}

#[tokio::test]
async fn the_real_capture_and_misbehaving_agents_give_clear_replies() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[("AGENT_TIMEOUT_SECS", "2")]).await;
    let cases = [
        ("#replay", "OK"),
        (
            "#error",
            "Anthropic's API is overloaded right now. Try again in a minute.",
        ),
        (
            "#exit3",
            "The agent failed (exit code 3): demo agent: failing on purpose",
        ),
        ("#malformed still works", "You said: #malformed still works"),
        ("#hang", "ran out of time"),
        ("take a screenshot", "screenshot"),
        (
            "#denied",
            "(The agent was not allowed to use: Bash, Write.)",
        ),
    ];
    for (i, (prompt, _)) in cases.iter().enumerate() {
        vm.send(&format!("m{i}"), &format!("telegram:{i}"), prompt)
            .await;
    }
    vm.send("huge", "telegram:huge", "#huge").await;
    for (i, (prompt, expected)) in cases.iter().enumerate() {
        let reply = relay.wait_for(&format!("telegram:{i}"), 1).await;
        assert!(reply[0].contains(expected), "{prompt}: {reply:?}");
    }
    assert!(relay.wait_for("telegram:huge", 1).await[0].len() > 100_000);
    let screenshot = relay
        .messages
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.conversation == "telegram:5")
        .cloned()
        .unwrap();
    assert_eq!(screenshot.images.len(), 1);
    assert_eq!(screenshot.images[0].content_type, "image/png");
    // The capture's session id was stored, so the next turn resumes it (and the demo agent,
    // which never saw that id, fails the resume, which the vm turns into a fresh session).
    vm.send("m0b", "telegram:0", "again").await;
    let again = relay.wait_for("telegram:0", 2).await;
    assert!(
        again[1].starts_with("(Your previous session could not be found"),
        "{again:?}"
    );
    assert!(again[1].contains("You said: again"));
    vm.shut_down().await;
}

#[tokio::test]
async fn a_reply_too_large_for_the_relay_still_brings_its_text() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    relay.refuse_images.store(true, Ordering::SeqCst);
    let vm = RunningVm::start(&data, &url, &[]).await;
    vm.send("big1", "telegram:big", "take a screenshot").await;
    let reply = relay.wait_for("telegram:big", 1).await;
    assert!(
        reply[0].contains("You said: take a screenshot"),
        "{reply:?}"
    );
    assert!(
        reply[0].ends_with("(1 image could not be sent: too large for the relay.)"),
        "{reply:?}"
    );
    vm.shut_down().await;
}

/// The agent writes the folders the vm takes images from, so it could leave a link named
/// `x.png` pointing at a file only the vm can read (its store, its secrets): the vm sends
/// only regular files, found and opened without following a link, none over the size cap,
/// and a FIFO does not hang it.
#[tokio::test]
async fn only_plain_image_files_within_the_cap_leave_the_vm() {
    let (dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[]).await;
    let secret = dir.path().join("outside-the-workspace.txt");
    std::fs::write(&secret, "VM_TOKEN=the-vm-s-own").unwrap();
    vm.send(
        "p1",
        "telegram:plant",
        &format!("#plant {}", secret.display()),
    )
    .await;
    relay.wait_for("telegram:plant", 1).await;
    let reply = relay
        .messages
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.conversation == "telegram:plant")
        .cloned()
        .unwrap();
    assert_eq!(
        reply.images.len(),
        1,
        "only fine.png: {:?}",
        reply.images.len()
    );
    let sent = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &reply.images[0].data_base64,
    )
    .unwrap();
    assert!(sent.starts_with(b"\x89PNG"), "the honest picture");
    vm.shut_down().await;
}

#[tokio::test]
async fn chat_commands_new_status_cancel() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[("MAX_DAILY_USD", "5")]).await;
    let c = "whatsapp:+15551234567";
    vm.send("1", c, "hello").await;
    relay.wait_for(c, 1).await;
    vm.send("2", c, "/status").await;
    let status = relay.wait_for(c, 2).await;
    assert!(
        status[1].contains("Session: ") && !status[1].contains("none yet"),
        "{status:?}"
    );
    assert!(
        status[1].contains("$0.0123 of $5.00"),
        "spend from total_cost_usd: {status:?}"
    );
    vm.send("3", c, "/new").await;
    vm.send("4", c, "fresh").await;
    let replies = relay.wait_for(c, 4).await;
    assert!(replies[2].starts_with("Started a fresh session"));
    assert!(replies[3].contains("turn 1"), "a new session: {replies:?}");

    let seen = relay.typing.load(Ordering::SeqCst);
    vm.send("5", c, "#hang").await;
    relay.wait_typing_after(seen).await;
    let started = Instant::now();
    vm.send("6", c, "/cancel").await;
    let replies = relay.wait_for(c, 6).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        replies.contains(&"Cancelling the running job…".to_string()),
        "{replies:?}"
    );
    assert!(
        replies.contains(&"Cancelled the running job.".to_string()),
        "{replies:?}"
    );
    vm.send("7", c, "/cancel").await;
    assert_eq!(relay.wait_for(c, 7).await[6], "Nothing is running.");
    vm.shut_down().await;
}

#[tokio::test]
async fn every_endpoint_but_health_needs_the_token() {
    let (_dir, data) = data_dir();
    let (_relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[]).await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.post(format!("{}/messages", vm.url))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.post(format!("{}/messages", vm.url))
            .bearer_auth("wrong")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.post(format!("{}/messages", vm.url))
            .bearer_auth(TOKEN)
            .body("not json")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let health: serde_json::Value = http
        .get(format!("{}/health", vm.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ready"], true);
    vm.shut_down().await;
}

#[tokio::test]
async fn exits_when_idle_but_never_during_a_job_and_results_outlive_a_relay_outage() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    relay.fail_first.store(3, Ordering::SeqCst);
    let started = Instant::now();
    let vm = RunningVm::start(&data, &url, &[("IDLE_TIMEOUT_SECS", "1")]).await;
    vm.send("1", "telegram:9", "#slow busy").await;
    // run() returns by itself once idle; it must not before the job's result was delivered.
    let RunningVm {
        task,
        stop: _keep_alive,
        ..
    } = vm;
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("idle exit")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not during the 2 s job"
    );
    assert_eq!(
        relay.texts("telegram:9").len(),
        1,
        "the result got through after the outage"
    );
}

#[tokio::test]
async fn shutdown_interrupts_running_jobs_and_says_so() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[]).await;
    vm.send("1", "telegram:3", "#hang").await;
    relay.wait_typing_after(0).await;
    vm.shut_down().await;
    let replies = relay.texts("telegram:3");
    assert_eq!(replies, [vm::reply::INTERRUPTED_BY_SHUTDOWN], "{replies:?}");
}

/// The demo agent's process id, from its reply ("message N of process P").
fn agent_process(reply: &str) -> (u32, u32) {
    let (_, rest) = reply.split_once("message ").expect(reply);
    let (number, rest) = rest.split_once(" of process ").expect(reply);
    let pid = rest.trim_end_matches(')');
    (number.parse().unwrap(), pid.parse().expect(reply))
}

#[tokio::test]
async fn a_conversation_keeps_its_agent_warm_and_a_dead_or_reset_one_is_replaced() {
    let (_dir, data) = data_dir();
    let (relay, url) = FakeRelay::start().await;
    let vm = RunningVm::start(&data, &url, &[("WARM_AGENTS", "2"), ("MAX_DAILY_USD", "5")]).await;
    let c = "telegram:warm";
    vm.send("1", c, "one").await;
    vm.send("2", c, "two").await;
    let replies = relay.wait_for(c, 2).await;
    let (first_number, first_pid) = agent_process(&replies[0]);
    assert_eq!(first_number, 1);
    assert_eq!(
        agent_process(&replies[1]),
        (2, first_pid),
        "the second message went to the same process: {replies:?}"
    );
    vm.wait_warm(1).await;
    // The CLI's cost counts from the process's start: each job adds only its own share.
    vm.send("3", c, "/status").await;
    let status = relay.wait_for(c, 3).await;
    assert!(status[2].contains("$0.0246 of $5.00"), "{status:?}");

    // A crash loses the process, not the session.
    vm.send("4", c, "#exit3").await;
    vm.send("5", c, "after the crash").await;
    let replies = relay.wait_for(c, 5).await;
    assert!(replies[3].contains("exit code 3"), "{replies:?}");
    let (number, pid) = agent_process(&replies[4]);
    assert!(number == 1 && pid != first_pid, "{replies:?}");
    assert!(!replies[4].contains("turn 1 "), "resumed: {replies:?}");

    // A process that ends after a finished turn (the capture replay prints its result and
    // exits) is not reused: the next message gets a fresh one, not a write to a dead pipe.
    vm.send("4b", "telegram:replay", "#replay").await;
    relay.wait_for("telegram:replay", 1).await;
    vm.send("4c", "telegram:replay", "after the replay").await;
    let replay = relay.wait_for("telegram:replay", 2).await;
    assert!(
        replay[1].contains("You said: after the replay") && !replay[1].contains("exit code"),
        "{replay:?}"
    );

    // At most WARM_AGENTS wait: a third conversation ends the least recently used one.
    vm.send("a", "telegram:a", "hi").await;
    relay.wait_for("telegram:a", 1).await;
    vm.send("b", "telegram:b", "hi").await;
    relay.wait_for("telegram:b", 1).await;
    vm.wait_warm(2).await;
    vm.send("6", c, "evicted?").await;
    let replies = relay.wait_for(c, 6).await;
    assert_eq!(
        agent_process(&replies[5]).0,
        1,
        "a new process: {replies:?}"
    );

    // /new ends the warm process along with the session.
    vm.send("7", c, "/new").await;
    vm.send("8", c, "fresh").await;
    let replies = relay.wait_for(c, 8).await;
    assert!(
        replies[7].contains("turn 1 of this session, message 1 "),
        "{replies:?}"
    );
    vm.shut_down().await;

    // Idle processes do not outlive AGENT_WARM_SECS.
    let vm = RunningVm::start(&data, &url, &[("AGENT_WARM_SECS", "1")]).await;
    vm.send("9", c, "short-lived").await;
    relay.wait_for(c, 9).await;
    vm.wait_warm(0).await;
    vm.shut_down().await;
}
