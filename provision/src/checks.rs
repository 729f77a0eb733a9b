//! Credential checks made before deploying, by the page and by `textslash setup` alike: a
//! Telegram bot token with `getMe` (api.telegram.org answers CORS) and an Anthropic key with
//! the models endpoint (with Anthropic's header for direct browser access, which a native
//! client may send too). Twilio has no CORS; the relay checks it after deploy. The answers are
//! sentences that never repeat the credential; the URL that carries the bot token is never
//! put into one.

use crate::spec::Secret;
use crate::transport::{HttpRequest, Method, Transport};

/// The bot's `@username` if Telegram accepts the token.
pub async fn telegram_bot(
    transport: &impl Transport,
    api_base: &str,
    token: &Secret,
) -> Result<String, String> {
    let request = HttpRequest {
        method: Method::Get,
        url: format!(
            "{}/bot{}/getMe",
            api_base.trim_end_matches('/'),
            token.expose().trim()
        ),
        headers: vec![],
        body: None,
    };
    let response = transport.send(request).await.map_err(|_| {
        "Telegram could not be reached. Check your connection and try again.".to_string()
    })?;
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap_or_default();
    match body["result"]["username"].as_str() {
        Some(name) if body["ok"] == true => Ok(format!("@{name}")),
        _ => Err("Telegram did not accept that bot token. Copy it again from @BotFather (/mybots → API Token).".into()),
    }
}

/// `Ok` if Anthropic accepts the key.
pub async fn anthropic_key(
    transport: &impl Transport,
    api_base: &str,
    key: &Secret,
) -> Result<(), String> {
    let request = HttpRequest {
        method: Method::Get,
        url: format!("{}/v1/models", api_base.trim_end_matches('/')),
        headers: vec![
            ("x-api-key".into(), key.expose().trim().to_string()),
            ("anthropic-version".into(), "2023-06-01".into()),
            (
                "anthropic-dangerous-direct-browser-access".into(),
                "true".into(),
            ),
        ],
        body: None,
    };
    let response = transport.send(request).await.map_err(|_| {
        "Anthropic could not be reached. Check your connection and try again.".to_string()
    })?;
    match response.status {
        200 => Ok(()),
        401 | 403 => Err(
            "Anthropic did not accept that key. Create one at console.anthropic.com → API keys."
                .into(),
        ),
        status => Err(format!(
            "Anthropic answered {status}; try again in a minute."
        )),
    }
}
