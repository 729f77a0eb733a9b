//! `textslash serve` as a real process in front of the sim's Machines API (which refuses
//! browsers here): what it forwards, what it refuses, and what it never repeats.

mod common;

use common::textslash_serve;
use serde_json::{Value, json};

fn page_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>t</title>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"api_base": "https://api.machines.dev", "images": {"relay": "r", "vm": "v"}}"#,
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn forwards_only_machines_api_calls_and_keeps_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut config = sim::SimConfig::new(data.path().to_path_buf());
    config.cors = sim::Cors::Refuse;
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let page = page_dir();
    let server = textslash_serve(page.path(), sim.base_url());
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);

    // The page and its config, which now names the forwarder.
    let index = http.get(url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let config: Value = http
        .get(url("/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["api_fallback"], "fly-api");
    assert_eq!(config["images"]["relay"], "r", "the rest is the page's own");

    // A Machines API call with the user's token goes through, answer and status as Fly gave.
    let ok = http
        .get(url("/fly-api/v1/tokens/current"))
        .header("Authorization", "FlyV1 sim-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    );
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["tokens"][0]["org_slug"], "personal");
    let created = http
        .post(url("/fly-api/v1/apps"))
        .header("Authorization", "Bearer sim-token")
        .json(&json!({"name": "fwd-test", "org_slug": "personal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let bad_token = http
        .get(url("/fly-api/v1/apps/fwd-test"))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 401);

    // Nothing but the Machines API paths the page uses, and no oversized body.
    for path in [
        "/fly-api/sim/state",
        "/fly-api/v1/../sim/state",
        "/fly-api/v1/apps/%2e%2e/%2e%2e/sim/state",
        "/fly-api/v1/graphql",
    ] {
        let refused = http
            .get(url(path))
            .header("Authorization", "Bearer sim-token")
            .send()
            .await
            .unwrap();
        assert_ne!(refused.status(), 200, "{path} was forwarded");
    }
    let huge = http
        .post(url("/fly-api/v1/apps"))
        .header("Authorization", "Bearer sim-token")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    // It said nothing about the token.
    let said = server.stop();
    assert!(!said.contains("sim-token"), "{said}");
}

/// A stand-in for the Machines API that records the path of every request it gets; `slow`
/// holds its answer until released.
struct Upstream {
    base: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

async fn recording_upstream() -> Upstream {
    use axum::extract::{Request, State};
    type Shared = (
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        std::sync::Arc<tokio::sync::Notify>,
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = axum::Router::new()
        .fallback(
            |State((seen, release)): State<Shared>, request: Request| async move {
                let path = request.uri().path().to_string();
                seen.lock().unwrap().push(path.clone());
                if path.ends_with("/slow") {
                    release.notified().await;
                }
                "{}"
            },
        )
        .with_state((seen.clone(), release.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream {
        base,
        seen,
        release,
    }
}

/// An upstream that answers anything with 2 MiB in chunks, without saying its length.
async fn endless_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..32 {
                    let size = format!("{:x}\r\n", chunk.len());
                    let framed = [size.as_bytes(), &chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    base
}

/// Sends one raw request line (no client-side normalisation) and returns the status line
/// and headers.
async fn raw_get(base: &str, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Raw request lines that decode or normalise into another path (`%252e%252e` is `%2e%2e`
/// after one decoding, which a URL parser reads as `..`; `%5C` is a backslash, which it reads
/// as `/`) reach nothing but the listed Machines API paths.
#[tokio::test]
async fn no_request_line_walks_the_forwarder_off_its_list() {
    let upstream = recording_upstream().await;
    let page = page_dir();
    let server = textslash_serve(page.path(), &upstream.base);
    for target in [
        "/fly-api/v1/apps/x/%252e%252e/%252e%252e/anything",
        "/fly-api/v1/apps/x/%2e%2e/%2e%2e/anything",
        "/fly-api/v1/apps/x%5C..%5C..%5Canything",
        "/fly-api/v1/apps/x/%5C../%5C../anything",
        "/fly-api/v1/apps/x/../../anything",
        "/fly-api/v1/apps/x/./y",
        "/fly-api/v1/apps/%61pps",
        "/fly-api/v1/tokens/current/../../anything",
    ] {
        let answer = raw_get(&server.base, target).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{target}: {answer}");
    }
    assert!(
        upstream.seen.lock().unwrap().is_empty(),
        "forwarded: {:?}",
        upstream.seen.lock().unwrap()
    );
    let ok = raw_get(
        &server.base,
        "/fly-api/v1/apps/ok-app/machines?state=started",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(
        *upstream.seen.lock().unwrap(),
        vec!["/v1/apps/ok-app/machines".to_string()]
    );
    // Every answer forbids sniffing and framing, the page's included.
    let headers = ok.to_ascii_lowercase();
    assert!(headers.contains("x-content-type-options: nosniff"), "{ok}");
    assert!(headers.contains("frame-ancestors 'none'"), "{ok}");
    let index = raw_get(&server.base, "/").await.to_ascii_lowercase();
    assert!(index.contains("frame-ancestors 'none'"), "{index}");
    server.stop();
}

/// One address gets a bounded number of calls at once, and an answer is cut at the limit
/// as it streams, not buffered first.
#[tokio::test]
async fn the_forwarder_bounds_each_client_and_each_answer() {
    let upstream = recording_upstream().await;
    let page = page_dir();
    let server = textslash_serve(page.path(), &upstream.base);
    let http = reqwest::Client::new();
    let slow = format!("{}/fly-api/v1/apps/a/slow", server.base);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(tokio::spawn(http.get(&slow).send()));
    }
    sim::testing::eventually(
        "16 calls upstream",
        std::time::Duration::from_secs(20),
        async || (upstream.seen.lock().unwrap().len() == 16).then_some(()),
    )
    .await;
    let refused = http.get(&slow).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    upstream.release.notify_waiters();
    for call in held {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    server.stop();

    let endless = endless_upstream().await;
    let server = textslash_serve(page.path(), &endless);
    let huge = http
        .get(format!("{}/fly-api/v1/apps/a/machines", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 502);
    assert!(huge.text().await.unwrap().contains("too large"));
    server.stop();
}
