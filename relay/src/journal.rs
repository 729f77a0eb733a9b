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

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(#[from] rusqlite::Error);

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    /// Unique per channel message: `telegram:<update_id>`, `whatsapp:<MessageSid>`,
    /// `discord:<message id>`.
    pub id: String,
    pub conversation: String,
    pub sender: String,
    pub text: String,
    pub media: Vec<MediaRef>,
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
}

pub struct Journal {
    db: Mutex<Connection>,
}

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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let db = Connection::open(path)?;
        // WAL with FULL sync: a committed message survives a crash of the process or machine.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Journal { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (it has its own
        // transactions), so a poisoned lock is safe to keep using.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits an inbound message; `false` when its id was already journaled (a duplicate).
    pub fn accept(&self, message: &InboundMessage) -> Result<bool, JournalError> {
        let media = serde_json::to_string(&message.media).expect("media refs serialise");
        let inserted = self.db().execute(
            "INSERT OR IGNORE INTO inbox (id, conversation, sender, text, media, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![message.id, message.conversation, message.sender, message.text, media, now_ms()],
        )?;
        Ok(inserted == 1)
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
    pub fn pair(&self, sender: &str) -> Result<bool, JournalError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let now = now_ms();
        let spent = tx.execute(
            "INSERT OR IGNORE INTO pairing (id, sender, used_ms) VALUES (1, ?1, ?2)",
            params![sender, now],
        )?;
        if spent == 1 {
            tx.execute(
                "INSERT OR IGNORE INTO owners (sender, paired_ms) VALUES (?1, ?2)",
                params![sender, now],
            )?;
        }
        tx.commit()?;
        Ok(spent == 1)
    }

    /// Remembers where `channel`'s Gateway session stands; saved after the messages it
    /// carried were accepted, so a resume replays nothing that was not journaled.
    pub fn save_gateway_session(
        &self,
        channel: &str,
        session: &GatewaySession,
    ) -> Result<(), JournalError> {
        self.db().execute(
            "INSERT INTO gateway_session (channel, session_id, sequence, resume_url) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel) DO UPDATE SET session_id = ?2, sequence = ?3, resume_url = ?4",
            params![channel, session.session_id, session.sequence as i64, session.resume_url],
        )?;
        Ok(())
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
    pub fn forget_gateway_session(&self, channel: &str) -> Result<(), JournalError> {
        self.db().execute(
            "DELETE FROM gateway_session WHERE channel = ?1",
            params![channel],
        )?;
        Ok(())
    }

    /// The oldest message the vm has not accepted yet.
    pub fn next_undelivered(&self) -> Result<Option<(i64, InboundMessage)>, JournalError> {
        self.db()
            .query_row(
                "SELECT seq, id, conversation, sender, text, media FROM inbox WHERE delivered_ms IS NULL ORDER BY seq LIMIT 1",
                [],
                |row| {
                    let media: String = row.get(5)?;
                    Ok((
                        row.get(0)?,
                        InboundMessage {
                            id: row.get(1)?,
                            conversation: row.get(2)?,
                            sender: row.get(3)?,
                            text: row.get(4)?,
                            media: serde_json::from_str(&media).unwrap_or_default(),
                        },
                    ))
                },
            )
            .optional()
            .map_err(Into::into)
    }

    pub fn mark_delivered(&self, seq: i64) -> Result<(), JournalError> {
        self.db().execute(
            "UPDATE inbox SET delivered_ms = ?1 WHERE seq = ?2",
            params![now_ms(), seq],
        )?;
        Ok(())
    }

    /// Queues a reply or notice; `false` when `id` was queued before (the vm retried).
    pub fn enqueue(
        &self,
        id: &str,
        conversation: &str,
        text: &str,
        images: &[String],
    ) -> Result<bool, JournalError> {
        let images = serde_json::to_string(images).expect("names serialise");
        let inserted = self.db().execute(
            "INSERT OR IGNORE INTO outbox (id, conversation, text, images) VALUES (?1, ?2, ?3, ?4)",
            params![id, conversation, text, images],
        )?;
        Ok(inserted == 1)
    }

    /// The oldest unsent reply whose next attempt is due at `now_ms`.
    pub fn next_due(&self, now_ms: i64) -> Result<Option<OutboundMessage>, JournalError> {
        self.db()
            .query_row(
                "SELECT seq, conversation, text, images, chunks_sent, attempts FROM outbox
                 WHERE done_ms IS NULL AND next_attempt_ms <= ?1 ORDER BY seq LIMIT 1",
                [now_ms],
                |row| {
                    let images: String = row.get(3)?;
                    Ok(OutboundMessage {
                        seq: row.get(0)?,
                        conversation: row.get(1)?,
                        text: row.get(2)?,
                        images: serde_json::from_str(&images).unwrap_or_default(),
                        chunks_sent: row.get(4)?,
                        attempts: row.get(5)?,
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

    pub fn record_chunks_sent(&self, seq: i64, chunks_sent: i64) -> Result<(), JournalError> {
        self.db().execute(
            "UPDATE outbox SET chunks_sent = ?1 WHERE seq = ?2",
            params![chunks_sent, seq],
        )?;
        Ok(())
    }

    pub fn mark_sent(&self, seq: i64) -> Result<(), JournalError> {
        self.db().execute(
            "UPDATE outbox SET done_ms = ?1 WHERE seq = ?2",
            params![now_ms(), seq],
        )?;
        Ok(())
    }

    pub fn retry_later(&self, seq: i64, at_ms: i64) -> Result<(), JournalError> {
        self.db().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?1 WHERE seq = ?2",
            params![at_ms, seq],
        )?;
        Ok(())
    }

    /// Gives up on a reply the channel refused for good (kept, with the reason, for diagnosis).
    pub fn mark_failed(&self, seq: i64, reason: &str) -> Result<(), JournalError> {
        self.db().execute(
            "UPDATE outbox SET done_ms = ?1, failure = ?2 WHERE seq = ?3",
            params![now_ms(), reason, seq],
        )?;
        Ok(())
    }

    /// Forgets what was finished before `before_ms`: delivered messages (their text and the
    /// record that de-duplicates channel retries, which come within a day) and sent or
    /// abandoned replies. Pending rows are never touched. Returns how many rows went.
    pub fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        let db = self.db();
        let inbox = db.execute(
            "DELETE FROM inbox WHERE delivered_ms IS NOT NULL AND delivered_ms < ?1",
            params![before_ms],
        )?;
        let outbox = db.execute(
            "DELETE FROM outbox WHERE done_ms IS NOT NULL AND done_ms < ?1",
            params![before_ms],
        )?;
        Ok(inbox + outbox)
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
        }
    }

    #[test]
    fn inbox_is_fifo_deduplicated_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let journal = Journal::open(&path).unwrap();
            assert!(journal.accept(&message("a")).unwrap());
            assert!(journal.accept(&message("b")).unwrap());
            assert!(!journal.accept(&message("a")).unwrap(), "duplicate");
        }
        let journal = Journal::open(&path).unwrap();
        let (seq, first) = journal.next_undelivered().unwrap().unwrap();
        assert_eq!(first, message("a"));
        journal.mark_delivered(seq).unwrap();
        assert_eq!(journal.next_undelivered().unwrap().unwrap().1.id, "b");
        assert_eq!(journal.depth().unwrap(), (1, 0));
    }

    #[test]
    fn outbox_retries_and_remembers_progress() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        assert!(journal.enqueue("r1", "telegram:1", "reply", &[]).unwrap());
        assert!(!journal.enqueue("r1", "telegram:1", "reply", &[]).unwrap());
        let due = journal.next_due(now_ms()).unwrap().unwrap();
        journal.record_chunks_sent(due.seq, 1).unwrap();
        journal.retry_later(due.seq, now_ms() + 60_000).unwrap();
        assert!(journal.next_due(now_ms()).unwrap().is_none());
        let later = journal.next_due(now_ms() + 61_000).unwrap().unwrap();
        assert_eq!((later.chunks_sent, later.attempts), (1, 1));
        journal.mark_sent(later.seq).unwrap();
        assert_eq!(journal.depth().unwrap(), (0, 0));
    }

    #[test]
    fn prune_forgets_only_what_was_finished_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        assert!(journal.accept(&message("delivered")).unwrap());
        assert!(journal.accept(&message("pending")).unwrap());
        let (seq, _) = journal.next_undelivered().unwrap().unwrap();
        journal.mark_delivered(seq).unwrap();
        journal.enqueue("r1", "telegram:1", "sent", &[]).unwrap();
        journal.enqueue("r2", "telegram:1", "waiting", &[]).unwrap();
        let sent = journal.next_due(now_ms()).unwrap().unwrap();
        assert_eq!(sent.text, "sent");
        journal.mark_sent(sent.seq).unwrap();

        // Nothing finished before a cutoff in the past.
        assert_eq!(journal.prune(now_ms() - 60_000).unwrap(), 0);
        assert_eq!(journal.prune(now_ms() + 1).unwrap(), 2);
        // What is pending stays, and a pruned id is no longer a duplicate.
        assert_eq!(journal.depth().unwrap(), (1, 1));
        assert_eq!(journal.next_undelivered().unwrap().unwrap().1.id, "pending");
        assert!(journal.accept(&message("delivered")).unwrap());
    }
}
