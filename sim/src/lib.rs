//! Local stand-ins for the outside world, so tests and the demo never reach the internet.
//!
//! One loopback port serves everything, so the page needs a single origin in its CSP:
//! - `/v1/…`: a Fly Machines API emulator (same paths, shapes and status codes as
//!   `sim/fly-openapi3.json` for what `provision` uses), answering CORS preflights as `--cors` says;
//! - `/apps/<app>/…`: the app's public address (what `https://<app>.fly.dev` is on Fly);
//! - `/flycast/<app>/…`: its private Flycast address, which starts a stopped machine and
//!   holds the request until it answers, as Fly's proxy does;
//! - `/telegram/…`, `/twilio/…`, `/anthropic/…`: fake channel and model APIs ([`model`] is
//!   the Messages API the real Claude Code CLI runs against), and
//!   `/sim/telegram/…`, `/sim/twilio/…` to play the user ([`channels`]);
//! - `/twilio-content/…`: Twilio's Content API, the templates of WhatsApp quick replies
//!   ([`content`]);
//! - `/discord/…`: a fake Discord Gateway (websocket) and REST API, `/sim/discord/…` to play
//!   the user and to force reconnects ([`discord`]);
//! - `/sim/…`: control for tests: app URLs, a state dump, fault injection.
//!
//! Machines are real processes: an image reference maps to a local binary ([`ImageMap`]),
//! started with the machine's env, the app's secrets, `PORT` on a free loopback port and its
//! volume as a directory. See [`supervisor`] for the lifecycle and restart policies.
//!
//! # Layout
//! - [`world`]: the in-memory model (apps, machines, volumes, IPs, secrets).
//! - [`api`]: the Machines API handlers.
//! - [`supervisor`]: machine processes: start, stop, exit, restart.
//! - [`proxy`]: the public and Flycast routes.
//! - [`faults`]: injected latency and failures.
//! - [`quirks`]: what the real platform does in time: propagation lags and rate limits.

// Handlers return axum `Response`s as their error type (the error *is* the answer); their size
// is irrelevant for a local emulator.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod channels;
pub mod content;
pub mod discord;
pub mod echo;
pub mod faults;
pub mod model;
pub mod openapi;
pub mod proxy;
pub mod quirks;
pub mod supervisor;
pub mod testing;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the sim's Machines API treats browsers (see `api::cors_layer` for what each allows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Any origin, with only the API's methods and the headers a client needs.
    Open,
    /// Only these origins (`http://localhost:1234`), same methods and headers.
    Only(Vec<String>),
    /// No `Access-Control-*` header at all: browsers cannot call it.
    Refuse,
}

/// What runs a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// A local executable, spawned as a child process.
    Path(PathBuf),
    /// The [`echo`] machine, in-process (for tests that have no binary path at hand).
    Echo,
}

/// Which local program runs a machine of a given image.
#[derive(Clone, Debug, Default)]
pub struct ImageMap {
    /// `(substring of the image reference, program)`, first match wins.
    pub rules: Vec<(String, Program)>,
    /// Substrings of image references whose registry wants a login (a GitHub package left
    /// private, GHCR's default): Fly cannot pull them.
    pub private: Vec<String>,
}

impl ImageMap {
    pub fn program_for(&self, image: &str) -> Option<Program> {
        self.rules
            .iter()
            .find(|(needle, _)| image.contains(needle.as_str()))
            .map(|(_, p)| p.clone())
    }

    /// Why a machine with `image` cannot be created, as the Machines API answers it. A
    /// private image: Fly pulls anonymously, and the create fails with the registry's
    /// "failed to get manifest <image>: unauthorized" (docs/fly-machines-api.md §11).
    pub fn refusal(&self, image: &str) -> Option<(u16, String)> {
        if self
            .private
            .iter()
            .any(|needle| image.contains(needle.as_str()))
        {
            return Some((422, format!("failed to get manifest {image}: unauthorized")));
        }
        if self.program_for(image).is_none() {
            return Some((
                400,
                format!("sim: no local program for image {image}; map one with --image"),
            ));
        }
        None
    }
}

/// The credentials the fakes accept out of the box (the demo shows them to the user).
pub const SIM_TELEGRAM_BOT: &str = "123456:SIMbotTOKENforTheLocalDemo_0000000";
pub const SIM_TWILIO_SID: &str = "AC00000000000000000000000000000001";
pub const SIM_TWILIO_TOKEN: &str = "5173696d7477696c696f746f6b656e31";
pub const SIM_ANTHROPIC_KEY: &str = "sk-ant-sim-key";
/// A Discord bot token of the documented shape: base64 of the bot's user id, a timestamp
/// part and an HMAC part, dot-separated.
pub const SIM_DISCORD_BOT: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GsImTk.c2ltLWRpc2NvcmQ";
/// The user (and application) id inside [`SIM_DISCORD_BOT`].
pub const SIM_DISCORD_BOT_ID: &str = "123456789012345678";

/// How the sim is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Org tokens the API accepts (compared without their `FlyV1 `/`Bearer ` scheme).
    pub tokens: Vec<String>,
    /// Deploy tokens, each limited to one app: (token, app).
    pub app_tokens: Vec<(String, String)>,
    /// Users' own tokens (`fly auth token`).
    pub personal_tokens: Vec<String>,
    /// Read-only org tokens (`fly tokens create readonly`): `tokens/current` describes them as
    /// org tokens (flyctl PR #2916 mints an org token and attenuates it), and every write
    /// is refused with 403.
    pub readonly_tokens: Vec<String>,
    /// User tokens that are not macaroons, sent as `Bearer` (fly-go `tokens/tokens.go`).
    /// `tokens/current` documents macaroons only (`main.tokenInfo`), so the sim plays the
    /// worst case of that undocumented answer: 401, while every other call accepts them.
    pub oauth_tokens: Vec<String>,
    /// The org every accepted token belongs to.
    pub org: String,
    /// App names held by "another org": GET answers 403, create answers 422.
    pub names_taken_elsewhere: Vec<String>,
    pub images: ImageMap,
    /// Where volumes live as directories.
    pub data_dir: PathBuf,
    /// Extra environment for every machine (e.g. `TELEGRAM_API_BASE` pointing at a fake).
    pub machine_env: Vec<(String, String)>,
    /// Bot tokens the fake Telegram knows.
    pub telegram_bots: Vec<String>,
    /// Bot tokens the fake Discord knows.
    pub discord_bots: Vec<String>,
    /// The Gateway's `heartbeat_interval` (Discord sends about 41 s).
    pub discord_heartbeat: std::time::Duration,
    /// (Account SID, auth token) pairs the fake Twilio knows.
    pub twilio_accounts: Vec<(String, String)>,
    /// API keys the fake Anthropic models endpoint accepts.
    pub anthropic_keys: Vec<String>,
    /// How long a stopped machine takes to boot when Flycast wakes it (Fly: about 1–3 s).
    pub wake_delay: std::time::Duration,
    /// How the Machines API answers browsers' CORS preflights.
    pub cors: Cors,
    /// How long an app or machine deletion takes after it was answered (Fly deletes
    /// asynchronously: apps answer 202; a volume detaches once its machine is destroyed).
    pub deletion_delay: std::time::Duration,
    /// Fly's propagation lags and rate limits ([`quirks`]): on unless a test turns one off.
    pub quirks: quirks::FlyQuirks,
}

impl SimConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        SimConfig {
            tokens: vec!["sim-token".into()],
            app_tokens: vec![("sim-deploy-token".into(), "someone-app".into())],
            personal_tokens: vec!["sim-personal-token".into()],
            readonly_tokens: vec!["sim-readonly-token".into()],
            oauth_tokens: vec!["sim-oauth-token".into()],
            org: "personal".into(),
            names_taken_elsewhere: vec!["taken-relay".into(), "taken-vm".into()],
            images: ImageMap::default(),
            data_dir,
            machine_env: Vec::new(),
            telegram_bots: vec![SIM_TELEGRAM_BOT.into()],
            discord_bots: vec![SIM_DISCORD_BOT.into()],
            discord_heartbeat: std::time::Duration::from_millis(41_250),
            twilio_accounts: vec![(SIM_TWILIO_SID.into(), SIM_TWILIO_TOKEN.into())],
            anthropic_keys: vec![SIM_ANTHROPIC_KEY.into()],
            wake_delay: std::time::Duration::ZERO,
            deletion_delay: std::time::Duration::from_millis(1500),
            cors: Cors::Open,
            quirks: quirks::FlyQuirks::default(),
        }
    }
}

/// Shared state of a running sim.
pub struct Sim {
    pub config: SimConfig,
    pub base_url: String,
    pub world: world::World,
    pub faults: faults::Faults,
    /// The Machines API's rate limit buckets ([`quirks::FlyQuirks::rate_limit`]).
    pub rate_limiter: quirks::RateLimiter,
    pub channels: channels::Channels,
    pub content: content::Content,
    pub discord: discord::Discord,
    /// The fake Messages API's record of requests.
    pub model: model::Model,
    pub http: reqwest::Client,
}

/// A running sim; dropping it stops the server and kills every machine process.
pub struct SimHandle {
    pub sim: Arc<Sim>,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl SimHandle {
    pub fn base_url(&self) -> &str {
        &self.sim.base_url
    }
    /// The `app_url` template for provision: `http://127.0.0.1:PORT/apps/{app}`.
    pub fn app_url_template(&self) -> String {
        format!("{}/apps/{{app}}", self.sim.base_url)
    }

    /// Every app with its machines, volumes, IPs and secrets' names (what `GET /sim/state`
    /// answers), for tests in the same process.
    pub fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.sim.world.dump()).expect("the state serialises")
    }

    /// Replaces the fault rules (what `POST /sim/faults` does).
    pub fn set_faults(&self, rules: Vec<faults::FaultRule>) {
        self.sim.faults.set(faults::FaultConfig {
            rules,
            ..Default::default()
        });
    }

    /// The rules that fired so far (what `GET /sim/faults` answers).
    pub fn fired_faults(&self) -> Vec<String> {
        self.sim.faults.fired()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sim.world.kill_all();
    }
}

/// Starts the sim on `addr` (port 0 picks a free one).
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    start_with_extra_routes(config, addr, axum::Router::new()).await
}

/// As [`start`], with more routes merged in (the binary adds the page's static files).
pub async fn start_with_extra_routes(
    config: SimConfig,
    addr: SocketAddr,
    extra: axum::Router,
) -> std::io::Result<SimHandle> {
    let mut config = config;
    std::fs::create_dir_all(&config.data_dir)?;
    // Machines run in other working directories; give them absolute paths.
    config.data_dir = std::fs::canonicalize(&config.data_dir)?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim {
        config,
        base_url: format!("http://{addr}"),
        world: world::World::default(),
        faults: faults::Faults::default(),
        rate_limiter: quirks::RateLimiter::default(),
        channels: channels::Channels::default(),
        content: content::Content::default(),
        discord: discord::Discord::default(),
        model: model::Model::default(),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("http client"),
    });
    let app = api::router(sim.clone())
        .merge(proxy::router(sim.clone()))
        .merge(channels::router(sim.clone()))
        .merge(content::router(sim.clone()))
        .merge(discord::router(sim.clone()))
        .merge(model::router(sim.clone()))
        .merge(extra);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(SimHandle {
        sim,
        addr,
        shutdown: Some(tx),
    })
}
