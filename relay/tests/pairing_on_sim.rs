//! Pairing over real HTTP: the sim's Telegram plays the user tapping the deep link (Telegram
//! then sends `/start <code>`), a stand-in vm answers, the relay runs in-process.

use sim::testing::eventually;
use std::time::Duration;

mod common;
use common::*;

const CODE: &str = "0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

/// Texts the bot sent to Telegram user `to`.
fn said_to(sim: &sim::SimHandle, to: i64) -> Vec<String> {
    sim.sim
        .channels
        .telegram_sent()
        .into_iter()
        .filter(|s| s.to == format!("telegram:{to}") && s.kind == "message")
        .map(|s| s.text)
        .collect()
}

async fn paired_relay(
    dir: &std::path::Path,
    expires_ms: i64,
) -> (sim::SimHandle, FakeVm, String, RunningRelay) {
    let sim = start_sim(dir).await;
    let (vm, vm_url) = FakeVm::start().await;
    let mut env = base_env(&sim, &vm_url, &dir.join("relay"));
    // Nobody is listed: pairing is the only way in.
    env.insert("ALLOWED_SENDERS".into(), String::new());
    env.insert("PAIRING_CODE".into(), CODE.into());
    env.insert("PAIRING_EXPIRES_MS".into(), expires_ms.to_string());
    let relay = RunningRelay::start(env).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    eventually("the webhook", WAIT, async || {
        sim.sim.channels.telegram_webhook(sim::SIM_TELEGRAM_BOT)
    })
    .await;
    (sim, vm, vm_url, relay)
}

#[tokio::test]
async fn the_first_sender_with_the_code_becomes_the_owner_and_the_code_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let far = relay::journal::now_ms() + 3_600_000;
    let (sim, vm, vm_url, relay) = paired_relay(dir.path(), far).await;

    // A stranger's chatter gets nothing; a wrong code is answered and changes nothing.
    assert_eq!(telegram_user_sends(&sim, 501, "hello?", false).await, 200);
    assert_eq!(
        telegram_user_sends(&sim, 501, "/start ffffffffffffffff", false).await,
        200
    );
    eventually("the wrong-code answer", WAIT, async || {
        (said_to(&sim, 501) == [relay::pairing::WRONG_CODE]).then_some(())
    })
    .await;

    // The owner taps the link: Telegram sends `/start <code>`; a welcome, and they are in.
    assert_eq!(
        telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await,
        200
    );
    eventually("the welcome", WAIT, async || {
        (said_to(&sim, 42) == [relay::pairing::WELCOME]).then_some(())
    })
    .await;
    assert_eq!(
        telegram_user_sends(&sim, 42, "now the agent", false).await,
        200
    );
    let received = vm.first_received("the owner's message at the vm").await;
    assert_eq!(received.text, "now the agent");
    assert_eq!(
        vm.received().len(),
        1,
        "the code itself never reached the agent"
    );

    // The code is spent: the stranger using it now gets nothing, and stays out.
    assert_eq!(
        telegram_user_sends(&sim, 501, &format!("/start {CODE}"), false).await,
        200
    );
    assert_eq!(
        telegram_user_sends(&sim, 501, "let me in", false).await,
        200
    );
    // The owner's next message is answered after both, so both were handled by then.
    assert_eq!(telegram_user_sends(&sim, 42, "still me", false).await, 200);
    eventually("the owner's second reply", WAIT, async || {
        said_to(&sim, 42)
            .contains(&"echo: still me".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(said_to(&sim, 501), [relay::pairing::WRONG_CODE]);
    assert!(vm.received().iter().all(|m| m.sender == "telegram:42"));

    // The pairing outlives a restart (it is in the journal).
    relay.shut_down().await;
    let mut env = base_env(&sim, &vm_url, &dir.path().join("relay"));
    env.insert("ALLOWED_SENDERS".into(), String::new());
    env.insert("PAIRING_CODE".into(), CODE.into());
    env.insert("PAIRING_EXPIRES_MS".into(), far.to_string());
    let relay = RunningRelay::start(env).await;
    *vm.reply_to.lock().unwrap() = Some(relay.url.clone());
    assert_eq!(
        telegram_user_sends(&sim, 42, "after a restart", false).await,
        200
    );
    eventually("the message after the restart", WAIT, async || {
        vm.received()
            .iter()
            .any(|m| m.text == "after a restart")
            .then_some(())
    })
    .await;
    relay.shut_down().await;
}

/// Answers to one sender's pairing attempts queued so far (the relay queues an answer before
/// it acknowledges the webhook, so this is exact once `telegram_user_sends` returned).
fn answers_queued(dir: &std::path::Path, to: i64) -> i64 {
    let db = rusqlite::Connection::open(dir.join("relay").join("journal.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM outbox WHERE conversation = ?1 AND id LIKE 'pairing:%'",
        [format!("telegram:{to}")],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn an_expired_code_changes_nothing_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let past = relay::journal::now_ms() - 1;
    let (sim, vm, _, relay) = paired_relay(dir.path(), past).await;
    assert_eq!(
        telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await,
        200
    );
    eventually("the expired answer", WAIT, async || {
        (said_to(&sim, 42) == [relay::pairing::EXPIRED]).then_some(())
    })
    .await;
    assert_eq!(telegram_user_sends(&sim, 42, "hello", false).await, 200);
    // Trying again (or a stranger trying codes) gets no second answer for a while.
    for _ in 0..3 {
        assert_eq!(
            telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await,
            200
        );
    }
    assert_eq!(answers_queued(dir.path(), 42), 1, "answered more than once");
    assert!(vm.received().is_empty(), "nothing reached the agent");
    relay.shut_down().await;
}

/// Once paired, a later code gets "already paired" (once), `/health` says paired (never who),
/// the owner sees who is paired and removes one, and `relay unpair` does it from outside.
#[tokio::test]
async fn owners_are_seen_and_removed_and_a_later_code_is_told_it_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let far = relay::journal::now_ms() + 3_600_000;
    let (sim, vm, vm_url, relay) = paired_relay(dir.path(), far).await;
    let health = || async {
        reqwest::get(format!("{}/health", relay.url))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(health().await["paired"], false);
    telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await;
    eventually("the welcome", WAIT, async || {
        (said_to(&sim, 42) == [relay::pairing::WELCOME]).then_some(())
    })
    .await;
    let shown = health().await;
    assert_eq!(shown["paired"], true);
    assert!(
        !shown.to_string().contains("telegram:42"),
        "health names no one: {shown}"
    );

    for _ in 0..2 {
        telegram_user_sends(&sim, 501, &format!("/start {CODE}"), false).await;
    }
    eventually("the already-paired answer", WAIT, async || {
        (said_to(&sim, 501) == [relay::pairing::ALREADY_PAIRED]).then_some(())
    })
    .await;
    assert_eq!(answers_queued(dir.path(), 501), 1);

    telegram_user_sends(&sim, 42, "/owners", false).await;
    let owners = eventually("the owners list", WAIT, async || {
        said_to(&sim, 42)
            .into_iter()
            .find(|t| t.contains("(paired)"))
    })
    .await;
    assert!(owners.contains("telegram:42 (paired)"), "{owners}");
    assert!(
        vm.received().is_empty(),
        "owner commands stay with the relay"
    );

    // Outside the chat: `relay unpair` as teardown-style exec would run it, in the machine.
    let mut env = base_env(&sim, &vm_url, &dir.path().join("relay"));
    env.insert("ALLOWED_SENDERS".into(), String::new());
    env.insert("PUBLIC_URL".into(), relay.url.clone());
    let config = relay::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let answer = relay::pairing::unpair(&config, Some("telegram:42")).await;
    assert_eq!(answer["removed"], serde_json::json!(["telegram:42"]));
    let status = telegram_user_sends(&sim, 42, "are you there?", false).await;
    assert_eq!(status, 200);
    assert!(
        vm.received().is_empty(),
        "an unpaired sender is a stranger again"
    );
    relay.shut_down().await;
}

#[tokio::test]
async fn an_owner_s_message_is_retried_not_dropped_when_the_owners_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let far = relay::journal::now_ms() + 3_600_000;
    let (sim, vm, _, relay) = paired_relay(dir.path(), far).await;
    assert_eq!(
        telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await,
        200
    );
    eventually("the welcome", WAIT, async || {
        (said_to(&sim, 42) == [relay::pairing::WELCOME]).then_some(())
    })
    .await;

    // The owners' table becomes unreadable (as a damaged page or an I/O error would make it).
    let db = rusqlite::Connection::open(dir.path().join("relay").join("journal.db")).unwrap();
    db.execute_batch("ALTER TABLE owners RENAME TO owners_unreadable")
        .unwrap();
    let status = telegram_user_sends(&sim, 42, "do not lose me", false).await;
    assert!(
        (500..600).contains(&status),
        "an unknown sender is not a stranger: answered {status}"
    );
    assert!(vm.received().is_empty());

    db.execute_batch("ALTER TABLE owners_unreadable RENAME TO owners")
        .unwrap();
    assert_eq!(
        telegram_user_sends(&sim, 42, "do not lose me", false).await,
        200,
        "Telegram's retry"
    );
    let received = vm.first_received("the owner's message at the vm").await;
    assert_eq!(received.text, "do not lose me");
    relay.shut_down().await;
}
