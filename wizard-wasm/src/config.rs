//! The page's runtime configuration: `config.json` beside `index.html`, so a fork changes
//! images or the API base without rebuilding. Missing file or fields → built-in defaults.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// The Fly Machines API (or a CORS proxy in front of it).
    pub api_base: String,
    /// Where apps answer publicly; `{app}` is replaced by the app name.
    pub app_url: String,
    pub images: provision::spec::Images,
    /// The Telegram Bot API, for checking a bot token from the browser.
    pub telegram_api: String,
    /// The Anthropic API, for checking a key from the browser.
    pub anthropic_api: String,
    /// A same-origin forwarder to the Machines API (a path relative to the page, like
    /// `fly-api`), used when the browser refuses direct calls. `textslash serve` sets it.
    pub api_fallback: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_base: provision::spec::DEFAULT_API_BASE.into(),
            app_url: provision::spec::DEFAULT_APP_URL.into(),
            images: provision::spec::Images::default(),
            telegram_api: "https://api.telegram.org".into(),
            anthropic_api: "https://api.anthropic.com".into(),
            api_fallback: None,
        }
    }
}

impl Config {
    /// Parses `config.json`; anything unreadable falls back to the defaults, field by field.
    pub fn from_json(text: &str) -> Config {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// `config.json` next to the page: the copy `index.html` started fetching as the page
    /// opened (`textslashConfig`, so the rest of the page does not wait another round trip
    /// for it), or a fetch of its own.
    pub async fn load() -> Config {
        use wasm_bindgen::{JsCast, JsValue};
        let early = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("textslashConfig"))
            .ok()
            .and_then(|started| started.dyn_into::<js_sys::Promise>().ok());
        if let Some(started) = early {
            let text = wasm_bindgen_futures::JsFuture::from(started).await;
            if let Some(text) = text.ok().and_then(|text: JsValue| text.as_string()) {
                return Config::from_json(&text);
            }
        }
        match gloo_net::http::Request::get("config.json").send().await {
            Ok(response) if response.ok() => {
                Config::from_json(&response.text().await.unwrap_or_default())
            }
            _ => Config::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn missing_fields_take_defaults() {
        let config = Config::from_json(r#"{"api_base": "http://127.0.0.1:4280"}"#);
        assert_eq!(config.api_base, "http://127.0.0.1:4280");
        assert_eq!(config.app_url, "https://{app}.fly.dev");
        assert_eq!(Config::from_json("not json"), Config::default());
    }
}
