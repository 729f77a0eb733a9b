//! The relay: the always-on front door of a textslash deployment. Channel webhooks come in,
//! are verified and journaled before they are acknowledged, and are forwarded to the vm
//! (waking it through Flycast); the vm's replies come back on `/callback` and go out on the
//! conversation's channel.
//!
//! # Layout
//! - [`channel`]: the seam between the queues and the channels ([`channel::Outlet`]).
//! - [`config`]: environment variables, checked at start-up.
//! - [`routes`]: the HTTP surface (webhooks, callback, health, media).
//! - [`journal`]: the SQLite inbox and outbox; nothing accepted is lost.
//! - [`forward`]: inbox → vm, with the "Waking up…" notice and a deadline.
//! - [`outbox`]: outbox → channels, split to each channel's limit, with retries.
//! - [`twilio`], [`telegram`], [`discord`]: each channel's formats, checks and APIs;
//!   [`quick_replies`]: a question's buttons on WhatsApp (Twilio's Content API).
//! - [`questions`], [`status`]: the agent's questions and its jobs' status lines.
//! - [`split`], [`media`]: long replies and outgoing images.
//! - [`pairing`]: the one-time code that makes its first sender the owner.
//! - [`unregister`]: `relay unregister-webhook`, which teardown runs in the machine.

pub mod channel;
pub mod config;
pub mod discord;
pub mod forward;
pub mod journal;
pub mod media;
pub mod outbox;
pub mod pairing;
pub mod questions;
pub mod quick_replies;
pub mod routes;
pub mod split;
pub mod status;
pub mod telegram;
pub mod twilio;
pub mod unregister;

use config::Config;
use contract::protocol::Conversation;
use journal::Journal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why sending to a channel failed: worth retrying (429, 5xx, network) or not.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
}

/// What every handler and background task shares.
pub struct App {
    pub config: Config,
    pub journal: Journal,
    pub http: reqwest::Client,
    /// Messages to the vm, in the contract's terms.
    pub vm: contract::client::ToVm,
    /// The conversation of each message journaled, for the forwarder (`forward::run`).
    pub inbox_arrivals: tokio::sync::mpsc::UnboundedSender<String>,
    /// Rung when a reply is queued.
    pub outbox_wake: Notify,
    pub started: Instant,
    /// The Telegram webhook's registration, as `/health` reports it (no secret in it).
    /// With the Unix milliseconds of its last change.
    pub telegram_webhook: std::sync::Mutex<(WebhookState, i64)>,
    /// Discord's REST client and Gateway status, when Discord is configured.
    pub discord: Option<discord::Discord>,
    /// When each stranger last got an answer to a pairing attempt (a throttle).
    pub pairing_answers: pairing::Throttle,
    /// The status lines of running jobs.
    pub status: status::StatusLines,
    /// WhatsApp's quick-reply templates, once found or made.
    pub quick_replies: quick_replies::QuickReplies,
}

/// What became of an inbound message handed to [`App::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Journaled; the forwarder has been woken.
    Accepted,
    /// Already journaled (the channel repeated it).
    Duplicate,
    /// Not from an allowed sender: dropped, and the sender gets nothing.
    Stranger,
    /// Could not be written: the channel must deliver it again.
    Unsaved,
    /// It carried the pairing code: its sender is now an owner, and was welcomed.
    Paired,
    /// It carried a wrong or expired pairing code, or came after the code was spent: nothing
    /// changed, and the sender was told (at most once in a while).
    PairingRefused,
    /// An owner's command the relay answers itself (`/owners`, `/unpair`): nothing reaches
    /// the vm.
    Answered,
}

/// What a sender is told when their message could not be saved and the channel will not
/// repeat it by itself (Twilio, and Discord's Gateway).
pub const PLEASE_RESEND: &str = "Sorry, your message could not be saved. Please send it again.";

impl App {
    /// Queues a one-line answer to `message`'s conversation under `reply_id` (so a repeated
    /// message is answered once) and wakes the outbox.
    pub(crate) async fn tell(
        &self,
        message: &journal::InboundMessage,
        reply_id: String,
        text: &str,
    ) {
        match self
            .journal
            .enqueue(&reply_id, &message.conversation, text, &[])
            .await
        {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(error) => tracing::error!("could not queue an answer: {error}"),
        }
    }

    /// What became of an owner's choice carried by `message` (a number, or a WhatsApp quick
    /// reply; Telegram and Discord answer a tap in their own way): a refusal is told in a
    /// message, except to a stranger, who hears nothing, as strangers never do.
    pub(crate) async fn settle(
        &self,
        message: &journal::InboundMessage,
        choice: questions::Choice,
    ) -> Admission {
        match choice {
            questions::Choice::Taken(_) => Admission::Answered,
            questions::Choice::Refused(why) if why == questions::NOT_AN_OWNER => {
                Admission::Stranger
            }
            questions::Choice::Refused(why) => {
                self.tell(message, format!("refused:{}", message.id), &why)
                    .await;
                Admission::Answered
            }
            questions::Choice::Unsaved => Admission::Unsaved,
        }
    }

    /// The one way into the inbox, for every channel: allowlist (or pairing), then journal,
    /// then wake the forwarder. Everything but `Unsaved` may be acknowledged to the channel.
    pub async fn admit(&self, message: journal::InboundMessage) -> Admission {
        let allowed = match self.is_allowed(&message.sender) {
            Ok(allowed) => allowed,
            // Whether the sender is an owner is unknown: not saved, so the channel sends it
            // again, rather than dropped as a stranger's.
            Err(error) => {
                tracing::error!("could not read the owners: {error}");
                return Admission::Unsaved;
            }
        };
        if allowed && let Some(answered) = self.owner_command(&message).await {
            return answered;
        }
        // "1", "2"…: an answer to the agent's open question, where the channel shows numbers.
        let numbered = Conversation::parse(&message.conversation)
            .and_then(|c| self.outlet(c.channel))
            .is_some_and(|outlet| !outlet.has_buttons());
        if allowed
            && numbered
            && let Some(choice) = self.numbered_reply(&message).await
        {
            return self.settle(&message, choice).await;
        }
        if !allowed {
            if let Some(pairing) = self.try_pairing(&message).await {
                return pairing;
            }
            // A stranger's number or id is personal data: the log gets a keyed hash, which
            // tells repeated senders apart without naming them; the text is none of our
            // business.
            tracing::info!(
                stranger = %stranger_tag(&self.config.vm_token, &message.sender),
                "dropped a message from a sender not in ALLOWED_SENDERS"
            );
            return Admission::Stranger;
        }
        match self.journal.accept(&message).await {
            Ok(true) => {
                // The forwarder ends only at shutdown; the message is journaled either way.
                let _ = self.inbox_arrivals.send(message.conversation.clone());
                Admission::Accepted
            }
            Ok(false) => {
                tracing::debug!(id = %message.id, "duplicate delivery acknowledged and dropped");
                Admission::Duplicate
            }
            Err(error) => {
                tracing::error!("could not journal a message: {error}");
                Admission::Unsaved
            }
        }
    }
}

/// A short keyed hash of a stranger's id: HMAC-SHA1 under this relay's `VM_TOKEN`, so it
/// cannot be reversed by trying every phone number.
fn stranger_tag(key: &str, sender: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(sender.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the Telegram webhook's registration stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum WebhookState {
    /// No Telegram on this relay.
    NotUsed,
    Registering,
    Registered,
    /// Failed for now; retried with backoff. The detail is Telegram's answer.
    Retrying(String),
    /// Telegram refused it for good (a wrong bot token, say).
    Refused(String),
}

pub use contract::service::StartError;

/// Runs the relay on `listener` until `shutdown` completes, then finishes in-flight requests,
/// stops the background tasks and closes the journal.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(StartError::DataDir)?;
    let journal =
        Journal::open(&config.data_dir.join("journal.db")).map_err(StartError::storage)?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("textslash-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS backend is compiled in");
    let config_has_telegram = config.telegram.is_some();
    let vm = contract::client::ToVm::new(http.clone(), &config.vm_url, &config.vm_token);
    let discord = config.discord.as_ref().map(discord::Discord::new);
    let (inbox_arrivals, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let app = Arc::new(App {
        config,
        journal,
        http,
        vm,
        inbox_arrivals,
        outbox_wake: Notify::new(),
        started: Instant::now(),
        telegram_webhook: std::sync::Mutex::new((
            if config_has_telegram {
                WebhookState::Registering
            } else {
                WebhookState::NotUsed
            },
            journal::now_ms(),
        )),
        discord,
        status: Default::default(),
        pairing_answers: pairing::Throttle::default(),
        quick_replies: Default::default(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(forward::run(app.clone(), arrivals, stop_rx.clone())),
        tokio::spawn(outbox::run(app.clone(), stop_rx.clone())),
        tokio::spawn(register_telegram_webhook(app.clone(), stop_rx.clone())),
        tokio::spawn(discord::run_gateway(app.clone(), stop_rx.clone())),
    ];

    tracing::info!(channels = ?app.config.channels(), "relay listening on {}", listener.local_addr().map_err(StartError::Serve)?);
    axum::serve(listener, routes::router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve)?;

    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Sleeps for `duration`; `false` when shutdown began meanwhile.
pub(crate) async fn sleep_unless_stopped(
    duration: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = stop.changed() => false,
    }
}

/// Full-jitter exponential backoff: a random wait up to `base * 2^attempt`, capped.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    ceiling.mul_f64(0.5 + fraction / 2.0)
}

/// With Telegram enabled, points the bot's webhook at this relay, retrying until it works.
async fn register_telegram_webhook(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(telegram) = &app.config.telegram else {
        return;
    };
    let set_state = |state: WebhookState| {
        let mut current = app.telegram_webhook.lock().expect("webhook state lock");
        if current.0 != state {
            *current = (state, journal::now_ms());
        }
    };
    for attempt in 0.. {
        match telegram::set_webhook(&app.http, telegram, &app.config.public_url).await {
            Ok(()) => {
                tracing::info!("Telegram webhook registered");
                set_state(WebhookState::Registered);
                return;
            }
            Err(SendError::Permanent(reason)) => {
                tracing::error!(
                    "Telegram refused the webhook (check TELEGRAM_BOT_TOKEN): {reason}"
                );
                set_state(WebhookState::Refused(reason));
                return;
            }
            Err(SendError::Retry { reason, after }) => {
                tracing::warn!("registering the Telegram webhook failed, will retry: {reason}");
                set_state(WebhookState::Retrying(reason));
                let wait = after.unwrap_or_else(|| {
                    backoff(attempt, Duration::from_secs(1), Duration::from_secs(60))
                });
                if !sleep_unless_stopped(wait, &mut stop).await {
                    return;
                }
            }
        }
    }
}
