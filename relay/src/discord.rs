//! Discord: direct messages to the bot come in over the Gateway, a websocket that
//! twilight-gateway keeps up (hello, identify with the direct-messages intent, heartbeats and
//! their acks, resume, reconnect and invalid-session handling, as docs/channels.md § Discord
//! lists them). Replies, typing and images go out through the REST API with twilight-http. A
//! question's choices are buttons (message components); a tap arrives as `INTERACTION_CREATE`
//! on the Gateway and is answered through the interaction callback.
//!
//! Nothing here acknowledges anything: the Gateway has no acks. Instead each accepted message
//! is journaled first and the session's sequence number saved after it, so a relay that
//! restarts resumes the session and Discord replays every event it has not seen.

use crate::config::DiscordConfig;
use crate::journal::{GatewaySession, InboundMessage, MediaRef};
use crate::questions::Choice;
use crate::split::{Limit, Unit};
use crate::{App, SendError, media};
use contract::protocol::{
    Channel, Conversation, Decision, Question, choice_token, parse_choice_token,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use twilight_gateway::{
    CloseFrame, Event, EventTypeFlags, Intents, Session, Shard, ShardId, StreamExt as _,
};
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_model::application::interaction::{Interaction, InteractionData};
use twilight_model::channel::message::MessageFlags;
use twilight_model::gateway::payload::incoming::MessageCreate;
use twilight_model::http::attachment::Attachment;
use twilight_model::http::interaction::{
    InteractionResponse, InteractionResponseData, InteractionResponseType,
};
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

/// A message's content is at most 2,000 characters (Discord, "Create Message").
pub const TEXT_LIMIT: Limit = Limit {
    max: 2000,
    unit: Unit::Chars,
};
/// Where Discord serves attachments.
pub const MEDIA_HOSTS: &[&str] = &["cdn.discordapp.com", "media.discordapp.net"];
/// A bot's upload limit without server boosts (Discord, "Uploading Files": 10 MiB).
pub const UPLOAD_MAX_BYTES: usize = 10 * 1024 * 1024;
/// The journal's key for this channel's Gateway session.
const SESSION_KEY: &str = "discord";

/// Discord on this relay: the REST client and where the Gateway connection stands.
pub struct Discord {
    pub http: twilight_http::Client,
    pub status: Mutex<GatewayStatus>,
}

/// The Gateway connection as `/health` reports it: connected or not, since when, and the
/// last error (never a secret: Discord's close codes and reasons carry none).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GatewayStatus {
    pub state: GatewayState,
    /// Unix milliseconds of the last change of `state`.
    pub since_ms: i64,
    /// The bot's user name, once Discord said it in READY.
    pub bot: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayState {
    Connecting,
    Connected,
    /// Lost; twilight-gateway reconnects (and resumes) with backoff.
    Reconnecting,
    /// Discord closed the connection for good (a wrong token, say); nothing more is tried.
    Refused,
}

impl Discord {
    pub fn new(config: &DiscordConfig) -> Discord {
        let mut builder = twilight_http::Client::builder()
            .token(config.bot_token.clone())
            .timeout(Duration::from_secs(30));
        if let Some((host, use_http)) = rest_proxy(&config.api_base) {
            builder = builder.proxy(host, use_http);
        }
        Discord {
            http: builder.build(),
            status: Mutex::new(GatewayStatus {
                state: GatewayState::Connecting,
                since_ms: crate::journal::now_ms(),
                bot: None,
                last_error: None,
            }),
        }
    }

    pub fn status(&self) -> GatewayStatus {
        self.status.lock().expect("gateway status lock").clone()
    }

    fn set_state(&self, state: GatewayState, error: Option<String>) {
        let mut status = self.status.lock().expect("gateway status lock");
        if status.state != state {
            status.state = state;
            status.since_ms = crate::journal::now_ms();
        }
        if error.is_some() {
            status.last_error = error;
        }
    }
}

/// twilight-http takes a host (and path) in place of `discord.com`, and whether to use plain
/// HTTP; `None` for Discord's own API.
fn rest_proxy(api_base: &str) -> Option<(String, bool)> {
    if api_base == "https://discord.com" {
        return None;
    }
    match api_base.strip_prefix("http://") {
        Some(host) => Some((host.to_string(), true)),
        None => Some((api_base.trim_start_matches("https://").to_string(), false)),
    }
}

fn channel_id(address: &str) -> Result<Id<ChannelMarker>, SendError> {
    address
        .parse::<u64>()
        .ok()
        .and_then(Id::new_checked)
        .ok_or_else(|| SendError::Permanent("not a Discord channel id".into()))
}

/// 429 (with Discord's `retry_after`), 5xx and network failures are worth a retry; the rest
/// (a refused token, an unknown channel, a message Discord will never take) are not.
/// A Gateway error by its kind alone. twilight's own text for an event it cannot read is the
/// raw event, a user's message included, and `/health` is public: it must never show that.
fn error_kind(error: &twilight_gateway::error::ReceiveMessageError) -> &'static str {
    use twilight_gateway::error::ReceiveMessageErrorType;
    match error.kind() {
        ReceiveMessageErrorType::Deserializing { .. } => {
            "Discord sent an event that could not be read; it was skipped"
        }
        ReceiveMessageErrorType::Reconnect => "could not reconnect to the Gateway; retrying",
        _ => "the Gateway connection failed; reconnecting",
    }
}

fn classify(error: twilight_http::Error) -> SendError {
    match error.kind() {
        ErrorType::Response {
            error: ApiError::Ratelimited(limited),
            ..
        } => SendError::Retry {
            reason: format!("Discord rate limit: retry after {} s", limited.retry_after),
            after: Some(Duration::from_secs_f64(limited.retry_after.max(0.0))),
        },
        ErrorType::Response { status, error, .. } if status.is_server_error() => SendError::Retry {
            reason: format!("Discord answered {}: {error}", status.get()),
            after: None,
        },
        ErrorType::Response { status, error, .. } => {
            SendError::Permanent(format!("Discord answered {}: {error}", status.get()))
        }
        ErrorType::Unauthorized => {
            SendError::Permanent("Discord refused the bot token (check DISCORD_BOT_TOKEN)".into())
        }
        ErrorType::RequestError | ErrorType::RequestTimedOut | ErrorType::RequestCanceled => {
            SendError::Retry {
                reason: format!("Discord unreachable: {error}"),
                after: None,
            }
        }
        _ => SendError::Permanent(format!("Discord: {error}")),
    }
}

pub async fn send_text(discord: &Discord, channel: &str, text: &str) -> Result<(), SendError> {
    discord
        .http
        .create_message(channel_id(channel)?)
        .content(text)
        .await
        .map(drop)
        .map_err(classify)
}

/// A message whose id comes back, to edit it later (a status line).
pub async fn send_text_for_id(
    discord: &Discord,
    channel: &str,
    text: &str,
) -> Result<String, SendError> {
    let message = discord
        .http
        .create_message(channel_id(channel)?)
        .content(text)
        .await
        .map_err(classify)?
        .model()
        .await
        .map_err(|error| SendError::Permanent(format!("Discord's answer: {error}")))?;
    Ok(message.id.to_string())
}

/// Edit Message: the bot's own message gets new content.
pub async fn edit_text(
    discord: &Discord,
    channel: &str,
    message: &str,
    text: &str,
) -> Result<(), SendError> {
    let message_id = message
        .parse::<twilight_model::id::Id<twilight_model::id::marker::MessageMarker>>()
        .map_err(|_| SendError::Permanent("not a Discord message id".into()))?;
    discord
        .http
        .update_message(channel_id(channel)?, message_id)
        .content(Some(text))
        .await
        .map(drop)
        .map_err(classify)
}

/// A question's text with one row of buttons (message components), one per choice; each
/// button's `custom_id` is [`contract::protocol::choice_token`].
pub async fn send_with_buttons(
    discord: &Discord,
    channel: &str,
    text: &str,
    question: &Question,
) -> Result<(), SendError> {
    use twilight_model::channel::message::component::{ActionRow, Button, ButtonStyle, Component};
    let buttons = question
        .choices
        .iter()
        .map(|decision| {
            Component::Button(Button {
                custom_id: Some(choice_token(&question.id, *decision)),
                disabled: false,
                emoji: None,
                id: None,
                label: Some(decision.label().to_string()),
                sku_id: None,
                style: match decision {
                    Decision::Allow => ButtonStyle::Primary,
                    Decision::AlwaysAllow => ButtonStyle::Secondary,
                    Decision::Deny => ButtonStyle::Danger,
                },
                url: None,
            })
        })
        .collect();
    let row = [Component::ActionRow(ActionRow {
        components: buttons,
        id: None,
    })];
    discord
        .http
        .create_message(channel_id(channel)?)
        .content(text)
        .components(&row)
        .await
        .map(drop)
        .map_err(classify)
}

/// A tap on a question's button (`INTERACTION_CREATE`, a message component): checked and
/// journaled, then answered within Discord's 3 seconds: the question's message updated to
/// say what was decided (its buttons gone), or, when nothing changed, a word only the tapper
/// sees.
async fn on_tap(app: &App, discord: &Discord, interaction: &Interaction) {
    let Some(InteractionData::MessageComponent(data)) = &interaction.data else {
        return;
    };
    let tapper = interaction
        .user
        .as_ref()
        .or(interaction.member.as_ref().and_then(|m| m.user.as_ref()))
        .map(|user| Conversation::id(Channel::Discord, user.id));
    let channel = interaction
        .channel
        .as_ref()
        .map(|c| Conversation::id(Channel::Discord, c.id));
    let choice = match (tapper, channel, parse_choice_token(&data.custom_id)) {
        (Some(tapper), Some(channel), Some((question, decision))) => {
            app.choose(&tapper, &channel, question, decision).await
        }
        _ => Choice::Refused(crate::questions::NOT_OURS.into()),
    };
    let response = match choice {
        Choice::Taken(decision) => {
            let shown = interaction
                .message
                .as_ref()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            InteractionResponse {
                kind: InteractionResponseType::UpdateMessage,
                data: Some(InteractionResponseData {
                    content: Some(format!("{shown}\n\n{} ✓", decision.past())),
                    components: Some(Vec::new()),
                    ..Default::default()
                }),
            }
        }
        Choice::Refused(why) => ephemeral(why),
        Choice::Unsaved => ephemeral("Your answer could not be saved. Please tap again.".into()),
    };
    let application = interaction.application_id;
    if let Err(error) = discord
        .http
        .interaction(application)
        .create_response(interaction.id, &interaction.token, &response)
        .await
    {
        tracing::debug!("could not answer a tap: {}", classify(error));
    }
}

fn ephemeral(text: String) -> InteractionResponse {
    InteractionResponse {
        kind: InteractionResponseType::ChannelMessageWithSource,
        data: Some(InteractionResponseData {
            content: Some(text),
            flags: Some(MessageFlags::EPHEMERAL),
            ..Default::default()
        }),
    }
}

pub async fn send_typing(discord: &Discord, channel: &str) -> Result<(), SendError> {
    discord
        .http
        .create_typing_trigger(channel_id(channel)?)
        .await
        .map(drop)
        .map_err(classify)
}

/// One stored image as an attachment of its own message.
pub async fn send_image(
    app: &App,
    discord: &Discord,
    channel: &str,
    name: &str,
) -> Result<(), SendError> {
    let bytes = media::read_stored(&app.config.data_dir, name).await?;
    if bytes.len() > UPLOAD_MAX_BYTES {
        return Err(SendError::Permanent(
            "the image is larger than Discord's 10 MB upload limit".into(),
        ));
    }
    let attachments = [Attachment::from_bytes(name.to_string(), bytes, 0)];
    discord
        .http
        .create_message(channel_id(channel)?)
        .attachments(&attachments)
        .await
        .map(drop)
        .map_err(classify)
}

/// Fetches an inbound image attachment from Discord's CDN (no credentials: the URL is
/// enough), bounded like every inbound download.
pub async fn download(
    config: &DiscordConfig,
    media_ref: &MediaRef,
    limit: usize,
) -> Result<(Vec<u8>, String), SendError> {
    let MediaRef::DiscordAttachment {
        url,
        content_type,
        filename,
        size,
    } = media_ref
    else {
        return Err(SendError::Permanent("not a Discord attachment".into()));
    };
    if !content_type.starts_with("image/") {
        return Err(SendError::Permanent(format!(
            "{filename} is not an image, and only images reach the agent"
        )));
    }
    if *size > limit as u64 {
        return Err(SendError::Permanent(format!(
            "{filename} is larger than {} MB",
            limit >> 20
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| SendError::Permanent("the attachment URL is not a URL".into()))?;
    if !media::host_allowed(&media::host_of(&parsed), &config.media_hosts) {
        return Err(SendError::Permanent(
            "the attachment is not on Discord's CDN, so it was not fetched".into(),
        ));
    }
    let fetch = media::BoundedFetch {
        allowed_hosts: config.media_hosts.clone(),
        max_bytes: media::INBOUND_MAX_BYTES,
        timeout: media::INBOUND_TIMEOUT,
    };
    let bytes = fetch.get(parsed, None).await?;
    Ok((bytes, content_type.clone()))
}

/// How many times a DM is offered to the journal before its sender is asked to resend it.
const JOURNAL_ATTEMPTS: u32 = 2;

/// Journals a DM, trying again once; if it still cannot be saved, asks its sender through
/// REST to send it again. `false` when neither happened: then nobody knows of the message,
/// and the caller must not let the session move past it.
async fn journal_or_tell(app: &App, discord: &Discord, message: InboundMessage) -> bool {
    for attempt in 1..=JOURNAL_ATTEMPTS {
        if app.admit(message.clone()).await != crate::Admission::Unsaved {
            return true;
        }
        if attempt < JOURNAL_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let channel = Conversation::parse(&message.conversation).map(|c| c.address);
    match channel {
        Some(channel) => match send_text(discord, channel, crate::PLEASE_RESEND).await {
            Ok(()) => {
                tracing::warn!(
                    "a Discord message could not be saved; its sender was asked to resend it"
                );
                true
            }
            Err(_) => {
                tracing::error!(
                    "a Discord message could not be saved, nor its sender told; holding the session before it"
                );
                false
            }
        },
        None => false,
    }
}

/// A direct message to the bot as the journal keeps it; `None` for what is not one (a server
/// message, or a bot's own message, which Discord also sends to the Gateway).
pub fn inbound(message: &MessageCreate) -> Option<InboundMessage> {
    if message.guild_id.is_some() || message.author.bot {
        return None;
    }
    Some(InboundMessage {
        id: Conversation::id(Channel::Discord, message.id),
        conversation: Conversation::id(Channel::Discord, message.channel_id),
        sender: Conversation::id(Channel::Discord, message.author.id),
        text: message.content.clone(),
        media: message
            .attachments
            .iter()
            .map(|a| MediaRef::DiscordAttachment {
                url: a.url.clone(),
                content_type: a.content_type.clone().unwrap_or_default(),
                filename: a.filename.clone(),
                size: a.size,
            })
            .collect(),
        answer: None,
    })
}

/// What a close code from Discord means for the user (Discord, "Gateway Close Event Codes").
fn close_reason(frame: &CloseFrame<'_>) -> String {
    match frame.code {
        4004 => "Discord refused the bot token (check DISCORD_BOT_TOKEN)".into(),
        4013 | 4014 => format!(
            "Discord refused the intents ({}): the bot needs only direct messages",
            frame.reason
        ),
        code => format!("Discord closed the connection: {code} {}", frame.reason),
    }
}

/// Keeps the Gateway connection while the relay runs: journals every allowed direct message
/// and saves the session after it.
pub async fn run_gateway(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let (Some(config), Some(discord)) = (&app.config.discord, &app.discord) else {
        return;
    };
    let mut builder =
        twilight_gateway::ConfigBuilder::new(config.bot_token.clone(), Intents::DIRECT_MESSAGES)
            .proxy_url(config.gateway_url.clone());
    match app.journal.gateway_session(SESSION_KEY) {
        Ok(Some(saved)) => {
            tracing::info!(sequence = saved.sequence, "resuming the Discord session");
            builder = builder
                .session(Session::new(saved.sequence, saved.session_id))
                .resume_url(saved.resume_url);
        }
        Ok(None) => {}
        Err(error) => tracing::warn!("could not read the saved Discord session: {error}"),
    }
    let mut shard = Shard::with_config(ShardId::ONE, builder.build());
    // Set once a message was neither journaled nor its sender told: the saved session then
    // never moves past it in this process.
    let mut holding = false;
    let wanted = EventTypeFlags::READY
        | EventTypeFlags::RESUMED
        | EventTypeFlags::MESSAGE_CREATE
        | EventTypeFlags::INTERACTION_CREATE;
    loop {
        let event = tokio::select! {
            event = shard.next_event(wanted) => event,
            _ = stop.changed() => return,
        };
        match event {
            None => {
                tracing::error!("the Discord Gateway closed for good; not reconnecting");
                discord.set_state(GatewayState::Refused, None);
                return;
            }
            Some(Err(error)) => {
                let kind = error_kind(&error);
                tracing::warn!("Discord Gateway: {kind}");
                discord.set_state(GatewayState::Reconnecting, Some(kind.to_string()));
            }
            Some(Ok(Event::GatewayClose(frame))) => {
                let reason = frame.as_ref().map(close_reason);
                if let Some(reason) = &reason {
                    tracing::warn!("{reason}");
                }
                if frame.as_ref().is_some_and(|f| f.code == 4004) {
                    // The saved session belongs to a token Discord no longer takes.
                    let _ = app.journal.forget_gateway_session(SESSION_KEY).await;
                }
                discord.set_state(GatewayState::Reconnecting, reason);
            }
            Some(Ok(Event::Ready(ready))) => {
                tracing::info!("Discord Gateway ready");
                discord.status.lock().expect("gateway status lock").bot = Some(ready.user.name);
                discord.set_state(GatewayState::Connected, None);
                if !holding {
                    save_session(&app, session_of(&shard)).await;
                }
            }
            Some(Ok(Event::Resumed)) => {
                tracing::info!("Discord Gateway session resumed");
                discord.set_state(GatewayState::Connected, None);
                if !holding {
                    save_session(&app, session_of(&shard)).await;
                }
            }
            Some(Ok(Event::MessageCreate(message))) => {
                if let Some(message) = inbound(&message)
                    && !journal_or_tell(&app, discord, message).await
                {
                    // Neither saved nor its sender told: the saved session stays before it
                    // from now on, so the next resume (a restart) has Discord replay it.
                    holding = true;
                }
                if !holding {
                    save_session(&app, session_of(&shard)).await;
                }
            }
            Some(Ok(Event::InteractionCreate(interaction))) => {
                // Answered at once (Discord waits 3 s); the journal write inside keeps the
                // answer, so the saved session may move past it.
                on_tap(&app, discord, &interaction).await;
                if !holding {
                    save_session(&app, session_of(&shard)).await;
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Where the shard's session stands, if it has one to resume.
fn session_of(shard: &Shard) -> Option<GatewaySession> {
    let (session, resume_url) = (shard.session()?, shard.resume_url()?);
    Some(GatewaySession {
        session_id: session.id().to_string(),
        sequence: session.sequence(),
        resume_url: resume_url.to_string(),
    })
}

async fn save_session(app: &App, session: Option<GatewaySession>) {
    let Some(session) = session else {
        return;
    };
    if let Err(error) = app
        .journal
        .save_gateway_session(SESSION_KEY, &session)
        .await
    {
        tracing::warn!("could not save the Discord session: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_api_base_becomes_twilight_s_proxy() {
        assert_eq!(rest_proxy("https://discord.com"), None);
        assert_eq!(
            rest_proxy("http://127.0.0.1:9/discord"),
            Some(("127.0.0.1:9/discord".into(), true))
        );
        assert_eq!(
            rest_proxy("https://proxy.example"),
            Some(("proxy.example".into(), false))
        );
    }

    #[test]
    fn only_people_s_direct_messages_are_taken_in() {
        let dm = serde_json::json!({
            "id": "1100", "channel_id": "2200", "content": "hello",
            "author": {"id": "80351110224678912", "username": "me", "discriminator": "0", "avatar": null},
            "attachments": [{"id": "1", "filename": "a.png", "size": 70, "url": "https://cdn.discordapp.com/a.png", "proxy_url": "https://media.discordapp.net/a.png", "content_type": "image/png"}],
            "embeds": [], "mention_everyone": false, "mention_roles": [], "mentions": [],
            "pinned": false, "timestamp": "2026-11-24T06:00:00.000000+00:00", "tts": false, "type": 0
        });
        let message: MessageCreate = serde_json::from_value(dm.clone()).unwrap();
        let inbound = inbound(&message).unwrap();
        assert_eq!(inbound.id, "discord:1100");
        assert_eq!(inbound.conversation, "discord:2200");
        assert_eq!(inbound.sender, "discord:80351110224678912");
        assert_eq!(inbound.media.len(), 1);

        let mut from_a_bot = dm.clone();
        from_a_bot["author"]["bot"] = true.into();
        assert!(inbound_of(from_a_bot).is_none());
        let mut in_a_server = dm;
        in_a_server["guild_id"] = "3300".into();
        assert!(inbound_of(in_a_server).is_none());
    }

    fn inbound_of(value: serde_json::Value) -> Option<InboundMessage> {
        inbound(&serde_json::from_value::<MessageCreate>(value).unwrap())
    }
}
