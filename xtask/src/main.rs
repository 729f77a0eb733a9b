//! `cargo xtask`: the project's two commands and their helpers, in Rust so they run the same
//! on every machine with nothing but cargo.
//!
//! - `cargo xtask test`: install what is missing, then fmt, clippy, every test, the page's
//!   release build and the browser tests; one summary line at the end.
//! - `cargo xtask demo`: the whole system on this machine (the sim plays Fly, Telegram, Twilio).
//! - `cargo xtask dist`: the page's release build into `dist/` with a size report.
//! - `cargo xtask page-load`: that, then the time until the page works on a slow phone.
//! - `cargo xtask npm`: the npm packages that carry the `textslash` binary.
//!
//! # Layout
//! - [`build_cache`]: where `test` keeps build outputs between clones.
//! - [`cmd`]: running programs, timing steps, counting test results.
//! - [`tools`]: idempotent installs of the toolchain pieces.
//! - [`dist`]: trunk build, the Content-Security-Policy, sizes.
//! - [`npm`]: the launcher package and one package per platform, packed.
//! - [`test`] and [`demo`]: the two commands.

mod build_cache;
mod cmd;
mod demo;
mod dist;
mod npm;
mod test;
mod tools;

use std::path::{Path, PathBuf};

const USAGE: &str = "usage: cargo xtask <test|demo|dist|page-load|npm|musl|install>

  test     install missing tools, then fmt, clippy, all tests, page build, browser tests
  demo     build everything and run the whole system locally on the sim
  dist     release build of the page into dist/ and a size report
  page-load  the page's sizes, then how soon it works on a slow phone (Chromium, loopback)
  npm      pack the npm packages (--binary <target>=<path>..., --out <dir>; default: this
           machine's static release build into target/npm) and print their sizes
  musl     build the relay as a static musl binary (what its image ships) and print its size
  install  only install the missing tools";

fn main() -> anyhow::Result<()> {
    build_cache::forget_the_package_cargo_ran();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test::run(&root),
        Some("demo") => demo::run(&root),
        Some("page-load") => test::page_load(&root),
        Some("npm") => npm::run(&root, &args[1..]),
        Some("dist") => {
            tools::ensure_page_tools(&root, &mut cmd::Timings::default())?;
            dist::build(&root, None)?;
            dist::print_size_report(&root.join("dist"))
        }
        Some("musl") => {
            let mut timings = cmd::Timings::default();
            tools::ensure_musl(&mut timings)?;
            cmd::run(std::process::Command::new("cargo").args([
                "build",
                "--release",
                "-p",
                "relay",
                "--bin",
                "relay",
                "--target",
                tools::MUSL_TARGET,
            ]))?;
            let binary = root
                .join("target")
                .join(tools::MUSL_TARGET)
                .join("release/relay");
            let bytes = std::fs::metadata(&binary)?.len();
            println!(
                "relay for {}: {bytes} bytes ({:.1} MiB); the distroless/static base adds about 2 MiB",
                tools::MUSL_TARGET,
                bytes as f64 / 1048576.0
            );
            Ok(())
        }
        Some("install") => {
            let mut timings = cmd::Timings::default();
            tools::ensure_all(&root, &mut timings)?;
            timings.print();
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// The workspace root: xtask's manifest lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}
