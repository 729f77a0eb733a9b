//! What the real Fly does that a tidy emulator would not, each played by the sim at its worst
//! and survived by `provision`: the rows of `docs/fly-machines-api.md` §11. Every other test
//! runs with these behaviours on at short delays; these stretch one at a time past what a
//! plain retry would outlast.

mod common;

use common::{Harness, deploy, only_the_webhook_is_left};
use provision::{Error, Event, StepId, StepState, ops};
use sim::faults::FaultRule;
use std::cell::RefCell;
use std::time::Duration;

fn said(events: &[Event], step: StepId, words: &str) -> bool {
    events
        .iter()
        .any(|e| e.step == step && e.state == StepState::Running && e.message.contains(words))
}

fn no_bad_token(events: &[Event]) {
    let bad = Error::BadToken.to_string();
    assert!(
        events.iter().all(|e| e.message != bad),
        "a working token was called bad: {events:#?}"
    );
}

/// Fly hides a new app for a moment, answering 401 (which reads as "bad token"): the deploy
/// waits for each app as fly-go's `WaitForApp` does, and a teardown with a fresh client
/// (as the page or the CLI starts one) meets the same 401 without blaming the token.
#[tokio::test]
async fn a_deploy_and_a_teardown_outlast_apps_fly_hides_for_3_s_with_401() {
    let h = Harness::start_with(|config| {
        config.quirks.new_app_hidden_for = Duration::from_secs(3);
        config.quirks.new_app_status = 401;
    })
    .await;

    // A first attempt stops right after Fly created one app (the other's create fails), and
    // the user tears down at once, while Fly still hides it.
    h.faults(vec![FaultRule::fail("POST", "/v1/apps", 2, 400)])
        .await;
    let (first, events) = deploy(&h.client("sim-token"), &h.spec("hidden")).await;
    assert!(
        matches!(first, Err(Error::Api { status: 400, .. })),
        "{first:?}"
    );
    no_bad_token(&events);
    h.faults(vec![]).await;
    let log = RefCell::new(Vec::new());
    let leftovers = ops::teardown(
        &h.client("sim-token"),
        &["hidden-relay", "hidden-vm"],
        &|e: &Event| log.borrow_mut().push(e.clone()),
    )
    .await
    .expect("a teardown of a hidden app is no error");
    no_bad_token(&log.into_inner());
    // It was empty (the attempt stopped before its secrets), so it is not deleted…
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert!(leftovers[0].why.contains("empty"), "{leftovers:?}");

    // …and the next deploy builds on it, waiting for the vm app Fly hides in turn.
    let (second, events) = deploy(&h.client("sim-token"), &h.spec("hidden")).await;
    let deployment = second.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    no_bad_token(&events);
    assert!(
        said(
            &events,
            StepId::Apps,
            "waiting for Fly to show the new app hidden-"
        ),
        "{events:#?}"
    );
    let shape = h.shape().await;
    assert_eq!(shape["apps"].as_array().unwrap().len(), 2, "{shape}");
    for app in shape["apps"].as_array().unwrap() {
        assert_eq!(app["machines"], serde_json::json!(["started"]), "{shape}");
        assert_eq!(app["volumes"], 1, "{shape}");
    }

    let leftovers = ops::teardown(
        &h.client("sim-token"),
        &[&deployment.relay_app, &deployment.vm_app],
        &|_: &Event| {},
    )
    .await
    .unwrap();
    only_the_webhook_is_left(&leftovers);
    assert_eq!(h.dump().await["apps"], serde_json::json!([]));
}

/// The other answer Fly gives for a new app, 404, is waited for the same way.
#[tokio::test]
async fn apps_fly_hides_with_404_are_waited_for_too() {
    let h = Harness::start_with(|config| {
        config.quirks.new_app_hidden_for = Duration::from_secs(2);
        config.quirks.new_app_status = 404;
    })
    .await;
    let (deployed, events) = deploy(&h.client("sim-token"), &h.spec("missing")).await;
    deployed.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    assert!(said(&events, StepId::Apps, "waiting for Fly to show"));
    assert_eq!(h.shape().await["apps"].as_array().unwrap().len(), 2);
}

/// `tokens/current` describes macaroons only; a user's OAuth token it refuses still deploys
/// (a plain read vouches for it), while a token that fails the plain read too is bad.
#[tokio::test]
async fn a_token_fly_cannot_describe_still_deploys() {
    let h = Harness::start().await;
    let fly = h.client("sim-oauth-token");
    let checked = provision::token::check(&fly).await.unwrap();
    assert_eq!(checked.note, Some(provision::token::UNDESCRIBED));
    let (deployed, events) = deploy(&fly, &h.spec("oauth")).await;
    deployed.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    assert!(
        events
            .iter()
            .any(|e| e.step == StepId::Token && e.message.contains("did not describe")),
        "{events:#?}"
    );

    let bad = provision::token::check(&h.client("not-a-token")).await;
    assert_eq!(bad, Err(Error::BadToken));
    let (bad, _) = deploy(&h.client("fm2_not-a-token"), &h.spec("nope")).await;
    assert_eq!(bad.unwrap_err(), Error::BadToken);
}

/// A read-only token looks like an org token to `tokens/current`; its first write (the app
/// create) is refused, and the deploy says which token to make before anything exists.
#[tokio::test]
async fn a_read_only_token_is_stopped_by_its_first_write_before_anything_exists() {
    let h = Harness::start().await;
    let (refused, events) = deploy(&h.client("sim-readonly-token"), &h.spec("ro")).await;
    let refused = refused.unwrap_err();
    assert_eq!(
        refused,
        Error::CannotCreateApps {
            org: "personal".into()
        }
    );
    let sentence = refused.to_string();
    assert!(
        sentence.contains("read-only") && sentence.contains("fly tokens create org"),
        "{sentence}"
    );
    no_bad_token(&events);
    assert_eq!(h.dump().await["apps"], serde_json::json!([]));
}

/// A new `<relay>.fly.dev` takes a while to resolve (flyctl's `checkDNS` allows 70 s): the
/// health step says it is waiting and goes on asking, past what a plain retry would outlast.
#[tokio::test]
async fn a_relay_name_that_resolves_late_is_waited_for() {
    let h = Harness::start_with(|config| {
        config.quirks.new_name_unresolved_for = Duration::from_secs(3);
    })
    .await;
    let (deployed, events) = deploy(&h.client("sim-token"), &h.spec("dns")).await;
    deployed.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    let waiting = events
        .iter()
        .find(|e| {
            e.step == StepId::Health
                && e.state == StepState::Running
                && e.message.contains("to answer")
        })
        .unwrap_or_else(|| panic!("the health step never said it was waiting: {events:#?}"));
    // What a client sees of a name that does not resolve: no answer at all, not an HTTP one.
    assert!(!waiting.message.contains("HTTP"), "{}", waiting.message);
}

/// Past Fly's rate limit (about one mutation a second per action and resource, bursts of
/// three) the sim answers 429, and the client waits for the refill instead of failing.
#[tokio::test]
async fn mutations_past_fly_s_rate_limit_wait_and_succeed() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    fly.create_app("busy-vm", "personal", "").await.unwrap();
    fly.wait_for_app("busy-vm", &|| {}).await.unwrap();
    let before = fly.calls();
    for n in 0..5 {
        let values = std::collections::BTreeMap::from([("N".to_string(), n.to_string())]);
        fly.set_secrets("busy-vm", values).await.unwrap();
    }
    assert!(
        fly.calls() - before > 5,
        "five writes in a burst of three must have met a 429 and been sent again"
    );
}

/// A machine create that flyd answered 408 may have happened anyway, and Fly's list lags
/// the write: the deploy lets the list catch up before it looks, and never makes a second
/// machine (flyctl's `launchGreenMachineWithRetry` does the same).
#[tokio::test]
async fn a_machine_create_fly_timed_out_is_found_not_repeated() {
    let h = Harness::start_with(|config| {
        config.quirks.new_machine_unlisted_for = Duration::from_millis(400);
    })
    .await;
    h.faults(vec![
        FaultRule::act_then_fail("POST", "-vm/machines", 1, 408),
        FaultRule::act_then_fail("POST", "-relay/machines", 1, 408),
    ])
    .await;
    let (deployed, events) = deploy(&h.client("sim-token"), &h.spec("late")).await;
    deployed.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    assert_eq!(h.sim.fired_faults().len(), 2);
    let shape = h.shape().await;
    for app in shape["apps"].as_array().unwrap() {
        assert_eq!(app["machines"], serde_json::json!(["started"]), "{shape}");
    }
}

/// Teardown waits for each destroyed machine to let go of its volume before deleting it,
/// and says so, instead of leaving the volume behind.
#[tokio::test]
async fn teardown_waits_for_a_volume_to_be_let_go() {
    let h = Harness::start_with(|config| {
        config.quirks.volume_detach_after = Duration::from_secs(2);
    })
    .await;
    let fly = h.client("sim-token");
    let deployment = deploy(&fly, &h.spec("held")).await.0.unwrap();
    let log = RefCell::new(Vec::new());
    let leftovers = ops::teardown(
        &fly,
        &[&deployment.relay_app, &deployment.vm_app],
        &|e: &Event| log.borrow_mut().push(e.clone()),
    )
    .await
    .unwrap();
    only_the_webhook_is_left(&leftovers);
    let log = log.into_inner();
    assert!(
        said(&log, StepId::Teardown, "to let go of volume"),
        "{log:#?}"
    );
    assert_eq!(h.dump().await["apps"], serde_json::json!([]));
}
