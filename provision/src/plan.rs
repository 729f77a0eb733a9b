//! The deploy, as the ordered steps of the design (docs/design.md, "Provisioning plan").
//!
//! Every step first observes and acts only when something is missing, so running [`deploy`]
//! again after a failure at any point resumes it and ends in the same state as a run that
//! never failed, without duplicates. A transient failure inside a step (rate limit, 5xx, lost
//! answer) makes the step observe again before it acts again: that is how a create whose
//! answer was lost is looked up before it is repeated.
//!
//! Independent work runs concurrently: the two apps are created, given secrets and set up
//! side by side.

use crate::error::Error;
use crate::fly::{AppName, CreateVolumeRequest, FlyClient, IpKind, Machine};
use crate::machines::{self, RELAY_VOLUME_GB, RELAY_VOLUME_NAME, ROLE_KEY, Role, VOLUME_NAME};
use crate::random;
use crate::spec::{ChannelKind, DeploymentSpec};
use crate::transport::{Clock, HttpRequest, Method, Transport};
use futures::future::try_join;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;

/// The steps of a deploy, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepId {
    Token,
    Names,
    Apps,
    Secrets,
    Volume,
    VmMachine,
    VmIp,
    RelayMachine,
    RelayIps,
    Started,
    Health,
    /// Not a deploy step: teardown's progress.
    Teardown,
}

impl StepId {
    pub const ALL: [StepId; 11] = [
        StepId::Token,
        StepId::Names,
        StepId::Apps,
        StepId::Secrets,
        StepId::Volume,
        StepId::VmMachine,
        StepId::VmIp,
        StepId::RelayMachine,
        StepId::RelayIps,
        StepId::Started,
        StepId::Health,
    ];

    /// What the step does, as the page and the CLI show it.
    pub fn title(self) -> &'static str {
        match self {
            StepId::Token => "Check the Fly token",
            StepId::Names => "Check the app names are free",
            StepId::Apps => "Create the relay and vm apps",
            StepId::Secrets => "Store the secrets on Fly",
            StepId::Volume => "Create the volumes (the vm's work, the relay's journal)",
            StepId::VmMachine => "Create the vm machine",
            StepId::VmIp => "Give the vm a private (Flycast) address",
            StepId::RelayMachine => "Create the relay machine",
            StepId::RelayIps => "Give the relay public addresses",
            StepId::Started => "Wait for both machines to start",
            StepId::Health => "Check the relay answers",
            StepId::Teardown => "Tear down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    /// Done by this run.
    Done,
    /// Found already done (a resumed run).
    AlreadyDone,
    Failed,
}

/// Progress of a deploy, for the page and the CLI to render. `message` never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Event {
    pub step: StepId,
    pub state: StepState,
    pub message: String,
}

/// What a finished deploy is made of: everything a bookmark keeps, and no secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Deployment {
    pub prefix: String,
    pub org: String,
    pub region: String,
    pub channel: Option<ChannelKind>,
    pub relay_app: String,
    pub vm_app: String,
    pub relay_url: String,
    /// Where the channel delivers webhooks; empty for Discord (a Gateway connection).
    pub webhook_url: String,
    pub volume_id: String,
    /// The relay's journal volume (empty in bookmarks from before it had one).
    pub relay_volume_id: String,
    pub vm_machine_id: String,
    pub relay_machine_id: String,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

/// Reports progress. A plain closure works: `&|event: &Event| println!("{event:?}")`.
pub trait Progress {
    fn report(&self, event: &Event);
}

impl<F: Fn(&Event)> Progress for F {
    fn report(&self, event: &Event) {
        self(event)
    }
}

/// Runs (or resumes) the deploy of `spec`.
pub async fn deploy<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    spec: &DeploymentSpec,
    progress: &dyn Progress,
) -> Result<Deployment, Error> {
    spec.validate()?;
    let run = Run {
        fly,
        spec,
        progress,
    };
    let relay = spec.relay_app();
    let vm = spec.vm_app();

    let org = run.step(StepId::Token, || run.check_token()).await?;
    run.step(StepId::Names, || run.check_names()).await?;
    run.step(StepId::Apps, || async {
        let (a, b) = try_join(run.ensure_app(&relay, &org), run.ensure_app(&vm, &org)).await?;
        Ok(((), combine(a, b)))
    })
    .await?;
    let secrets_version = run.step(StepId::Secrets, || run.ensure_secrets()).await?;

    let (volume_id, relay_volume_id) = run
        .step(StepId::Volume, || async {
            let ((vm_volume, a), (relay_volume, b)) = try_join(
                run.ensure_volume(&vm, VOLUME_NAME, spec.volume_gb),
                run.ensure_volume(&relay, RELAY_VOLUME_NAME, RELAY_VOLUME_GB),
            )
            .await?;
            Ok(((vm_volume, relay_volume), combine(a, b)))
        })
        .await?;
    let vm_chain = async {
        let config = machines::vm_config(spec, &volume_id);
        let request = machines::machine_request(spec, config, Role::Vm, secrets_version.vm);
        let machine = run
            .step(StepId::VmMachine, || {
                run.ensure_machine(&vm, Role::Vm, &request)
            })
            .await?;
        run.step(StepId::VmIp, || {
            run.ensure_ips(&vm, &org, &[IpKind::PrivateV6])
        })
        .await?;
        Ok::<_, Error>(machine)
    };
    let relay_chain = async {
        let config = machines::relay_config(spec, &relay_volume_id);
        let request = machines::machine_request(spec, config, Role::Relay, secrets_version.relay);
        let machine = run
            .step(StepId::RelayMachine, || {
                run.ensure_machine(&relay, Role::Relay, &request)
            })
            .await?;
        run.step(StepId::RelayIps, || {
            run.ensure_ips(&relay, &org, &[IpKind::V6, IpKind::SharedV4])
        })
        .await?;
        Ok::<_, Error>(machine)
    };
    let (vm_machine, relay_machine) = try_join(vm_chain, relay_chain).await?;

    run.step(StepId::Started, || async {
        try_join(
            run.wait_started(&vm, &vm_machine),
            run.wait_started(&relay, &relay_machine),
        )
        .await?;
        Ok(((), Outcome::Done("both machines started".into())))
    })
    .await?;

    let relay_url = machines::app_url(&spec.app_url, &relay);
    run.step(StepId::Health, || run.check_health(&relay_url))
        .await?;

    Ok(Deployment {
        prefix: spec.prefix.clone(),
        org,
        region: spec.region.clone(),
        channel: Some(spec.channel.kind()),
        relay_app: relay,
        vm_app: vm,
        webhook_url: spec
            .channel
            .kind()
            .webhook_path()
            .map(|path| format!("{relay_url}{path}"))
            .unwrap_or_default(),
        relay_url,
        volume_id,
        relay_volume_id,
        vm_machine_id: vm_machine,
        relay_machine_id: relay_machine,
        created_at_ms: fly.clock().now_ms(),
    })
}

/// Whether a step had to act.
enum Outcome {
    Done(String),
    AlreadyDone(String),
}

fn combine(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::AlreadyDone(x), Outcome::AlreadyDone(y)) => {
            Outcome::AlreadyDone(format!("{x}; {y}"))
        }
        (
            Outcome::Done(x) | Outcome::AlreadyDone(x),
            Outcome::Done(y) | Outcome::AlreadyDone(y),
        ) => Outcome::Done(format!("{x}; {y}")),
    }
}

#[derive(Clone, Copy, Default)]
struct SecretsVersion {
    relay: Option<u64>,
    vm: Option<u64>,
}

struct Run<'a, T, C> {
    fly: &'a FlyClient<T, C>,
    spec: &'a DeploymentSpec,
    progress: &'a dyn Progress,
}

impl<T: Transport, C: Clock> Run<'_, T, C> {
    fn emit(&self, step: StepId, state: StepState, message: impl Into<String>) {
        self.progress.report(&Event {
            step,
            state,
            message: message.into(),
        });
    }

    /// Runs one step: observe-then-act, again from the observation after a transient failure.
    async fn step<R, F, Fut>(&self, id: StepId, attempt_once: F) -> Result<R, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(R, Outcome), Error>>,
    {
        self.emit(id, StepState::Running, id.title());
        let policy = self.fly.policy();
        let mut attempt = 0;
        loop {
            match attempt_once().await {
                Ok((value, Outcome::Done(message))) => {
                    self.emit(id, StepState::Done, message);
                    return Ok(value);
                }
                Ok((value, Outcome::AlreadyDone(message))) => {
                    self.emit(id, StepState::AlreadyDone, message);
                    return Ok(value);
                }
                Err(error) if error.is_transient() && attempt + 1 < policy.attempts => {
                    attempt += 1;
                    self.fly.clock().sleep(policy.backoff(attempt)).await;
                }
                Err(error) => {
                    self.emit(id, StepState::Failed, error.to_string());
                    return Err(error);
                }
            }
        }
    }

    async fn check_token(&self) -> Result<(String, Outcome), Error> {
        let current = self.fly.current_token().await?;
        current.usable()?;
        let token_org = current.tokens.iter().find_map(|t| t.org_slug.clone());
        let org = match (&self.spec.org, token_org) {
            (Some(org), _) => org.clone(),
            (None, Some(org)) => org,
            (None, None) => "personal".to_string(),
        };
        Ok((
            org.clone(),
            Outcome::Done(format!("token accepted, org {org}")),
        ))
    }

    async fn check_names(&self) -> Result<((), Outcome), Error> {
        let relay = self.spec.relay_app();
        let vm = self.spec.vm_app();
        let (a, b) = try_join(self.fly.app_name(&relay), self.fly.app_name(&vm)).await?;
        let mut ours = Vec::new();
        for (name, state) in [(&relay, a), (&vm, b)] {
            match state {
                AppName::TakenElsewhere => return Err(Error::NameTaken { app: name.clone() }),
                AppName::Ours(_) => {
                    self.ensure_ours(name).await?;
                    ours.push(name.clone())
                }
                AppName::Free => {}
            }
        }
        Ok((
            (),
            if ours.is_empty() {
                Outcome::Done("both names are free".into())
            } else {
                Outcome::Done(format!(
                    "resuming: {} already in your org",
                    ours.join(" and ")
                ))
            },
        ))
    }

    /// An existing app is adopted only if it is a deployment's: a same-named app of the
    /// user's own is never changed.
    async fn ensure_ours(&self, name: &str) -> Result<(), Error> {
        let role = Role::of_app(name).expect("deployment apps end in -relay or -vm");
        if role.owns(&self.fly.list_machines(name).await?) {
            Ok(())
        } else {
            Err(Error::NotOurs { app: name.into() })
        }
    }

    async fn ensure_app(&self, name: &str, org: &str) -> Result<Outcome, Error> {
        if let AppName::Ours(_) = self.fly.app_name(name).await? {
            self.ensure_ours(name).await?;
            return Ok(Outcome::AlreadyDone(format!("{name} exists")));
        }
        self.fly.create_app(name, org).await?;
        Ok(Outcome::Done(format!("{name} created")))
    }

    /// Both apps get their secrets together, because they share a freshly generated
    /// `VM_TOKEN`: if either app lacks one of its secrets, both are set again.
    async fn ensure_secrets(&self) -> Result<(SecretsVersion, Outcome), Error> {
        let relay = self.spec.relay_app();
        let vm = self.spec.vm_app();
        let vm_token = random::token_hex(32);
        let webhook_secret = random::token_hex(24);
        let relay_values = machines::relay_secrets(self.spec, &vm_token, &webhook_secret);
        let vm_values = machines::vm_secrets(self.spec, &vm_token);

        let (have_relay, have_vm) =
            try_join(self.fly.list_secrets(&relay), self.fly.list_secrets(&vm)).await?;
        let complete = |have: &crate::fly::AppSecrets,
                        want: &std::collections::BTreeMap<String, String>| {
            let names: BTreeSet<&str> = have.secrets.iter().map(|s| s.name.as_str()).collect();
            want.keys().all(|k| names.contains(k.as_str()))
        };
        if complete(&have_relay, &relay_values) && complete(&have_vm, &vm_values) {
            return Ok((
                SecretsVersion::default(),
                Outcome::AlreadyDone("secrets already set".into()),
            ));
        }
        let names = |values: &std::collections::BTreeMap<String, String>| {
            values.keys().cloned().collect::<Vec<_>>().join(", ")
        };
        let message = format!("relay: {}; vm: {}", names(&relay_values), names(&vm_values));
        let (relay_version, vm_version) = try_join(
            self.fly.set_secrets(&relay, relay_values),
            self.fly.set_secrets(&vm, vm_values),
        )
        .await?;
        Ok((
            SecretsVersion {
                relay: relay_version,
                vm: vm_version,
            },
            Outcome::Done(message),
        ))
    }

    /// Reuses the app's volume `name` when a machine already uses it or it is in the chosen
    /// region. An unused one in another region is what an earlier attempt left before the
    /// user picked another region (Fly had no capacity, say): a machine can only mount a
    /// volume in its own region, so that one is deleted and a new one made where the machine
    /// will be.
    async fn ensure_volume(
        &self,
        app: &str,
        name: &str,
        size_gb: u32,
    ) -> Result<(String, Outcome), Error> {
        let existing = self.fly.list_volumes(app).await?;
        let ours = |v: &&crate::fly::Volume| v.name == name && v.is_live();
        if let Some(volume) = existing
            .iter()
            .filter(ours)
            .find(|v| v.attached_machine_id.is_some() || v.region == self.spec.region)
        {
            return Ok((
                volume.id.clone(),
                Outcome::AlreadyDone(format!("volume {} exists", volume.id)),
            ));
        }
        let mut replaced = Vec::new();
        for stale in existing.iter().filter(ours) {
            self.fly.delete_volume(app, &stale.id).await?;
            replaced.push(format!("removed {} left in {}", stale.id, stale.region));
        }
        let request = CreateVolumeRequest {
            name: name.into(),
            region: self.spec.region.clone(),
            size_gb,
            require_unique_zone: false,
        };
        let volume = self.fly.create_volume(app, &request).await?;
        let mut message = format!(
            "{app}: volume {} ({size_gb} GB in {})",
            volume.id, self.spec.region
        );
        if !replaced.is_empty() {
            message = format!("{message}; {}", replaced.join(", "));
        }
        Ok((volume.id.clone(), Outcome::Done(message)))
    }

    async fn ensure_machine(
        &self,
        app: &str,
        role: Role,
        request: &crate::fly::CreateMachineRequest,
    ) -> Result<(String, Outcome), Error> {
        if let Some(machine) = find_machine(&self.fly.list_machines(app).await?, role) {
            return Ok((
                machine.id.clone(),
                Outcome::AlreadyDone(format!("machine {} exists", machine.id)),
            ));
        }
        let machine = self.fly.create_machine(app, request).await?;
        Ok((
            machine.id.clone(),
            Outcome::Done(format!("machine {} created", machine.id)),
        ))
    }

    async fn ensure_ips(
        &self,
        app: &str,
        org: &str,
        kinds: &[IpKind],
    ) -> Result<((), Outcome), Error> {
        let existing = self.fly.list_ips(app).await?;
        let mut added = Vec::new();
        for &kind in kinds {
            if !existing.iter().any(|ip| ip.kind() == kind) {
                let ip = self.fly.assign_ip(app, kind, org).await?;
                added.push(format!("{} {}", kind.as_str(), ip.ip));
            }
        }
        Ok((
            (),
            if added.is_empty() {
                Outcome::AlreadyDone("addresses already assigned".into())
            } else {
                Outcome::Done(added.join(", "))
            },
        ))
    }

    async fn wait_started(&self, app: &str, machine: &str) -> Result<(), Error> {
        // Fly caps one wait at 60 s and answers 408 when it runs out: ask a few times.
        for _ in 0..5 {
            if self.fly.wait_machine(app, machine, "started", 60).await? {
                return Ok(());
            }
        }
        Err(Error::Timeout {
            what: format!("machine {machine} of {app} to start"),
        })
    }

    /// The relay's own `/health`, without the Fly token (it is not Fly's API).
    async fn check_health(&self, relay_url: &str) -> Result<((), Outcome), Error> {
        let health = fetch_health(self.fly.transport(), relay_url).await?;
        let version = health
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        Ok((
            (),
            Outcome::Done(format!("relay {version} answers at {relay_url}")),
        ))
    }
}

/// The live machine of `role` among an app's machines.
pub fn find_machine(machines: &[Machine], role: Role) -> Option<&Machine> {
    machines
        .iter()
        .find(|m| m.is_live() && m.metadata(ROLE_KEY) == Some(role.as_str()))
}

/// `GET <relay_url>/health` as JSON. Errors are transient: a new relay takes a moment.
pub async fn fetch_health<T: Transport>(
    transport: &T,
    relay_url: &str,
) -> Result<serde_json::Value, Error> {
    let url = format!("{relay_url}/health");
    let host = relay_url
        .split("://")
        .nth(1)
        .unwrap_or(relay_url)
        .to_string();
    let request = HttpRequest {
        method: Method::Get,
        url,
        headers: Vec::new(),
        body: None,
    };
    match transport.send(request).await {
        Ok(resp) if resp.status == 200 => {
            serde_json::from_str(&resp.body).map_err(|e| Error::BadResponse {
                action: "read the relay's health".into(),
                detail: e.to_string(),
            })
        }
        Ok(resp) => Err(Error::Unreachable {
            host,
            detail: format!("its /health answered HTTP {}", resp.status),
        }),
        Err(e) => Err(Error::Unreachable {
            host,
            detail: e.to_string(),
        }),
    }
}
