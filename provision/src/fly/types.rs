//! Machines API wire types, with field names exactly as in Fly's OpenAPI document
//! (shared/fly/openapi3.json). Optional fields are skipped when empty so that every body we
//! send validates against the schema (tests check this), and unknown fields are ignored on
//! the way in, because Fly adds fields without notice.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
}

/// `main.tokenInfo`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub org_slug: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub token_id: Option<String>,
}

/// `CreateAppRequest`. `network` stays empty so both apps share the org's default network
/// and the relay can reach the vm over Flycast.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CreateAppRequest {
    pub name: String,
    pub org_slug: String,
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
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub size_gb: u32,
    #[serde(default)]
    pub attached_machine_id: Option<String>,
}

impl Volume {
    pub fn is_live(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "destroyed" | "destroying" | "pending_destroy"
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Guest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `fly.MachineGuest`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Guest {
    pub cpu_kind: String,
    pub cpus: u32,
    pub memory_mb: u32,
}

/// `fly.MachineService`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Service {
    pub protocol: String,
    pub internal_port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// `"off" | "stop" | "suspend"` (older API versions also accept a bool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_machines_running: Option<u32>,
}

/// `fly.MachinePort`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_https: Option<bool>,
}

/// `fly.MachineCheck`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: String,
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
    pub volume: String,
    pub path: String,
}

/// `fly.MachineRestart`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Restart {
    /// `"no" | "always" | "on-failure"`.
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
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub config: Option<MachineConfig>,
    #[serde(default)]
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
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: Option<String>,
}

/// `WaitMachineResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct WaitResponse {
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
    pub ips: Vec<IpAssignment>,
}

/// `main.regionResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Regions {
    #[serde(default)]
    pub nearest: Option<String>,
    #[serde(default)]
    pub regions: Vec<Region>,
}

/// `main.regionRow`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Region {
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default)]
    pub requires_paid_plan: bool,
}
