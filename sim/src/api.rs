//! The Machines API emulator (`/v1/…`) and the sim's control routes (`/sim/…`).
//!
//! Every `/v1` call passes [`guard`] first: injected latency, the bearer/FlyV1 token check
//! (401 with Fly's body), then the fault rules. Error bodies are Fly's `{error, status}`.

use crate::Cors;
use crate::faults::{FaultConfig, Verdict};
use crate::world::{App, Ip, Machine, Volume, now_rfc3339};
use crate::{Sim, supervisor};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

type S = State<Arc<Sim>>;

/// Where a machine goes when the request names no region (the sim's "nearest").
const DEFAULT_REGION: &str = "ams";
type ApiResult = Result<Response, Response>;

pub fn router(sim: Arc<Sim>) -> Router {
    let v1 = Router::new()
        .route("/v1/tokens/current", get(current_token))
        .route("/v1/platform/regions", get(regions))
        .route("/v1/apps", get(list_apps).post(create_app))
        .route("/v1/apps/{app}", get(show_app).delete(delete_app))
        .route(
            "/v1/apps/{app}/secrets",
            get(list_secrets).post(set_secrets),
        )
        .route(
            "/v1/apps/{app}/volumes",
            get(list_volumes).post(create_volume),
        )
        .route(
            "/v1/apps/{app}/volumes/{id}",
            get(show_volume).delete(delete_volume),
        )
        .route(
            "/v1/apps/{app}/machines",
            get(list_machines).post(create_machine),
        )
        .route(
            "/v1/apps/{app}/machines/{id}",
            get(show_machine)
                .post(update_machine)
                .delete(delete_machine),
        )
        .route("/v1/apps/{app}/machines/{id}/start", post(start_machine))
        .route("/v1/apps/{app}/machines/{id}/stop", post(stop_machine))
        .route("/v1/apps/{app}/machines/{id}/wait", get(wait_machine))
        .route("/v1/apps/{app}/machines/{id}/exec", post(exec_machine))
        .route(
            "/v1/apps/{app}/machines/{id}/cordon",
            post(|s, p| set_cordoned(s, p, true)),
        )
        .route(
            "/v1/apps/{app}/machines/{id}/uncordon",
            post(|s, p| set_cordoned(s, p, false)),
        )
        .route(
            "/v1/apps/{app}/ip_assignments",
            get(list_ips).post(assign_ip),
        )
        .route(
            "/v1/apps/{app}/ip_assignments/{ip}",
            axum::routing::delete(delete_ip),
        )
        .layer(middleware::from_fn_with_state(sim.clone(), guard));
    let control = Router::new()
        .route("/sim/state", get(state_dump))
        .route("/sim/apps/{app}", get(app_urls))
        .route(
            "/sim/faults",
            get(faults_fired).post(set_faults).delete(clear_faults),
        );
    let v1 = match cors_layer(&sim.config.cors) {
        Some(layer) => v1.layer(layer),
        None => v1,
    };
    v1.merge(control).with_state(sim)
}

/// How the Machines API answers browsers. Fly documents no CORS headers at all
/// (docs/fly-machines-api.md, "CORS"), so the sim can play either world:
/// - [`Cors::Open`]/[`Cors::Only`]: what an API that serves browsers would allow: the listed
///   origins (or any), only the methods the API has and only the headers a client needs
///   (`Authorization`, `Content-Type`), never credentials; a preflight from another origin,
///   or asking for another method or header, gets no permission and the browser refuses;
/// - [`Cors::Refuse`]: no `Access-Control-*` header on any answer, like a server that does
///   not serve browsers (the one captured answer from api.machines.dev has none).
fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    let origins = match cors {
        Cors::Refuse => return None,
        Cors::Open => AllowOrigin::any(),
        Cors::Only(origins) => {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("{what} not found"))
}

async fn guard(State(sim): S, request: Request, next: Next) -> Response {
    let latency = sim.faults.latency_ms();
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let Some(scope) = token_scope(&sim, request.headers()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "Authenticate: token validation error",
        );
    };
    let path = request.uri().path().to_string();
    let method = request.method().as_str().to_string();
    if scope == TokenScope::OAuth && path == "/v1/tokens/current" {
        return error(
            StatusCode::UNAUTHORIZED,
            "Authenticate: token validation error",
        );
    }
    // 403 `{"error": "unauthorized"}`: the answer fly-go's own test gives a refused read
    // (`flaps/flaps_apps_test.go`); what Fly answers a read-only token's write is reported
    // only by third parties (docs/fly-machines-api.md §11, row 4).
    if scope == TokenScope::ReadOnly && method != "GET" {
        return error(StatusCode::FORBIDDEN, "unauthorized");
    }
    if let Some(limit) = sim.config.quirks.rate_limit
        && method != "GET"
        && !sim.rate_limiter.admit(&format!("{method} {path}"), limit)
    {
        // The status is flyctl's (`internal/flapsutil/retry.go`); Fly documents no body, so
        // the text is the sim's own and no client may read it.

        return error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
    }
    if let Some(hidden) = hidden_new_app(&sim, &path) {
        return hidden;
    }
    if let TokenScope::App(app) = &scope {
        // A deploy token manages its one app and nothing else.
        let own = format!("/v1/apps/{app}");
        let allowed =
            path == "/v1/tokens/current" || path == own || path.starts_with(&format!("{own}/"));
        if !allowed {
            return error(
                StatusCode::FORBIDDEN,
                "unauthorized: the token is limited to another app",
            );
        }
    }
    let request = match check_body(request).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match sim.faults.verdict(request.method().as_str(), &path) {
        Verdict::Proceed => next.run(request).await,
        Verdict::FailWith(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "sim: injected failure")
        }
        Verdict::AnswerWith(code, body) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            (status, Json(body)).into_response()
        }
        Verdict::ActThenFail(code) => {
            let _ = next.run(request).await;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            error(status, "sim: the answer was lost on the way")
        }
    }
}

/// A call on an app created a moment ago, answered as Fly answers it until the app has
/// propagated: 401 or 404 ([`crate::quirks`]).
fn hidden_new_app(sim: &Sim, path: &str) -> Option<Response> {
    let name = path.strip_prefix("/v1/apps/")?.split('/').next()?;
    let quirks = &sim.config.quirks;
    let hidden = sim.world.with(|apps| {
        apps.get(name)
            .is_some_and(|app| crate::quirks::within(app.created, quirks.new_app_hidden_for))
    });
    hidden.then(|| match quirks.new_app_status {
        401 => error(
            StatusCode::UNAUTHORIZED,
            "Authenticate: token validation error",
        ),
        _ => not_found("app"),
    })
}

/// Refuses a body that does not fit Fly's schema for the operation (400 naming it).
async fn check_body(request: Request) -> Result<Request, Response> {
    let method = request.method().as_str().to_string();
    if method == "GET" || method == "DELETE" {
        return Ok(request);
    }
    let path = request.uri().path().to_string();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))?;
    if !bytes.is_empty() {
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))?;
        crate::openapi::spec()
            .check_request(&method, &path, &value)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("sim: {e}")))?;
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// What a token the sim knows may manage.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenScope {
    Org,
    /// A deploy token, limited to one app.
    App(String),
    /// A user's own token (`fly auth token`): every org the user is in.
    Personal,
    /// An org token attenuated to reading.
    ReadOnly,
    /// A user token that is not a macaroon (sent as `Bearer`).
    OAuth,
}

fn token_scope(sim: &Sim, headers: &HeaderMap) -> Option<TokenScope> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok())?;
    let token = value
        .strip_prefix("FlyV1 ")
        .or_else(|| value.strip_prefix("Bearer "))
        .unwrap_or(value);
    token.split(',').map(str::trim).find_map(|t| {
        if sim.config.tokens.iter().any(|ok| ok == t) {
            Some(TokenScope::Org)
        } else if let Some((_, app)) = sim.config.app_tokens.iter().find(|(ok, _)| ok == t) {
            Some(TokenScope::App(app.clone()))
        } else if sim.config.personal_tokens.iter().any(|ok| ok == t) {
            Some(TokenScope::Personal)
        } else if sim.config.readonly_tokens.iter().any(|ok| ok == t) {
            Some(TokenScope::ReadOnly)
        } else if sim.config.oauth_tokens.iter().any(|ok| ok == t) {
            Some(TokenScope::OAuth)
        } else {
            None
        }
    })
}

// ---- tokens, regions, apps ----

/// `main.tokenInfo` per kind: an app token lists its `apps`, a user's token names its `user`
/// (the schema's field descriptions in `sim/fly-openapi3.json`).
async fn current_token(State(sim): S, headers: HeaderMap) -> Response {
    let org = &sim.config.org;
    let info = match token_scope(&sim, &headers) {
        Some(TokenScope::App(app)) => {
            json!({"org_slug": org, "organization": org, "apps": [app], "token_id": "sim-app"})
        }
        Some(TokenScope::Personal) => {
            json!({"org_slug": org, "organization": org, "apps": [], "user": "sim-user", "token_id": "sim-user"})
        }
        _ => json!({"org_slug": org, "organization": org, "apps": [], "token_id": "sim"}),
    };
    Json(json!({"tokens": [info]})).into_response()
}

async fn regions() -> Response {
    let rows: Vec<Value> = [("ams", "Amsterdam, Netherlands"), ("fra", "Frankfurt, Germany"), ("iad", "Ashburn, Virginia (US)"), ("lhr", "London, United Kingdom"), ("sin", "Singapore"), ("syd", "Sydney, Australia")]
        .iter()
        .map(|(code, name)| json!({"code": code, "name": name, "deprecated": false, "requires_paid_plan": false}))
        .collect();
    Json(json!({"nearest": "ams", "regions": rows})).into_response()
}

fn app_json(app: &App) -> Value {
    json!({
        "id": app.id, "name": app.name, "status": if app.machines.is_empty() { "pending" } else { "deployed" },
        "network": app.network, "machine_count": app.machines.len(), "volume_count": app.volumes.len(),
        "organization": {"name": app.org, "slug": app.org},
    })
}

async fn list_apps(State(sim): S) -> Response {
    let apps: Vec<Value> = sim.world.with(|apps| apps.values().map(app_json).collect());
    Json(json!({"total_apps": apps.len(), "apps": apps})).into_response()
}

/// `POST /v1/apps` (fly-go posts `/apps?wait=true`; the query changes nothing here, since
/// flyctl still waits for the app to be visible afterwards: see [`crate::quirks`]).
#[derive(Deserialize)]
struct CreateApp {
    #[serde(alias = "app_name")]
    name: String,
    org_slug: String,
    /// A custom private network to put the app on; empty or absent: the org's default.
    #[serde(default)]
    network: Option<String>,
}

async fn create_app(
    State(sim): S,
    body: Result<Json<CreateApp>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    if body.org_slug != sim.config.org && body.org_slug != "personal" {
        return Err(error(
            StatusCode::FORBIDDEN,
            "unauthorized for this organization",
        ));
    }
    let taken = || {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "Name has already been taken", "status": "name_taken"})),
        )
            .into_response()
    };
    if sim.config.names_taken_elsewhere.contains(&body.name) {
        return Err(taken());
    }
    let id = sim.world.new_id(16);
    sim.world.with(|apps| {
        if apps.contains_key(&body.name) {
            return Err(taken());
        }
        apps.insert(
            body.name.clone(),
            App {
                name: body.name.clone(),
                id: id.clone(),
                org: sim.config.org.clone(),
                created: Some(std::time::Instant::now()),
                network: body
                    .network
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
                ..Default::default()
            },
        );
        Ok(())
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "created_at": 0})),
    )
        .into_response())
}

fn with_app<R>(
    sim: &Sim,
    name: &str,
    f: impl FnOnce(&mut App) -> Result<R, Response>,
) -> Result<R, Response> {
    if sim.config.names_taken_elsewhere.iter().any(|n| n == name) {
        return Err(error(StatusCode::FORBIDDEN, "unauthorized"));
    }
    sim.world.with(|apps| match apps.get_mut(name) {
        Some(app) => f(app),
        None => Err(not_found("app")),
    })
}

async fn show_app(State(sim): S, Path(app): Path<String>) -> ApiResult {
    with_app(&sim, &app, |a| Ok(Json(app_json(a)).into_response()))
}

/// `202 Accepted` with no body (`Apps_delete` in the OpenAPI document): the deletion happens
/// afterwards, so for `deletion_delay` the app still answers a GET, as on Fly.
async fn delete_app(State(sim): S, Path(app): Path<String>) -> ApiResult {
    let ids: Vec<String> = with_app(&sim, &app, |a| Ok(a.machines.keys().cloned().collect()))?;
    for id in &ids {
        supervisor::stop(&sim, &app, id);
    }
    with_app(&sim, &app, |a| {
        for machine in a.machines.values_mut() {
            machine.state = "destroying".into();
        }
        Ok(())
    })?;
    after_deletion_delay(&sim, move |apps| {
        apps.remove(&app);
    });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Runs `finish` on the world once the sim's `deletion_delay` has passed: Fly's deletes
/// finish after they are answered (an app delete is a 202; a destroyed machine's volume stays
/// attached until the machine is gone).
fn after_deletion_delay(
    sim: &Arc<Sim>,
    finish: impl FnOnce(&mut BTreeMap<String, App>) + Send + 'static,
) {
    after_delay(sim, sim.config.deletion_delay, finish);
}

/// Runs `finish` on the world after `delay`.
fn after_delay(
    sim: &Arc<Sim>,
    delay: Duration,
    finish: impl FnOnce(&mut BTreeMap<String, App>) + Send + 'static,
) {
    let sim = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        sim.world.with(finish);
    });
}

// ---- secrets ----

async fn list_secrets(State(sim): S, Path(app): Path<String>) -> ApiResult {
    with_app(&sim, &app, |a| {
        let secrets: Vec<Value> = a
            .secrets
            .keys()
            .map(|k| json!({"name": k, "digest": "sim"}))
            .collect();
        Ok(Json(json!({"secrets": secrets})).into_response())
    })
}

#[derive(Deserialize)]
struct SetSecrets {
    values: BTreeMap<String, Option<String>>,
}

async fn set_secrets(
    State(sim): S,
    Path(app): Path<String>,
    body: Result<Json<SetSecrets>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    with_app(&sim, &app, |a| {
        for (name, value) in body.values {
            match value {
                Some(v) => a.secrets.insert(name, v),
                None => a.secrets.remove(&name),
            };
        }
        a.secrets_version += 1;
        let secrets: Vec<Value> = a.secrets.keys().map(|k| json!({"name": k})).collect();
        Ok(Json(json!({"version": a.secrets_version, "secrets": secrets})).into_response())
    })
}

// ---- volumes ----

async fn list_volumes(State(sim): S, Path(app): Path<String>) -> ApiResult {
    with_app(&sim, &app, |a| {
        Ok(Json(a.volumes.values().map(Volume::json).collect::<Vec<_>>()).into_response())
    })
}

#[derive(Deserialize)]
struct CreateVolume {
    name: String,
    region: String,
    #[serde(default)]
    size_gb: Option<u64>,
}

async fn create_volume(
    State(sim): S,
    Path(app): Path<String>,
    body: Result<Json<CreateVolume>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    let id = format!("vol_{}", sim.world.new_id(16));
    with_app(&sim, &app, |a| {
        let volume = Volume {
            id: id.clone(),
            name: body.name,
            region: body.region,
            size_gb: body.size_gb.unwrap_or(3),
            attached_machine_id: None,
            created_at: now_rfc3339(),
            state: "created".into(),
        };
        let json = volume.json();
        a.volumes.insert(id, volume);
        Ok(Json(json).into_response())
    })
}

async fn show_volume(State(sim): S, Path((app, id)): Path<(String, String)>) -> ApiResult {
    with_app(&sim, &app, |a| {
        a.volumes
            .get(&id)
            .map(|v| Json(v.json()).into_response())
            .ok_or_else(|| not_found("volume"))
    })
}

/// A volume is deleted only once no machine holds it, which is a moment after its machine
/// is gone ([`crate::quirks`]); then it lists as `pending_destroy` until the deletion ends.
async fn delete_volume(State(sim): S, Path((app, id)): Path<(String, String)>) -> ApiResult {
    let answer = with_app(&sim, &app, |a| {
        let volume = a.volumes.get_mut(&id).ok_or_else(|| not_found("volume"))?;
        // Fly documents no answer for this; fly-go's `waiting_for_detach` state says the
        // volume cannot go yet. The status and text are the sim's own: clients must wait for
        // the volume to be free (as listed), not read this answer.
        if volume.attached_machine_id.is_some() {
            return Err(error(
                StatusCode::PRECONDITION_FAILED,
                "volume is attached to a machine; destroy the machine first",
            ));
        }
        volume.state = "pending_destroy".into();
        Ok(Json(volume.json()).into_response())
    })?;
    after_delay(&sim, sim.config.deletion_delay, move |apps| {
        if let Some(a) = apps.get_mut(&app) {
            a.volumes.remove(&id);
        }
    });
    Ok(answer)
}

// ---- machines ----

#[derive(Deserialize)]
struct CreateMachine {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    region: Option<String>,
    config: Value,
    #[serde(default)]
    skip_launch: bool,
    /// "Leave this Machine disconnected from Fly.io's request routing … like a combined
    /// Create and Cordon" (Fly docs, machines-resource, Create a Machine).
    #[serde(default)]
    skip_service_registration: bool,
}

async fn create_machine(
    State(sim): S,
    Path(app): Path<String>,
    body: Result<Json<CreateMachine>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    let image = body
        .config
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if image.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "config.image is required"));
    }
    if let Some((status, message)) = sim.config.images.refusal(&image) {
        return Err(error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &message,
        ));
    }
    let id = sim.world.new_id(14);
    with_app(&sim, &app, |a| {
        for mount in body
            .config
            .get("mounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let vol = mount
                .get("volume")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let volume = a.volumes.get_mut(vol).ok_or_else(|| {
                error(StatusCode::BAD_REQUEST, &format!("volume {vol} not found"))
            })?;
            // Volumes are pinned to a host: "Create the volume first, then create the Machine
            // in the same region" (docs/fly-machines-api.md, Volumes, placement rules).
            let region = body.region.as_deref().unwrap_or(DEFAULT_REGION);
            if volume.region != region {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "volume {vol} is in region {}, not {region}: a machine can only mount a volume in its own region",
                        volume.region
                    ),
                ));
            }
            if volume.attached_machine_id.is_some() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("volume {vol} is already attached to a machine"),
                ));
            }
            if volume.state != "created" {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("volume {vol} is being destroyed"),
                ));
            }
            volume.attached_machine_id = Some(id.clone());
        }
        let mut machine = Machine {
            id: id.clone(),
            name: body.name.unwrap_or_else(|| id.clone()),
            region: body.region.unwrap_or_else(|| DEFAULT_REGION.into()),
            config: body.config,
            state: "created".into(),
            instance_id: sim.world.new_id(26).to_uppercase(),
            port: None,
            kill: None,
            generation: 0,
            restarts: 0,
            checks: Vec::new(),
            env: Default::default(),
            events: Vec::new(),
            created_at: now_rfc3339(),
            created: std::time::Instant::now(),
            cordoned: body.skip_service_registration,
        };
        machine.record("launch", "created", "user", Value::Null);
        a.machines.insert(id.clone(), machine);
        Ok(())
    })?;
    if !body.skip_launch {
        supervisor::start(&sim, &app, &id).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    }
    machine_response(&sim, &app, &id).await
}

/// Whether reads still miss a machine created a moment ago ([`crate::quirks`]).
fn unlisted(sim: &Sim, machine: &Machine) -> bool {
    machine.created.elapsed() < sim.config.quirks.new_machine_unlisted_for
}

/// Who asks for a machine: a read misses a new one; a write's answer carries it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Asker {
    Read,
    Write,
}

async fn machine_json(sim: &Sim, app: &str, id: &str, asker: Asker) -> Result<Value, Response> {
    let (config, port, mut json) = with_app(sim, app, |a| {
        let m = a
            .machines
            .get(id)
            .filter(|m| asker == Asker::Write || !unlisted(sim, m))
            .ok_or_else(|| not_found("machine"))?;
        Ok((m.config.clone(), m.port, m.json()))
    })?;
    json["checks"] = Value::Array(supervisor::run_checks(sim, &config, port).await);
    Ok(json)
}

/// The machine a write just made or changed: its answer carries it, however new.
async fn machine_response(sim: &Sim, app: &str, id: &str) -> ApiResult {
    Ok(Json(machine_json(sim, app, id, Asker::Write).await?).into_response())
}

async fn list_machines(State(sim): S, Path(app): Path<String>) -> ApiResult {
    let ids: Vec<String> = with_app(&sim, &app, |a| Ok(a.machines.keys().cloned().collect()))?;
    let mut out = Vec::new();
    for id in ids {
        if let Ok(json) = machine_json(&sim, &app, &id, Asker::Read).await {
            out.push(json);
        }
    }
    Ok(Json(out).into_response())
}

async fn show_machine(State(sim): S, Path((app, id)): Path<(String, String)>) -> ApiResult {
    Ok(Json(machine_json(&sim, &app, &id, Asker::Read).await?).into_response())
}

async fn update_machine(
    State(sim): S,
    Path((app, id)): Path<(String, String)>,
    body: Result<Json<CreateMachine>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    let image = body
        .config
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some((status, message)) = sim.config.images.refusal(&image) {
        return Err(error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &message,
        ));
    }
    with_app(&sim, &app, |a| {
        let m = a
            .machines
            .get_mut(&id)
            .ok_or_else(|| not_found("machine"))?;
        if m.config.get("mounts") != body.config.get("mounts") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "a machine's volume cannot be changed by update",
            ));
        }
        m.config = body.config;
        Ok(())
    })?;
    // An update replaces the running machine with one on the new config.
    supervisor::stop(&sim, &app, &id);
    if !body.skip_launch {
        supervisor::start(&sim, &app, &id).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    }
    machine_response(&sim, &app, &id).await
}

async fn start_machine(State(sim): S, Path((app, id)): Path<(String, String)>) -> ApiResult {
    let state = with_app(&sim, &app, |a| {
        Ok(a.machines
            .get(&id)
            .ok_or_else(|| not_found("machine"))?
            .state
            .clone())
    })?;
    if state != "started" && state != "starting" {
        supervisor::start(&sim, &app, &id).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    }
    Ok(Json(json!({"previous_state": state})).into_response())
}

async fn stop_machine(State(sim): S, Path((app, id)): Path<(String, String)>) -> ApiResult {
    with_app(&sim, &app, |a| {
        a.machines
            .get(&id)
            .map(|_| ())
            .ok_or_else(|| not_found("machine"))
    })?;
    supervisor::stop(&sim, &app, &id);
    Ok(Json(json!({"ok": true})).into_response())
}

/// SPEC `Machines_cordon`/`Machines_uncordon`: takes the machine out of (or back into) the
/// proxy's routing; it keeps running. SPEC documents a 200 with no body; fly-go's `Cordon`
/// reads nothing from it.
async fn set_cordoned(
    State(sim): S,
    Path((app, id)): Path<(String, String)>,
    cordoned: bool,
) -> ApiResult {
    with_app(&sim, &app, |a| {
        let machine = a
            .machines
            .get_mut(&id)
            .ok_or_else(|| not_found("machine"))?;
        machine.cordoned = cordoned;
        Ok(())
    })?;
    Ok(StatusCode::OK.into_response())
}

/// `MachineExecRequest` (SPEC `Machines_exec`): `command` (or the deprecated `cmd`, split on
/// spaces), `timeout` in seconds (flyctl's `machine exec --timeout`: "Timeout in seconds").
#[derive(Deserialize)]
struct ExecRequest {
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// Runs a command in a started machine's environment and answers `flydv1.ExecResponse`
/// (`exit_code`, `stdout`, `stderr`); SPEC documents only a 400 beside the 200, which is what
/// a machine that is not running gets.
async fn exec_machine(
    State(sim): S,
    Path((app, id)): Path<(String, String)>,
    Json(request): Json<ExecRequest>,
) -> ApiResult {
    let command = match (request.command, request.cmd) {
        (Some(command), _) if !command.is_empty() => command,
        (_, Some(cmd)) if !cmd.trim().is_empty() => {
            cmd.split_whitespace().map(str::to_string).collect()
        }
        _ => return Err(error(StatusCode::BAD_REQUEST, "command is required")),
    };
    let timeout = std::time::Duration::from_secs(request.timeout.unwrap_or(30).clamp(1, 300));
    let answer = supervisor::exec(&sim, &app, &id, &command, timeout)
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    Ok(Json(answer).into_response())
}

/// SPEC `Machines_delete` documents `force` ("Force kill the machine if it's running");
/// fly-go's `Destroy` sends `kill` (`flaps/flaps_machines.go`). Either one will do, and a
/// started machine needs one (flyctl `internal/command/machine/destroy.go`).
#[derive(Deserialize)]
struct Force {
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    kill: Option<bool>,
}

async fn delete_machine(
    State(sim): S,
    Path((app, id)): Path<(String, String)>,
    Query(q): Query<Force>,
) -> ApiResult {
    let state = with_app(&sim, &app, |a| {
        Ok(a.machines
            .get(&id)
            .ok_or_else(|| not_found("machine"))?
            .state
            .clone())
    })?;
    if state == "started" && q.force != Some(true) && q.kill != Some(true) {
        return Err(error(
            StatusCode::PRECONDITION_FAILED,
            "machine is running; stop it first or use force=true",
        ));
    }
    supervisor::stop(&sim, &app, &id);
    with_app(&sim, &app, |a| {
        if let Some(machine) = a.machines.get_mut(&id) {
            machine.state = "destroying".into();
        }
        Ok(())
    })?;
    // The machine is gone once the destroy has finished, and its volume free a moment later.
    let detach_after = sim.config.quirks.volume_detach_after;
    let detach = sim.clone();
    after_deletion_delay(&sim, move |apps| {
        if let Some(a) = apps.get_mut(&app) {
            a.machines.remove(&id);
        }
        after_delay(&detach, detach_after, move |apps| {
            for volume in apps
                .get_mut(&app)
                .into_iter()
                .flat_map(|a| a.volumes.values_mut())
            {
                if volume.attached_machine_id.as_deref() == Some(id.as_str()) {
                    volume.attached_machine_id = None;
                }
            }
        });
    });
    Ok(Json(json!({"ok": true})).into_response())
}

#[derive(Deserialize)]
struct Wait {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

async fn wait_machine(
    State(sim): S,
    Path((app, id)): Path<(String, String)>,
    Query(q): Query<Wait>,
) -> ApiResult {
    let wanted: Vec<String> = q
        .state
        .unwrap_or_else(|| "started".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.timeout.unwrap_or(60).clamp(1, 60));
    loop {
        let state = with_app(&sim, &app, |a| {
            Ok(a.machines
                .get(&id)
                .filter(|m| !unlisted(&sim, m))
                .map(|m| m.state.clone()))
        });
        let state = match state {
            Ok(Some(s)) => s,
            Ok(None) if wanted.iter().any(|w| w == "destroyed") => "destroyed".into(),
            Ok(None) => return Err(not_found("machine")),
            Err(e) => return Err(e),
        };
        if wanted.contains(&state) {
            return Ok(Json(json!({"ok": true, "state": state})).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                "deadline_exceeded: machine did not reach the state in time",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- IPs ----

fn ip_json(ip: &Ip) -> Value {
    json!({"ip": ip.ip, "region": "global", "shared": ip.kind == "shared_v4", "created_at": now_rfc3339(), "service_name": ""})
}

async fn list_ips(State(sim): S, Path(app): Path<String>) -> ApiResult {
    with_app(&sim, &app, |a| {
        Ok(Json(json!({"ips": a.ips.iter().map(ip_json).collect::<Vec<_>>()})).into_response())
    })
}

#[derive(Deserialize)]
struct AssignIp {
    #[serde(rename = "type")]
    kind: String,
    /// For `private_v6`: the network whose apps may reach it (not the app's own then).
    #[serde(default)]
    network: Option<String>,
}

async fn assign_ip(
    State(sim): S,
    Path(app): Path<String>,
    body: Result<Json<AssignIp>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(|e| error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    let n = u16::from_str_radix(&sim.world.new_id(4), 16).unwrap_or(1);
    let ip = match body.kind.as_str() {
        "private_v6" => format!("fdaa:0:1:a7b:{n:x}::1"),
        "v6" => format!("2a09:8280:1::{n:x}"),
        "shared_v4" => "66.241.124.100".to_string(),
        "v4" => format!("137.66.{}.{}", n >> 8, n & 0xff),
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("unknown IP type {other}"),
            ));
        }
    };
    with_app(&sim, &app, |a| {
        let assigned = Ip {
            ip,
            kind: body.kind,
            network: body.network.filter(|n| !n.is_empty()),
        };
        let json = ip_json(&assigned);
        if assigned.kind != "private_v6" && a.public_since.is_none() {
            a.public_since = Some(std::time::Instant::now());
        }
        a.ips.push(assigned);
        Ok(Json(json).into_response())
    })
}

async fn delete_ip(State(sim): S, Path((app, ip)): Path<(String, String)>) -> ApiResult {
    with_app(&sim, &app, |a| {
        let before = a.ips.len();
        a.ips.retain(|i| i.ip != ip);
        if a.ips.len() == before {
            Err(not_found("ip"))
        } else {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    })
}

// ---- control ----

async fn state_dump(State(sim): S) -> Response {
    Json(sim.world.dump()).into_response()
}

async fn app_urls(State(sim): S, Path(app): Path<String>) -> ApiResult {
    with_app(&sim, &app, |a| {
        let has = |kind: &str| a.ips.iter().any(|ip| ip.kind == kind);
        Ok(Json(json!({
            "public_url": (has("v6") || has("shared_v4") || has("v4")).then(|| format!("{}/apps/{}", sim.base_url, a.name)),
            "flycast_url": has("private_v6").then(|| format!("{}/flycast/{}", sim.base_url, a.name)),
        }))
        .into_response())
    })
}

async fn set_faults(State(sim): S, Json(config): Json<FaultConfig>) -> Response {
    sim.faults.set(config);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(sim): S) -> Response {
    sim.faults.set(FaultConfig::default());
    StatusCode::NO_CONTENT.into_response()
}

async fn faults_fired(State(sim): S) -> Response {
    Json(json!({"fired": sim.faults.fired()})).into_response()
}
