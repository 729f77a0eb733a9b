//! `relay unregister-webhook`: run by teardown inside the relay's machine (the Machines API's
//! exec, which runs a command in the machine's own environment), so the bot token is used
//! where it already lives and is never stored anywhere new.
//!
//! Telegram: removes the bot's webhook, once the running relay has settled its own
//! registration (so its start-up `setWebhook` cannot land after the removal). WhatsApp: the
//! webhook is a field in the user's Twilio console that only they can clear; the answer says
//! so and teardown tells them which. Discord: there is no webhook, only the Gateway
//! connection, which ends with the relay.
//!
//! The answer is one JSON line on stdout: `{"channel": "telegram", "removed": true}`, or with
//! `"removed": false` and an `"error"` sentence (exit code 1).

use crate::config::Config;
use crate::telegram;
use std::time::{Duration, Instant};

/// How long to wait for the running relay to finish registering before removing anyway.
const SETTLE: Duration = Duration::from_secs(20);

pub async fn run(config: &Config) -> serde_json::Value {
    let Some(telegram) = &config.telegram else {
        let channel = if config.discord.is_some() {
            "discord"
        } else {
            "whatsapp"
        };
        return serde_json::json!({"channel": channel, "removed": false});
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("TLS backend");
    wait_for_registration(&http, config.port).await;
    match telegram::delete_webhook(&http, telegram).await {
        Ok(()) => serde_json::json!({"channel": "telegram", "removed": true}),
        Err(error) => serde_json::json!({
            "channel": "telegram",
            "removed": false,
            "error": error.to_string(),
        }),
    }
}

/// Waits while the relay in this machine still says it is registering (or retrying).
async fn wait_for_registration(http: &reqwest::Client, port: u16) {
    let health = format!("http://127.0.0.1:{port}/health");
    let started = Instant::now();
    while started.elapsed() < SETTLE {
        let state = match http.get(&health).send().await {
            Ok(answer) => answer
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|h| h["telegram_webhook"]["state"].as_str().map(str::to_string)),
            // No relay serving here: nothing can register after us.
            Err(_) => return,
        };
        if !matches!(state.as_deref(), Some("registering" | "retrying")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
