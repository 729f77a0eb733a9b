//! An old deployment's relay moved onto its journal volume, by `update`.
//!
//! Relays deployed before textslash gave them a volume keep their journal on the root
//! filesystem, which Fly rebuilds from the image on every restart and update. Fly cannot add a
//! volume to an existing machine, so the relay is replaced the way flyctl's blue/green deploys
//! replace machines (`internal/command/deploy/strategy_bluegreen.go`):
//!
//! 1. the journal volume, in the old machine's region;
//! 2. the new machine ("green"): the old config document with the new image and the mount,
//!    created out of the proxy's routing (`skip_service_registration`) and waited for;
//! 3. the old machine ("blue") is still the only one routed, so the relay's public `/health`
//!    is its own: wait until its journal holds nothing for the vm or the channel. Relays that
//!    old have no way to hand their journal over, so what it holds is passed on, not copied.
//!    It passes messages to the vm, so the vm is updated first;
//! 4. green is routed, and after flyctl's `waitBeforeCordon` blue is cordoned, then given a
//!    moment to pass on what it accepted in between, and destroyed.
//!
//! If blue cannot empty its journal (the agent does not start), green is removed again and
//! blue keeps serving: nothing it holds is lost, and the error says what to fix.

use crate::error::Error;
use crate::fly::{CreateVolumeRequest, FlyClient, Machine, Volume};
use crate::machines::{RELAY_DATA_PATH, RELAY_VOLUME_GB, RELAY_VOLUME_NAME};
use crate::plan::{Event, Progress, StepId, StepState, fetch_health, wait_until_started};
use crate::transport::{Clock, Transport};
use serde_json::{Value, json};
use std::time::Duration;

/// How long the old relay is given to pass on what its journal holds.
const DRAIN_PATIENCE: Duration = Duration::from_secs(180);
/// flyctl waits this long after routing green before it cordons blue (`waitBeforeCordon`), so
/// the proxy knows the new machine before the old one leaves.
const WAIT_BEFORE_CORDON: Duration = Duration::from_secs(10);
/// After blue is cordoned: time to pass on a message it accepted in the last moment.
const AFTER_CORDON: Duration = Duration::from_secs(5);

/// Whether `machine` keeps its journal on the relay's volume.
pub fn has_journal_volume(machine: &Machine) -> bool {
    machine
        .config
        .as_ref()
        .is_some_and(|c| c.mounts.iter().any(|m| m.path == RELAY_DATA_PATH))
}

/// Replaces `old`, a relay machine without the journal volume, by one on the volume running
/// `image`. Returns the new machine's id. Safe to run again after an interruption: the volume
/// and a new machine already made are found and used.
pub async fn move_onto_volume<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    old: &Machine,
    image: &str,
    relay_url: &str,
    progress: &dyn Progress,
) -> Result<String, Error> {
    let say = |message: String| {
        progress.report(&Event {
            step: StepId::Update,
            state: StepState::Running,
            message,
        })
    };
    say(format!(
        "{app}'s relay keeps its journal on a disk Fly wipes on restart: moving it onto a volume"
    ));
    let region = old.region.clone().unwrap_or_default();
    let volume = journal_volume(fly, app, &region).await?;
    let new = match volume.attached_machine_id.clone() {
        Some(id) => id,
        None => {
            let mut config = fly.machine_config_document(app, &old.id).await?;
            config["image"] = json!(image);
            config["mounts"] = json!([{ "volume": volume.id, "path": RELAY_DATA_PATH }]);
            if !config["env"].is_object() {
                config["env"] = json!({});
            }
            config["env"]["DATA_DIR"] = json!(RELAY_DATA_PATH);
            fly.create_machine_from_document(app, &region, &config, false)
                .await?
                .id
        }
    };
    say(format!("waiting for the new relay machine {new} to start"));
    wait_until_started(fly, app, &new, &|| {}).await?;

    if let Err(error) = drain(fly, relay_url, &say).await {
        // Blue keeps serving; green never did. A later update starts again from here.
        let _ = fly.delete_machine(app, &new).await;
        return Err(error);
    }
    fly.uncordon_machine(app, &new).await?;
    fly.clock().sleep(WAIT_BEFORE_CORDON).await;
    fly.cordon_machine(app, &old.id).await?;
    say(format!(
        "letting the old relay machine {} finish what it was doing",
        old.id
    ));
    fly.clock().sleep(AFTER_CORDON).await;
    fly.delete_machine(app, &old.id).await?;
    say(format!(
        "the relay now runs as machine {new}, its journal on volume {}",
        volume.id
    ));
    Ok(new)
}

/// The relay's journal volume in `region`: an earlier attempt's, or a new one.
async fn journal_volume<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    app: &str,
    region: &str,
) -> Result<Volume, Error> {
    let existing = fly.list_volumes(app).await?;
    if let Some(volume) = existing
        .into_iter()
        .find(|v| v.name == RELAY_VOLUME_NAME && v.is_live() && v.region == region)
    {
        return Ok(volume);
    }
    fly.create_volume(
        app,
        &CreateVolumeRequest {
            name: RELAY_VOLUME_NAME.into(),
            region: region.into(),
            size_gb: RELAY_VOLUME_GB,
            require_unique_zone: false,
        },
    )
    .await
}

/// Waits until the routed relay's journal holds nothing for the vm or the channel, as its
/// `/health` says (`journal.waiting_for_vm`, `journal.waiting_for_channel`: reported by every
/// relay version, including those from before the volume).
async fn drain<T: Transport, C: Clock>(
    fly: &FlyClient<T, C>,
    relay_url: &str,
    say: &dyn Fn(String),
) -> Result<(), Error> {
    let clock = fly.clock();
    let started = clock.now_ms();
    let mut last_said = None;
    for attempt in 0.. {
        let waiting = fetch_health(fly.transport(), relay_url)
            .await
            .ok()
            .and_then(|health| waiting_in_journal(&health));
        if waiting == Some(0) {
            return Ok(());
        }
        if clock.now_ms().saturating_sub(started) >= DRAIN_PATIENCE.as_millis() as u64 {
            return Err(Error::RelayStillHolds {
                messages: waiting,
                seconds: DRAIN_PATIENCE.as_secs(),
            });
        }
        if waiting.is_some() && waiting != last_said {
            last_said = waiting;
            say(format!(
                "waiting for the old relay to pass on the {} message(s) its journal holds",
                waiting.unwrap_or_default()
            ));
        }
        clock.sleep(fly.policy().poll(attempt)).await;
    }
    unreachable!("the loop returns")
}

/// Messages a relay's `/health` says it holds, `None` when the document does not say.
fn waiting_in_journal(health: &Value) -> Option<u64> {
    let journal = health.get("journal")?;
    let count = |key: &str| journal.get(key).and_then(Value::as_i64);
    match (count("waiting_for_vm")?, count("waiting_for_channel")?) {
        (vm, channel) if vm >= 0 && channel >= 0 => Some((vm + channel) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::waiting_in_journal;
    use serde_json::json;

    #[test]
    fn the_journal_count_is_read_only_when_the_health_document_says_it() {
        let health = |vm, channel| json!({"journal": {"waiting_for_vm": vm, "waiting_for_channel": channel}});
        assert_eq!(waiting_in_journal(&health(json!(2), json!(1))), Some(3));
        assert_eq!(waiting_in_journal(&health(json!(0), json!(0))), Some(0));
        // A relay whose journal could not be read reports -1: not "empty".
        assert_eq!(waiting_in_journal(&health(json!(-1), json!(-1))), None);
        assert_eq!(waiting_in_journal(&json!({"ok": true})), None);
    }
}
