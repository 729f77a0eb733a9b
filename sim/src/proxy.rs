//! Fly's proxy, locally: `/apps/<app>/…` is the app's public address and `/flycast/<app>/…`
//! its private one. A request is forwarded to the app's running machine; when none runs and
//! a machine has `autostart`, the proxy starts it and holds the request until the process
//! accepts connections, as Flycast does for the vm. An app without the matching IP
//! assignment is not reachable that way (502), as on Fly. A new app's public name does not
//! resolve for a moment after its first public IP ([`crate::quirks`]): until then its public
//! address ends the connection without an answer, which is what a client sees of a name that
//! does not resolve. A cordoned machine (or one created with `skip_service_registration`) is
//! left out of the routing.

use crate::{Sim, supervisor};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 32 * 1024 * 1024;
const WAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, Eq)]
enum Door {
    Public,
    /// Flycast, asked from a machine on the network named, or (`None`) from the operator's
    /// own WireGuard (flyctl's `fly proxy` reaches every network of the org).
    Flycast(Option<String>),
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/apps/{app}",
            any(|s, Path(app): Path<String>, r| forward(s, Door::Public, app, String::new(), r)),
        )
        .route(
            "/apps/{app}/{*rest}",
            any(|s, Path((app, rest)): Path<(String, String)>, r| {
                forward(s, Door::Public, app, rest, r)
            }),
        )
        .route(
            "/flycast/{app}",
            any(|s, Path(app): Path<String>, r| {
                forward(s, Door::Flycast(None), app, String::new(), r)
            }),
        )
        .route(
            "/flycast/{app}/{*rest}",
            any(|s, Path((app, rest)): Path<(String, String)>, r| {
                forward(s, Door::Flycast(None), app, rest, r)
            }),
        )
        .route(
            "/net/{network}/flycast/{app}",
            any(|s, Path((network, app)): Path<(String, String)>, r| {
                forward(s, Door::Flycast(Some(network)), app, String::new(), r)
            }),
        )
        .route(
            "/net/{network}/flycast/{app}/{*rest}",
            any(
                |s, Path((network, app, rest)): Path<(String, String, String)>, r| {
                    forward(s, Door::Flycast(Some(network)), app, rest, r)
                },
            ),
        )
        .with_state(sim)
}

fn bad_gateway(message: String) -> Response {
    (StatusCode::BAD_GATEWAY, message).into_response()
}

/// The port of a running machine of `app`, starting one if needed and allowed.
async fn machine_port(sim: &Arc<Sim>, door: &Door, app: &str) -> Result<u16, Response> {
    let found = sim.world.with(|apps| {
        let a = apps
            .get(app)
            .ok_or_else(|| bad_gateway(format!("sim proxy: no app {app}")))?;
        let reachable = a.ips.iter().any(|ip| match door {
            Door::Public => ip.kind != "private_v6",
            Door::Flycast(from) => {
                ip.kind == "private_v6"
                    && flycast_serves(ip.network.as_deref(), &a.network, from.as_deref())
            }
        });
        if !reachable {
            return Err(match door {
                Door::Public => bad_gateway(format!("sim proxy: {app} has no public IP")),
                Door::Flycast(None) => bad_gateway(format!("sim proxy: {app} has no Flycast IP")),
                // From another network, `<app>.flycast` does not resolve at all.
                Door::Flycast(Some(_)) => no_answer(),
            });
        }
        // A cordoned machine is not routed to ("the Fly Proxy won't route requests to it",
        // SPEC `Machines_cordon`), though it keeps running.
        let routed = || a.machines.values().filter(|m| !m.cordoned);
        if let Some(port) =
            routed().find_map(|m| (m.state == "started").then_some(m.port).flatten())
        {
            return Ok(Ok(port));
        }
        let sleeper = routed().find(|m| m.state == "stopped" || m.state == "created");
        match sleeper {
            Some(m) if m.autostart() => Ok(Err(m.id.clone())),
            _ => Err(bad_gateway(format!(
                "sim proxy: {app} has no machine that can serve"
            ))),
        }
    })?;
    let port = match found {
        Ok(port) => port,
        Err(id) => {
            tokio::time::sleep(sim.config.wake_delay).await;
            supervisor::start(sim, app, &id).map_err(bad_gateway)?;
            sim.world
                .with(|apps| {
                    apps.get(app)
                        .and_then(|a| a.machines.get(&id))
                        .and_then(|m| m.port)
                })
                .ok_or_else(|| bad_gateway(format!("sim proxy: machine {id} did not start")))?
        }
    };
    wait_until_listening(port).await.map_err(|_| {
        bad_gateway(format!(
            "sim proxy: {app} did not answer within {WAKE_TIMEOUT:?}"
        ))
    })?;
    Ok(port)
}

/// Whether a Flycast address answers a caller on `from` (`None`: the operator, who reaches
/// every network). An address given a network serves that network and not the app's own;
/// one without serves the app's own network (Fly, "Custom private networks").
fn flycast_serves(given: Option<&str>, app_network: &str, from: Option<&str>) -> bool {
    match (from, given) {
        (None, _) => true,
        (Some(from), Some(given)) => from == given,
        (Some(from), None) => from == app_network,
    }
}

/// Whether `<app>.fly.dev` does not resolve yet: its first public IP is too new. (The fake
/// Telegram asks too, before it accepts a webhook on that name.)
pub fn name_unresolved(sim: &Sim, app: &str) -> bool {
    let window = sim.config.quirks.new_name_unresolved_for;
    sim.world.with(|apps| {
        apps.get(app)
            .is_some_and(|a| crate::quirks::within(a.public_since, window))
    })
}

/// A response whose body fails before its first byte: the server closes the connection, and
/// the client gets a transport error instead of an answer.
fn no_answer() -> Response {
    let failing = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
            "sim: the name does not resolve yet",
        ))
    });
    Response::new(Body::from_stream(failing))
}

async fn wait_until_listening(port: u16) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + WAKE_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(())
}

async fn forward(
    State(sim): State<Arc<Sim>>,
    door: Door,
    app: String,
    rest: String,
    request: Request,
) -> Response {
    if door == Door::Public && name_unresolved(&sim, &app) {
        return no_answer();
    }
    let port = match machine_port(&sim, &door, &app).await {
        Ok(port) => port,
        Err(response) => return response,
    };
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://127.0.0.1:{port}/{rest}{query}");
    let method = request.method().clone();
    let mut headers = request.headers().clone();
    for h in ["host", "content-length", "connection", "transfer-encoding"] {
        headers.remove(HeaderName::from_static(h));
    }
    let body = match to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "sim proxy: body too large").into_response();
        }
    };
    let upstream = sim
        .http
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => return bad_gateway(format!("sim proxy: {app}: {}", e.without_url())),
    };
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for h in ["content-length", "connection", "transfer-encoding"] {
        headers.remove(HeaderName::from_static(h));
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
