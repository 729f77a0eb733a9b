//! Warm agent processes, one per recently active conversation, so a conversation's next
//! message skips the CLI's and the MCP server's start-up (about 2 s with Playwright MCP).
//!
//! A job takes its conversation's process out (or starts one), and puts it back only after a
//! clean turn; a cancelled, timed-out or crashed process is dropped, which kills its process
//! group, and the next message starts a new one that resumes the session. At most
//! `WARM_AGENTS` wait here (the least recently used goes first), none longer than
//! `AGENT_WARM_SECS`, and all of them go when the vm exits.

use crate::agent::Process;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Agents {
    limit: usize,
    idle: Mutex<HashMap<String, (Process, Instant)>>,
}

impl Agents {
    /// A pool that keeps up to `limit` processes (0 keeps none: every message starts afresh).
    pub fn new(limit: usize) -> Agents {
        Agents {
            limit,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// The conversation's warm process, if it has one working in `session`.
    pub fn take(&self, conversation: &str, session: Option<&str>) -> Option<Process> {
        let (mut process, _) = self.lock().remove(conversation)?;
        // A process in another session (after /new, say), or one that exited while it
        // waited, is no use: it goes, and the caller starts a fresh one.
        (session.is_some() && process.session() == session && process.is_running())
            .then_some(process)
    }

    /// Keeps a process that finished a turn cleanly for the conversation's next message.
    pub fn put_back(&self, conversation: &str, process: Process) {
        if self.limit == 0 {
            return;
        }
        let mut idle = self.lock();
        idle.insert(conversation.to_string(), (process, Instant::now()));
        while idle.len() > self.limit {
            let oldest = idle
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(conversation, _)| conversation.clone());
            if let Some(conversation) = oldest {
                idle.remove(&conversation);
            }
        }
    }

    /// Ends the conversation's warm process (`/new`).
    pub fn forget(&self, conversation: &str) {
        self.lock().remove(conversation);
    }

    /// Ends the processes that have waited longer than `warm_for`.
    pub fn expire(&self, warm_for: Duration) {
        self.lock()
            .retain(|_, (_, since)| since.elapsed() < warm_for);
    }

    /// Ends them all (the vm is exiting).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Process, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
