//! For tests that drive the sim (and the code under test beside it): wait for something
//! observable instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// Asks `check` until it gives a value, and fails the test naming `what` after `timeout`.
/// Polls every 25 ms: observable state (a recorded request, a machine state, a log line) is
/// cheap to ask for, and a loaded 2-core machine only makes the wait longer, never wrong.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A Telegram user taps a button through the sim's control (`POST /sim/telegram/tap` with
/// `tap`: `from_id`, `message_id`, `label`, and `chat_id` or a stale `data` where wanted);
/// what the bot told the tapper, once it answered the callback query.
pub async fn telegram_tap(sim: &crate::SimHandle, tap: serde_json::Value) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/sim/telegram/tap", sim.base_url()))
        .json(&tap)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let tapped: serde_json::Value = response.json().await.unwrap();
    let query = tapped["query_id"].as_str().unwrap().to_string();
    eventually("the tap answered", Duration::from_secs(10), async || {
        sim.sim.channels.tap_answer(&query)
    })
    .await
}
