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
//! - only `/fly-api/v1/{tokens/current, platform/regions, apps…}` and only to `--api-url`;
//! - only the `Authorization` and `Content-Type` headers, at most [`MAX_BODY`] each way, and
//!   at most [`UPSTREAM_TIMEOUT`] per call (longer than Fly's 60 s `/wait`);
//! - it never logs, stores or echoes the `Authorization` header or a body, and its own
//!   errors name no header;
//! - the page keeps the Content-Security-Policy it was built with (`connect-src` always
//!   includes `'self'`, which is where the forwarder is).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the forwarder answers, relative to the page (the page resolves it against itself).
pub const FORWARD_PATH: &str = "fly-api";
/// Machines API bodies are small JSON documents.
pub const MAX_BODY: usize = 1024 * 1024;
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(90);

/// The Machines API paths the page uses (after `/v1/`).
fn is_machines_api_path(path: &str) -> bool {
    let clean = !path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    clean
        && (path == "tokens/current"
            || path == "platform/regions"
            || path == "apps"
            || path.starts_with("apps/"))
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
    });
    let app = Router::new()
        .route("/config.json", get(config_json))
        .route(&format!("/{FORWARD_PATH}/v1/{{*path}}"), any(forward))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback_service(tower_http::services::ServeDir::new(&serve.page))
        .with_state(state);
    axum::serve(listener, app)
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
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_machines_api_path(&path) {
        return refuse(
            StatusCode::NOT_FOUND,
            "this forwarder passes on only the Fly Machines API calls the page makes",
        );
    }
    if ![Method::GET, Method::POST, Method::PUT, Method::DELETE].contains(&method) {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "method not forwarded");
    }
    let mut url = format!("{}/v1/{path}", state.api_url);
    if let Some(query) = uri.query() {
        url = format!("{url}?{query}");
    }
    let mut request = state.http.request(method, url);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(&name, value);
        }
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let upstream = match request.send().await {
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
    if upstream
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return refuse(
            StatusCode::BAD_GATEWAY,
            "the Fly API's answer was too large",
        );
    }
    let bytes = match upstream.bytes().await {
        Ok(bytes) if bytes.len() <= MAX_BODY => bytes,
        Ok(_) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the Fly API's answer was too large",
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the Fly API's answer broke off on the way",
            );
        }
    };
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
    use super::is_machines_api_path;

    #[test]
    fn only_the_page_s_machines_api_paths_are_forwarded() {
        for ok in [
            "tokens/current",
            "platform/regions",
            "apps",
            "apps/a-relay/machines/m1/wait",
        ] {
            assert!(is_machines_api_path(ok), "{ok}");
        }
        for no in [
            "",
            "graphql",
            "apps/../../sim/state",
            "apps//x",
            "appsx",
            "tokens",
            "orgs/personal/machines",
        ] {
            assert!(!is_machines_api_path(no), "{no}");
        }
    }
}
