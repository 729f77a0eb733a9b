//! Credential checks the browser can make before deploying: a Telegram bot token with
//! `getMe` (api.telegram.org answers CORS) and an Anthropic key with the models endpoint (with
//! Anthropic's header for direct browser access). Twilio has no CORS; the relay checks it
//! after deploy. Errors are sentences; they never repeat the credential.

use gloo_net::http::Request;

/// The bot's @username if the token works.
pub async fn telegram_bot(api_base: &str, token: &str) -> Result<String, String> {
    let url = format!(
        "{}/bot{}/getMe",
        api_base.trim_end_matches('/'),
        token.trim()
    );
    let response = Request::get(&url).send().await.map_err(|_| {
        "Telegram could not be reached from this page. Check your connection and try again."
            .to_string()
    })?;
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body["result"]["username"].as_str() {
        Some(name) if body["ok"] == true => Ok(format!("@{name}")),
        _ => Err("Telegram did not accept that bot token. Copy it again from @BotFather (/mybots → API Token).".into()),
    }
}

/// `Ok` if Anthropic accepts the key.
pub async fn anthropic_key(api_base: &str, key: &str) -> Result<(), String> {
    let url = format!("{}/v1/models", api_base.trim_end_matches('/'));
    let response = Request::get(&url)
        .header("x-api-key", key.trim())
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-dangerous-direct-browser-access", "true")
        .send()
        .await
        .map_err(|_| {
            "Anthropic could not be reached from this page. Check your connection.".to_string()
        })?;
    match response.status() {
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
