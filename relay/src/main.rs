//! `relay`: reads its configuration from the environment and serves until SIGTERM or Ctrl-C.
//! `relay unregister-webhook` instead removes the channel's webhook and exits (teardown runs
//! it in the machine; see `relay::unregister`); `relay unpair <sender>|--all` removes paired
//! owners (`textslash unpair` runs it the same way; see `relay::pairing::unpair`).

use anyhow::Context;
use contract::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let config = relay::config::Config::from_lookup(|name| std::env::var(name).ok())
        .context("the relay's configuration is incomplete")?;
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("unregister-webhook") => {
            let answer = relay::unregister::run(&config).await;
            println!("{answer}");
            std::process::exit(if answer["error"].is_null() { 0 } else { 1 });
        }
        Some("unpair") => {
            let answer = relay::pairing::unpair(&config, std::env::args().nth(2).as_deref()).await;
            println!("{answer}");
            std::process::exit(if answer["error"].is_null() { 0 } else { 1 });
        }
        Some(other) => {
            anyhow::bail!(
                "unknown command {other:?}: the relay takes none, unregister-webhook or unpair"
            )
        }
    }
    let listener = service::bind(config.port).await?;
    relay::run(config, listener, service::shutdown_signal()).await?;
    Ok(())
}
