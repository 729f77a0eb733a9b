//! The whole provisioning lifecycle against the sim's Machines API over loopback HTTP.
//! The sim refuses any request body that does not fit Fly's OpenAPI schema, so every test
//! here also proves that what provision sends is what Fly accepts.

mod common;

use common::{Harness, deploy, only_the_webhook_is_left};
use provision::spec::Images;
use provision::{Error, Event, StepId, StepState};
use provision::{ops, version};
use sim::faults::FaultRule;
use std::time::Duration;

#[tokio::test]
async fn a_full_deploy_creates_exactly_the_designed_resources() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    let spec = h.spec("full");
    let (result, events) = deploy(&fly, &spec).await;
    let deployment = result.unwrap();

    for step in StepId::ALL {
        assert!(
            events
                .iter()
                .any(|e| e.step == step && e.state == StepState::Done),
            "step {step:?} never finished: {events:#?}"
        );
    }
    assert_eq!(deployment.relay_app, "full-relay");
    assert_eq!(
        deployment.webhook_url,
        format!("{}/apps/full-relay/webhook/telegram", h.sim.base_url())
    );
    assert!(deployment.volume_id.starts_with("vol_"));

    let shape = h.shape().await;
    let relay = &shape["apps"][0];
    let vm = &shape["apps"][1];
    assert_eq!(relay["name"], "full-relay");
    assert_eq!(
        relay["secret_names"],
        serde_json::json!(["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "VM_TOKEN"])
    );
    assert_eq!(relay["ips"], serde_json::json!(["v6", "shared_v4"]));
    assert_eq!(relay["machines"], serde_json::json!(["started"]));
    assert_eq!(
        vm["secret_names"],
        serde_json::json!(["ANTHROPIC_API_KEY", "VM_TOKEN"])
    );
    assert_eq!(vm["ips"], serde_json::json!(["private_v6"]));
    assert_eq!(vm["volumes"], 1);

    // No event message carries a secret.
    let text = format!("{events:?}");
    assert!(!text.contains("sk-ant-test") && !text.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));

    // Both machines got the same VM_TOKEN, and the relay knows where the vm is.
    let relay_vm_url = h
        .http
        .get(format!("{}/apps/full-relay/env/VM_URL", h.sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Both apps are on the deployment's own private network, and the relay asks for the vm's
    // Flycast name from there.
    assert_eq!(
        relay_vm_url,
        format!("{}/net/textslash-full/flycast/full-vm", h.sim.base_url())
    );
    for app in ["full-relay", "full-vm"] {
        let provision::fly::AppName::Ours(shown) = fly.app_name(app).await.unwrap() else {
            panic!("{app} is not there");
        };
        assert_eq!(shown.network.as_deref(), Some("textslash-full"), "{app}");
    }
    let a = h
        .http
        .get(format!("{}/apps/full-relay/env/VM_TOKEN", h.sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let b = h
        .http
        .get(format!("{}/flycast/full-vm/env/VM_TOKEN", h.sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(a.len(), 64);
    assert_eq!(a, b);

    // Running the plan again changes nothing.
    let before = h.dump().await;
    let (again, events) = deploy(&fly, &spec).await;
    assert_eq!(again.unwrap().vm_machine_id, deployment.vm_machine_id);
    assert_eq!(h.dump().await, before);
    assert!(
        events
            .iter()
            .any(|e| e.step == StepId::VmMachine && e.state == StepState::AlreadyDone)
    );
}

/// Every call the plan makes, failed for good in turn: the run fails with a message, and a
/// second run ends exactly where an uninterrupted one does, with nothing duplicated.
#[tokio::test]
async fn a_failure_at_any_step_resumes_to_the_same_state() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    deploy(&fly, &h.spec("base")).await.0.unwrap();
    let baseline = h.shape().await.to_string().replace("base-", "PREFIX-");
    ops::teardown(&fly, &["base-relay", "base-vm"], &|_: &Event| {})
        .await
        .unwrap();

    // (`GET /tokens/current` is no cut point: its answer is advice, see
    // `a_token_fly_cannot_describe_still_deploys`.)
    let cut_points = [
        ("GET", "-relay"),
        ("POST", "/v1/apps"),
        ("GET", "/secrets"),
        ("POST", "/secrets"),
        ("POST", "/volumes"),
        ("POST", "-vm/machines"),
        ("POST", "-relay/machines"),
        ("POST", "-vm/ip_assignments"),
        ("POST", "-relay/ip_assignments"),
        ("GET", "/wait"),
    ];
    for (i, (method, path)) in cut_points.iter().enumerate() {
        let prefix = format!("cut{i}");
        h.faults(vec![FaultRule::fail(method, path, 1, 400)]).await;
        let (first, events) = deploy(&fly, &h.spec(&prefix)).await;
        let error = first.expect_err(&format!("a 400 on {method} {path} must stop the deploy"));
        assert!(matches!(error, Error::Api { status: 400, .. }), "{error:?}");
        assert!(
            events
                .iter()
                .any(|e| e.state == StepState::Failed && e.message == error.to_string())
        );
        h.faults(vec![]).await;
        deploy(&fly, &h.spec(&prefix))
            .await
            .0
            .unwrap_or_else(|e| panic!("resume after {method} {path}: {e}"));
        let shape = h
            .shape()
            .await
            .to_string()
            .replace(&format!("{prefix}-"), "PREFIX-");
        assert_eq!(shape, baseline, "after a failure on {method} {path}");
        let leftovers = ops::teardown(
            &fly,
            &[&format!("{prefix}-relay"), &format!("{prefix}-vm")],
            &|_: &Event| {},
        )
        .await
        .unwrap();
        only_the_webhook_is_left(&leftovers);
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_not_repeated() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    h.faults(vec![
        FaultRule::drop_after_acting("POST", "/v1/apps", 1),
        FaultRule::drop_after_acting("POST", "/volumes", 1),
        FaultRule::drop_after_acting("POST", "-vm/machines", 1),
        FaultRule::drop_after_acting("POST", "-relay/ip_assignments", 1),
    ])
    .await;
    deploy(&fly, &h.spec("lost")).await.0.unwrap();
    assert_eq!(h.sim.fired_faults().len(), 4);
    let shape = h.shape().await;
    assert_eq!(shape["apps"].as_array().unwrap().len(), 2);
    assert_eq!(shape["apps"][1]["volumes"], 1);
    assert_eq!(shape["apps"][1]["machines"], serde_json::json!(["started"]));
    assert_eq!(
        shape["apps"][0]["ips"],
        serde_json::json!(["v6", "shared_v4"])
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    h.faults(vec![
        FaultRule::fail("POST", "-relay/machines", 1, 429),
        FaultRule::fail("POST", "-relay/machines", 2, 429),
        FaultRule::fail("GET", "/volumes", 1, 503),
        FaultRule::fail("GET", "/wait", 1, 408),
    ])
    .await;
    deploy(&fly, &h.spec("busy")).await.0.unwrap();
    assert_eq!(h.sim.fired_faults().len(), 4);
    assert_eq!(
        h.shape().await["apps"][0]["machines"],
        serde_json::json!(["started"])
    );
}

#[tokio::test]
async fn errors_tell_the_user_what_to_do() {
    let h = Harness::start().await;
    let (bad, _) = deploy(&h.client("fm2_not-a-real-token"), &h.spec("nope")).await;
    let bad = bad.unwrap_err();
    assert_eq!(bad, Error::BadToken);
    assert!(bad.to_string().contains("fly tokens create org"));

    let (taken, events) = deploy(&h.client("sim-token"), &h.spec("taken")).await;
    let taken = taken.unwrap_err();
    assert_eq!(
        taken,
        Error::NameTaken {
            app: "taken-relay".into()
        }
    );
    assert!(taken.to_string().contains("Pick another prefix"));
    assert_eq!(events.last().unwrap().step, StepId::Names);
    assert_eq!(
        h.dump().await["apps"],
        serde_json::json!([]),
        "a refused deploy creates nothing"
    );

    let fly = h.client("sim-token");
    h.faults(vec![
        FaultRule::fail("POST", "/v1/apps", 1, 500),
        FaultRule::fail("POST", "/v1/apps", 2, 500),
        FaultRule::fail("POST", "/v1/apps", 3, 500),
        FaultRule::fail("POST", "/v1/apps", 4, 500),
        FaultRule::fail("POST", "/v1/apps", 5, 500),
        FaultRule::fail("POST", "/v1/apps", 6, 500),
        FaultRule::fail("POST", "/v1/apps", 7, 500),
        FaultRule::fail("POST", "/v1/apps", 8, 500),
    ])
    .await;
    let down = deploy(&fly, &h.spec("down")).await.0.unwrap_err();
    assert!(
        matches!(down, Error::Server { status: 500, .. }),
        "{down:?}"
    );
    assert!(down.to_string().contains("resumes where it stopped"));
}

#[tokio::test]
async fn a_private_image_is_named_and_stops_the_deploy() {
    // A fork whose image packages are still private (GHCR's default for a new package).
    let h =
        Harness::start_with(|config| config.images.private = vec!["ghcr.io/fork/".into()]).await;
    let fly = h.client("sim-token");
    let mut spec = h.spec("fork");
    spec.images = Images {
        relay: "ghcr.io/fork/textslash-relay:0.1.0".into(),
        vm: "ghcr.io/fork/textslash-vm:0.1.0".into(),
    };
    let (result, events) = deploy(&fly, &spec).await;
    let error = result.unwrap_err();
    assert_eq!(
        error,
        Error::ImagePrivate {
            image: "ghcr.io/fork/textslash-vm:0.1.0".into()
        }
    );
    let said = error.to_string();
    assert!(
        said.contains("Make the package public in GitHub → Packages")
            && said.contains("or use the default images"),
        "{said}"
    );
    assert!(!said.contains("token"), "never blame the token: {said}");
    assert_eq!(events.last().unwrap().step, StepId::VmMachine);
    let dump = h.dump().await;
    for app in dump["apps"].as_array().unwrap() {
        assert_eq!(
            app["machines"],
            serde_json::json!([]),
            "nothing more: {app}"
        );
    }

    // With the images made public (here: the default ones), a retry completes.
    spec.images = h.spec("fork").images;
    deploy(&fly, &spec).await.0.unwrap();
}

#[tokio::test]
async fn status_update_stop_start_and_teardown() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    let versioned = |version: &str| Images {
        relay: format!("test/relay:{version}"),
        vm: format!("test/vm:{version}@sha256:0"),
    };
    let mut spec = h.spec("ops");
    spec.images = versioned("0.1.0");
    let d = deploy(&fly, &spec).await.0.unwrap();
    let status_now = async || {
        ops::status(&fly, &d.relay_app, &d.vm_app, &d.relay_url)
            .await
            .unwrap()
    };

    let status = status_now().await;
    assert_eq!(status.relay_health.as_ref().unwrap()["version"], "echo");
    assert!(
        !status.shares_org_network(),
        "a new deployment has a network of its own"
    );
    assert_eq!(status.vm.machines[0].state, "started");
    assert_eq!(status.vm.machines[0].checks[0].status, "passing");
    assert_eq!(status.vm.volumes.len(), 1);

    ops::set_vm_running(&fly, &d.vm_app, false).await.unwrap();
    let status = status_now().await;
    assert_eq!(status.vm.machines[0].state, "stopped");
    ops::set_vm_running(&fly, &d.vm_app, true).await.unwrap();

    // Someone sets a field textslash does not model (as `fly machine update` could).
    let mut config = fly
        .machine_config_document(&d.vm_app, &d.vm_machine_id)
        .await
        .unwrap();
    config["stop_config"] = serde_json::json!({"signal": "SIGINT", "timeout": "30s"});
    fly.update_machine(&d.vm_app, &d.vm_machine_id, "ams", &config)
        .await
        .unwrap();

    let status = status_now().await;
    let newer = versioned("0.2.0");
    assert_eq!(
        status.standing(&newer).sentence("tap Update"),
        "Runs textslash 0.1.0; 0.2.0 is available: tap Update to move it to 0.2.0."
    );
    let update = |images: Images, back_allowed: bool| {
        let fly = &fly;
        let d = &d;
        async move {
            ops::update(
                fly,
                &d.relay_app,
                &d.vm_app,
                &d.relay_url,
                &images,
                back_allowed,
                &|_: &Event| {},
            )
            .await
        }
    };
    let changed = update(newer.clone(), false).await.unwrap();
    assert_eq!(
        version::describe_update(&changed, &newer),
        "Updated the agent machine from 0.1.0 to 0.2.0 and the relay from 0.1.0 to 0.2.0."
    );
    let status = status_now().await;
    assert_eq!(
        status.vm.machines[0].image.as_deref(),
        Some(newer.vm.as_str())
    );
    assert_eq!(
        status.standing(&newer),
        version::Standing::Current(version::Version::parse("0.2.0").unwrap())
    );
    let kept = fly
        .machine_config_document(&d.vm_app, &d.vm_machine_id)
        .await
        .unwrap();
    assert_eq!(kept["stop_config"]["signal"], "SIGINT", "{kept}");
    assert_eq!(kept["mounts"][0]["volume"], d.volume_id.as_str());
    assert_eq!(status.vm.volumes[0].id, d.volume_id, "the volume is kept");
    assert!(
        update(newer.clone(), false).await.unwrap().is_empty(),
        "same images: nothing to do"
    );

    // A page or CLI of an older version does not move it back, and changes nothing.
    let older = versioned("0.1.0");
    let refused = update(older.clone(), false).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "This deployment runs textslash 0.2.0, newer than this one (0.1.0), so an update from here would move it back. Update it from textslash 0.2.0 or newer."
    );
    let status = status_now().await;
    assert_eq!(
        status.vm.machines[0].image.as_deref(),
        Some(newer.vm.as_str())
    );
    assert_eq!(
        status.relay.machines[0].image.as_deref(),
        Some(newer.relay.as_str())
    );
    // Named on purpose (the CLI's --vm-image), it may.
    assert_eq!(update(older, true).await.unwrap().len(), 2);

    let leftovers = ops::teardown(&fly, &[&d.relay_app, &d.vm_app], &|_: &Event| {})
        .await
        .unwrap();
    only_the_webhook_is_left(&leftovers);
    assert_eq!(h.dump().await["apps"], serde_json::json!([]));
    let status = status_now().await;
    assert!(!status.relay.exists && !status.vm.exists);
}

#[tokio::test]
async fn a_start_that_answers_200_with_an_error_is_a_failure() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    let d = deploy(&fly, &h.spec("startfail")).await.0.unwrap();
    ops::set_vm_running(&fly, &d.vm_app, false).await.unwrap();
    // fly-go's MachineStartResponse: 200 with {status: "error", message}.
    h.faults(vec![FaultRule::answer(
        "POST",
        "/start",
        1,
        serde_json::json!({"status": "error", "message": "no capacity on host"}),
    )])
    .await;
    let error = ops::set_vm_running(&fly, &d.vm_app, true)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::StartFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("no capacity on host"), "{error}");
    assert!(error.to_string().contains("another region"), "{error}");
}

#[tokio::test]
async fn a_resume_in_another_region_moves_the_unused_volume_there() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    // No capacity for the vm in ams: the error says to pick another region.
    // The error's `status` code is SPEC `main.statusCode` "insufficient_capacity".
    h.faults(vec![FaultRule::answer_with(
        "POST",
        "startmove-vm/machines",
        1,
        412,
        serde_json::json!({"error": "no capacity in ams", "status": "insufficient_capacity"}),
    )])
    .await;
    let (first, _) = deploy(&fly, &h.spec("startmove")).await;
    let first = first.unwrap_err();
    assert!(first.to_string().contains("another region"), "{first}");
    let left: Vec<provision::fly::Volume> = fly.list_volumes("startmove-vm").await.unwrap();
    let live = |volumes: Vec<provision::fly::Volume>| -> Vec<provision::fly::Volume> {
        volumes.into_iter().filter(|v| v.is_live()).collect()
    };
    assert_eq!(left[0].region, "ams");

    let mut spec = h.spec("startmove");
    spec.region = "fra".into();
    let (d, events) = deploy(&fly, &spec).await;
    let d = d.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    let volumes = live(fly.list_volumes("startmove-vm").await.unwrap());
    assert_eq!(
        volumes.len(),
        1,
        "the unused ams volume is gone (or going): {volumes:?}"
    );
    assert_eq!(volumes[0].region, "fra");
    assert_eq!(volumes[0].id, d.volume_id);
    let machine = fly
        .get_machine("startmove-vm", &d.vm_machine_id)
        .await
        .unwrap();
    assert_eq!(machine.region.as_deref(), Some("fra"));
}

#[tokio::test]
async fn an_app_that_is_not_a_deployment_s_is_never_adopted_or_deleted() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    // The user's own app happens to be called like a deployment's relay.
    fly.create_app("mine-relay", "personal", "").await.unwrap();
    fly.wait_for_app("mine-relay", &|| {}).await.unwrap();
    let theirs = provision::fly::CreateMachineRequest {
        name: None,
        region: Some("ams".into()),
        config: provision::fly::MachineConfig {
            image: "test/relay:1".into(),
            ..Default::default()
        },
        min_secrets_version: None,
    };
    let mine = fly.create_machine("mine-relay", &theirs).await.unwrap();
    // A user's machine is older than a moment: wait until Fly's list shows it.
    sim::testing::eventually(
        "the user's machine listed",
        Duration::from_secs(10),
        async || {
            let listed = fly.list_machines("mine-relay").await.unwrap();
            listed.iter().any(|m| m.id == mine.id).then_some(())
        },
    )
    .await;

    let (refused, _) = deploy(&fly, &h.spec("mine")).await;
    let refused = refused.unwrap_err();
    assert_eq!(
        refused,
        Error::NotOurs {
            app: "mine-relay".into()
        }
    );
    assert!(refused.to_string().contains("Pick another prefix"));

    let leftovers = ops::teardown(&fly, &["mine-relay"], &|_: &Event| {})
        .await
        .unwrap();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert!(leftovers[0].why.contains("not a textslash deployment"));
    // Untouched: the app, its machine, and nothing created beside it.
    let dump = h.dump().await;
    assert_eq!(dump["apps"].as_array().unwrap().len(), 1, "{dump}");
    assert_eq!(dump["apps"][0]["name"], "mine-relay");
    assert_eq!(dump["apps"][0]["machines"][0][1], "started");
}

/// An empty app could be anyone's: teardown leaves it and says why (issue: ownership must not
/// be vacuous); a deploy may build on it, since an attempt that stopped right after creating
/// its apps leaves exactly that.
#[tokio::test]
async fn an_empty_app_is_never_deleted_but_a_deploy_may_build_on_it() {
    let h = Harness::start().await;
    let fly = h.client("sim-token");
    fly.create_app("hollow-vm", "personal", "").await.unwrap();
    fly.wait_for_app("hollow-vm", &|| {}).await.unwrap();

    let leftovers = ops::teardown(&fly, &["hollow-vm"], &|_: &Event| {})
        .await
        .unwrap();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert!(leftovers[0].why.contains("empty"), "{leftovers:?}");
    assert_eq!(h.dump().await["apps"][0]["name"], "hollow-vm");

    let (deployed, events) = deploy(&fly, &h.spec("hollow")).await;
    let d = deployed.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    // The app made on the org's network stays there (Fly cannot move it), and status says so.
    let status = ops::status(&fly, &d.relay_app, &d.vm_app, &d.relay_url)
        .await
        .unwrap();
    assert!(status.shares_org_network());
    let leftovers = ops::teardown(&fly, &["hollow-relay", "hollow-vm"], &|_: &Event| {})
        .await
        .unwrap();
    only_the_webhook_is_left(&leftovers);
    assert_eq!(h.dump().await["apps"], serde_json::json!([]));
}
