//! The vm's own costs, on loopback, bounded: process start to `/health` ready, idle RSS, and
//! per-message overhead (request to reply minus the agent's own run time) with the demo agent;
//! then, when the Claude Code CLI is installed (`CLAUDE_BIN`, or `claude` on PATH), message to
//! model latency for a conversation's first (cold) and next (warm) message, and the RSS of the
//! vm with its agents with one and three warm conversations, against the sim's Messages API.

use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A relay stand-in on loopback that passes on each reply (not typing) with when it came.
async fn fake_relay() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!("http://{}/callback", relay.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                // Replies and questions; not typing, not status lines.
                if body.contains("\"kind\":\"message\"") || body.contains("\"kind\":\"question\"") {
                    let _ = tx.send((Instant::now(), body));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(relay, app).await.unwrap() });
    (callback_url, rx)
}

/// Starts the release vm with `env` on a free port and waits until `/health` answers:
/// the process, its URL, and how long it took to be ready.
async fn start_vm(
    bin: &std::path::Path,
    callback_url: &str,
    data_dir: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (std::process::Child, String, Duration) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let child = std::process::Command::new(bin.join("vm"))
        .env("PORT", port.to_string())
        .env("LISTEN_HOST", "127.0.0.1")
        .env("VM_TOKEN", "bench")
        .env("RELAY_CALLBACK_URL", callback_url)
        .env("DATA_DIR", data_dir)
        .env("HEARTBEAT_MS", "60000")
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    while !http
        .get(format!("{url}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (child, url, started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "vm"])
        .current_dir(&workspace)
        .status()
        .unwrap();
    assert!(status.success());
    let bin = workspace.join("target/release");

    // The agent's own time: spawn and run the demo agent directly.
    let scratch = tempfile::tempdir().unwrap();
    let mut agent_runs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let mut agent = std::process::Command::new(bin.join("textslash-demo-agent"))
            .args([
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
            ])
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = agent.stdin.take().unwrap();
        writeln!(
            stdin,
            r#"{{"type":"user","message":{{"role":"user","content":"hi"}}}}"#
        )
        .unwrap();
        drop(stdin);
        let out = agent.wait_with_output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        agent_runs.push(t.elapsed());
    }
    let agent = median(agent_runs);

    // A relay that records when each reply arrives.
    let (callback_url, mut rx) = fake_relay().await;
    let data = tempfile::tempdir().unwrap();
    let agent_cmd = bin.join("textslash-demo-agent");
    let (mut child, url, ready) = start_vm(
        &bin,
        &callback_url,
        data.path(),
        &[("AGENT_CMD", agent_cmd.as_os_str())],
    )
    .await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(child.id());

    let mut totals = Vec::new();
    for i in 0..30 {
        let t = Instant::now();
        let message = serde_json::json!({"id": format!("m{i}"), "conversation": "telegram:1", "sender": "telegram:1", "text": "hi"});
        let status = http
            .post(format!("{url}/messages"))
            .bearer_auth("bench")
            .json(&message)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        let (arrived, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        totals.push(arrived - t);
    }
    let total = median(totals);
    let _ = child.kill();
    let _ = child.wait();
    println!("vm (release binary, loopback, demo agent):");
    println!(
        "  process start to /health ready: {:.1} ms",
        ready.as_secs_f64() * 1e3
    );
    println!("  idle RSS: {:.1} MiB", idle_rss as f64 / 1024.0);
    println!(
        "  per message: request to reply {:.1} ms median, of which the agent itself {:.1} ms; vm overhead {:.1} ms",
        total.as_secs_f64() * 1e3,
        agent.as_secs_f64() * 1e3,
        total.saturating_sub(agent).as_secs_f64() * 1e3
    );

    match claude_bin() {
        Some(claude) => {
            real_claude(&bin, &claude).await;
            approval_latency(&bin, &claude).await;
        }
        None => {
            println!("Claude Code: not installed (CLAUDE_BIN unset, no claude on PATH); skipped")
        }
    }
}

fn claude_bin() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("CLAUDE_BIN") {
        return Some(path.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("claude"))
        .find(|path| path.is_file())
}

/// The resident memory of a process and all its descendants (the agents, their MCP servers
/// and browsers), from /proc.
fn tree_rss_kib(root: u32) -> u64 {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The fields after the command name (which may hold spaces) in parentheses.
            let after = stat.rsplit_once(')')?.1;
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree.into_iter().map(rss_kib).sum()
}

/// The release vm running Claude Code against the sim's model, with `extra` settings: the
/// sim, its folder, the vm process and URL, and the callbacks it sends.
async fn vm_with_claude(
    bin: &std::path::Path,
    claude: &std::path::Path,
    extra: &[(&str, &std::ffi::OsStr)],
) -> (
    sim::SimHandle,
    tempfile::TempDir,
    std::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
) {
    let data = tempfile::tempdir().unwrap();
    let sim = sim::start(
        sim::SimConfig::new(data.path().join("sim")),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (callback_url, callbacks) = fake_relay().await;
    let base_url = std::ffi::OsString::from(format!("{}/anthropic", sim.base_url()));
    let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("AGENT_CMD", claude.as_os_str()),
        ("ANTHROPIC_API_KEY", sim::SIM_ANTHROPIC_KEY.as_ref()),
        ("ANTHROPIC_BASE_URL", &base_url),
    ];
    env.extend_from_slice(extra);
    let (vm, url, _) = start_vm(bin, &callback_url, &data.path().join("vm"), &env).await;
    (sim, data, vm, url, callbacks)
}

async fn real_claude(bin: &std::path::Path, claude: &std::path::Path) {
    let (sim, _data, mut vm, url, mut replies) = vm_with_claude(
        bin,
        claude,
        &[
            ("CHROMIUM_PATH", "/usr/bin/chromium".as_ref()),
            ("WARM_AGENTS", "3".as_ref()),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    // Message posted → the model's first request for it, seen by the sim; then its reply.
    let mut message_number = 0;
    let mut to_model = async |conversation: &str| -> Duration {
        message_number += 1;
        let before = sim.sim.model.requests().len();
        let message = serde_json::json!({"id": format!("b{message_number}"), "conversation": conversation, "sender": conversation, "text": "hi"});
        let posted = Instant::now();
        let status = http
            .post(format!("{url}/messages"))
            .bearer_auth("bench")
            .json(&message)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
        while sim.sim.model.requests().len() == before {
            assert!(
                posted.elapsed() < Duration::from_secs(60),
                "the model was never called"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let latency = posted.elapsed();
        let (_, reply) = tokio::time::timeout(Duration::from_secs(60), replies.recv())
            .await
            .expect("a reply within 60 s")
            .unwrap();
        assert!(reply.contains("You said: hi"), "{reply}");
        latency
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut rss_warm = Vec::new();
    for i in 0..10 {
        let conversation = format!("telegram:{i}");
        cold.push(to_model(&conversation).await);
        warm.push(to_model(&conversation).await);
        if i == 0 || i == 2 {
            rss_warm.push(tree_rss_kib(vm.id()));
        }
    }
    let _ = vm.kill();
    let _ = vm.wait();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "vm with Claude Code ({}, Playwright MCP, the sim's model):",
        claude.display()
    );
    println!(
        "  message posted to the model's first request, median of 10: cold (new process) {:.0} ms, warm (same conversation) {:.0} ms",
        ms(median(cold)),
        ms(median(warm))
    );
    println!(
        "  RSS of the vm and its agents: 1 warm conversation {:.0} MiB, 3 warm {:.0} MiB",
        rss_warm[0] as f64 / 1024.0,
        rss_warm[1] as f64 / 1024.0
    );
}

/// An owner's Allow reaching the vm, to the command it allows running, with a warm agent
/// (Claude Code waiting on its stdio permission prompt). The relay's part before this, journal
/// and forward, is `cargo bench -p relay`'s ack latency.
async fn approval_latency(bin: &std::path::Path, claude: &std::path::Path) {
    let (_sim, data, mut vm, url, mut callbacks) =
        vm_with_claude(bin, claude, &[("APPROVAL_MODE", "ask".as_ref())]).await;
    let http = reqwest::Client::new();
    let post = async |message: serde_json::Value| {
        let status = http
            .post(format!("{url}/messages"))
            .bearer_auth("bench")
            .json(&message)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
    };
    let mut next = async || -> serde_json::Value {
        let (_, body) = tokio::time::timeout(Duration::from_secs(60), callbacks.recv())
            .await
            .expect("a callback within 60 s")
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    let chat = "telegram:100";
    let ran = data.path().join("vm/workspaces/telegram_100/ran.txt");
    let runs = || {
        std::fs::read_to_string(&ran)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // The conversation's agent starts and stays warm.
    post(serde_json::json!({"id": "warm", "conversation": chat, "sender": chat, "text": "hi"}))
        .await;
    next().await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        post(serde_json::json!({"id": format!("ask{i}"), "conversation": chat, "sender": chat, "text": "please run a command"})).await;
        let question = next().await;
        assert_eq!(question["kind"], "question", "{question}");
        let id = question["question"]["id"].as_str().unwrap().to_string();
        let answer = serde_json::json!({"id": format!("answer:{id}"), "conversation": chat, "sender": chat, "text": "Allow", "answer": {"question": id, "decision": "allow"}});
        let tapped = Instant::now();
        post(answer).await;
        while runs() < i + 1 {
            assert!(
                tapped.elapsed() < Duration::from_secs(30),
                "the command never ran"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(tapped.elapsed());
        let reply = next().await;
        assert_eq!(reply["kind"], "message", "{reply}");
    }
    let _ = vm.kill();
    let _ = vm.wait();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let max = *latencies.iter().max().unwrap();
    println!(
        "  an owner's Allow reaching the vm to the command running, warm agent, median of 5: {:.0} ms (max {:.0} ms)",
        ms(median(latencies)),
        ms(max)
    );
}
