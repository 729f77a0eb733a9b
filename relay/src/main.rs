//! `relay`: reads its configuration from the environment and serves until SIGTERM or Ctrl-C.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = relay::config::Config::from_lookup(|name| std::env::var(name).ok())
        .context("the relay's configuration is incomplete")?;
    let listener = tokio::net::TcpListener::bind((listen_host(), config.port))
        .await
        .with_context(|| format!("PORT: cannot listen on {}", config.port))?;
    relay::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (Fly stopping the machine) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Fly routes to 0.0.0.0; the sim sets `LISTEN_HOST=127.0.0.1` so local machines stay on loopback.
fn listen_host() -> String {
    std::env::var("LISTEN_HOST").unwrap_or_else(|_| "0.0.0.0".into())
}
