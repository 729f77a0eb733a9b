//! The `textslash` binary, run as a user would, against the sim on loopback.

mod common;

use serde_json::Value;
use sim::SimHandle;
use std::process::Output;

async fn sim() -> (SimHandle, tempfile::TempDir) {
    common::terminal::sim().await
}

async fn textslash(sim: &SimHandle, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_textslash"));
    command
        .args(args)
        .args([
            "--api-url",
            sim.base_url(),
            "--app-url",
            &sim.app_url_template(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    command.output().await.unwrap()
}

const TELEGRAM: [(&str, &str); 3] = [
    ("FLY_API_TOKEN", "sim-token"),
    // The bot the sim's Telegram knows, so the real relay can register its webhook.
    ("TELEGRAM_BOT_TOKEN", sim::SIM_TELEGRAM_BOT),
    ("ANTHROPIC_API_KEY", "sk-ant-cli-test"),
];

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn dump(sim: &SimHandle) -> Value {
    sim.state()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_status_teardown_from_a_terminal() {
    let (sim, _dir) = sim().await;
    let images = ["--relay-image", "t/relay:1", "--vm-image", "t/vm:1"];

    let deploy = textslash(
        &sim,
        &[
            &[
                "deploy",
                "--prefix",
                "cli",
                "--region",
                "ams",
                "--allow",
                "telegram:42",
                "--json",
            ][..],
            &images,
        ]
        .concat(),
        &TELEGRAM,
    )
    .await;
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    let lines = json_lines(&deploy);
    assert!(
        lines
            .iter()
            .any(|l| l["event"]["step"] == "health" && l["event"]["state"] == "done")
    );
    let result = lines.last().unwrap();
    assert_eq!(result["deployment"]["relay_app"], "cli-relay");
    let calls = result["api_calls"].as_u64().unwrap();
    assert!(
        (20..=40).contains(&calls),
        "a deploy takes about 25 API calls, took {calls}"
    );
    let all_output = format!(
        "{}{}",
        String::from_utf8_lossy(&deploy.stdout),
        String::from_utf8_lossy(&deploy.stderr)
    );
    assert!(!all_output.contains("sk-ant-cli-test") && !all_output.contains(sim::SIM_TELEGRAM_BOT));

    // Plain progress when stderr is not a terminal.
    let status = textslash(&sim, &["status", "--prefix", "cli"], &TELEGRAM).await;
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("cli-vm:") && text.contains("started") && text.contains("relay health: ok"),
        "{text}"
    );

    common::eventually(
        "the relay to register its webhook",
        std::time::Duration::from_secs(30),
        async || sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
    )
    .await;

    // Teardown off a terminal needs --yes, and changes nothing without it.
    let refused = textslash(&sim, &["teardown", "--prefix", "cli"], &TELEGRAM).await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(dump(&sim).await["apps"].as_array().unwrap().len(), 2);
    let teardown = textslash(&sim, &["teardown", "--prefix", "cli", "--yes"], &TELEGRAM).await;
    assert!(
        teardown.status.success(),
        "{}",
        String::from_utf8_lossy(&teardown.stderr)
    );
    assert!(String::from_utf8_lossy(&teardown.stdout).contains("nothing is left"));
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));
    assert_eq!(
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
        None,
        "the bot's webhook went with the relay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_on_a_terminal_asks_hides_the_secrets_and_deploys() {
    let (sim, _dir) = sim().await;
    common::terminal::setup_deploys(&sim, env!("CARGO_BIN_EXE_textslash"), &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_checked_first_create_nothing_when_refused() {
    let (sim, _dir) = sim().await;
    let telegram_api = format!("{}/telegram", sim.base_url());
    let anthropic_api = format!("{}/anthropic", sim.base_url());
    let check = |bot: &'static str, key: &'static str| {
        [
            ("FLY_API_TOKEN", "sim-token"),
            ("TELEGRAM_BOT_TOKEN", bot),
            ("ANTHROPIC_API_KEY", key),
        ]
    };
    let args = [
        "deploy",
        "--prefix",
        "chk",
        "--check-credentials",
        "--telegram-api",
        &telegram_api,
        "--anthropic-api",
        &anthropic_api,
    ];
    for (env, said) in [
        (
            check(
                "123456:AAnotTheSimBotButWellFormed_000000000",
                sim::SIM_ANTHROPIC_KEY,
            ),
            "Telegram did not accept that bot token",
        ),
        (
            check(sim::SIM_TELEGRAM_BOT, "sk-ant-not-this-one"),
            "Anthropic did not accept that key",
        ),
    ] {
        let refused = textslash(&sim, &args, &env).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!stderr.contains("sk-ant-not-this-one") && !stderr.contains("AAnotTheSimBot"));
        assert_eq!(
            dump(&sim).await["apps"],
            serde_json::json!([]),
            "nothing created"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_and_failures_exit_1_with_a_sentence() {
    let (sim, _dir) = sim().await;
    // A missing secret names the variable, and nothing is created.
    let missing = textslash(
        &sim,
        &["deploy", "--prefix", "x", "--allow", "telegram:1"],
        &[("FLY_API_TOKEN", "sim-token")],
    )
    .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("TELEGRAM_BOT_TOKEN is not set"));

    let bad_prefix = textslash(&sim, &["deploy", "--prefix", "Bad_Name"], &TELEGRAM).await;
    assert_eq!(bad_prefix.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_prefix.stderr).contains("prefix:"));

    let unknown_flag = textslash(&sim, &["deploy", "--nope"], &TELEGRAM).await;
    assert_eq!(unknown_flag.status.code(), Some(2));

    let bad_token = [("FLY_API_TOKEN", "wrong"), TELEGRAM[1], TELEGRAM[2]];
    let rejected = textslash(
        &sim,
        &[
            "deploy",
            "--prefix",
            "x",
            "--relay-image",
            "r/relay",
            "--vm-image",
            "r/vm",
        ],
        &bad_token,
    )
    .await;
    assert_eq!(rejected.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        stderr.contains("fly tokens create org") && !stderr.contains("wrong"),
        "{stderr}"
    );
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));

    // A deploy token (one app's) is refused before anything is created, saying why.
    let mut app_token = TELEGRAM;
    app_token[0] = ("FLY_API_TOKEN", "sim-deploy-token");
    let refused = textslash(
        &sim,
        &["deploy", "--prefix", "x", "--allow", "telegram:42"],
        &app_token,
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("deploy token for someone-app"), "{stderr}");
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_touches_nothing_and_needs_no_secrets() {
    let (sim, _dir) = sim().await;
    let plan = textslash(
        &sim,
        &["plan", "--prefix", "p", "--region", "fra", "--json"],
        &[],
    )
    .await;
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["apps"], serde_json::json!(["p-relay", "p-vm"]));
    assert_eq!(
        plan["vm"]["secrets"],
        serde_json::json!(["ANTHROPIC_API_KEY", "VM_TOKEN"])
    );
    assert!(plan["monthly_cost_usd"]["total"].as_f64().unwrap() > 1.9);
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discord_deploy_prints_the_invite_link_connects_and_tears_down_clean() {
    let (sim, _dir) = sim().await;
    let env = [
        ("FLY_API_TOKEN", "sim-token"),
        ("DISCORD_BOT_TOKEN", sim::SIM_DISCORD_BOT),
        ("ANTHROPIC_API_KEY", "sk-ant-cli-test"),
    ];
    let args = [
        "deploy",
        "--prefix",
        "dc",
        "--region",
        "ams",
        "--channel",
        "discord",
        "--relay-image",
        "t/relay:1",
        "--vm-image",
        "t/vm:1",
    ];
    // The same rules as the page: an owner id, when given, must be a Discord user id.
    let refused = textslash(
        &sim,
        &[&args[..], &["--allow", "discord:me"]].concat(),
        &env,
    )
    .await;
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("a Discord sender is discord: followed by your user id"),
        "{said}"
    );
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));

    // Without one, pairing makes the owner: the deploy prints the one-time code.
    let deploy = textslash(&sim, &args, &env).await;
    let out = String::from_utf8_lossy(&deploy.stdout);
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    assert!(
        out.contains(&format!(
            "https://discord.com/oauth2/authorize?client_id={}&scope=bot&permissions=0",
            sim::SIM_DISCORD_BOT_ID
        )) && !out.contains("Webhook URL"),
        "{out}"
    );
    let code = out
        .lines()
        .skip_while(|l| !l.starts_with("Pair: send the bot a direct message"))
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("no pairing code in: {out}"))
        .to_string();
    assert!(!out.contains(sim::SIM_DISCORD_BOT));
    common::eventually(
        "the relay on Discord's Gateway",
        std::time::Duration::from_secs(30),
        async || {
            sim.sim
                .discord
                .connected(sim::SIM_DISCORD_BOT)
                .then_some(())
        },
    )
    .await;
    // The owner DMs the code and is welcomed.
    common::discord_user_sends(&sim, "80351110224678912", &code).await;
    common::eventually(
        "the welcome",
        std::time::Duration::from_secs(30),
        async || {
            sim.sim
                .discord
                .sent()
                .into_iter()
                .find(|s| s.text == relay::pairing::WELCOME && s.to == "discord:80351110224678912")
        },
    )
    .await;

    let teardown = textslash(&sim, &["teardown", "--prefix", "dc", "--yes"], &env).await;
    let out = String::from_utf8_lossy(&teardown.stdout);
    assert!(
        teardown.status.success(),
        "{}",
        String::from_utf8_lossy(&teardown.stderr)
    );
    assert!(
        out.contains("nothing is left") && !out.contains("Still to do"),
        "{out}"
    );
    assert_eq!(dump(&sim).await["apps"], serde_json::json!([]));
    common::eventually(
        "the bot offline with its relay gone",
        std::time::Duration::from_secs(30),
        async || (!sim.sim.discord.connected(sim::SIM_DISCORD_BOT)).then_some(()),
    )
    .await;
}

/// One version for the CLI and the images it deploys: `--version` says it, `status` says what
/// a deployment runs against it, `update` goes to it and says from what to what, and never
/// moves a deployment back unless images are named.
#[tokio::test(flavor = "multi_thread")]
async fn update_goes_to_this_version_and_says_from_what_to_what() {
    let this = provision::version::VERSION;
    let version = textslash_bare(&["--version"]);
    assert_eq!(version, format!("textslash {this}\n"));

    let (sim, _dir) = sim().await;
    let image = |role: &str, version: &str| format!("ghcr.io/textslash/textslash-{role}:{version}");
    let older = "0.0.1-old";
    let deploy = textslash(
        &sim,
        &[
            "deploy",
            "--prefix",
            "ver",
            "--allow",
            "telegram:42",
            "--relay-image",
            &image("relay", older),
            "--vm-image",
            &image("vm", older),
        ],
        &TELEGRAM,
    )
    .await;
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    let run = async |args: &[&str]| {
        let out = textslash(&sim, args, &TELEGRAM).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };

    let (_, status) = run(&["status", "--prefix", "ver"]).await;
    assert!(
        status.contains(&format!("textslash {older} ({})", image("vm", older)))
            && status.contains(&format!(
                "Runs textslash {older}; {this} is available: run `textslash update --prefix ver` to move it to {this}."
            )),
        "{status}"
    );
    let (code, updated) = run(&["update", "--prefix", "ver"]).await;
    assert_eq!(code, Some(0), "{updated}");
    assert!(
        updated.contains(&format!(
            "Updated the agent machine from {older} to {this} and the relay from {older} to {this}."
        )),
        "{updated}"
    );
    let (_, status) = run(&["status", "--prefix", "ver"]).await;
    assert!(
        status.contains(&format!("Runs textslash {this}, the newest here.")),
        "{status}"
    );
    let (_, again) = run(&["update", "--prefix", "ver"]).await;
    assert!(
        again.contains(&format!(
            "Nothing to update: both machines already run textslash {this}."
        )),
        "{again}"
    );

    // Moved ahead on purpose (images named), a plain update from this CLI refuses to go back.
    let newer = "99.0.0";
    let (code, ahead) = run(&[
        "update",
        "--prefix",
        "ver",
        "--relay-image",
        &image("relay", newer),
        "--vm-image",
        &image("vm", newer),
    ])
    .await;
    assert_eq!(code, Some(0), "{ahead}");
    let (code, refused) = run(&["update", "--prefix", "ver"]).await;
    assert_eq!(code, Some(1), "{refused}");
    assert!(
        refused.contains(&format!(
            "This deployment runs textslash {newer}, newer than this one ({this}), so an update from here would move it back."
        )),
        "{refused}"
    );
    let (_, status) = run(&["status", "--prefix", "ver", "--json"]).await;
    assert!(
        status.contains(&format!("\"image\":\"{}\"", image("vm", newer))),
        "nothing moved back: {status}"
    );
    let (code, _) = run(&["teardown", "--prefix", "ver", "--yes"]).await;
    assert_eq!(code, Some(0));
}

/// The binary with no sim and nothing in its environment.
fn textslash_bare(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_textslash"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}
