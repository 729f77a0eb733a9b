//! The vm's own costs, on loopback, bounded: process start to `/health` ready, idle RSS, and
//! per-message overhead (request to reply minus the agent's own run time) with the demo agent;
//! then, when the Claude Code CLI is installed (`CLAUDE_BIN`, or `claude` on PATH), message to
//! model latency for a conversation's first (cold) and next (warm) message, and the RSS of the
//! vm with its agents with one and three warm conversations, against the sim's Messages API;
//! then steering through the real relay: a tap on Allow to the command running, and what
//! each channel shows of a long job's status line.

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
    let port = sim::testing::free_port();
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
        .args(["build", "--release", "--quiet", "-p", "vm", "-p", "relay"])
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
            steering(&bin, &claude).await;
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

/// Waits (at most 5 minutes) until `done`, asking every millisecond: the waits it ends are
/// what the bench times (`sim::testing::eventually` asks every 25 ms, too coarse here).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "never: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The owners of the steering bench, one per channel.
const TELEGRAM_OWNER: i64 = 100;
const WHATSAPP_OWNER: &str = "whatsapp:+15550000100";
const DISCORD_OWNER: &str = "80351110224678912";

/// Steering as the owner lives it, through the real relay (release) on the sim's Telegram,
/// WhatsApp and Discord in front of the release vm running Claude Code in `ask` mode:
/// - a tap on Allow reaching the relay, to the command it allows running, with a warm agent;
/// - what each channel shows of a busy job's status line that runs two minutes (a command a
///   second, in three conversations at once), as it really happens: the vm's updates, the
///   relay's rules, the sim's channels counting messages and edits.
async fn steering(bin: &std::path::Path, claude: &std::path::Path) {
    let data = tempfile::tempdir().unwrap();
    let sim = sim::start(
        sim::SimConfig::new(data.path().join("sim")),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let relay_url = format!("http://127.0.0.1:{}", sim::testing::free_port());
    let base_url = std::ffi::OsString::from(format!("{}/anthropic", sim.base_url()));
    let (mut vm, vm_url, _) = start_vm(
        bin,
        &format!("{relay_url}/callback"),
        &data.path().join("vm"),
        &[
            ("AGENT_CMD", claude.as_os_str()),
            ("ANTHROPIC_API_KEY", sim::SIM_ANTHROPIC_KEY.as_ref()),
            ("ANTHROPIC_BASE_URL", &base_url),
            ("APPROVAL_MODE", "ask".as_ref()),
        ],
    )
    .await;
    let sim_url = sim.base_url().to_string();
    let mut relay = std::process::Command::new(bin.join("relay"))
        .env("PORT", relay_url.rsplit(':').next().unwrap())
        .env("PUBLIC_URL", &relay_url)
        .env("VM_URL", &vm_url)
        .env("VM_TOKEN", "bench")
        .env("DATA_DIR", data.path().join("relay"))
        .env("RUST_LOG", "error")
        .env(
            "ALLOWED_SENDERS",
            format!("telegram:{TELEGRAM_OWNER},{WHATSAPP_OWNER},discord:{DISCORD_OWNER}"),
        )
        .env("TELEGRAM_BOT_TOKEN", sim::SIM_TELEGRAM_BOT)
        .env("TELEGRAM_WEBHOOK_SECRET", "bench-secret")
        .env("TELEGRAM_API_BASE", format!("{sim_url}/telegram"))
        .env("TWILIO_ACCOUNT_SID", sim::SIM_TWILIO_SID)
        .env("TWILIO_AUTH_TOKEN", sim::SIM_TWILIO_TOKEN)
        .env("TWILIO_WHATSAPP_NUMBER", "+14155238886")
        .env("TWILIO_API_BASE", format!("{sim_url}/twilio"))
        .env(
            "TWILIO_CONTENT_API_BASE",
            format!("{sim_url}/twilio-content"),
        )
        .env("DISCORD_BOT_TOKEN", sim::SIM_DISCORD_BOT)
        .env("DISCORD_API_BASE", format!("{sim_url}/discord"))
        .env(
            "DISCORD_GATEWAY_URL",
            format!("{}/discord/gateway", sim_url.replace("http://", "ws://")),
        )
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let waiting = Instant::now();
    while sim
        .sim
        .channels
        .telegram_webhook(sim::SIM_TELEGRAM_BOT)
        .is_none()
        || !sim.sim.discord.connected(sim::SIM_DISCORD_BOT)
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the relay never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let user = async |path: &str, body: serde_json::Value| -> serde_json::Value {
        let response = http
            .post(format!("{sim_url}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or_default()
    };
    let telegram = async |text: &str| {
        user(
            "/sim/telegram/send",
            serde_json::json!({"from_id": TELEGRAM_OWNER, "text": text}),
        )
        .await;
    };
    let telegram_sent = || sim.sim.channels.telegram_sent();

    // 1. A warm agent, then "please run a command" five times: each asks, the owner taps Allow.
    telegram("hi").await;
    until("the first reply", || {
        telegram_sent()
            .iter()
            .any(|s| s.text.contains("You said: hi"))
    })
    .await;
    let ran = data
        .path()
        .join(format!("vm/workspaces/telegram_{TELEGRAM_OWNER}/ran.txt"));
    let runs = || {
        std::fs::read_to_string(&ran)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let mut latencies = Vec::new();
    for i in 0..5 {
        let replies = |sent: &[sim::channels::Sent]| {
            sent.iter()
                .filter(|s| s.text.starts_with("Tool said:"))
                .count()
        };
        telegram("please run a command").await;
        let questions = || -> Vec<sim::channels::Sent> {
            telegram_sent()
                .into_iter()
                .filter(|s| s.text.starts_with("The agent asks"))
                .collect()
        };
        until("the question", || questions().len() > i).await;
        let question = questions().remove(i);
        let tapped = Instant::now();
        user(
            "/sim/telegram/tap",
            serde_json::json!({"from_id": TELEGRAM_OWNER, "message_id": question.message_id, "label": "Allow"}),
        )
        .await;
        until("the command", || runs() > i).await;
        latencies.push(tapped.elapsed());
        until("the reply", || replies(&telegram_sent()) > i).await;
    }

    // 2. The same long job in a conversation on each channel at once, without questions.
    telegram("/mode auto").await;
    let whatsapp = async |text: &str| {
        user(
            "/sim/twilio/send",
            serde_json::json!({"url": format!("{relay_url}/webhook/twilio"), "from": WHATSAPP_OWNER, "to": "whatsapp:+14155238886", "body": text}),
        )
        .await;
    };
    let discord = async |text: &str| {
        user(
            "/sim/discord/dm",
            serde_json::json!({"from_id": DISCORD_OWNER, "text": text}),
        )
        .await;
    };
    whatsapp("/mode auto").await;
    discord("/mode auto").await;
    let auto = |sent: Vec<sim::channels::Sent>| {
        sent.iter()
            .any(|s| s.text.contains("auto: the agent uses every tool"))
    };
    until("auto mode everywhere", || {
        auto(telegram_sent())
            && auto(sim.sim.channels.twilio_sent())
            && auto(sim.sim.discord.sent())
    })
    .await;
    let started = Instant::now();
    telegram("keep busy").await;
    whatsapp("keep busy").await;
    discord("keep busy").await;
    let finished = |sent: Vec<sim::channels::Sent>| {
        sent.iter().any(|s| {
            s.text.starts_with("I kept busy") || s.text.starts_with("I could not keep busy")
        })
    };
    until("three long jobs", || {
        finished(telegram_sent())
            && finished(sim.sim.channels.twilio_sent())
            && finished(sim.sim.discord.sent())
    })
    .await;
    let lasted = started.elapsed();
    for sent in [
        telegram_sent(),
        sim.sim.channels.twilio_sent(),
        sim.sim.discord.sent(),
    ] {
        let failed = sent
            .iter()
            .find(|s| s.text.starts_with("I could not keep busy"));
        assert!(failed.is_none(), "{failed:?}");
    }
    let _ = relay.kill();
    let _ = relay.wait();
    let _ = vm.kill();
    let _ = vm.wait();

    // The long job's status line: where messages are edited, the one that ends as its
    // summary ("Done in 2:03 · 58 tool calls · $…", the only one with so many calls); on
    // WhatsApp, each "Running `sleep 1; …` · m:ss" sent.
    let tool_calls = |text: &str| -> u32 {
        text.split(" · ")
            .nth(1)
            .and_then(|calls| calls.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let shown = |sent: Vec<sim::channels::Sent>| -> (usize, u32, u32) {
        let lines: Vec<_> = sent
            .iter()
            .filter(|s| {
                (s.text.starts_with("Done in") && tool_calls(&s.text) > 10)
                    || s.text.starts_with("Running `sleep 1;")
            })
            .collect();
        let calls = lines.iter().map(|l| tool_calls(&l.text)).max().unwrap_or(0);
        (lines.len(), lines.iter().map(|l| l.edits).sum(), calls)
    };
    let (telegram_messages, telegram_edits, calls) = shown(telegram_sent());
    let (discord_messages, discord_edits, _) = shown(sim.sim.discord.sent());
    let (whatsapp_messages, _, _) = shown(sim.sim.channels.twilio_sent());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let max = *latencies.iter().max().unwrap();
    println!("steering, through the real relay on the sim's channels:");
    println!(
        "  a tap on Allow reaching the relay to the command running, warm agent, median of 5: {:.0} ms (max {:.0} ms)",
        ms(median(latencies)),
        ms(max)
    );
    // The job's own length, from its summary ("Done in 2:01 · …"): the three ran at once, but
    // the vm may hold one back until another ends.
    let job_secs = telegram_sent()
        .iter()
        .filter(|s| tool_calls(&s.text) == calls)
        .find_map(|s| {
            let clock = s.text.strip_prefix("Done in ")?.split(' ').next()?;
            let (minutes, seconds) = clock.split_once(':')?;
            Some(minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
        })
        .unwrap_or(lasted.as_secs_f64());
    let per_second = |edits: u32| f64::from(edits) / job_secs;
    println!(
        "  status line of a {job_secs:.0} s job with {calls} tool calls (three conversations at once, all done in {:.0} s): Telegram {telegram_messages} message(s) + {telegram_edits} edits ({:.2}/s), Discord {discord_messages} message(s) + {discord_edits} edits ({:.2}/s), WhatsApp {whatsapp_messages} message(s)",
        lasted.as_secs_f64(),
        per_second(telegram_edits),
        per_second(discord_edits),
    );
}
