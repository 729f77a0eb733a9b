//! What can be done to a deployment after it exists: [`status`], [`update`], [`set_vm_running`]
//! and [`teardown`]. They find resources by app name and listing, not by remembered ids, so
//! they also work on a deploy that stopped half-way.

use crate::error::Error;
use crate::fly::{AppName, CheckStatus, FlyClient, IpAssignment, Machine, Volume};
use crate::machines::{ROLE_KEY, Role};
use crate::plan::{Event, Progress, StepId, StepState, app_contents, fetch_health, find_machine};
use crate::relay_move;
use crate::spec::Images;
use crate::transport::{Clock, Transport};
use crate::version::{self, Change};
use serde::{Deserialize, Serialize};

/// One app's live state.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub exists: bool,
    /// Its private network; `default` is the org's, shared with every other app there.
    #[serde(default)]
    pub network: Option<String>,
    pub machines: Vec<MachineStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub ips: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct MachineStatus {
    pub id: String,
    pub role: Option<String>,
    pub state: String,
    pub image: Option<String>,
    pub checks: Vec<CheckStatus>,
}

impl MachineStatus {
    /// `textslash 0.2.0 (ghcr.io/…:0.2.0@sha256:…)`, or the image alone when its tag is no
    /// version.
    pub fn image_shown(&self) -> String {
        match self.image.as_deref() {
            None => "image unknown".into(),
            Some(image) => match version::of_image(image) {
                Some(v) => format!("textslash {v} ({image})"),
                None => format!("image {image}"),
            },
        }
    }

    /// `started (alive passing)`. A stopped machine's checks fail by definition, so they are
    /// left out; a sleeping agent machine is normal and the summary says so.
    pub fn summary(&self) -> String {
        let state = &self.state;
        if state == "stopped" || state == "suspended" {
            return if self.role.as_deref() == Some(Role::Vm.as_str()) {
                format!("{state}, wakes on the next message")
            } else {
                state.clone()
            };
        }
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{} {}", c.name, c.status))
            .collect();
        if checks.is_empty() {
            state.clone()
        } else {
            format!("{state} ({})", checks.join(", "))
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct VolumeStatus {
    pub id: String,
    pub name: String,
    pub size_gb: u32,
    pub state: String,
}

/// Said of a deployment whose agent shares the org's private network: Fly cannot move an app
/// to another network, so only a new deployment is isolated.
pub const SHARED_NETWORK: &str = "This deployment's apps share your organization's private network (they were deployed before textslash gave each deployment its own), so the agent can reach your other apps' private addresses there. Tear it down and deploy it again to isolate it.";

/// Everything the page's detail screen and `textslash status` show.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Status {
    pub relay: AppStatus,
    pub vm: AppStatus,
    /// The relay's `/health` document, or why it could not be read.
    pub relay_health: Result<serde_json::Value, String>,
}

impl Status {
    /// The deployment's version against the images on offer (see [`version::standing`]).
    pub fn standing(&self, offered: &Images) -> version::Standing {
        fn image(app: &AppStatus, role: Role) -> Option<&str> {
            app.machines
                .iter()
                .find(|m| m.role.as_deref() == Some(role.as_str()))
                .and_then(|m| m.image.as_deref())
        }
        version::standing(
            image(&self.relay, Role::Relay),
            image(&self.vm, Role::Vm),
            offered,
        )
    }

    /// Whether the agent shares the org's default private network.
    pub fn shares_org_network(&self) -> bool {
        self.vm.network.as_deref() == Some("default")
    }
}

pub async fn status<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    relay_app: &str,
    vm_app: &str,
    relay_url: &str,
) -> Result<Status, Error> {
    let (relay, vm) =
        futures::future::try_join(app_status(fly, relay_app), app_status(fly, vm_app)).await?;
    let relay_health = if relay.exists {
        fetch_health(fly.transport(), relay_url)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("the relay app does not exist".into())
    };
    Ok(Status {
        relay,
        vm,
        relay_health,
    })
}

async fn app_status<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
) -> Result<AppStatus, Error> {
    let network = match fly.app_name(app).await? {
        AppName::Ours(shown) => shown.network,
        AppName::Free => {
            return Ok(AppStatus {
                name: app.into(),
                ..Default::default()
            });
        }
        AppName::TakenElsewhere => {
            return Err(Error::Forbidden {
                action: format!("read {app}"),
            });
        }
    };
    let machines = fly.list_machines(app).await?;
    let volumes = fly.list_volumes(app).await?;
    let ips = fly.list_ips(app).await?;
    Ok(AppStatus {
        name: app.into(),
        exists: true,
        network,
        machines: machines
            .iter()
            .filter(|m| m.is_live())
            .map(|m| MachineStatus {
                id: m.id.clone(),
                role: m.metadata(ROLE_KEY).map(str::to_string),
                state: m.state.clone(),
                image: m.config.as_ref().map(|c| c.image.clone()),
                checks: m.checks.clone(),
            })
            .collect(),
        volumes: volumes
            .iter()
            .filter(|v| v.is_live())
            .map(|v| VolumeStatus {
                id: v.id.clone(),
                name: v.name.clone(),
                size_gb: v.size_gb,
                state: v.state.clone(),
            })
            .collect(),
        ips: ips
            .iter()
            .map(|ip| format!("{} {}", ip.kind().as_str(), ip.ip))
            .collect(),
    })
}

/// Moves both machines to new images, keeping everything else (the vm keeps its volume). A
/// relay from before the journal volume is moved onto one ([`crate::relay_move`]); the vm goes
/// first, since that move waits for the old relay to pass its messages to the vm. Returns the
/// machines that changed or were made, each with its image before and after.
///
/// Images older than the ones the deployment runs are refused ([`Error::WouldGoBack`]) unless
/// `back_allowed` (the CLI's explicit `--relay-image`/`--vm-image`): a page or CLI of an
/// older version must not quietly undo an update made from a newer one.
pub async fn update<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    relay_app: &str,
    vm_app: &str,
    relay_url: &str,
    images: &Images,
    back_allowed: bool,
    progress: &dyn Progress,
) -> Result<Vec<Change>, Error> {
    let (relay_machines, vm_machines) =
        futures::future::try_join(fly.list_machines(relay_app), fly.list_machines(vm_app)).await?;
    let image_of = |machines: &[Machine], role| {
        find_machine(machines, role).and_then(|m| m.config.as_ref().map(|c| c.image.clone()))
    };
    if let version::Standing::Ahead { deployed, offered } = version::standing(
        image_of(&relay_machines, Role::Relay).as_deref(),
        image_of(&vm_machines, Role::Vm).as_deref(),
        images,
    ) && !back_allowed
    {
        return Err(Error::WouldGoBack {
            deployed: deployed.to_string(),
            offered: offered.to_string(),
        });
    }
    let mut changed = Vec::new();
    for (app, role, image, machines) in [
        (vm_app, Role::Vm, &images.vm, vm_machines),
        (relay_app, Role::Relay, &images.relay, relay_machines),
    ] {
        // A relay without the volume left by an interrupted move is the one to finish with.
        let old_relay = machines.iter().find(|m| {
            m.is_live()
                && m.metadata(ROLE_KEY) == Some(Role::Relay.as_str())
                && !relay_move::has_journal_volume(m)
        });
        let machine = old_relay
            .filter(|_| role == Role::Relay)
            .or_else(|| find_machine(&machines, role))
            .ok_or_else(|| Error::NotFound {
                what: format!("the {} machine of {app}", role.as_str()),
            })?;
        if role == Role::Relay && !relay_move::has_journal_volume(machine) {
            let from = machine.config.as_ref().map(|c| c.image.clone());
            let moved =
                relay_move::move_onto_volume(fly, app, machine, image, relay_url, progress).await?;
            changed.push(Change {
                role: role.as_str().into(),
                machine: moved,
                from,
                to: image.clone(),
            });
            continue;
        }
        let from = machine.config.as_ref().map(|c| c.image.clone());
        if from.as_ref() == Some(image) {
            continue;
        }
        // An update replaces the whole config: edit the document Fly returned, so fields
        // textslash does not model (set with flyctl, or added by Fly) stay as they are.
        let mut config = fly.machine_config_document(app, &machine.id).await?;
        config["image"] = serde_json::Value::String(image.clone());
        let region = machine.region.clone().unwrap_or_default();
        fly.update_machine(app, &machine.id, &region, &config)
            .await?;
        changed.push(Change {
            role: role.as_str().into(),
            machine: machine.id.clone(),
            from,
            to: image.clone(),
        });
    }
    Ok(changed)
}

/// Starts or stops the vm machine (the relay stays up: it is the front door).
pub async fn set_vm_running<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    vm_app: &str,
    running: bool,
) -> Result<(), Error> {
    let machines = fly.list_machines(vm_app).await?;
    let machine = find_machine(&machines, Role::Vm).ok_or_else(|| Error::NotFound {
        what: format!("the vm machine of {vm_app}"),
    })?;
    if running {
        fly.start_machine(vm_app, &machine.id).await
    } else {
        fly.stop_machine(vm_app, &machine.id).await
    }
}

/// Something teardown could not remove, or a setting outside Fly only the user can change.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Leftover {
    pub what: String,
    pub why: String,
    /// Not on Fly: a channel's setting the user clears by hand (WhatsApp's webhook in Twilio).
    #[serde(default)]
    pub outside_fly: bool,
}

/// Removes machines, volumes, IPs and both apps, then checks each app is gone (404).
/// Returns what is left over; an empty list means nothing is.
pub async fn teardown<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    apps: &[&str],
    progress: &dyn Progress,
) -> Result<Vec<Leftover>, Error> {
    let mut leftovers = Vec::new();
    for &app in apps {
        tear_down_app(fly, app, progress, &mut leftovers).await?;
    }
    Ok(leftovers)
}

/// One app: its channel webhook (the relay's), machines, volumes, IPs, then the app itself,
/// each failure a leftover; an app that is not this deployment's is left alone.
async fn tear_down_app<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    progress: &dyn Progress,
    leftovers: &mut Vec<Leftover>,
) -> Result<(), Error> {
    let emit = |state, message: String| {
        progress.report(&Event {
            step: StepId::Teardown,
            state,
            message,
        })
    };
    emit(StepState::Running, format!("tearing down {app}"));
    match fly.app_name(app).await? {
        AppName::Free => {
            emit(StepState::AlreadyDone, format!("{app} does not exist"));
            return Ok(());
        }
        AppName::TakenElsewhere => {
            leftovers.push(Leftover {
                what: app.into(),
                why: "it belongs to another org".into(),
                outside_fly: false,
            });
            return Ok(());
        }
        AppName::Ours(_) => {}
    }
    // Only a deployment's own apps are deleted: named `<prefix>-relay`/`-vm`, holding
    // something of textslash's and nothing of anyone else's. A bookmark can name anything.
    let contents = app_contents(fly, app).await?;
    let machines = contents.machines.clone();
    if !Role::of_app(app).is_some_and(|role| role.owns(&contents)) {
        let why = if contents.is_empty() {
            "it is empty, so nothing shows it is a textslash deployment's, and it was left alone. If an attempt that stopped early created it, delete it in the Fly dashboard (the app → Settings → Delete app)"
        } else {
            "it is not a textslash deployment's (nothing in it was made by textslash), so it was left alone"
        };
        leftovers.push(Leftover {
            what: format!("app {app}"),
            why: why.into(),
            outside_fly: false,
        });
        emit(StepState::Failed, format!("{app} is not ours; left alone"));
        return Ok(());
    }
    let mut removed = Vec::new();
    if Role::of_app(app) == Some(Role::Relay) {
        match unregister_webhook(fly, app, &machines).await {
            Ok(Some(what)) => removed.push(what),
            Ok(None) => {}
            Err(leftover) => leftovers.push(leftover),
        }
    }
    for machine in machines.iter().filter(|m| m.is_live()) {
        record(
            leftovers,
            &mut removed,
            format!("machine {}", machine.id),
            fly.delete_machine(app, &machine.id).await,
        );
    }
    // Fly destroys machines after answering, and a volume stays attached (so cannot be
    // deleted) until its machine is gone: wait for that first.
    for machine in machines.iter().filter(|m| m.state != "destroyed") {
        emit(
            StepState::Running,
            format!(
                "waiting for machine {} of {app} to be destroyed",
                machine.id
            ),
        );
        if let Err(e) = wait_destroyed(fly, app, &machine.id).await {
            leftovers.push(Leftover {
                what: format!("machine {}", machine.id),
                why: e.to_string(),
                outside_fly: false,
            });
        }
    }
    for volume in fly
        .list_volumes(app)
        .await?
        .iter()
        .filter(|v: &&Volume| v.is_live())
    {
        record(
            leftovers,
            &mut removed,
            format!("volume {}", volume.id),
            delete_volume_when_free(fly, app, volume, &emit).await,
        );
    }
    for ip in fly
        .list_ips(app)
        .await?
        .iter()
        .map(|ip: &IpAssignment| ip.ip.clone())
    {
        record(
            leftovers,
            &mut removed,
            format!("IP {ip}"),
            fly.delete_ip(app, &ip).await,
        );
    }
    record(
        leftovers,
        &mut removed,
        format!("app {app}"),
        fly.delete_app(app).await,
    );
    emit(
        StepState::Running,
        format!("waiting for Fly to finish deleting {app}"),
    );
    match app_gone(fly, app).await {
        Ok(AppName::Free) => emit(StepState::Done, format!("removed {}", removed.join(", "))),
        Ok(_) => {
            leftovers.push(Leftover {
                what: format!("app {app}"),
                why: "it still exists after deletion".into(),
                outside_fly: false,
            });
            emit(StepState::Failed, format!("{app} still exists"));
        }
        Err(e) => leftovers.push(Leftover {
            what: format!("app {app}"),
            why: e.to_string(),
            outside_fly: false,
        }),
    }
    Ok(())
}

/// What `relay unregister-webhook` answers (one JSON line; see `relay/src/unregister.rs`).
#[derive(Deserialize)]
struct Unregistered {
    channel: String,
    removed: bool,
    #[serde(default)]
    error: Option<String>,
}

/// Removes the channel's webhook before the relay goes, so the channel stops calling a URL
/// that anyone could claim next by creating an app of that name. It runs the relay's own
/// `unregister-webhook` in its machine (the Machines API's exec), so the bot token is used
/// where it already is and stored nowhere new. WhatsApp's webhook is a field of the user's
/// Twilio console: the answer is a leftover saying which.
async fn unregister_webhook<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    machines: &[Machine],
) -> Result<Option<String>, Leftover> {
    let telegram_by_hand = |why: String| Leftover {
        what: "the channel's webhook".into(),
        why: format!(
            "{why}. If this was a Telegram bot, open https://api.telegram.org/bot<your bot token>/deleteWebhook in a browser, or Telegram keeps calling {app}.fly.dev, which anyone could claim next"
        ),
        outside_fly: false,
    };
    let Some(machine) = machines.iter().find(|m| m.is_live()) else {
        return Ok(None);
    };
    let unregistered: Unregistered = relay_answers(
        fly,
        app,
        machine,
        &["/relay", "unregister-webhook"],
        "remove it",
    )
    .await
    .map_err(telegram_by_hand)?;
    match (unregistered.channel.as_str(), unregistered.removed) {
        // Discord calls no URL: the Gateway connection ends with the relay.
        ("discord", _) => Ok(None),
        ("telegram", true) => Ok(Some("the Telegram webhook".into())),
        ("telegram", false) => Err(telegram_by_hand(format!(
            "Telegram did not remove it ({})",
            unregistered.error.unwrap_or_default()
        ))),
        _ => Err(Leftover {
            what: "the WhatsApp webhook in Twilio".into(),
            why: format!(
                "only you can clear it: in the Twilio console, open your WhatsApp sender (or the Sandbox settings) and empty “When a message comes in”, which still points at {app}.fly.dev"
            ),
            outside_fly: true,
        }),
    }
}

/// How long a destroyed machine may hold on to its volume.
const DETACH_PATIENCE_MS: u64 = 60_000;

/// Deletes a volume once no machine holds it: a destroyed machine lets go of its volume a
/// moment after it is gone (fly-go lists `waiting_for_detach` among a volume's dying states),
/// and Fly refuses to delete a volume still attached.
async fn delete_volume_when_free<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    volume: &Volume,
    emit: &dyn Fn(StepState, String),
) -> Result<(), Error> {
    let clock = fly.clock();
    let started = clock.now_ms();
    let mut holder = volume.attached_machine_id.clone();
    for attempt in 0.. {
        let Some(machine) = holder else {
            return fly.delete_volume(app, &volume.id).await;
        };
        if clock.now_ms().saturating_sub(started) >= DETACH_PATIENCE_MS {
            // Let Fly say why in its own words.
            return fly.delete_volume(app, &volume.id).await;
        }
        if attempt == 0 {
            emit(
                StepState::Running,
                format!(
                    "waiting for machine {machine} to let go of volume {}",
                    volume.id
                ),
            );
        }
        clock.sleep(fly.policy().poll(attempt)).await;
        holder = match fly
            .list_volumes(app)
            .await?
            .into_iter()
            .find(|v| v.id == volume.id)
        {
            Some(now) if now.is_live() => now.attached_machine_id,
            // Gone or going already: nothing left to delete.
            _ => return Ok(()),
        };
    }
    unreachable!("the loop returns")
}

/// Runs one of the relay's own commands in its machine (the Machines API's exec, in the
/// machine's environment, so secrets are used where they already are) and reads the JSON
/// line it answers. A stopped relay (the deployment was stopped) is started first: exec needs
/// a running machine. `Err` is why not, as a sentence ending in what it was to `doing`.
async fn relay_answers<T: Transport, C: Clock, R: serde::de::DeserializeOwned>(
    fly: &FlyClient<T, C>,
    app: &str,
    machine: &Machine,
    command: &[&str],
    doing: &str,
) -> Result<R, String> {
    if machine.state != "started" {
        let started = async {
            fly.start_machine(app, &machine.id).await?;
            fly.wait_machine(app, &machine.id, "started", 60).await
        };
        match started.await {
            Ok(true) => {}
            Ok(false) => return Err(format!("the relay did not start to {doing}")),
            Err(e) => return Err(format!("the relay could not start to {doing} ({e})")),
        }
    }
    let answer = fly
        .exec_machine(app, &machine.id, command, 60)
        .await
        .map_err(|e| format!("the relay could not be asked to {doing} ({e})"))?;
    answer
        .stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<R>(line).ok())
        .ok_or_else(|| {
            let said = answer.stderr.lines().last().unwrap_or("no answer");
            format!(
                "the relay could not {doing} (exit code {}: {said})",
                answer.exit_code
            )
        })
}

/// What `relay unpair` answers (see `relay/src/pairing.rs`).
#[derive(Deserialize)]
struct Unpaired {
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Removes a paired owner of the deployment (`None`: every one) by running `relay unpair` in
/// the relay's machine; returns who was removed. Owners in `ALLOWED_SENDERS` stay: they are
/// the relay's settings.
pub async fn unpair<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    relay_app: &str,
    sender: Option<&str>,
) -> Result<Vec<String>, Error> {
    let machines = fly.list_machines(relay_app).await?;
    let machine = find_machine(&machines, Role::Relay).ok_or_else(|| Error::NotFound {
        what: format!("the relay machine of {relay_app}"),
    })?;
    let failed = |detail: String| Error::RelayCommand {
        what: "remove the paired owners".into(),
        detail,
    };
    let answer: Unpaired = relay_answers(
        fly,
        relay_app,
        machine,
        &["/relay", "unpair", sender.unwrap_or("--all")],
        "remove owners",
    )
    .await
    .map_err(failed)?;
    match answer.error {
        Some(error) => Err(failed(error)),
        None => Ok(answer.removed),
    }
}

/// Waits until the machine is destroyed (or gone: a 404 means the same).
async fn wait_destroyed<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    id: &str,
) -> Result<(), Error> {
    // flyctl's `WaitForState`: a 404 while waiting for `destroyed` is success; a passing
    // failure is asked again.
    for attempt in 0..6 {
        match fly.wait_machine(app, id, "destroyed", 60).await {
            Ok(true) | Err(Error::NotFound { .. }) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.is_transient() => fly.clock().sleep(fly.policy().poll(attempt)).await,
            Err(e) => return Err(e),
        }
    }
    Err(Error::GaveUpWaiting {
        what: format!("machine {id} of {app} to be destroyed"),
        seconds: 360,
    })
}

/// Asks until the app is gone: an app delete answers 202 and finishes later, so the app
/// can still answer a GET for a while. Gives up after a minute and says what it saw.
async fn app_gone<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
) -> Result<AppName, Error> {
    const PATIENCE_MS: u64 = 60_000;
    let clock = fly.clock();
    let started = clock.now_ms();
    for attempt in 0.. {
        let seen = fly.app_name(app).await?;
        if matches!(seen, AppName::Free) || clock.now_ms() - started >= PATIENCE_MS {
            return Ok(seen);
        }
        let pause = fly.policy().backoff(attempt).clamp(
            std::time::Duration::from_millis(250),
            std::time::Duration::from_secs(5),
        );
        clock.sleep(pause).await;
    }
    unreachable!("the loop returns")
}

fn record(
    leftovers: &mut Vec<Leftover>,
    removed: &mut Vec<String>,
    what: String,
    result: Result<(), Error>,
) {
    match result {
        Ok(()) | Err(Error::NotFound { .. }) => removed.push(what),
        Err(e) => leftovers.push(Leftover {
            what,
            why: e.to_string(),
            outside_fly: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(role: &str, state: &str) -> MachineStatus {
        MachineStatus {
            id: "m1".into(),
            role: Some(role.into()),
            state: state.into(),
            image: None,
            checks: vec![CheckStatus {
                name: "alive".into(),
                status: if state == "started" {
                    "passing"
                } else {
                    "critical"
                }
                .into(),
                output: None,
            }],
        }
    }

    #[test]
    fn a_summary_shows_checks_only_for_a_running_machine() {
        assert_eq!(
            machine("relay", "started").summary(),
            "started (alive passing)"
        );
        assert_eq!(
            machine("vm", "stopped").summary(),
            "stopped, wakes on the next message"
        );
        assert_eq!(machine("relay", "stopped").summary(), "stopped");
    }
}
