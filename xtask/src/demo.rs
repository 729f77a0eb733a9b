//! `cargo xtask demo`: builds the page, the sim, the relay and the vm, then runs the sim with
//! the page served from it and `config.json` pointing at it, until Ctrl-C.

use crate::cmd::{self, Timings};
use crate::{dist, tools};
use std::path::Path;
use std::process::Command;

/// The sim's port in the demo; the page and every "Fly" URL live on it.
const PORT: u16 = 4280;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut timings = Timings::default();
    tools::ensure_page_tools(root, &mut timings)?;
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "sim",
        "-p",
        "relay",
        "-p",
        "vm",
    ]))?;
    let base = format!("http://127.0.0.1:{PORT}");
    let config = serde_json::json!({
        "api_base": base,
        "app_url": format!("{base}/apps/{{app}}"),
        "telegram_api": format!("{base}/telegram"),
        "anthropic_api": format!("{base}/anthropic"),
    });
    dist::build(root, Some(&config))?;
    let release = root.join("target/release");
    println!(
        "\nOpen {base}/ and deploy with the Fly token `sim-token`. Ctrl-C stops everything.\n"
    );
    cmd::run(
        Command::new(release.join("textslash-sim"))
            .args([
                "--port",
                &PORT.to_string(),
                "--data-dir",
                "target/demo",
                "--page",
                "dist",
            ])
            .arg("--image")
            .arg(format!("relay={}", release.join("relay").display()))
            .arg("--image")
            .arg(format!("vm={}", release.join("vm").display())),
    )
}
