//! The browser's side effects for `provision`: fetch (gloo-net) and timers.
//!
//! A failed `fetch` in a browser does not say why (CORS, CSP, offline all look alike). When the
//! browser knows it is offline the failure is a [`TransportError::Network`] (retried, then "check
//! the connection"); any other is [`TransportError::Blocked`].
//!
//! Fly documents no CORS headers, so a browser may refuse every direct Fly call. When the
//! page's host forwards Fly calls (`textslash serve` names its forwarder as `api_fallback` in
//! `config.json`), the first refused call switches this tab to the forwarder for the rest of
//! the session, and [`forwarding`] turns on so the page says so once. Without a forwarder,
//! `provision` turns the refusal into advice on where to open the page instead.

use leptos::prelude::{ArcRwSignal, GetUntracked, Set};
use provision::{Clock, HttpRequest, HttpResponse, Method, Transport, TransportError};
use std::time::Duration;

thread_local! {
    static FORWARDING: ArcRwSignal<bool> = ArcRwSignal::new(false);
}

/// Whether this tab sends its Fly calls through the page host's forwarder.
pub fn forwarding() -> ArcRwSignal<bool> {
    FORWARDING.with(Clone::clone)
}

/// Sends Fly calls directly, or through the forwarder once the browser refused a direct one.
#[derive(Clone, Default)]
pub struct BrowserTransport {
    /// The Machines API as `config.json` names it.
    direct: String,
    /// The same-origin forwarder (relative to the page), if the host has one.
    fallback: Option<String>,
}

impl BrowserTransport {
    /// `url` through the forwarder, when this tab switched to it and `url` is a Machines API
    /// call (`/v1/…`; the relay's health may live on the same host, and is not Fly's API).
    fn route(&self, url: &str, through_forwarder: bool) -> Option<String> {
        let fallback = self.fallback.as_deref()?;
        let rest = url
            .strip_prefix(&self.direct)
            .filter(|rest| rest.starts_with("/v1/"))?;
        through_forwarder.then(|| format!("{}{rest}", fallback.trim_end_matches('/')))
    }
}

impl Transport for BrowserTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let forwarding = forwarding();
        if let Some(url) = self.route(&request.url, forwarding.get_untracked()) {
            return fetch(HttpRequest { url, ..request }).await;
        }
        match fetch(request.clone()).await {
            Err(TransportError::Blocked(reason)) => match self.route(&request.url, true) {
                Some(url) => {
                    forwarding.set(true);
                    fetch(HttpRequest { url, ..request }).await
                }
                None => Err(TransportError::Blocked(reason)),
            },
            other => other,
        }
    }
}

pub(crate) async fn fetch(request: HttpRequest) -> Result<HttpResponse, TransportError> {
    {
        use gloo_net::http::{Method as M, RequestBuilder};
        let method = match request.method {
            Method::Get => M::GET,
            Method::Post => M::POST,
            Method::Put => M::PUT,
            Method::Delete => M::DELETE,
        };
        let mut builder = RequestBuilder::new(&request.url).method(method);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let sent = match request.body {
            Some(body) => {
                builder
                    .header("Content-Type", "application/json")
                    .body(body)
                    .map_err(fetch_failed)?
                    .send()
                    .await
            }
            None => builder.send().await,
        };
        let response = sent.map_err(fetch_failed)?;
        let status = response.status();
        let body = response.text().await.map_err(fetch_failed)?;
        Ok(HttpResponse { status, body })
    }
}

fn fetch_failed(error: gloo_net::Error) -> TransportError {
    let online = web_sys::window().is_none_or(|window| window.navigator().on_line());
    if online {
        TransportError::Blocked(error.to_string())
    } else {
        TransportError::Network("this device is offline".into())
    }
}

#[derive(Clone, Copy, Default)]
pub struct BrowserClock;

impl Clock for BrowserClock {
    async fn sleep(&self, duration: Duration) {
        gloo_timers::future::sleep(duration).await
    }
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }
}

/// A Fly client for the page, with the forwarder named in `config` as its fallback.
pub fn fly_client(
    config: &crate::config::Config,
    token: &str,
) -> provision::FlyClient<BrowserTransport, BrowserClock> {
    let direct = config.api_base.trim_end_matches('/').to_string();
    let transport = BrowserTransport {
        direct: direct.clone(),
        fallback: config.api_fallback.clone(),
    };
    provision::FlyClient::new(transport, BrowserClock, &direct, token)
}
