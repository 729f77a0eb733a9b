//! Both directions of the contract over HTTP, with one verdict on each answer, so the relay's
//! forwarder and the vm's result sender retry, give up and report in the same terms.

use crate::protocol::{Callback, VmMessage};
use std::time::Duration;

/// What an answer means for the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the other side has it (and stored it first).
    Accepted,
    /// Unreachable, 5xx, 401 (the two sides' `VM_TOKEN`s differ until the owner fixes it):
    /// worth another try.
    Retry(String),
    /// 413: the body is over the other side's limit.
    TooLarge,
    /// 507: the other side's volume is full; retrying will not help until room is made.
    DiskFull,
    /// 400/422: this body will never be taken (the other side's words, shortened).
    Refused(String),
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &impl serde::Serialize,
    timeout: Duration,
) -> Verdict {
    let answer = http
        .post(url)
        .bearer_auth(token)
        .timeout(timeout)
        .json(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        // reqwest puts the URL in its errors; the callback URL is not secret, but keep the
        // habit of never printing one.
        Err(error) => return Verdict::Retry(error.without_url().to_string()),
    };
    let status = answer.status();
    match status.as_u16() {
        200..=299 => Verdict::Accepted,
        413 => Verdict::TooLarge,
        507 => Verdict::DiskFull,
        400 | 422 => {
            let said = answer.text().await.unwrap_or_default();
            Verdict::Refused(said.chars().take(200).collect())
        }
        _ => Verdict::Retry(format!("answered {status}")),
    }
}

/// The relay's side: sends messages to the vm (`<VM_URL>/messages`).
#[derive(Clone)]
pub struct ToVm {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl ToVm {
    pub fn new(http: reqwest::Client, vm_url: &str, token: &str) -> ToVm {
        ToVm {
            http,
            url: format!("{}/messages", vm_url.trim_end_matches('/')),
            token: token.to_string(),
        }
    }

    pub async fn send(&self, message: &VmMessage, timeout: Duration) -> Verdict {
        post(&self.http, &self.url, &self.token, message, timeout).await
    }
}

/// The vm's side: sends results and typing to the relay (`RELAY_CALLBACK_URL`, the relay's
/// `/callback`).
#[derive(Clone)]
pub struct ToRelay {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl ToRelay {
    pub fn new(http: reqwest::Client, callback_url: &str, token: &str) -> ToRelay {
        ToRelay {
            http,
            url: callback_url.to_string(),
            token: token.to_string(),
        }
    }

    pub async fn send(&self, callback: &Callback, timeout: Duration) -> Verdict {
        post(&self.http, &self.url, &self.token, callback, timeout).await
    }
}
