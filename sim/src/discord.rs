//! Fake Discord: the Gateway (a websocket) and the few REST routes a bot uses, plus controls
//! that play the user. Each behaviour follows Discord's documentation (docs/channels.md §
//! Discord lists the sources); where the sim is simpler, it says so.
//!
//! Gateway (`/discord/gateway/`, and `/discord/resume/` as the READY's `resume_gateway_url`):
//! - HELLO (op 10) with `heartbeat_interval` first; a heartbeat (op 1) gets an ack (op 11).
//! - IDENTIFY (op 2): an unknown token closes with 4004 "Authentication failed."; a
//!   privileged intent the bot has not enabled closes with 4014 "Disallowed intent(s).".
//!   Otherwise a new session and READY (seq 1) with `session_id` and `resume_gateway_url`.
//! - RESUME (op 6) with a known session: the session's events after the given sequence are
//!   replayed, then RESUMED. An unknown session gets INVALID_SESSION (op 9, `d: false`).
//! - Events happen to a session whether or not a connection is open, so a bot that resumes
//!   after a disconnect (or a restart) gets what it missed, as Discord replays them.
//! - Controls: RECONNECT (op 7, the client must resume) and INVALID_SESSION (the session is
//!   gone; the client must identify anew, and what happened meanwhile is lost).
//! - DMs reach a session only with the `DIRECT_MESSAGES` intent (1 << 12); their content is
//!   there without `MESSAGE_CONTENT`, as Discord gives DMs to the app.
//!
//! REST (`/discord/api/v10/…`, `Authorization: Bot <token>`): `GET /users/@me`,
//! `POST /channels/<id>/messages` (JSON, or multipart with `payload_json` and `files[n]`;
//! 2,000 characters at most), `POST /channels/<id>/typing`. Errors have Discord's shape
//! (`{"message", "code"}`); a 429 (injected with a fault rule) carries `retry_after` in the
//! body and `Retry-After` in the headers.
//!
//! Controls: `POST /sim/discord/dm` (a user sends a DM), `/sim/discord/reconnect`,
//! `/sim/discord/invalidate`, `GET /sim/discord/sent`, `GET /sim/discord/stats`.

use crate::Sim;
use crate::channels::{Sent, TINY_PNG};
use crate::faults::Verdict;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// `DIRECT_MESSAGES` (Discord, "Gateway Intents").
const DIRECT_MESSAGES: u64 = 1 << 12;
/// GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT: privileged, off unless enabled in the
/// Developer Portal (the sim's bots have none enabled).
const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | (1 << 15);
/// A message's content limit (Discord, "Create Message").
const CONTENT_LIMIT: usize = 2000;

#[derive(Default)]
pub struct Discord {
    state: Mutex<DiscordState>,
}

#[derive(Default)]
struct DiscordState {
    sessions: HashMap<String, SessionLog>,
    /// bot token → the session its open connection runs, and how to reach that connection.
    live: HashMap<String, (String, mpsc::UnboundedSender<Push>)>,
    /// bot token → its newest session (where DMs go while no connection is open).
    newest: HashMap<String, String>,
    /// user id → DM channel id, and back.
    dm_channels: HashMap<String, String>,
    next_id: u64,
    sent: Vec<Sent>,
    stats: Stats,
    /// Interactions dispatched (a user clicked a button) and what the bot answered, by id.
    interactions: HashMap<String, PendingInteraction>,
}

/// A button click waiting for the bot's interaction callback.
struct PendingInteraction {
    token: String,
    /// The DM's user, who clicked, and the message the button is under.
    user: String,
    message_id: u64,
    /// "You must send an initial response within 3 seconds of receiving the event" (Discord,
    /// Receiving and Responding to interactions); after it the token is unknown.
    deadline: std::time::Instant,
    answer: Option<Value>,
}

/// Counts a test can wait for.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub identifies: u32,
    pub resumes: u32,
    pub heartbeats: u32,
    /// The URL path each connection came in on (`/discord/gateway/` or `/discord/resume/`).
    pub connections: Vec<String>,
    /// The intents of the last IDENTIFY.
    pub intents: u64,
}

struct SessionLog {
    bot_token: String,
    intents: u64,
    /// (sequence, dispatch payload).
    events: Vec<(u64, Value)>,
    sequence: u64,
}

/// What the sim pushes to an open connection.
#[derive(Debug)]
enum Push {
    Dispatch(Value),
    Reconnect,
    InvalidSession,
}

impl Discord {
    /// What the bot answered to the click `interaction_id` (its interaction callback), once it
    /// did within the 3 seconds.
    pub fn interaction_answer(&self, interaction_id: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .interactions
            .get(interaction_id)
            .and_then(|p| p.answer.clone())
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    /// Whether `bot_token` has an open, identified (or resumed) connection.
    pub fn connected(&self, bot_token: &str) -> bool {
        self.state.lock().unwrap().live.contains_key(bot_token)
    }

    fn next_snowflake(state: &mut DiscordState) -> String {
        state.next_id += 1;
        // Discord ids are snowflakes (a timestamp in the high bits); any unique u64 reads alike.
        (1_300_000_000_000_000_000u64 + state.next_id).to_string()
    }

    fn dm_channel(state: &mut DiscordState, user_id: &str) -> String {
        if let Some(channel) = state.dm_channels.get(user_id) {
            return channel.clone();
        }
        let channel = Self::next_snowflake(state);
        state
            .dm_channels
            .insert(user_id.to_string(), channel.clone());
        channel
    }

    fn recipient(state: &DiscordState, channel_id: &str) -> Option<String> {
        state
            .dm_channels
            .iter()
            .find(|(_, c)| c.as_str() == channel_id)
            .map(|(user, _)| user.clone())
    }

    /// Adds a dispatch to `session` and pushes it to the session's connection if one is open.
    fn dispatch(state: &mut DiscordState, session_id: &str, event: &str, data: Value) {
        let Some(log) = state.sessions.get_mut(session_id) else {
            return;
        };
        log.sequence += 1;
        let payload = json!({"op": 0, "s": log.sequence, "t": event, "d": data});
        log.events.push((log.sequence, payload.clone()));
        let token = log.bot_token.clone();
        if let Some((live_session, push)) = state.live.get(&token)
            && live_session == session_id
        {
            let _ = push.send(Push::Dispatch(payload));
        }
    }
}

/// The bot's user id: a bot token's first part is its id in base64 (Discord, "Bot users").
pub fn bot_user_id(token: &str) -> Option<String> {
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let id = String::from_utf8(bytes).ok()?;
    id.bytes().all(|b| b.is_ascii_digit()).then_some(id)
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/discord/gateway/", get(gateway))
        .route("/discord/resume/", get(gateway))
        .route("/discord/api/v10/users/@me", get(me))
        .route(
            "/discord/api/v10/channels/{id}/messages",
            post(create_message),
        )
        .route(
            "/discord/api/v10/channels/{id}/messages/{message}",
            axum::routing::patch(edit_message),
        )
        .route("/discord/api/v10/channels/{id}/typing", post(typing))
        .route("/discord-cdn/attachments/{name}", get(attachment))
        .route("/discord/api/v10/{*rest}", any(unknown_route))
        .route("/sim/discord/dm", post(user_sends_dm))
        .route("/sim/discord/click", post(user_clicks))
        .route(
            "/discord/api/v10/interactions/{id}/{token}/callback",
            post(interaction_callback),
        )
        .route("/sim/discord/reconnect", post(force_reconnect))
        .route("/sim/discord/invalidate", post(invalidate_session))
        .route(
            "/sim/discord/sent",
            get(|State(sim): State<Arc<Sim>>| async move { axum::Json(sim.discord.sent()) }),
        )
        .route(
            "/sim/discord/stats",
            get(|State(sim): State<Arc<Sim>>| async move { axum::Json(sim.discord.stats()) }),
        )
        .with_state(sim)
}

fn known_bot(sim: &Sim, token: &str) -> bool {
    sim.config.discord_bots.iter().any(|t| t == token)
}

// ---------------------------------------------------------------------------------------
// Gateway

async fn gateway(
    State(sim): State<Arc<Sim>>,
    uri: axum::http::Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = uri.path().to_string();
    upgrade.on_upgrade(move |socket| connection(sim, socket, path))
}

fn op(code: u8, data: Value) -> Message {
    Message::Text(json!({"op": code, "d": data}).to_string().into())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One Gateway connection, from HELLO to close.
async fn connection(sim: Arc<Sim>, mut socket: WebSocket, path: String) {
    sim.discord
        .state
        .lock()
        .unwrap()
        .stats
        .connections
        .push(path);
    let interval = sim.config.discord_heartbeat.as_millis() as u64;
    if socket
        .send(op(10, json!({"heartbeat_interval": interval})))
        .await
        .is_err()
    {
        return;
    }
    // The first message must be IDENTIFY or RESUME (heartbeats may come first).
    let (token, session_id, mut pushes) = loop {
        let Some(Ok(message)) = socket.recv().await else {
            return;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(payload) = serde_json::from_str::<Value>(&text) else {
            let _ = socket.send(close(4002, "Decode error.")).await;
            return;
        };
        match payload["op"].as_u64() {
            Some(1) => {
                sim.discord.state.lock().unwrap().stats.heartbeats += 1;
                let _ = socket.send(op(11, Value::Null)).await;
            }
            Some(2) => match identify(&sim, &payload["d"]) {
                Ok(started) => break started,
                Err(frame) => {
                    let _ = socket.send(frame).await;
                    return;
                }
            },
            Some(6) => match resume(&sim, &payload["d"]) {
                Ok(Some(resumed)) => break resumed,
                Ok(None) => {
                    let _ = socket.send(op(9, json!(false))).await;
                }
                Err(frame) => {
                    let _ = socket.send(frame).await;
                    return;
                }
            },
            _ => {
                let _ = socket.send(close(4003, "Not authenticated.")).await;
                return;
            }
        }
    };

    loop {
        tokio::select! {
            push = pushes.recv() => {
                let outgoing = match push {
                    Some(Push::Dispatch(payload)) => Message::Text(payload.to_string().into()),
                    Some(Push::Reconnect) => op(7, Value::Null),
                    Some(Push::InvalidSession) => op(9, json!(false)),
                    None => break,
                };
                if socket.send(outgoing).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { break };
                match message {
                    Message::Text(text) => {
                        let payload: Value = serde_json::from_str(&text).unwrap_or_default();
                        if payload["op"] == 1 {
                            sim.discord.state.lock().unwrap().stats.heartbeats += 1;
                            if socket.send(op(11, Value::Null)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    let mut state = sim.discord.state.lock().unwrap();
    if state
        .live
        .get(&token)
        .is_some_and(|(live, _)| *live == session_id)
    {
        state.live.remove(&token);
    }
}

type Started = (String, String, mpsc::UnboundedReceiver<Push>);

/// The token of an IDENTIFY or RESUME. Discord documents the bare token; clients such as
/// twilight send it with the `Bot ` prefix of the REST header, and Discord takes both.
fn gateway_token(data: &Value) -> String {
    let token = data["token"].as_str().unwrap_or_default();
    token.strip_prefix("Bot ").unwrap_or(token).to_string()
}

fn identify(sim: &Sim, data: &Value) -> Result<Started, Message> {
    let token = gateway_token(data);
    if !known_bot(sim, &token) {
        return Err(close(4004, "Authentication failed."));
    }
    let intents = data["intents"].as_u64().unwrap_or(0);
    if intents & PRIVILEGED != 0 {
        return Err(close(4014, "Disallowed intent(s)."));
    }
    let user_id = bot_user_id(&token).unwrap_or_default();
    let mut state = sim.discord.state.lock().unwrap();
    state.stats.identifies += 1;
    state.stats.intents = intents;
    let session_id = format!("{:032x}", state.next_id + 0x5e55_1000);
    state.next_id += 1;
    state.sessions.insert(
        session_id.clone(),
        SessionLog {
            bot_token: token.clone(),
            intents,
            events: Vec::new(),
            sequence: 0,
        },
    );
    state.newest.insert(token.clone(), session_id.clone());
    let (push, pushes) = mpsc::unbounded_channel();
    state.live.insert(token.clone(), (session_id.clone(), push));
    let resume_url = format!(
        "{}/discord/resume",
        sim.base_url.replace("http://", "ws://")
    );
    let ready = json!({
        "v": 10,
        // The user object of a bot as READY carries it (Discord, "Ready Event", "User Object").
        "user": {"id": user_id, "username": "textslash-sim-bot", "discriminator": "0", "global_name": null, "avatar": null, "bot": true, "mfa_enabled": false, "verified": true, "flags": 0, "email": null},
        "guilds": [],
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "shard": [0, 1],
        "application": {"id": user_id, "flags": 0},
    });
    Discord::dispatch(&mut state, &session_id, "READY", ready);
    Ok((token, session_id, pushes))
}

/// `Ok(None)` for a session Discord would not resume (unknown, or another bot's).
fn resume(sim: &Sim, data: &Value) -> Result<Option<Started>, Message> {
    let token = gateway_token(data);
    if !known_bot(sim, &token) {
        return Err(close(4004, "Authentication failed."));
    }
    let session_id = data["session_id"].as_str().unwrap_or_default().to_string();
    let after = data["seq"].as_u64().unwrap_or(0);
    let mut state = sim.discord.state.lock().unwrap();
    let Some(log) = state.sessions.get(&session_id) else {
        return Ok(None);
    };
    if log.bot_token != token {
        return Ok(None);
    }
    let missed: Vec<Value> = log
        .events
        .iter()
        .filter(|(seq, _)| *seq > after)
        .map(|(_, payload)| payload.clone())
        .collect();
    state.stats.resumes += 1;
    let (push, pushes) = mpsc::unbounded_channel();
    for payload in missed {
        let _ = push.send(Push::Dispatch(payload));
    }
    state.live.insert(token.clone(), (session_id.clone(), push));
    Discord::dispatch(&mut state, &session_id, "RESUMED", json!({}));
    Ok(Some((token, session_id, pushes)))
}

// ---------------------------------------------------------------------------------------
// REST

fn discord_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

/// The bot token from `Authorization: Bot <token>`, if the sim knows it.
fn authorised(sim: &Sim, headers: &HeaderMap) -> Result<String, Response> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .filter(|token| known_bot(sim, token))
        .map(str::to_string)
        .ok_or_else(|| discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"))
}

/// A fault rule's answer for this call, with a 429's `Retry-After` header (Discord, "Rate
/// Limits": the body's `retry_after` is in seconds, as is the header).
fn injected(sim: &Sim, path: &str) -> Option<Response> {
    match sim.faults.verdict("POST", path) {
        Verdict::AnswerWith(status, body) => {
            let retry_after = body["retry_after"].as_f64().unwrap_or(1.0).ceil() as u64;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, axum::Json(body)).into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                rate_limit_headers(&mut response, 0, retry_after);
                let headers = response.headers_mut();
                headers.insert("retry-after", retry_after.into());
                headers.insert("x-ratelimit-scope", "user".parse().unwrap());
            }
            Some(response)
        }
        Verdict::FailWith(status) => Some(discord_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            0,
            "injected failure",
        )),
        Verdict::Proceed | Verdict::ActThenFail(_) => None,
    }
}

/// A Message object as Discord's API and Gateway give it (Discord, "Message Object": the
/// fields that are always present), for the DMs, clicks and answers the sim makes.
fn message_object(
    id: &str,
    channel_id: &str,
    content: &str,
    author: Value,
    attachments: Value,
) -> Value {
    json!({
        "id": id, "channel_id": channel_id, "content": content,
        "author": author,
        "attachments": attachments, "embeds": [], "mentions": [], "mention_roles": [],
        "mention_everyone": false, "pinned": false, "tts": false, "type": 0,
        "timestamp": "2026-11-24T06:00:00.000000+00:00", "edited_timestamp": null,
        "components": [],
    })
}

/// The bot a control names, or the sim's first.
fn bot_or_first(sim: &Sim, named: Option<String>) -> String {
    named
        .or_else(|| sim.config.discord_bots.first().cloned())
        .unwrap_or_default()
}

/// The bot of `token` as a message's author.
fn bot_author(token: &str) -> Value {
    json!({"id": bot_user_id(token).unwrap_or_default(), "username": "textslash-sim-bot", "discriminator": "0", "global_name": null, "avatar": null, "bot": true})
}

/// The user `id` as a message's author.
fn user_author(id: &str) -> Value {
    json!({"id": id, "username": "sim-user", "discriminator": "0", "global_name": "Sim User", "avatar": null})
}

/// The per-route bucket headers Discord sends with every answer (Discord, "Rate Limits":
/// `X-RateLimit-Limit`, `-Remaining`, `-Reset`, `-Reset-After`, `-Bucket`).
fn rate_limit_headers(response: &mut Response, remaining: u64, reset_after: u64) {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + reset_after)
        .unwrap_or(0);
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", 5.into());
    headers.insert("x-ratelimit-remaining", remaining.into());
    headers.insert("x-ratelimit-reset", reset.into());
    headers.insert("x-ratelimit-reset-after", reset_after.into());
    headers.insert("x-ratelimit-bucket", "5e55b0c4e7".parse().unwrap());
}

async fn me(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let token = match authorised(&sim, &headers) {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    axum::Json(json!({
        "id": bot_user_id(&token), "username": "textslash-sim-bot", "discriminator": "0",
        "global_name": null, "avatar": null, "bot": true, "flags": 0, "mfa_enabled": false,
        "verified": true, "email": null,
    }))
    .into_response()
}

async fn create_message(
    State(sim): State<Arc<Sim>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authorised(&sim, &headers) {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    if let Some(answer) = injected(
        &sim,
        &format!("/discord/api/v10/channels/{channel_id}/messages"),
    ) {
        return answer;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (payload, files) = if content_type.starts_with("multipart/form-data") {
        let Some(boundary) = content_type.split("boundary=").nth(1) else {
            return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
        };
        let parts = multipart_parts(&body, boundary.trim_matches('"'));
        let payload = parts
            .iter()
            .find(|(name, _)| name == "payload_json")
            .and_then(|(_, bytes)| serde_json::from_slice::<Value>(bytes).ok())
            .unwrap_or_default();
        let files: Vec<Vec<u8>> = parts
            .into_iter()
            .filter(|(name, _)| name.starts_with("files["))
            .map(|(_, bytes)| bytes)
            .collect();
        (payload, files)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(payload) => (payload, Vec::new()),
            Err(_) => {
                return discord_error(
                    StatusCode::BAD_REQUEST,
                    50109,
                    "The request body contains invalid JSON.",
                );
            }
        }
    };
    let content = payload["content"].as_str().unwrap_or_default().to_string();
    let buttons = component_buttons(&payload["components"]);
    if content.chars().count() > CONTENT_LIMIT {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "Invalid Form Body", "code": 50035, "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}})),
        )
            .into_response();
    }
    if content.is_empty() && files.is_empty() {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    let mut state = sim.discord.state.lock().unwrap();
    let Some(recipient) = Discord::recipient(&state, &channel_id) else {
        return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    let to = format!("discord:{recipient}");
    let id = Discord::next_snowflake(&mut state);
    if files.is_empty() {
        state.sent.push(Sent {
            to,
            kind: "message".into(),
            text: content.clone(),
            media: vec![],
            message_id: id.parse().unwrap_or_default(),
            buttons,
            ..Default::default()
        });
    } else {
        for file in &files {
            state.sent.push(Sent {
                to: to.clone(),
                kind: match crate::channels::image_type(file) {
                    Some(_) => "photo",
                    None => "document",
                }
                .into(),
                text: content.clone(),
                media: vec![file.len().to_string()],
                file: Some(sim.channels.keep_file(file.clone())),
                ..Default::default()
            });
        }
    }
    let mut response = axum::Json(message_object(
        &id,
        &channel_id,
        &content,
        bot_author(&token),
        json!([]),
    ))
    .into_response();
    rate_limit_headers(&mut response, 4, 1);
    response
}

/// A message's buttons (message components: action rows of type 1 holding buttons of type 2,
/// each with its `custom_id` and `label`).
fn component_buttons(components: &Value) -> Vec<crate::channels::Button> {
    components
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["type"] == 1)
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["type"] == 2)
        .map(|button| crate::channels::Button {
            text: button["label"].as_str().unwrap_or_default().to_string(),
            data: button["custom_id"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| serde::de::Error::custom("a message id: a number or a string of digits"))
}

#[derive(Deserialize)]
struct UserClick {
    /// Who clicks: the DM's user.
    from_id: String,
    /// The bot's message with the button: a number, or a string as a browser must send a
    /// snowflake (larger than a JavaScript number holds exactly).
    #[serde(deserialize_with = "number_or_string")]
    message_id: u64,
    /// The button, by its label.
    label: String,
    /// A `custom_id` to send instead of the button's: what a forged click carries.
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    bot_token: Option<String>,
}

/// A user clicks a button under one of the bot's messages in their DM: an `INTERACTION_CREATE`
/// (type 3, a message component, with the message, the user, the channel and a token) for the
/// bot's session, which must answer through the interaction callback within 3 seconds.
async fn user_clicks(
    State(sim): State<Arc<Sim>>,
    axum::Json(click): axum::Json<UserClick>,
) -> Response {
    let token = bot_or_first(&sim, click.bot_token);
    let mut state = sim.discord.state.lock().unwrap();
    let to = format!("discord:{}", click.from_id);
    let Some(message) = state
        .sent
        .iter()
        .find(|s| s.to == to && s.message_id == click.message_id)
        .cloned()
    else {
        return (StatusCode::NOT_FOUND, "no such message in that DM").into_response();
    };
    let custom_id = match (
        click.custom_id,
        message.buttons.iter().find(|b| b.text == click.label),
    ) {
        (Some(forged), _) => forged,
        (None, Some(button)) => button.data.clone(),
        (None, None) => {
            return (StatusCode::NOT_FOUND, "the message has no such button").into_response();
        }
    };
    let Some(session_id) = state.live.get(&token).map(|(session, _)| session.clone()) else {
        return (StatusCode::CONFLICT, "the bot is not connected").into_response();
    };
    let channel_id = Discord::dm_channel(&mut state, &click.from_id);
    let interaction_id = Discord::next_snowflake(&mut state);
    let interaction_token = format!("sim-interaction-{interaction_id}");
    let bot = bot_user_id(&token).unwrap_or_default();
    let interaction = json!({
        "id": interaction_id, "application_id": bot, "type": 3, "token": interaction_token,
        "version": 1, "locale": "en-US", "attachment_size_limit": 10_485_760,
        "authorizing_integration_owners": {"0": "0"}, "context": 1, "entitlements": [],
        "app_permissions": "0",
        "channel": {"id": channel_id, "type": 1}, "channel_id": channel_id,
        "user": user_author(&click.from_id),
        "data": {"custom_id": custom_id, "component_type": 2},
        "message": message_object(&message.message_id.to_string(), &channel_id, &message.text, bot_author(&token), json!([])),
    });
    state.interactions.insert(
        interaction_id.clone(),
        PendingInteraction {
            token: interaction_token,
            user: click.from_id,
            message_id: message.message_id,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(3),
            answer: None,
        },
    );
    Discord::dispatch(&mut state, &session_id, "INTERACTION_CREATE", interaction);
    axum::Json(json!({"interaction_id": interaction_id})).into_response()
}

/// Create Interaction Response (`POST /interactions/{id}/{token}/callback`, no bot token:
/// the interaction's token is the credential). Type 7 (UPDATE_MESSAGE) edits the message the
/// button is under; type 4 (CHANNEL_MESSAGE_WITH_SOURCE) posts a message, only to the clicker
/// when its flags say EPHEMERAL (64). Once per interaction, within 3 seconds.
async fn interaction_callback(
    State(sim): State<Arc<Sim>>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(response) = serde_json::from_slice::<Value>(&body) else {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let mut state = sim.discord.state.lock().unwrap();
    let Some(pending) = state
        .interactions
        .get_mut(&id)
        .filter(|p| p.token == token && std::time::Instant::now() <= p.deadline)
    else {
        return discord_error(StatusCode::NOT_FOUND, 10062, "Unknown interaction");
    };
    if pending.answer.is_some() {
        return discord_error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        );
    }
    pending.answer = Some(response.clone());
    let (user, message_id) = (pending.user.clone(), pending.message_id);
    let data = &response["data"];
    let to = format!("discord:{user}");
    match response["type"].as_u64() {
        Some(7) => {
            if let Some(sent) = state
                .sent
                .iter_mut()
                .find(|s| s.to == to && s.message_id == message_id)
            {
                if let Some(content) = data["content"].as_str() {
                    sent.text = content.to_string();
                }
                if data.get("components").is_some() {
                    sent.buttons = component_buttons(&data["components"]);
                }
                sent.edits += 1;
            }
        }
        Some(4) => {
            let ephemeral = data["flags"].as_u64().is_some_and(|f| f & 64 != 0);
            state.sent.push(Sent {
                to,
                kind: if ephemeral { "ephemeral" } else { "message" }.into(),
                text: data["content"].as_str().unwrap_or_default().to_string(),
                ..Default::default()
            });
        }
        _ => {
            return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Edit Message (`PATCH /channels/{channel.id}/messages/{message.id}`): the bot's own message
/// in that channel gets new `content` (at most 2000 characters); an unknown one is
/// `10008 Unknown Message`.
async fn edit_message(
    State(sim): State<Arc<Sim>>,
    Path((channel_id, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authorised(&sim, &headers) {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let content = payload["content"].as_str().unwrap_or_default().to_string();
    if content.is_empty() || content.chars().count() > CONTENT_LIMIT {
        return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let mut state = sim.discord.state.lock().unwrap();
    let Some(recipient) = Discord::recipient(&state, &channel_id) else {
        return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    let to = format!("discord:{recipient}");
    let id: u64 = message_id.parse().unwrap_or_default();
    let Some(sent) = state
        .sent
        .iter_mut()
        .find(|s| s.to == to && s.message_id == id && id != 0)
    else {
        return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    };
    sent.text = content.clone();
    sent.edits += 1;
    let mut edited = message_object(
        &message_id,
        &channel_id,
        &content,
        bot_author(&token),
        json!([]),
    );
    edited["edited_timestamp"] = json!("2026-11-24T06:00:01.000000+00:00");
    let mut response = axum::Json(edited).into_response();
    rate_limit_headers(&mut response, 4, 1);
    response
}

async fn typing(
    State(sim): State<Arc<Sim>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorised(&sim, &headers) {
        return refused;
    }
    let mut state = sim.discord.state.lock().unwrap();
    let Some(recipient) = Discord::recipient(&state, &channel_id) else {
        return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    state.sent.push(Sent {
        to: format!("discord:{recipient}"),
        kind: "typing".into(),
        text: String::new(),
        media: vec![],
        ..Default::default()
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn unknown_route() -> Response {
    discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found")
}

/// An attachment a fake user sent: public, no credentials, as on Discord's CDN.
/// An attachment's bytes: the tiny PNG, or one padded to the size its name carries
/// (`<id>-<bytes>.png`), as large as the DM said.
async fn attachment(Path(name): Path<String>) -> Response {
    let size = name
        .trim_end_matches(".png")
        .rsplit_once('-')
        .and_then(|(_, size)| size.parse::<usize>().ok());
    let mut bytes = TINY_PNG.to_vec();
    if let Some(size) = size {
        bytes.resize(size.max(TINY_PNG.len()), 0);
    }
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

/// `(name, bytes)` of each part of a multipart body.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(header_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..header_end]).to_string();
        let content = &rest[header_end + 4..];
        let end = find(content, delimiter.as_bytes()).unwrap_or(content.len());
        let data = content[..end]
            .strip_suffix(b"\r\n")
            .unwrap_or(&content[..end]);
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_string();
        parts.push((name, data.to_vec()));
        rest = &content[end..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Controls

#[derive(Deserialize)]
struct UserDm {
    /// The user's id.
    from_id: String,
    #[serde(default)]
    text: String,
    /// Attach a small PNG.
    #[serde(default)]
    image: bool,
    /// Defaults to the sim's first bot.
    #[serde(default)]
    bot_token: Option<String>,
    /// Attach this many images of `image_bytes` each instead (as large as declared).
    #[serde(default)]
    images: u32,
    #[serde(default)]
    image_bytes: Option<u64>,
    /// Send it as an event no client can read (its `author` is not an object), the raw form
    /// of hostile or broken input: the text is in it all the same.
    #[serde(default)]
    unreadable: bool,
}

/// A user sends the bot a DM: a MESSAGE_CREATE for the bot's newest session (pushed at once
/// if it is connected, kept for a resume if not). Answers where it went.
async fn user_sends_dm(
    State(sim): State<Arc<Sim>>,
    axum::Json(dm): axum::Json<UserDm>,
) -> Response {
    let token = bot_or_first(&sim, dm.bot_token);
    let mut state = sim.discord.state.lock().unwrap();
    let channel_id = Discord::dm_channel(&mut state, &dm.from_id);
    let message_id = Discord::next_snowflake(&mut state);
    let Some(session_id) = state.newest.get(&token).cloned() else {
        return (
            StatusCode::CONFLICT,
            "the bot has never connected to the Gateway, so Discord has no one to give the DM to",
        )
            .into_response();
    };
    if state
        .sessions
        .get(&session_id)
        .is_none_or(|log| log.intents & DIRECT_MESSAGES == 0)
    {
        return (
            StatusCode::CONFLICT,
            "the bot's session lacks the DIRECT_MESSAGES intent, so it gets no DMs",
        )
            .into_response();
    }
    let count = if dm.images > 0 {
        dm.images
    } else {
        u32::from(dm.image)
    };
    let size = dm.image_bytes.unwrap_or(TINY_PNG.len() as u64);
    let attachments: Vec<Value> = (0..count)
        .map(|_| {
            let id = Discord::next_snowflake(&mut state);
            let url = format!(
                "{}/discord-cdn/attachments/{id}-{size}.png",
                sim.base_url.replace("127.0.0.1", "localhost")
            );
            json!({"id": id, "filename": "photo.png", "size": size, "url": url, "proxy_url": url, "content_type": "image/png", "width": 1, "height": 1})
        })
        .collect();
    let live = state
        .live
        .get(&token)
        .is_some_and(|(live, _)| *live == session_id);
    let author = if dm.unreadable {
        json!(42)
    } else {
        user_author(&dm.from_id)
    };
    let message = message_object(
        &message_id,
        &channel_id,
        &dm.text,
        author,
        json!(attachments),
    );
    Discord::dispatch(&mut state, &session_id, "MESSAGE_CREATE", message);
    axum::Json(json!({"message_id": message_id, "channel_id": channel_id, "delivered_live": live}))
        .into_response()
}

#[derive(Deserialize, Default)]
struct BotChoice {
    #[serde(default)]
    bot_token: Option<String>,
}

fn push_to_bot(sim: &Sim, choice: BotChoice, push: Push, forget_session: bool) -> Response {
    let token = bot_or_first(sim, choice.bot_token);
    let mut state = sim.discord.state.lock().unwrap();
    let Some((session_id, sender)) = state.live.get(&token).cloned() else {
        return (StatusCode::CONFLICT, "the bot is not connected").into_response();
    };
    if forget_session {
        state.sessions.remove(&session_id);
        state.newest.remove(&token);
    }
    let _ = sender.send(push);
    StatusCode::NO_CONTENT.into_response()
}

/// Discord asks the bot to reconnect and resume (op 7), as it does when a gateway server
/// restarts.
async fn force_reconnect(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let choice = serde_json::from_slice(&body).unwrap_or_default();
    push_to_bot(&sim, choice, Push::Reconnect, false)
}

/// Discord ends the bot's session (op 9, not resumable): the bot must identify anew.
async fn invalidate_session(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let choice = serde_json::from_slice(&body).unwrap_or_default();
    push_to_bot(&sim, choice, Push::InvalidSession, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bot_token_names_its_user() {
        assert_eq!(
            bot_user_id(crate::SIM_DISCORD_BOT).as_deref(),
            Some(crate::SIM_DISCORD_BOT_ID)
        );
        assert_eq!(bot_user_id("not a token"), None);
    }

    #[test]
    fn multipart_bodies_are_read_part_by_part() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\r\n{\"content\":\"hi\"}\r\n--XX\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XX--\r\n";
        let parts = multipart_parts(body, "XX");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            ("payload_json".into(), b"{\"content\":\"hi\"}".to_vec())
        );
        assert_eq!(parts[1], ("files[0]".into(), b"\x89PNG".to_vec()));
    }
}
