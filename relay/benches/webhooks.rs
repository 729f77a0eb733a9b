//! Load benchmark of the relay's front door, on loopback only and bounded, side by side with
//! the seed design's Express relay (`benches/express-peer/`, Twilio's own validator) in the
//! same run: each server pinned to one core (`taskset -c 0`), a stand-in vm that accepts at
//! once, and signed Twilio webhooks from this process, each a new message.
//!
//! Prints, for each: webhooks acknowledged per second (closed loop, 16 connections, 3000
//! requests), ack latency p50/p99 at a fixed 200 requests/s for 5 s, RSS idle and after load;
//! for the relay also how many journal commits its writes took (group commit). The peer runs
//! only where node and npm are installed (its packages come from the npm registry once, into
//! the target directory); without them the bench says so and measures the relay alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-auth-token";
const SID: &str = "AC00000000000000000000000000000bench";
const SENDER: &str = "whatsapp:+15551234567";
const TOTAL: usize = 3000;
const CONNECTIONS: usize = 16;

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One server under test, killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    public_url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Figures {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    idle_rss_kib: u64,
    loaded_rss_kib: u64,
}

#[tokio::main]
async fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(workspace.join("target"));

    // A vm that takes every message at once.
    let vm = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vm_url = format!("http://{}", vm.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/messages",
        axum::routing::post(|| async { axum::http::StatusCode::ACCEPTED }),
    );
    tokio::spawn(async move { axum::serve(vm, app).await.unwrap() });

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let relay = start_relay(workspace, &target, &vm_url);
    let relay_figures = measure(&http, &relay).await;
    let health: serde_json::Value = http
        .get(format!("{}/health", relay.public_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(relay);

    let peer = start_peer(workspace, &target);
    let peer_figures = match &peer {
        Ok(peer) => Some(measure(&http, peer).await),
        Err(why) => {
            println!("Express peer not measured: {why}");
            None
        }
    };
    drop(peer);

    println!(
        "signed Twilio webhooks, one core each, loopback; closed loop {CONNECTIONS} connections × {TOTAL} requests; open loop 200/s for 5 s:"
    );
    println!(
        "  {:<34} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "server", "webhooks/s", "p50 ms", "p99 ms", "max ms", "RSS idle", "RSS load"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "  {name:<34} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8.1}MB {:>8.1}MB",
            f.throughput,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.idle_rss_kib as f64 / 1024.0,
            f.loaded_rss_kib as f64 / 1024.0
        )
    };
    row("relay (SQLite WAL, FULL sync)", &relay_figures);
    if let Some(peer) = &peer_figures {
        row("Express 5 + twilio (file, fsync)", peer);
        println!(
            "  relay / Express: {:.1}× the webhooks per second, p99 {:.1}× lower",
            relay_figures.throughput / peer.throughput,
            ms(peer.p99) / ms(relay_figures.p99)
        );
    }
    let journal = &health["journal"];
    println!(
        "  relay journal: {} writes in {} commits (group commit)",
        journal["writes"], journal["commits"]
    );
}

fn start_relay(workspace: &Path, target: &Path, vm_url: &str) -> Server {
    let status = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "relay",
            "--bin",
            "relay",
        ])
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(status.success());
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(target.join("release/relay"))
        .env("PORT", port.to_string())
        .env("LISTEN_HOST", "127.0.0.1")
        .env("PUBLIC_URL", &public_url)
        .env("DATA_DIR", data.path())
        .env("VM_URL", vm_url)
        .env("VM_TOKEN", "bench")
        .env("ALLOWED_SENDERS", SENDER)
        .env("TWILIO_ACCOUNT_SID", SID)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_WHATSAPP_NUMBER", "+14155238886")
        .env("TWILIO_API_BASE", "http://127.0.0.1:9")
        .env("RUST_LOG", "error")
        .spawn()
        .expect("taskset and the relay binary");
    Server {
        name: "relay",
        child,
        public_url,
        _data: data,
    }
}

/// The Express peer, its npm packages installed on first use into the target directory.
fn start_peer(workspace: &Path, target: &Path) -> Result<Server, String> {
    let source = workspace.join("relay/benches/express-peer");
    let dir = target.join("bench-express-peer");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["package.json", "server.js"] {
        std::fs::copy(source.join(file), dir.join(file)).map_err(|e| e.to_string())?;
    }
    if !dir.join("node_modules/twilio/package.json").exists() {
        let installed = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--quiet"])
            .current_dir(&dir)
            .status()
            .map_err(|_| "npm is not installed".to_string())?;
        if !installed.success() {
            return Err("npm install of express and twilio failed".into());
        }
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let child = Command::new("taskset")
        .args(["-c", "0", "node", "server.js"])
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("PUBLIC_URL", &public_url)
        .env("DATA_DIR", data.path())
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("ALLOWED_SENDERS", SENDER)
        .spawn()
        .map_err(|_| "node is not installed".to_string())?;
    Ok(Server {
        name: "Express peer",
        child,
        public_url,
        _data: data,
    })
}

async fn measure(http: &reqwest::Client, server: &Server) -> Figures {
    let started = Instant::now();
    while http
        .get(format!("{}/health", server.public_url))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} did not start",
            server.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let start-up work (JIT, allocations) settle before the idle figure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kib = rss_kib(server.child.id());

    let url = format!("{}/webhook/twilio", server.public_url);
    let send = {
        let http = http.clone();
        move |n: usize| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let params: Vec<(String, String)> = vec![
                    ("MessageSid".into(), format!("SM{n:032}")),
                    ("From".into(), SENDER.into()),
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
    Figures {
        throughput,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().unwrap(),
        idle_rss_kib,
        loaded_rss_kib: rss_kib(server.child.id()),
    }
}
