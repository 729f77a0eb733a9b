//! The one seam between the relay's queues and its channels. [`Outlet`] is a configured
//! channel seen from the outbox and the forwarder: how long a text may be, how text, images
//! and typing go out, how an inbound attachment comes in. `forward`, `outbox` and the
//! `/callback` handler ask for the conversation's outlet and never name a channel; adding a
//! channel means a variant here and its own module (like [`crate::telegram`] and
//! [`crate::twilio`]), and its webhook route.

use crate::config::{DiscordConfig, TelegramConfig, TwilioConfig};
use crate::discord::{self, Discord};
use crate::journal::MediaRef;
use crate::split::{Limit, TELEGRAM_LIMIT, WHATSAPP_LIMIT};
use crate::{App, SendError, media, telegram, twilio};
use contract::protocol::{Channel, Conversation, Question};

/// A channel this relay is configured for.
#[derive(Clone, Copy)]
pub enum Outlet<'a> {
    Telegram(&'a TelegramConfig),
    Whatsapp(&'a TwilioConfig),
    Discord(&'a DiscordConfig, &'a Discord),
}

impl App {
    /// The outlet for `channel`, if this relay serves it.
    pub fn outlet(&self, channel: Channel) -> Option<Outlet<'_>> {
        match channel {
            Channel::Telegram => self.config.telegram.as_ref().map(Outlet::Telegram),
            Channel::Whatsapp => self.config.twilio.as_ref().map(Outlet::Whatsapp),
            Channel::Discord => match (&self.config.discord, &self.discord) {
                (Some(config), Some(discord)) => Some(Outlet::Discord(config, discord)),
                _ => None,
            },
        }
    }
}

impl Outlet<'_> {
    /// How long one text message may be.
    pub fn text_limit(&self) -> Limit {
        match self {
            Outlet::Telegram(_) => TELEGRAM_LIMIT,
            Outlet::Whatsapp(_) => WHATSAPP_LIMIT,
            Outlet::Discord(..) => discord::TEXT_LIMIT,
        }
    }

    pub async fn send_text(&self, app: &App, address: &str, text: &str) -> Result<(), SendError> {
        match self {
            Outlet::Telegram(config) => telegram::send_text(&app.http, config, address, text).await,
            Outlet::Whatsapp(config) => {
                let to = Conversation::id(Channel::Whatsapp, address);
                twilio::send(&app.http, config, &to, text, &[]).await
            }
            Outlet::Discord(_, discord) => discord::send_text(discord, address, text).await,
        }
    }

    /// Whether a sent message can be edited (a status line moves on in place); otherwise a
    /// status goes out rarely, as a message of its own.
    pub fn can_edit(&self) -> bool {
        matches!(self, Outlet::Telegram(_) | Outlet::Discord(..))
    }

    /// A status line's first message; the reference to edit it by, where the channel edits.
    pub async fn send_status(
        &self,
        app: &App,
        address: &str,
        text: &str,
    ) -> Result<Option<String>, SendError> {
        match self {
            Outlet::Telegram(config) => {
                telegram::send_text_for_id(&app.http, config, address, text)
                    .await
                    .map(|id| Some(id.to_string()))
            }
            Outlet::Discord(_, discord) => discord::send_text_for_id(discord, address, text)
                .await
                .map(Some),
            Outlet::Whatsapp(_) => self.send_text(app, address, text).await.map(|()| None),
        }
    }

    /// Moves a status line on (only where [`Outlet::can_edit`]).
    pub async fn edit_status(
        &self,
        app: &App,
        address: &str,
        message: &str,
        text: &str,
    ) -> Result<(), SendError> {
        match self {
            Outlet::Telegram(config) => {
                let id = message.parse().unwrap_or_default();
                telegram::edit_text(&app.http, config, address, id, text).await
            }
            Outlet::Discord(_, discord) => {
                discord::edit_text(discord, address, message, text).await
            }
            Outlet::Whatsapp(_) => Ok(()),
        }
    }

    /// Whether a question's choices always show as buttons; otherwise its text numbers them,
    /// and a reply with a number answers (WhatsApp, whose quick replies depend on the account).
    pub fn has_buttons(&self) -> bool {
        matches!(self, Outlet::Telegram(_) | Outlet::Discord(..))
    }

    /// The last part of a question: its text with the choices as buttons. On WhatsApp the
    /// text ends with the numbered choices; they give way to quick replies where the account
    /// has them ([`crate::quick_replies`]), and stay where it has not.
    pub async fn send_question(
        &self,
        app: &App,
        address: &str,
        text: &str,
        question: &Question,
    ) -> Result<(), SendError> {
        match self {
            Outlet::Telegram(config) => {
                telegram::send_with_buttons(&app.http, config, address, text, question).await
            }
            Outlet::Discord(_, discord) => {
                discord::send_with_buttons(discord, address, text, question).await
            }
            Outlet::Whatsapp(config) => {
                let numbered = format!("\n\n{}", crate::questions::numbered(&question.choices));
                let body = text.strip_suffix(&numbered).unwrap_or(text);
                let to = Conversation::id(Channel::Whatsapp, address);
                let sent = app
                    .quick_replies
                    .send(&app.http, config, &to, body, question)
                    .await?;
                if sent {
                    return Ok(());
                }
                self.send_text(app, address, text).await
            }
        }
    }

    /// One stored image (a name under the media folder), in a message of its own: Telegram
    /// takes one upload per photo, and a WhatsApp message carries one media item (Twilio
    /// accepts ten URLs but drops all but the first without an error).
    pub async fn send_image(&self, app: &App, address: &str, name: &str) -> Result<(), SendError> {
        match self {
            // A document (`/diff`'s) goes as a file.
            Outlet::Telegram(config) if media::is_document(name) => {
                let bytes = media::read_stored(&app.config.data_dir, name).await?;
                telegram::send_document(&app.http, config, address, bytes, name).await
            }
            Outlet::Telegram(config) => send_telegram_image(app, config, address, name).await,
            Outlet::Whatsapp(config) => {
                let to = Conversation::id(Channel::Whatsapp, address);
                let url = format!("{}/media/{name}", app.config.public_url);
                twilio::send(&app.http, config, &to, "", &[url]).await
            }
            Outlet::Discord(_, discord) => discord::send_image(app, discord, address, name).await,
        }
    }

    /// Shows "typing…" where the channel has it; WhatsApp through Twilio has no such call.
    pub async fn typing(&self, app: &App, address: &str) -> Result<(), SendError> {
        match self {
            Outlet::Telegram(config) => telegram::send_typing(&app.http, config, address).await,
            Outlet::Whatsapp(_) => Ok(()),
            Outlet::Discord(_, discord) => discord::send_typing(discord, address).await,
        }
    }

    /// Fetches an inbound attachment of at most `limit` bytes; its content type comes with it.
    pub async fn download(
        &self,
        app: &App,
        media: &MediaRef,
        limit: usize,
    ) -> Result<(Vec<u8>, String), SendError> {
        match (self, media) {
            (Outlet::Telegram(config), MediaRef::TelegramFile { file_id }) => {
                let bytes = telegram::download(&app.http, config, file_id, limit).await?;
                Ok((bytes, "image/jpeg".into()))
            }
            (Outlet::Whatsapp(config), MediaRef::TwilioUrl { url, content_type }) => {
                let bytes = twilio::download(config, url, limit).await?;
                let content_type = if content_type.is_empty() {
                    media::content_type("").to_string()
                } else {
                    content_type.clone()
                };
                Ok((bytes, content_type))
            }
            (Outlet::Discord(config, _), MediaRef::DiscordAttachment { .. }) => {
                discord::download(config, media, limit).await
            }
            _ => Err(SendError::Permanent(
                "the attachment is from another channel".into(),
            )),
        }
    }
}

/// The channel an inbound attachment came through.
pub fn channel_of(media: &MediaRef) -> Channel {
    match media {
        MediaRef::TelegramFile { .. } => Channel::Telegram,
        MediaRef::TwilioUrl { .. } => Channel::Whatsapp,
        MediaRef::DiscordAttachment { .. } => Channel::Discord,
    }
}

/// Sends a stored image to Telegram as a photo, or as a document (a file, up to 50 MB) when Telegram
/// would refuse it as a photo: a full-page screenshot is often too tall.
async fn send_telegram_image(
    app: &App,
    config: &TelegramConfig,
    chat_id: &str,
    name: &str,
) -> Result<(), SendError> {
    let bytes = media::read_stored(&app.config.data_dir, name).await?;
    if !telegram::fits_as_photo(&bytes) {
        return telegram::send_document(&app.http, config, chat_id, bytes, name).await;
    }
    match telegram::send_photo(&app.http, config, chat_id, bytes.clone(), name).await {
        Err(SendError::Permanent(reason)) if telegram::is_photo_refusal(&reason) => {
            telegram::send_document(&app.http, config, chat_id, bytes, name).await
        }
        other => other,
    }
}
