//! The browser's side effects for `provision`: fetch (gloo-net) and timers.
//!
//! A failed `fetch` in a browser does not say why (CORS, CSP, offline all look alike). When the
//! browser knows it is offline the failure is a [`TransportError::Network`] (retried, then "check
//! the connection"); any other is [`TransportError::Blocked`], which `provision` turns into
//! advice: use the CLI, or an API proxy in `config.json`.

use provision::{Clock, HttpRequest, HttpResponse, Method, Transport, TransportError};
use std::time::Duration;

#[derive(Clone, Copy, Default)]
pub struct BrowserTransport;

impl Transport for BrowserTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
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

/// A Fly client for the page.
pub fn fly_client(
    api_base: &str,
    token: &str,
) -> provision::FlyClient<BrowserTransport, BrowserClock> {
    provision::FlyClient::new(BrowserTransport, BrowserClock, api_base, token)
}
