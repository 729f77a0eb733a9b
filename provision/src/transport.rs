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

/// One request. `headers` may carry the Authorization header (or Anthropic's `x-api-key`), and
/// a Telegram Bot API URL carries the bot token in its path: a transport must never log them,
/// and `Debug` shows `<redacted>` in their place, so a `{:?}` cannot leak a credential.
#[derive(Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// A JSON document, sent with `Content-Type: application/json`.
    pub body: Option<String>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("x-api-key")
                {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        // `…/bot<token>/getMe` → `…/bot<redacted>/getMe`.
        let url = match self.url.split_once("/bot") {
            Some((before, rest)) => {
                let after = rest.find('/').map_or("", |end| &rest[end..]);
                format!("{before}/bot<redacted>{after}")
            }
            None => self.url.clone(),
        };
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &url)
            .field("headers", &headers)
            .field("body", &self.body.as_ref().map(|b| b.len()))
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_authorization_header_or_the_body() {
        let request = HttpRequest {
            method: Method::Post,
            url: "https://api.machines.dev/v1/apps/a/secrets".into(),
            headers: vec![("Authorization".into(), "FlyV1 fm2_secret".into())],
            body: Some(r#"{"values":{"ANTHROPIC_API_KEY":"sk-ant-secret"}}"#.into()),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("fm2_secret"), "{shown}");
        assert!(!shown.contains("sk-ant-secret"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("/v1/apps/a/secrets"));

        // The credential checks: a bot token in the path, an Anthropic key in a header.
        let request = HttpRequest {
            method: Method::Get,
            url: "https://api.telegram.org/bot123:AAsecret/getMe".into(),
            headers: vec![("x-api-key".into(), "sk-ant-secret".into())],
            body: None,
        };
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("AAsecret") && !shown.contains("sk-ant-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("https://api.telegram.org/bot<redacted>/getMe"),
            "{shown}"
        );
    }
}
