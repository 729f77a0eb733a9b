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
