//! Load benchmark of the relay's front door, on loopback only and bounded: the release relay
//! binary pinned to one core (`taskset -c 0`), a stand-in vm that accepts at once, and signed
//! Twilio webhooks from this process.
//!
//! Prints: webhooks acknowledged per second (closed loop, 16 connections, 3000 requests), ack
//! latency p50/p99 at a fixed 200 requests/s for 5 s, and the relay's RSS idle and after load.

use std::time::{Duration, Instant};

const TOKEN: &str = "bench-auth-token";
const SID: &str = "AC00000000000000000000000000000bench";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "relay",
            "--bin",
            "relay",
        ])
        .current_dir(&workspace)
        .status()
        .unwrap();
    assert!(status.success());
    let relay_bin = workspace.join("target/release/relay");

    // A vm that takes every message at once.
    let vm = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vm_url = format!("http://{}", vm.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/messages",
        axum::routing::post(|| async { axum::http::StatusCode::ACCEPTED }),
    );
    tokio::spawn(async move { axum::serve(vm, app).await.unwrap() });

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(&relay_bin)
        .env("PORT", port.to_string())
        .env("LISTEN_HOST", "127.0.0.1")
        .env("PUBLIC_URL", &public_url)
        .env("DATA_DIR", data.path())
        .env("VM_URL", &vm_url)
        .env("VM_TOKEN", "bench")
        .env("ALLOWED_SENDERS", "whatsapp:+15551234567")
        .env("TWILIO_ACCOUNT_SID", SID)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_WHATSAPP_NUMBER", "+14155238886")
        .env("TWILIO_API_BASE", "http://127.0.0.1:9")
        .env("RUST_LOG", "error")
        .spawn()
        .expect("taskset and the relay binary");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let started = Instant::now();
    while http
        .get(format!("{public_url}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "relay did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(child.id());

    let url = format!("{public_url}/webhook/twilio");
    let send = {
        let http = http.clone();
        let url = url.clone();
        move |n: usize| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let params: Vec<(String, String)> = vec![
                    ("MessageSid".into(), format!("SM{n:032}")),
                    ("From".into(), "whatsapp:+15551234567".into()),
                    ("To".into(), "whatsapp:+14155238886".into()),
                    ("Body".into(), format!("benchmark message {n}")),
                    ("NumMedia".into(), "0".into()),
                ];
                let signature = relay::twilio::signature(TOKEN, &url, &params);
                let t = Instant::now();
                let status = http
                    .post(&url)
                    .header("X-Twilio-Signature", signature)
                    .form(&params)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
                t.elapsed()
            }
        }
    };

    // Closed loop: 16 connections, 3000 webhooks.
    const TOTAL: usize = 3000;
    const CONNECTIONS: usize = 16;
    let t = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONNECTIONS {
        let send = send.clone();
        workers.push(tokio::spawn(async move {
            for i in (w..TOTAL).step_by(CONNECTIONS) {
                send(i).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let throughput = TOTAL as f64 / t.elapsed().as_secs_f64();

    // Open loop: 200 per second for 5 seconds.
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut pending = Vec::new();
    for i in 0..1000 {
        ticker.tick().await;
        pending.push(tokio::spawn(send(TOTAL + i)));
    }
    let mut latencies = Vec::new();
    for p in pending {
        latencies.push(p.await.unwrap());
    }
    latencies.sort();
    let loaded_rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    println!("relay webhooks (release binary, one core, loopback, SQLite WAL synchronous=FULL):");
    println!(
        "  closed loop, {CONNECTIONS} connections: {throughput:.0} signed webhooks/s acknowledged ({TOTAL} requests)"
    );
    println!(
        "  200/s for 5 s: ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  RSS: idle {:.1} MiB, after load {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0
    );
}
