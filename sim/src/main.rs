//! `textslash-sim`: runs the sim on a loopback port until Ctrl-C, optionally also serving a
//! built page directory (the demo). It never binds anything but loopback.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Local Fly.io, Telegram and Twilio stand-ins for textslash tests and the demo")]
struct Args {
    /// Loopback port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4280)]
    port: u16,
    /// Where volumes and state live.
    #[arg(long, default_value = "target/sim")]
    data_dir: PathBuf,
    /// Image substring to local program, e.g. `relay=target/debug/relay`. Repeatable.
    #[arg(long = "image", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// Accepted Fly API tokens (besides `sim-token`). Repeatable.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// A built page to serve at `/` (e.g. `dist`).
    #[arg(long)]
    page: Option<PathBuf>,
    /// Environment for every machine, `NAME=VALUE` (e.g. `AGENT_CMD=…`). Repeatable.
    #[arg(long = "machine-env", value_parser = parse_pair)]
    machine_env: Vec<(String, String)>,
    /// Also accept this key at the fake Anthropic endpoint (read from the environment
    /// variable it names, so the key never appears in a process listing).
    #[arg(long = "anthropic-key-from-env")]
    anthropic_key_env: Option<String>,
    /// How long a stopped machine takes to boot when Flycast wakes it.
    #[arg(long, default_value_t = 0)]
    wake_delay_ms: u64,
    /// `allow`: the Machines API answers browsers' CORS preflights; `refuse`: it sends no
    /// `Access-Control-*` header, like a server that does not serve browsers.
    #[arg(long, value_enum, default_value = "allow")]
    cors: CorsArg,
    /// With `--cors allow`, only this origin (repeatable); any origin when none is given.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CorsArg {
    Allow,
    Refuse,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.to_string(), value.to_string()))
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    let (needle, path) = s.split_once('=').ok_or("expected SUBSTRING=PROGRAM")?;
    Ok((needle.to_string(), PathBuf::from(path)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut config = sim::SimConfig::new(args.data_dir);
    config.images.rules = args
        .images
        .into_iter()
        .map(|(n, p)| (n, sim::Program::Path(p)))
        .collect();
    config.tokens.extend(args.tokens);
    config.machine_env.extend(args.machine_env);
    config.wake_delay = std::time::Duration::from_millis(args.wake_delay_ms);
    config.cors = match (args.cors, args.cors_origins.is_empty()) {
        (CorsArg::Refuse, _) => sim::Cors::Refuse,
        (CorsArg::Allow, true) => sim::Cors::Open,
        (CorsArg::Allow, false) => sim::Cors::Only(args.cors_origins),
    };
    if let Some(key) = args
        .anthropic_key_env
        .and_then(|name| std::env::var(name).ok())
    {
        config.anthropic_keys.push(key);
    }
    let mut extra = axum::Router::new();
    if let Some(page) = &args.page {
        extra = extra.fallback_service(tower_http::services::ServeDir::new(page));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let handle = sim::start_with_extra_routes(config, addr, extra)
        .await
        .context("starting the sim")?;
    println!("sim listening on {}", handle.base_url());
    println!(
        "  Fly Machines API: {}/v1   (token: sim-token)",
        handle.base_url()
    );
    println!("  app_url template: {}", handle.app_url_template());
    println!("  your phone:       {}/sim/chat", handle.base_url());
    if args.page.is_some() {
        println!("  page:             {}/", handle.base_url());
    }
    tokio::signal::ctrl_c().await?;
    drop(handle);
    Ok(())
}
