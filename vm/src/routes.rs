//! The vm's HTTP surface. Everything but `/health` needs `Authorization: Bearer VM_TOKEN`.
//!
//! - `POST /messages`: queue a message (202; idempotent on `id`; 507 when the volume is full).
//!   `/status`, `/cancel`, `/mode` and `/rules` are answered at once ([`crate::commands`]),
//!   and so is an owner's answer to a question ([`crate::approvals::answer`]).
//! - `GET /health`: ready, version, jobs, warm agent processes, idle seconds.

use crate::approvals::{self, Answered};
use crate::commands::{self, Command};
use crate::{Vm, callbacks};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use contract::protocol::{VmMessage, bearer_matches};
use std::sync::Arc;

/// The 507 body, which the relay passes on to the sender.
pub const DISK_FULL: &str = "the agent's disk is full";

pub fn router(vm: Arc<Vm>) -> Router {
    let private = Router::new()
        .route("/messages", post(messages))
        .layer(middleware::from_fn_with_state(vm.clone(), require_token))
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024));
    Router::new()
        .merge(private)
        .route("/health", get(health))
        .layer(middleware::from_fn_with_state(vm.clone(), count_activity))
        .with_state(vm)
}

async fn require_token(
    State(vm): State<Arc<Vm>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(given, &vm.config.vm_token) {
        return (StatusCode::UNAUTHORIZED, "bad or missing VM_TOKEN").into_response();
    }
    next.run(request).await
}

/// Any request but a health check keeps the vm awake.
async fn count_activity(State(vm): State<Arc<Vm>>, request: Request, next: Next) -> Response {
    if request.uri().path() != "/health" {
        vm.touch();
    }
    next.run(request).await
}

async fn messages(State(vm): State<Arc<Vm>>, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<VmMessage>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {id, conversation, sender, text, images?}",
        )
            .into_response();
    };
    if message.id.is_empty() || message.conversation.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "id and conversation must not be empty",
        )
            .into_response();
    }
    if !vm.accepting.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Some(answer) = &message.answer {
        // Applied at once: the process that asked may be waiting right now.
        match approvals::answer(&vm, &message, answer) {
            Answered::Delivered | Answered::Resumes | Answered::Repeated => {}
            Answered::Refused(text) => {
                let reply_id = format!("answer:{}", message.id);
                callbacks::queue(&vm, &reply_id, &message.conversation, text, vec![]);
            }
        }
        return StatusCode::ACCEPTED.into_response();
    }
    if let Some(command) = Command::parse(&message.text).filter(|c| c.is_immediate()) {
        let (text, attachments) = commands::answer_now(&vm, command, &message.conversation).await;
        let reply_id = format!("command:{}", message.id);
        callbacks::queue(&vm, &reply_id, &message.conversation, text, attachments);
        return StatusCode::ACCEPTED.into_response();
    }
    match vm.store.add_job(&message) {
        Ok(_) => vm.jobs_wake.notify_one(),
        // Retrying will not help until someone makes room: the relay tells the sender.
        Err(error) if error.is_disk_full() => {
            tracing::error!("could not queue a message: {error}");
            return (StatusCode::INSUFFICIENT_STORAGE, DISK_FULL).into_response();
        }
        Err(error) => {
            tracing::error!("could not queue a message: {error}");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    }
    StatusCode::ACCEPTED.into_response()
}

async fn health(State(vm): State<Arc<Vm>>) -> Response {
    let (running, queued) = vm.store.counts(None).unwrap_or((-1, -1));
    axum::Json(serde_json::json!({
        "ready": true,
        "version": crate::VERSION,
        "jobs": {"running": running, "queued": queued},
        "idle_secs": vm.idle_for().as_secs(),
        "warm_agents": vm.agents.count(),
        "agent": vm.config.agent_cmd.first(),
    }))
    .into_response()
}
