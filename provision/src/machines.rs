//! What a [`DeploymentSpec`] turns into on Fly: the two machine configs, their environment
//! and their secrets. The fly.toml templates in `deploy/fly/` must agree with these (a test
//! in `deploy` checks it), so this is the one place that knows ports, checks and policies.
//!
//! Secrets never go into `env`: Fly returns a machine's env to anyone who can read the app.

use crate::fly::{
    Autostop, Check, CreateMachineRequest, MachineConfig, Mount, Port, Restart, Service,
};
use crate::spec::{Channel, DeploymentSpec};
use std::collections::BTreeMap;

/// The port both runtimes listen on inside their machine.
pub const INTERNAL_PORT: u16 = 8080;
/// Where the vm's volume is mounted.
pub const DATA_PATH: &str = "/data";
/// The relay's journal and outgoing images live on a small volume of its own: Fly gives a
/// machine a fresh root filesystem when it is replaced (an image update) and may on a
/// restart ("Unlike stop, suspend does not reset the rootfs", docs/fly-machines-api.md §9),
/// and accepted messages must outlive both.
pub const RELAY_DATA_PATH: &str = "/var/lib/textslash";
pub const RELAY_VOLUME_NAME: &str = "journal";
pub const RELAY_VOLUME_GB: u32 = 1;
/// The volume's name in the vm app.
pub const VOLUME_NAME: &str = "data";
/// Machine metadata key that tells textslash's machines apart from anything else in an app.
pub const ROLE_KEY: &str = "textslash_role";

/// The secret both apps get first, which marks an app as a deployment's before it has
/// machines or volumes.
pub const MARK_SECRET: &str = "VM_TOKEN";

/// What an app holds, as evidence of whose it is.
#[derive(Clone, Debug, Default)]
pub struct AppContents {
    pub machines: Vec<crate::fly::Machine>,
    pub volumes: Vec<crate::fly::Volume>,
    pub secret_names: Vec<String>,
    pub ip_count: usize,
}

impl AppContents {
    /// Nothing at all in it: no machine, volume, secret or IP.
    pub fn is_empty(&self) -> bool {
        !self.machines.iter().any(|m| m.is_live())
            && !self.volumes.iter().any(|v| v.is_live())
            && self.secret_names.is_empty()
            && self.ip_count == 0
    }
}

/// Which of the two runtimes a machine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Relay,
    Vm,
}

impl Role {
    /// The role an app of a deployment has by its name (`<prefix>-relay`, `<prefix>-vm`).
    pub fn of_app(app: &str) -> Option<Role> {
        if app.ends_with("-relay") {
            Some(Role::Relay)
        } else if app.ends_with("-vm") {
            Some(Role::Vm)
        } else {
            None
        }
    }

    /// Whether an app with this role's name is textslash's: none of its live machines is
    /// anyone else's, and something in it carries textslash's mark: a machine with this
    /// role, this role's volume, or the `VM_TOKEN` secret the deploy sets right after
    /// creating the app. An empty app is not evidence of anything, so it is not ours (a
    /// user's own app of that name is never adopted or deleted).
    pub fn owns(self, contents: &AppContents) -> bool {
        let mut live = contents.machines.iter().filter(|m| m.is_live());
        let machines_ours = live
            .clone()
            .all(|m| m.metadata(ROLE_KEY) == Some(self.as_str()));
        let volume = match self {
            Role::Relay => RELAY_VOLUME_NAME,
            Role::Vm => VOLUME_NAME,
        };
        let marked = live.next().is_some()
            || contents
                .volumes
                .iter()
                .any(|v| v.is_live() && v.name == volume)
            || contents.secret_names.iter().any(|name| name == MARK_SECRET);
        machines_ours && marked
    }

    /// Whether a deploy may build on this app: ours, or empty. An empty app is what an attempt
    /// that stopped right after creating it leaves, and adding to an empty app harms nothing
    /// of anyone's; teardown still deletes only what [`Role::owns`].
    pub fn may_adopt(self, contents: &AppContents) -> bool {
        self.owns(contents) || contents.is_empty()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Relay => "relay",
            Role::Vm => "vm",
        }
    }
}

/// `https://{app}.fly.dev` with the app filled in.
pub fn app_url(template: &str, app: &str) -> String {
    template
        .replace("{app}", app)
        .trim_end_matches('/')
        .to_string()
}

/// The vm's address on the private network (Flycast, through the proxy, so it autostarts).
pub fn flycast_url(app: &str) -> String {
    format!("http://{app}.flycast")
}

fn health_check() -> BTreeMap<String, Check> {
    BTreeMap::from([(
        "health".to_string(),
        Check {
            kind: "http".into(),
            port: INTERNAL_PORT,
            method: Some("GET".into()),
            path: Some("/health".into()),
            interval: Some("15s".into()),
            timeout: Some("5s".into()),
            grace_period: Some("10s".into()),
        },
    )])
}

fn metadata(role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([(ROLE_KEY.to_string(), role.as_str().to_string())])
}

/// The relay: always on, public HTTPS on 443 with 80 redirecting, restarted whatever happens.
pub fn relay_config(spec: &DeploymentSpec, volume_id: &str) -> MachineConfig {
    let relay = spec.relay_app();
    let env = BTreeMap::from([
        ("PORT".to_string(), INTERNAL_PORT.to_string()),
        ("PUBLIC_URL".to_string(), app_url(&spec.app_url, &relay)),
        ("DATA_DIR".to_string(), RELAY_DATA_PATH.to_string()),
        ("VM_URL".to_string(), flycast_url(&spec.vm_app())),
        (
            "ALLOWED_SENDERS".to_string(),
            spec.allowed_senders.join(","),
        ),
    ]);
    MachineConfig {
        image: spec.images.relay.clone(),
        env,
        guest: Some(spec.relay_guest.clone()),
        services: vec![Service {
            protocol: "tcp".into(),
            internal_port: INTERNAL_PORT,
            ports: vec![
                Port {
                    port: 443,
                    handlers: vec!["tls".into(), "http".into()],
                    force_https: None,
                },
                Port {
                    port: 80,
                    handlers: vec!["http".into()],
                    force_https: Some(true),
                },
            ],
            autostop: Some(Autostop::Off),
            autostart: Some(true),
            min_machines_running: Some(1),
        }],
        checks: health_check(),
        mounts: vec![Mount {
            volume: volume_id.into(),
            path: RELAY_DATA_PATH.into(),
        }],
        restart: Some(Restart {
            policy: "always".into(),
            max_retries: None,
        }),
        metadata: metadata(Role::Relay),
    }
}

/// The vm: private (Flycast on port 80), started by the proxy on demand, stopping itself
/// when idle (so never stopped by the proxy in the middle of a job), its work on a volume.
pub fn vm_config(spec: &DeploymentSpec, volume_id: &str) -> MachineConfig {
    let mut env = BTreeMap::from([
        ("PORT".to_string(), INTERNAL_PORT.to_string()),
        ("DATA_DIR".to_string(), DATA_PATH.to_string()),
        (
            "RELAY_CALLBACK_URL".to_string(),
            format!("{}/callback", app_url(&spec.app_url, &spec.relay_app())),
        ),
    ]);
    // Not a secret: the cap is a setting, and Fly shows env to whoever can read the app.
    if let Some(cap) = spec.max_daily_usd {
        env.insert("MAX_DAILY_USD".into(), crate::cost::dollars_typed(cap));
    }
    env.insert("APPROVAL_MODE".into(), spec.approvals.as_str().into());
    MachineConfig {
        image: spec.images.vm.clone(),
        env,
        guest: Some(spec.vm_guest.clone()),
        services: vec![Service {
            protocol: "tcp".into(),
            internal_port: INTERNAL_PORT,
            ports: vec![Port {
                port: 80,
                handlers: vec!["http".into()],
                force_https: None,
            }],
            autostop: Some(Autostop::Off),
            autostart: Some(true),
            min_machines_running: Some(0),
        }],
        checks: health_check(),
        mounts: vec![Mount {
            volume: volume_id.into(),
            path: DATA_PATH.into(),
        }],
        restart: Some(Restart {
            policy: "on-failure".into(),
            max_retries: Some(3),
        }),
        metadata: metadata(Role::Vm),
    }
}

pub fn machine_request(
    spec: &DeploymentSpec,
    config: MachineConfig,
    role: Role,
    min_secrets_version: Option<u64>,
) -> CreateMachineRequest {
    CreateMachineRequest {
        name: Some(format!("{}-{}", spec.prefix, role.as_str())),
        region: Some(spec.region.clone()),
        config,
        min_secrets_version,
    }
}

/// Secrets the relay needs. `vm_token` is shared with the vm; `webhook_secret` is what
/// Telegram sends back in `X-Telegram-Bot-Api-Secret-Token`.
pub fn relay_secrets(
    spec: &DeploymentSpec,
    vm_token: &str,
    webhook_secret: &str,
) -> BTreeMap<String, String> {
    let mut values = BTreeMap::from([("VM_TOKEN".to_string(), vm_token.to_string())]);
    match &spec.channel {
        Channel::Telegram { bot_token } => {
            values.insert("TELEGRAM_BOT_TOKEN".into(), bot_token.expose().into());
            values.insert("TELEGRAM_WEBHOOK_SECRET".into(), webhook_secret.into());
        }
        Channel::WhatsappTwilio {
            account_sid,
            auth_token,
            whatsapp_number,
        } => {
            values.insert("TWILIO_ACCOUNT_SID".into(), account_sid.expose().into());
            values.insert("TWILIO_AUTH_TOKEN".into(), auth_token.expose().into());
            let number = crate::spec::normalise_phone(whatsapp_number)
                .unwrap_or_else(|| whatsapp_number.clone());
            values.insert("TWILIO_WHATSAPP_NUMBER".into(), number);
        }
        Channel::Discord { bot_token } => {
            values.insert("DISCORD_BOT_TOKEN".into(), bot_token.expose().into());
        }
    }
    if let Some(pairing) = &spec.pairing {
        values.insert("PAIRING_CODE".into(), pairing.code.expose().into());
        values.insert("PAIRING_EXPIRES_MS".into(), pairing.expires_ms.to_string());
    }
    values
}

pub fn vm_secrets(spec: &DeploymentSpec, vm_token: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::from([
        ("VM_TOKEN".to_string(), vm_token.to_string()),
        (
            "ANTHROPIC_API_KEY".to_string(),
            spec.anthropic_api_key.expose().to_string(),
        ),
    ]);
    if let Some(token) = &spec.github_token {
        values.insert("GITHUB_TOKEN".into(), token.expose().into());
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::telegram_spec;

    #[test]
    fn no_secret_ends_up_in_env() {
        let spec = telegram_spec("t");
        let secrets: Vec<String> = relay_secrets(&spec, "vmtoken", "hook")
            .into_values()
            .chain(vm_secrets(&spec, "vmtoken").into_values())
            .collect();
        for config in [relay_config(&spec, "vol_0"), vm_config(&spec, "vol_1")] {
            for value in config.env.values() {
                for secret in &secrets {
                    assert!(!value.contains(secret.as_str()), "a secret is in env");
                }
            }
        }
    }

    #[test]
    fn the_vm_is_private_and_the_relay_public() {
        let spec = telegram_spec("t");
        let vm = vm_config(&spec, "vol_1");
        assert_eq!(vm.services[0].ports.len(), 1);
        assert_eq!(vm.services[0].ports[0].port, 80);
        assert_eq!(vm.mounts[0].path, "/data");
        assert_eq!(vm.restart.as_ref().unwrap().policy, "on-failure");
        let relay = relay_config(&spec, "vol_0");
        assert!(relay.services[0].ports.iter().any(|p| p.port == 443));
        assert_eq!(relay.env["VM_URL"], "http://t-vm.flycast");
        assert_eq!(relay.env["PUBLIC_URL"], "https://t-relay.fly.dev");
        assert_eq!(
            vm.env["RELAY_CALLBACK_URL"],
            "https://t-relay.fly.dev/callback"
        );
    }

    /// A new deployment's agent asks before commands, the web and the browser, unless the
    /// user chose otherwise.
    #[test]
    fn a_new_deployment_asks_first() {
        let mut spec = telegram_spec("t");
        assert_eq!(vm_config(&spec, "v").env["APPROVAL_MODE"], "ask");
        spec.approvals = crate::spec::Approvals::Auto;
        assert_eq!(vm_config(&spec, "v").env["APPROVAL_MODE"], "auto");
    }

    /// A new deployment has a daily spend cap unless the user removes it.
    #[test]
    fn a_new_deployment_caps_its_daily_spend() {
        let mut spec = telegram_spec("t");
        assert_eq!(vm_config(&spec, "v").env["MAX_DAILY_USD"], "10");
        spec.max_daily_usd = Some(12.5);
        assert_eq!(vm_config(&spec, "v").env["MAX_DAILY_USD"], "12.5");
        spec.max_daily_usd = None;
        assert!(!vm_config(&spec, "v").env.contains_key("MAX_DAILY_USD"));
        spec.max_daily_usd = Some(-1.0);
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .starts_with("max_daily_usd")
        );
    }
}
