//! The echo machine: a tiny HTTP service used as a machine image in tests. It runs either
//! in-process (image rule `Program::Echo`) or as the `sim-test-machine` binary, from the same
//! code, so provision's tests need no binary path while the sim's own tests still prove that
//! real processes are spawned.
//!
//! Routes: `GET /health` → `{"version":"echo", "app":…}` (with CORS, like the relay);
//! `GET /env/<NAME>` → that variable; `POST /exit/<code>` → the machine exits with `code`;
//! `PUT /files/<name>` / `GET /files/<name>` → a file in `$DATA_DIR`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

struct Echo {
    env: BTreeMap<String, String>,
    exit: mpsc::Sender<i32>,
}

/// Serves on `env["PORT"]` until `/exit/<code>`, then returns the code.
pub async fn serve(env: BTreeMap<String, String>) -> i32 {
    let port: u16 = env.get("PORT").and_then(|p| p.parse().ok()).unwrap_or(8080);
    let (exit, mut exit_rx) = mpsc::channel(1);
    let state = Arc::new(Echo { env, exit });
    let app = Router::new()
        .route("/health", get(health))
        .route("/env/{name}", get(env_var))
        .route("/exit/{code}", post(exit_with))
        .route("/files/{name}", get(read_file).put(write_file))
        .with_state(state);
    let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
        return 3;
    };
    let server = axum::serve(listener, app);
    tokio::select! {
        _ = server => 1,
        code = exit_rx.recv() => code.unwrap_or(0),
    }
}

async fn health(State(s): State<Arc<Echo>>) -> impl IntoResponse {
    (
        [("access-control-allow-origin", "*")],
        Json(serde_json::json!({"version": "echo", "app": s.env.get("FLY_APP_NAME")})),
    )
}

async fn env_var(State(s): State<Arc<Echo>>, Path(name): Path<String>) -> impl IntoResponse {
    match s.env.get(&name) {
        Some(v) => (StatusCode::OK, v.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn exit_with(State(s): State<Arc<Echo>>, Path(code): Path<i32>) -> StatusCode {
    let _ = s.exit.send(code).await;
    StatusCode::ACCEPTED
}

fn file_path(s: &Echo, name: &str) -> Option<std::path::PathBuf> {
    let dir = s.env.get("DATA_DIR")?;
    (!name.contains('/') && !name.contains("..")).then(|| std::path::Path::new(dir).join(name))
}

async fn read_file(State(s): State<Arc<Echo>>, Path(name): Path<String>) -> impl IntoResponse {
    match file_path(&s, &name).map(std::fs::read_to_string) {
        Some(Ok(text)) => (StatusCode::OK, text),
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn write_file(
    State(s): State<Arc<Echo>>,
    Path(name): Path<String>,
    body: String,
) -> StatusCode {
    match file_path(&s, &name).map(|p| std::fs::write(p, body)) {
        Some(Ok(())) => StatusCode::CREATED,
        _ => StatusCode::BAD_REQUEST,
    }
}
