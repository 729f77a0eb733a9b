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
//!
//! Each step is as patient as the real platform needs (docs/fly-machines-api.md §11), and
//! says what it waits for in a `Running` event: a new app becoming visible (up to a minute,
//! as fly-go's `WaitForApp`), a new machine starting (five minutes, asking again after a 404
//! while Fly's lists catch up, as flyctl's `WaitForState`), and a new `<relay>.fly.dev` name
//! resolving (70 s, as flyctl's `checkDNS`). A real failure is still reported once the wait
//! is over.

use crate::error::Error;
use crate::fly::{AppName, CreateVolumeRequest, FlyClient, IpKind, Machine, Volume};
use crate::machines::{self, RELAY_VOLUME_GB, RELAY_VOLUME_NAME, ROLE_KEY, Role, VOLUME_NAME};
use crate::random;
use crate::spec::{ChannelKind, DeploymentSpec};
use crate::transport::{Clock, HttpRequest, Method, Transport};
use futures::future::try_join;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

/// How long a step lets Fly's listings catch up before it observes again after an ambiguous
/// failure: a create that timed out may have happened, and lists lag writes (flyctl
/// `strategy_bluegreen.go` `launchLookupDelay`, 500 ms).
const SETTLE: Duration = Duration::from_millis(500);

/// How long a new machine may take to start (flyctl's default `--wait-timeout`, 5 minutes).
const START_PATIENCE: Duration = Duration::from_secs(300);

/// How long a new `<app>.fly.dev` name may take to resolve (flyctl `checkDNS`: 70 s).
const DNS_PATIENCE: Duration = Duration::from_secs(70);

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
    /// Not a deploy step: update's progress.
    Update,
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
            StepId::Update => "Update",
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
        ours: Default::default(),
    };
    let relay = spec.relay_app();
    let vm = spec.vm_app();

    let org = run.step(StepId::Token, || run.check_token()).await?;
    let network = run.step(StepId::Names, || run.check_names()).await?;
    run.step(StepId::Apps, || async {
        let (a, b) = try_join(
            run.ensure_app(&relay, &org, &network),
            run.ensure_app(&vm, &org, &network),
        )
        .await?;
        Ok(((), combine(a, b)))
    })
    .await?;
    let secrets_version = run.step(StepId::Secrets, || run.ensure_secrets()).await?;

    let (vm_volume, relay_volume) = run
        .step(StepId::Volume, || async {
            let ((vm_volume, a), (relay_volume, b)) = try_join(
                run.ensure_volume(&vm, VOLUME_NAME, spec.volume_gb),
                run.ensure_volume(&relay, RELAY_VOLUME_NAME, RELAY_VOLUME_GB),
            )
            .await?;
            Ok(((vm_volume, relay_volume), combine(a, b)))
        })
        .await?;
    let (volume_id, relay_volume_id) = (vm_volume.id.clone(), relay_volume.id.clone());
    let vm_chain = async {
        let config = machines::vm_config(spec, &volume_id);
        let request = machines::machine_request(spec, config, Role::Vm, secrets_version.vm);
        let machine = run
            .step(StepId::VmMachine, || {
                run.ensure_machine(&vm, Role::Vm, &request, &vm_volume)
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
                run.ensure_machine(&relay, Role::Relay, &request, &relay_volume)
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
    /// Apps this run created or found to be the deployment's: not looked into again (a
    /// created one is ours even before it holds anything of ours).
    ours: std::cell::RefCell<BTreeSet<String>>,
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
                    self.fly
                        .clock()
                        .sleep(policy.backoff(attempt).max(SETTLE))
                        .await;
                }
                Err(error) => {
                    self.emit(id, StepState::Failed, error.to_string());
                    return Err(error);
                }
            }
        }
    }

    async fn check_token(&self) -> Result<(String, Outcome), Error> {
        let checked = crate::token::check(self.fly).await?;
        let org = match (&self.spec.org, checked.org) {
            (Some(org), _) => org.clone(),
            (None, Some(org)) => org,
            (None, None) => "personal".to_string(),
        };
        let mut message = format!("token accepted, org {org}");
        if let Some(note) = checked.note {
            message = format!("{message} ({note})");
        }
        Ok((org, Outcome::Done(message)))
    }

    /// Checks both names, and returns the private network a missing app is created on: the
    /// deployment's own, or, when one app exists already, the one it is on (Fly cannot move an
    /// app between networks, and the relay reaches the vm's Flycast address only from the
    /// vm's network). `""` is the org's default.
    async fn check_names(&self) -> Result<(String, Outcome), Error> {
        let relay = self.spec.relay_app();
        let vm = self.spec.vm_app();
        let (a, b) = try_join(self.fly.app_name(&relay), self.fly.app_name(&vm)).await?;
        let mut ours = Vec::new();
        let mut networks = BTreeSet::new();
        for (name, state) in [(&relay, a), (&vm, b)] {
            match state {
                AppName::TakenElsewhere => return Err(Error::NameTaken { app: name.clone() }),
                AppName::Ours(app) => {
                    self.ensure_ours(name).await?;
                    ours.push(name.clone());
                    networks.insert(match app.network.as_deref() {
                        None | Some("default") => String::new(),
                        Some(network) => network.to_string(),
                    });
                }
                AppName::Free => {}
            }
        }
        let network = match networks.len() {
            0 => self.spec.network(),
            1 => networks.pop_first().unwrap_or_default(),
            _ => {
                return Err(Error::SplitNetworks {
                    relay: relay.clone(),
                    vm: vm.clone(),
                });
            }
        };
        Ok((
            network,
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

    /// An existing app is adopted only if it is a deployment's, or empty (an earlier attempt
    /// stopped right after creating it), or this run created it: a same-named app of the
    /// user's own that holds anything is never changed.
    async fn ensure_ours(&self, name: &str) -> Result<(), Error> {
        if self.ours.borrow().contains(name) {
            return Ok(());
        }
        let role = Role::of_app(name).expect("deployment apps end in -relay or -vm");
        if role.may_adopt(&app_contents(self.fly, name).await?) {
            self.ours.borrow_mut().insert(name.to_string());
            Ok(())
        } else {
            Err(Error::NotOurs { app: name.into() })
        }
    }

    /// Creates the app and waits until Fly shows it: a new app answers 404 or 401 for a
    /// moment, and every later call is about it.
    async fn ensure_app(&self, name: &str, org: &str, network: &str) -> Result<Outcome, Error> {
        if let AppName::Ours(_) = self.fly.app_name(name).await? {
            self.ensure_ours(name).await?;
            return Ok(Outcome::AlreadyDone(format!("{name} exists")));
        }
        let waiting = || {
            self.emit(
                StepId::Apps,
                StepState::Running,
                format!("waiting for Fly to show the new app {name} (a new app takes a moment)"),
            )
        };
        self.ours.borrow_mut().insert(name.to_string());
        match self.fly.create_app(name, org, network).await {
            Ok(()) => {
                self.fly.wait_for_app(name, &waiting).await?;
                Ok(Outcome::Done(format!("{name} created")))
            }
            // Free a moment ago and taken now: most likely this deploy's own app from an
            // attempt whose answer was lost, not yet visible. Wait for it to show, and adopt it
            // only if it is ours; another org's answers 403, which is taken.
            Err(Error::NameTaken { .. }) => {
                self.fly
                    .wait_for_app(name, &waiting)
                    .await
                    .map_err(|e| match e {
                        Error::GaveUpWaiting { .. } => Error::NameTaken { app: name.into() },
                        other => other,
                    })?;
                self.ensure_ours(name).await?;
                Ok(Outcome::Done(format!("{name} created")))
            }
            Err(e) => Err(e),
        }
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
    ) -> Result<(Volume, Outcome), Error> {
        let existing = self.fly.list_volumes(app).await?;
        let ours = |v: &&crate::fly::Volume| v.name == name && v.is_live();
        if let Some(volume) = existing
            .iter()
            .filter(ours)
            .find(|v| v.attached_machine_id.is_some() || v.region == self.spec.region)
        {
            return Ok((
                volume.clone(),
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
        Ok((volume, Outcome::Done(message)))
    }

    /// Finds the role's machine, or creates it. Machine lists lag writes (flyctl reads them
    /// from a replicated store), so a machine an interrupted attempt created may not be
    /// listed yet; the volume it mounts already says it is there, and only this role's
    /// machine mounts this volume.
    async fn ensure_machine(
        &self,
        app: &str,
        role: Role,
        request: &crate::fly::CreateMachineRequest,
        volume: &Volume,
    ) -> Result<(String, Outcome), Error> {
        let machines = self.fly.list_machines(app).await?;
        if let Some(machine) = find_machine(&machines, role) {
            return Ok((
                machine.id.clone(),
                Outcome::AlreadyDone(format!("machine {} exists", machine.id)),
            ));
        }
        if let Some(holder) = &volume.attached_machine_id
            && !machines.iter().any(|m| &m.id == holder)
        {
            return Ok((
                holder.clone(),
                Outcome::AlreadyDone(format!(
                    "machine {holder} exists (it holds volume {}; Fly's list has not caught up yet)",
                    volume.id
                )),
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
        wait_until_started(self.fly, app, machine, &|| {
            self.emit(
                StepId::Started,
                StepState::Running,
                format!("waiting for machine {machine} of {app} to start"),
            )
        })
        .await
    }

    /// The relay's own `/health`, without the Fly token (it is not Fly's API). A new app's
    /// name takes a while to resolve everywhere (flyctl's `checkDNS` gives it 70 s), so a
    /// relay that cannot be reached is asked again until then, saying so.
    async fn check_health(&self, relay_url: &str) -> Result<((), Outcome), Error> {
        let clock = self.fly.clock();
        let started = clock.now_ms();
        let mut attempt = 0;
        let health = loop {
            match fetch_health(self.fly.transport(), relay_url).await {
                Ok(health) => break health,
                Err(Error::Unreachable { detail, .. })
                    if clock.now_ms().saturating_sub(started)
                        >= DNS_PATIENCE.as_millis() as u64 =>
                {
                    return Err(Error::RelayNotAnswering {
                        url: relay_url.into(),
                        seconds: DNS_PATIENCE.as_secs(),
                        detail,
                    });
                }
                Err(error @ Error::Unreachable { .. }) => {
                    if attempt == 0 {
                        self.emit(
                            StepId::Health,
                            StepState::Running,
                            format!(
                                "waiting for {} to answer (a new name can take a minute to resolve): {error}",
                                crate::fly::host_of(relay_url)
                            ),
                        );
                    }
                    clock.sleep(self.fly.policy().poll(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
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

/// Everything in an app that says whose it is ([`Role::owns`]).
pub(crate) async fn app_contents<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
) -> Result<crate::machines::AppContents, Error> {
    let ((machines, volumes), (secrets, ips)) = try_join(
        try_join(fly.list_machines(app), fly.list_volumes(app)),
        try_join(fly.list_secrets(app), fly.list_ips(app)),
    )
    .await?;
    Ok(crate::machines::AppContents {
        machines,
        volumes,
        secret_names: secrets.secrets.into_iter().map(|s| s.name).collect(),
        ip_count: ips.len(),
    })
}

/// The live machine of `role` among an app's machines.
pub fn find_machine(machines: &[Machine], role: Role) -> Option<&Machine> {
    machines
        .iter()
        .find(|m| m.is_live() && m.metadata(ROLE_KEY) == Some(role.as_str()))
}

/// Waits for `started` as flyctl's `WaitForState` does: Fly caps one wait at 60 s and
/// answers 408 when it runs out; a machine created a moment ago may answer 404 until the
/// lists catch up; other failures are asked again after a pause. Only a 400 (the wait
/// itself is wrong) ends it early. `on_wait` is called once, when the first wait ran out.
pub(crate) async fn wait_until_started<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    machine: &str,
    on_wait: &dyn Fn(),
) -> Result<(), Error> {
    let clock = fly.clock();
    let started = clock.now_ms();
    for attempt in 0.. {
        match fly.wait_machine(app, machine, "started", 60).await {
            Ok(true) => return Ok(()),
            Ok(false) | Err(Error::NotFound { .. }) => {}
            Err(error) if error.is_transient() => {}
            Err(error) => return Err(error),
        }
        if clock.now_ms().saturating_sub(started) >= START_PATIENCE.as_millis() as u64 {
            break;
        }
        if attempt == 0 {
            on_wait();
        }
        clock.sleep(fly.policy().poll(attempt)).await;
    }
    Err(Error::GaveUpWaiting {
        what: format!("machine {machine} of {app} to start"),
        seconds: START_PATIENCE.as_secs(),
    })
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
