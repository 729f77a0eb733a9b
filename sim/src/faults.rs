//! Injected latency and failures, for tests and benchmarks of the clients.
//!
//! A rule fails the `nth` call (1-based) whose method and path match, either instead of
//! acting (`status`), or after acting with the answer replaced (`drop_response`): the
//! "create whose answer was lost" case. Set through `POST /sim/faults`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct FaultRule {
    /// `GET`, `POST`, …; empty matches any.
    #[serde(default)]
    pub method: String,
    /// Matches when the request path contains it.
    pub path_contains: String,
    pub nth: u32,
    /// The status answered instead of acting (e.g. 500, 429, 408).
    #[serde(default)]
    pub status: Option<u16>,
    /// Act, then answer `status` (504 when unset) as if the response was lost on the way, or
    /// as flyd answers a create that ran past its deadline (408: "the upstream side-effect
    /// may or may not have happened", flyctl `internal/flapsutil/retry.go`).
    #[serde(default)]
    pub drop_response: bool,
    /// Answer with this body (and `status`, 200 when unset) instead of acting: for answers
    /// that succeed on HTTP and fail inside, like a start that says `{"status": "error", …}`,
    /// or errors with a particular body, like `{"status": "insufficient_capacity"}`.
    #[serde(default)]
    pub answer: Option<serde_json::Value>,
    #[serde(skip)]
    seen: u32,
}

impl FaultRule {
    pub fn fail(method: &str, path_contains: &str, nth: u32, status: u16) -> Self {
        FaultRule {
            method: method.into(),
            path_contains: path_contains.into(),
            nth,
            status: Some(status),
            ..Default::default()
        }
    }
    pub fn answer(method: &str, path_contains: &str, nth: u32, body: serde_json::Value) -> Self {
        FaultRule {
            method: method.into(),
            path_contains: path_contains.into(),
            nth,
            answer: Some(body),
            ..Default::default()
        }
    }
    /// Answers the `nth` matching call with `status` and `body` instead of acting.
    pub fn answer_with(
        method: &str,
        path_contains: &str,
        nth: u32,
        status: u16,
        body: serde_json::Value,
    ) -> Self {
        FaultRule {
            status: Some(status),
            ..FaultRule::answer(method, path_contains, nth, body)
        }
    }
    pub fn drop_after_acting(method: &str, path_contains: &str, nth: u32) -> Self {
        FaultRule {
            method: method.into(),
            path_contains: path_contains.into(),
            nth,
            drop_response: true,
            ..Default::default()
        }
    }
    /// Acts, then answers `status` instead of the result.
    pub fn act_then_fail(method: &str, path_contains: &str, nth: u32, status: u16) -> Self {
        FaultRule {
            status: Some(status),
            ..FaultRule::drop_after_acting(method, path_contains, nth)
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FaultConfig {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// What to do with one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    FailWith(u16),
    ActThenFail(u16),
    AnswerWith(u16, serde_json::Value),
}

#[derive(Default)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    fired: Mutex<Vec<String>>,
}

impl Faults {
    pub fn set(&self, config: FaultConfig) {
        *self.config.lock().unwrap() = config;
        self.fired.lock().unwrap().clear();
    }

    pub fn latency_ms(&self) -> u64 {
        self.config.lock().unwrap().latency_ms
    }

    /// Descriptions of the faults that fired, in order.
    pub fn fired(&self) -> Vec<String> {
        self.fired.lock().unwrap().clone()
    }

    /// Counts the call against every matching rule; the first rule whose turn it is decides.
    pub fn verdict(&self, method: &str, path: &str) -> Verdict {
        let mut config = self.config.lock().unwrap();
        let mut verdict = Verdict::Proceed;
        for rule in config.rules.iter_mut() {
            if (!rule.method.is_empty() && !rule.method.eq_ignore_ascii_case(method))
                || !path.contains(&rule.path_contains)
            {
                continue;
            }
            rule.seen += 1;
            if rule.seen == rule.nth && verdict == Verdict::Proceed {
                verdict = if rule.drop_response {
                    Verdict::ActThenFail(rule.status.unwrap_or(504))
                } else if let Some(body) = &rule.answer {
                    Verdict::AnswerWith(rule.status.unwrap_or(200), body.clone())
                } else {
                    Verdict::FailWith(rule.status.unwrap_or(500))
                };
                self.fired
                    .lock()
                    .unwrap()
                    .push(format!("{method} {path} -> {verdict:?}"));
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nth_matching_call_fails() {
        let faults = Faults::default();
        faults.set(FaultConfig {
            latency_ms: 0,
            rules: vec![FaultRule::fail("POST", "/machines", 2, 500)],
        });
        assert_eq!(
            faults.verdict("GET", "/v1/apps/a/machines"),
            Verdict::Proceed
        );
        assert_eq!(
            faults.verdict("POST", "/v1/apps/a/machines"),
            Verdict::Proceed
        );
        assert_eq!(
            faults.verdict("POST", "/v1/apps/a/machines"),
            Verdict::FailWith(500)
        );
        assert_eq!(
            faults.verdict("POST", "/v1/apps/a/machines"),
            Verdict::Proceed
        );
        assert_eq!(faults.fired().len(), 1);
    }
}
