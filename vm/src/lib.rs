//! The vm: runs the coding agent (Claude Code, headless) for each conversation, one job at a
//! time per conversation, keeps sessions and work on `DATA_DIR`, reports to the relay, and
//! exits when idle so Fly stops the machine (Flycast starts it again on the next message).
//!
//! # Layout
//! - [`config`]: environment variables.
//! - [`routes`]: `POST /messages`, `GET /health`.
//! - [`jobs`]: the queue's dispatcher and a job's life; [`reply`] turns how it ended into
//!   the user's reply; [`commands`]: `/new`, `/status`, `/cancel`, `/mode`, `/rules`.
//! - [`diff`]: `/diff`, the workspace's changes against each repository's HEAD and a
//!   baseline for files outside git.
//! - [`approvals`]: each conversation's mode, the questions the agent asks before a tool
//!   call, their answers, and questions parked while the vm sleeps.
//! - [`agent`]: one agent process, fed a message per job; [`stream`] reads its stream-json;
//!   [`progress`]: the job's status line from its tool calls.
//! - [`agents`]: the warm processes of recently active conversations.
//! - [`callbacks`]: results to the relay, kept until it accepts them.
//! - [`store`]: SQLite on `DATA_DIR` (queue, sessions, spend, callbacks).

pub mod agent;
pub mod agents;
pub mod approvals;
pub mod callbacks;
pub mod commands;
pub mod config;
pub mod diff;
pub mod fence;
pub mod jobs;
pub mod progress;
pub mod reply;
pub mod routes;
pub mod store;
pub mod stream;

use config::Config;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::{Notify, oneshot, watch};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the handlers and tasks share.
pub struct Vm {
    pub config: Config,
    pub store: Store,
    /// Results and typing to the relay, in the contract's terms.
    pub relay: contract::client::ToRelay,
    pub started: Instant,
    last_activity: Mutex<Instant>,
    /// Rung when a job is queued or finishes.
    pub jobs_wake: Notify,
    pub callbacks_wake: Notify,
    /// conversation → how to cancel its running job.
    pub running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Agent processes waiting, warm, for their conversation's next message.
    pub agents: agents::Agents,
    /// Cleared when shutdown begins: no new job starts.
    pub accepting: AtomicBool,
    /// Questions whose agent process waits for the answer.
    pub approvals: approvals::Waiting,
}

impl Vm {
    pub fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
}

pub use contract::service::StartError;

/// Runs until `shutdown` completes or the vm has been idle for `IDLE_TIMEOUT_SECS`; then stops
/// taking work, interrupts running jobs (telling their senders), flushes results, and returns.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut config = config;
    std::fs::create_dir_all(&config.data_dir).map_err(StartError::DataDir)?;
    // The agent runs in a workspace below DATA_DIR, so every path handed to it must be absolute.
    config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(StartError::DataDir)?;
    let store = Store::open(&config.data_dir.join("vm.db")).map_err(StartError::storage)?;
    match &config.agent_user {
        Some(agent) => {
            fence::prepare(&config.data_dir, agent).map_err(StartError::DataDir)?;
            fence::make_undumpable();
            if !fence::hooks_pinned_off() {
                tracing::warn!(
                    "{} does not turn Claude Code's hooks off: a hook the agent plants would run in its later sessions",
                    fence::MANAGED_SETTINGS
                );
            }
        }
        None => tracing::warn!(
            "AGENT_USER is not set: the agent runs as the vm's own user and can read its secrets"
        ),
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("TLS backend");
    let warm_agents = config.warm_agents;
    let relay = contract::client::ToRelay::new(http, &config.relay_callback_url, &config.vm_token);
    let vm = Arc::new(Vm {
        config,
        store,
        relay,
        started: Instant::now(),
        last_activity: Mutex::new(Instant::now()),
        jobs_wake: Notify::new(),
        callbacks_wake: Notify::new(),
        running: Mutex::new(HashMap::new()),
        agents: agents::Agents::new(warm_agents),
        accepting: AtomicBool::new(true),
        approvals: Default::default(),
    });
    // A question asked before a restart has no process waiting: its answer resumes instead.
    vm.store
        .park_open_questions()
        .map_err(StartError::storage)?;
    for job in vm.store.take_interrupted().map_err(StartError::storage)? {
        callbacks::queue(
            &vm,
            &format!("interrupted:{}", job.message.id),
            &job.message.conversation,
            reply::INTERRUPTED_BY_RESTART.into(),
            vec![],
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(jobs::dispatch(vm.clone(), stop_rx.clone()));
    let sender = tokio::spawn(callbacks::run(vm.clone(), stop_rx.clone()));
    let (idle_tx, idle_rx) = oneshot::channel();
    tokio::spawn(watch_idle(vm.clone(), idle_tx));
    tokio::spawn(housekeeping(vm.clone(), stop_rx.clone()));

    tracing::info!(
        "vm listening on {}",
        listener.local_addr().map_err(StartError::Serve)?
    );
    let stop_serving = async move {
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down on request"),
            _ = idle_rx => tracing::info!("idle: exiting so the machine stops"),
        }
    };
    axum::serve(listener, routes::router(vm.clone()))
        .with_graceful_shutdown(stop_serving)
        .await
        .map_err(StartError::Serve)?;

    // Stop starting jobs, interrupt the running ones (each tells its sender), then give the
    // results a moment to reach the relay; anything left stays in the store for next time.
    vm.accepting.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    for (_, cancel) in vm.running.lock().unwrap_or_else(|p| p.into_inner()).drain() {
        let _ = cancel.send(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while vm
        .store
        .counts(None)
        .map(|(running, _)| running > 0)
        .unwrap_or(false)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vm.agents.clear();
    let _ = sender.await;
    callbacks::flush(&vm, Duration::from_secs(5)).await;
    tracing::info!("vm stopped");
    Ok(())
}

/// Keeps the volume from filling up with finished work: at start and every ten minutes,
/// jobs and results older than `RETENTION_HOURS` go (the workspaces are the user's, and stay).
async fn housekeeping(vm: Arc<Vm>, mut stop: watch::Receiver<bool>) {
    loop {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(vm.config.retention)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        match vm.store.prune(cutoff) {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned finished jobs and results"),
            Err(error) => tracing::warn!("pruning the store failed: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Fires once nothing is running, queued or waiting for the relay, and no request came for
/// `IDLE_TIMEOUT_SECS`.
async fn watch_idle(vm: Arc<Vm>, idle: oneshot::Sender<()>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250).min(vm.config.idle_timeout)).await;
        vm.agents.expire(vm.config.agent_warm_for);
        let busy = vm
            .store
            .counts(None)
            .map(|(r, q)| r + q > 0)
            .unwrap_or(true)
            || vm.store.pending_callbacks().map(|n| n > 0).unwrap_or(true);
        if busy {
            vm.touch();
        } else if vm.idle_for() >= vm.config.idle_timeout {
            let _ = idle.send(());
            return;
        }
    }
}
