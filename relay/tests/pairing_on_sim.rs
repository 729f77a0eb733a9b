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
    let received = eventually("the owner's message at the vm", WAIT, async || {
        vm.received().first().cloned()
    })
    .await;
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

#[tokio::test]
async fn an_expired_code_changes_nothing_and_says_so() {
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
    assert_eq!(
        telegram_user_sends(&sim, 42, &format!("/start {CODE}"), false).await,
        200
    );
    eventually("the second expired answer", WAIT, async || {
        (said_to(&sim, 42).len() == 2).then_some(())
    })
    .await;
    assert!(vm.received().is_empty(), "nothing reached the agent");
    relay.shut_down().await;
}

/// When the journal cannot say who the owners are, a paired owner's message is not taken for
/// a stranger's (dropped with a 200): it is "not saved", so Telegram sends it again, and it
/// arrives once the journal reads again.
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
    let received = eventually("the owner's message at the vm", WAIT, async || {
        vm.received().first().cloned()
    })
    .await;
    assert_eq!(received.text, "do not lose me");
    relay.shut_down().await;
}
