//! Fake Telegram Bot API, Twilio Messages API and Anthropic models endpoint, plus the controls
//! a test (or the demo's chat page) uses to play the user:
//!
//! - `/telegram/bot<token>/<method>`: getMe, setWebhook, deleteWebhook, getWebhookInfo,
//!   sendMessage (with inline keyboards), editMessageText, answerCallbackQuery, sendChatAction,
//!   sendPhoto, getFile; `/telegram/file/bot<token>/<path>`.
//!   Answers CORS like the real one (the page checks a bot token from the browser).
//! - `/twilio/2010-04-01/Accounts/<sid>/Messages.json` (HTTP Basic; a `ContentSid` message
//!   is made from a [`crate::content`] template, quick replies and all), `/twilio/media/<id>`
//!   (HTTP Basic, redirecting to `/twilio-cdn/<id>` on another host name).
//! - `/anthropic/v1/models` (`x-api-key`), with CORS for the page's key check.
//! - `POST /sim/telegram/send`, `POST /sim/twilio/send`: a user sends a message; the fake
//!   delivers it to the registered webhook (Telegram, with the secret) or to the given URL
//!   (Twilio, signed as Twilio signs; with `tap`, a tap on a quick reply). `GET
//!   /sim/{telegram,twilio}/sent`: what the bot sent, with each message's buttons and how
//!   often it was edited.
//! - `POST /sim/telegram/tap`: a user taps a button under a bot message (`callback_query`),
//!   which waits for the bot's `answerCallbackQuery`; `GET /sim/telegram/tap/<query id>`:
//!   what the bot answered (the notice Telegram shows the tapper); `editMessageText` edits a
//!   sent message.
//! - `GET /sim/chat`: a phone-like chat page over those controls, for the demo.

use crate::Sim;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A 1×1 PNG: what the fake user "photographs".
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Something a bot or account sent to a user.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct Sent {
    /// `telegram:<chat id>` or `whatsapp:+…`.
    pub to: String,
    /// `message`, `photo`, `typing`.
    pub kind: String,
    pub text: String,
    /// Twilio media URLs, or the uploaded file's size for a Telegram photo.
    pub media: Vec<String>,
    /// The message's id: Telegram's `message_id`, Discord's snowflake; for WhatsApp the
    /// number in its `SM…` SID (0 where a message has none).
    pub message_id: u64,
    /// Its buttons, in order: Telegram's inline keyboard (until an edit removes it),
    /// Discord's components, WhatsApp's quick replies.
    pub buttons: Vec<Button>,
    /// How many times the message was edited (`editMessageText`).
    pub edits: u32,
    /// Where the sim serves an uploaded file (`/sim/files/<n>`), for the chat page to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// An inline keyboard button: its label and `callback_data`.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct Button {
    pub text: String,
    pub data: String,
}

#[derive(Default)]
pub struct Channels {
    state: Mutex<ChannelState>,
    /// Files the bots uploaded (photos, documents), served at `/sim/files/<index>`.
    files: Mutex<Vec<Vec<u8>>>,
}

#[derive(Default)]
struct ChannelState {
    /// bot token → (webhook URL, secret).
    webhooks: HashMap<String, (String, String)>,
    next_update_id: i64,
    next_message_id: u64,
    telegram_sent: Vec<Sent>,
    twilio_sent: Vec<Sent>,
    /// bot token → `allowed_updates` of its webhook (empty: every kind).
    allowed_updates: HashMap<String, Vec<String>>,
    next_query_id: u64,
    /// callback query id → the bot's `answerCallbackQuery` text, once answered (`None` while
    /// it waits).
    tap_answers: HashMap<String, Option<String>>,
}

impl ChannelState {
    /// Keeps a message Twilio sent to a WhatsApp user (through the REST API or a TwiML
    /// answer), numbered like every message; its number.
    fn twilio_sends(&mut self, sent: Sent) -> u64 {
        self.next_message_id += 1;
        let message_id = self.next_message_id;
        self.twilio_sent.push(Sent { message_id, ..sent });
        message_id
    }
}

impl Channels {
    /// Keeps an uploaded file for the chat page; the path it is served at.
    pub fn keep_file(&self, bytes: Vec<u8>) -> String {
        let mut files = self.files.lock().unwrap();
        files.push(bytes);
        format!("/sim/files/{}", files.len() - 1)
    }

    pub fn telegram_sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().telegram_sent.clone()
    }
    pub fn twilio_sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().twilio_sent.clone()
    }
    /// What the bot answered to the tap `query_id` (`answerCallbackQuery`), once it did.
    pub fn tap_answer(&self, query_id: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .tap_answers
            .get(query_id)
            .cloned()
            .flatten()
    }
    /// The webhook registered for `bot_token`, if any.
    pub fn telegram_webhook(&self, bot_token: &str) -> Option<(String, String)> {
        self.state.lock().unwrap().webhooks.get(bot_token).cloned()
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/telegram/{bot}/{method}", any(telegram_method))
        .route("/telegram/file/{bot}/{*path}", get(telegram_file))
        .route("/twilio/2010-04-01/Accounts/{sid}/Messages.json", post(twilio_send))
        .route("/twilio/media/{id}", get(twilio_media))
        .route("/twilio-cdn/{id}", get(twilio_cdn))
        .route("/anthropic/v1/models", any(anthropic_models))
        .route("/sim/chat", get(|| async { axum::response::Html(include_str!("chat.html")) }))
        .route("/sim/telegram/send", post(user_sends_telegram))
        .route("/sim/telegram/tap", post(user_taps_telegram))
        .route("/sim/telegram/tap/{query_id}", get(|State(sim): State<Arc<Sim>>, Path(query_id): Path<String>| async move { axum::Json(json!({"answer": sim.channels.tap_answer(&query_id)})) }))
        .route("/sim/files/{index}", get(kept_file))
        .route("/sim/telegram/sent", get(|State(sim): State<Arc<Sim>>| async move { axum::Json(sim.channels.telegram_sent()) }))
        .route("/sim/twilio/send", post(user_sends_whatsapp))
        .route("/sim/twilio/sent", get(|State(sim): State<Arc<Sim>>| async move { axum::Json(sim.channels.twilio_sent()) }))
        .with_state(sim)
}

fn cors(allow_headers: &'static str, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".parse().unwrap());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, POST, OPTIONS".parse().unwrap(),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        allow_headers.parse().unwrap(),
    );
    response
}

fn telegram_error(status: StatusCode, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error_code": status.as_u16(), "description": description})),
    )
        .into_response()
}

fn telegram_ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

/// The bot token from a `bot<token>` path segment, if the sim knows it.
fn known_bot<'a>(sim: &Sim, segment: &'a str) -> Option<&'a str> {
    segment
        .strip_prefix("bot")
        .filter(|token| sim.config.telegram_bots.iter().any(|t| t == token))
}

async fn telegram_method(
    State(sim): State<Arc<Sim>>,
    Path((bot, method)): Path<(String, String)>,
    http_method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const HEADERS: &str = "content-type";
    if http_method == Method::OPTIONS {
        return cors(HEADERS, StatusCode::NO_CONTENT);
    }
    let Some(token) = known_bot(&sim, &bot) else {
        return cors(
            HEADERS,
            telegram_error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        );
    };
    let (params, upload) = match telegram_params(&headers, &body) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal,
    };
    let chat = || {
        params["chat_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| params["chat_id"].as_i64().map(|n| n.to_string()))
    };
    let mut state = sim.channels.state.lock().unwrap();
    let response = match method.as_str() {
        "getMe" => telegram_ok(
            json!({"id": 424242, "is_bot": true, "first_name": "Sim Bot", "username": "textslash_sim_bot"}),
        ),
        "setWebhook" => set_webhook(&sim, &mut state, token, &params),
        "deleteWebhook" => {
            state.webhooks.remove(token);
            telegram_ok(json!(true))
        }
        "getWebhookInfo" => {
            let url = state
                .webhooks
                .get(token)
                .map(|(u, _)| u.clone())
                .unwrap_or_default();
            telegram_ok(json!({"url": url, "pending_update_count": 0}))
        }
        "sendMessage" => match chat() {
            Some(chat) => send_message(&mut state, &chat, &params),
            None => telegram_error(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty"),
        },
        "editMessageText" => match chat() {
            Some(chat) => edit_message_text(&mut state, &chat, &params),
            None => telegram_error(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty"),
        },
        "answerCallbackQuery" => answer_callback_query(&mut state, &params),
        "sendChatAction" => {
            let Some(chat) = chat() else {
                return telegram_error(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty");
            };
            state.telegram_sent.push(Sent {
                to: format!("telegram:{chat}"),
                kind: "typing".into(),
                text: String::new(),
                media: vec![],
                ..Default::default()
            });
            telegram_ok(json!(true))
        }
        "sendPhoto" | "sendDocument" => match chat().filter(|c| !c.is_empty()) {
            Some(chat) => {
                let file = upload.unwrap_or_default();
                let kept = sim.channels.keep_file(file.clone());
                send_file(&mut state, &chat, &method, file, kept)
            }
            None => telegram_error(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty"),
        },
        "getFile" => {
            let file_id = params["file_id"].as_str().unwrap_or_default();
            telegram_ok(json!({"file_id": file_id, "file_path": format!("photos/{file_id}.png")}))
        }
        _ => telegram_error(StatusCode::NOT_FOUND, "Not Found: method not found"),
    };
    cors(HEADERS, response)
}

/// A Bot API call's parameters: JSON, or multipart with the uploaded file (sendPhoto,
/// sendDocument); an unreadable body gets Telegram's own 400.
fn telegram_params(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Option<Vec<u8>>), Response> {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    if is_multipart {
        let chat_id = multipart_field(body, "chat_id")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let upload = multipart_field(body, "photo").or_else(|| multipart_field(body, "document"));
        return Ok((json!({"chat_id": chat_id}), upload));
    }
    if body.is_empty() {
        return Ok((json!({}), None));
    }
    serde_json::from_slice(body)
        .map(|params| (params, None))
        .map_err(|_| telegram_error(StatusCode::BAD_REQUEST, "Bad Request: can't parse JSON"))
}

/// `setWebhook`: the host must resolve ([`resolves`]) and the secret use Telegram's alphabet.
fn set_webhook(sim: &Sim, state: &mut ChannelState, token: &str, params: &Value) -> Response {
    let Some(url) = params["url"].as_str() else {
        return telegram_error(StatusCode::BAD_REQUEST, "Bad Request: url is required");
    };
    if !resolves(sim, url) {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
        );
    }
    let secret = params["secret_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !secret
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || secret.len() > 256
    {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: secret token contains unallowed characters",
        );
    }
    state
        .webhooks
        .insert(token.to_string(), (url.to_string(), secret));
    // "A JSON-serialized list of the update types you want your bot to receive … If not
    // specified, the previous setting will be used." (setWebhook)
    if let Some(kinds) = params["allowed_updates"].as_array() {
        let kinds = kinds.iter().filter_map(Value::as_str).map(str::to_string);
        state
            .allowed_updates
            .insert(token.to_string(), kinds.collect());
    }
    telegram_ok(json!(true))
}

/// An inline keyboard (`reply_markup.inline_keyboard`, rows of buttons) as buttons in order;
/// each button's `callback_data` must be 1–64 bytes (Bot API, `InlineKeyboardButton`), or
/// Telegram answers `BUTTON_DATA_INVALID`.
fn inline_buttons(params: &Value) -> Result<Vec<Button>, Response> {
    let rows = params["reply_markup"]["inline_keyboard"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut buttons = Vec::new();
    for button in rows.iter().filter_map(Value::as_array).flatten() {
        let data = button["callback_data"].as_str().unwrap_or_default();
        if data.is_empty() || data.len() > 64 {
            return Err(telegram_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: BUTTON_DATA_INVALID",
            ));
        }
        buttons.push(Button {
            text: button["text"].as_str().unwrap_or_default().to_string(),
            data: data.to_string(),
        });
    }
    Ok(buttons)
}

/// `editMessageText`: the bot's own message in that chat; the same text with no keyboard
/// change is refused ("message is not modified"), as Telegram does.
fn edit_message_text(state: &mut ChannelState, chat: &str, params: &Value) -> Response {
    let text = params["text"].as_str().unwrap_or_default();
    if text.is_empty() || text.chars().count() > 4096 {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty or too long",
        );
    }
    let buttons = match inline_buttons(params) {
        Ok(buttons) => buttons,
        Err(refusal) => return refusal,
    };
    let id = params["message_id"].as_u64().unwrap_or_default();
    let to = format!("telegram:{chat}");
    let Some(sent) = state
        .telegram_sent
        .iter_mut()
        .find(|s| s.to == to && s.message_id == id && id != 0)
    else {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message to edit not found",
        );
    };
    if sent.text == text && sent.buttons == buttons {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        );
    }
    sent.text = text.to_string();
    sent.buttons = buttons;
    sent.edits += 1;
    telegram_ok(json!({"message_id": id, "chat": {"id": chat}, "text": text}))
}

/// `answerCallbackQuery`: once per query the user made, `text` at most 200 characters.
fn answer_callback_query(state: &mut ChannelState, params: &Value) -> Response {
    let id = params["callback_query_id"].as_str().unwrap_or_default();
    let text = params["text"].as_str().unwrap_or_default();
    if text.chars().count() > 200 {
        return telegram_error(StatusCode::BAD_REQUEST, "Bad Request: MESSAGE_TOO_LONG");
    }
    match state.tap_answers.get_mut(id) {
        Some(answer @ None) => {
            *answer = Some(text.to_string());
            telegram_ok(json!(true))
        }
        _ => telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: query is too old and response timeout expired or query ID is invalid",
        ),
    }
}

/// `sendMessage`: 1–4096 characters.
fn send_message(state: &mut ChannelState, chat: &str, params: &Value) -> Response {
    let text = params["text"].as_str().unwrap_or_default();
    let length = text.chars().count();
    if length == 0 || length > 4096 {
        return telegram_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message text is empty or too long",
        );
    }
    let buttons = match inline_buttons(params) {
        Ok(buttons) => buttons,
        Err(refusal) => return refusal,
    };
    state.next_message_id += 1;
    state.telegram_sent.push(Sent {
        to: format!("telegram:{chat}"),
        kind: "message".into(),
        text: text.into(),
        media: vec![],
        message_id: state.next_message_id,
        buttons,
        ..Default::default()
    });
    telegram_ok(json!({"message_id": state.next_message_id}))
}

/// `sendPhoto` (with the photo limits below) and `sendDocument` (up to 50 MB).
fn send_file(
    state: &mut ChannelState,
    chat: &str,
    method: &str,
    file: Vec<u8>,
    kept: String,
) -> Response {
    let photo = method == "sendPhoto";
    let refusal = if photo {
        photo_refusal(&file)
    } else {
        (file.len() > DOCUMENT_MAX_BYTES).then_some("Bad Request: file is too big")
    };
    if let Some(refusal) = refusal {
        return telegram_error(StatusCode::BAD_REQUEST, refusal);
    }
    state.telegram_sent.push(Sent {
        to: format!("telegram:{chat}"),
        kind: if photo { "photo" } else { "document" }.into(),
        text: String::new(),
        media: vec![file.len().to_string()],
        file: Some(kept),
        ..Default::default()
    });
    state.next_message_id += 1;
    telegram_ok(json!({"message_id": state.next_message_id}))
}

/// Whether Telegram could resolve `url`'s host. Telegram resolves a webhook's host when it is
/// set and answers `400 bad webhook: Failed to resolve host` otherwise; an app's
/// `<app>.fly.dev` name has an address only once the app has a public IP, and a moment after
/// that ([`crate::quirks`]). So a sim app URL resolves only when its app has a `v6`,
/// `shared_v4` or `v4` address that is not brand new.
fn resolves(sim: &Sim, url: &str) -> bool {
    let Some(rest) = url.strip_prefix(&format!("{}/apps/", sim.base_url)) else {
        return true;
    };
    let app = rest.split('/').next().unwrap_or_default();
    let has_public_ip = sim.world.with(|apps| {
        apps.get(app)
            .is_some_and(|a| a.ips.iter().any(|ip| ip.kind != "private_v6"))
    });
    has_public_ip && !crate::proxy::name_unresolved(sim, app)
}

/// Bot API limits (docs/channels.md, "sendPhoto"): "The photo must be at most 10 MB in size.
/// The photo's width and height must not exceed 10000 in total. Width and height ratio must be
/// at most 20." Documents may be up to 50 MB. The refusals are Telegram's own error texts
/// (`PHOTO_INVALID_DIMENSIONS`, `PHOTO_SAVE_FILE_INVALID`), as reported against the Bot API.
const PHOTO_MAX_BYTES: usize = 10 * 1024 * 1024;
const DOCUMENT_MAX_BYTES: usize = 50 * 1024 * 1024;

fn photo_refusal(file: &[u8]) -> Option<&'static str> {
    if file.len() > PHOTO_MAX_BYTES {
        return Some("Bad Request: PHOTO_SAVE_FILE_INVALID");
    }
    let (w, h) = png_dimensions(file)?;
    let (w, h) = (u64::from(w), u64::from(h));
    (w + h > 10_000 || w.max(h) > 20 * w.min(h).max(1))
        .then_some("Bad Request: PHOTO_INVALID_DIMENSIONS")
}

/// A PNG's size from its IHDR chunk (the sim's images are PNGs).
fn png_dimensions(file: &[u8]) -> Option<(u32, u32)> {
    if !file.starts_with(b"\x89PNG\r\n\x1a\n") || file.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let be32 = |at: usize| Some(u32::from_be_bytes(file.get(at..at + 4)?.try_into().ok()?));
    Some((be32(16)?, be32(20)?))
}

/// The bytes of the part named `name` in a multipart body.
fn multipart_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let find =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).position(|w| w == needle);
    let marker = format!("name=\"{name}\"");
    let after = &body[find(body, marker.as_bytes())? + marker.len()..];
    let start = find(after, b"\r\n\r\n")? + 4;
    let end = find(&after[start..], b"\r\n--")? + start;
    Some(after[start..end].to_vec())
}

async fn telegram_file(
    State(sim): State<Arc<Sim>>,
    Path((bot, _path)): Path<(String, String)>,
) -> Response {
    if known_bot(&sim, &bot).is_none() {
        return telegram_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    ([(header::CONTENT_TYPE, "image/png")], TINY_PNG).into_response()
}

#[derive(Deserialize)]
struct TelegramUserMessage {
    /// The bot to write to; the first configured one when absent.
    bot_token: Option<String>,
    from_id: i64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    photo: bool,
}

/// A file a bot uploaded, for the chat page (its type sniffed from its first bytes).
async fn kept_file(State(sim): State<Arc<Sim>>, Path(index): Path<usize>) -> Response {
    let Some(bytes) = sim.channels.files.lock().unwrap().get(index).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content_type = image_type(&bytes).unwrap_or("text/plain; charset=utf-8");
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}

/// The image type of an upload, from its first bytes; `None` for anything else (a document).
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        Some("image/jpeg")
    } else {
        None
    }
}

/// A user writes to the bot: the update goes to the bot's webhook with its secret.
async fn user_sends_telegram(
    State(sim): State<Arc<Sim>>,
    axum::Json(message): axum::Json<TelegramUserMessage>,
) -> Response {
    let token = bot_token(&sim, message.bot_token);
    deliver_update(&sim, &token, "message", |update_id| {
        let mut msg = json!({
            "message_id": update_id,
            "from": {"id": message.from_id, "is_bot": false, "first_name": "Sim User"},
            "chat": {"id": message.from_id, "type": "private", "first_name": "Sim User"},
            "date": 1_700_000_000,
        });
        if message.photo {
            msg["photo"] = json!([{"file_id": format!("photo-{update_id}"), "file_unique_id": "u", "width": 1, "height": 1}]);
            msg["caption"] = json!(message.text);
        } else {
            msg["text"] = json!(message.text);
        }
        json!({"update_id": update_id, "message": msg})
    })
    .await
}

#[derive(Deserialize)]
struct TelegramTap {
    bot_token: Option<String>,
    /// Who taps.
    from_id: i64,
    /// The chat the message is in; the tapper's own chat when absent.
    chat_id: Option<i64>,
    /// The bot's message carrying the button.
    message_id: u64,
    /// The button, by its label ("Allow").
    label: String,
    /// `callback_data` to send instead of the button's: what a client showing an old copy of
    /// the message (its buttons since removed) or a forger sends. Telegram passes any data
    /// of at most 64 bytes on (Bot API, `InlineKeyboardButton.callback_data`).
    data: Option<String>,
}

/// A user taps a button under one of the bot's messages: a `callback_query` update (Bot API,
/// `CallbackQuery`: id, from, message, chat_instance, data) goes to the webhook, and the query
/// waits for the bot's `answerCallbackQuery`. Only a button the message has can be tapped.
async fn user_taps_telegram(
    State(sim): State<Arc<Sim>>,
    axum::Json(tap): axum::Json<TelegramTap>,
) -> Response {
    let token = bot_token(&sim, tap.bot_token);
    let chat = tap.chat_id.unwrap_or(tap.from_id);
    let (message, query_id) = {
        let mut state = sim.channels.state.lock().unwrap();
        let to = format!("telegram:{chat}");
        let Some(message) = state
            .telegram_sent
            .iter()
            .find(|s| s.to == to && s.message_id == tap.message_id)
            .cloned()
        else {
            return (StatusCode::NOT_FOUND, "no such message in that chat").into_response();
        };
        state.next_query_id += 1;
        let query_id = format!("cq{}", state.next_query_id);
        state.tap_answers.insert(query_id.clone(), None);
        (message, query_id)
    };
    let data = match (
        tap.data,
        message.buttons.iter().find(|b| b.text == tap.label),
    ) {
        (Some(data), _) if data.len() <= 64 => data,
        (Some(_), _) => {
            return (StatusCode::BAD_REQUEST, "callback_data is 1-64 bytes").into_response();
        }
        (None, Some(button)) => button.data.clone(),
        (None, None) => {
            return (StatusCode::NOT_FOUND, "the message has no such button").into_response();
        }
    };
    let response = deliver_update(&sim, &token, "callback_query", |update_id| {
        json!({"update_id": update_id, "callback_query": {
            "id": query_id,
            "from": {"id": tap.from_id, "is_bot": false, "first_name": "Sim User"},
            "message": {"message_id": message.message_id, "date": 1_700_000_000,
                "chat": {"id": chat, "type": "private", "first_name": "Sim User"},
                "text": message.text},
            "chat_instance": "sim",
            "data": data,
        }})
    })
    .await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    let mut answer: Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        answer["query_id"] = json!(query_id);
        return axum::Json(answer).into_response();
    }
    (status, body).into_response()
}

fn bot_token(sim: &Sim, given: Option<String>) -> String {
    given
        .or_else(|| sim.config.telegram_bots.first().cloned())
        .unwrap_or_default()
}

/// Sends the update `build` makes (given its `update_id`) to the bot's webhook with its
/// secret, if the webhook takes updates of `kind` (its `allowed_updates`).
async fn deliver_update(
    sim: &Arc<Sim>,
    token: &str,
    kind: &str,
    build: impl FnOnce(i64) -> Value,
) -> Response {
    let (webhook, update_id, wanted) = {
        let mut state = sim.channels.state.lock().unwrap();
        state.next_update_id += 1;
        let wanted = state
            .allowed_updates
            .get(token)
            .is_none_or(|kinds| kinds.is_empty() || kinds.iter().any(|k| k == kind));
        (
            state.webhooks.get(token).cloned(),
            state.next_update_id,
            wanted,
        )
    };
    let Some((url, secret)) = webhook else {
        return (
            StatusCode::CONFLICT,
            "the bot has no webhook yet (the relay registers it when it starts)",
        )
            .into_response();
    };
    if !wanted {
        // Telegram keeps updates of kinds the webhook did not ask for away from it.
        return axum::Json(json!({"update_id": update_id, "webhook_status": null})).into_response();
    }
    let update = build(update_id);
    let deliver = {
        let (http, url, secret) = (sim.http.clone(), url.clone(), secret.clone());
        move || {
            let mut request = http.post(&url).json(&update);
            if !secret.is_empty() {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", &secret);
            }
            request.send()
        }
    };
    let first = deliver().await;
    let delivered = first.as_ref().is_ok_and(|r| r.status().is_success());
    if !delivered {
        // "In case of an unsuccessful request (a request with response HTTP status code
        // different from 2XY), we will repeat the request and give up after a reasonable
        // amount of attempts" (setWebhook, docs/channels.md). Here: three more, a second apart.
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if deliver().await.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
            }
        });
    }
    match first {
        Ok(response) => axum::Json(
            json!({"update_id": update_id, "webhook_status": response.status().as_u16()}),
        )
        .into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("the webhook did not answer: {}", error.without_url()),
        )
            .into_response(),
    }
}

/// Twilio's REST error answer (the Messages API's and the Content API's alike).
pub(crate) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}

/// `Authorization: Basic` → the account SID if the pair is one the sim knows.
pub(crate) fn twilio_account(sim: &Sim, headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?,
    )
    .ok()?;
    let (sid, token) = decoded.split_once(':')?;
    sim.config
        .twilio_accounts
        .iter()
        .any(|(s, t)| s == sid && t == token)
        .then(|| sid.to_string())
}

async fn twilio_send(
    State(sim): State<Arc<Sim>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if twilio_account(&sim, &headers).as_deref() != Some(sid.as_str()) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let get = |name: &str| field(name).unwrap_or_default();
    let (to, from, mut text) = (get("To"), get("From"), get("Body"));
    // A message made from a Content template (quick replies): its body and buttons.
    let mut buttons = vec![];
    match (field("ContentSid"), field("ContentVariables")) {
        (Some(content), variables) => {
            match crate::content::render(&sim, &sid, &content, variables.as_deref()) {
                Ok(rendered) => {
                    text = rendered.text;
                    buttons = rendered.buttons;
                }
                Err((code, message)) => {
                    return twilio_error(StatusCode::BAD_REQUEST, code, message);
                }
            }
        }
        (None, Some(_)) => {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21654,
                "ContentSid Required when ContentVariables are given",
            );
        }
        (None, None) => {}
    }
    let media: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "MediaUrl")
        .map(|(_, v)| v.clone())
        .collect();
    if !to.starts_with("whatsapp:+") || !from.starts_with("whatsapp:+") {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            "Invalid 'To' or 'From' Phone Number",
        );
    }
    // "Can be up to 1,600 characters", counted as encoded: characters outside the Basic
    // Multilingual Plane (emoji) count twice (error 21617; docs/channels.md).
    if text.encode_utf16().count() > 1600 {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit",
        );
    }
    if text.is_empty() && media.is_empty() {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required");
    }
    // The API takes up to ten MediaUrl, but a WhatsApp message carries only the first; the
    // others are dropped without an error.
    let media: Vec<String> = media.into_iter().take(1).collect();
    let message_id = sim.channels.state.lock().unwrap().twilio_sends(Sent {
        to: to.clone(),
        kind: if media.is_empty() { "message" } else { "photo" }.into(),
        text,
        media,
        buttons,
        ..Default::default()
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": format!("SM{message_id:032x}"), "status": "queued", "to": to})),
    )
        .into_response()
}

/// Twilio's media URL answers with a redirect to its CDN on another host (`mms.twiliocdn.com`
/// or an S3 host; docs/channels.md, "Inbound media download"). Here the other host is the
/// same port under the name `localhost`, so a client keeps credentials only if it carries
/// them across hosts.
async fn twilio_media(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if twilio_account(&sim, &headers).is_none() {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let cdn = sim.base_url.replace("127.0.0.1", "localhost");
    let size = uri.query().map(|q| format!("&{q}")).unwrap_or_default();
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(
            header::LOCATION,
            format!("{cdn}/twilio-cdn/{id}?signature=sim{size}"),
        )],
    )
        .into_response()
}

/// The CDN side: a pre-signed URL. Like S3 it refuses a request that also carries an
/// `Authorization` header ("Only one auth mechanism allowed").
async fn twilio_cdn(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
        )
            .into_response();
    }
    let wanted = uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("bytes=")))
        .and_then(|n| n.parse::<usize>().ok());
    // A big attachment (a video, say): PNG-headed bytes of that size.
    let mut body = TINY_PNG.to_vec();
    if let Some(n) = wanted {
        body.resize(n.max(TINY_PNG.len()), 0);
    }
    ([(header::CONTENT_TYPE, "image/png")], body).into_response()
}

#[derive(Deserialize)]
struct WhatsappUserMessage {
    /// The relay's webhook URL, as the owner pasted it into Twilio.
    url: String,
    /// The user's number, `whatsapp:+…`.
    from: String,
    /// The bot's number, `whatsapp:+…`.
    to: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    image: bool,
    /// The attachment's size in bytes (a tiny PNG when absent).
    #[serde(default)]
    image_bytes: Option<usize>,
    /// Sign this as `MediaUrl0` instead of the sim's own media URL (a test of where the
    /// relay is willing to fetch from).
    #[serde(default)]
    media_url: Option<String>,
    /// Which account signs; the first configured one when absent.
    account_sid: Option<String>,
    /// A tap on a quick reply instead of typed text: the bot's message (its number in what
    /// the sim recorded, `message_id`) and the button's label.
    #[serde(default)]
    tap: Option<QuickReplyTap>,
}

#[derive(Deserialize)]
struct QuickReplyTap {
    message_id: u64,
    label: String,
    /// The id to send instead of the button's (what a forger would send).
    #[serde(default)]
    payload: Option<String>,
}

/// A user writes on WhatsApp: Twilio posts the signed form to the webhook URL.
async fn user_sends_whatsapp(
    State(sim): State<Arc<Sim>>,
    axum::Json(message): axum::Json<WhatsappUserMessage>,
) -> Response {
    let account = match &message.account_sid {
        Some(sid) => sim.config.twilio_accounts.iter().find(|(s, _)| s == sid),
        None => sim.config.twilio_accounts.first(),
    };
    let Some((sid, token)) = account.cloned() else {
        return (StatusCode::BAD_REQUEST, "unknown Twilio account").into_response();
    };
    let (message_sid, tapped) = {
        let mut state = sim.channels.state.lock().unwrap();
        // A quick reply is tapped under one of the bot's messages to this user.
        let tapped = match &message.tap {
            None => None,
            Some(tap) => {
                let Some(sent) = state
                    .twilio_sent
                    .iter()
                    .find(|s| s.to == message.from && s.message_id == tap.message_id)
                else {
                    return (StatusCode::NOT_FOUND, "no such message to that user").into_response();
                };
                let Some(button) = sent.buttons.iter().find(|b| b.text == tap.label) else {
                    return (StatusCode::NOT_FOUND, "the message has no such button")
                        .into_response();
                };
                let payload = tap.payload.clone().unwrap_or(button.data.clone());
                Some((
                    button.text.clone(),
                    payload,
                    format!("SM{:032x}", sent.message_id),
                ))
            }
        };
        state.next_message_id += 1;
        (format!("SM{:032x}", state.next_message_id), tapped)
    };
    let body = match &tapped {
        Some((label, _, _)) => label.clone(),
        None => message.body,
    };
    let mut params: Vec<(String, String)> = vec![
        ("MessageSid".into(), message_sid.clone()),
        ("SmsMessageSid".into(), message_sid.clone()),
        ("AccountSid".into(), sid),
        ("From".into(), message.from.clone()),
        ("To".into(), message.to),
        ("Body".into(), body),
        (
            "NumMedia".into(),
            if message.image { "1" } else { "0" }.into(),
        ),
        ("ProfileName".into(), "Sim User".into()),
        (
            "WaId".into(),
            message.from.trim_start_matches("whatsapp:+").into(),
        ),
    ];
    // A quick reply tapped arrives as a message whose body is the button's text, with the
    // button's id as `ButtonPayload` and the message it was under (Twilio's webhook request,
    // WhatsApp parameters; docs/channels.md).
    if let Some((label, payload, replied_to)) = tapped {
        params.extend([
            ("MessageType".into(), "button".into()),
            ("ButtonText".into(), label),
            ("ButtonPayload".into(), payload),
            ("OriginalRepliedMessageSid".into(), replied_to),
        ]);
    }
    if message.image {
        let size = message
            .image_bytes
            .map(|n| format!("?bytes={n}"))
            .unwrap_or_default();
        params.push((
            "MediaUrl0".into(),
            message
                .media_url
                .clone()
                .unwrap_or_else(|| format!("{}/twilio/media/{message_sid}{size}", sim.base_url)),
        ));
        params.push(("MediaContentType0".into(), "image/png".into()));
    }
    let signature = twilio_signature(&token, &message.url, &params);
    // Twilio tries to connect twice ("Twilio will try for 10 seconds to establish a TCP
    // connection … (two 5-second attempts)", error 11205) and does not repeat a request that
    // got an answer, whatever its status: a 5xx is reported as error 11200 and not retried.
    let post = || {
        sim.http
            .post(&message.url)
            .header("X-Twilio-Signature", &signature)
            .form(&params)
            .send()
    };
    let response = match post().await {
        Err(error) if error.is_connect() => post().await,
        other => other,
    };
    match response {
        Ok(response) => {
            let status = response.status();
            let twiml = response.text().await.unwrap_or_default();
            // "If no 'to' attribute is provided, Twilio sends the message as a reply to the
            // current sender" (TwiML <Message>, https://www.twilio.com/docs/messaging/twiml/message).
            if status.is_success() {
                let mut state = sim.channels.state.lock().unwrap();
                for text in twiml_replies(&twiml) {
                    state.twilio_sends(Sent {
                        to: message.from.clone(),
                        kind: "message".into(),
                        text,
                        ..Default::default()
                    });
                }
            }
            axum::Json(json!({
                "message_sid": message_sid,
                "webhook_status": status.as_u16(),
                "error_code": (!status.is_success()).then_some(11200),
                "twiml": twiml,
            }))
            .into_response()
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("the webhook did not answer: {}", error.without_url()),
        )
            .into_response(),
    }
}

/// The texts of a TwiML answer's `<Message>` verbs, written either way Twilio's docs show:
/// `<Message>Hi</Message>` or `<Message><Body>Hi</Body></Message>`
/// (https://www.twilio.com/docs/messaging/twiml). `<Response/>` has none.
fn twiml_replies(twiml: &str) -> Vec<String> {
    let mut replies = vec![];
    let mut rest = twiml;
    while let Some(start) = rest.find("<Message") {
        let after_name = &rest[start + "<Message".len()..];
        // `<Messages>` or the like is another element.
        if !after_name.starts_with(['>', ' ', '/', '\t', '\n', '\r']) {
            rest = after_name;
            continue;
        }
        let Some(open_end) = after_name.find('>') else {
            break;
        };
        if after_name[..open_end].ends_with('/') {
            rest = &after_name[open_end + 1..];
            continue;
        }
        let inner = &after_name[open_end + 1..];
        let Some(close) = inner.find("</Message>") else {
            break;
        };
        let content = &inner[..close];
        let body = match (content.find("<Body>"), content.find("</Body>")) {
            (Some(open), Some(end)) if open < end => &content[open + "<Body>".len()..end],
            _ => content,
        };
        replies.push(unescape_xml(body.trim()));
        rest = &inner[close + "</Message>".len()..];
    }
    replies
}

/// XML's five predefined entities (numeric references are not needed by any relay's TwiML).
fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn anthropic_models(
    State(sim): State<Arc<Sim>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    const HEADERS: &str =
        "x-api-key, anthropic-version, anthropic-dangerous-direct-browser-access, content-type";
    if method == Method::OPTIONS {
        return cors(HEADERS, StatusCode::NO_CONTENT);
    }
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !sim.config.anthropic_keys.iter().any(|k| k == key) {
        let body = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        return cors(HEADERS, (StatusCode::UNAUTHORIZED, axum::Json(body)));
    }
    cors(
        HEADERS,
        axum::Json(
            json!({"data": [{"type": "model", "id": "claude-sim-1", "display_name": "Claude (sim)"}], "has_more": false}),
        ),
    )
}

/// How Twilio signs a webhook (docs/channels.md §1, Twilio's "Secure webhooks"): the URL as
/// requested, then each POST parameter's name and value with no separators, sorted by name
/// (case-sensitive), HMAC-SHA1 keyed with the auth token, in base64. Written here from the
/// documentation rather than borrowed from the relay, so a bug in the relay's check cannot
/// hide behind the same bug in its fake.
fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_webhooks_as_twilio_documents() {
        // The base case of Twilio's SDKs (docs/channels.md §1).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .rev()
        .collect();
        assert_eq!(
            super::twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn a_twiml_answer_s_messages_are_read_both_ways_twilio_writes_them() {
        use super::twiml_replies;
        assert!(twiml_replies("<?xml version=\"1.0\"?><Response/>").is_empty());
        assert!(twiml_replies("<Response></Response>").is_empty());
        assert!(twiml_replies("<Response><Message/></Response>").is_empty());
        assert_eq!(
            twiml_replies("<Response><Message>Send it again &amp; soon</Message></Response>"),
            ["Send it again & soon"]
        );
        assert_eq!(
            twiml_replies(
                "<Response>\n  <Message action=\"/x\"><Body>Hello &lt;World&gt;!</Body></Message>\n  <Message>Two</Message></Response>"
            ),
            ["Hello <World>!", "Two"]
        );
        assert!(twiml_replies("<Response><Messages>no</Messages></Response>").is_empty());
        assert!(twiml_replies("<Response><Message>cut short").is_empty());
    }
}
