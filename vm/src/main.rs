//! `vm`: reads its configuration from the environment and serves until idle, SIGTERM or
//! Ctrl-C. Exits 0 when idle so Fly's `on-failure` restart policy leaves the machine stopped.

use anyhow::Context;
use contract::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let config = vm::config::Config::from_lookup(|name| std::env::var(name).ok())
        .context("the vm's configuration is incomplete")?;
    let listener = service::bind(config.port).await?;
    vm::run(config, listener, service::shutdown_signal()).await?;
    Ok(())
}
