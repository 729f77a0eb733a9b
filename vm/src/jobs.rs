//! The queue and the life of a job. The dispatcher starts, for each conversation with nothing
//! running, its oldest queued job, up to `MAX_PARALLEL_JOBS` at once. A job runs the agent
//! (resuming the conversation's session), sends typing heartbeats while it works, and ends
//! with exactly one reply: the result, or a sentence saying what went wrong.
//!
//! `/new` waits its turn in the queue like a message; the other commands never get here
//! ([`crate::commands`]). The reply's text comes from [`crate::reply`].

use crate::agent::{self, Outcome};
use crate::commands::{self, Command};
use crate::progress::{self, Progress};
use crate::store::{Job, JobState};
use crate::{Vm, approvals, callbacks, diff, reply};
use base64::Engine;
use contract::protocol::Image;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

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
            if vm.store.set_state(job.seq, JobState::Running).is_err() {
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
async fn run_job(vm: &Vm, job: Job, cancel: oneshot::Receiver<()>) -> JobState {
    let message = &job.message;
    let conversation = message.conversation.as_str();
    let reply_id = format!("result:{}", message.id);
    if Command::parse(&message.text) == Some(Command::New) {
        let text = commands::start_fresh(vm, conversation);
        callbacks::queue(vm, &reply_id, conversation, text.into(), vec![]);
        return JobState::Done;
    }
    if let Some(cap) = vm.config.max_daily_usd {
        let spent = vm.store.spend_today().unwrap_or(0.0);
        if spent >= cap {
            let text = format!(
                "Today's spend cap of ${cap:.2} is reached (${spent:.2} spent). New jobs run again after midnight UTC, or raise MAX_DAILY_USD."
            );
            callbacks::queue(vm, &reply_id, conversation, text, vec![]);
            return JobState::Done;
        }
    }

    let workspace = workspace(vm, conversation);
    diff::record_baseline(&vm.config, &workspace).await;
    // An answer to a parked question resumes the session with the decision.
    let prompt = match &message.answer {
        Some(answer) => approvals::resume_prompt(vm, answer),
        None => with_attachments(vm, &workspace, message),
    };
    let images_dir = image_dir(vm, conversation);
    let heartbeat = async {
        loop {
            callbacks::typing(vm, conversation).await;
            tokio::time::sleep(vm.config.heartbeat).await;
        }
    };
    let started = std::time::SystemTime::now();
    let progress = Progress::new(&message.id);
    let work = run_agent(
        vm,
        conversation,
        &prompt,
        &workspace,
        &images_dir,
        cancel,
        &progress,
    );
    let (note, outcome) = tokio::select! {
        result = work => result,
        _ = heartbeat => unreachable!("the heartbeat never ends"),
        _ = progress::report(vm, conversation, &progress) => unreachable!("the report never ends"),
    };
    let cost = match &outcome {
        Ok(Outcome::Finished(result)) => Some(result.total_cost_usd),
        _ => None,
    };
    if let Some(cost) = cost {
        let _ = vm.store.add_spend(cost);
    }
    progress::finish(vm, conversation, &progress, cost).await;
    if let Ok(Outcome::Failed { code, stderr_tail }) = &outcome {
        tracing::warn!(?code, "the agent failed: {stderr_tail}");
    }
    let reply = reply::for_outcome(
        &outcome,
        &reply::Context {
            shutting_down: !vm.accepting.load(Ordering::SeqCst),
            timeout_minutes: vm.config.agent_timeout.as_secs() / 60,
        },
    );
    let changed = changed_files(vm, conversation, &workspace).await;
    callbacks::queue(
        vm,
        &reply_id,
        conversation,
        format!("{note}{}{changed}", reply.text),
        collect_images(&images_dir, &workspace, started),
    );
    reply.state
}

/// "\n\n3 files changed, +120 −14 (/diff shows them)" when this job changed the workspace's
/// files (the changes differ from those the conversation's last job left, as the store
/// remembers them across the vm's sleeps), else nothing.
async fn changed_files(vm: &Vm, conversation: &str, workspace: &std::path::Path) -> String {
    let changes = diff::changes(&vm.config, workspace).await;
    let fingerprint = changes.fingerprint();
    let before = vm
        .store
        .swap_changes(conversation, &fingerprint)
        .unwrap_or_else(|error| {
            tracing::warn!("could not keep the workspace's changes: {error}");
            None
        });
    if changes.is_empty() || before == Some(fingerprint) {
        return String::new();
    }
    format!("\n\n{} (/diff shows them)", changes.summary())
}

/// A conversation's workspace: `DATA_DIR/workspaces/<conversation, made a folder name>`.
pub fn workspace(vm: &Vm, conversation: &str) -> PathBuf {
    vm.config
        .data_dir
        .join("workspaces")
        .join(safe_name(conversation))
}

/// Runs the message through the conversation's agent (its warm process, or a new one that
/// resumes the session) and returns a note for the user with the outcome: a session Claude
/// Code no longer has is replaced by a fresh one, and the note says so.
async fn run_agent(
    vm: &Vm,
    conversation: &str,
    prompt: &str,
    workspace: &std::path::Path,
    images_dir: &std::path::Path,
    mut cancel: oneshot::Receiver<()>,
    progress: &Progress,
) -> (String, std::io::Result<Outcome>) {
    let mut note = String::new();
    let mut resume = vm.store.session(conversation).ok().flatten();
    loop {
        let warm = vm.agents.take(conversation, resume.as_deref());
        let rules = vm.store.rules(conversation).unwrap_or_default();
        let mut process = match warm {
            Some(process) => process,
            None => match agent::Process::start(agent::Start {
                config: &vm.config,
                resume: resume.as_deref(),
                workspace,
                image_dir: images_dir,
                mode: approvals::mode(vm, conversation),
                rules: &rules,
            }) {
                Ok(process) => process,
                Err(error) => return (note, Err(error)),
            },
        };
        let outcome = process
            .turn(
                prompt,
                vm.config.agent_timeout,
                &mut cancel,
                |session_id| {
                    let _ = vm.store.set_session(conversation, session_id);
                },
                &approvals::AskOwners { vm, conversation },
                &|name, input| progress.tool(name, input),
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
}

/// Saves attached images into the workspace and tells the agent where they are.
fn with_attachments(
    vm: &Vm,
    workspace: &std::path::Path,
    message: &contract::protocol::VmMessage,
) -> String {
    if message.images.is_empty() {
        return message.text.clone();
    }
    let folder = workspace.join("attachments");
    let _ = std::fs::create_dir_all(&folder);
    let give = |path: &std::path::Path| {
        if let Some(agent) = &vm.config.agent_user {
            let _ = agent.give(path);
        }
    };
    let _ = std::fs::create_dir_all(workspace);
    give(workspace);
    give(&folder);
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
            give(&folder.join(&name));
            names.push(format!("attachments/{name}"));
        }
    }
    format!(
        "{}\n\n(The user attached: {})",
        message.text,
        names.join(", ")
    )
}

/// The largest image a reply carries: Telegram's limit for a photo (docs/channels.md,
/// "sendPhoto"), and Discord's default upload size.
pub const IMAGE_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The screenshots a job made: what is in the conversation's image folder (Playwright's
/// `--output-dir`, emptied here, so each job sends only its own), and images it wrote into the
/// workspace's top level during the run (Playwright writes a screenshot the model gave a file
/// name to there, relative to its working directory; those stay, they are the user's work).
///
/// The agent writes both folders, so what is in them is not trusted: only regular files
/// found without following a link (a link named `x.png` could point at the vm's store or its
/// secrets), in folders that are not links themselves, each at most [`IMAGE_MAX_BYTES`].
fn collect_images(
    image_dir: &std::path::Path,
    workspace: &std::path::Path,
    since: std::time::SystemTime,
) -> Vec<Image> {
    let images = |dir: &std::path::Path| -> Vec<(PathBuf, &'static str, std::time::SystemTime)> {
        if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
            return Vec::new();
        }
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
                // `DirEntry::metadata` does not follow a link.
                let metadata = entry.metadata().ok()?;
                let modified = metadata.modified().ok()?;
                metadata
                    .file_type()
                    .is_file()
                    .then_some((path, content_type, modified))
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
        if let Some(bytes) = read_plain_file(&path, IMAGE_MAX_BYTES) {
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

/// A regular file's bytes, up to `limit`: opened without following a link (so one swapped in
/// after the listing is refused too) and without blocking on a FIFO, then checked on the
/// open file itself.
fn read_plain_file(path: &std::path::Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > limit {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}
