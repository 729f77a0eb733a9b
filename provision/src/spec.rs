//! What the user asked for: a [`DeploymentSpec`], and its validation.
//!
//! Validation errors name the field and say what is wrong with it, never echoing the value
//! (it may be a secret pasted into the wrong box).

use crate::error::Error;
use crate::fly::Guest;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A credential. Its `Debug` never shows the value, so a spec can be logged safely.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().trim().to_string())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

/// The messaging channel and its credentials.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    Telegram {
        bot_token: Secret,
    },
    WhatsappTwilio {
        account_sid: Secret,
        auth_token: Secret,
        /// The Twilio WhatsApp sender, `+14155238886` (a `whatsapp:` prefix is accepted).
        whatsapp_number: String,
    },
    Discord {
        bot_token: Secret,
    },
}

impl Channel {
    pub fn kind(&self) -> ChannelKind {
        match self {
            Channel::Telegram { .. } => ChannelKind::Telegram,
            Channel::WhatsappTwilio { .. } => ChannelKind::WhatsappTwilio,
            Channel::Discord { .. } => ChannelKind::Discord,
        }
    }

    /// Checks the channel's credentials and numbers without the network.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Channel::Telegram { bot_token } => validate_telegram_token(bot_token),
            Channel::WhatsappTwilio {
                account_sid,
                auth_token,
                whatsapp_number,
            } => {
                validate_twilio(account_sid, auth_token)?;
                normalise_phone(whatsapp_number).ok_or_else(|| {
                    Error::invalid(
                        "whatsapp_number",
                        "expected an international number such as +14155238886",
                    )
                })?;
                Ok(())
            }
            Channel::Discord { bot_token } => validate_discord_token(bot_token),
        }
    }
}

/// The channel without its credentials: what a bookmark remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Telegram,
    WhatsappTwilio,
    Discord,
}

impl ChannelKind {
    /// The sender prefix the relay's allowlist uses for this channel.
    pub fn sender_prefix(self) -> &'static str {
        match self {
            ChannelKind::Telegram => "telegram:",
            ChannelKind::WhatsappTwilio => "whatsapp:",
            ChannelKind::Discord => "discord:",
        }
    }
    /// The relay path the channel delivers webhooks to; Discord has none (the relay keeps a
    /// Gateway connection instead).
    pub fn webhook_path(self) -> Option<&'static str> {
        match self {
            ChannelKind::Telegram => Some("/webhook/telegram"),
            ChannelKind::WhatsappTwilio => Some("/webhook/twilio"),
            ChannelKind::Discord => None,
        }
    }
}

/// A new conversation's approval mode (the vm's `APPROVAL_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Approvals {
    /// Reading, searching and editing in the workspace run freely; commands, writes
    /// elsewhere, the web and the browser ask an owner first.
    #[default]
    Ask,
    /// Every tool runs without asking.
    Auto,
}

impl Approvals {
    pub fn as_str(self) -> &'static str {
        match self {
            Approvals::Ask => "ask",
            Approvals::Auto => "auto",
        }
    }
}

/// Container images of the two runtimes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Images {
    pub relay: String,
    pub vm: String,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            relay: concat!(
                "ghcr.io/textslash/textslash-relay:",
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            vm: concat!("ghcr.io/textslash/textslash-vm:", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Everything a deploy needs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct DeploymentSpec {
    /// Apps are named `<prefix>-relay` and `<prefix>-vm`.
    pub prefix: String,
    /// The Fly org slug; `None` takes the token's own org.
    pub org: Option<String>,
    pub region: String,
    pub channel: Channel,
    pub anthropic_api_key: Secret,
    /// `whatsapp:+15551234567`, `telegram:123456789` or `discord:80351110224678912`.
    pub allowed_senders: Vec<String>,
    pub github_token: Option<Secret>,
    pub images: Images,
    pub relay_guest: Guest,
    pub vm_guest: Guest,
    pub volume_gb: u32,
    /// The most the agent may spend on Anthropic's API in a UTC day, in US dollars; the vm
    /// takes no new job once it is reached (`MAX_DAILY_USD`). `None`: no cap.
    pub max_daily_usd: Option<f64>,
    /// Whether the agent asks an owner before it runs a command, fetches from the web or
    /// drives the browser (`APPROVAL_MODE`; each conversation can switch with `/mode`).
    #[serde(default)]
    pub approvals: Approvals,
    /// Where each app answers publicly; `{app}` is replaced by the app name.
    pub app_url: String,
    /// The one-time code whose first sender becomes the owner, so nobody has to look up
    /// their own id; `None` to rely on `allowed_senders` alone.
    pub pairing: Option<Pairing>,
}

/// A one-time pairing code and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Pairing {
    pub code: Secret,
    /// Unix milliseconds.
    pub expires_ms: u64,
}

/// A new deployment's daily spend cap: room for a long day of work (Claude Code's own docs put
/// a typical developer at a few dollars a day), low enough that a runaway loop or a
/// prompt-injected agent costs at most this much before the user notices.
pub const DEFAULT_MAX_DAILY_USD: f64 = 10.0;

/// How long a pairing code works after the deploy: an hour, what a person needs to tap the
/// link the Done screen shows, and no longer than someone who got hold of it has.
pub const PAIRING_VALID_MS: u64 = 3600 * 1000;

impl Pairing {
    /// A fresh code (64 random bits as 16 lowercase hex characters), valid a day from `now_ms`.
    pub fn new(now_ms: u64) -> Pairing {
        Pairing {
            code: Secret::new(crate::random::token_hex(8)),
            expires_ms: now_ms + PAIRING_VALID_MS,
        }
    }

    /// The link (or, for Discord, where to paste the code) that pairs the user's phone:
    /// Telegram's deep link `t.me/<bot>?start=<code>` (Telegram sends `/start <code>` when the
    /// user taps Start), WhatsApp's `wa.me/<number>?text=<code>` (a prefilled message), and for
    /// Discord the bot's profile, where the user opens a DM and pastes the code.
    pub fn link(&self, channel: &PairingTarget) -> String {
        let code = self.code.expose();
        match channel {
            PairingTarget::Telegram { bot_username } => format!(
                "https://t.me/{}?start={code}",
                bot_username.trim_start_matches('@')
            ),
            PairingTarget::Whatsapp { number } => {
                format!(
                    "https://wa.me/{}?text={code}",
                    number.trim_start_matches('+')
                )
            }
            PairingTarget::Discord { application_id } => {
                format!("https://discord.com/users/{application_id}")
            }
        }
    }
}

/// Where a pairing link points.
pub enum PairingTarget {
    Telegram { bot_username: String },
    Whatsapp { number: String },
    Discord { application_id: String },
}

pub const DEFAULT_APP_URL: &str = "https://{app}.fly.dev";
pub const DEFAULT_API_BASE: &str = "https://api.machines.dev";

/// Longest prefix such that `<prefix>-relay` still fits a 63-character DNS label.
pub const MAX_PREFIX_LEN: usize = 63 - "-relay".len();

impl DeploymentSpec {
    /// A spec with the design's defaults for everything but the credentials.
    pub fn new(prefix: &str, region: &str, channel: Channel, anthropic_api_key: Secret) -> Self {
        DeploymentSpec {
            prefix: prefix.trim().to_string(),
            org: None,
            region: region.trim().to_string(),
            channel,
            anthropic_api_key,
            allowed_senders: Vec::new(),
            github_token: None,
            images: Images::default(),
            relay_guest: Guest {
                cpu_kind: "shared".into(),
                cpus: 1,
                memory_mb: 256,
            },
            // Claude Code plus Chromium: 1 GB is known to run out of memory.
            vm_guest: Guest {
                cpu_kind: "shared".into(),
                cpus: 2,
                memory_mb: 2048,
            },
            volume_gb: 1,
            max_daily_usd: Some(DEFAULT_MAX_DAILY_USD),
            approvals: Approvals::Ask,
            pairing: None,
            app_url: DEFAULT_APP_URL.into(),
        }
    }

    /// The private network both apps join, of the deployment alone: names take letters,
    /// digits and dashes and start with a letter (Fly, "Custom private networks").
    pub fn network(&self) -> String {
        format!("textslash-{}", self.prefix)
    }

    pub fn relay_app(&self) -> String {
        format!("{}-relay", self.prefix)
    }

    pub fn vm_app(&self) -> String {
        format!("{}-vm", self.prefix)
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), Error> {
        validate_prefix(&self.prefix)?;
        if let Some(org) = &self.org
            && (org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(Error::invalid(
                "org",
                "an org slug is lowercase letters, digits and hyphens",
            ));
        }
        validate_region(&self.region)?;
        self.channel.validate()?;
        if self.anthropic_api_key.is_empty()
            || self
                .anthropic_api_key
                .expose()
                .contains(char::is_whitespace)
        {
            return Err(Error::invalid(
                "anthropic_api_key",
                "paste the key from console.anthropic.com (it starts with sk-ant-)",
            ));
        }
        if self.pairing.is_none() {
            validate_senders(self.channel.kind(), &self.allowed_senders)?;
        } else {
            // Pairing makes the owner; ids typed as well must still be well formed.
            for sender in &self.allowed_senders {
                validate_sender(self.channel.kind(), sender)?;
            }
        }
        if let Some(token) = &self.github_token
            && token.expose().contains(char::is_whitespace)
        {
            return Err(Error::invalid(
                "github_token",
                "a GitHub token has no spaces",
            ));
        }
        if self.images.relay.trim().is_empty() || self.images.vm.trim().is_empty() {
            return Err(Error::invalid("images", "both image references are needed"));
        }
        if !(1..=500).contains(&self.volume_gb) {
            return Err(Error::invalid("volume_gb", "between 1 and 500 GB"));
        }
        if let Some(cap) = self.max_daily_usd
            && !(cap > 0.0 && cap <= 10_000.0)
        {
            return Err(Error::invalid(
                "max_daily_usd",
                "a daily cap in US dollars, more than 0 and at most 10000",
            ));
        }
        if !self.app_url.contains("{app}") {
            return Err(Error::invalid(
                "app_url",
                "must contain {app}, e.g. https://{app}.fly.dev",
            ));
        }
        Ok(())
    }
}

pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let field = "prefix";
    if prefix.is_empty() {
        return Err(Error::invalid(field, "choose a name such as my-agent"));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_PREFIX_LEN} characters"),
        ));
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::invalid(
            field,
            "only lowercase letters, digits and hyphens",
        ));
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::invalid(field, "must start with a letter"));
    }
    if prefix.ends_with('-') || prefix.contains("--") {
        return Err(Error::invalid(
            field,
            "no hyphen at the end and no two hyphens in a row",
        ));
    }
    Ok(())
}

pub fn validate_region(region: &str) -> Result<(), Error> {
    if region.len() == 3 && region.chars().all(|c| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "region",
            "a Fly region code is three lowercase letters, e.g. ams or iad",
        ))
    }
}

/// Bot API tokens look like `123456789:AA…` (digits, a colon, then 30+ URL-safe characters).
pub fn validate_telegram_token(token: &Secret) -> Result<(), Error> {
    let ok = token.expose().split_once(':').is_some_and(|(id, rest)| {
        !id.is_empty()
            && id.chars().all(|c| c.is_ascii_digit())
            && rest.len() >= 30
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "telegram_bot_token",
            "paste the whole token @BotFather gave you (digits, a colon, then letters)",
        ))
    }
}

/// A Discord bot token: three dot-separated parts, the first the bot's user id in base64
/// (docs/channels.md § Discord). An application's client secret or public key, the usual
/// wrong pastes, are one part.
pub fn validate_discord_token(token: &Secret) -> Result<(), Error> {
    let parts: Vec<&str> = token.expose().split('.').collect();
    let ok = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        && discord_application_id(token).is_some();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "discord_bot_token",
            "paste the bot's token (Developer Portal → your application → Bot → Reset Token): three parts separated by dots",
        ))
    }
}

/// The bot's user id, from its token's first part; for bots made since 2016 it is also the
/// application id that the invite link names.
pub fn discord_application_id(token: &Secret) -> Option<String> {
    let first = token.expose().split('.').next()?;
    let id = String::from_utf8(decode_base64(first)?).ok()?;
    (id.len() >= 17 && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

/// The link that adds the bot to one of the user's servers (a user can DM a bot they share a
/// server with). No permissions are asked for: the bot only answers direct messages.
pub fn discord_invite_url(token: &Secret) -> Option<String> {
    discord_application_id(token).map(|id| discord_invite_link(&id))
}

/// The invite link for the application `id` (the page keeps only the id, not the token).
pub fn discord_invite_link(application_id: &str) -> String {
    format!(
        "https://discord.com/oauth2/authorize?client_id={application_id}&scope=bot&permissions=0"
    )
}

/// Standard or URL-safe base64, padding optional: enough for a token's id part without a
/// base64 crate in the page.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        bits = (bits << 6) | u32::from(value(c)?);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

pub fn validate_twilio(account_sid: &Secret, auth_token: &Secret) -> Result<(), Error> {
    let is_hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let sid = account_sid.expose();
    if !(sid.len() == 34 && sid.starts_with("AC") && is_hex(&sid[2..])) {
        return Err(Error::invalid(
            "twilio_account_sid",
            "starts with AC followed by 32 hexadecimal characters (Twilio console, Account info)",
        ));
    }
    let token = auth_token.expose();
    if !(token.len() == 32 && is_hex(token)) {
        return Err(Error::invalid(
            "twilio_auth_token",
            "32 hexadecimal characters (Twilio console, Account info)",
        ));
    }
    Ok(())
}

/// `+14155238886`, `whatsapp:+1 415 523 8886` → `+14155238886`.
pub fn normalise_phone(number: &str) -> Option<String> {
    let digits: String = number
        .trim()
        .trim_start_matches("whatsapp:")
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let rest = digits.strip_prefix('+')?;
    (rest.len() >= 7 && rest.len() <= 15 && rest.chars().all(|c| c.is_ascii_digit()))
        .then_some(digits)
}

/// The allowlist: each sender well formed, and at least one for WhatsApp (Twilio numbers are
/// reachable by anyone, so an empty list would serve no one).
pub fn validate_senders(kind: ChannelKind, senders: &[String]) -> Result<(), Error> {
    for sender in senders {
        validate_sender(kind, sender)?;
    }
    if senders.is_empty() {
        match kind {
            ChannelKind::WhatsappTwilio => {
                return Err(Error::invalid(
                    "allowed_senders",
                    "add your own WhatsApp number, e.g. whatsapp:+15551234567",
                ));
            }
            ChannelKind::Discord => {
                return Err(Error::invalid(
                    "allowed_senders",
                    "add your own Discord user id, e.g. discord:80351110224678912",
                ));
            }
            ChannelKind::Telegram => {}
        }
    }
    Ok(())
}

pub fn validate_sender(kind: ChannelKind, sender: &str) -> Result<(), Error> {
    let field = "allowed_senders";
    let Some(id) = sender.strip_prefix(kind.sender_prefix()) else {
        return Err(Error::invalid(
            field,
            format!(
                "each sender starts with {} for this channel",
                kind.sender_prefix()
            ),
        ));
    };
    let ok = match kind {
        ChannelKind::Telegram => {
            !id.is_empty()
                && id
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
        }
        ChannelKind::WhatsappTwilio => normalise_phone(id).as_deref() == Some(id),
        ChannelKind::Discord => {
            (17..=20).contains(&id.len()) && id.chars().all(|c| c.is_ascii_digit())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            match kind {
                ChannelKind::Telegram => {
                    "a Telegram sender is telegram: followed by the numeric chat id"
                }
                ChannelKind::WhatsappTwilio => {
                    "a WhatsApp sender is whatsapp: followed by +country code and number, no spaces"
                }
                ChannelKind::Discord => {
                    "a Discord sender is discord: followed by your user id, 17 to 20 digits (Settings → Advanced → Developer Mode, then Copy User ID on your name)"
                }
            },
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn telegram_spec(prefix: &str) -> DeploymentSpec {
        let mut spec = DeploymentSpec::new(
            prefix,
            "ams",
            Channel::Telegram {
                bot_token: Secret::new("123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
            },
            Secret::new("sk-ant-test-key"),
        );
        spec.allowed_senders = vec!["telegram:42".into()];
        spec
    }

    #[test]
    fn a_good_spec_validates() {
        telegram_spec("my-agent").validate().unwrap();
    }

    #[test]
    fn prefixes_follow_fly_app_name_rules() {
        for bad in [
            "",
            "My-agent",
            "9lives",
            "a_b",
            "agent-",
            "a--b",
            &"a".repeat(58),
        ] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "my-agent-2", &"a".repeat(57)] {
            validate_prefix(good).unwrap();
        }
    }

    #[test]
    fn errors_name_the_field_never_the_value() {
        let mut spec = telegram_spec("x");
        spec.channel = Channel::Telegram {
            bot_token: Secret::new("not-a-token-SECRETVALUE"),
        };
        let message = spec.validate().unwrap_err().to_string();
        assert!(message.starts_with("telegram_bot_token:"), "{message}");
        assert!(!message.contains("SECRETVALUE"));
        assert!(!format!("{spec:?}").contains("sk-ant-test-key"));
    }

    #[test]
    fn whatsapp_needs_well_formed_credentials_and_an_allowed_sender() {
        let mut spec = DeploymentSpec::new(
            "wa",
            "iad",
            Channel::WhatsappTwilio {
                account_sid: Secret::new(format!("AC{}", "a".repeat(32))),
                auth_token: Secret::new("b".repeat(32)),
                whatsapp_number: "whatsapp:+1 415 523 8886".into(),
            },
            Secret::new("sk-ant-x"),
        );
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .starts_with("allowed_senders")
        );
        spec.allowed_senders = vec!["whatsapp:+15551234567".into()];
        spec.validate().unwrap();
        spec.allowed_senders = vec!["telegram:1".into()];
        assert!(spec.validate().is_err());
    }

    #[test]
    fn discord_tokens_and_user_ids_are_checked_and_the_invite_link_comes_from_the_token() {
        let token =
            Secret::new("MTIzNDU2Nzg5MDEyMzQ1Njc4.GsImTk.c2ltLWRpc2NvcmQtdG9rZW4tZm9yLXRlc3Rz");
        let mut spec = DeploymentSpec::new(
            "dc",
            "ams",
            Channel::Discord {
                bot_token: token.clone(),
            },
            Secret::new("sk-ant-x"),
        );
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.starts_with("allowed_senders"), "{error}");
        spec.allowed_senders = vec!["discord:80351110224678912".into()];
        spec.validate().unwrap();
        assert_eq!(
            discord_invite_url(&token).as_deref(),
            Some(
                "https://discord.com/oauth2/authorize?client_id=123456789012345678&scope=bot&permissions=0"
            )
        );
        for wrong_sender in ["discord:me", "discord:123", "telegram:80351110224678912"] {
            spec.allowed_senders = vec![wrong_sender.into()];
            assert!(spec.validate().is_err(), "{wrong_sender}");
        }
        spec.allowed_senders = vec!["discord:80351110224678912".into()];
        // A client secret (one part) and a token whose id part is not an id are refused,
        // and the message never holds the value.
        for wrong in ["Zm9vYmFyYmF6cXV4SECRET", "bm90LWFuLWlk.GsImTk.SECRET"] {
            spec.channel = Channel::Discord {
                bot_token: Secret::new(wrong),
            };
            let message = spec.validate().unwrap_err().to_string();
            assert!(message.starts_with("discord_bot_token:"), "{message}");
            assert!(!message.contains("SECRET"));
        }
    }

    #[test]
    fn phones_are_normalised() {
        assert_eq!(
            normalise_phone("whatsapp:+1 (415) 523-8886").as_deref(),
            Some("+14155238886")
        );
        assert_eq!(normalise_phone("4155238886"), None);
    }
}
