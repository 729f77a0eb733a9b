//! The relay's HTTP surface: one small handler per route over the shared [`App`].
//!
//! | route | who calls it |
//! |---|---|
//! | `POST /webhook/twilio`, `POST /webhook` | Twilio (signed) |
//! | `POST /webhook/telegram` | Telegram (secret header) |
//! | `POST /callback` | the vm (`Bearer VM_TOKEN`) |
//! | `GET /health` | the page, Fly's checks (CORS open) |
//! | `GET /media/<name>` | Twilio fetching an outgoing image |

use crate::config::TelegramConfig;
use crate::journal::{InboundMessage, MediaRef};
use crate::questions::{self, Choice};
use crate::telegram::{Incoming, Tap};
use crate::{Admission, App, media, telegram, twilio};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use contract::protocol::{
    Callback, CallbackKind, Channel, Conversation, bearer_matches, parse_choice_token,
};
use std::sync::Arc;

/// Webhook bodies are small; a reply with screenshots is not.
const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;
const CALLBACK_BODY_LIMIT: usize = 32 * 1024 * 1024;

const TWIML_EMPTY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

pub fn router(app: Arc<App>) -> Router {
    let webhooks = Router::new()
        .route("/webhook/twilio", post(twilio_webhook))
        .route("/webhook", post(twilio_webhook))
        .route("/webhook/telegram", post(telegram_webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    // The handler reads (and limits) its body itself, after checking the token.
    let callback = Router::new()
        .route("/callback", post(callback))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(webhooks)
        .merge(callback)
        .route("/health", get(health))
        .route("/media/{name}", get(media_file))
        .with_state(app)
}

fn twiml_ok() -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], TWIML_EMPTY).into_response()
}

/// Telegram repeats a webhook that did not get a 2xx, so an unsaved message comes back.
fn telegram_retries_later() -> Response {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "try again")
}

/// Twilio does not repeat a webhook that answered 5xx (it retries only a failed connection,
/// docs/channels.md), so the sender is told, in the TwiML reply, to send it again.
fn twilio_tell_sender_to_resend() -> Response {
    let twiml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
        crate::PLEASE_RESEND
    );
    ([(header::CONTENT_TYPE, "text/xml")], twiml).into_response()
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// Hands the message to [`App::admit`]; the channel hears `ok` unless it could not be saved.
async fn take_in(
    app: &App,
    message: InboundMessage,
    ok: fn() -> Response,
    unsaved: fn() -> Response,
) -> Response {
    match app.admit(message).await {
        Admission::Unsaved => unsaved(),
        Admission::Accepted
        | Admission::Duplicate
        | Admission::Stranger
        | Admission::Paired
        | Admission::Answered
        | Admission::PairingRefused => ok(),
    }
}

async fn twilio_webhook(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(config) = &app.config.twilio else {
        return refuse(
            StatusCode::NOT_FOUND,
            "WhatsApp is not configured on this relay",
        );
    };
    let Some(given) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(StatusCode::FORBIDDEN, "missing X-Twilio-Signature");
    };
    let url = match uri.query() {
        Some(query) => format!("{}{}?{query}", app.config.public_url, uri.path()),
        None => format!("{}{}", app.config.public_url, uri.path()),
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if !twilio::is_valid(&config.auth_token, &url, &params, given) {
        tracing::warn!(
            "refused a Twilio webhook with a bad signature (is PUBLIC_URL the URL set in Twilio?)"
        );
        return refuse(StatusCode::FORBIDDEN, "bad X-Twilio-Signature");
    }
    let Some(inbound) = twilio::parse_inbound(&params) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "not a message: MessageSid and From are required",
        );
    };
    let tapped = inbound.button_payload.clone();
    let message = InboundMessage {
        id: Conversation::id(Channel::Whatsapp, &inbound.message_sid),
        conversation: inbound.from.clone(),
        sender: inbound.from,
        text: inbound.body,
        media: inbound
            .media
            .into_iter()
            .map(|(url, content_type)| MediaRef::TwilioUrl { url, content_type })
            .collect(),
        answer: None,
    };
    // A tapped quick reply answers the question it was under, checked like a Telegram tap.
    if let Some((question, decision)) = tapped.as_deref().and_then(parse_choice_token) {
        let choice = app
            .choose(&message.sender, &message.conversation, question, decision)
            .await;
        return match app.settle(&message, choice).await {
            Admission::Unsaved => twilio_tell_sender_to_resend(),
            _ => twiml_ok(),
        };
    }
    take_in(&app, message, twiml_ok, twilio_tell_sender_to_resend).await
}

/// A tap on a question's button: checked and journaled ([`crate::questions`]), then the
/// tapper's spinner ended with a word and, when it was taken, the question marked answered.
/// Telegram repeats the update if it is not acknowledged, so an unsaved tap is not lost.
async fn telegram_tap(app: &Arc<App>, config: &TelegramConfig, tap: Tap) -> Response {
    let choice = match (&tap.conversation, parse_choice_token(&tap.data)) {
        (Some(conversation), Some((question, decision))) => {
            app.choose(&tap.sender, conversation, question, decision)
                .await
        }
        _ => Choice::Refused(questions::NOT_OURS.into()),
    };
    let word = match &choice {
        Choice::Unsaved => return telegram_retries_later(),
        Choice::Taken(decision) => decision.past().to_string(),
        Choice::Refused(why) => why.clone(),
    };
    let (app, config) = (app.clone(), config.clone());
    // The webhook is acknowledged now; the spinner and the mark follow.
    tokio::spawn(async move {
        if let Err(error) = telegram::answer_tap(&app.http, &config, &tap.query_id, &word).await {
            tracing::debug!("could not answer a tap: {error}");
        }
        if let (Choice::Taken(decision), Some(chat), Some(message_id)) =
            (choice, tap.conversation.as_deref(), tap.message_id)
        {
            let chat_id = chat.trim_start_matches("telegram:");
            let marked = format!("{}\n\n{} ✓", tap.shown_text, decision.past());
            if let Err(error) =
                telegram::edit_text(&app.http, &config, chat_id, message_id, &marked).await
            {
                tracing::debug!("could not mark a question answered: {error}");
            }
        }
    });
    StatusCode::OK.into_response()
}

async fn telegram_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(config) = &app.config.telegram else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Telegram is not configured on this relay",
        );
    };
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    if !telegram::secret_matches(&config.webhook_secret, given) {
        tracing::warn!("refused a Telegram webhook without the right secret");
        return refuse(StatusCode::FORBIDDEN, "bad X-Telegram-Bot-Api-Secret-Token");
    }
    let inbound = match telegram::parse_update(&body) {
        Ok(Some(Incoming::Message(inbound))) => inbound,
        Ok(Some(Incoming::Tap(tap))) => return telegram_tap(&app, config, tap).await,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "not a Telegram update"),
    };
    let message = InboundMessage {
        id: Conversation::id(Channel::Telegram, inbound.update_id),
        conversation: inbound.conversation,
        sender: inbound.sender,
        text: inbound.text,
        media: inbound
            .photo_file_id
            .into_iter()
            .map(|file_id| MediaRef::TelegramFile { file_id })
            .collect(),
        answer: None,
    };
    take_in(
        &app,
        message,
        || StatusCode::OK.into_response(),
        telegram_retries_later,
    )
    .await
}

/// The body (up to 32 MiB of images) is read only after the token checks out, so nobody
/// without `VM_TOKEN` can make the relay hold large uploads in memory.
async fn callback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(authorization, &app.config.vm_token) {
        return refuse(StatusCode::UNAUTHORIZED, "bad or missing VM_TOKEN");
    }
    let Ok(body) = axum::body::to_bytes(body, CALLBACK_BODY_LIMIT).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a callback is at most 32 MiB",
        );
    };
    let Ok(callback) = serde_json::from_slice::<Callback>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "not a callback: expected {id, conversation, kind, text?, images?}",
        );
    };
    let channel_enabled = Conversation::parse(&callback.conversation)
        .is_some_and(|c| app.outlet(c.channel).is_some());
    if !channel_enabled {
        return refuse(
            StatusCode::BAD_REQUEST,
            "conversation is not on a channel this relay serves",
        );
    }
    match callback.kind {
        CallbackKind::Typing => {
            let app = app.clone();
            // Best effort: a missed typing indicator is not worth a retry.
            tokio::spawn(
                async move { crate::outbox::send_typing(&app, &callback.conversation).await },
            );
            StatusCode::OK.into_response()
        }
        CallbackKind::Status => {
            let Some(status) = callback.status else {
                return refuse(StatusCode::BAD_REQUEST, "a status callback needs `status`");
            };
            app.status.update(&app, &callback.conversation, status);
            StatusCode::OK.into_response()
        }
        CallbackKind::Question => {
            let Some(question) = &callback.question else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "a question callback needs `question`",
                );
            };
            let plain_id = !question.id.is_empty()
                && question.id.len() <= 32
                && question.id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !plain_id || question.choices.is_empty() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "a question needs an id of at most 32 letters and digits, and choices",
                );
            }
            match app
                .journal
                .enqueue_question(
                    &callback.id,
                    &callback.conversation,
                    &callback.text,
                    question,
                )
                .await
            {
                Ok(_) => {
                    app.outbox_wake.notify_one();
                    StatusCode::OK.into_response()
                }
                Err(error) => {
                    tracing::error!("could not queue a question: {error}");
                    refuse(StatusCode::SERVICE_UNAVAILABLE, "try again")
                }
            }
        }
        CallbackKind::Message => {
            let mut names = Vec::new();
            let mut left_out = 0;
            for image in &callback.images {
                let Ok(bytes) =
                    base64::engine::general_purpose::STANDARD.decode(&image.data_base64)
                else {
                    return refuse(StatusCode::BAD_REQUEST, "an image is not valid base64");
                };
                match media::store(&app.config.data_dir, &bytes, &image.content_type) {
                    Ok(name) => names.push(name),
                    // Over the quota: the reply goes without it (waiting would hold the text
                    // up until old images expire).
                    Err(error) if error.kind() == std::io::ErrorKind::StorageFull => {
                        tracing::warn!("an image was left out: {error}");
                        left_out += 1;
                    }
                    Err(error) => {
                        tracing::error!("could not store an image: {error}");
                        return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again");
                    }
                }
            }
            let text = if left_out == 0 {
                callback.text.clone()
            } else {
                format!(
                    "{}\n\n({left_out} image(s) could not be kept to send: the relay's folder of outgoing images is full.)",
                    callback.text
                )
            };
            match app
                .journal
                .enqueue(&callback.id, &callback.conversation, &text, &names)
                .await
            {
                Ok(_) => {
                    app.outbox_wake.notify_one();
                    StatusCode::OK.into_response()
                }
                Err(error) => {
                    tracing::error!("could not queue a reply: {error}");
                    refuse(StatusCode::SERVICE_UNAVAILABLE, "try again")
                }
            }
        }
    }
}

/// The relay's own state, for anyone (the page, Fly's checks). It never touches the vm: a
/// request through Flycast would start the 2 GB machine, and this route is public. The page
/// reads the vm's state from the Machines API instead.
async fn health(State(app): State<Arc<App>>) -> Response {
    let (inbox, outbox) = app.journal.depth().unwrap_or((-1, -1));
    let writes = app.journal.write_totals();
    let body = serde_json::json!({
        "ok": true,
        "version": crate::VERSION,
        "uptime_secs": app.started.elapsed().as_secs(),
        "channels": app.config.channels(),
        "journal": {
            "waiting_for_vm": inbox,
            "waiting_for_channel": outbox,
            "writes": writes.writes,
            "commits": writes.commits,
            "synced_commits": writes.synced_commits,
        },
        "telegram_webhook": telegram_webhook_health(&app),
        "status_lines": app.status.live(),
        // Whether someone paired (never who): a deploy page can tell the code is spent.
        "paired": app.journal.pairing_done().unwrap_or(false),
        "discord_gateway": app.discord.as_ref().map(|d| d.status()),
    });
    (
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// The webhook's state, its detail (Telegram's answer) and since when (Unix ms).
fn telegram_webhook_health(app: &App) -> serde_json::Value {
    let (state, since_ms) = app
        .telegram_webhook
        .lock()
        .expect("webhook state lock")
        .clone();
    let mut value = serde_json::to_value(state).expect("the state serialises");
    value["since_ms"] = since_ms.into();
    value
}

async fn media_file(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let Some(path) = media::lookup(&app.config.data_dir, &name, media::SERVE_FOR) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such image (they expire after an hour)",
        );
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, media::content_type(&name))], bytes).into_response(),
        Err(_) => refuse(StatusCode::NOT_FOUND, "no such image"),
    }
}
