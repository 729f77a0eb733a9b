//! The vm's own costs, on loopback, bounded: process start to `/health` ready, idle RSS, and
//! per-message overhead (request to reply minus the agent's own run time) with the demo agent.

use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
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
        let out = std::process::Command::new(bin.join("textslash-demo-agent"))
            .args([
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--",
                "hi",
            ])
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        agent_runs.push(t.elapsed());
    }
    let agent = median(agent_runs);

    // A relay that records when each reply arrives.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!("http://{}/callback", relay.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                if body.contains("\"message\"") {
                    let _ = tx.send(Instant::now());
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(relay, app).await.unwrap() });

    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut child = std::process::Command::new(bin.join("vm"))
        .env("PORT", port.to_string())
        .env("LISTEN_HOST", "127.0.0.1")
        .env("VM_TOKEN", "bench")
        .env("RELAY_CALLBACK_URL", &callback_url)
        .env("DATA_DIR", data.path())
        .env("AGENT_CMD", bin.join("textslash-demo-agent"))
        .env("HEARTBEAT_MS", "60000")
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    while !http
        .get(format!("{url}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready = started.elapsed();
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
        let arrived = tokio::time::timeout(Duration::from_secs(10), rx.recv())
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
}
