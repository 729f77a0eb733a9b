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
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const WAKING_UP: &str = "Waking up your agent… (it sleeps when idle; this takes a few seconds)";
pub const DISK_FULL: &str = "Your agent's disk is full, so it could not take that message. Extend the volume of your -vm app (Fly dashboard → the app → Volumes), then send it again.";
pub const UNREACHABLE: &str = "I could not reach your agent. Your message is saved and will be delivered as soon as the agent is back.";

/// How often the inbox is checked when nothing rang.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// How many times a message with attachments may begin forwarding without finishing.
pub const MAX_FORWARD_ATTEMPTS: u32 = 5;

pub const SET_ASIDE: &str = "Your message (with attachments) could not be passed to your agent after several tries, so it was set aside. Send it again, with fewer or smaller attachments.";

pub const LEFT_OUT: &str = "Some of your attachments were left out: one message carries at most 20 MB of them. Send the rest in another message.";

/// The pause between attempts once the deadline has passed.
const AFTER_DEADLINE_RETRY: Duration = Duration::from_secs(30);
/// Conversations forwarded at the same time; the rest wait for a free slot.
const MAX_PARALLEL: usize = 8;

/// Starts a worker for each conversation with waiting messages (one worker per conversation
/// keeps its order). [`App::admit`] names each journaled message's conversation on `arrivals`,
/// so a webhook costs the dispatcher a set lookup, not a scan of the inbox (with a backlog
/// of thousands, a scan per webhook made the relay slower the further the vm fell behind).
/// The inbox itself is read at start-up (what a previous run left) and after `IDLE_TICK`
/// without news (a message whose delivered mark could not be written is sent again then).
pub async fn run(
    app: Arc<App>,
    mut arrivals: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut dispatch = Dispatch::default();
    let mut workers = JoinSet::new();
    let mut rescan = true;
    loop {
        if *stop.borrow() {
            break;
        }
        if rescan {
            match app.journal.pending_conversations() {
                Ok(pending) => pending.into_iter().for_each(|c| dispatch.waiting(c)),
                Err(error) => tracing::error!("reading the inbox failed: {error}"),
            }
        }
        while let Some(conversation) = dispatch.next_to_start() {
            let worker = forward_conversation(app.clone(), conversation.clone(), stop.clone());
            dispatch.started(workers.spawn(worker).id(), conversation);
        }
        rescan = false;
        tokio::select! {
            Some(conversation) = arrivals.recv() => dispatch.waiting(conversation),
            Some(done) = workers.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::error!("a forwarding worker failed: {error}");
                        error.id()
                    }
                };
                dispatch.finished(id);
            }
            _ = tokio::time::sleep(IDLE_TICK) => rescan = true,
            _ = stop.changed() => break,
        }
    }
    // Workers see the stop themselves; their messages stay journaled.
    while workers.join_next().await.is_some() {}
}

/// Which conversation has a worker, and which wait for one: in order of arrival, each once.
#[derive(Default)]
struct Dispatch {
    busy: HashMap<tokio::task::Id, String>,
    /// Conversations whose worker is running but that got a message meanwhile: the worker may
    /// have looked before it was journaled, so the conversation is started again after it.
    again: HashSet<String>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
}

impl Dispatch {
    /// `conversation` has (or may have) a message waiting.
    fn waiting(&mut self, conversation: String) {
        if self.busy.values().any(|c| *c == conversation) {
            self.again.insert(conversation);
        } else if self.queued.insert(conversation.clone()) {
            self.queue.push_back(conversation);
        }
    }

    /// The next conversation to start a worker for, while a slot is free.
    fn next_to_start(&mut self) -> Option<String> {
        if self.busy.len() >= MAX_PARALLEL {
            return None;
        }
        let conversation = self.queue.pop_front()?;
        self.queued.remove(&conversation);
        Some(conversation)
    }

    fn started(&mut self, worker: tokio::task::Id, conversation: String) {
        self.busy.insert(worker, conversation);
    }

    fn finished(&mut self, worker: tokio::task::Id) {
        if let Some(conversation) = self.busy.remove(&worker)
            && self.again.remove(&conversation)
        {
            self.waiting(conversation);
        }
    }
}

/// Delivers `conversation`'s waiting messages in order until none is left (or shutdown).
/// Each delivered mark is committed while the next message goes to the vm (without an fsync of
/// its own: see "What waits for the disk" in `journal.rs`); the worker ends only after its last
/// mark is committed, so the
/// next worker for this conversation does not send a delivered message again.
async fn forward_conversation(
    app: Arc<App>,
    conversation: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut after = 0;
    let mut marking: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        match app.journal.next_undelivered_in(&conversation, after) {
            Ok(Some((seq, message))) => {
                if !deliver(&app, seq, message, &mut stop).await {
                    break;
                }
                after = seq;
                if let Some(previous) = marking.take() {
                    let _ = previous.await;
                }
                marking = Some(tokio::spawn(mark_delivered(app.clone(), seq)));
            }
            Ok(None) => break,
            Err(error) => {
                tracing::error!("reading the inbox failed: {error}");
                break;
            }
        }
    }
    if let Some(last) = marking {
        let _ = last.await;
    }
}

/// A message that cannot be marked stays in the inbox and is sent again by the next worker
/// for its conversation (the dispatcher looks every `IDLE_TICK`); the vm drops repeats by id.
async fn mark_delivered(app: Arc<App>, seq: i64) {
    if let Err(error) = app.journal.mark_delivered(seq).await {
        tracing::error!("could not mark a message delivered: {error}");
    }
}

/// Delivers one message, however long it takes: `true` once the vm took it or refused it for
/// good (the sender was told), so the caller marks it delivered; `false` when shutdown
/// interrupted it (the message stays in the journal).
async fn deliver(
    app: &App,
    seq: i64,
    message: InboundMessage,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    // Attachments are the one thing that can take the relay down while forwarding (memory):
    // a message that has begun that many times without finishing is set aside, so it cannot
    // kill the relay again on every restart.
    if !message.media.is_empty() {
        match app.journal.begin_forward(seq).await {
            Ok(attempts) if attempts > MAX_FORWARD_ATTEMPTS => {
                tracing::error!(id = %message.id, attempts, "a message that never finished forwarding is set aside");
                notify(app, &message, "set-aside", SET_ASIDE).await;
                return true;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("could not count a forward attempt: {error}"),
        }
    }
    let started = Instant::now();
    let (images, missing) = resolve_media(app, &message.media).await;
    if missing.iter().any(|line| line.contains(OVER_BUDGET)) {
        notify(app, &message, "left-out", LEFT_OUT).await;
    }
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
        answer: message.answer.clone(),
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
                return true;
            }
            Verdict::DiskFull => {
                tracing::error!(id = %message.id, "the vm's disk is full; the sender was told");
                notify(app, &message, "disk-full", DISK_FULL).await;
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
    app.tell(message, format!("notice:{kind}:{}", message.id), text)
        .await;
}

/// Downloads the message's media for the vm. A file that cannot be fetched is left out (the
/// text still goes); a transient failure is retried a few times first.
/// The attachments as images, and a line for each that could not be had (so the agent knows
/// the user sent something it cannot see).
///
/// All of one message's attachments together stay within [`crate::media::MESSAGE_MEDIA_BUDGET`]
/// (checked first on the sizes the channel declares, then on what arrives), so the relay never
/// holds more than that for one message.
async fn resolve_media(app: &App, refs: &[MediaRef]) -> (Vec<Image>, Vec<String>) {
    let mut images = Vec::new();
    let mut missing = Vec::new();
    let mut budget = crate::media::MESSAGE_MEDIA_BUDGET;
    for media_ref in refs {
        let limit = budget.min(crate::media::INBOUND_MAX_BYTES);
        if limit == 0
            || media_ref
                .declared_size()
                .is_some_and(|size| size > limit as u64)
        {
            missing.push(format!("(The user sent an attachment that {OVER_BUDGET}.)"));
            continue;
        }
        let mut result = Err(SendError::Permanent("not tried".into()));
        for attempt in 0..3 {
            result = match app.outlet(channel::channel_of(media_ref)) {
                Some(outlet) => outlet.download(app, media_ref, limit).await,
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
                budget -= bytes.len().min(budget);
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

/// How a left-out attachment is described (to the agent; the sender gets [`LEFT_OUT`]).
const OVER_BUDGET: &str = "was left out: with the others it is more than one message carries";

#[cfg(test)]
mod tests {
    use super::*;

    /// Task ids come only from spawned tasks.
    async fn ids(n: usize) -> Vec<tokio::task::Id> {
        let mut set = JoinSet::new();
        (0..n).map(|_| set.spawn(async {}).id()).collect()
    }

    #[tokio::test]
    async fn each_conversation_gets_one_worker_in_arrival_order() {
        let id = ids(1).await;
        let mut dispatch = Dispatch::default();
        for conversation in ["telegram:1", "whatsapp:+1", "telegram:1"] {
            dispatch.waiting(conversation.into());
        }
        assert_eq!(dispatch.next_to_start().as_deref(), Some("telegram:1"));
        dispatch.started(id[0], "telegram:1".into());
        assert_eq!(dispatch.next_to_start().as_deref(), Some("whatsapp:+1"));
        assert_eq!(dispatch.next_to_start(), None, "telegram:1 was queued once");
    }

    #[tokio::test]
    async fn a_message_arriving_while_its_worker_runs_starts_it_again_after() {
        let id = ids(2).await;
        let mut dispatch = Dispatch::default();
        dispatch.waiting("telegram:1".into());
        let conversation = dispatch.next_to_start().unwrap();
        dispatch.started(id[0], conversation);
        dispatch.waiting("telegram:1".into());
        assert_eq!(dispatch.next_to_start(), None, "never two workers at once");
        dispatch.finished(id[0]);
        assert_eq!(dispatch.next_to_start().as_deref(), Some("telegram:1"));
        dispatch.started(id[1], "telegram:1".into());
        dispatch.finished(id[1]);
        assert_eq!(dispatch.next_to_start(), None, "nothing new came meanwhile");
    }

    #[tokio::test]
    async fn at_most_max_parallel_workers_and_the_rest_wait_their_turn() {
        let id = ids(MAX_PARALLEL).await;
        let mut dispatch = Dispatch::default();
        for n in 0..=MAX_PARALLEL {
            dispatch.waiting(format!("telegram:{n}"));
        }
        for worker in &id {
            let conversation = dispatch.next_to_start().unwrap();
            dispatch.started(*worker, conversation);
        }
        assert_eq!(dispatch.next_to_start(), None);
        dispatch.finished(id[3]);
        assert_eq!(
            dispatch.next_to_start(),
            Some(format!("telegram:{MAX_PARALLEL}"))
        );
    }
}
