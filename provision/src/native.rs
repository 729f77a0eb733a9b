//! The native side effects: HTTP over reqwest and time from tokio (feature `native`).

use crate::transport::{Clock, HttpRequest, HttpResponse, Method, Transport, TransportError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// reqwest behind [`Transport`]. Errors carry reqwest's text, which never includes headers.
#[derive(Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Longer than Fly's 60 s wait cap.
            .timeout(Duration::from_secs(90))
            .user_agent(concat!("textslash/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend initialises");
        ReqwestTransport { client }
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for ReqwestTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| TransportError::Network(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| TransportError::Network(e.without_url().to_string()))?;
        Ok(HttpResponse { status, body })
    }
}

/// Wall-clock milliseconds and tokio's timer.
#[derive(Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
