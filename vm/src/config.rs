//! The vm's configuration from the environment. Missing or malformed values stop start-up
//! with a message naming the variable, never its value.

use std::path::PathBuf;
use std::time::Duration;

pub use contract::service::ConfigError;
use contract::service::{Env, http_url};

#[derive(Clone)]
pub struct Config {
    pub port: u16,
    pub vm_token: String,
    pub relay_callback_url: String,
    pub data_dir: PathBuf,
    pub idle_timeout: Duration,
    /// The agent program and any fixed arguments, split on whitespace.
    pub agent_cmd: Vec<String>,
    pub agent_timeout: Duration,
    pub max_daily_usd: Option<f64>,
    pub anthropic_api_key: Option<String>,
    /// Another Messages API for the agent (`ANTHROPIC_BASE_URL`; tests and the demo use the
    /// sim's).
    pub anthropic_base_url: Option<String>,
    pub github_token: Option<String>,
    /// How many conversations may run a job at the same time.
    pub max_parallel_jobs: usize,
    /// How many idle conversations keep their agent process warm (`WARM_AGENTS`; 0: none).
    pub warm_agents: usize,
    /// How long an idle agent process is kept (`AGENT_WARM_SECS`).
    pub agent_warm_for: Duration,
    pub heartbeat: Duration,
    /// How long finished jobs and delivered results are kept (`RETENTION_HOURS`).
    pub retention: Duration,
    /// A browser for Playwright MCP (the image sets Debian's Chromium).
    pub chromium_path: Option<String>,
    /// The OS user the agent runs as (`AGENT_USER`); `None`: the vm's own, unfenced.
    pub agent_user: Option<crate::fence::AgentUser>,
    /// A conversation's mode until `/mode` changes it (`APPROVAL_MODE`: `ask` or `auto`; a
    /// deployment made before approvals has none and keeps `auto`).
    pub approval_mode: crate::approvals::Mode,
    /// How long a question keeps its agent process waiting before it is parked
    /// (`APPROVAL_WAIT_SECS`).
    pub approval_wait: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("relay_callback_url", &self.relay_callback_url)
            .field("data_dir", &self.data_dir)
            .field("agent_cmd", &self.agent_cmd)
            .field("anthropic_api_key", &self.anthropic_api_key.is_some())
            .field("github_token", &self.github_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(var);
        let port = env.port()?;
        let vm_token = env.required("VM_TOKEN")?;
        let relay_callback_url =
            http_url("RELAY_CALLBACK_URL", env.required("RELAY_CALLBACK_URL")?)?;
        let agent_cmd: Vec<String> = env
            .get("AGENT_CMD")
            .unwrap_or("claude".into())
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let anthropic_api_key = env.get("ANTHROPIC_API_KEY");
        let runs_claude = agent_cmd
            .first()
            .is_some_and(|program| program.rsplit('/').next() == Some("claude"));
        if runs_claude && anthropic_api_key.is_none() {
            return Err(ConfigError {
                var: "ANTHROPIC_API_KEY",
                problem: "is required to run Claude Code".into(),
            });
        }
        let max_daily_usd = match env.get("MAX_DAILY_USD") {
            None => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .ok_or(ConfigError {
                        var: "MAX_DAILY_USD",
                        problem: "must be a positive number of dollars".into(),
                    })?,
            ),
        };
        let agent_user = match env.get("AGENT_USER") {
            None => None,
            Some(name) => Some(
                crate::fence::AgentUser::named(&name).map_err(|_| ConfigError {
                    var: "AGENT_USER",
                    problem: "names no user on this machine".into(),
                })?,
            ),
        };
        let approval_mode = match env.get("APPROVAL_MODE") {
            None => crate::approvals::Mode::Auto,
            Some(v) => crate::approvals::Mode::parse(&v).ok_or(ConfigError {
                var: "APPROVAL_MODE",
                problem: "must be ask or auto".into(),
            })?,
        };
        Ok(Config {
            approval_mode,
            approval_wait: Duration::from_secs(env.number("APPROVAL_WAIT_SECS", 600)?),
            agent_user,
            port,
            vm_token,
            relay_callback_url,
            data_dir: PathBuf::from(env.get("DATA_DIR").unwrap_or("/data".into())),
            idle_timeout: Duration::from_secs(env.number("IDLE_TIMEOUT_SECS", 1800)?),
            agent_cmd,
            agent_timeout: Duration::from_secs(env.number("AGENT_TIMEOUT_SECS", 1800)?),
            max_daily_usd,
            anthropic_api_key,
            anthropic_base_url: env.get("ANTHROPIC_BASE_URL"),
            github_token: env.get("GITHUB_TOKEN"),
            max_parallel_jobs: env.number("MAX_PARALLEL_JOBS", 2)?.max(1) as usize,
            warm_agents: env.number("WARM_AGENTS", 1)? as usize,
            agent_warm_for: Duration::from_secs(env.number("AGENT_WARM_SECS", 600)?),
            heartbeat: Duration::from_millis(env.number("HEARTBEAT_MS", 4000)?),
            retention: Duration::from_secs(3600 * env.number("RETENTION_HOURS", 168)?),
            chromium_path: env.get("CHROMIUM_PATH"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_needs_a_key_and_errors_name_the_variable() {
        fn base(extra: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
            let mut pairs = vec![
                ("VM_TOKEN", "t"),
                ("RELAY_CALLBACK_URL", "http://r/callback"),
            ];
            pairs.extend_from_slice(extra);
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        assert_eq!(
            Config::from_lookup(base(&[])).unwrap_err().var,
            "ANTHROPIC_API_KEY"
        );
        let config = Config::from_lookup(base(&[("ANTHROPIC_API_KEY", "sk-secret")])).unwrap();
        assert_eq!(config.agent_cmd, ["claude"]);
        assert!(!format!("{config:?}").contains("sk-secret"));
        let demo = Config::from_lookup(base(&[("AGENT_CMD", "/bin/textslash-demo-agent --fast")]))
            .unwrap();
        assert_eq!(demo.agent_cmd.len(), 2);
        assert_eq!(
            Config::from_lookup(base(&[("AGENT_CMD", "x"), ("MAX_DAILY_USD", "-1")]))
                .unwrap_err()
                .var,
            "MAX_DAILY_USD"
        );
        let no_token = |name: &str| (name == "RELAY_CALLBACK_URL").then(|| "http://r".to_string());
        assert_eq!(Config::from_lookup(no_token).unwrap_err().var, "VM_TOKEN");
    }
}
