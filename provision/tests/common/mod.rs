//! What both sim test files share: a sim with echo machines, a client with quick retries, a
//! spec, and ways to look at the sim's state.

#![allow(dead_code)]

use provision::fly::RetryPolicy;
use provision::native::{ReqwestTransport, TokioClock};
use provision::ops;
use provision::spec::{Channel, DeploymentSpec, Images, Secret};
use provision::{Error, Event, FlyClient};
use serde_json::Value;
use sim::faults::FaultRule;
use sim::{Program, SimConfig, SimHandle};
use std::cell::RefCell;
use std::time::Duration;

pub type Client = FlyClient<ReqwestTransport, TokioClock>;

pub struct Harness {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A sim with every real-Fly behaviour on, at the sim's default (short) delays.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// A sim set up by `adjust` first (a longer lag, say).
    pub async fn start_with(adjust: impl FnOnce(&mut SimConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(dir.path().to_path_buf());
        config.images.rules = vec![
            ("relay".into(), Program::Echo),
            ("vm".into(), Program::Echo),
        ];
        // Deletes stay asynchronous, only quicker than the default, for twelve teardowns.
        config.deletion_delay = Duration::from_millis(300);
        adjust(&mut config);
        let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Harness {
            sim,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn client(&self, token: &str) -> Client {
        FlyClient::new(
            ReqwestTransport::new(),
            TokioClock,
            self.sim.base_url(),
            token,
        )
        .with_policy(RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            mutation_spacing: Duration::ZERO,
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(100),
        })
    }

    pub fn spec(&self, prefix: &str) -> DeploymentSpec {
        let mut spec = DeploymentSpec::new(
            prefix,
            "ams",
            Channel::Telegram {
                bot_token: Secret::new("123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            },
            Secret::new("sk-ant-test"),
        );
        spec.allowed_senders = vec!["telegram:42".into()];
        spec.images = Images {
            relay: "test/relay:1".into(),
            vm: "test/vm:1".into(),
        };
        spec.app_url = self.sim.app_url_template();
        spec
    }

    pub async fn faults(&self, rules: Vec<FaultRule>) {
        self.sim.set_faults(rules);
    }

    pub async fn dump(&self) -> Value {
        self.sim.state()
    }

    /// The dump without ids and versions: what must be equal between two ways to the same end.
    pub async fn shape(&self) -> Value {
        let mut dump = self.dump().await;
        for app in dump["apps"].as_array_mut().unwrap() {
            app["volumes"] = app["volumes"].as_array().unwrap().len().into();
            let states: Vec<Value> = app["machines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m[1].clone())
                .collect();
            app["machines"] = states.into();
            let kinds: Vec<Value> = app["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ip| ip.as_str().unwrap().split(' ').next().unwrap().into())
                .collect();
            app["ips"] = kinds.into();
            app.as_object_mut().unwrap().remove("secrets_version");
        }
        dump
    }
}

pub async fn deploy(
    fly: &Client,
    spec: &DeploymentSpec,
) -> (Result<provision::Deployment, Error>, Vec<Event>) {
    let log = RefCell::new(Vec::new());
    let result =
        provision::plan::deploy(fly, spec, &|e: &Event| log.borrow_mut().push(e.clone())).await;
    (result, log.into_inner())
}

/// The echo machines these tests run have no `/relay` to remove a channel's webhook with, so
/// teardown answers exactly what it would for such an image: one leftover, with the way to
/// remove it by hand. (`cli/tests/whole_system_on_sim.rs` runs the real relay, which removes it.)
pub fn only_the_webhook_is_left(leftovers: &[ops::Leftover]) {
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(leftovers[0].what, "the channel's webhook");
    assert!(
        leftovers[0].why.contains("exit code 127") && leftovers[0].why.contains("/deleteWebhook"),
        "{leftovers:?}"
    );
}
