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
