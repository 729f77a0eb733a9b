//! For tests that drive the sim (and the code under test beside it): wait for something
//! observable instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// Asks `check` until it gives a value, and fails the test naming `what` after `timeout`.
/// Polls every 25 ms: observable state (a recorded request, a machine state, a log line) is
/// cheap to ask for, and a loaded 2-core machine only makes the wait longer, never wrong.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_showing(
        what,
        timeout,
        Duration::from_millis(25),
        check,
        async || String::new(),
    )
    .await
}

/// [`eventually`], asking `every` so often (a browser's page is dearer to ask than a
/// recorded request), and naming in the failure what was there instead: `describe` runs once,
/// when the wait has timed out (the page's text, the messages that did arrive).
pub async fn eventually_showing<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    describe: impl AsyncFnOnce() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() >= timeout {
            let seen = describe().await;
            if seen.is_empty() {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            panic!("timed out after {timeout:?} waiting for {what}; instead: {seen}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A port free on loopback now, for a process a test starts (it binds it itself).
pub fn free_port() -> u16 {
    crate::supervisor::free_port().expect("a free loopback port")
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
