//! The page's Content-Security-Policy. Static hosts cannot set headers, so the policy is a
//! `<meta>` tag in `index.html`, completed after the build from two things: the hash of every
//! inline script (trunk's loader; no nonce is possible on a static host) and the origins of
//! the endpoints named in `config.json`, so `connect-src` allows exactly what the page calls.
//!
//! `cargo xtask dist` writes it at build time; the end-to-end tests use it to serve the built
//! page with a `config.json` of their own, so the browser enforces the policy real users get.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The config keys whose URLs the page calls.
pub const ENDPOINT_KEYS: [&str; 4] = ["api_base", "app_url", "telegram_api", "anthropic_api"];

#[derive(Debug, thiserror::Error)]
pub enum CspError {
    #[error("index.html has {0}")]
    Html(&'static str),
    #[error("config.json names {0}, which is not an absolute http(s) URL")]
    Url(String),
}

/// Adds to the page's CSP the hash of every inline script (trunk's loader) and the origins
/// of the endpoints in `config` (API base, app URLs, Telegram and Anthropic APIs).
pub fn complete_csp(html: &str, config: &serde_json::Value) -> Result<String, CspError> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after_tag = &rest[start..];
        let open_end = after_tag
            .find('>')
            .ok_or(CspError::Html("an unclosed <script> tag"))?
            + 1;
        let close = after_tag
            .find("</script>")
            .ok_or(CspError::Html("a <script> without </script>"))?;
        let body = &after_tag[open_end..close];
        if !after_tag[..open_end].contains(" src=") {
            let digest = Sha256::digest(body.as_bytes());
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &after_tag[close..];
    }
    let mut origins = Vec::new();
    for key in ENDPOINT_KEYS {
        if let Some(url) = config.get(key).and_then(|v| v.as_str()) {
            let origin = origin_of(&url.replace("{app}", "*"))?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    let Some(csp_start) = html.find("http-equiv=\"Content-Security-Policy\" content=\"") else {
        return Err(CspError::Html("no Content-Security-Policy meta tag"));
    };
    let content_start = csp_start + "http-equiv=\"Content-Security-Policy\" content=\"".len();
    let content_end = content_start
        + html[content_start..]
            .find('"')
            .ok_or(CspError::Html("an unterminated Content-Security-Policy"))?;
    let policy = &html[content_start..content_end];
    let directives: Vec<String> = policy
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|directive| {
            let name = directive.split_whitespace().next().unwrap_or_default();
            match name {
                "script-src" => {
                    format!("script-src 'self' 'wasm-unsafe-eval' {}", hashes.join(" "))
                }
                "connect-src" => format!("connect-src 'self' {}", origins.join(" ")),
                _ => directive.to_string(),
            }
        })
        .collect();
    Ok(format!(
        "{}{}{}",
        &html[..content_start],
        directives.join("; ").trim(),
        &html[content_end..]
    ))
}

/// `https://x.fly.dev/path` → `https://x.fly.dev`; keeps a `*.` host wildcard.
fn origin_of(url: &str) -> Result<String, CspError> {
    let not_http = || CspError::Url(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(not_http)?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !(scheme == "https" || scheme == "http") {
        return Err(not_http());
    }
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::complete_csp;

    #[test]
    fn csp_gets_script_hash_and_config_origins() {
        let html = r#"<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; connect-src 'self'"><script type="module">init()</script><script src="./a.js"></script>"#;
        let config = serde_json::json!({"api_base": "http://127.0.0.1:4280", "app_url": "https://{app}.fly.dev"});
        let out = complete_csp(html, &config).unwrap();
        // sha256("init()") in base64.
        assert!(
            out.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"),
            "{out}"
        );
        assert_eq!(
            out.matches("'sha256-").count(),
            1,
            "external scripts are not hashed: {out}"
        );
        assert!(
            out.contains("connect-src 'self' http://127.0.0.1:4280 https://*.fly.dev\""),
            "{out}"
        );
        assert!(out.contains("default-src 'self'"));
    }
}
