//! textslash on a pseudo-terminal, as a person runs it: util-linux `script` between the test
//! and the program, and `setup`'s whole conversation, shared by the binary's own test and the
//! npm packages' (`install.rs`).

use sim::{Program, SimConfig, SimHandle};
use std::time::Duration;

/// The real relay (teardown runs its `unregister-webhook` in the machine); an echo vm.
pub async fn sim() -> (SimHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::new(dir.path().to_path_buf());
    let (relay, _, _) = super::machine_binaries();
    config.images.rules = vec![
        ("relay".into(), Program::Path(relay)),
        ("vm".into(), Program::Echo),
    ];
    (
        sim::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
        dir,
    )
}

/// A terminal for `textslash`: util-linux `script` runs it on a pseudo-terminal and passes
/// what the test types to it, and what it shows back.
pub struct Terminal {
    pub script: tokio::process::Child,
    typed: tokio::process::ChildStdin,
    shown: tokio::process::ChildStdout,
    pub screen: String,
}

impl Terminal {
    pub fn start(command: &str, env: &[(&str, &str)]) -> Terminal {
        let mut script = tokio::process::Command::new("script")
            .args(["-q", "-f", "-e", "-c", command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERM", "dumb")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("util-linux script");
        Terminal {
            typed: script.stdin.take().unwrap(),
            shown: script.stdout.take().unwrap(),
            script,
            screen: String::new(),
        }
    }

    /// Reads the screen until `needle` shows after `from`; where it ends.
    pub async fn shows(&mut self, needle: &str, from: usize) -> usize {
        use tokio::io::AsyncReadExt;
        let wait = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(at) = self.screen[from..].find(needle) {
                return from + at + needle.len();
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(wait, self.shown.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!("the terminal never showed {needle:?}:\n{}", self.screen)
                })
                .unwrap();
            assert!(
                read > 0,
                "the terminal closed before {needle:?}:\n{}",
                self.screen
            );
            self.screen
                .push_str(&String::from_utf8_lossy(&chunk[..read]));
        }
    }

    pub async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.typed
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.typed.flush().await.unwrap();
    }

    /// Waits until `textslash` reads the terminal itself (`/dev/tty`, not its stdin: what a
    /// hidden prompt does once echo is off), seen in its `/proc/<pid>/syscall`: read(2) on a
    /// descriptor other than 0.
    pub async fn waits_for_a_hidden_answer(&self) {
        let script = self.script.id().unwrap();
        super::eventually(
            "a hidden prompt reading the terminal",
            Duration::from_secs(30),
            async || {
                // `script` runs it through a shell, which may or may not exec it.
                let mut pid = script.to_string();
                let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm"));
                while comm(&pid).ok()?.trim() != "textslash" {
                    let children =
                        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
                    pid = children.split_whitespace().next()?.to_string();
                }
                let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
                let mut fields = syscall.split_whitespace();
                let (number, fd) = (fields.next()?, fields.next()?);
                (number == "0" && fd != "0x0").then_some(())
            },
        )
        .await;
    }
}

/// `setup` on a terminal, answered as a person would: `program` is how the test starts
/// textslash (the binary, or `npx textslash` from the npm packages), `env` what that needs.
/// A wrong name is named and asked again, the secrets are typed only once the terminal stopped
/// echoing (a malformed bot token asked again), none of them ever shows, the deploy ends with
/// the pairing link and the sim has both apps.
pub async fn setup_deploys(sim: &SimHandle, program: &str, env: &[(&str, &str)]) {
    let telegram_api = format!("{}/telegram", sim.base_url());
    let anthropic_api = format!("{}/anthropic", sim.base_url());
    let mut terminal = Terminal::start(
        &format!(
            "{program} setup --api-url {} --app-url {}",
            sim.base_url(),
            sim.app_url_template()
        ),
        &[
            // Where setup checks the bot token and the key: the sim's Telegram and Anthropic.
            &[
                ("TEXTSLASH_TELEGRAM_API", telegram_api.as_str()),
                ("TEXTSLASH_ANTHROPIC_API", anthropic_api.as_str()),
            ][..],
            env,
        ]
        .concat(),
    );
    let mut at = terminal.shows("Name for this deployment", 0).await;
    // A wrong answer is named and asked again.
    terminal.type_line("My Agent").await;
    at = terminal.shows("only lowercase letters", at).await;
    at = terminal.shows("Name for this deployment", at).await;
    terminal.type_line("tty").await;
    at = terminal.shows("Fly region [iad]", at).await;
    terminal.type_line("").await;
    at = terminal
        .shows("telegram, whatsapp or discord? [telegram]", at)
        .await;
    terminal.type_line("telegram").await;
    at = terminal.shows("[Y/n]", at).await;
    terminal.type_line("").await;
    // The secrets: typed once the terminal stopped echoing; a malformed token asked again.
    at = terminal
        .shows("Telegram bot token (TELEGRAM_BOT_TOKEN): ", at)
        .await;
    terminal.waits_for_a_hidden_answer().await;
    terminal.type_line("not-a-bot-token").await;
    at = terminal
        .shows("paste the whole token @BotFather gave you", at)
        .await;
    at = terminal
        .shows("Telegram bot token (TELEGRAM_BOT_TOKEN): ", at)
        .await;
    terminal.waits_for_a_hidden_answer().await;
    terminal.type_line(sim::SIM_TELEGRAM_BOT).await;
    at = terminal
        .shows("Anthropic API key (ANTHROPIC_API_KEY): ", at)
        .await;
    terminal.waits_for_a_hidden_answer().await;
    terminal.type_line(sim::SIM_ANTHROPIC_KEY).await;
    at = terminal.shows("Fly org token (FLY_API_TOKEN): ", at).await;
    terminal.waits_for_a_hidden_answer().await;
    terminal.type_line("sim-token").await;
    at = terminal
        .shows("Deployed tty-relay and tty-vm in iad.", at)
        .await;
    // The pairing link names the bot Telegram said the token is.
    terminal
        .shows("https://t.me/textslash_sim_bot?start=", at)
        .await;
    let status = tokio::time::timeout(Duration::from_secs(30), terminal.script.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{}", terminal.screen);
    let screen = terminal.screen.clone();
    // What a person typed in the open shows; no secret ever does.
    assert!(
        screen.contains("My Agent") && screen.contains("tty"),
        "{screen}"
    );
    for secret in [
        "not-a-bot-token",
        sim::SIM_TELEGRAM_BOT,
        sim::SIM_ANTHROPIC_KEY,
        "sim-token",
    ] {
        assert!(!screen.contains(secret), "{secret} was echoed:\n{screen}");
    }
    let state = sim.state();
    assert_eq!(state["apps"].as_array().unwrap().len(), 2, "{state}");
}
