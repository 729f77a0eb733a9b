//! What the real Fly platform does that a tidy emulator would not: propagation lags and rate
//! limits. Each one is on by default, with delays short enough for tests; the sources, and
//! what `provision` does about each, are the rows of `docs/fly-machines-api.md` §11.
//!
//! - A new app is invisible for a moment: every call on it answers 404 or 401 (superfly/fly-go
//!   `flaps/flaps_apps.go` `WaitForApp` retries exactly those two; flyctl calls it after every
//!   app create, even one made with `?wait=true`: `internal/command/apps/create.go:125`;
//!   superfly/flyctl PR #3112).
//! - A new machine is missing from reads (list, get, wait) for a moment: machine lists come
//!   from a replicated store (flyctl `internal/command/deploy/strategy_bluegreen.go`,
//!   `launchGreenMachineWithRetry`: "the list-lookup runs before that write propagates …
//!   (Corrosion)"; `internal/machine/leasable_machine.go` `WaitForState`: "Machine not found
//!   but we just created it … it may not be visible yet").
//! - A destroyed machine lets go of its volume a moment after it is gone (fly-go
//!   `flaps/flaps_volumes.go` lists `waiting_for_detach` among a volume's dying states).
//! - A new app's `<app>.fly.dev` name does not resolve for a moment after its first public IP
//!   (flyctl `internal/command/deploy/machines_deploymachinesapp.go` `checkDNS` waits up to
//!   70 s for it). The sim cannot make a loopback name fail to resolve, so it does what a
//!   client sees instead: the connection ends without an answer.
//! - Mutations are rate-limited per action and resource: about 1 request/s, bursts of 3
//!   (superfly/docs `machines/api/working-with-machines-api`, "Rate limits"); flyctl retries the
//!   429 it gets (`internal/flapsutil/retry.go` `IsTransientFlapsError`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long each lag lasts, and the rate limit. [`FlyQuirks::default`] is what tests and the
/// demo get; [`FlyQuirks::none`] is an emulator with none of them.
#[derive(Clone, Debug)]
pub struct FlyQuirks {
    /// How long a new app answers [`FlyQuirks::new_app_status`] to every call on it.
    pub new_app_hidden_for: Duration,
    /// 401 or 404: fly-go's `WaitForApp` treats both as "not there yet".
    pub new_app_status: u16,
    /// How long a new machine is missing from lists, gets and waits.
    pub new_machine_unlisted_for: Duration,
    /// How long a volume stays attached after its machine is gone.
    pub volume_detach_after: Duration,
    /// How long a new app's public name does not resolve after its first public IP.
    pub new_name_unresolved_for: Duration,
    /// Mutations per second per action and resource, and the burst; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for FlyQuirks {
    fn default() -> Self {
        FlyQuirks {
            new_app_hidden_for: Duration::from_millis(300),
            new_app_status: 401,
            new_machine_unlisted_for: Duration::from_millis(200),
            volume_detach_after: Duration::from_millis(200),
            new_name_unresolved_for: Duration::from_millis(300),
            rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 3,
            }),
        }
    }
}

impl FlyQuirks {
    /// No lag and no limit: the emulator as tidy as it can be.
    pub fn none() -> Self {
        FlyQuirks {
            new_app_hidden_for: Duration::ZERO,
            new_app_status: 404,
            new_machine_unlisted_for: Duration::ZERO,
            volume_detach_after: Duration::ZERO,
            new_name_unresolved_for: Duration::ZERO,
            rate_limit: None,
        }
    }
}

/// A token bucket per action and resource (`POST /v1/apps/x/machines`, …).
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Whether one more call to `key` fits under `limit` now (and counts it if so).
    pub fn admit(&self, key: &str, limit: RateLimit) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = buckets
            .entry(key.to_string())
            .or_insert((f64::from(limit.burst), now));
        let refilled =
            *tokens + now.duration_since(*last).as_secs_f64() * f64::from(limit.per_second);
        *tokens = refilled.min(f64::from(limit.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Whether something that happened at `since` is still inside a window of `length`.
pub fn within(since: Option<Instant>, length: Duration) -> bool {
    since.is_some_and(|at| at.elapsed() < length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_and_the_next_call_waits_for_the_refill() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1,
            burst: 3,
        };
        assert!((0..3).all(|_| limiter.admit("POST /v1/apps", limit)));
        assert!(!limiter.admit("POST /v1/apps", limit));
        assert!(
            limiter.admit("POST /v1/apps/other/machines", limit),
            "another resource has its own bucket"
        );
    }
}
