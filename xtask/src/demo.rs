//! `cargo xtask demo`: builds the page, the sim, the relay and the vm, then runs the sim with
//! the page served from it and `config.json` pointing at it, until Ctrl-C (the sim's machines
//! are its children and stop with it).
//!
//! The vm runs the real Claude Code (installed at the vm image's version): against the sim's
//! scripted model, or against Anthropic's API when `ANTHROPIC_API_KEY` is set (the sim then
//! accepts that key as the deployment's).

use crate::cmd::{self, Timings};
use crate::{dist, tools};
use std::path::Path;
use std::process::Command;

/// The sim's port in the demo; the page and every "Fly" URL live on it.
const PORT: u16 = 4280;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut timings = Timings::default();
    tools::ensure_page_tools(root, &mut timings)?;
    tools::ensure_agent_tools(root, &mut timings)?;
    cmd::run(Command::new("cargo").args([
        "build",
        "-p",
        "sim",
        "-p",
        "relay",
        "-p",
        "vm",
        "-p",
        "textslash",
    ]))?;
    let base = format!("http://127.0.0.1:{PORT}");
    let config = serde_json::json!({
        "api_base": base,
        "app_url": format!("{base}/apps/{{app}}"),
        "telegram_api": format!("{base}/telegram"),
        "anthropic_api": format!("{base}/anthropic"),
    });
    dist::build(root, Some(&config))?;

    let bin = root.join("target/debug");
    let real_model = std::env::var_os("ANTHROPIC_API_KEY").is_some();
    let mut sim = Command::new(bin.join("textslash-sim"));
    sim.args([
        "--port",
        &PORT.to_string(),
        "--data-dir",
        "target/demo",
        "--page",
        "dist",
    ])
    .arg("--image")
    .arg(format!("relay={}", bin.join("relay").display()))
    .arg("--image")
    .arg(format!("vm={}", bin.join("vm").display()))
    // The vm sleeps after two idle minutes, so the next message shows the wake-up.
    .args(["--machine-env", "IDLE_TIMEOUT_SECS=120"])
    .arg("--machine-env")
    .arg(format!("AGENT_CMD={}", tools::claude_bin()?.display()))
    .args(["--machine-env", "CHROMIUM_PATH=/usr/bin/chromium"]);
    if real_model {
        sim.args(["--anthropic-key-from-env", "ANTHROPIC_API_KEY"])
            .args([
                "--machine-env",
                "ANTHROPIC_BASE_URL=https://api.anthropic.com",
            ]);
    }

    let telegram = sim_constant("SIM_TELEGRAM_BOT");
    let anthropic = if real_model {
        "your ANTHROPIC_API_KEY".to_string()
    } else {
        sim_constant("SIM_ANTHROPIC_KEY")
    };
    let agent = if real_model {
        "Claude Code with Anthropic's API (your ANTHROPIC_API_KEY)"
    } else {
        "Claude Code with the sim's scripted model (set ANTHROPIC_API_KEY for the real one)"
    };
    println!(
        r#"
textslash demo: everything runs on this machine; nothing reaches Fly, Telegram, Twilio or Discord.

  1. Open the page:        {base}/
  2. Open "your phone":    {base}/sim/chat

  Credentials the sim accepts:
    Fly token            sim-token
    Telegram bot token   {telegram}
    Twilio Account SID   {sid}
    Twilio auth token    {twilio}
    Discord bot token    {discord}   (any user id, e.g. 80351110224678912)
    Anthropic key        {anthropic}
  Agent: {agent}

  Deploy from a terminal (the same provisioning code as the page):
    FLY_API_TOKEN=sim-token TELEGRAM_BOT_TOKEN='{telegram}' ANTHROPIC_API_KEY={anthropic_cli} \
      target/debug/textslash deploy --prefix demo --channel telegram --allow telegram:4242 \
      --api-url {base} --app-url '{base}/apps/{{app}}'
  then chat as Telegram user 4242 on the phone page. Ctrl-C stops everything.
"#,
        sid = sim_constant("SIM_TWILIO_SID"),
        discord = sim_constant("SIM_DISCORD_BOT"),
        twilio = sim_constant("SIM_TWILIO_TOKEN"),
        anthropic_cli = if real_model {
            "$ANTHROPIC_API_KEY".to_string()
        } else {
            sim_constant("SIM_ANTHROPIC_KEY")
        },
    );
    cmd::run(&mut sim)
}

/// A credential constant of the sim, read from its source so the two never disagree.
fn sim_constant(name: &str) -> String {
    let source = include_str!("../../sim/src/lib.rs");
    source
        .lines()
        .find_map(|line| line.strip_prefix(&format!("pub const {name}: &str = \"")))
        .map(|rest| rest.trim_end_matches("\";").to_string())
        .unwrap_or_else(|| panic!("sim/src/lib.rs defines {name}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_sims_credentials() {
        assert_eq!(super::sim_constant("SIM_ANTHROPIC_KEY"), "sk-ant-sim-key");
    }
}
