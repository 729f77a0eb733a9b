//! Outbox → channels. Replies are split at the channel's limit and sent part by part (the
//! journal remembers how many parts went out), images after the text, one per message:
//! uploads on Telegram (as a document when Telegram would refuse it as a photo), public
//! `/media` URLs on Twilio, which sends only the first media item of a WhatsApp message and
//! ignores the rest. 429 and 5xx are retried with backoff (or the channel's `retry_after`);
//! other refusals are recorded and dropped.

use crate::journal::{OutboundMessage, now_ms};
use crate::split::{TELEGRAM_LIMIT, WHATSAPP_LIMIT, split_message};
use crate::{App, SendError, backoff, media, telegram, twilio};
use contract::protocol::{Channel, Conversation};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const IDLE_TICK: Duration = Duration::from_secs(30);

/// Keeps the volume from filling up: stored images go after an hour, finished journal rows
/// after the retention period.
fn housekeeping(app: &App) {
    media::sweep(&app.config.data_dir);
    let cutoff = now_ms() - app.config.retention.as_millis() as i64;
    match app.journal.prune(cutoff) {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "pruned finished journal rows"),
        Err(error) => tracing::warn!("pruning the journal failed: {error}"),
    }
}

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut last_sweep: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if last_sweep.is_none_or(|at| at.elapsed() > Duration::from_secs(600)) {
            housekeeping(&app);
            last_sweep = Some(std::time::Instant::now());
        }
        match app.journal.next_due(now_ms()) {
            Ok(Some(message)) => send(&app, message).await,
            Ok(None) => {
                let wait = match app.journal.earliest_due() {
                    Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 30_000) as u64),
                    _ => IDLE_TICK,
                };
                tokio::select! {
                    _ = app.outbox_wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(error) => {
                tracing::error!("reading the outbox failed: {error}");
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_TICK) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// The pieces of one reply, in sending order.
enum Part {
    Text(String),
    Image(String),
}

fn parts(message: &OutboundMessage, telegram: bool) -> Vec<Part> {
    let limit = if telegram {
        TELEGRAM_LIMIT
    } else {
        WHATSAPP_LIMIT
    };
    let mut parts: Vec<Part> = split_message(&message.text, limit)
        .into_iter()
        .map(Part::Text)
        .collect();
    // Telegram takes one photo per upload. Twilio's API takes up to ten media URLs, but a
    // WhatsApp message carries one and the others are dropped without an error.
    parts.extend(message.images.iter().map(|name| Part::Image(name.clone())));
    parts
}

async fn send(app: &App, message: OutboundMessage) {
    let Some(Conversation { channel, address }) = Conversation::parse(&message.conversation) else {
        let _ = app
            .journal
            .mark_failed(message.seq, "conversation has no channel");
        return;
    };
    let telegram = channel == Channel::Telegram;
    let parts = parts(&message, telegram);
    let mut sent = message.chunks_sent.max(0) as usize;
    for part in parts.iter().skip(sent) {
        let result = match (part, &app.config.telegram, &app.config.twilio) {
            (Part::Text(text), Some(config), _) if telegram => {
                telegram::send_text(&app.http, config, address, text).await
            }
            (Part::Image(name), Some(config), _) if telegram => {
                send_telegram_image(app, config, address, name).await
            }
            (Part::Text(text), _, Some(config)) if !telegram => {
                twilio::send(&app.http, config, &message.conversation, text, &[]).await
            }
            (Part::Image(name), _, Some(config)) if !telegram => {
                let url = format!("{}/media/{name}", app.config.public_url);
                twilio::send(&app.http, config, &message.conversation, "", &[url]).await
            }
            _ => Err(SendError::Permanent(format!(
                "channel {} is not configured",
                channel.name()
            ))),
        };
        match result {
            Ok(()) => {
                sent += 1;
                if let Err(error) = app.journal.record_chunks_sent(message.seq, sent as i64) {
                    tracing::error!("could not record progress of a reply: {error}");
                }
            }
            Err(SendError::Retry { reason, after }) => {
                let wait = after.unwrap_or_else(|| {
                    backoff(
                        message.attempts as u32,
                        Duration::from_secs(1),
                        Duration::from_secs(300),
                    )
                });
                tracing::warn!(conversation = %message.conversation, "sending a reply failed, retrying in {wait:?}: {reason}");
                let _ = app
                    .journal
                    .retry_later(message.seq, now_ms() + wait.as_millis() as i64);
                return;
            }
            Err(SendError::Permanent(reason)) => {
                tracing::error!(conversation = %message.conversation, "the channel refused a reply: {reason}");
                let _ = app.journal.mark_failed(message.seq, &reason);
                return;
            }
        }
    }
    if let Err(error) = app.journal.mark_sent(message.seq) {
        tracing::error!("could not mark a reply sent: {error}");
    }
}

/// Sends a stored image as a photo, or as a document (a file, up to 50 MB) when Telegram
/// would refuse it as a photo: a full-page screenshot is often too tall.
async fn send_telegram_image(
    app: &App,
    config: &crate::config::TelegramConfig,
    chat_id: &str,
    name: &str,
) -> Result<(), SendError> {
    let Some(path) = media::lookup(&app.config.data_dir, name, media::KEEP_FOR) else {
        return Err(SendError::Permanent(
            "the image expired before it could be sent".into(),
        ));
    };
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| SendError::Permanent(format!("reading a stored image: {e}")))?;
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

/// Shows "typing…" where the channel has it (Telegram); WhatsApp via Twilio has no such call.
pub async fn send_typing(app: &App, conversation: &str) {
    if let (
        Some(Conversation {
            channel: Channel::Telegram,
            address: chat_id,
        }),
        Some(config),
    ) = (Conversation::parse(conversation), &app.config.telegram)
        && let Err(error) = telegram::send_typing(&app.http, config, chat_id).await
    {
        tracing::debug!("typing indicator not shown: {error}");
    }
}
