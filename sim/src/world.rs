//! The sim's in-memory model of one Fly org: apps with their secrets, volumes, machines and
//! IPs. One mutex guards it; it is never held across an `.await`.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct App {
    pub name: String,
    pub id: String,
    pub org: String,
    pub secrets: BTreeMap<String, String>,
    pub secrets_version: u64,
    pub volumes: BTreeMap<String, Volume>,
    pub machines: BTreeMap<String, Machine>,
    pub ips: Vec<Ip>,
    /// When it was created: Fly hides a new app for a moment ([`crate::quirks`]).
    pub created: Option<Instant>,
    /// When its first public IP was assigned: its name resolves a moment later.
    pub public_since: Option<Instant>,
    /// Its private network (6PN): `default`, the org's, or a custom one named at create.
    pub network: String,
}

#[derive(Clone, Debug)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub region: String,
    pub size_gb: u64,
    pub attached_machine_id: Option<String>,
    pub created_at: String,
    /// `created`, or `pending_destroy` between its delete and its removal (fly-go
    /// `flaps/flaps_volumes.go` `destroyedVolumeStates`).
    pub state: String,
}

#[derive(Clone, Debug)]
pub struct Ip {
    pub ip: String,
    pub kind: String,
    /// For a Flycast address given `network`: the network it serves (another one than the
    /// app's, Fly, "Custom private networks"); `None`: the app's own.
    pub network: Option<String>,
}

#[derive(Debug)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub region: String,
    /// As sent by the client, echoed back as Fly does.
    pub config: Value,
    pub state: String,
    pub instance_id: String,
    /// Where the process listens, while it runs.
    pub port: Option<u16>,
    /// The environment its process was started with, for `exec` (empty while stopped).
    pub env: std::collections::BTreeMap<String, String>,
    /// Kills the process when sent or dropped.
    pub kill: Option<tokio::sync::oneshot::Sender<()>>,
    /// Bumped on every start, so a watcher of an old process ignores its late exit.
    pub generation: u64,
    pub restarts: u32,
    pub checks: Vec<Value>,
    /// `MachineEvent`s, newest first: launch, start, exit (with fly-go's
    /// `request.exit_event {exit_code, restarting}`), stop.
    pub events: Vec<Value>,
    pub created_at: String,
    /// When it was created: reads miss a new machine for a moment ([`crate::quirks`]).
    pub created: Instant,
    /// Left out of the proxy's routing: created with `skip_service_registration`, or
    /// cordoned (SPEC `Machines_cordon`: "the Fly Proxy won't route requests to it").
    pub cordoned: bool,
}

/// The image a machine was given, split as Fly's `image_ref` splits it while `config.image`
/// keeps the words given. fly-go reads the split form (`machine_types.go`: `MachineImageRef`
/// with `registry`, `repository`, `tag`, `digest`, `labels`; `FullImageRef()` joins
/// `registry/repository:tag@digest`, which flyctl shows); the Machines API docs' example
/// machine answers `"image": "flyio/fastify-functions"` with `"registry":
/// "registry-1.docker.io", "repository": "flyio/fastify-functions", "tag": "latest"`. The
/// digest is the one the pull resolved; the sim pulls nothing, so it makes one from the name.
fn image_ref(image: &str) -> Value {
    let (named, digest) = match image.split_once('@') {
        Some((named, digest)) => (named, digest.to_string()),
        None => (image, format!("sha256:{:064x}", image.len())),
    };
    let (registry, path) = match named.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (host, rest.to_string())
        }
        Some(_) => ("registry-1.docker.io", named.to_string()),
        None => ("registry-1.docker.io", format!("library/{named}")),
    };
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match path[last..].split_once(':') {
        Some((_, tag)) => (&path[..last + path[last..].find(':').unwrap_or(0)], tag),
        None => (path.as_str(), "latest"),
    };
    json!({"registry": registry, "repository": repository, "tag": tag, "digest": digest, "labels": {}})
}

impl Machine {
    /// The machine as Fly answers it: the config in Fly's response form ([`config_as_fly_answers`]),
    /// and `null` for empty lists, as Fly's Go encoder writes them.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "region": self.region,
            "instance_id": self.instance_id,
            "private_ip": "fdaa:0:1:a7b:1::2",
            "config": config_as_fly_answers(&self.config),
            "image_ref": image_ref(self.config.get("image").and_then(Value::as_str).unwrap_or_default()),
            "checks": if self.checks.is_empty() { Value::Null } else { json!(self.checks) },
            "events": self.events,
            "host_status": "ok",
            "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }

    /// Records a `MachineEvent` (SPEC `MachineEvent`: type, status, source, timestamp in ms,
    /// request).
    pub fn record(&mut self, kind: &str, status: &str, source: &str, request: Value) {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut event = json!({"id": format!("ev{}", self.events.len()), "type": kind,
            "status": status, "source": source, "timestamp": timestamp});
        if !request.is_null() {
            event["request"] = request;
        }
        self.events.insert(0, event);
    }

    pub fn restart_policy(&self) -> String {
        self.config
            .pointer("/restart/policy")
            .and_then(Value::as_str)
            .unwrap_or("always")
            .to_string()
    }

    pub fn max_retries(&self) -> u32 {
        self.config
            .pointer("/restart/max_retries")
            .and_then(Value::as_u64)
            .unwrap_or(10) as u32
    }

    pub fn autostart(&self) -> bool {
        self.config
            .pointer("/services/0/autostart")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

/// A machine config as Fly's API answers it, which is not what was sent:
/// - `autostop` "off"/"stop" come back as `false`/`true`: "For backward compatibility with
///   older clients, the API continues to use booleans for "off" and "stop" in responses"
///   (`fly.MachineService.autostop` in `sim/fly-openapi3.json`);
/// - unset maps are `null` and `init` is filled with nulls (Fly's example responses,
///   `superfly/docs` `reference/machines/_get.erb`: `"env": null`, `_launch_syd_resp.erb`:
///   `"metadata": null`, `"init": {"exec": null, "entrypoint": null, "cmd": null, "tty": false}`),
///   and `dns` is `{}` (`_machines_create_resp.erb`).
pub fn config_as_fly_answers(sent: &Value) -> Value {
    let mut config = sent.clone();
    let Some(object) = config.as_object_mut() else {
        return config;
    };
    for service in object
        .get_mut("services")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let old_form = match service.get("autostop").and_then(Value::as_str) {
            Some("off") => Some(false),
            Some("stop") => Some(true),
            _ => None,
        };
        if let Some(flag) = old_form {
            service["autostop"] = json!(flag);
        }
    }
    for key in ["env", "metadata"] {
        if object
            .get(key)
            .is_none_or(|v| v.as_object().is_some_and(|m| m.is_empty()))
        {
            object.insert(key.into(), Value::Null);
        }
    }
    object
        .entry("init")
        .or_insert_with(|| json!({"exec": null, "entrypoint": null, "cmd": null, "tty": false}));
    object.entry("dns").or_insert_with(|| json!({}));
    config
}

impl Volume {
    pub fn json(&self) -> Value {
        let mut json = json!({
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "size_gb": self.size_gb,
            "region": self.region,
            "zone": "sim1",
            "encrypted": true,
            "created_at": self.created_at,
            "fstype": "ext4",
            "host_status": "ok",
            "type": "local",
        });
        // Fly's docs show `"attached_machine_id": null` for a volume no machine uses
        // (docs/fly-machines-api.md, Volumes), though the schema types it as a string.
        json["attached_machine_id"] = json!(self.attached_machine_id);
        json
    }
}

/// What teardown tests look at: everything, secret names but never values.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Dump {
    pub apps: Vec<AppDump>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AppDump {
    pub name: String,
    pub secret_names: Vec<String>,
    pub secrets_version: u64,
    pub volumes: Vec<String>,
    pub machines: Vec<(String, String)>,
    pub ips: Vec<String>,
}

#[derive(Default)]
pub struct World {
    apps: Mutex<BTreeMap<String, App>>,
    counter: AtomicU64,
}

impl World {
    /// Runs `f` with the model locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, App>) -> R) -> R {
        f(&mut self.apps.lock().expect("world lock"))
    }

    /// A fresh id made of lowercase hex, `len` characters long.
    pub fn new_id(&self, len: usize) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
        format!("{mixed:016x}{n:x}")
            .chars()
            .rev()
            .take(len)
            .collect()
    }

    pub fn dump(&self) -> Dump {
        self.with(|apps| Dump {
            apps: apps
                .values()
                .map(|a| AppDump {
                    name: a.name.clone(),
                    secret_names: a.secrets.keys().cloned().collect(),
                    secrets_version: a.secrets_version,
                    volumes: a.volumes.keys().cloned().collect(),
                    machines: a
                        .machines
                        .values()
                        .map(|m| (m.id.clone(), m.state.clone()))
                        .collect(),
                    ips: a
                        .ips
                        .iter()
                        .map(|ip| format!("{} {}", ip.kind, ip.ip))
                        .collect(),
                })
                .collect(),
        })
    }

    /// Stops every machine process (sim shutdown).
    pub fn kill_all(&self) {
        self.with(|apps| {
            for app in apps.values_mut() {
                for machine in app.machines.values_mut() {
                    if let Some(kill) = machine.kill.take() {
                        let _ = kill.send(());
                    }
                }
            }
        })
    }
}

pub fn now_rfc3339() -> String {
    // Good enough for a sim: seconds since the epoch in an RFC 3339-shaped string is not
    // needed by any client, so a fixed-format UTC time is built without a date library.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_779), (2026, 11, 22));
    }

    #[test]
    fn an_image_ref_splits_the_name_as_fly_does() {
        let r = super::image_ref("flyio/fastify-functions");
        assert_eq!(
            (&r["registry"], &r["repository"], &r["tag"]),
            (
                &"registry-1.docker.io".into(),
                &"flyio/fastify-functions".into(),
                &"latest".into()
            )
        );
        let r = super::image_ref("ghcr.io/textslash/textslash-vm:0.2.0@sha256:ab");
        assert_eq!(r["registry"], "ghcr.io");
        assert_eq!(r["repository"], "textslash/textslash-vm");
        assert_eq!(r["tag"], "0.2.0");
        assert_eq!(r["digest"], "sha256:ab");
        let r = super::image_ref("localhost:5000/vm:1");
        assert_eq!(
            (&r["registry"], &r["repository"], &r["tag"]),
            (&"localhost:5000".into(), &"vm".into(), &"1".into())
        );
    }
}
