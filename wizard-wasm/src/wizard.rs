//! The wizard's state: what the user typed, split in two. Secrets live in signals only and
//! vanish with the tab; everything else is the [`Draft`], saved to localStorage on every change
//! so a reload (even mid-deploy) comes back to where the user was.

use crate::config::Config;
use crate::pages::token::FlyToken;
use crate::storage::{self, DRAFT_KEY, KeyValue, LocalStorage, PAIRING_KEY, SessionStorage};
use leptos::prelude::*;
use provision::fly::Guest;
use provision::spec::{self, Secret, normalise_phone};
use provision::{Channel, DeploymentSpec, Event};
use serde::{Deserialize, Serialize};

/// The non-secret answers, persisted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Draft {
    pub prefix: String,
    pub region: String,
    /// `telegram`, `whatsapp` or `discord`.
    pub channel: String,
    /// The owner's Telegram user id (digits).
    pub telegram_owner: String,
    /// The Twilio WhatsApp sender number.
    pub whatsapp_number: String,
    /// The owner's own WhatsApp number.
    pub whatsapp_owner: String,
    /// The owner's Discord user id (digits).
    pub discord_owner: String,
    /// The Discord bot's application id, read from its token (public: the invite link holds
    /// it), so the Done screen can offer the invite link after a reload.
    pub discord_app_id: String,
    /// The Telegram bot's @username, from the token check (for the pairing link).
    pub telegram_bot: String,
    /// The deployment's one-time pairing code. Never in localStorage, which every page of a
    /// shared origin (`<you>.github.io`) can read: it lives in this tab's sessionStorage
    /// ([`PAIRING_KEY`]), so a reload still shows the code a resumed deploy sets.
    #[serde(skip)]
    pub pairing_code: String,
    pub vm_memory_mb: u32,
    /// The daily spend cap in US dollars as typed; empty for no cap.
    #[serde(default = "default_daily_cap")]
    pub daily_cap_usd: String,
    /// The agent asks before commands, the web and the browser (`APPROVAL_MODE=ask`).
    #[serde(default = "ask_first")]
    pub ask_first: bool,
    /// Progress of the last deploy run, so a reload shows it.
    pub events: Vec<Event>,
    pub deploy_started_ms: Option<u64>,
    /// The deploy finished: the deploy screen shows what to do next.
    pub finished: bool,
}

/// Signals shared by the wizard's screens (all `Copy`).
#[derive(Clone, Copy)]
pub struct Wizard {
    pub draft: RwSignal<Draft>,
    pub fly: FlyToken,
    pub telegram_token: RwSignal<String>,
    pub twilio_sid: RwSignal<String>,
    pub twilio_token: RwSignal<String>,
    pub discord_token: RwSignal<String>,
    pub anthropic_key: RwSignal<String>,
    pub github_token: RwSignal<String>,
    /// Results of the checks: the bot's name, whether the key works (the org is in `fly`).
    pub bot_name: RwSignal<Option<String>>,
    pub key_checked: RwSignal<bool>,
    /// A deploy is running in this tab.
    pub deploying: RwSignal<bool>,
    pub deploy_error: RwSignal<Option<String>>,
}

impl Wizard {
    pub fn new() -> Wizard {
        let stored: Option<Draft> = LocalStorage
            .get(DRAFT_KEY)
            .and_then(|text| serde_json::from_str(&text).ok());
        let mut draft = stored.unwrap_or_else(|| Draft {
            daily_cap_usd: default_daily_cap(),
            ask_first: true,
            ..Draft::default()
        });
        if draft.channel.is_empty() {
            draft.channel = "telegram".into();
        }
        if draft.vm_memory_mb == 0 {
            draft.vm_memory_mb = 2048;
        }
        draft.pairing_code = SessionStorage
            .get(PAIRING_KEY)
            .filter(|code| !code.is_empty())
            .unwrap_or_else(|| {
                let code = new_pairing_code();
                SessionStorage.set(PAIRING_KEY, &code);
                code
            });
        let fly = FlyToken::remembered();
        // Typed in the page's first part, before this part had arrived.
        if let Some(token) = crate::front::take_handed_over(|handover| handover.fly_token.take()) {
            fly.token.set(token);
        }
        let wizard = Wizard {
            draft: RwSignal::new(draft),
            fly,
            telegram_token: RwSignal::new(String::new()),
            twilio_sid: RwSignal::new(String::new()),
            twilio_token: RwSignal::new(String::new()),
            discord_token: RwSignal::new(String::new()),
            anthropic_key: RwSignal::new(String::new()),
            github_token: RwSignal::new(String::new()),
            bot_name: RwSignal::new(None),
            key_checked: RwSignal::new(false),
            deploying: RwSignal::new(false),
            deploy_error: RwSignal::new(None),
        };
        let draft = wizard.draft;
        Effect::new(move |_| {
            let draft = draft.get();
            let text = serde_json::to_string(&draft).expect("drafts serialise");
            LocalStorage.set(DRAFT_KEY, &text);
            SessionStorage.set(PAIRING_KEY, &draft.pairing_code);
        });
        wizard
    }

    /// Starts a new deployment from scratch (keeps the Fly token).
    /// ([`forget_draft`] does the same before a `Wizard` exists.)
    pub fn reset(&self) {
        self.draft.set(Draft {
            channel: "telegram".into(),
            vm_memory_mb: 2048,
            pairing_code: new_pairing_code(),
            daily_cap_usd: default_daily_cap(),
            ask_first: true,
            ..Draft::default()
        });
        for secret in [
            self.telegram_token,
            self.twilio_sid,
            self.twilio_token,
            self.discord_token,
            self.anthropic_key,
            self.github_token,
        ] {
            secret.set(String::new());
        }
        self.bot_name.set(None);
        self.key_checked.set(false);
        self.deploy_error.set(None);
    }

    /// The allowed senders from the owner fields. A WhatsApp number typed with spaces or
    /// dashes is tidied to `whatsapp:+15551234567`; one that cannot be is kept as typed so the
    /// validation names the field.
    pub fn allowed_senders(draft: &Draft) -> Vec<String> {
        if draft.channel == "discord" {
            let id = draft.discord_owner.trim();
            return if id.is_empty() {
                vec![]
            } else {
                vec![format!("discord:{id}")]
            };
        }
        if draft.channel == "whatsapp" {
            let typed = draft.whatsapp_owner.trim();
            if typed.is_empty() {
                return vec![];
            }
            let number = normalise_phone(typed)
                .unwrap_or_else(|| typed.trim_start_matches("whatsapp:").to_string());
            vec![format!("whatsapp:{number}")]
        } else {
            let id = draft.telegram_owner.trim();
            if id.is_empty() {
                vec![]
            } else {
                vec![format!("telegram:{id}")]
            }
        }
    }

    /// Checks the channel step's fields before Next, with the rules the deploy uses. An owner
    /// id is optional: without one, pairing on the Done screen makes the owner.
    pub fn channel_problem(&self) -> Result<(), provision::Error> {
        let draft = self.draft.get_untracked();
        let channel = self.channel(&draft);
        channel.validate()?;
        for sender in Self::allowed_senders(&draft) {
            spec::validate_sender(channel.kind(), &sender)?;
        }
        Ok(())
    }

    /// The channel with its secrets, as typed.
    fn channel(&self, draft: &Draft) -> Channel {
        match draft.channel.as_str() {
            "whatsapp" => Channel::WhatsappTwilio {
                account_sid: Secret::new(self.twilio_sid.get_untracked()),
                auth_token: Secret::new(self.twilio_token.get_untracked()),
                whatsapp_number: draft.whatsapp_number.trim().to_string(),
            },
            "discord" => Channel::Discord {
                bot_token: Secret::new(self.discord_token.get_untracked().trim()),
            },
            _ => Channel::Telegram {
                bot_token: Secret::new(self.telegram_token.get_untracked()),
            },
        }
    }

    /// An error as the page says it: the field by the label the user sees.
    pub fn explain(&self, error: &provision::Error) -> String {
        let provision::Error::InvalidSpec { field, problem } = error else {
            return error.to_string();
        };
        let channel = self.draft.with_untracked(|d| d.channel.clone());
        let whatsapp = channel == "whatsapp";
        let discord = channel == "discord";
        let label = match *field {
            "prefix" => "Name prefix",
            "region" => "Region",
            "telegram_bot_token" | "discord_bot_token" => "Bot token",
            "twilio_account_sid" => "Account SID",
            "twilio_auth_token" => "Auth token",
            "whatsapp_number" => "Twilio WhatsApp number",
            "allowed_senders" if whatsapp => "Your own WhatsApp number",
            "allowed_senders" if discord => "Your Discord user id",
            "allowed_senders" => "Your Telegram user id",
            "anthropic_api_key" => "Anthropic API key",
            "github_token" => "GitHub token",
            "max_daily_usd" => "Daily spend cap",
            other => other,
        };
        // The page asks for the bare id or number; the `telegram:` form is an internal detail.
        let problem = match *field {
            "allowed_senders" if whatsapp => "an international number such as +15551234567",
            "allowed_senders" if discord => {
                "the 17 to 20 digits that Copy User ID gives you (digits only)"
            }
            "allowed_senders" => {
                "your numeric Telegram id (digits only), or leave it empty and pair after the deploy"
            }
            _ => problem.as_str(),
        };
        format!("{label}: {problem}.")
    }

    /// The spec to deploy, validated; errors name the field.
    pub fn spec(&self, config: &Config) -> Result<DeploymentSpec, provision::Error> {
        let draft = self.draft.get_untracked();
        let mut spec = DeploymentSpec::new(
            &draft.prefix,
            &draft.region,
            self.channel(&draft),
            Secret::new(self.anthropic_key.get_untracked()),
        );
        spec.org = self.fly.org.get_untracked();
        spec.allowed_senders = Self::allowed_senders(&draft);
        // An owner given by id needs no pairing: a code nobody uses would only be a way in.
        spec.pairing = spec.allowed_senders.is_empty().then(|| spec::Pairing {
            code: Secret::new(draft.pairing_code.clone()),
            expires_ms: js_sys::Date::now() as u64 + spec::PAIRING_VALID_MS,
        });
        let github = self.github_token.get_untracked();
        spec.github_token = (!github.trim().is_empty()).then(|| Secret::new(github));
        spec.images = config.images.clone();
        spec.app_url = config.app_url.clone();
        spec.vm_guest = Guest {
            memory_mb: draft.vm_memory_mb,
            ..spec.vm_guest
        };
        let cap = draft.daily_cap_usd.trim().trim_start_matches('$');
        spec.max_daily_usd = if cap.is_empty() {
            None
        } else {
            // An unreadable amount is refused by `validate`, naming the field.
            Some(cap.parse().unwrap_or(f64::NAN))
        };
        spec.approvals = if draft.ask_first {
            spec::Approvals::Ask
        } else {
            spec::Approvals::Auto
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl Default for Wizard {
    fn default() -> Self {
        Wizard::new()
    }
}

/// A new draft's daily spend cap, as the field shows it.
fn ask_first() -> bool {
    true
}

fn default_daily_cap() -> String {
    provision::cost::dollars_typed(spec::DEFAULT_MAX_DAILY_USD)
}

/// A fresh pairing code for a new draft.
fn new_pairing_code() -> String {
    spec::Pairing::new(0).code.expose().to_string()
}

/// The deployments list, as a signal the screens share.
pub fn remembered() -> Vec<provision::Deployment> {
    storage::deployments(&LocalStorage)
}

/// Forgets the saved draft and pairing code, so the next [`Wizard::new`] starts a new
/// deployment from scratch: what [`Wizard::reset`] does, for the page's first part, which has
/// no wizard yet.
pub fn forget_draft() {
    LocalStorage.remove(DRAFT_KEY);
    SessionStorage.remove(PAIRING_KEY);
}
