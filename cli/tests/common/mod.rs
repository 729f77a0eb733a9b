//! Helpers for the whole-system tests (`whole_system_on_sim.rs`, `e2e_browser.rs`): the
//! machine binaries, polling, reading a machine's state from the sim's API, and the sim's
//! Telegram user.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;
use std::path::{Path, PathBuf};

pub mod terminal;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The relay, vm and demo agent binaries, built if needed (they belong to other packages, so
/// cargo does not build them for this test by itself). They come from the same build as
/// `cargo xtask test`'s (every package, every feature, test targets included: relay's and
/// vm's own tests need these binaries too), so under it this build has nothing left to do;
/// `cargo build -p relay` would pick other features and compile everything a second time.
///
/// The variables cargo set for this test's own package are left out: build scripts such as
/// ring's re-run when `CARGO_MANIFEST_DIR` changes, so passing them on would rebuild the TLS
/// stack and everything above it here, and again in the next plain cargo run (xtask strips
/// the same set, `build_cache::forget_the_package_cargo_ran`).
pub fn machine_binaries() -> (PathBuf, PathBuf, PathBuf) {
    let workspace = workspace();
    let mut cargo = cargo();
    let status = cargo
        .args([
            "test",
            "--quiet",
            "--workspace",
            "--all-features",
            "--no-run",
        ])
        .current_dir(&workspace)
        .status()
        .unwrap();
    assert!(status.success(), "building relay and vm failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(workspace.join("target"))
        .join("debug");
    (
        target.join("relay"),
        target.join("vm"),
        target.join("textslash-demo-agent"),
    )
}

/// `cargo` in the workspace, without the variables cargo set for this test's own package
/// (see [`machine_binaries`]).
pub fn cargo() -> std::process::Command {
    let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_this_package = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CFG_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref());
        if set_for_this_package {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo.current_dir(workspace());
    cargo
}

/// The real Claude Code CLI the vm machines run: `CLAUDE_BIN` (which `cargo xtask test`
/// sets), or `claude` on PATH (`cargo xtask install` puts it there, at the version the vm
/// image pins).
pub fn claude_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CLAUDE_BIN") {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("claude"))
        .find(|path| path.is_file())
        .expect("Claude Code is not installed: run `cargo xtask install`")
}

/// `textslash serve` (the real binary) on a free loopback port; stopped when dropped.
pub struct Served {
    child: Option<std::process::Child>,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Served {
    /// Stops it and returns everything it printed.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `textslash serve --page <page> --api-url <api>` and waits for its "serving … on"
/// line.
pub fn textslash_serve(page: &Path, api: &str) -> Served {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_textslash"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-url",
            api,
            "--page",
        ])
        .arg(page)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split(" on ")
        .nth(1)
        .unwrap_or_else(|| panic!("textslash serve said {line:?}"))
        .trim()
        .trim_end_matches('/')
        .to_string();
    Served {
        child: Some(child),
        base,
    }
}

#[allow(unused_imports)] // each test file uses its own subset
pub use sim::testing::{eventually, eventually_showing};

/// `app`'s machines, as the sim's Machines API lists them.
pub async fn machines(sim: &sim::SimHandle, app: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/apps/{app}/machines", sim.base_url()))
        .bearer_auth("sim-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn vm_state(sim: &sim::SimHandle, app: &str) -> String {
    machines(sim, app).await[0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A Telegram user (`from_id`) sends `text` through the sim; the status the relay's webhook
/// answered.
pub async fn telegram_user_sends(sim: &sim::SimHandle, from_id: i64, text: &str) -> u64 {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/sim/telegram/send", sim.base_url()))
        .json(&serde_json::json!({"from_id": from_id, "text": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["webhook_status"].as_u64().unwrap()
}

/// A Discord user DMs the sim's bot; the sim's answer (`channel_id`, `delivered_live`).
pub async fn discord_user_sends(sim: &sim::SimHandle, from_id: &str, text: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/sim/discord/dm", sim.base_url()))
        .json(&serde_json::json!({"from_id": from_id, "text": text}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    response.json().await.unwrap()
}

/// Calls the sim's Machines API on `app`'s only machine: `start`, `stop`, …
pub async fn machine_action(sim: &sim::SimHandle, app: &str, action: &str) {
    let machines = machines(sim, app).await;
    let id = machines[0]["id"].as_str().unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/apps/{app}/machines/{id}/{action}",
            sim.base_url()
        ))
        .bearer_auth("sim-token")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{action}: {response:?}");
}

/// The owner of a chat on the sim's Telegram (a user id) or Discord (a user id, their DM).
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    Telegram(i64),
    Discord(&'a str),
}

/// The owner taps Allow under every question the bot asks them (Telegram's inline keyboard,
/// Discord's buttons) until `done` finds what the test waits for (within `within`).
pub async fn allow_until<T>(
    sim: &sim::SimHandle,
    owner: Owner<'_>,
    within: std::time::Duration,
    done: impl AsyncFn() -> Option<T>,
) -> T {
    let http = reqwest::Client::new();
    let (to, control, from) = match owner {
        Owner::Telegram(id) => (
            format!("telegram:{id}"),
            "/sim/telegram/tap",
            serde_json::json!(id),
        ),
        Owner::Discord(id) => (
            format!("discord:{id}"),
            "/sim/discord/click",
            serde_json::json!(id),
        ),
    };
    sim::testing::eventually("the answer after allowing", within, async || {
        let sent = match owner {
            Owner::Telegram(_) => sim.sim.channels.telegram_sent(),
            Owner::Discord(_) => sim.sim.discord.sent(),
        };
        for question in sent
            .into_iter()
            .filter(|s| s.to == to && !s.buttons.is_empty())
        {
            // A tap on a question already answered is told so, and changes nothing.
            let _ = http
                .post(format!("{}{control}", sim.base_url()))
                .json(&serde_json::json!({"from_id": from, "message_id": question.message_id, "label": "Allow"}))
                .send()
                .await;
        }
        done().await
    })
    .await
}
