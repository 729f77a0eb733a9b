//! The relay's SQLite journal (WAL): every accepted message is committed here before the
//! channel gets its 200, and every reply before the vm gets its 200, so a crash at any point
//! loses nothing. Two queues:
//!
//! - `inbox`: messages from the channels, until the vm accepts them (`delivered_ms`).
//! - `outbox`: replies and notices for the channels, until sent; `chunks_sent` remembers how
//!   far a long reply got so a restart does not repeat its first half.
//!
//! Finished rows stay for `RETENTION_HOURS` (duplicates of a delivered message are still
//! recognised meanwhile), then [`Journal::prune`] removes them, text and all.
//!
//! # Group commit
//! Every write goes to one writer thread with its own connection. It takes all the writes
//! queued meanwhile, runs them in one transaction and commits once (one fsync for the batch),
//! then answers each caller. So a caller still hears back only once its own write is durable,
//! but sixteen concurrent webhooks cost one fsync instead of sixteen, and no fsync ever blocks
//! the async runtime. Reads use a second connection (WAL lets them run beside the writer) and
//! see only committed rows.
//!
//! # What waits for the disk
//! A write that backs a promise (a 200 to a channel or to the vm, a reply's progress) is
//! fsynced before its caller hears back. A delivered mark is not: it commits without an fsync
//! and reaches the disk with the next fsync of the WAL (the next webhook's commit, or a
//! checkpoint). It survives the relay's process dying either way; only a machine losing power
//! first can lose it, and then the message is forwarded again, which the vm ignores (its
//! `POST /messages` is idempotent on the message id). That halves the fsyncs of a steady flow
//! and keeps a webhook's commit from queuing behind a mark's.
//!
//! # Checkpoints off the writer
//! SQLite normally copies the WAL back into the database inside whichever commit crosses
//! 1,000 WAL pages: that commit then also writes those pages and fsyncs twice more, and every
//! webhook queued behind it waits (the relay's p99 ack latency under steady load). Here the
//! writer never checkpoints; after every `CHECKPOINT_EVERY_WRITES` writes it nudges a third
//! connection on its own thread, which runs a PASSIVE checkpoint (it takes no write lock, so
//! commits go on meanwhile).

use contract::protocol::{Decision, Question};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this write was part of did not commit, so the write did not happen.
    #[error("journal: the commit failed: {0}")]
    Commit(String),
    #[error("journal: closed")]
    Closed,
    #[error("journal: could not start its writer or checkpoint thread: {0}")]
    Writer(std::io::Error),
}

/// A reference to inbound media, resolved (downloaded) when the message is forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaRef {
    TelegramFile {
        file_id: String,
    },
    TwilioUrl {
        url: String,
        content_type: String,
    },
    DiscordAttachment {
        url: String,
        content_type: String,
        filename: String,
        size: u64,
    },
}

impl MediaRef {
    /// The size the channel says the attachment has, when it says (Discord does).
    pub fn declared_size(&self) -> Option<u64> {
        match self {
            MediaRef::DiscordAttachment { size, .. } => Some(*size),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    /// Unique per channel message: `telegram:<update_id>`, `whatsapp:<MessageSid>`,
    /// `discord:<message id>`.
    pub id: String,
    pub conversation: String,
    pub sender: String,
    pub text: String,
    pub media: Vec<MediaRef>,
    /// An owner's answer to the agent's question (a tap, or a numbered reply).
    pub answer: Option<contract::protocol::Answer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundMessage {
    pub seq: i64,
    pub conversation: String,
    pub text: String,
    /// File names under the media folder.
    pub images: Vec<String>,
    pub chunks_sent: i64,
    pub attempts: i64,
    /// Set when the message asks an owner something: its choices go with the text.
    pub question: Option<Question>,
}

/// A question as the relay keeps it, to check the answers that come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskedQuestion {
    pub id: String,
    pub conversation: String,
    pub choices: Vec<Decision>,
    /// Set once an owner's answer is journaled.
    pub decision: Option<Decision>,
}

pub struct Journal {
    /// The read connection.
    db: Mutex<Connection>,
    /// The writer thread's queue; `None` once closed.
    writes: Option<mpsc::Sender<WriteJob>>,
    writer: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    counts: std::sync::Arc<WriteCounts>,
}

/// How well group commit groups: writes done, commits they took and how many of those
/// waited for an fsync (`/health` shows all three).
#[derive(Debug, Default)]
struct WriteCounts {
    writes: AtomicU64,
    commits: AtomicU64,
    synced: AtomicU64,
}

/// [`WriteCounts`] read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteTotals {
    pub writes: u64,
    pub commits: u64,
    pub synced_commits: u64,
}

/// A write for the writer thread: runs its statements on the writer's connection inside the
/// batch's transaction (in a savepoint of its own) and returns how to answer its caller once
/// the commit's outcome is known. Given no connection, it does not run and answers failed.
struct WriteJob {
    run: Run,
    durability: Durability,
}

/// A write's statements, given the writer's connection (or `None`: not run).
type Run = Box<dyn FnOnce(Option<&Connection>) -> Answer + Send>;

/// When a write's caller hears back (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Once the commit is fsynced.
    Synced,
    /// Once committed; fsynced with the next synced commit or checkpoint.
    WithNextSync,
}
/// Given why the batch did not commit, if it did not.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// At most this many writes share a commit (a bound on how long the first one waits).
const MAX_BATCH: usize = 512;

/// Writes between checkpoints. A write touches a row and an index page or two, so this is
/// about SQLite's own default of 1,000 WAL pages.
const CHECKPOINT_EVERY_WRITES: u64 = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    conversation TEXT NOT NULL,
    sender       TEXT NOT NULL,
    text         TEXT NOT NULL,
    media        TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE delivered_ms IS NULL;
CREATE INDEX IF NOT EXISTS inbox_pending_by_conversation ON inbox (conversation, seq) WHERE delivered_ms IS NULL;
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    conversation    TEXT NOT NULL,
    text            TEXT NOT NULL,
    images          TEXT NOT NULL,
    chunks_sent     INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    done_ms         INTEGER,
    failure         TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_ms) WHERE done_ms IS NULL;
CREATE TABLE IF NOT EXISTS owners (
    sender    TEXT PRIMARY KEY,
    paired_ms INTEGER NOT NULL
);
-- One row once the deployment's pairing code has been used: it is single use.
CREATE TABLE IF NOT EXISTS pairing (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    sender  TEXT NOT NULL,
    used_ms INTEGER NOT NULL
);
-- The agent's questions: asked (queued to the owner) until an owner's answer is journaled.
CREATE TABLE IF NOT EXISTS questions (
    id           TEXT PRIMARY KEY,
    conversation TEXT NOT NULL,
    choices      TEXT NOT NULL,
    asked_ms     INTEGER NOT NULL,
    answered_ms  INTEGER,
    decision     TEXT
);
CREATE INDEX IF NOT EXISTS questions_open ON questions (conversation, asked_ms) WHERE answered_ms IS NULL;
CREATE TABLE IF NOT EXISTS gateway_session (
    channel     TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    resume_url  TEXT NOT NULL
);
";

/// A Gateway session to resume after a restart (Discord replays the events after `sequence`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySession {
    pub session_id: String,
    pub sequence: u64,
    pub resume_url: String,
}

/// Columns added since the first journals: forward attempts (0 for every old row), answers.
fn add_columns(db: &Connection) -> Result<(), JournalError> {
    let has: bool = db
        .prepare("SELECT 1 FROM pragma_table_info('inbox') WHERE name = 'forward_attempts'")?
        .exists([])?;
    if !has {
        db.execute_batch(
            "ALTER TABLE inbox ADD COLUMN forward_attempts INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    // Journals from before answers to questions travelled through the inbox.
    let has_answer: bool = db
        .prepare("SELECT 1 FROM pragma_table_info('inbox') WHERE name = 'answer'")?
        .exists([])?;
    if !has_answer {
        db.execute_batch("ALTER TABLE inbox ADD COLUMN answer TEXT")?;
    }
    let has_question: bool = db
        .prepare("SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'question'")?
        .exists([])?;
    if !has_question {
        db.execute_batch("ALTER TABLE outbox ADD COLUMN question TEXT")?;
    }
    Ok(())
}

fn question_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AskedQuestion> {
    let choices: String = row.get(2)?;
    let decision: Option<String> = row.get(3)?;
    Ok(AskedQuestion {
        id: row.get(0)?,
        conversation: row.get(1)?,
        choices: serde_json::from_str(&choices).unwrap_or_default(),
        decision: decision.and_then(|d| serde_json::from_value(d.into()).ok()),
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let connect = || -> Result<Connection, JournalError> {
            let db = Connection::open(path)?;
            // WAL with FULL sync: a committed message survives a crash of the process or
            // machine.
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "FULL")?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(db)
        };
        let writer_db = connect()?;
        writer_db.execute_batch(SCHEMA)?;
        add_columns(&writer_db)?;
        // The checkpointer thread does this instead (see the module docs).
        writer_db.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint_db = connect()?;
        let (nudge, nudges) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpoint_when_nudged(checkpoint_db, nudges))
            .map_err(JournalError::Writer)?;
        let (writes, queue) = mpsc::channel();
        let counts = std::sync::Arc::new(WriteCounts::default());
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn({
                let counts = counts.clone();
                move || write_batches(writer_db, queue, &counts, nudge)
            })
            .map_err(JournalError::Writer)?;
        Ok(Journal {
            db: Mutex::new(connect()?),
            writes: Some(writes),
            writer: Some(writer),
            checkpointer: Some(checkpointer),
            counts,
        })
    }

    /// Writes and commits since the journal was opened.
    pub fn write_totals(&self) -> WriteTotals {
        WriteTotals {
            writes: self.counts.writes.load(Ordering::Relaxed),
            commits: self.counts.commits.load(Ordering::Relaxed),
            synced_commits: self.counts.synced.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` on the writer thread inside the current batch's transaction; resolves once
    /// that transaction is committed and fsynced (or failed).
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.write_with(Durability::Synced, op).await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        durability: Durability,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let run: Run = Box::new(move |db| {
            let result = match db {
                Some(db) => in_savepoint(db, op).map_err(JournalError::Sqlite),
                None => Err(JournalError::Commit(
                    "not run: its batch could not be kept".into(),
                )),
            };
            Box::new(move |commit_error: Option<&str>| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(error)) => Err(JournalError::Commit(error.to_string())),
                    (result, _) => result,
                };
                let _ = answer.send(result);
            })
        });
        let job = WriteJob { run, durability };
        self.writes
            .as_ref()
            .and_then(|writes| writes.send(job).ok())
            .ok_or(JournalError::Closed)?;
        answered.await.map_err(|_| JournalError::Closed)?
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (it has its own
        // transactions), so a poisoned lock is safe to keep using.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits an inbound message; `false` when its id was already journaled (a duplicate).
    pub async fn accept(&self, message: &InboundMessage) -> Result<bool, JournalError> {
        let media = serde_json::to_string(&message.media).expect("media refs serialise");
        let answer = message
            .answer
            .as_ref()
            .map(|a| serde_json::to_string(a).expect("answers serialise"));
        let message = message.clone();
        self.write(move |db| {
            let inserted = execute_cached(
                db,
                "INSERT OR IGNORE INTO inbox (id, conversation, sender, text, media, received_ms, answer) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![message.id, message.conversation, message.sender, message.text, media, now_ms(), answer],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    /// Whether `sender` paired with the deployment's code.
    pub fn is_owner(&self, sender: &str) -> Result<bool, JournalError> {
        Ok(self
            .db()
            .query_row(
                "SELECT 1 FROM owners WHERE sender = ?1",
                params![sender],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The paired owners, oldest first.
    pub fn owners(&self) -> Result<Vec<String>, JournalError> {
        let db = self.db();
        let mut statement = db.prepare("SELECT sender FROM owners ORDER BY paired_ms, sender")?;
        let owners = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(owners)
    }

    /// Removes a paired owner (`None`: every one); the senders removed.
    pub async fn unpair(&self, sender: Option<&str>) -> Result<Vec<String>, JournalError> {
        let sender = sender.map(str::to_string);
        self.write(move |db| {
            let mut removed = Vec::new();
            {
                let mut statement = db.prepare(
                    "DELETE FROM owners WHERE ?1 IS NULL OR sender = ?1 RETURNING sender",
                )?;
                let rows = statement.query_map(params![sender], |row| row.get(0))?;
                for row in rows {
                    removed.push(row?);
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Whether the pairing code has been used.
    pub fn pairing_done(&self) -> Result<bool, JournalError> {
        Ok(self
            .db()
            .query_row("SELECT 1 FROM pairing WHERE id = 1", [], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Spends the pairing code on `sender`, making them an owner; `false` when it was spent
    /// already (two people racing with the same link: the first one wins).
    pub async fn pair(&self, sender: &str) -> Result<bool, JournalError> {
        let sender = sender.to_string();
        // Both rows are in the batch's one transaction, so they land together or not at all.
        self.write(move |db| {
            let now = now_ms();
            let spent = execute_cached(
                db,
                "INSERT OR IGNORE INTO pairing (id, sender, used_ms) VALUES (1, ?1, ?2)",
                params![sender, now],
            )?;
            if spent == 1 {
                execute_cached(
                    db,
                    "INSERT OR IGNORE INTO owners (sender, paired_ms) VALUES (?1, ?2)",
                    params![sender, now],
                )?;
            }
            Ok(spent == 1)
        })
        .await
    }

    /// Remembers where `channel`'s Gateway session stands; saved after the messages it
    /// carried were accepted, so a resume replays nothing that was not journaled.
    pub async fn save_gateway_session(
        &self,
        channel: &str,
        session: &GatewaySession,
    ) -> Result<(), JournalError> {
        let (channel, session) = (channel.to_string(), session.clone());
        self.write(move |db| {
            execute_cached(
                db,
                "INSERT INTO gateway_session (channel, session_id, sequence, resume_url) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (channel) DO UPDATE SET session_id = ?2, sequence = ?3, resume_url = ?4",
                params![channel, session.session_id, session.sequence as i64, session.resume_url],
            )?;
            Ok(())
        })
        .await
    }

    pub fn gateway_session(&self, channel: &str) -> Result<Option<GatewaySession>, JournalError> {
        self.db()
            .query_row(
                "SELECT session_id, sequence, resume_url FROM gateway_session WHERE channel = ?1",
                params![channel],
                |r| {
                    Ok(GatewaySession {
                        session_id: r.get(0)?,
                        sequence: r.get::<_, i64>(1)? as u64,
                        resume_url: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(JournalError::from)
    }

    /// Forgets `channel`'s session (Discord invalidated it); the next start identifies anew.
    pub async fn forget_gateway_session(&self, channel: &str) -> Result<(), JournalError> {
        let channel = channel.to_string();
        self.write(move |db| {
            execute_cached(
                db,
                "DELETE FROM gateway_session WHERE channel = ?1",
                params![channel],
            )?;
            Ok(())
        })
        .await
    }

    /// The conversations with messages the vm has not accepted yet, the longest-waiting first.
    pub fn pending_conversations(&self) -> Result<Vec<String>, JournalError> {
        let db = self.db();
        let mut query = db.prepare_cached(
            "SELECT conversation FROM inbox WHERE delivered_ms IS NULL
             GROUP BY conversation ORDER BY MIN(seq)",
        )?;
        let rows = query.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The oldest message of `conversation` after `seq` (0: from the start) the vm has not
    /// accepted yet. A forwarder passes the last one it delivered, so it need not wait for
    /// that one's delivered mark to be committed.
    pub fn next_undelivered_in(
        &self,
        conversation: &str,
        after: i64,
    ) -> Result<Option<(i64, InboundMessage)>, JournalError> {
        self.db()
            .prepare_cached(
                "SELECT seq, id, conversation, sender, text, media, answer FROM inbox
                 WHERE delivered_ms IS NULL AND conversation = ?1 AND seq > ?2
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(rusqlite::params![conversation, after], |row| {
                let media: String = row.get(5)?;
                let answer: Option<String> = row.get(6)?;
                Ok((
                    row.get(0)?,
                    InboundMessage {
                        id: row.get(1)?,
                        conversation: row.get(2)?,
                        sender: row.get(3)?,
                        text: row.get(4)?,
                        media: serde_json::from_str(&media).unwrap_or_default(),
                        answer: answer.and_then(|a| serde_json::from_str(&a).ok()),
                    },
                ))
            })
            .optional()
            .map_err(Into::into)
    }

    /// Not fsynced on its own (see the module docs: a lost mark only re-sends the message).
    /// Counts one more attempt at forwarding message `seq`, durably before it begins (a relay
    /// killed in the middle, out of memory say, still counts it), and returns the count.
    pub async fn begin_forward(&self, seq: i64) -> Result<u32, JournalError> {
        self.write(move |db| {
            db.query_row(
                "UPDATE inbox SET forward_attempts = forward_attempts + 1 WHERE seq = ?1 RETURNING forward_attempts",
                params![seq],
                |row| row.get(0),
            )
        })
        .await
    }

    pub async fn mark_delivered(&self, seq: i64) -> Result<(), JournalError> {
        let delivered_ms = now_ms();
        self.write_with(Durability::WithNextSync, move |db| {
            execute_cached(
                db,
                "UPDATE inbox SET delivered_ms = ?1 WHERE seq = ?2",
                params![delivered_ms, seq],
            )?;
            Ok(())
        })
        .await
    }

    /// Queues a reply or notice; `false` when `id` was queued before (the vm retried).
    pub async fn enqueue(
        &self,
        id: &str,
        conversation: &str,
        text: &str,
        images: &[String],
    ) -> Result<bool, JournalError> {
        let images = serde_json::to_string(images).expect("names serialise");
        let row = [id, conversation, text].map(str::to_string);
        self.write(move |db| {
            let [id, conversation, text] = row;
            let inserted = execute_cached(
                db,
                "INSERT OR IGNORE INTO outbox (id, conversation, text, images) VALUES (?1, ?2, ?3, ?4)",
                params![id, conversation, text, images],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    /// Queues a question for an owner and remembers it, in one transaction; `false` when it
    /// was queued before (the vm retried).
    pub async fn enqueue_question(
        &self,
        id: &str,
        conversation: &str,
        text: &str,
        question: &Question,
    ) -> Result<bool, JournalError> {
        let row = [id, conversation, text].map(str::to_string);
        let question = question.clone();
        self.write(move |db| {
            let [id, conversation, text] = row;
            let inserted = execute_cached(
                db,
                "INSERT OR IGNORE INTO outbox (id, conversation, text, images, question) VALUES (?1, ?2, ?3, '[]', ?4)",
                params![id, conversation, text, serde_json::to_string(&question).expect("questions serialise")],
            )?;
            if inserted == 1 {
                execute_cached(
                    db,
                    "INSERT OR IGNORE INTO questions (id, conversation, choices, asked_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        question.id,
                        conversation,
                        serde_json::to_string(&question.choices).expect("choices serialise"),
                        now_ms()
                    ],
                )?;
            }
            Ok(inserted == 1)
        })
        .await
    }

    pub fn question(&self, id: &str) -> Result<Option<AskedQuestion>, JournalError> {
        self.db()
            .query_row(
                "SELECT id, conversation, choices, decision FROM questions WHERE id = ?1",
                [id],
                question_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// The conversation's newest question without an answer (for numbered replies).
    pub fn open_question(&self, conversation: &str) -> Result<Option<AskedQuestion>, JournalError> {
        self.db()
            .query_row(
                "SELECT id, conversation, choices, decision FROM questions
                 WHERE conversation = ?1 AND answered_ms IS NULL ORDER BY asked_ms DESC LIMIT 1",
                [conversation],
                question_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// Records an owner's answer and journals it as a message for the vm, together;
    /// `false` when the question was answered already (nothing changes then).
    pub async fn answer(
        &self,
        decision: Decision,
        message: &InboundMessage,
    ) -> Result<bool, JournalError> {
        let Some(answer) = message.answer.clone() else {
            return Ok(false);
        };
        let message = message.clone();
        let media = serde_json::to_string(&message.media).expect("media refs serialise");
        let decision = serde_json::to_value(decision).expect("decisions serialise");
        self.write(move |db| {
            let answered = execute_cached(
                db,
                "UPDATE questions SET answered_ms = ?1, decision = ?2 WHERE id = ?3 AND answered_ms IS NULL",
                params![now_ms(), decision.as_str(), answer.question],
            )?;
            if answered == 1 {
                execute_cached(
                    db,
                    "INSERT OR IGNORE INTO inbox (id, conversation, sender, text, media, received_ms, answer) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        message.id,
                        message.conversation,
                        message.sender,
                        message.text,
                        media,
                        now_ms(),
                        serde_json::to_string(&answer).expect("answers serialise")
                    ],
                )?;
            }
            Ok(answered == 1)
        })
        .await
    }

    /// The oldest unsent reply whose next attempt is due at `now_ms`.
    pub fn next_due(&self, now_ms: i64) -> Result<Option<OutboundMessage>, JournalError> {
        self.db()
            .query_row(
                "SELECT seq, conversation, text, images, chunks_sent, attempts, question FROM outbox
                 WHERE done_ms IS NULL AND next_attempt_ms <= ?1 ORDER BY seq LIMIT 1",
                [now_ms],
                |row| {
                    let images: String = row.get(3)?;
                    let question: Option<String> = row.get(6)?;
                    Ok(OutboundMessage {
                        seq: row.get(0)?,
                        conversation: row.get(1)?,
                        text: row.get(2)?,
                        images: serde_json::from_str(&images).unwrap_or_default(),
                        chunks_sent: row.get(4)?,
                        attempts: row.get(5)?,
                        question: question.and_then(|q| serde_json::from_str(&q).ok()),
                    })
                },
            )
            .optional()
            .map_err(Into::into)
    }

    /// The earliest time an unsent reply is due, to sleep until then.
    pub fn earliest_due(&self) -> Result<Option<i64>, JournalError> {
        Ok(self.db().query_row(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE done_ms IS NULL",
            [],
            |row| row.get(0),
        )?)
    }

    pub async fn record_chunks_sent(&self, seq: i64, chunks_sent: i64) -> Result<(), JournalError> {
        self.update(
            "UPDATE outbox SET chunks_sent = ?1 WHERE seq = ?2",
            chunks_sent,
            seq,
        )
        .await
    }

    pub async fn mark_sent(&self, seq: i64) -> Result<(), JournalError> {
        self.update(
            "UPDATE outbox SET done_ms = ?1 WHERE seq = ?2",
            now_ms(),
            seq,
        )
        .await
    }

    pub async fn retry_later(&self, seq: i64, at_ms: i64) -> Result<(), JournalError> {
        self.update(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1 WHERE seq = ?2",
            at_ms,
            seq,
        )
        .await
    }

    /// Gives up on a reply the channel refused for good (kept, with the reason, for diagnosis).
    pub async fn mark_failed(&self, seq: i64, reason: &str) -> Result<(), JournalError> {
        let reason = reason.to_string();
        self.write(move |db| {
            execute_cached(
                db,
                "UPDATE outbox SET done_ms = ?1, failure = ?2 WHERE seq = ?3",
                params![now_ms(), reason, seq],
            )?;
            Ok(())
        })
        .await
    }

    /// One `UPDATE … SET … = ?1 WHERE seq = ?2`.
    async fn update(&self, sql: &'static str, value: i64, seq: i64) -> Result<(), JournalError> {
        self.write(move |db| {
            execute_cached(db, sql, params![value, seq])?;
            Ok(())
        })
        .await
    }

    /// Forgets what was finished before `before_ms`: delivered messages (their text and the
    /// record that de-duplicates channel retries, which come within a day) and sent or
    /// abandoned replies. Pending rows are never touched. Returns how many rows went.
    pub async fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        self.write(move |db| {
            let inbox = execute_cached(
                db,
                "DELETE FROM inbox WHERE delivered_ms IS NOT NULL AND delivered_ms < ?1",
                params![before_ms],
            )?;
            let outbox = execute_cached(
                db,
                "DELETE FROM outbox WHERE done_ms IS NOT NULL AND done_ms < ?1",
                params![before_ms],
            )?;
            // A question older than the retention period is forgotten, answered or not: a
            // tap on it then gets "not one of the agent's questions".
            let questions = execute_cached(
                db,
                "DELETE FROM questions WHERE asked_ms < ?1",
                params![before_ms],
            )?;
            Ok(inbox + outbox + questions)
        })
        .await
    }

    /// (inbound waiting for the vm, replies waiting for a channel).
    pub fn depth(&self) -> Result<(i64, i64), JournalError> {
        let db = self.db();
        let inbox = db.query_row(
            "SELECT COUNT(*) FROM inbox WHERE delivered_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        let outbox = db.query_row(
            "SELECT COUNT(*) FROM outbox WHERE done_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok((inbox, outbox))
    }
}

impl Drop for Journal {
    /// Lets the writer finish what is queued, then closes its connection, so a journal opened
    /// again afterwards (a restart, a test) sees every write.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // The writer's end of the nudges is gone with it, so the checkpointer stops too.
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

/// Runs one statement through the connection's statement cache: the writer repeats the same
/// few statements thousands of times a second, and parsing each anew was 5% of its time.
fn execute_cached(
    db: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    db.prepare_cached(sql)?.execute(params)
}

/// Runs one write in a savepoint of its own: if any of its statements fails, all of them are
/// undone and the rest of the batch is untouched (a pairing's two rows land together or not
/// at all). Outside a transaction the savepoint is the write's own transaction.
fn in_savepoint<T>(
    db: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    execute_cached(db, "SAVEPOINT job", [])?;
    match op(db).and_then(|value| execute_cached(db, "RELEASE job", []).map(|_| value)) {
        Ok(value) => Ok(value),
        Err(error) => {
            // Undo the write's statements; if SQLite already ended the transaction there is
            // nothing left to undo, and these fail harmlessly.
            let _ = db.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(error)
        }
    }
}

/// The writer thread: batch, run, commit once, answer each. Every write runs in its own
/// savepoint ([`in_savepoint`]); a write reported failed never committed. If a batch cannot
/// begin its transaction, each write commits on its own (still durable, just not grouped).
/// Every `CHECKPOINT_EVERY_WRITES` writes it nudges the checkpointer, after answering.
fn write_batches(
    db: Connection,
    queue: mpsc::Receiver<WriteJob>,
    counts: &WriteCounts,
    checkpoint: mpsc::SyncSender<()>,
) {
    let mut since_checkpoint = 0;
    let mut syncing = true;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // In WAL mode FULL fsyncs the WAL at every commit and NORMAL at checkpoints only; an
        // fsync of the WAL covers every commit before it.
        let sync = batch.iter().any(|job| job.durability == Durability::Synced);
        let mut unsynced = None;
        if sync != syncing {
            let level = if sync { "FULL" } else { "NORMAL" };
            match db.pragma_update(None, "synchronous", level) {
                Ok(()) => syncing = sync,
                // Left at NORMAL, this batch cannot keep its promise: it fails (and is retried).
                Err(error) if sync => unsynced = Some(format!("could not fsync: {error}")),
                // Left at FULL, marks are just fsynced early.
                Err(_) => {}
            }
        }
        let grouped = execute_cached(&db, "BEGIN IMMEDIATE", []).is_ok();
        // Ungrouped and unable to fsync, a write would commit on its own without the promise
        // kept: none runs.
        let mut lost = !grouped && unsynced.is_some();
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        for job in batch {
            // An error (a full disk, say) can make SQLite roll the batch's transaction back on
            // its own: what ran is gone, and what has not run must not commit on its own.
            lost = lost || (grouped && db.is_autocommit());
            answers.push((job.run)((!lost).then_some(&db)));
        }
        lost = lost || (grouped && db.is_autocommit());
        let committed = match (grouped, lost, unsynced) {
            (false, true, Some(why)) => Err(why),
            (true, false, Some(why)) => {
                let _ = db.execute_batch("ROLLBACK");
                Err(why)
            }
            // Each write committed (or failed and was undone) on its own.
            (false, _, _) => Ok(()),
            (true, false, None) => execute_cached(&db, "COMMIT", [])
                .map(drop)
                .map_err(|error| {
                    let _ = db.execute_batch("ROLLBACK");
                    error.to_string()
                }),
            // SQLite rolled the whole transaction back: the writes before it are gone, those
            // after it never ran, and none is reported done.
            (true, true, _) => Err("the batch's transaction was rolled back".to_string()),
        };
        counts
            .writes
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        counts.commits.fetch_add(1, Ordering::Relaxed);
        if syncing {
            counts.synced.fetch_add(1, Ordering::Relaxed);
        }
        since_checkpoint += answers.len() as u64;
        for answer in answers {
            answer(committed.as_ref().err().map(String::as_str));
        }
        // A nudge already waiting covers this one too.
        if since_checkpoint >= CHECKPOINT_EVERY_WRITES && checkpoint.try_send(()).is_ok() {
            since_checkpoint = 0;
        }
    }
}

/// The checkpoint thread: copies the WAL back into the database when the writer asks.
/// PASSIVE takes no write lock, so the writer's commits go on meanwhile; what it cannot copy
/// yet (frames a reader still needs) waits for the next nudge.
fn checkpoint_when_nudged(db: Connection, nudges: mpsc::Receiver<()>) {
    while nudges.recv().is_ok() {
        if let Err(error) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("journal checkpoint failed (retried after more writes): {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> InboundMessage {
        InboundMessage {
            id: id.into(),
            conversation: "telegram:1".into(),
            sender: "telegram:1".into(),
            text: "hi".into(),
            media: vec![MediaRef::TelegramFile {
                file_id: "f".into(),
            }],
            answer: None,
        }
    }

    /// The id of the conversation's next undelivered message.
    fn next_id(journal: &Journal) -> String {
        let (_, message) = journal
            .next_undelivered_in("telegram:1", 0)
            .unwrap()
            .unwrap();
        message.id
    }

    #[tokio::test]
    async fn inbox_is_fifo_deduplicated_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let journal = Journal::open(&path).unwrap();
            assert!(journal.accept(&message("a")).await.unwrap());
            assert!(journal.accept(&message("b")).await.unwrap());
            assert!(!journal.accept(&message("a")).await.unwrap(), "duplicate");
        }
        let journal = Journal::open(&path).unwrap();
        let (seq, first) = journal
            .next_undelivered_in("telegram:1", 0)
            .unwrap()
            .unwrap();
        assert_eq!(first, message("a"));
        let (_, after_first) = journal
            .next_undelivered_in("telegram:1", seq)
            .unwrap()
            .unwrap();
        assert_eq!(
            after_first.id, "b",
            "a forwarder's cursor skips what it sent"
        );
        journal.mark_delivered(seq).await.unwrap();
        assert_eq!(next_id(&journal), "b");
        assert_eq!(journal.depth().unwrap(), (1, 0));
    }

    #[tokio::test]
    async fn outbox_retries_and_remembers_progress() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        assert!(
            journal
                .enqueue("r1", "telegram:1", "reply", &[])
                .await
                .unwrap()
        );
        assert!(
            !journal
                .enqueue("r1", "telegram:1", "reply", &[])
                .await
                .unwrap()
        );
        let due = journal.next_due(now_ms()).unwrap().unwrap();
        journal.record_chunks_sent(due.seq, 1).await.unwrap();
        journal
            .retry_later(due.seq, now_ms() + 60_000)
            .await
            .unwrap();
        assert!(journal.next_due(now_ms()).unwrap().is_none());
        let later = journal.next_due(now_ms() + 61_000).unwrap().unwrap();
        assert_eq!((later.chunks_sent, later.attempts), (1, 1));
        journal.mark_sent(later.seq).await.unwrap();
        assert_eq!(journal.depth().unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn prune_forgets_only_what_was_finished_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        assert!(journal.accept(&message("delivered")).await.unwrap());
        assert!(journal.accept(&message("pending")).await.unwrap());
        let (seq, _) = journal
            .next_undelivered_in("telegram:1", 0)
            .unwrap()
            .unwrap();
        journal.mark_delivered(seq).await.unwrap();
        journal
            .enqueue("r1", "telegram:1", "sent", &[])
            .await
            .unwrap();
        journal
            .enqueue("r2", "telegram:1", "waiting", &[])
            .await
            .unwrap();
        let sent = journal.next_due(now_ms()).unwrap().unwrap();
        assert_eq!(sent.text, "sent");
        journal.mark_sent(sent.seq).await.unwrap();

        // Nothing finished before a cutoff in the past.
        assert_eq!(journal.prune(now_ms() - 60_000).await.unwrap(), 0);
        assert_eq!(journal.prune(now_ms() + 1).await.unwrap(), 2);
        // What is pending stays, and a pruned id is no longer a duplicate.
        assert_eq!(journal.depth().unwrap(), (1, 1));
        assert_eq!(next_id(&journal), "pending");
        assert!(journal.accept(&message("delivered")).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_each_is_durable_when_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        let messages: Vec<_> = (0..200).map(|n| message(&format!("m{n}"))).collect();
        let accepted = futures::future::join_all(messages.iter().map(|m| journal.accept(m))).await;
        assert!(accepted.into_iter().all(|r| r.unwrap()));
        // Answered means committed: another connection sees every row, the journal still open.
        let other = Connection::open(&path).unwrap();
        let rows: i64 = other
            .query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 200);
        let WriteTotals {
            writes, commits, ..
        } = journal.write_totals();
        assert_eq!(writes, 200);
        // Writes queued while a commit's fsync runs go into the next one together.
        assert!(commits < writes, "{commits} commits for {writes} writes");
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        let bad = journal.write(|db| db.execute("INSERT INTO no_such_table VALUES (1)", []));
        let kept = message("kept");
        let good = journal.accept(&kept);
        let (bad, good) = futures::join!(bad, good);
        assert!(matches!(bad, Err(JournalError::Sqlite(_))));
        assert!(good.unwrap());
        assert_eq!(next_id(&journal), "kept");
    }

    /// A write whose second statement fails leaves nothing of its first behind, while the
    /// writes batched with it commit: no write half-lands.
    #[tokio::test]
    async fn a_write_that_fails_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        let half = journal.write(|db| {
            db.execute(
                "INSERT INTO owners (sender, paired_ms) VALUES ('telegram:9', 1)",
                [],
            )?;
            db.execute("INSERT INTO no_such_table VALUES (1)", [])
        });
        let kept = message("kept");
        let good = journal.accept(&kept);
        let (half, good) = futures::join!(half, good);
        assert!(matches!(half, Err(JournalError::Sqlite(_))));
        assert!(good.unwrap());
        assert!(
            !journal.is_owner("telegram:9").unwrap(),
            "the failed write's first row committed"
        );
        assert_eq!(next_id(&journal), "kept");
    }

    #[tokio::test]
    async fn delivered_marks_commit_without_an_fsync_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        journal.accept(&message("first")).await.unwrap();
        let before = journal.write_totals();
        let (seq, _) = journal
            .next_undelivered_in("telegram:1", 0)
            .unwrap()
            .unwrap();
        journal.mark_delivered(seq).await.unwrap();
        let marked = journal.write_totals();
        assert_eq!(marked.commits, before.commits + 1);
        assert_eq!(
            marked.synced_commits, before.synced_commits,
            "the mark was fsynced"
        );
        // The next webhook's commit is fsynced again (and takes the mark's frames with it).
        journal.accept(&message("second")).await.unwrap();
        assert_eq!(
            journal.write_totals().synced_commits,
            marked.synced_commits + 1
        );
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(next_id(&journal), "second", "the mark was lost");
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_while_the_journal_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let empty = size();
        let messages: Vec<_> = (0..CHECKPOINT_EVERY_WRITES * 2)
            .map(|n| message(&format!("m{n}")))
            .collect();
        futures::future::join_all(messages.iter().map(|m| journal.accept(m))).await;
        // Only a checkpoint writes the database file while the journal is open (commits go to
        // the WAL, and the writer never checkpoints).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while size() <= empty {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
