//! The page's release build: trunk into `dist/`, then the Content-Security-Policy completed
//! from what trunk wrote (the hash of its loader script) and from `config.json` (the origins
//! the page may call), then a size report.

use crate::cmd;
use crate::tools;
use anyhow::Context;
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
    std::fs::write(&index, page_csp::complete_csp(&html, &config)?)?;
    Ok(())
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
