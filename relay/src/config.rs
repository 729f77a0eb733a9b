//! The relay's configuration, read from the environment once at start-up. A channel is
//! enabled when its credentials are present; anything missing or malformed stops start-up
//! with a message that names the variable (never its value).

use std::path::PathBuf;
use std::time::Duration;

use contract::protocol::{Channel, Conversation};
pub use contract::service::ConfigError;
use contract::service::{Env, http_url};

#[derive(Clone)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// `whatsapp:+14155238886`.
    pub from: String,
    pub api_base: String,
    /// Twilio's Content API (`TWILIO_CONTENT_API_BASE`, `https://content.twilio.com`), where
    /// a question's quick-reply template lives.
    pub content_api_base: String,
    /// Hosts inbound media may redirect to: Twilio's CDN and its S3 bucket by default, plus
    /// `TWILIO_MEDIA_HOSTS` (the sim adds its own).
    pub media_hosts: Vec<String>,
}

#[derive(Clone)]
pub struct TelegramConfig {
    pub bot_token: String,
    pub webhook_secret: String,
    pub api_base: String,
}

#[derive(Clone)]
pub struct DiscordConfig {
    pub bot_token: String,
    /// Discord's REST API (`DISCORD_API_BASE`, `https://discord.com`).
    pub api_base: String,
    /// The Gateway (`DISCORD_GATEWAY_URL`, `wss://gateway.discord.gg`).
    pub gateway_url: String,
    /// Hosts inbound attachments are fetched from: Discord's CDN, plus `DISCORD_MEDIA_HOSTS`.
    pub media_hosts: Vec<String>,
}

#[derive(Clone)]
pub struct Config {
    pub port: u16,
    /// The URL the channels call, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub vm_url: String,
    pub vm_token: String,
    pub allowed_senders: Vec<String>,
    pub twilio: Option<TwilioConfig>,
    pub telegram: Option<TelegramConfig>,
    pub discord: Option<DiscordConfig>,
    /// The one-time pairing code, when the deploy made one.
    pub pairing: Option<crate::pairing::PairingConfig>,
    pub wake_notice_after: Duration,
    pub vm_deadline: Duration,
    /// How long delivered messages and sent replies are kept (`RETENTION_HOURS`).
    pub retention: Duration,
}

// Hand-written so a stray `{:?}` can never print a credential.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("public_url", &self.public_url)
            .field("vm_url", &self.vm_url)
            .field("allowed_senders", &self.allowed_senders.len())
            .field("twilio", &self.twilio.is_some())
            .field("telegram", &self.telegram.is_some())
            .field("discord", &self.discord.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the configuration through `var` (the process environment in `main`).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(var);
        let port = env.port()?;
        let public_url = http_url("PUBLIC_URL", env.required("PUBLIC_URL")?)?;
        let vm_url = http_url("VM_URL", env.required("VM_URL")?)?;
        let vm_token = env.required("VM_TOKEN")?;
        let allowed_senders = allowed_senders(&env)?;
        let twilio = twilio(&env)?;
        let telegram = telegram(&env)?;
        let discord = discord(&env)?;
        let pairing = pairing(&env)?;
        if twilio.is_none() && telegram.is_none() && discord.is_none() {
            return Err(ConfigError {
                var: "TELEGRAM_BOT_TOKEN",
                problem: "no channel is configured: set TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN or the TWILIO_ variables".into(),
            });
        }

        Ok(Config {
            port,
            public_url,
            data_dir: PathBuf::from(env.get("DATA_DIR").unwrap_or("/var/lib/textslash".into())),
            vm_url,
            vm_token,
            allowed_senders,
            twilio,
            telegram,
            discord,
            pairing,
            wake_notice_after: Duration::from_millis(env.number("WAKE_NOTICE_AFTER_MS", 2000)?),
            vm_deadline: Duration::from_secs(env.number("VM_DEADLINE_SECS", 120)?),
            retention: Duration::from_secs(3600 * env.number("RETENTION_HOURS", 168)?),
        })
    }

    pub fn channels(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.telegram.is_some() {
            names.push("telegram");
        }
        if self.twilio.is_some() {
            names.push("whatsapp");
        }
        if self.discord.is_some() {
            names.push("discord");
        }
        names
    }

    pub fn is_allowed(&self, sender: &str) -> bool {
        self.allowed_senders.iter().any(|allowed| allowed == sender)
    }
}

/// `ALLOWED_SENDERS`: comma-separated `telegram:<id>`, `whatsapp:+<number>` and
/// `discord:<user id>` entries.
fn allowed_senders<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Vec<String>, ConfigError> {
    let senders: Vec<String> = env
        .get("ALLOWED_SENDERS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for sender in &senders {
        let well_formed = match Conversation::parse(sender) {
            Some(c) => match c.channel {
                Channel::Telegram => true,
                Channel::Whatsapp => c.address.starts_with('+'),
                Channel::Discord => c.address.bytes().all(|b| b.is_ascii_digit()),
            },
            None => false,
        };
        if !well_formed {
            return Err(ConfigError {
                var: "ALLOWED_SENDERS",
                problem: "each entry must look like whatsapp:+15551234567, telegram:123456789 or discord:80351110224678912".into(),
            });
        }
    }
    Ok(senders)
}

/// WhatsApp through Twilio: all three `TWILIO_` variables, or none.
fn twilio<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<TwilioConfig>, ConfigError> {
    Ok(
        match (
            env.get("TWILIO_ACCOUNT_SID"),
            env.get("TWILIO_AUTH_TOKEN"),
            env.get("TWILIO_WHATSAPP_NUMBER"),
        ) {
            (None, None, None) => None,
            (Some(account_sid), Some(auth_token), Some(number)) => {
                if !account_sid.starts_with("AC") {
                    return Err(ConfigError {
                        var: "TWILIO_ACCOUNT_SID",
                        problem: "must start with AC".into(),
                    });
                }
                let digits = number.trim_start_matches("whatsapp:");
                if !digits.starts_with('+') || digits.len() < 8 {
                    return Err(ConfigError {
                        var: "TWILIO_WHATSAPP_NUMBER",
                        problem: "must be an international number such as +14155238886".into(),
                    });
                }
                let api_base = http_url(
                    "TWILIO_API_BASE",
                    env.get("TWILIO_API_BASE")
                        .unwrap_or("https://api.twilio.com".into()),
                )?;
                let content_api_base = http_url(
                    "TWILIO_CONTENT_API_BASE",
                    env.get("TWILIO_CONTENT_API_BASE")
                        .unwrap_or("https://content.twilio.com".into()),
                )?;
                let mut media_hosts: Vec<String> = crate::twilio::MEDIA_HOSTS
                    .iter()
                    .map(|h| h.to_string())
                    .collect();
                media_hosts.extend(
                    env.get("TWILIO_MEDIA_HOSTS")
                        .unwrap_or_default()
                        .split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty()),
                );
                Some(TwilioConfig {
                    account_sid,
                    auth_token,
                    from: format!("whatsapp:{digits}"),
                    api_base,
                    content_api_base,
                    media_hosts,
                })
            }
            (sid, token, _) => {
                let var = if sid.is_none() {
                    "TWILIO_ACCOUNT_SID"
                } else if token.is_none() {
                    "TWILIO_AUTH_TOKEN"
                } else {
                    "TWILIO_WHATSAPP_NUMBER"
                };
                return Err(ConfigError {
                    var,
                    problem: "is required when the other TWILIO_ variables are set".into(),
                });
            }
        },
    )
}

/// Telegram: the bot token, and the secret Telegram sends back with each webhook.
fn telegram<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<TelegramConfig>, ConfigError> {
    Ok(match env.get("TELEGRAM_BOT_TOKEN") {
        None => None,
        Some(bot_token) => {
            let webhook_secret = env.required("TELEGRAM_WEBHOOK_SECRET")?;
            let valid = (1..=256).contains(&webhook_secret.len())
                && webhook_secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(ConfigError {
                    var: "TELEGRAM_WEBHOOK_SECRET",
                    problem: "must be 1-256 characters of A-Z, a-z, 0-9, _ and -".into(),
                });
            }
            let api_base = http_url(
                "TELEGRAM_API_BASE",
                env.get("TELEGRAM_API_BASE")
                    .unwrap_or("https://api.telegram.org".into()),
            )?;
            Some(TelegramConfig {
                bot_token,
                webhook_secret,
                api_base,
            })
        }
    })
}

/// `PAIRING_CODE` and `PAIRING_EXPIRES_MS`, both or neither.
fn pairing<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<crate::pairing::PairingConfig>, ConfigError> {
    let Some(code) = env.get("PAIRING_CODE") else {
        return Ok(None);
    };
    if code.len() != crate::pairing::CODE_LEN
        || !code
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(ConfigError {
            var: "PAIRING_CODE",
            problem: "must be 16 lowercase hexadecimal characters".into(),
        });
    }
    let expires_ms = env.required("PAIRING_EXPIRES_MS")?;
    let expires_ms = expires_ms.parse().map_err(|_| ConfigError {
        var: "PAIRING_EXPIRES_MS",
        problem: "must be a Unix time in milliseconds".into(),
    })?;
    Ok(Some(crate::pairing::PairingConfig { code, expires_ms }))
}

/// Discord: the bot token; the Gateway and REST API are Discord's unless a test moves them.
fn discord<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<DiscordConfig>, ConfigError> {
    let Some(bot_token) = env.get("DISCORD_BOT_TOKEN") else {
        return Ok(None);
    };
    // A bot token is three dot-separated parts; an application's client secret or public key
    // (the usual wrong paste) is one.
    if bot_token.split('.').count() != 3 || bot_token.chars().any(char::is_whitespace) {
        return Err(ConfigError {
            var: "DISCORD_BOT_TOKEN",
            problem: "is not a bot token (Developer Portal → your application → Bot → Reset Token)"
                .into(),
        });
    }
    let api_base = http_url(
        "DISCORD_API_BASE",
        env.get("DISCORD_API_BASE")
            .unwrap_or("https://discord.com".into()),
    )?;
    let gateway_url = env
        .get("DISCORD_GATEWAY_URL")
        .unwrap_or("wss://gateway.discord.gg".into());
    let gateway_url = gateway_url.trim_end_matches('/').to_string();
    if !(gateway_url.starts_with("wss://") || gateway_url.starts_with("ws://")) {
        return Err(ConfigError {
            var: "DISCORD_GATEWAY_URL",
            problem: "must be a ws:// or wss:// URL".into(),
        });
    }
    let mut media_hosts: Vec<String> = crate::discord::MEDIA_HOSTS
        .iter()
        .map(|h| h.to_string())
        .collect();
    media_hosts.extend(
        env.get("DISCORD_MEDIA_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty()),
    );
    Ok(Some(DiscordConfig {
        bot_token,
        api_base,
        gateway_url,
        media_hosts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("PUBLIC_URL", "https://x-relay.fly.dev/"),
        ("VM_URL", "http://x-vm.flycast"),
        ("VM_TOKEN", "t"),
        ("TELEGRAM_BOT_TOKEN", "123:abc"),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cret_-"),
        ("ALLOWED_SENDERS", "telegram:42, whatsapp:+15551234567"),
    ];

    #[test]
    fn reads_defaults_and_channels() {
        let config = Config::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.public_url, "https://x-relay.fly.dev");
        assert_eq!(config.channels(), ["telegram"]);
        assert!(config.is_allowed("telegram:42") && !config.is_allowed("telegram:43"));
        assert_eq!(config.wake_notice_after, Duration::from_millis(2000));
        assert!(!format!("{config:?}").contains("123:abc"));
    }

    #[test]
    fn errors_name_the_variable_not_the_value() {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "VM_TOKEN");
        assert_eq!(
            Config::from_lookup(lookup(&pairs)).unwrap_err().var,
            "VM_TOKEN"
        );

        let mut pairs = BASE.to_vec();
        pairs.push(("TWILIO_ACCOUNT_SID", "ACsecretvalue"));
        let error = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(error.var, "TWILIO_AUTH_TOKEN");
        assert!(!error.to_string().contains("secretvalue"));

        let mut pairs = BASE.to_vec();
        pairs.push(("DISCORD_BOT_TOKEN", "not-a-bot-token"));
        let error = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(error.var, "DISCORD_BOT_TOKEN");
        assert!(!error.to_string().contains("not-a-bot-token"));

        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "ALLOWED_SENDERS");
        pairs.push(("ALLOWED_SENDERS", "discord:@me"));
        assert_eq!(
            Config::from_lookup(lookup(&pairs)).unwrap_err().var,
            "ALLOWED_SENDERS"
        );

        let mut pairs = BASE.to_vec();
        pairs.push(("PORT", "eighty"));
        assert_eq!(Config::from_lookup(lookup(&pairs)).unwrap_err().var, "PORT");

        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "TELEGRAM_BOT_TOKEN");
        assert_eq!(
            Config::from_lookup(lookup(&pairs)).unwrap_err().var,
            "TELEGRAM_BOT_TOKEN"
        );
    }
}
