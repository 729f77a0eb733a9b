//! Outbox → channels. Replies are split at the channel's limit and sent part by part through
//! the conversation's [`crate::channel::Outlet`] (the journal remembers how many parts went
//! out), images after the text, one per message. 429 and 5xx are retried with backoff (or
//! the channel's `retry_after`); other refusals are recorded and dropped.

use crate::journal::{OutboundMessage, now_ms};
use crate::split::{Limit, split_message};
use crate::{App, SendError, backoff, media};
use contract::protocol::Conversation;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const IDLE_TICK: Duration = Duration::from_secs(30);

/// Keeps the volume from filling up: stored images go after an hour, finished journal rows
/// after the retention period.
async fn housekeeping(app: &App) {
    media::sweep(&app.config.data_dir);
    let cutoff = now_ms() - app.config.retention.as_millis() as i64;
    match app.journal.prune(cutoff).await {
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
            housekeeping(&app).await;
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

/// The pieces of one reply, in sending order: the text split at the channel's limit, then
/// each image in a message of its own.
enum Part {
    Text(String),
    Image(String),
}

fn parts(message: &OutboundMessage, limit: Limit, buttons: bool) -> Vec<Part> {
    let text = match &message.question {
        Some(question) if !buttons => format!(
            "{}\n\n{}",
            message.text,
            crate::questions::numbered(&question.choices)
        ),
        _ => message.text.clone(),
    };
    let mut parts: Vec<Part> = split_message(&text, limit)
        .into_iter()
        .map(Part::Text)
        .collect();
    parts.extend(message.images.iter().map(|name| Part::Image(name.clone())));
    parts
}

async fn send(app: &App, message: OutboundMessage) {
    let conversation = Conversation::parse(&message.conversation);
    let Some((outlet, address)) =
        conversation.and_then(|c| Some((app.outlet(c.channel)?, c.address)))
    else {
        let _ = app
            .journal
            .mark_failed(
                message.seq,
                "the conversation is not on a channel this relay serves",
            )
            .await;
        return;
    };
    let parts = parts(&message, outlet.text_limit(), outlet.has_buttons());
    let last = parts.len().saturating_sub(1);
    let mut sent = message.chunks_sent.max(0) as usize;
    for (index, part) in parts.iter().enumerate().skip(sent) {
        let result = match (part, &message.question) {
            // The buttons go with the question's last part, where a reader ends up.
            (Part::Text(text), Some(question)) if index == last => {
                outlet.send_question(app, address, text, question).await
            }
            (Part::Text(text), _) => outlet.send_text(app, address, text).await,
            (Part::Image(name), _) => outlet.send_image(app, address, name).await,
        };
        match result {
            Ok(()) => {
                sent += 1;
                if let Err(error) = app
                    .journal
                    .record_chunks_sent(message.seq, sent as i64)
                    .await
                {
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
                    .retry_later(message.seq, now_ms() + wait.as_millis() as i64)
                    .await;
                return;
            }
            Err(SendError::Permanent(reason)) => {
                tracing::error!(conversation = %message.conversation, "the channel refused a reply: {reason}");
                let _ = app.journal.mark_failed(message.seq, &reason).await;
                return;
            }
        }
    }
    if let Err(error) = app.journal.mark_sent(message.seq).await {
        tracing::error!("could not mark a reply sent: {error}");
    }
}

/// Shows "typing…" in the conversation, where its channel has it.
pub async fn send_typing(app: &App, conversation: &str) {
    let Some(Conversation { channel, address }) = Conversation::parse(conversation) else {
        return;
    };
    if let Some(outlet) = app.outlet(channel)
        && let Err(error) = outlet.typing(app, address).await
    {
        tracing::debug!("typing indicator not shown: {error}");
    }
}
