//! The credential checks the page makes before deploying (`provision::checks`, shared with
//! `textslash setup`), sent straight from the browser: api.telegram.org and Anthropic's API
//! answer CORS, and neither is the Machines API, so no forwarder is involved.

use provision::spec::Secret;
use provision::{HttpRequest, HttpResponse, Transport, TransportError};

/// The browser's fetch, as it is.
struct Direct;

impl Transport for Direct {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        crate::browser::fetch(request).await
    }
}

/// The bot's @username if the token works.
pub async fn telegram_bot(api_base: &str, token: &str) -> Result<String, String> {
    provision::checks::telegram_bot(&Direct, api_base, &Secret::new(token)).await
}

/// `Ok` if Anthropic accepts the key.
pub async fn anthropic_key(api_base: &str, key: &str) -> Result<(), String> {
    provision::checks::anthropic_key(&Direct, api_base, &Secret::new(key)).await
}
