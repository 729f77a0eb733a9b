//! `relay`: reads its configuration from the environment and serves until SIGTERM or Ctrl-C.

use anyhow::Context;
use relay::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let config = relay::config::Config::from_lookup(|name| std::env::var(name).ok())
        .context("the relay's configuration is incomplete")?;
    let listener = tokio::net::TcpListener::bind((service::listen_host(), config.port))
        .await
        .with_context(|| format!("PORT: cannot listen on {}", config.port))?;
    relay::run(config, listener, service::shutdown_signal()).await?;
    Ok(())
}
