//! Installing textslash the ways a person would, with nothing from the internet: the npm
//! packages (`npx textslash`, `npm i -g textslash`) from local tarballs with npm offline, and
//! `curl … | sh` against a local file server standing in for a GitHub Release.
//!
//! The packages are made by the same code as a release's (`cargo xtask npm`), from this
//! build's binary; the release archive is laid out as dist lays it out.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The target a release builds for this machine (dist-workspace.toml), which install.sh
/// picks from `uname` and under which this build's binary is packed here.
fn release_target() -> String {
    let os = match std::env::consts::OS {
        "linux" => "unknown-linux-musl",
        "macos" => "apple-darwin",
        other => panic!("no install test for {other}"),
    };
    format!("{}-{os}", std::env::consts::ARCH)
}

/// `cargo xtask npm` with this build's binary: the tarballs, platform package first.
fn packed(out: &Path) -> Vec<PathBuf> {
    let status = common::cargo()
        .args(["run", "--quiet", "-p", "xtask", "--", "npm", "--binary"])
        .arg(format!(
            "{}={}",
            release_target(),
            env!("CARGO_BIN_EXE_textslash")
        ))
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "cargo xtask npm failed");
    let mut tarballs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "tgz"))
        .collect();
    // textslash-cli-<platform>-<v>.tgz before textslash-<v>.tgz.
    tarballs.sort_by_key(|path| std::cmp::Reverse(path.file_name().unwrap().len()));
    tarballs
}

/// npm with nothing from outside: offline, its cache and home in `dir`.
fn npm_env(dir: &Path) -> Vec<(String, String)> {
    let cache = dir.join("npm-cache").display().to_string();
    [
        ("HOME", dir.display().to_string()),
        ("npm_config_cache", cache),
        ("npm_config_offline", "true".into()),
        ("npm_config_audit", "false".into()),
        ("npm_config_fund", "false".into()),
        ("npm_config_update_notifier", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn npx_textslash_runs_from_the_npm_packages_offline() {
    let dir = tempfile::tempdir().unwrap();
    let tarballs = packed(&dir.path().join("packages"));
    let [platform, main] = &tarballs[..] else {
        panic!("two packages: {tarballs:?}")
    };
    // The package people install is only the launcher: no binary, no install script.
    assert!(std::fs::metadata(main).unwrap().len() < 8 * 1024);
    let listing = run(Command::new("tar")
        .arg("-xzOf")
        .arg(main)
        .arg("package/package.json"));
    let manifest: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(manifest["version"], VERSION);
    assert!(manifest.get("scripts").is_none(), "{manifest}");

    // `npx textslash`: npx installs the package (here the tarballs, as the registry would give
    // them) and runs its command; npm picks the platform package by its os and cpu.
    let npx = format!(
        "npx --yes --package {} --package {} textslash",
        platform.display(),
        main.display()
    );
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let env = npm_env(dir.path());
    let version = run(Command::new("sh")
        .args(["-c", &format!("{npx} --version")])
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(k, v)| (k, v))));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("textslash {VERSION}\n")
    );

    // `npm i -g textslash` into a prefix of its own puts `textslash` on that prefix's PATH.
    let prefix = dir.path().join("global");
    run(Command::new("npm")
        .args(["install", "--global", "--prefix"])
        .arg(&prefix)
        .args([platform, main])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(k, v)| (k, v))));
    let version = run(Command::new(prefix.join("bin/textslash")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("textslash {VERSION}\n")
    );
    // The binary's exit code comes through the launcher (2: bad usage).
    let usage = Command::new(prefix.join("bin/textslash"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));

    // Without its platform package (optional dependencies turned off), the launcher says so.
    let bare = dir.path().join("bare");
    run(Command::new("npm")
        .args(["install", "--global", "--omit=optional", "--prefix"])
        .arg(&bare)
        .arg(main)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(k, v)| (k, v))));
    let missing = Command::new(bare.join("bin/textslash"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(
            "is not installed. npm leaves it out when optional dependencies are turned off"
        ),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // `npx textslash setup` on a terminal, through the launcher: the same conversation as the
    // binary's own, against the sim.
    let (sim, _sim_dir) = common::terminal::sim().await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::terminal::setup_deploys(&sim, &format!("cd {} && {npx}", work.display()), &env).await;
}

/// A file server standing in for `https://github.com/<owner>/<repo>/releases`: files under
/// `download/v<version>/`, and `latest/download/<file>` answered with a redirect to the newest
/// release's file, as GitHub answers it (302 to the versioned asset).
async fn releases(folder: PathBuf, newest: &'static str) -> String {
    use axum::extract::Path as UrlPath;
    use axum::response::Redirect;
    let router = axum::Router::new()
        .route(
            "/latest/download/{file}",
            axum::routing::get(move |UrlPath(file): UrlPath<String>| async move {
                Redirect::to(&format!("/download/v{newest}/{file}"))
            }),
        )
        .fallback_service(tower_http::services::ServeDir::new(folder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// A release's archive for `target` in `folder/download/v<version>/`, as dist makes it:
/// `textslash-<target>.tar.gz` holding `textslash-<target>/textslash`, and its `.sha256`
/// (`<hex> *<file>`). `tamper` publishes a checksum of other bytes.
fn release(folder: &Path, version: &str, target: &str, tamper: bool) {
    let assets = folder.join("download").join(format!("v{version}"));
    let root = format!("textslash-{target}");
    let staging = folder.join("staging").join(version);
    std::fs::create_dir_all(staging.join(&root)).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_textslash"),
        staging.join(&root).join("textslash"),
    )
    .unwrap();
    std::fs::write(staging.join(&root).join("README.md"), "textslash\n").unwrap();
    let archive = format!("{root}.tar.gz");
    run(Command::new("tar")
        .arg("-czf")
        .arg(assets.join(&archive))
        .arg("-C")
        .arg(&staging)
        .arg(&root));
    let summed = if tamper {
        std::fs::write(staging.join("other"), "other bytes").unwrap();
        staging.join("other")
    } else {
        assets.join(&archive)
    };
    let sum = run(Command::new("sha256sum").arg(&summed));
    let hex = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        assets.join(format!("{archive}.sha256")),
        format!("{hex} *{archive}\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_sh_installs_a_release_it_checked() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("releases");
    let target = release_target();
    release(&folder, VERSION, &target, false);
    release(&folder, "9.9.9", &target, true);
    std::fs::copy(
        common::workspace().join("install.sh"),
        folder.join("install.sh"),
    )
    .unwrap();
    let url = releases(folder, VERSION).await;
    let bin = dir.path().join("home/.local/bin");
    let install = |version: Option<&str>| {
        let mut command = Command::new("sh");
        command
            // The line the README gives, against the local server.
            .args(["-c", &format!("curl -fsSL {url}/install.sh | sh")])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path().join("home"))
            .env("TEXTSLASH_DOWNLOAD_URL", &url);
        if let Some(version) = version {
            command.env("TEXTSLASH_VERSION", version);
        }
        command.output().unwrap()
    };

    // A tampered archive is refused and nothing is installed.
    let refused = install(Some("9.9.9"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("does not match its published SHA-256 checksum; nothing was installed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!bin.join("textslash").exists());

    // The newest release, through GitHub's `latest` redirect.
    let installed = install(None);
    let said = String::from_utf8_lossy(&installed.stdout);
    assert!(
        installed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(
        said.contains(&format!("/latest/download/textslash-{target}.tar.gz"))
            && said.contains(&format!(
                "Installed textslash {VERSION} to {}",
                bin.join("textslash").display()
            ))
            && said.contains("to your PATH"),
        "{said}"
    );
    let version = run(Command::new(bin.join("textslash")).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("textslash {VERSION}\n")
    );
    // Run again, it replaces the command in place.
    assert!(install(Some(VERSION)).status.success());

    // A version that was never released is named, and the installed command stays.
    let missing = install(Some("0.0.0"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("could not download"));
    assert!(bin.join("textslash").exists());
}
