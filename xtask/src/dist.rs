//! The page's release build: trunk into `dist/`, then the Content-Security-Policy completed
//! from what trunk wrote (the hash of its loader script) and from `config.json` (the origins
//! the page may call), then a size report.

use crate::cmd;
use crate::tools;
use anyhow::{Context, bail};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Builds the page into `root/dist`. With `config`, that `config.json` replaces the default
/// one (the demo points the page at the sim).
pub fn build(root: &Path, config: Option<&serde_json::Value>) -> anyhow::Result<()> {
    // Trunk runs cargo offline, so everything must already be downloaded.
    cmd::run(Command::new("cargo").arg("fetch"))?;
    cmd::run(
        Command::new("trunk")
            .args(["build", "--release"])
            .env("PATH", tools::path_with_tools(root))
            // Keep trunk from inheriting a wasm test runner meant for `cargo test`.
            .env_remove("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER"),
    )?;
    let dist = root.join("dist");
    if let Some(config) = config {
        std::fs::write(
            dist.join("config.json"),
            serde_json::to_string_pretty(config)?,
        )?;
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dist.join("config.json")).context("reading dist/config.json")?,
    )
    .context("dist/config.json is not JSON")?;
    let index = dist.join("index.html");
    let html = std::fs::read_to_string(&index)?;
    std::fs::write(&index, complete_csp(&html, &config)?)?;
    Ok(())
}

/// Adds to the page's CSP the hash of every inline script (trunk's loader) and the origins
/// of the endpoints in `config` (API base, app URLs, Telegram and Anthropic APIs).
pub fn complete_csp(html: &str, config: &serde_json::Value) -> anyhow::Result<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after_tag = &rest[start..];
        let open_end = after_tag.find('>').context("unclosed <script> tag")? + 1;
        let close = after_tag
            .find("</script>")
            .context("<script> without </script>")?;
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
    for key in ["api_base", "app_url", "telegram_api", "anthropic_api"] {
        if let Some(url) = config.get(key).and_then(|v| v.as_str()) {
            let origin = origin_of(&url.replace("{app}", "*"))?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    let Some(csp_start) = html.find("http-equiv=\"Content-Security-Policy\" content=\"") else {
        bail!("index.html has no Content-Security-Policy meta tag");
    };
    let content_start = csp_start + "http-equiv=\"Content-Security-Policy\" content=\"".len();
    let content_end = content_start
        + html[content_start..]
            .find('"')
            .context("unterminated CSP")?;
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
fn origin_of(url: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("{url} is not an absolute URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || !(scheme == "https" || scheme == "http") {
        bail!("{url} is not an http(s) URL");
    }
    Ok(format!("{scheme}://{host}"))
}

/// Prints raw, gzip and brotli sizes of each file in `dist` and their totals.
pub fn print_size_report(dist: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dist)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    println!(
        "\n{:<44} {:>10} {:>10} {:>10}",
        "dist/", "raw", "gzip -9", "brotli 11"
    );
    let mut totals = [0usize; 3];
    for entry in entries.iter().filter(|e| e.path().is_file()) {
        let bytes = std::fs::read(entry.path())?;
        let sizes = [bytes.len(), gzip_len(&bytes)?, brotli_len(&bytes)?];
        println!(
            "{:<44} {:>10} {:>10} {:>10}",
            entry.file_name().to_string_lossy(),
            sizes[0],
            sizes[1],
            sizes[2]
        );
        for (total, size) in totals.iter_mut().zip(sizes) {
            *total += size;
        }
    }
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "total", totals[0], totals[1], totals[2]
    );
    Ok(())
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

fn brotli_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)?;
    Ok(out.len())
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
