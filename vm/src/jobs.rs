//! The queue and the life of a job. The dispatcher starts, for each conversation with nothing
//! running, its oldest queued job, up to `MAX_PARALLEL_JOBS` at once. A job runs the agent
//! (resuming the conversation's session), sends typing heartbeats while it works, and ends
//! with exactly one reply: the result, or a sentence saying what went wrong.
//!
//! Chat commands: `/new` waits its turn in the queue; `/status` and `/cancel` answer at once
//! (see [`crate::routes`]).

use crate::agent::{self, Outcome};
use crate::store::Job;
use crate::{Vm, callbacks};
use base64::Engine;
use contract::protocol::{Callback, CallbackKind, Image};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub const INTERRUPTED_BY_RESTART: &str = "Your agent restarted while it was working on your last message. Send it again if you still need it.";
pub const INTERRUPTED_BY_SHUTDOWN: &str = "Your agent was stopped while working on this (the machine is shutting down). Send it again to retry.";

pub fn random_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Queues a reply for the relay.
pub fn reply(vm: &Vm, id: &str, conversation: &str, text: String, images: Vec<Image>) {
    let callback = Callback {
        id: id.to_string(),
        conversation: conversation.to_string(),
        kind: CallbackKind::Message,
        text,
        images,
    };
    match vm.store.enqueue_callback(&callback) {
        Ok(()) => vm.callbacks_wake.notify_one(),
        Err(error) => tracing::error!("could not store a reply: {error}"),
    }
}

pub async fn dispatch(vm: Arc<Vm>, mut stop: watch::Receiver<bool>) {
    loop {
        if !vm.accepting.load(Ordering::SeqCst) || *stop.borrow() {
            return;
        }
        let running = vm.running.lock().unwrap_or_else(|p| p.into_inner()).len();
        let free = vm.config.max_parallel_jobs.saturating_sub(running);
        let jobs = if free > 0 {
            vm.store.runnable(free).unwrap_or_default()
        } else {
            Vec::new()
        };
        for job in jobs {
            if vm.store.set_state(job.seq, "running").is_err() {
                continue;
            }
            let (cancel_tx, cancel_rx) = oneshot::channel();
            vm.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(job.message.conversation.clone(), cancel_tx);
            let vm = vm.clone();
            tokio::spawn(async move {
                let conversation = job.message.conversation.clone();
                let seq = job.seq;
                let final_state = run_job(&vm, job, cancel_rx).await;
                let _ = vm.store.set_state(seq, final_state);
                vm.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&conversation);
                vm.touch();
                vm.jobs_wake.notify_one();
            });
        }
        tokio::select! {
            _ = vm.jobs_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

fn safe_name(conversation: &str) -> String {
    conversation
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where Playwright MCP writes a conversation's screenshots (its `--output-dir`); the vm
/// empties it as it sends them.
pub fn image_dir(vm: &Vm, conversation: &str) -> PathBuf {
    vm.config
        .data_dir
        .join("images")
        .join(safe_name(conversation))
}

/// Runs one job to its reply; returns the job's final state.
async fn run_job(vm: &Vm, job: Job, cancel: oneshot::Receiver<()>) -> &'static str {
    let message = &job.message;
    let conversation = message.conversation.as_str();
    let reply_id = format!("result:{}", message.id);
    if message.text.trim() == "/new" {
        let _ = vm.store.clear_session(conversation);
        vm.agents.forget(conversation);
        reply(vm, &reply_id, conversation, "Started a fresh session: the agent has forgotten this conversation (your files are still there).".into(), vec![]);
        return "done";
    }
    if let Some(cap) = vm.config.max_daily_usd {
        let spent = vm.store.spend_today().unwrap_or(0.0);
        if spent >= cap {
            let text = format!(
                "Today's spend cap of ${cap:.2} is reached (${spent:.2} spent). New jobs run again after midnight UTC, or raise MAX_DAILY_USD."
            );
            reply(vm, &reply_id, conversation, text, vec![]);
            return "done";
        }
    }

    let workspace = vm
        .config
        .data_dir
        .join("workspaces")
        .join(safe_name(conversation));
    let prompt = with_attachments(&workspace, message);
    let images_dir = image_dir(vm, conversation);
    let heartbeat = async {
        loop {
            callbacks::typing(vm, conversation).await;
            tokio::time::sleep(vm.config.heartbeat).await;
        }
    };
    let started = std::time::SystemTime::now();
    let work = async {
        let mut cancel = cancel;
        let mut note = String::new();
        let mut resume = vm.store.session(conversation).ok().flatten();
        loop {
            let warm = vm.agents.take(conversation, resume.as_deref());
            let mut process = match warm {
                Some(process) => process,
                None => match agent::Process::start(agent::Start {
                    config: &vm.config,
                    resume: resume.as_deref(),
                    workspace: &workspace,
                    image_dir: &images_dir,
                }) {
                    Ok(process) => process,
                    Err(error) => return (note, Err(error)),
                },
            };
            let outcome = process
                .turn(
                    &prompt,
                    vm.config.agent_timeout,
                    &mut cancel,
                    |session_id| {
                        let _ = vm.store.set_session(conversation, session_id);
                    },
                )
                .await;
            match outcome {
                Outcome::UnknownSession if resume.is_some() => {
                    let _ = vm.store.clear_session(conversation);
                    resume = None;
                    note = "(Your previous session could not be found, so this started a new one.)\n\n"
                        .into();
                }
                Outcome::Finished(_) => {
                    vm.agents.put_back(conversation, process);
                    return (note, Ok(outcome));
                }
                // Cancelled, timed out or crashed: the process goes (dropping it ends its
                // process group); the next message starts one that resumes the session.
                outcome => return (note, Ok(outcome)),
            }
        }
    };
    let (note, outcome) = tokio::select! {
        result = work => result,
        _ = heartbeat => unreachable!("the heartbeat never ends"),
    };
    let (text, state) = match outcome {
        Ok(Outcome::Finished(result)) => {
            let _ = vm.store.add_spend(result.total_cost_usd);
            if let Some(sentence) = result.api_status.and_then(api_trouble) {
                (sentence.to_string(), "done")
            } else if result.is_error || result.subtype.starts_with("error") {
                let detail = if result.errors.is_empty() {
                    result.text.clone()
                } else {
                    result.errors.join("; ")
                };
                (
                    format!("The agent hit an error ({}): {detail}", result.subtype),
                    "done",
                )
            } else {
                let text = if result.text.trim().is_empty() {
                    "The agent finished without a text reply.".to_string()
                } else {
                    result.text
                };
                (with_denials(text, &result.denied_tools), "done")
            }
        }
        Ok(Outcome::UnknownSession) => (
            "The agent could not resume its session. Send /new to start over.".into(),
            "done",
        ),
        Ok(Outcome::Failed { code, stderr_tail }) => {
            tracing::warn!(?code, "the agent failed: {stderr_tail}");
            let last_line = stderr_tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .to_string();
            (
                format!(
                    "The agent failed (exit code {}): {last_line}",
                    code.map_or("none".into(), |c| c.to_string())
                ),
                "done",
            )
        }
        Ok(Outcome::TimedOut) => (
            format!(
                "The agent ran out of time ({} minutes) and was stopped. Try a smaller request.",
                vm.config.agent_timeout.as_secs() / 60
            ),
            "done",
        ),
        Ok(Outcome::Cancelled) if !vm.accepting.load(Ordering::SeqCst) => {
            (INTERRUPTED_BY_SHUTDOWN.into(), "interrupted")
        }
        Ok(Outcome::Cancelled) => ("Cancelled the running job.".into(), "cancelled"),
        Err(error) => (
            format!("The agent could not be started ({error}). Check AGENT_CMD."),
            "done",
        ),
    };
    reply(
        vm,
        &reply_id,
        conversation,
        format!("{note}{text}"),
        collect_images(&images_dir, &workspace, started),
    );
    state
}

/// What a failed call to Anthropic's API means for the user, by its HTTP status.
fn api_trouble(status: u16) -> Option<&'static str> {
    Some(match status {
        401 | 403 => {
            "Anthropic refused the API key. Deploy again with a valid key (console.anthropic.com → API keys)."
        }
        429 => "Your Anthropic account hit a rate limit. Try again in a minute.",
        529 => "Anthropic's API is overloaded right now. Try again in a minute.",
        500..=599 => "Anthropic's API had a problem on its side. Try again in a minute.",
        _ => return None,
    })
}

/// One line naming the tools the agent was refused, so the user knows why work is missing.
fn with_denials(text: String, denied: &[String]) -> String {
    if denied.is_empty() {
        text
    } else {
        format!(
            "{text}\n\n(The agent was not allowed to use: {}.)",
            denied.join(", ")
        )
    }
}

/// Saves attached images into the workspace and tells the agent where they are.
fn with_attachments(
    workspace: &std::path::Path,
    message: &contract::protocol::VmMessage,
) -> String {
    if message.images.is_empty() {
        return message.text.clone();
    }
    let folder = workspace.join("attachments");
    let _ = std::fs::create_dir_all(&folder);
    let mut names = Vec::new();
    for (i, image) in message.images.iter().enumerate() {
        let ext = if image.content_type.contains("png") {
            "png"
        } else {
            "jpg"
        };
        let name = format!("{}-{i}.{ext}", safe_name(&message.id));
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&image.data_base64)
            && std::fs::write(folder.join(&name), bytes).is_ok()
        {
            names.push(format!("attachments/{name}"));
        }
    }
    format!(
        "{}\n\n(The user attached: {})",
        message.text,
        names.join(", ")
    )
}

/// The screenshots a job made: what is in the conversation's image folder (Playwright's
/// `--output-dir`, emptied here, so each job sends only its own), and images it wrote into the
/// workspace's top level during the run (Playwright writes a screenshot the model gave a file
/// name to there, relative to its working directory; those stay, they are the user's work).
fn collect_images(
    image_dir: &std::path::Path,
    workspace: &std::path::Path,
    since: std::time::SystemTime,
) -> Vec<Image> {
    let images = |dir: &std::path::Path| -> Vec<(PathBuf, &'static str, std::time::SystemTime)> {
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let content_type = match path.extension()?.to_str()? {
                    "png" => "image/png",
                    "jpg" | "jpeg" => "image/jpeg",
                    "webp" => "image/webp",
                    _ => return None,
                };
                let modified = entry.metadata().ok()?.modified().ok()?;
                path.is_file().then_some((path, content_type, modified))
            })
            .collect();
        found.sort();
        found
    };
    let from_playwright = images(image_dir);
    let made_here = images(workspace)
        .into_iter()
        .filter(|(_, _, modified)| *modified >= since);
    let mut sent = Vec::new();
    for (path, content_type, _) in from_playwright.iter().cloned().chain(made_here) {
        if sent.len() == 10 {
            break;
        }
        if let Ok(bytes) = std::fs::read(&path) {
            sent.push(Image {
                content_type: content_type.into(),
                data_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
    }
    for (path, _, _) in from_playwright {
        let _ = std::fs::remove_file(path);
    }
    sent
}
