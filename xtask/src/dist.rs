//! The page's release build: trunk into `dist/` (the first part, `wizard-wasm/src/main.rs`),
//! the rest of the page beside it (`src/bin/rest.rs`, through cargo, wasm-bindgen and wasm-opt
//! as trunk runs them, named in index.html for the first part to fetch), then the
//! Content-Security-Policy completed from what trunk wrote (the hashes of the inline scripts)
//! and from `config.json` (the origins the page may call), then a size report.

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
    inline_first_part(&dist)?;
    build_rest(root, &dist)?;
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

/// The few lines that unpack the first part's wasm from its data block in index.html and start
/// it (after trunk's wasm-bindgen glue, in the same inline module).
const START_FIRST_PART: &str = r#"
{ // A block of its own: the glue has top-level names of its own (`wasm` among them).
  const packed = document.querySelector('script[type="application/gzip"]').textContent;
  const gzipped = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const unpacked = new Blob([gzipped]).stream().pipeThrough(new DecompressionStream("gzip"));
  const module = new Response(unpacked, { headers: { "content-type": "application/wasm" } });
  await __wbg_init({ module_or_path: module });
}
"#;

/// Puts the page's first part inside `index.html`: trunk's wasm (gzipped, in base64, as a
/// data block), its wasm-bindgen glue and the stylesheet, in place of the loader script and
/// the links that named them. On a phone's link every request costs a round trip (0.56 s on
/// the page-load profile) before its first byte, so the home screen then needs one response
/// where it needed two; gzip in base64 costs about what gzip alone does, so the document
/// gzipped is barely larger than the files were. The Content-Security-Policy allows the
/// inline script and style by hash (`page-csp`); the data block is not a script the browser
/// runs.
fn inline_first_part(dist: &Path) -> anyhow::Result<()> {
    use base64::Engine;
    let index = dist.join("index.html");
    let mut html = std::fs::read_to_string(&index)?;
    // Each of trunk's tags for the first part: `<link rel="…" href="./file" …>` on one line.
    let tag_naming = |html: &str, rel: &str| -> anyhow::Result<(std::ops::Range<usize>, String)> {
        let start = html
            .find(&format!("<link rel=\"{rel}\" href=\"./"))
            .with_context(|| format!("trunk wrote no <link rel=\"{rel}\"> into dist/index.html"))?;
        let end = start + html[start..].find('>').context("an unclosed <link>")? + 1;
        let file = html[start..end]
            .split("href=\"./")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("a <link> without href")?;
        Ok((start..end, file.to_string()))
    };
    let (glue_tag, glue_file) = tag_naming(&html, "modulepreload")?;
    html.replace_range(glue_tag, "");
    let (wasm_tag, wasm_file) = tag_naming(&html, "preload")?;
    html.replace_range(wasm_tag, "");
    let (style_tag, style_file) = tag_naming(&html, "stylesheet")?;
    let css = std::fs::read_to_string(dist.join(&style_file))?;
    html.replace_range(style_tag, &format!("<style>{}</style>", css.trim()));

    let glue = std::fs::read_to_string(dist.join(&glue_file))?;
    anyhow::ensure!(
        glue.contains("async function __wbg_init(") && !glue.contains("</script"),
        "{glue_file} is not wasm-bindgen glue this build knows how to inline (is wasm-bindgen newer?)"
    );
    let wasm = std::fs::read(dist.join(&wasm_file))?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&wasm)?;
    let packed = base64::engine::general_purpose::STANDARD.encode(gzip.finish()?);
    let loader_start = html
        .find(&format!("import init, * as bindings from './{glue_file}';"))
        .and_then(|import| html[..import].rfind("<script type=\"module\">"))
        .context("trunk's loader script is not in dist/index.html")?;
    let loader_end = loader_start
        + html[loader_start..]
            .find("</script>")
            .context("an unclosed loader script")?
        + "</script>".len();
    html.replace_range(
        loader_start..loader_end,
        &format!(
            "<script type=\"application/gzip\">{packed}</script>\n<script type=\"module\">{glue}{START_FIRST_PART}</script>"
        ),
    );
    std::fs::write(&index, html)?;
    // The size report lists files; these are now inside index.html.
    println!("the first part, inside index.html (raw / gzip -9):");
    for file in [glue_file, wasm_file, style_file] {
        let bytes = std::fs::read(dist.join(&file))?;
        println!("  {file:<42} {:>10} {:>10}", bytes.len(), gzip_len(&bytes)?);
        std::fs::remove_file(dist.join(file))?;
    }
    Ok(())
}

/// The rest of the page: the `rest` binary built for the web as trunk builds the first part
/// (the same profile, wasm-bindgen `--target=web`, wasm-opt with index.html's parameters),
/// written to `dist/` under content-hashed names that `index.html` then names in two meta tags.
fn build_rest(root: &Path, dist: &Path) -> anyhow::Result<()> {
    const TARGET: &str = "wasm32-unknown-unknown";
    const PROFILE: &str = "wasm-release";
    let path = tools::path_with_tools(root);
    cmd::run(
        Command::new("cargo")
            .args([
                "build",
                "--offline",
                "--locked",
                "-p",
                "wizard-wasm",
                "--bin",
                "rest",
            ])
            .args(["--target", TARGET, "--profile", PROFILE])
            .env_remove("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER"),
    )?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let staging = target_dir.join("rest-bindgen");
    let _ = std::fs::remove_dir_all(&staging);
    cmd::run(
        Command::new("wasm-bindgen")
            .args(["--target=web", "--out-name=rest", "--no-typescript"])
            .arg(format!("--out-dir={}", staging.display()))
            .arg(target_dir.join(TARGET).join(PROFILE).join("rest.wasm"))
            .env("PATH", &path),
    )?;
    anyhow::ensure!(
        !staging.join("snippets").exists(),
        "the rest of the page has wasm-bindgen snippets; copy them into dist/ too"
    );
    let html = std::fs::read_to_string(root.join("index.html"))?;
    let opt_params = html
        .split("data-wasm-opt-params=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("index.html names no data-wasm-opt-params")?;
    cmd::run(
        Command::new("wasm-opt")
            .arg(format!(
                "--output={}",
                staging.join("rest_opt.wasm").display()
            ))
            .arg("-Oz")
            .arg(staging.join("rest_bg.wasm"))
            .args(opt_params.split_whitespace())
            .env("PATH", &path),
    )?;
    let js = std::fs::read(staging.join("rest.js"))?;
    let wasm = std::fs::read(staging.join("rest_opt.wasm"))?;
    let hash = format!("{:016x}", crate::build_cache::fnv1a(&[&js, &wasm]));
    let (js_name, wasm_name) = (format!("rest-{hash}.js"), format!("rest-{hash}_bg.wasm"));
    std::fs::write(dist.join(&js_name), js)?;
    std::fs::write(dist.join(&wasm_name), wasm)?;
    let index = dist.join("index.html");
    let page = std::fs::read_to_string(&index)?;
    let named = format!(
        "<meta name=\"textslash-rest\" content=\"{js_name}\"><meta name=\"textslash-rest-wasm\" content=\"{wasm_name}\"></head>"
    );
    anyhow::ensure!(page.contains("</head>"), "dist/index.html has no </head>");
    std::fs::write(&index, page.replacen("</head>", &named, 1))?;
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
