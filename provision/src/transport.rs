//! The side effects `provision` needs, as two small traits.
//!
//! Keeping HTTP and time behind traits lets the same plan run in the browser (gloo-net,
//! `setTimeout`), natively (reqwest, tokio) and in tests, without `provision` knowing which.
//! The traits use `async fn` without `Send` bounds on purpose: browser futures are not `Send`.

use std::time::Duration;

/// HTTP methods the Machines API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One request. `headers` may carry the Authorization header: a transport must never log it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// A JSON document, sent with `Content-Type: application/json`.
    pub body: Option<String>,
}

/// What came back. Bodies are small JSON documents, so a `String` is enough.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// The request never produced a response.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// Connection refused, DNS, TLS, reset: worth retrying.
    #[error("network error: {0}")]
    Network(String),
    /// The browser refused to send it or to show the answer (CORS, CSP, mixed content).
    /// Natively this never happens.
    #[error("the browser blocked the request: {0}")]
    Blocked(String),
}

#[allow(async_fn_in_trait)]
pub trait Transport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
}

#[allow(async_fn_in_trait)]
pub trait Clock {
    async fn sleep(&self, duration: Duration);
    /// Milliseconds since some fixed point; only differences are used.
    fn now_ms(&self) -> u64;
}

impl<T: Transport + ?Sized> Transport for &T {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        (**self).send(request).await
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    async fn sleep(&self, duration: Duration) {
        (**self).sleep(duration).await
    }
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}
