//! The whole product on one machine: `textslash deploy` provisions the sim's "Fly", which runs
//! the real relay and vm binaries as machines; a user writes to the bot through the sim's fake
//! Telegram; the relay journals the message and wakes the stopped vm through Flycast; the vm
//! runs the real Claude Code (against the sim's scripted model) and the reply, and a
//! screenshot taken with the real Playwright MCP and Chromium, come back to the user; then
//! `textslash teardown`.

mod common;

use common::{Owner, allow_until, eventually, telegram_user_sends, vm_state};
use serde_json::Value;
use std::time::Duration;

const OWNER: i64 = 4242;

fn textslash(sim: &sim::SimHandle, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_textslash"))
        .args(args)
        .args([
            "--api-url",
            sim.base_url(),
            "--app-url",
            &sim.app_url_template(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLY_API_TOKEN", "sim-token")
        .env("TELEGRAM_BOT_TOKEN", sim::SIM_TELEGRAM_BOT)
        .env("ANTHROPIC_API_KEY", sim::SIM_ANTHROPIC_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_chat_through_a_cold_vm_and_tear_down() {
    let (relay_bin, vm_bin, _) = common::machine_binaries();
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim::SimConfig::new(dir.path().to_path_buf());
    config.images.rules = vec![
        ("relay".into(), sim::Program::Path(relay_bin)),
        ("vm".into(), sim::Program::Path(vm_bin)),
    ];
    config.machine_env = vec![
        // The real Claude Code, against the sim's scripted model (ANTHROPIC_BASE_URL).
        (
            "AGENT_CMD".into(),
            common::claude_bin().display().to_string(),
        ),
        ("CHROMIUM_PATH".into(), "/usr/bin/chromium".into()),
        // Sleep soon, so the test sees the vm stopped and woken again.
        ("IDLE_TIMEOUT_SECS".into(), "2".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let sim_ref = &sim;
    let deploy = tokio::task::block_in_place(|| {
        textslash(
            sim_ref,
            &[
                "deploy",
                "--prefix",
                "sys",
                "--channel",
                "telegram",
                "--allow",
                &format!("telegram:{OWNER}"),
            ],
        )
    });
    assert!(
        deploy.status.success(),
        "deploy failed: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    eventually(
        "the relay to register its webhook",
        Duration::from_secs(15),
        async || sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
    )
    .await;
    eventually("the idle vm to stop", Duration::from_secs(20), async || {
        (vm_state(&sim, "sys-vm").await == "stopped").then_some(())
    })
    .await;

    assert_eq!(telegram_user_sends(&sim, 999, "stranger danger").await, 200);
    assert_eq!(telegram_user_sends(&sim, OWNER, "hello agent").await, 200);
    let reply = eventually("the agent's reply", Duration::from_secs(30), async || {
        sim.sim
            .channels
            .telegram_sent()
            .into_iter()
            .find(|s| s.kind == "message" && s.text.contains("You said: hello agent"))
    })
    .await;
    assert_eq!(reply.to, format!("telegram:{OWNER}"));
    assert_eq!(
        vm_state(&sim, "sys-vm").await,
        "started",
        "Flycast woke the vm"
    );
    assert!(
        !sim.sim.model.requests().is_empty(),
        "the reply came from Claude Code asking the (sim's) model"
    );

    // A screenshot through the real Playwright MCP and Chromium arrives as a photo, once the
    // owner allowed the browser (a new deployment asks first): each question comes with
    // buttons, and a tap on Allow lets the call run.
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "take a screenshot").await,
        200
    );
    allow_until(
        &sim,
        Owner::Telegram(OWNER),
        Duration::from_secs(90),
        async || {
            sim.sim
                .channels
                .telegram_sent()
                .into_iter()
                .find(|s| s.kind == "photo" && s.to == format!("telegram:{OWNER}"))
        },
    )
    .await;
    // While it worked, one status line said what it was doing, edited in place, and it ends
    // as the job's summary.
    let line = eventually(
        "the status line's summary",
        Duration::from_secs(30),
        async || {
            sim.sim
                .channels
                .telegram_sent()
                .into_iter()
                .find(|s| s.text.starts_with("Done in") && s.to == format!("telegram:{OWNER}"))
        },
    )
    .await;
    assert!(line.edits >= 1, "{line:?}");
    assert!(line.text.contains("tool calls"), "{}", line.text);
    let questions: Vec<_> = sim
        .sim
        .channels
        .telegram_sent()
        .into_iter()
        .filter(|s| s.text.starts_with("The agent asks to use the browser"))
        .collect();
    assert!(!questions.is_empty(), "the browser was asked for");
    assert!(
        questions
            .iter()
            .all(|q| q.buttons.is_empty() && q.text.ends_with("Allowed ✓")),
        "each question says it was allowed: {questions:?}"
    );

    // A command that writes a file, allowed; its reply says what changed, and /diff sends
    // the changes as a document.
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "please write a file").await,
        200
    );
    let wrote = allow_until(
        &sim,
        Owner::Telegram(OWNER),
        Duration::from_secs(60),
        async || {
            sim.sim
                .channels
                .telegram_sent()
                .into_iter()
                .find(|s| s.text.starts_with("I wrote hello.txt."))
        },
    )
    .await;
    assert!(wrote.text.ends_with("(/diff shows them)"), "{}", wrote.text);
    assert_eq!(telegram_user_sends(&sim, OWNER, "/diff").await, 200);
    eventually(
        "the diff as a document",
        Duration::from_secs(30),
        async || {
            sim.sim
                .channels
                .telegram_sent()
                .into_iter()
                .find(|s| s.kind == "document" && s.to == format!("telegram:{OWNER}"))
        },
    )
    .await;
    assert!(
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .all(|s| s.to != "telegram:999"),
        "the stranger got nothing"
    );
    assert!(
        !sim.sim
            .channels
            .telegram_sent()
            .iter()
            .any(|s| s.text.contains("stranger danger"))
    );

    let status = tokio::task::block_in_place(|| {
        textslash(sim_ref, &["status", "--prefix", "sys", "--json"])
    });
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The owner was given by id, so nothing was paired; `unpair` asks the relay in its machine
    // (the Machines API's exec) and removes no one.
    let unpair = tokio::task::block_in_place(|| {
        textslash(sim_ref, &["unpair", "--prefix", "sys", "--all", "--json"])
    });
    assert!(
        unpair.status.success(),
        "{}",
        String::from_utf8_lossy(&unpair.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&unpair.stdout).unwrap();
    assert_eq!(answer["removed"], serde_json::json!([]), "{answer}");

    let teardown = tokio::task::block_in_place(|| {
        textslash(sim_ref, &["teardown", "--prefix", "sys", "--yes"])
    });
    assert!(
        teardown.status.success(),
        "{}",
        String::from_utf8_lossy(&teardown.stderr)
    );
    let state = sim.state();
    assert_eq!(
        state["apps"],
        serde_json::json!([]),
        "nothing left: {state}"
    );
    // …not even the bot's webhook, which would point at a name anyone can claim next.
    assert_eq!(
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT),
        None,
        "teardown removed the Telegram webhook"
    );
    let progress = String::from_utf8_lossy(&teardown.stderr);
    assert!(
        progress.contains("removed the Telegram webhook"),
        "{progress}"
    );
}

/// The relay's journal as its public health reports it.
async fn waiting_for_vm(sim: &sim::SimHandle, relay_app: &str) -> Option<i64> {
    let health: Value = reqwest::get(format!("{}/apps/{relay_app}/health", sim.base_url()))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    health["journal"]["waiting_for_vm"].as_i64()
}

/// The sim running the real relay and vm binaries, plus an agent image that cannot start
/// (`vm-down`): messages then wait in the relay's journal.
async fn sim_with_a_broken_agent_image(dir: &std::path::Path) -> sim::SimHandle {
    let (relay_bin, vm_bin, _) = common::machine_binaries();
    let mut config = sim::SimConfig::new(dir.to_path_buf());
    config.images.rules = vec![
        ("vm-down".into(), sim::Program::Path("/bin/false".into())),
        ("relay".into(), sim::Program::Path(relay_bin)),
        ("vm".into(), sim::Program::Path(vm_bin)),
    ];
    config.machine_env = vec![
        (
            "AGENT_CMD".into(),
            common::claude_bin().display().to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Runs `textslash args` against the sim, which must succeed; what it printed.
fn succeeds(sim: &sim::SimHandle, args: &[&str]) -> String {
    let out = tokio::task::block_in_place(|| textslash(sim, args));
    assert!(
        out.status.success(),
        "textslash {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_accepted_while_the_agent_is_down_survives_a_relay_update() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim_with_a_broken_agent_image(dir.path()).await;
    let run = |args: &[&str]| {
        succeeds(&sim, args);
    };
    let update = |relay: &str, vm: &str| {
        run(&[
            "update",
            "--prefix",
            "keep",
            "--relay-image",
            &format!("ghcr.io/t/textslash-relay:{relay}"),
            "--vm-image",
            &format!("ghcr.io/t/textslash-{vm}"),
        ])
    };
    let owner = format!("telegram:{OWNER}");
    run(&[
        "deploy",
        "--prefix",
        "keep",
        "--channel",
        "telegram",
        "--allow",
        &owner,
    ]);
    eventually("the webhook", Duration::from_secs(15), async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;

    // The agent goes down; a message is accepted and waits in the relay's journal.
    update("1", "vm-down:1");
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "kept through an update").await,
        200
    );
    eventually(
        "the message in the journal",
        Duration::from_secs(15),
        async || (waiting_for_vm(&sim, "keep-relay").await == Some(1)).then_some(()),
    )
    .await;

    // A relay image update replaces the relay's root filesystem; the journal is on its volume.
    update("2", "vm-down:1");
    eventually(
        "the new relay, still holding the message",
        Duration::from_secs(30),
        async || (waiting_for_vm(&sim, "keep-relay").await == Some(1)).then_some(()),
    )
    .await;

    // The agent comes back: the message is delivered, and answered once.
    update("2", "vm:2");
    let answered = async || {
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .filter(|s| s.text == "You said: kept through an update")
            .count()
    };
    eventually("the reply", Duration::from_secs(90), async || {
        (answered().await >= 1).then_some(())
    })
    .await;
    eventually("an empty journal", Duration::from_secs(30), async || {
        (waiting_for_vm(&sim, "keep-relay").await == Some(0)).then_some(())
    })
    .await;
    assert_eq!(answered().await, 1, "delivered once");
    run(&["teardown", "--prefix", "keep", "--yes"]);
}

/// A deployment from before the relay had a volume: its journal on the root filesystem, which
/// Fly rebuilds on every restart. `update` moves it onto a volume without losing what the old
/// relay holds (a message for an agent that was down), and the new relay serves afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn update_moves_an_old_relay_onto_a_volume_and_loses_nothing() {
    use provision::fly::FlyClient;
    use provision::native::{ReqwestTransport, TokioClock};

    let dir = tempfile::tempdir().unwrap();
    let sim = sim_with_a_broken_agent_image(dir.path()).await;
    let run = |args: &[&str]| succeeds(&sim, args);
    let update = |relay: &str, vm: &str| {
        run(&[
            "update",
            "--prefix",
            "old",
            "--relay-image",
            &format!("ghcr.io/t/textslash-relay:{relay}"),
            "--vm-image",
            &format!("ghcr.io/t/textslash-{vm}"),
        ])
    };
    let owner = format!("telegram:{OWNER}");
    run(&[
        "deploy",
        "--prefix",
        "old",
        "--channel",
        "telegram",
        "--allow",
        &owner,
    ]);

    // Make it what textslash deployed before the journal volume: the relay machine's config
    // without the mount, and no journal volume.
    let fly = FlyClient::new(
        ReqwestTransport::new(),
        TokioClock,
        sim.base_url(),
        "sim-token",
    );
    let relay_machines = || async {
        fly.list_machines("old-relay")
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.is_live())
            .collect::<Vec<_>>()
    };
    let current = relay_machines().await.remove(0);
    let mut old_config = fly
        .machine_config_document("old-relay", &current.id)
        .await
        .unwrap();
    old_config["mounts"] = serde_json::json!([]);
    fly.delete_machine("old-relay", &current.id).await.unwrap();
    eventually(
        "the journal volume let go",
        Duration::from_secs(30),
        async || {
            let volumes = fly.list_volumes("old-relay").await.ok()?;
            for volume in volumes.iter().filter(|v| v.is_live()) {
                fly.delete_volume("old-relay", &volume.id).await.ok()?;
            }
            Some(())
        },
    )
    .await;
    let old = fly
        .create_machine_from_document(
            "old-relay",
            current.region.as_deref().unwrap_or_default(),
            &old_config,
            true,
        )
        .await
        .unwrap();
    eventually(
        "the old relay listed and answering",
        Duration::from_secs(30),
        async || {
            let listed = relay_machines().await.iter().any(|m| m.id == old.id);
            (listed && waiting_for_vm(&sim, "old-relay").await == Some(0)).then_some(())
        },
    )
    .await;

    // The agent goes down (its image changed directly: `update` would move the relay now);
    // the old relay accepts a message and holds it on its root disk.
    let vm = fly.list_machines("old-vm").await.unwrap().remove(0);
    let mut vm_config = fly.machine_config_document("old-vm", &vm.id).await.unwrap();
    vm_config["image"] = "ghcr.io/t/textslash-vm-down:1".into();
    fly.update_machine(
        "old-vm",
        &vm.id,
        vm.region.as_deref().unwrap_or_default(),
        &vm_config,
    )
    .await
    .unwrap();
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "held by an old relay").await,
        200
    );
    eventually(
        "the message in the old relay's journal",
        Duration::from_secs(15),
        async || (waiting_for_vm(&sim, "old-relay").await == Some(1)).then_some(()),
    )
    .await;

    // The update brings the agent back first, waits for the old relay to pass the message on,
    // then replaces it with a relay on a volume.
    let said = update("2", "vm:2");
    assert!(said.contains("moving it onto a volume"), "{said}");
    let answered = async |text: &str| {
        sim.sim
            .channels
            .telegram_sent()
            .iter()
            .filter(|s| s.text == format!("You said: {text}"))
            .count()
    };
    eventually(
        "the held message answered",
        Duration::from_secs(60),
        async || (answered("held by an old relay").await >= 1).then_some(()),
    )
    .await;
    let now = relay_machines().await;
    assert_eq!(now.len(), 1, "the old relay machine is gone");
    assert_ne!(now[0].id, old.id);
    let mounts = &now[0].config.as_ref().unwrap().mounts;
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].path, provision::machines::RELAY_DATA_PATH);

    // The new relay serves, and the held message was answered once.
    assert_eq!(
        telegram_user_sends(&sim, OWNER, "after the move").await,
        200
    );
    eventually(
        "the new relay's answer",
        Duration::from_secs(60),
        async || (answered("after the move").await >= 1).then_some(()),
    )
    .await;
    assert_eq!(answered("held by an old relay").await, 1, "answered once");
    assert!(
        update("2", "vm:2").contains("Nothing to update: both machines already run those images."),
        "a second update has nothing left to move"
    );
    run(&["teardown", "--prefix", "old", "--yes"]);
}
