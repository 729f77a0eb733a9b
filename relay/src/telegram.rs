//! Telegram's Bot API: the webhook's secret header, the update JSON, and the calls the relay
//! makes (setWebhook, sendMessage, sendChatAction, sendPhoto, getFile), and a question's inline
//! keyboard: its buttons' taps arrive as `callback_query` updates, which the relay answers
//! (`answerCallbackQuery`) and marks in the question's message (`editMessageText`).

use crate::SendError;
use crate::config::TelegramConfig;
use crate::twilio::classify;
use contract::protocol::{Channel, Conversation, Question, choice_token};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Constant-time check of `X-Telegram-Bot-Api-Secret-Token`.
pub fn secret_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| bool::from(expected.as_bytes().ct_eq(given.as_bytes())))
}

#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
    pub callback_query: Option<CallbackQuery>,
}

/// A tap on an inline keyboard button (Bot API, `CallbackQuery`): `data` is the button's
/// `callback_data`, `message` the message it hangs under (absent when it is too old).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    pub message: Option<Message>,
    pub data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub message_id: i64,
    pub from: Option<User>,
    pub chat: Chat,
    pub text: Option<String>,
    pub caption: Option<String>,
    #[serde(default)]
    pub photo: Vec<PhotoSize>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct PhotoSize {
    pub file_id: String,
}

/// What the relay takes from an update: a text or photo message in a private chat.
#[derive(Debug, PartialEq, Eq)]
pub struct Inbound {
    pub update_id: i64,
    /// `telegram:<user id>`, as in `ALLOWED_SENDERS`.
    pub sender: String,
    /// `telegram:<chat id>`: where replies go.
    pub conversation: String,
    pub text: String,
    /// The largest size of an attached photo.
    pub photo_file_id: Option<String>,
}

/// A tap on a question's button.
#[derive(Debug, PartialEq, Eq)]
pub struct Tap {
    /// Answered with `answerCallbackQuery`.
    pub query_id: String,
    /// `telegram:<user id>` of whoever tapped.
    pub sender: String,
    /// `telegram:<chat id>` of the question's message; `None` when Telegram left the message
    /// out (too old).
    pub conversation: Option<String>,
    pub message_id: Option<i64>,
    /// The question's text as shown, to mark it answered.
    pub shown_text: String,
    pub data: String,
}

/// What an update is to the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Message(Inbound),
    Tap(Tap),
}

/// Reads an update. `Err` for bodies that are not an update at all (→ 400); `Ok(None)` for
/// updates the relay ignores (edits, groups, stickers…).
pub fn parse_update(body: &[u8]) -> Result<Option<Incoming>, serde_json::Error> {
    let update: Update = serde_json::from_slice(body)?;
    if let Some(query) = update.callback_query {
        let message = query.message.as_ref();
        return Ok(Some(Incoming::Tap(Tap {
            query_id: query.id,
            sender: Conversation::id(Channel::Telegram, query.from.id),
            conversation: message.map(|m| Conversation::id(Channel::Telegram, m.chat.id)),
            message_id: message.map(|m| m.message_id),
            shown_text: message.and_then(|m| m.text.clone()).unwrap_or_default(),
            data: query.data.unwrap_or_default(),
        })));
    }
    let Some(message) = update.message else {
        return Ok(None);
    };
    let Some(from) = message.from else {
        return Ok(None);
    };
    if message.chat.kind != "private" {
        return Ok(None);
    }
    let photo_file_id = message.photo.last().map(|p| p.file_id.clone());
    let text = message.text.or(message.caption).unwrap_or_default();
    if text.is_empty() && photo_file_id.is_none() {
        return Ok(None);
    }
    Ok(Some(Incoming::Message(Inbound {
        update_id: update.update_id,
        sender: Conversation::id(Channel::Telegram, from.id),
        conversation: Conversation::id(Channel::Telegram, message.chat.id),
        text,
        photo_file_id,
    })))
}

fn method_url(config: &TelegramConfig, method: &str) -> String {
    format!("{}/bot{}/{method}", config.api_base, config.bot_token)
}

/// reqwest puts the URL (which holds the bot token) in its errors; never let it through.
fn unreachable(error: reqwest::Error) -> SendError {
    SendError::Retry {
        reason: format!("Telegram unreachable: {}", error.without_url()),
        after: None,
    }
}

async fn call(
    http: &reqwest::Client,
    config: &TelegramConfig,
    method: &str,
    body: serde_json::Value,
) -> Result<(), SendError> {
    let response = http
        .post(method_url(config, method))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    classify_telegram(response).await
}

/// Telegram's 429 carries `parameters.retry_after` in the body rather than a header.
async fn classify_telegram(response: reqwest::Response) -> Result<(), SendError> {
    if response.status().as_u16() != 429 {
        return classify(response, "Telegram").await;
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let after = body["parameters"]["retry_after"]
        .as_u64()
        .map(std::time::Duration::from_secs);
    Err(SendError::Retry {
        reason: "Telegram asked us to slow down".into(),
        after,
    })
}

/// Points the bot's webhook at this relay, with the secret Telegram will send back.
pub async fn set_webhook(
    http: &reqwest::Client,
    config: &TelegramConfig,
    public_url: &str,
) -> Result<(), SendError> {
    let body = serde_json::json!({
        "url": format!("{public_url}/webhook/telegram"),
        "secret_token": config.webhook_secret,
        // Taps on a question's buttons come as `callback_query` updates.
        "allowed_updates": ["message", "callback_query"],
    });
    match call(http, config, "setWebhook", body).await {
        // Telegram resolves the webhook's host when it is set, and a new relay's
        // `<app>.fly.dev` has no address until its IPs are allocated, which happens after the
        // machine starts: "400 Bad Request: bad webhook: Failed to resolve host". Worth waiting.
        Err(SendError::Permanent(reason)) if reason.contains("Failed to resolve host") => {
            Err(SendError::Retry {
                reason,
                after: None,
            })
        }
        other => other,
    }
}

/// Removes the bot's webhook (teardown), so Telegram stops calling a URL someone else could
/// claim once the app is gone.
pub async fn delete_webhook(
    http: &reqwest::Client,
    config: &TelegramConfig,
) -> Result<(), SendError> {
    call(
        http,
        config,
        "deleteWebhook",
        serde_json::json!({"drop_pending_updates": true}),
    )
    .await
}

/// `sendMessage`, returning the new message's `message_id` (to edit it later).
pub async fn send_text_for_id(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    text: &str,
) -> Result<i64, SendError> {
    let response = http
        .post(method_url(config, "sendMessage"))
        .json(&serde_json::json!({"chat_id": chat_id, "text": text}))
        .send()
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        classify_telegram(response).await?;
        return Err(SendError::Permanent("Telegram refused the message".into()));
    }
    let body: serde_json::Value = response.json().await.map_err(|_| SendError::Retry {
        reason: "Telegram's answer was cut short".into(),
        after: None,
    })?;
    body["result"]["message_id"]
        .as_i64()
        .ok_or_else(|| SendError::Permanent("Telegram's answer has no message_id".into()))
}

pub async fn send_text(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    text: &str,
) -> Result<(), SendError> {
    call(
        http,
        config,
        "sendMessage",
        serde_json::json!({"chat_id": chat_id, "text": text}),
    )
    .await
}

/// A question's text with one row of buttons, one per choice; each button's `callback_data`
/// (at most 64 bytes) is [`contract::protocol::choice_token`].
pub async fn send_with_buttons(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    text: &str,
    question: &Question,
) -> Result<(), SendError> {
    let buttons: Vec<serde_json::Value> = question
        .choices
        .iter()
        .map(|d| {
            serde_json::json!({"text": d.label(), "callback_data": choice_token(&question.id, *d)})
        })
        .collect();
    call(
        http,
        config,
        "sendMessage",
        serde_json::json!({
            "chat_id": chat_id,
            "text": text,
            "reply_markup": {"inline_keyboard": [buttons]},
        }),
    )
    .await
}

/// Ends the tapping client's spinner with a short word (`answerCallbackQuery`; Telegram wants
/// it for every tap, whatever became of it).
pub async fn answer_tap(
    http: &reqwest::Client,
    config: &TelegramConfig,
    query_id: &str,
    text: &str,
) -> Result<(), SendError> {
    call(
        http,
        config,
        "answerCallbackQuery",
        serde_json::json!({"callback_query_id": query_id, "text": text}),
    )
    .await
}

/// Replaces a message's text, without buttons (`editMessageText` with no `reply_markup`
/// removes an inline keyboard): a question marked answered, a status line moved on.
pub async fn edit_text(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    message_id: i64,
    text: &str,
) -> Result<(), SendError> {
    call(
        http,
        config,
        "editMessageText",
        serde_json::json!({"chat_id": chat_id, "message_id": message_id, "text": text}),
    )
    .await
}

pub async fn send_typing(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
) -> Result<(), SendError> {
    call(
        http,
        config,
        "sendChatAction",
        serde_json::json!({"chat_id": chat_id, "action": "typing"}),
    )
    .await
}

/// `sendPhoto`: "The photo must be at most 10 MB in size. The photo's width and height must
/// not exceed 10000 in total. Width and height ratio must be at most 20." (Bot API; see
/// docs/channels.md). Larger ones go as documents, which take files up to 50 MB.
pub const PHOTO_MAX_BYTES: usize = 10 * 1024 * 1024;
const PHOTO_MAX_SIDES: u64 = 10_000;
const PHOTO_MAX_RATIO: u64 = 20;

/// Whether Telegram would take `image` as a photo, judged from its size and header. An image
/// whose dimensions cannot be read is tried as a photo (Telegram's answer then decides).
pub fn fits_as_photo(image: &[u8]) -> bool {
    if image.len() > PHOTO_MAX_BYTES {
        return false;
    }
    let Some((width, height)) = crate::media::dimensions(image) else {
        return true;
    };
    let (w, h) = (u64::from(width), u64::from(height));
    w + h <= PHOTO_MAX_SIDES && w.max(h) <= PHOTO_MAX_RATIO * w.min(h).max(1)
}

/// Telegram's refusals of a photo that a document would get through
/// (`Bad Request: PHOTO_INVALID_DIMENSIONS`, `PHOTO_SAVE_FILE_INVALID` for size).
pub fn is_photo_refusal(reason: &str) -> bool {
    reason.contains("PHOTO_INVALID_DIMENSIONS") || reason.contains("PHOTO_SAVE_FILE_INVALID")
}

pub async fn send_photo(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    bytes: Vec<u8>,
    file_name: &str,
) -> Result<(), SendError> {
    upload(
        http,
        config,
        "sendPhoto",
        "photo",
        chat_id,
        bytes,
        file_name,
    )
    .await
}

pub async fn send_document(
    http: &reqwest::Client,
    config: &TelegramConfig,
    chat_id: &str,
    bytes: Vec<u8>,
    file_name: &str,
) -> Result<(), SendError> {
    upload(
        http,
        config,
        "sendDocument",
        "document",
        chat_id,
        bytes,
        file_name,
    )
    .await
}

async fn upload(
    http: &reqwest::Client,
    config: &TelegramConfig,
    method: &str,
    field: &'static str,
    chat_id: &str,
    bytes: Vec<u8>,
    file_name: &str,
) -> Result<(), SendError> {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string());
    let form = reqwest::multipart::Form::new()
        .text("chat_id", chat_id.to_string())
        .part(field, part);
    let response = http
        .post(method_url(config, method))
        .multipart(form)
        .send()
        .await
        .map_err(unreachable)?;
    classify_telegram(response).await
}

/// Downloads a file sent to the bot (`getFile`, then the file URL), at most `limit` bytes
/// and within [`media::INBOUND_TIMEOUT`], from the Bot API's own host only.
pub async fn download(
    http: &reqwest::Client,
    config: &TelegramConfig,
    file_id: &str,
    limit: usize,
) -> Result<Vec<u8>, SendError> {
    let response = http
        .post(method_url(config, "getFile"))
        .json(&serde_json::json!({"file_id": file_id}))
        .send()
        .await
        .map_err(unreachable)?;
    let body: serde_json::Value = response.json().await.map_err(unreachable)?;
    let Some(path) = body["result"]["file_path"].as_str() else {
        return Err(SendError::Permanent(
            "Telegram getFile returned no file_path".into(),
        ));
    };
    if let Some(size) = body["result"]["file_size"].as_u64()
        && size > limit as u64
    {
        return Err(SendError::Permanent(format!(
            "the file is larger than {} MB",
            limit >> 20
        )));
    }
    let url = format!("{}/file/bot{}/{path}", config.api_base, config.bot_token);
    let url = reqwest::Url::parse(&url)
        .map_err(|_| SendError::Permanent("Telegram's file path is not a URL".into()))?;
    let fetch = crate::media::BoundedFetch {
        allowed_hosts: vec![crate::media::host_of(&url)],
        max_bytes: limit,
        timeout: crate::media::INBOUND_TIMEOUT,
    };
    fetch.get(url, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_private_text_and_photo_messages() {
        let text = br#"{"update_id":7,"message":{"message_id":1,"from":{"id":42,"is_bot":false,"first_name":"A"},"chat":{"id":42,"type":"private"},"date":1,"text":"hello"}}"#;
        let Some(Incoming::Message(inbound)) = parse_update(text).unwrap() else {
            panic!()
        };
        assert_eq!(inbound.sender, "telegram:42");
        assert_eq!(inbound.text, "hello");
        let photo = br#"{"update_id":8,"message":{"from":{"id":42},"chat":{"id":42,"type":"private"},"caption":"look","photo":[{"file_id":"small","file_unique_id":"a","width":1,"height":1},{"file_id":"big","file_unique_id":"b","width":9,"height":9}]}}"#;
        let Some(Incoming::Message(inbound)) = parse_update(photo).unwrap() else {
            panic!()
        };
        assert_eq!(inbound.photo_file_id.as_deref(), Some("big"));
        assert_eq!(inbound.text, "look");
    }

    #[test]
    fn reads_a_tap_on_a_button_with_or_without_its_message() {
        // Bot API `Update.callback_query` (`CallbackQuery`: id, from, message, chat_instance,
        // data).
        let tap = br#"{"update_id":11,"callback_query":{"id":"q77","from":{"id":42,"is_bot":false,"first_name":"A"},"message":{"message_id":5,"chat":{"id":42,"type":"private"},"date":1,"text":"The agent asks to run `ls`."},"chat_instance":"c","data":"q:abc:a"}}"#;
        assert_eq!(
            parse_update(tap).unwrap(),
            Some(Incoming::Tap(Tap {
                query_id: "q77".into(),
                sender: "telegram:42".into(),
                conversation: Some("telegram:42".into()),
                message_id: Some(5),
                shown_text: "The agent asks to run `ls`.".into(),
                data: "q:abc:a".into(),
            }))
        );
        let old = br#"{"update_id":12,"callback_query":{"id":"q78","from":{"id":42},"chat_instance":"c"}}"#;
        let Some(Incoming::Tap(tap)) = parse_update(old).unwrap() else {
            panic!()
        };
        assert_eq!((tap.conversation, tap.data.as_str()), (None, ""));
        assert!(parse_update(br#"{"update_id":13,"callback_query":{"id":"q"}}"#).is_err());
    }

    #[test]
    fn ignores_what_it_does_not_handle_and_refuses_garbage() {
        let group = br#"{"update_id":9,"message":{"from":{"id":42},"chat":{"id":-5,"type":"group"},"text":"hi"}}"#;
        assert_eq!(parse_update(group).unwrap(), None);
        assert_eq!(
            parse_update(br#"{"update_id":10,"edited_message":{}}"#).unwrap(),
            None
        );
        assert!(parse_update(b"not json").is_err());
        assert!(parse_update(br#"{"message":{}}"#).is_err());
    }

    #[test]
    fn photos_telegram_would_refuse_are_recognised() {
        use crate::media::tests::png_header;
        assert!(fits_as_photo(&png_header(1280, 8000)));
        assert!(!fits_as_photo(&png_header(1280, 9000)), "sides over 10000");
        assert!(!fits_as_photo(&png_header(100, 2100)), "ratio over 20");
        let mut big = png_header(100, 100);
        big.resize(PHOTO_MAX_BYTES + 1, 0);
        assert!(!fits_as_photo(&big), "over 10 MB");
        assert!(fits_as_photo(b"unknown format"), "Telegram decides");
        assert!(is_photo_refusal(
            "Telegram answered 400 Bad Request: Bad Request: PHOTO_INVALID_DIMENSIONS"
        ));
    }

    #[test]
    fn secret_check() {
        assert!(secret_matches("abc", Some("abc")));
        assert!(!secret_matches("abc", Some("abd")));
        assert!(!secret_matches("abc", Some("ab")));
        assert!(!secret_matches("abc", None));
    }
}
