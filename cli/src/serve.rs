//! `textslash serve`: the built page, and a same-origin forwarder to the Machines API for
//! when the browser cannot call Fly directly.
//!
//! Every Fly call carries `Authorization`, so a browser preflights each one, and Fly documents
//! no CORS headers (docs/fly-machines-api.md, "CORS"). If Fly's API does not answer browsers,
//! the page's direct calls are refused; this server then forwards the same calls from its own
//! origin, where no CORS applies. It tells the page so by adding `api_fallback` to the
//! `config.json` it serves; the page tries Fly directly first and switches to the forwarder
//! only when the browser refuses.
//!
//! What it forwards, and what it never does:
//! - only `/fly-api/v1/{tokens/current, platform/regions, apps…}` and only to `--api-url`,
//!   read from the raw request path as plain segments (no percent-encoding, no backslash, no
//!   dot segments) and rebuilt from those segments, so nothing can walk the URL elsewhere once
//!   it is decoded or normalised again; the built URL is checked against the list once more;
//! - only the `Authorization` and `Content-Type` headers, at most [`MAX_BODY`] each way
//!   (Fly's answer counted as it streams), at most [`UPSTREAM_TIMEOUT`] per call (longer than
//!   Fly's 60 s `/wait`), [`PER_CLIENT`] calls at once from one address, and a request body
//!   read within [`BODY_READ_TIMEOUT`];
//! - it never logs, stores or echoes the `Authorization` header or a body, and its own
//!   errors name no header;
//! - the page keeps the Content-Security-Policy it was built with (`connect-src` always
//!   includes `'self'`, which is where the forwarder is); every answer also says
//!   `X-Content-Type-Options: nosniff` and `frame-ancestors 'none'` (which only a header can
//!   say), so no other site can frame the page that holds a Fly token.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the forwarder answers, relative to the page (the page resolves it against itself).
pub const FORWARD_PATH: &str = "fly-api";
/// Machines API bodies are small JSON documents.
pub const MAX_BODY: usize = 1024 * 1024;
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(90);
/// Forwarded calls in flight from one client address (a deploy makes about four at once).
pub const PER_CLIENT: usize = 16;
/// How long a client may take to send a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The Machines API path the page uses, as plain segments after `/v1/`, from the raw
/// (still percent-encoded) request path. Anything else is `None`.
fn machines_api_segments(raw: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = raw.split('/').collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    let listed = matches!(
        segments.as_slice(),
        ["tokens", "current"] | ["platform", "regions"] | ["apps", ..]
    );
    (listed && segments.iter().all(plain)).then_some(segments)
}

/// The upstream URL for `segments`, built from segments, never by splicing text.
fn upstream_url(api_url: &str, segments: &[&str], query: Option<&str>) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(api_url).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push("v1")
        .extend(segments);
    if let Some(query) = query.filter(|q| q.bytes().all(|b| b.is_ascii_graphic())) {
        url.set_query(Some(query));
    }
    // Once more on what will really be sent: `/v1/` and the same plain segments.
    let base = reqwest::Url::parse(api_url).ok()?;
    let sent = url
        .path()
        .strip_prefix(base.path().trim_end_matches('/'))?
        .strip_prefix("/v1/")?;
    (url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && machines_api_segments(sent).as_deref() == Some(segments))
    .then_some(url)
}

pub struct Serve {
    /// The built page (`cargo xtask dist` writes `dist/`).
    pub page: PathBuf,
    /// The Machines API the forwarder calls.
    pub api_url: String,
}

struct Forwarder {
    page: PathBuf,
    api_url: String,
    http: reqwest::Client,
    /// Forwarded calls in flight per client address.
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// One forwarded call counted against its client until dropped.
struct Slot<'a> {
    forwarder: &'a Forwarder,
    client: IpAddr,
}

impl Forwarder {
    fn take_slot(&self, client: IpAddr) -> Option<Slot<'_>> {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        let count = in_flight.entry(client).or_default();
        if *count >= PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(Slot {
            forwarder: self,
            client,
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.forwarder.in_flight.lock().expect("in-flight lock");
        if let Some(count) = in_flight.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn run(
    serve: Serve,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(UPSTREAM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("textslash-serve/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises");
    let state = Arc::new(Forwarder {
        page: serve.page.clone(),
        api_url: serve.api_url.trim_end_matches('/').to_string(),
        http,
        in_flight: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/config.json", get(config_json))
        .route(&format!("/{FORWARD_PATH}/v1/{{*path}}"), any(forward))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_READ_TIMEOUT,
        ))
        .fallback_service(tower_http::services::ServeDir::new(&serve.page))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The page's own `config.json`, plus where the forwarder is.
async fn config_json(State(state): State<Arc<Forwarder>>) -> Response {
    let text = tokio::fs::read_to_string(state.page.join("config.json"))
        .await
        .unwrap_or_else(|_| "{}".into());
    let mut config: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = config.as_object_mut() {
        object.insert("api_fallback".into(), FORWARD_PATH.into());
    }
    ([(header::CACHE_CONTROL, "no-cache")], axum::Json(config)).into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn forward(
    State(state): State<Arc<Forwarder>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let not_forwarded = || {
        refuse(
            StatusCode::NOT_FOUND,
            "this forwarder passes on only the Fly Machines API calls the page makes",
        )
    };
    // The raw path, as the client sent it: decoding it first is what would let `%2e%2e`
    // become `..` on the way out.
    let Some(raw) = uri.path().strip_prefix(&format!("/{FORWARD_PATH}/v1/")) else {
        return not_forwarded();
    };
    let Some(segments) = machines_api_segments(raw) else {
        return not_forwarded();
    };
    if ![Method::GET, Method::POST, Method::PUT, Method::DELETE].contains(&method) {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "method not forwarded");
    }
    let Some(url) = upstream_url(&state.api_url, &segments, uri.query()) else {
        return not_forwarded();
    };
    let Some(_slot) = state.take_slot(client.ip()) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many calls at once from this address; wait for some to finish",
        );
    };
    let mut request = state.http.request(method, url);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(&name, value);
        }
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let mut upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(error) => {
            let why = if error.is_timeout() {
                "timed out"
            } else {
                "could not connect"
            };
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("the forwarder could not reach the Fly API ({why})"),
            );
        }
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let too_large = || {
        refuse(
            StatusCode::BAD_GATEWAY,
            "the Fly API's answer was too large",
        )
    };
    if upstream
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return too_large();
    }
    // Counted as it arrives: an answer without a length stops at the limit, not after it.
    let mut bytes = Vec::new();
    loop {
        match upstream.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_BODY => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => return too_large(),
            Ok(None) => break,
            Err(_) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "the Fly API's answer broke off on the way",
                );
            }
        }
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::{machines_api_segments, upstream_url};

    #[test]
    fn only_the_page_s_machines_api_paths_are_forwarded() {
        for ok in [
            "tokens/current",
            "platform/regions",
            "apps",
            "apps/a-relay/machines/m1/wait",
            "apps/a-relay/ip_assignments/2a09:8280:1::1",
        ] {
            assert!(machines_api_segments(ok).is_some(), "{ok}");
        }
        for no in [
            "",
            "graphql",
            "apps/../../sim/state",
            "apps/%2e%2e/%2e%2e/x",
            "apps/x/%252e%252e/y",
            "apps/x%5C..%5Cy",
            "apps/x\\..\\y",
            "apps//x",
            "appsx",
            "tokens",
            "orgs/personal/machines",
        ] {
            assert!(machines_api_segments(no).is_none(), "{no}");
        }
    }

    #[test]
    fn the_upstream_url_is_built_from_segments_under_v1() {
        let url = upstream_url(
            "https://api.machines.dev",
            &["apps", "a-vm", "machines", "m1", "wait"],
            Some("state=started&timeout=60"),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.machines.dev/v1/apps/a-vm/machines/m1/wait?state=started&timeout=60"
        );
        let behind_a_path = upstream_url("http://127.0.0.1:9/fly", &["apps"], None).unwrap();
        assert_eq!(behind_a_path.as_str(), "http://127.0.0.1:9/fly/v1/apps");
    }
}
