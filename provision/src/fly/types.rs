//! Machines API wire types, with field names exactly as in Fly's OpenAPI document
//! (`sim/fly-openapi3.json`). Optional fields are skipped when empty so that every body we
//! send validates against the schema (tests check this).
//!
//! On the way in they accept everything Fly documents, not only what it sends today
//! (`docs/fly-machines-api.md`, "Response variants"):
//! - unknown fields are ignored, because Fly adds fields without notice (an update, which
//!   replaces the whole config, edits the document Fly returned instead, so it keeps them:
//!   see [`crate::ops::update`]);
//! - `null` where a list, map, string or number is expected reads as empty, because Fly's API
//!   is written in Go, whose JSON encoder writes nil maps and slices as `null` (Fly's own
//!   example responses show `"env": null`, `"metadata": null`, `"exec": null`);
//! - `autostop` is a string or a boolean ([`Autostop`]).

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// `null` or absent → the type's default; anything else as usual.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `fly.MachineService.autostop`. The OpenAPI document: "Accepts a string (new format) or a
/// boolean (old format). For backward compatibility with older clients, the API continues to
/// use booleans for "off" and "stop" in responses." So `false` reads as `Off`, `true` as
/// `Stop`; we always send the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Autostop {
    Off,
    Stop,
    Suspend,
}

impl Autostop {
    pub fn as_str(self) -> &'static str {
        match self {
            Autostop::Off => "off",
            Autostop::Stop => "stop",
            Autostop::Suspend => "suspend",
        }
    }
}

impl<'de> Deserialize<'de> for Autostop {
    // A visitor rather than `#[serde(untagged)]`, which would pull serde's buffering
    // machinery into the page's wasm.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl serde::de::Visitor<'_> for Either {
            type Value = Autostop;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"off\", \"stop\", \"suspend\" or a boolean")
            }
            fn visit_bool<E: serde::de::Error>(self, stop: bool) -> Result<Autostop, E> {
                Ok(if stop { Autostop::Stop } else { Autostop::Off })
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Autostop, E> {
                match value {
                    "off" => Ok(Autostop::Off),
                    "stop" => Ok(Autostop::Stop),
                    "suspend" => Ok(Autostop::Suspend),
                    other => Err(E::unknown_variant(other, &["off", "stop", "suspend"])),
                }
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// `ErrorResponse`: `{error, status}`. FLYGO also reads `message`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `CurrentTokenResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CurrentToken {
    #[serde(default, deserialize_with = "null_as_default")]
    pub tokens: Vec<TokenInfo>,
}

/// What a token may manage, read from `main.tokenInfo`'s fields: `apps` lists the apps an app
/// (deploy) token is limited to, `user` is set for a user's own token, and an org token
/// names only its org (`sim/fly-openapi3.json`, `main.tokenInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Org(String),
    App(Vec<String>),
    Personal,
    Unknown,
}

impl CurrentToken {
    pub fn kind(&self) -> TokenKind {
        let apps: Vec<String> = self.tokens.iter().flat_map(|t| t.apps.clone()).collect();
        if !apps.is_empty() {
            return TokenKind::App(apps);
        }
        if self.tokens.iter().any(|t| t.user.is_some()) {
            return TokenKind::Personal;
        }
        match self.tokens.iter().find_map(|t| t.org_slug.clone()) {
            Some(org) => TokenKind::Org(org),
            None => TokenKind::Unknown,
        }
    }

    /// `Err` for a token that cannot deploy (an app token), with the sentence that says why.
    pub fn usable(&self) -> Result<TokenKind, crate::Error> {
        match self.kind() {
            TokenKind::App(apps) => Err(crate::Error::AppToken {
                apps: apps.join(", "),
            }),
            kind => Ok(kind),
        }
    }
}

/// `main.tokenInfo`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub org_slug: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub token_id: Option<String>,
}

/// `CreateAppRequest`. `network` names the private network (6PN) the app joins: a
/// deployment's two apps share one of their own, so the relay reaches the vm over Flycast
/// and nothing else of the org does (docs/fly-machines-api.md §6, "Custom private networks").
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CreateAppRequest {
    pub name: String,
    pub org_slug: String,
    pub network: String,
}

/// `App`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct App {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub organization: Option<AppOrganization>,
    /// Its private network: `default` (the org's) or a custom one's name.
    #[serde(default)]
    pub network: Option<String>,
}

/// `ListAppsResponse`: `{apps, total_apps}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AppList {
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: Vec<App>,
}

/// `AppOrganizationInfo`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AppOrganization {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

/// `AppSecretsUpdateRequest`: `{values: {NAME: value}}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SetSecretsRequest {
    pub values: BTreeMap<String, String>,
}

/// `AppSecretsUpdateResp`. The spec lists both `version` and `Version`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SetSecretsResponse {
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default, rename = "Version", skip_serializing_if = "Option::is_none")]
    pub version_legacy: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<AppSecret>,
}

impl SetSecretsResponse {
    pub fn version(&self) -> Option<u64> {
        self.version.or(self.version_legacy)
    }
}

/// `AppSecrets`: names and digests, never values.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AppSecrets {
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<AppSecret>,
}

/// `AppSecret`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AppSecret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `CreateVolumeRequest`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CreateVolumeRequest {
    pub name: String,
    pub region: String,
    pub size_gb: u32,
    pub require_unique_zone: bool,
}

/// `Volume`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Volume {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub size_gb: u32,
    #[serde(default)]
    pub attached_machine_id: Option<String>,
}

impl Volume {
    /// Not on its way out: fly-go's `GetVolumes` leaves out exactly these states
    /// (`flaps/flaps_volumes.go` `destroyedVolumeStates`), and `destroyed` is the end of them.
    pub fn is_live(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "scheduling_destroy"
                | "fork_cleanup"
                | "waiting_for_detach"
                | "pending_destroy"
                | "destroying"
                | "destroyed"
        )
    }
}

/// `CreateMachineRequest` (and `UpdateMachineRequest`, which has the same fields we use).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CreateMachineRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub config: MachineConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
}

/// `fly.MachineConfig`: the fields textslash sets.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MachineConfig {
    pub image: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Guest>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub services: Vec<Service>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub checks: BTreeMap<String, Check>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub metadata: BTreeMap<String, String>,
}

/// `fly.MachineGuest`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Guest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub cpu_kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cpus: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub memory_mb: u32,
}

/// `fly.MachineService`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Service {
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub internal_port: u16,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop: Option<Autostop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<u32>,
}

/// `fly.MachinePort`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Port {
    /// Absent (read as 0, and not sent back) for a port range (`start_port`/`end_port`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub port: u16,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub handlers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_https: Option<bool>,
}

/// `fly.MachineCheck`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Check {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<String>,
}

/// `fly.MachineMount`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Mount {
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
}

/// `fly.MachineRestart`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Restart {
    /// `"no" | "always" | "on-failure"`; Fly's example responses also show `""`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// `Machine`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Machine {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub config: Option<MachineConfig>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub checks: Vec<CheckStatus>,
}

impl Machine {
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.config.as_ref()?.metadata.get(key).map(String::as_str)
    }
    pub fn is_live(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "destroyed" | "destroying" | "replaced" | "migrated"
        )
    }
}

/// `CheckStatus`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct CheckStatus {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    #[serde(default)]
    pub output: Option<String>,
}

/// `MachineStartResponse` (fly-go `machine_types.go`): a start can answer 200 and still say
/// `"status": "error"` with a `message`, which flyctl reports as "machine could not be
/// started" (flyctl `internal/command/machine/start.go`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StartResponse {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub previous_state: Option<String>,
}

/// `MachineExecRequest` (SPEC `Machines_exec`; `timeout` in seconds, as flyctl's
/// `machine exec --timeout` says).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub timeout: u32,
}

/// `flydv1.ExecResponse`: what the command printed and how it exited.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExecResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub exit_code: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stdout: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stderr: String,
}

/// `WaitMachineResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WaitResponse {
    #[serde(default, deserialize_with = "null_as_default")]
    pub ok: bool,
    #[serde(default)]
    pub state: Option<String>,
}

/// `assignIPRequest`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AssignIpRequest {
    /// `"v6" | "shared_v4" | "private_v6" | "v4"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub org_slug: String,
}

/// `IPAssignment`. Fly does not echo the type, so it is inferred from the address.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IpAssignment {
    pub ip: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub shared: bool,
}

/// The kind of an IP, as [`AssignIpRequest::kind`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpKind {
    PrivateV6,
    SharedV4,
    V6,
    V4,
}

impl IpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IpKind::PrivateV6 => "private_v6",
            IpKind::SharedV4 => "shared_v4",
            IpKind::V6 => "v6",
            IpKind::V4 => "v4",
        }
    }
}

impl IpAssignment {
    pub fn kind(&self) -> IpKind {
        if self.ip.starts_with("fdaa:") {
            IpKind::PrivateV6
        } else if self.ip.contains(':') {
            IpKind::V6
        } else if self.shared {
            IpKind::SharedV4
        } else {
            IpKind::V4
        }
    }
}

/// `listIPAssignmentsResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IpAssignments {
    #[serde(default, deserialize_with = "null_as_default")]
    pub ips: Vec<IpAssignment>,
}

/// `main.regionResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Regions {
    #[serde(default)]
    pub nearest: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub regions: Vec<Region>,
}

/// `main.regionRow`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Region {
    pub code: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub deprecated: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub requires_paid_plan: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fly's own example answer for a machine (superfly/docs
    /// `reference/machines/_get.erb` and `_launch_syd_resp.erb`): `null` maps, an empty restart policy,
    /// `init` full of nulls.
    const DOCUMENTED_MACHINE: &str = r#"{
      "id": "10e286064b1867", "name": "machine-syd", "state": "starting", "region": "syd",
      "instance_id": "01G3H70Q5C24GMEMCXHSBDGN9H", "private_ip": "fdaa:0:3ec2:a7b:8566:845e:9f47:2",
      "config": {
        "env": null,
        "init": {"exec": null, "entrypoint": null, "cmd": null, "tty": false},
        "image": "flyio/fastify-functions",
        "metadata": null,
        "restart": {"policy": ""},
        "services": [{"internal_port": 8080, "protocol": "tcp",
          "ports": [{"handlers": ["tls", "http"], "port": 443}, {"handlers": ["http"], "port": 80}]}],
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
      },
      "image_ref": {"registry": "registry-1.docker.io", "repository": "flyio/fastify-functions",
        "tag": "latest", "digest": "sha256:e15c", "labels": {}},
      "created_at": "2022-05-20T17:07:36Z"
    }"#;

    #[test]
    fn fly_s_documented_machine_answer_reads() {
        let machine: Machine = serde_json::from_str(DOCUMENTED_MACHINE).unwrap();
        let config = machine.config.unwrap();
        assert!(config.env.is_empty() && config.metadata.is_empty());
        assert_eq!(config.restart.unwrap().policy, "");
        assert_eq!(config.services[0].ports[1].port, 80);
        assert!(machine.checks.is_empty());
    }

    #[test]
    fn autostop_reads_both_forms_and_is_sent_as_a_string() {
        for (wire, expected) in [
            ("false", Autostop::Off),
            ("true", Autostop::Stop),
            ("\"off\"", Autostop::Off),
            ("\"stop\"", Autostop::Stop),
            ("\"suspend\"", Autostop::Suspend),
        ] {
            let service: Service =
                serde_json::from_str(&format!(r#"{{"autostop": {wire}}}"#)).unwrap();
            assert_eq!(service.autostop, Some(expected), "{wire}");
            assert_eq!(
                serde_json::to_value(&service).unwrap()["autostop"],
                expected.as_str()
            );
        }
        assert!(serde_json::from_str::<Service>(r#"{"autostop": "sometimes"}"#).is_err());
    }

    #[test]
    fn a_volume_no_machine_uses_has_a_null_attachment() {
        let volume: Volume = serde_json::from_str(
            r#"{"id": "vol_1", "name": "data", "state": "created", "attached_machine_id": null,
                "attached_alloc_id": null, "size_gb": 1, "region": "ams"}"#,
        )
        .unwrap();
        assert_eq!(volume.attached_machine_id, None);
    }
}

#[cfg(test)]
mod token_kind_tests {
    use super::*;

    fn token(info: serde_json::Value) -> CurrentToken {
        serde_json::from_value(serde_json::json!({ "tokens": [info] })).unwrap()
    }

    #[test]
    fn a_token_s_kind_is_read_from_its_info_and_an_app_token_is_refused_in_a_sentence() {
        let org = token(serde_json::json!({"org_slug": "acme", "apps": [], "token_id": "t"}));
        assert_eq!(org.kind(), TokenKind::Org("acme".into()));
        let app = token(serde_json::json!({"org_slug": "acme", "apps": ["blog"]}));
        let refused = app.usable().unwrap_err().to_string();
        assert!(
            refused.contains("deploy token for blog") && refused.contains("org token"),
            "{refused}"
        );
        let personal = token(serde_json::json!({"org_slug": "acme", "apps": null, "user": "u1"}));
        assert_eq!(personal.usable().unwrap(), TokenKind::Personal);
        assert_eq!(token(serde_json::json!({})).kind(), TokenKind::Unknown);
    }
}
