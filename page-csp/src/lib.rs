//! The page's Content-Security-Policy. Static hosts cannot set headers, so the policy is a
//! `<meta>` tag in `index.html`, completed after the build from two things: the hash of every
//! inline script and style (the first part of the page is inline; no nonce is possible on a
//! static host) and the origins of
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

/// Adds to the page's CSP the hash of every inline script and style (the page's first part is
/// carried inline: see `xtask/src/dist.rs`) and the origins of the endpoints in `config` (API
/// base, app URLs, Telegram and Anthropic APIs). Data blocks (`<script type="application/…">`)
/// are not run, so not hashed.
pub fn complete_csp(html: &str, config: &serde_json::Value) -> Result<String, CspError> {
    let script_hashes = inline_hashes(html, "script", |open_tag| {
        // Scripts the browser runs: not loaded from a file, not a data block.
        !open_tag.contains(" src=")
            && ["", "module", "text/javascript"].contains(&attribute(open_tag, "type"))
    })?;
    let style_hashes = inline_hashes(html, "style", |_| true)?;
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
                "script-src" => format!(
                    "script-src 'self' 'wasm-unsafe-eval' {}",
                    script_hashes.join(" ")
                ),
                "style-src" => format!("style-src 'self' {}", style_hashes.join(" ")),
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

/// The CSP hash of the body of every `<tag>` element whose opening tag `counts`.
fn inline_hashes(
    html: &str,
    tag: &str,
    counts: impl Fn(&str) -> bool,
) -> Result<Vec<String>, CspError> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let element = &rest[start..];
        let open_end = element.find('>').ok_or(CspError::Html("an unclosed tag"))? + 1;
        let close_at = element
            .find(&close)
            .ok_or(CspError::Html("an element without its closing tag"))?;
        if counts(&element[..open_end]) {
            let digest = Sha256::digest(&element.as_bytes()[open_end..close_at]);
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &element[close_at..];
    }
    Ok(hashes)
}

/// The value of `name="…"` in an opening tag; empty when it has none.
fn attribute<'t>(open_tag: &'t str, name: &str) -> &'t str {
    open_tag
        .split(&format!(" {name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
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

    #[test]
    fn inline_styles_are_hashed_and_data_blocks_are_not() {
        let html = r#"<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self'; style-src 'self'"><style>main{margin:0}</style><script type="application/gzip">H4sIAAAA</script><script type="module">start()</script>"#;
        let out = complete_csp(html, &serde_json::json!({})).unwrap();
        let directive = |name: &str| {
            out.split(';')
                .map(str::trim)
                .find(|d| d.starts_with(name))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            directive("script-src").matches("'sha256-").count(),
            1,
            "only the module script: {out}"
        );
        assert_eq!(
            directive("style-src").matches("'sha256-").count(),
            1,
            "the inline style: {out}"
        );
    }
}
