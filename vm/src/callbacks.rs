//! Results to the relay: each callback is stored first, then posted to `RELAY_CALLBACK_URL`
//! until the relay says 2xx, with backoff; a relay outage only delays them (they survive a vm
//! restart too). Typing heartbeats are the exception: best effort, never stored.

use crate::Vm;
use contract::client::Verdict;
use contract::protocol::{Callback, CallbackKind, Image, Question};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Stores a reply for the relay and wakes the sender.
pub fn queue(vm: &Vm, id: &str, conversation: &str, text: String, images: Vec<Image>) {
    store(
        vm,
        Callback {
            id: id.to_string(),
            conversation: conversation.to_string(),
            kind: CallbackKind::Message,
            text,
            images,
            question: None,
            status: None,
        },
    )
}

/// Stores a question for an owner of `conversation` (`text` says what the call would do).
pub fn ask(vm: &Vm, conversation: &str, question: Question, text: String) {
    store(
        vm,
        Callback {
            id: format!("question:{}", question.id),
            conversation: conversation.to_string(),
            kind: CallbackKind::Question,
            text,
            images: vec![],
            question: Some(question),
            status: None,
        },
    )
}

fn store(vm: &Vm, callback: Callback) {
    match vm.store.enqueue_callback(&callback) {
        Ok(()) => vm.callbacks_wake.notify_one(),
        Err(error) => tracing::error!("could not store a reply: {error}"),
    }
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends the oldest stored callback: `None` when there is none, `Err` when it should be retried.
async fn send_next(vm: &Vm) -> Option<Result<(), String>> {
    let (seq, callback) = vm.store.next_callback().ok()??;
    let mut outcome = vm.relay.send(&callback, SEND_TIMEOUT).await;
    if outcome == Verdict::TooLarge && !callback.images.is_empty() {
        // The text must arrive: send it without the images, saying which did not fit.
        let count = callback.images.len();
        let text = format!(
            "{}\n\n({count} image{} could not be sent: too large for the relay.)",
            callback.text,
            if count == 1 { "" } else { "s" }
        );
        let text_only = Callback {
            text: text.trim_start().to_string(),
            images: vec![],
            ..callback.clone()
        };
        outcome = vm.relay.send(&text_only, SEND_TIMEOUT).await;
    }
    Some(match outcome {
        Verdict::Accepted => {
            let _ = vm.store.callback_done(seq);
            Ok(())
        }
        Verdict::TooLarge => {
            tracing::error!(id = %callback.id, "the relay refused a result as too large");
            let _ = vm.store.callback_done(seq);
            Ok(())
        }
        Verdict::Refused(reason) => {
            tracing::error!(id = %callback.id, "the relay refused a result for good: {reason}");
            let _ = vm.store.callback_done(seq);
            Ok(())
        }
        // Kept and retried: the relay's journal frees room as it prunes.
        Verdict::DiskFull => Err("the relay's disk is full".into()),
        Verdict::Retry(reason) => Err(reason),
    })
}

pub async fn run(vm: Arc<Vm>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        match send_next(&vm).await {
            Some(Ok(())) => failures = 0,
            Some(Err(reason)) => {
                failures += 1;
                let wait = Duration::from_millis(250 * (1 << failures.min(7)));
                tracing::warn!("the relay did not take a result, retrying in {wait:?}: {reason}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
            None => {
                tokio::select! {
                    _ = vm.callbacks_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// At shutdown: tries to deliver what is left for up to `budget`.
pub async fn flush(vm: &Vm, budget: Duration) {
    let deadline = tokio::time::Instant::now() + budget;
    while tokio::time::Instant::now() < deadline {
        match send_next(vm).await {
            Some(Ok(())) => {}
            Some(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            None => return,
        }
    }
}

/// Shows "typing…" to the user; failures do not matter.
pub async fn typing(vm: &Vm, conversation: &str) {
    let callback = Callback {
        id: format!("typing:{}", random_id()),
        conversation: conversation.to_string(),
        kind: CallbackKind::Typing,
        text: String::new(),
        images: vec![],
        question: None,
        status: None,
    };
    let _ = vm.relay.send(&callback, SEND_TIMEOUT).await;
}
