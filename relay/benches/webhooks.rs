//! Load benchmark of the relay's front door, on loopback only and bounded, side by side with
//! the seed design's Express relay (`benches/express-peer/`, Twilio's own validator) in the
//! same run: each server pinned to one core (`taskset -c 0`), a stand-in vm that accepts at
//! once, and signed Twilio webhooks from this process, each a new message.
//!
//! Prints, for each: webhooks acknowledged per second (closed loop, 16 connections, 10,000
//! requests; the median of three rounds), ack latency p50/p99 at a fixed 200 requests/s
//! (three rounds of 5 s, pooled), RSS idle and after load; for the relay also how many journal
//! commits its writes took (group commit), how many waited for an fsync, and how long the vm-bound backlog a burst leaves
//! takes to drain. The steady-rate rounds start once that backlog is gone (the peer forwards
//! nothing), so both are measured doing the same work per webhook. The rounds alternate
//! between the servers, so a slow spell of a shared machine falls on both. Beside them, the
//! disk's own floor: the latency of an fdatasync'd small append at the same 200/s, under any
//! "durable before the 200" server's latency on this machine. The peer runs
//! only where node and npm are installed (its packages come from the npm registry once, into
//! the target directory); without them the bench says so and measures the relay alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-auth-token";
const SID: &str = "AC00000000000000000000000000000bench";
const SENDER: &str = "whatsapp:+15551234567";
const TOTAL: usize = 10_000;
const CONNECTIONS: usize = 16;
/// Webhooks of each open-loop round (5 s at 200/s).
const OPEN_LOOP: usize = 1000;

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
    data: tempfile::TempDir,
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

/// What each round measured of one server, gathered into its [`Figures`] at the end.
struct Samples {
    throughputs: Vec<f64>,
    latencies: Vec<Duration>,
    idle_rss_kib: u64,
}

impl Samples {
    fn figures(mut self, server: &Server) -> Figures {
        self.throughputs.sort_by(f64::total_cmp);
        self.latencies.sort();
        Figures {
            throughput: self.throughputs[self.throughputs.len() / 2],
            p50: percentile(&self.latencies, 0.5),
            p99: percentile(&self.latencies, 0.99),
            max: *self.latencies.last().unwrap(),
            idle_rss_kib: self.idle_rss_kib,
            loaded_rss_kib: rss_kib(server.child.id()),
        }
    }
}

/// Rounds per server, taken in turns (relay, peer, relay, …) so a slow spell of the machine
/// hits both: the median throughput and the latencies of every round pooled are reported.
const ROUNDS: usize = 3;

fn main() {
    // The load (and the stand-in vm) run on the other core, so they do not take turns with
    // the server under test. Threads inherit the main thread's affinity, so this goes before
    // the runtime starts its workers.
    let pinned = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !pinned {
        println!("could not pin the load to core 1 (taskset): figures will be noisier");
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

async fn run() {
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

    let relay = start_relay(&vm_url);
    let peer = start_peer(workspace, &target);
    if let Err(why) = &peer {
        println!("Express peer not measured: {why}");
    }
    let mut servers: Vec<(&Server, Samples)> = Vec::new();
    for server in std::iter::once(&relay).chain(peer.as_ref().ok()) {
        let idle_rss_kib = wait_until_ready(&http, server).await;
        servers.push((
            server,
            Samples {
                throughputs: Vec::new(),
                latencies: Vec::new(),
                idle_rss_kib,
            },
        ));
    }
    let disk_floor = fdatasync_latencies(relay.data.path());
    let mut drains = Vec::new();
    let mut first_message = 0;
    for _ in 0..ROUNDS {
        for (server, samples) in &mut servers {
            samples
                .throughputs
                .push(closed_loop(&http, server, first_message).await);
            first_message += TOTAL;
            if server.name == "relay" {
                drains.push(drain_forward_backlog(&http, server).await);
            }
            // The burst left dirty pages behind; flushing them now keeps the kernel's
            // writeback of this burst out of the next phase's latencies (for both servers).
            let _ = Command::new("sync").status();
            samples
                .latencies
                .extend(open_loop(&http, server, first_message).await);
            first_message += OPEN_LOOP;
        }
    }
    let health = relay_health(&http, &relay).await;
    let mut figures = servers
        .into_iter()
        .map(|(server, samples)| samples.figures(server));
    let relay_figures = figures.next().unwrap();
    let peer_figures = figures.next();

    println!(
        "signed Twilio webhooks, one core each, loopback; {ROUNDS} rounds each, taken in turns, of: closed loop {CONNECTIONS} connections × {TOTAL} requests, open loop 200/s × {OPEN_LOOP}; median throughput, pooled latencies:"
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
        "  relay journal: {} writes in {} commits (group commit), {} of them fsynced",
        journal["writes"], journal["commits"], journal["synced_commits"]
    );
    for (backlog, took) in &drains {
        println!(
            "  relay forward: {backlog} messages still for the vm after a burst, drained in {:.2} s",
            took.as_secs_f64()
        );
    }
    println!(
        "  this disk's floor: fdatasync of a small append at 200/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&disk_floor, 0.5)),
        ms(percentile(&disk_floor, 0.99)),
        ms(*disk_floor.last().unwrap())
    );
    status_line_figures();
}

/// What a channel sees of a busy 2-minute job's status line (a tool call every 300 ms, then
/// the summary), by the relay's own rules on a virtual clock (`relay::status::shown_at`).
fn status_line_figures() {
    use relay::status::shown_at;
    let updates: Vec<Duration> = (0..=400).map(|i| Duration::from_millis(300 * i)).collect();
    let edited = shown_at(true, &updates);
    let closest = edited
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or_default();
    let whatsapp = shown_at(false, &updates);
    println!(
        "status line of a 2-minute job with {} updates: Telegram and Discord 1 message + {} edits (closest two {:.1} s apart, so at most 1 a second); WhatsApp {} message(s)",
        updates.len(),
        edited.len().saturating_sub(1),
        closest.as_secs_f64(),
        whatsapp.len()
    );
}

/// How long each of `OPEN_LOOP` fdatasync'd 200-byte appends takes at 200 per second, in a
/// file in `dir` (sorted): what one durable write costs on this disk, whatever the server.
fn fdatasync_latencies(dir: &Path) -> Vec<Duration> {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut latencies = Vec::with_capacity(OPEN_LOOP);
    let mut next = Instant::now();
    for _ in 0..OPEN_LOOP {
        next += Duration::from_millis(5);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        file.write_all(&[b'x'; 200]).unwrap();
        let t = Instant::now();
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    latencies.sort();
    latencies
}

async fn relay_health(http: &reqwest::Client, relay: &Server) -> serde_json::Value {
    http.get(format!("{}/health", relay.public_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The relay's messages still waiting for the (stand-in) vm right after a burst, and how long
/// until none are: the relay's `/health` counts them.
async fn drain_forward_backlog(http: &reqwest::Client, relay: &Server) -> (u64, Duration) {
    let waiting = || async {
        relay_health(http, relay).await["journal"]["waiting_for_vm"]
            .as_u64()
            .unwrap()
    };
    let started = Instant::now();
    let backlog = waiting().await;
    while waiting().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the relay did not forward its backlog to the vm within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (backlog, started.elapsed())
}

/// The relay binary cargo built for this bench (the bench profile: release settings).
fn start_relay(vm_url: &str) -> Server {
    let data = tempfile::tempdir().unwrap();
    let port = sim::testing::free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(env!("CARGO_BIN_EXE_relay"))
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
        data,
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
    let port = sim::testing::free_port();
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
        data,
    })
}

/// Waits for the server's health answer, lets start-up work settle, and returns its idle RSS.
async fn wait_until_ready(http: &reqwest::Client, server: &Server) -> u64 {
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
    rss_kib(server.child.id())
}

/// Sends webhook number `n`, a new message each, and returns how long its answer took.
async fn send_webhook(http: reqwest::Client, server_url: String, n: usize) -> Duration {
    let url = format!("{server_url}/webhook/twilio");
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

/// `CONNECTIONS` senders, each sending its next webhook as soon as the last is answered:
/// webhooks per second.
async fn closed_loop(http: &reqwest::Client, server: &Server, first: usize) -> f64 {
    let t = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONNECTIONS {
        let (http, url) = (http.clone(), server.public_url.clone());
        workers.push(tokio::spawn(async move {
            for i in (w..TOTAL).step_by(CONNECTIONS) {
                send_webhook(http.clone(), url.clone(), first + i).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    TOTAL as f64 / t.elapsed().as_secs_f64()
}

/// Webhooks at a steady 200 per second, whatever the answers: each one's latency.
async fn open_loop(http: &reqwest::Client, server: &Server, first: usize) -> Vec<Duration> {
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    let mut pending = Vec::new();
    for i in 0..OPEN_LOOP {
        ticker.tick().await;
        pending.push(tokio::spawn(send_webhook(
            http.clone(),
            server.public_url.clone(),
            first + i,
        )));
    }
    let mut latencies = Vec::new();
    for p in pending {
        latencies.push(p.await.unwrap());
    }
    latencies
}
