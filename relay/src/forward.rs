//! Inbox → vm. Each conversation's messages go one at a time, oldest first, to
//! `VM_URL/messages`; different conversations go in parallel (up to `MAX_PARALLEL`), so one
//! slow or refused message holds up only its own conversation. A cold vm is woken by the
//! request itself (Flycast starts it); if it has not answered within `WAKE_NOTICE_AFTER_MS`
//! the sender gets one "Waking up…" notice, and past `VM_DEADLINE_SECS` one "could not reach"
//! notice, while the message stays journaled and is retried until the vm takes it. After a
//! restart the journal still holds whatever the vm never accepted.

use crate::journal::{InboundMessage, MediaRef};
use crate::{App, SendError, backoff, channel, sleep_unless_stopped};
use base64::Engine;
use contract::client::Verdict;
use contract::protocol::{Image, VmMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const WAKING_UP: &str = "Waking up your agent… (it sleeps when idle; this takes a few seconds)";
pub const DISK_FULL: &str = "Your agent's disk is full, so it could not take that message. Extend the volume of your -vm app (Fly dashboard → the app → Volumes), then send it again.";
pub const UNREACHABLE: &str = "I could not reach your agent. Your message is saved and will be delivered as soon as the agent is back.";

/// How often the inbox is checked when nothing rang.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// The pause between attempts once the deadline has passed.
const AFTER_DEADLINE_RETRY: Duration = Duration::from_secs(30);
/// Conversations forwarded at the same time; the rest wait for a free slot.
const MAX_PARALLEL: usize = 8;

/// Starts a worker for each conversation with waiting messages (one worker per conversation
/// keeps its order), whenever a message is journaled or a worker finishes.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut workers = JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        match app.journal.pending_conversations() {
            Ok(pending) => {
                for conversation in pending {
                    if busy.len() >= MAX_PARALLEL {
                        break;
                    }
                    if !busy.values().any(|c| *c == conversation) {
                        let worker =
                            forward_conversation(app.clone(), conversation.clone(), stop.clone());
                        busy.insert(workers.spawn(worker).id(), conversation);
                    }
                }
            }
            Err(error) => tracing::error!("reading the inbox failed: {error}"),
        }
        tokio::select! {
            _ = app.inbox_wake.notified() => {}
            Some(done) = workers.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::error!("a forwarding worker failed: {error}");
                        error.id()
                    }
                };
                busy.remove(&id);
            }
            _ = tokio::time::sleep(IDLE_TICK) => {}
            _ = stop.changed() => break,
        }
    }
    // Workers see the stop themselves; their messages stay journaled.
    while workers.join_next().await.is_some() {}
}

/// Delivers `conversation`'s waiting messages in order until none is left (or shutdown).
async fn forward_conversation(
    app: Arc<App>,
    conversation: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_delivered = None;
    loop {
        match app.journal.next_undelivered_in(&conversation) {
            // The same message again means it could not be marked delivered: pause before
            // the next round instead of sending it in a tight loop (the vm drops repeats).
            Ok(Some((seq, _))) if last_delivered == Some(seq) => {
                sleep_unless_stopped(IDLE_TICK, &mut stop).await;
                return;
            }
            Ok(Some((seq, message))) => {
                if !deliver(&app, seq, message, &mut stop).await {
                    return;
                }
                last_delivered = Some(seq);
            }
            Ok(None) => return,
            Err(error) => {
                tracing::error!("reading the inbox failed: {error}");
                return;
            }
        }
    }
}

/// Delivers one message, however long it takes; `false` when shutdown interrupted it (the
/// message stays in the journal).
async fn deliver(
    app: &App,
    seq: i64,
    message: InboundMessage,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let started = Instant::now();
    let (images, missing) = resolve_media(app, &message.media).await;
    let text = std::iter::once(message.text.clone())
        .chain(missing)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let payload = VmMessage {
        images,
        id: message.id.clone(),
        conversation: message.conversation.clone(),
        sender: message.sender.clone(),
        text,
    };
    let wake_notice_at = started + app.config.wake_notice_after;
    let deadline = started + app.config.vm_deadline;
    let mut woke_notice_sent = false;
    let mut deadline_notice_sent = false;
    for attempt in 0u32.. {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        let mut request = std::pin::pin!(
            app.vm
                .send(&payload, remaining.min(Duration::from_secs(60)))
        );
        let outcome = loop {
            tokio::select! {
                outcome = &mut request => break outcome,
                _ = tokio::time::sleep_until(wake_notice_at), if !woke_notice_sent => {
                    woke_notice_sent = true;
                    notify(app, &message, "waking", WAKING_UP).await;
                }
                _ = stop.changed() => return false,
            }
        };
        match outcome {
            Verdict::Accepted => {
                if let Err(error) = app.journal.mark_delivered(seq).await {
                    // The vm de-duplicates on id, so a repeat after this is harmless.
                    tracing::error!("could not mark a message delivered: {error}");
                }
                tracing::info!(id = %message.id, took_ms = started.elapsed().as_millis() as u64, "delivered to the vm");
                return true;
            }
            Verdict::TooLarge | Verdict::Refused(_) => {
                let reason = match outcome {
                    Verdict::Refused(reason) => reason,
                    _ => "it is too large".to_string(),
                };
                tracing::error!(id = %message.id, "the vm refused a message for good: {reason}");
                notify(
                    app,
                    &message,
                    "refused",
                    &format!("Your agent could not take that message: {reason}"),
                )
                .await;
                let _ = app.journal.mark_delivered(seq).await;
                return true;
            }
            Verdict::DiskFull => {
                tracing::error!(id = %message.id, "the vm's disk is full; the sender was told");
                notify(app, &message, "disk-full", DISK_FULL).await;
                let _ = app.journal.mark_delivered(seq).await;
                return true;
            }
            Verdict::Retry(reason) => {
                tracing::warn!(id = %message.id, attempt, "vm not reachable yet: {reason}");
            }
        }
        let wait = if Instant::now() >= deadline {
            if !deadline_notice_sent {
                deadline_notice_sent = true;
                notify(app, &message, "unreachable", UNREACHABLE).await;
            }
            AFTER_DEADLINE_RETRY
        } else {
            backoff(attempt, Duration::from_millis(250), Duration::from_secs(5))
        };
        if !woke_notice_sent && Instant::now() + wait >= wake_notice_at {
            woke_notice_sent = true;
            notify(app, &message, "waking", WAKING_UP).await;
        }
        if !sleep_unless_stopped(wait, stop).await {
            return false;
        }
    }
    unreachable!("the attempt loop only ends by returning")
}

/// Queues a notice to the message's conversation, once per message and kind.
async fn notify(app: &App, message: &InboundMessage, kind: &str, text: &str) {
    match app
        .journal
        .enqueue(
            &format!("notice:{kind}:{}", message.id),
            &message.conversation,
            text,
            &[],
        )
        .await
    {
        Ok(_) => app.outbox_wake.notify_one(),
        Err(error) => tracing::error!("could not queue a notice: {error}"),
    }
}

/// Downloads the message's media for the vm. A file that cannot be fetched is left out (the
/// text still goes); a transient failure is retried a few times first.
/// The attachments as images, and a line for each that could not be had (so the agent knows
/// the user sent something it cannot see).
async fn resolve_media(app: &App, refs: &[MediaRef]) -> (Vec<Image>, Vec<String>) {
    let mut images = Vec::new();
    let mut missing = Vec::new();
    for media_ref in refs {
        let mut result = Err(SendError::Permanent("not tried".into()));
        for attempt in 0..3 {
            result = match app.outlet(channel::channel_of(media_ref)) {
                Some(outlet) => outlet.download(app, media_ref).await,
                None => Err(SendError::Permanent("channel no longer configured".into())),
            };
            match &result {
                Err(SendError::Retry { .. }) => {
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(500),
                        Duration::from_secs(4),
                    ))
                    .await
                }
                _ => break,
            }
        }
        match result {
            Ok((bytes, content_type)) => {
                images.push(Image {
                    content_type,
                    data_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
                });
            }
            Err(error) => {
                tracing::warn!("an attachment could not be downloaded and is left out: {error}");
                missing.push(format!(
                    "(The user sent an attachment that could not be fetched: {error}.)"
                ));
            }
        }
    }
    (images, missing)
}
