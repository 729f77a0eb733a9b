//! The vm's SQLite state on `DATA_DIR`, so a restart forgets nothing the user would miss:
//! the job queue, each conversation's Claude session id, today's spend, and the callbacks
//! (results) not yet accepted by the relay.

use contract::protocol::{Callback, Decision, VmMessage};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("vm store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

impl StoreError {
    /// The volume (or SQLite's page limit) is full: nothing new can be stored until room is
    /// made, so retrying soon is pointless.
    pub fn is_disk_full(&self) -> bool {
        matches!(&self.0, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Columns added after the first release, for stores created before them.
const ADDED_COLUMNS: &[(&str, &str)] = &[("jobs", "finished_ms"), ("callbacks", "done_ms")];

/// Where a job stands: `Queued` → `Running` → one of the finished states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    /// Finished with a reply (a result or a sentence saying what went wrong).
    Done,
    /// Stopped by the user's `/cancel`.
    Cancelled,
    /// Stopped by a shutdown or restart; the sender was told to send it again.
    Interrupted,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub seq: i64,
    pub message: VmMessage,
}

pub struct Store {
    db: Mutex<Connection>,
}

/// A question as the store keeps it (the text shown is not kept: only what decides it).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredQuestion {
    pub id: String,
    pub conversation: String,
    pub tool: String,
    pub input: serde_json::Value,
    pub state: QuestionState,
    pub decision: Option<Decision>,
    /// The id of the message that answered it (the relay may deliver it twice).
    pub answered_by: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionState {
    /// Its agent process waits for the answer.
    Open,
    /// Nobody waits: the answer resumes the session.
    Parked,
    Answered,
}

impl QuestionState {
    fn as_str(self) -> &'static str {
        match self {
            QuestionState::Open => "open",
            QuestionState::Parked => "parked",
            QuestionState::Answered => "answered",
        }
    }

    fn parse(text: &str) -> QuestionState {
        match text {
            "open" => QuestionState::Open,
            "parked" => QuestionState::Parked,
            _ => QuestionState::Answered,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    conversation TEXT NOT NULL,
    message      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'queued',
    finished_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, conversation, seq);
CREATE TABLE IF NOT EXISTS sessions (conversation TEXT PRIMARY KEY, session_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spend (day TEXT PRIMARY KEY, usd REAL NOT NULL);
-- Questions the agent asked before a tool call: open while its process waits, parked when it
-- stopped waiting (the vm may sleep), answered once an owner decided.
CREATE TABLE IF NOT EXISTS questions (
    id           TEXT PRIMARY KEY,
    conversation TEXT NOT NULL,
    tool         TEXT NOT NULL,
    input        TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'open',
    decision     TEXT,
    answered_by  TEXT,
    asked_ms     INTEGER NOT NULL
);
-- Always allow: Claude Code permission rules (`Bash(git status)`) for one conversation.
CREATE TABLE IF NOT EXISTS rules (
    conversation TEXT NOT NULL,
    rule         TEXT NOT NULL,
    PRIMARY KEY (conversation, rule)
);
-- A parked question allowed: the same call, once, is not asked again.
CREATE TABLE IF NOT EXISTS grants (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    tool         TEXT NOT NULL,
    input        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS modes (conversation TEXT PRIMARY KEY, mode TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (conversation TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS callbacks (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    body    TEXT NOT NULL,
    done    INTEGER NOT NULL DEFAULT 0,
    done_ms INTEGER
);
";

/// Today's date in UTC as `YYYY-MM-DD`, for the daily spend.
pub fn utc_day() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one line.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        for (table, column) in ADDED_COLUMNS {
            let present: bool = db.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )?;
            if !present {
                db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER"))?;
            }
        }
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a message; `false` if its id was seen before.
    pub fn add_job(&self, message: &VmMessage) -> Result<bool, StoreError> {
        let body = serde_json::to_string(message).expect("messages serialise");
        let n = self.db().execute(
            "INSERT OR IGNORE INTO jobs (id, conversation, message) VALUES (?1, ?2, ?3)",
            params![message.id, message.conversation, body],
        )?;
        Ok(n == 1)
    }

    /// Up to `limit` jobs that may start now: the oldest queued job of each conversation that
    /// has nothing running.
    pub fn runnable(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT seq, message FROM jobs j WHERE state = 'queued'
               AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.conversation = j.conversation AND r.state = 'running')
               AND seq = (SELECT MIN(seq) FROM jobs q WHERE q.conversation = j.conversation AND q.state = 'queued')
             ORDER BY seq LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
            let body: String = row.get(1)?;
            Ok((row.get::<_, i64>(0)?, body))
        })?;
        let mut jobs = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            if let Ok(message) = serde_json::from_str(&body) {
                jobs.push(Job { seq, message });
            }
        }
        Ok(jobs)
    }

    pub fn set_state(&self, seq: i64, state: JobState) -> Result<(), StoreError> {
        let finished = state.is_finished().then(now_ms);
        self.db().execute(
            "UPDATE jobs SET state = ?1, finished_ms = ?2 WHERE seq = ?3",
            params![state.as_str(), finished, seq],
        )?;
        Ok(())
    }

    /// (running, queued) jobs, overall or in one conversation.
    pub fn counts(&self, conversation: Option<&str>) -> Result<(i64, i64), StoreError> {
        let db = self.db();
        let count = |state: &str| -> Result<i64, rusqlite::Error> {
            match conversation {
                Some(c) => db.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = ?1 AND conversation = ?2",
                    params![state, c],
                    |r| r.get(0),
                ),
                None => db.query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [state], |r| {
                    r.get(0)
                }),
            }
        };
        Ok((count("running")?, count("queued")?))
    }

    /// Jobs left `running` by a crash: marked interrupted and returned, to tell their senders.
    pub fn take_interrupted(&self) -> Result<Vec<Job>, StoreError> {
        let db = self.db();
        let mut statement = db.prepare("SELECT seq, message FROM jobs WHERE state = 'running'")?;
        let jobs: Vec<Job> = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?
            .filter_map(Result::ok)
            .filter_map(|(seq, body)| {
                Some(Job {
                    seq,
                    message: serde_json::from_str(&body).ok()?,
                })
            })
            .collect();
        db.execute(
            "UPDATE jobs SET state = 'interrupted' WHERE state = 'running'",
            [],
        )?;
        Ok(jobs)
    }

    pub fn session(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT session_id FROM sessions WHERE conversation = ?1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_session(&self, conversation: &str, session_id: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO sessions (conversation, session_id) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET session_id = excluded.session_id",
            params![conversation, session_id],
        )?;
        Ok(())
    }

    pub fn clear_session(&self, conversation: &str) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM sessions WHERE conversation = ?1",
            [conversation],
        )?;
        Ok(())
    }

    pub fn add_question(&self, question: &StoredQuestion) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO questions (id, conversation, tool, input, asked_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                question.id,
                question.conversation,
                question.tool,
                question.input.to_string(),
                now_ms()
            ],
        )?;
        Ok(())
    }

    pub fn question(&self, id: &str) -> Result<Option<StoredQuestion>, StoreError> {
        let row = self
            .db()
            .query_row(
                "SELECT conversation, tool, input, state, decision, answered_by FROM questions WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(
            |(conversation, tool, input, state, decision, answered_by)| StoredQuestion {
                id: id.to_string(),
                conversation,
                tool,
                input: serde_json::from_str(&input).unwrap_or(serde_json::Value::Null),
                state: QuestionState::parse(&state),
                decision: decision.and_then(|d| serde_json::from_value(d.into()).ok()),
                answered_by,
            },
        ))
    }

    /// Moves an open question to `state`; `false` if it was not open.
    pub fn close_question(&self, id: &str, state: QuestionState) -> Result<bool, StoreError> {
        let n = self.db().execute(
            "UPDATE questions SET state = ?1 WHERE id = ?2 AND state = 'open'",
            params![state.as_str(), id],
        )?;
        Ok(n == 1)
    }

    /// Records an owner's answer to a question not answered yet; `false` if it was.
    pub fn answer_question(
        &self,
        id: &str,
        decision: Decision,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let decision = serde_json::to_value(decision).expect("decisions serialise");
        let n = self.db().execute(
            "UPDATE questions SET state = 'answered', decision = ?1, answered_by = ?2
             WHERE id = ?3 AND state IN ('open', 'parked')",
            params![decision.as_str(), message_id, id],
        )?;
        Ok(n == 1)
    }

    /// At start-up: questions whose process is gone wait for their answer as parked ones.
    pub fn park_open_questions(&self) -> Result<usize, StoreError> {
        Ok(self.db().execute(
            "UPDATE questions SET state = 'parked' WHERE state = 'open'",
            [],
        )?)
    }

    pub fn add_rules(&self, conversation: &str, rules: &[String]) -> Result<(), StoreError> {
        let db = self.db();
        for rule in rules {
            db.execute(
                "INSERT OR IGNORE INTO rules (conversation, rule) VALUES (?1, ?2)",
                params![conversation, rule],
            )?;
        }
        Ok(())
    }

    pub fn rules(&self, conversation: &str) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut statement =
            db.prepare("SELECT rule FROM rules WHERE conversation = ?1 ORDER BY rule")?;
        let rules = statement
            .query_map([conversation], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rules)
    }

    pub fn clear_rules(&self, conversation: &str) -> Result<usize, StoreError> {
        Ok(self
            .db()
            .execute("DELETE FROM rules WHERE conversation = ?1", [conversation])?)
    }

    pub fn add_grant(
        &self,
        conversation: &str,
        tool: &str,
        input: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO grants (conversation, tool, input) VALUES (?1, ?2, ?3)",
            params![conversation, tool, input.to_string()],
        )?;
        Ok(())
    }

    /// Uses up a grant for exactly this call; `false` if there is none.
    pub fn take_grant(
        &self,
        conversation: &str,
        tool: &str,
        input: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let db = self.db();
        let mut statement =
            db.prepare("SELECT seq, input FROM grants WHERE conversation = ?1 AND tool = ?2")?;
        let found = statement
            .query_map(params![conversation, tool], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .filter_map(Result::ok)
            .find(|(_, granted)| {
                serde_json::from_str::<serde_json::Value>(granted).is_ok_and(|g| &g == input)
            });
        match found {
            Some((seq, _)) => {
                db.execute("DELETE FROM grants WHERE seq = ?1", [seq])?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn mode(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT mode FROM modes WHERE conversation = ?1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_mode(&self, conversation: &str, mode: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO modes (conversation, mode) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET mode = excluded.mode",
            params![conversation, mode],
        )?;
        Ok(())
    }

    /// Keeps the fingerprint of the conversation's workspace changes as a job left them;
    /// returns the one the job before left.
    pub fn swap_changes(
        &self,
        conversation: &str,
        fingerprint: &str,
    ) -> Result<Option<String>, StoreError> {
        let db = self.db();
        let before = db
            .query_row(
                "SELECT fingerprint FROM changes WHERE conversation = ?1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?;
        db.execute(
            "INSERT INTO changes (conversation, fingerprint) VALUES (?1, ?2)
             ON CONFLICT (conversation) DO UPDATE SET fingerprint = excluded.fingerprint",
            params![conversation, fingerprint],
        )?;
        Ok(before)
    }

    pub fn add_spend(&self, usd: f64) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO spend (day, usd) VALUES (?1, ?2) ON CONFLICT (day) DO UPDATE SET usd = usd + excluded.usd",
            params![utc_day(), usd],
        )?;
        Ok(())
    }

    pub fn spend_today(&self) -> Result<f64, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT usd FROM spend WHERE day = ?1", [utc_day()], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0.0))
    }

    /// Keeps a result for the relay until it accepts it; a repeated id is ignored.
    pub fn enqueue_callback(&self, callback: &Callback) -> Result<(), StoreError> {
        let body = serde_json::to_string(callback).expect("callbacks serialise");
        self.db().execute(
            "INSERT OR IGNORE INTO callbacks (id, body) VALUES (?1, ?2)",
            params![callback.id, body],
        )?;
        Ok(())
    }

    pub fn next_callback(&self) -> Result<Option<(i64, Callback)>, StoreError> {
        let row: Option<(i64, String)> = self
            .db()
            .query_row(
                "SELECT seq, body FROM callbacks WHERE done = 0 ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(seq, body)| Some((seq, serde_json::from_str(&body).ok()?))))
    }

    pub fn callback_done(&self, seq: i64) -> Result<(), StoreError> {
        self.db().execute(
            // The body (base64 images included) is of no use once the relay has it; the row
            // stays only so a repeated id is recognised.
            "UPDATE callbacks SET done = 1, done_ms = ?1, body = '' WHERE seq = ?2",
            params![now_ms(), seq],
        )?;
        Ok(())
    }

    /// Forgets finished jobs (the user's message text) and delivered results (their text and
    /// images) finished before `before_ms`; rows finished before these columns existed count
    /// as finished now. Returns how many rows went.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let db = self.db();
        let now = now_ms();
        db.execute(
            "UPDATE jobs SET finished_ms = ?1 WHERE finished_ms IS NULL AND state NOT IN ('queued', 'running')",
            [now],
        )?;
        db.execute(
            "UPDATE callbacks SET done_ms = ?1 WHERE done_ms IS NULL AND done = 1",
            [now],
        )?;
        let jobs = db.execute(
            "DELETE FROM jobs WHERE finished_ms < ?1 AND state NOT IN ('queued', 'running')",
            [before_ms],
        )?;
        let callbacks = db.execute(
            "DELETE FROM callbacks WHERE done = 1 AND done_ms < ?1",
            [before_ms],
        )?;
        Ok(jobs + callbacks)
    }

    pub fn pending_callbacks(&self) -> Result<i64, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM callbacks WHERE done = 0", [], |r| {
                r.get(0)
            })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, conversation: &str) -> VmMessage {
        VmMessage {
            id: id.into(),
            conversation: conversation.into(),
            sender: conversation.into(),
            text: id.into(),
            images: vec![],
            answer: None,
        }
    }

    #[test]
    fn one_job_per_conversation_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vm.db")).unwrap();
        for (id, conversation) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
            assert!(store.add_job(&message(id, conversation)).unwrap());
        }
        assert!(
            !store.add_job(&message("a1", "a")).unwrap(),
            "idempotent on id"
        );
        let first: Vec<String> = store
            .runnable(10)
            .unwrap()
            .into_iter()
            .map(|j| j.message.id)
            .collect();
        assert_eq!(first, ["a1", "b1"]);
        let a1 = store.runnable(1).unwrap().remove(0);
        store.set_state(a1.seq, JobState::Running).unwrap();
        assert_eq!(
            store
                .runnable(10)
                .unwrap()
                .into_iter()
                .map(|j| j.message.id)
                .collect::<Vec<_>>(),
            ["b1"]
        );
        assert_eq!(store.counts(Some("a")).unwrap(), (1, 1));
        let interrupted = store.take_interrupted().unwrap();
        assert_eq!(interrupted[0].message.id, "a1");
        assert_eq!(store.runnable(10).unwrap()[0].message.id, "a2");
    }

    #[test]
    fn sessions_spend_and_callbacks_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.db");
        {
            let store = Store::open(&path).unwrap();
            store.set_session("a", "s1").unwrap();
            store.set_session("a", "s2").unwrap();
            store.add_spend(0.25).unwrap();
            store.add_spend(0.5).unwrap();
            let callback = Callback {
                id: "c".into(),
                conversation: "a".into(),
                kind: contract::protocol::CallbackKind::Message,
                text: "t".into(),
                images: vec![],
                question: None,
                status: None,
            };
            store.enqueue_callback(&callback).unwrap();
            store.enqueue_callback(&callback).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.session("a").unwrap().as_deref(), Some("s2"));
        assert!((store.spend_today().unwrap() - 0.75).abs() < 1e-9);
        assert_eq!(store.pending_callbacks().unwrap(), 1);
        let (seq, _) = store.next_callback().unwrap().unwrap();
        store.callback_done(seq).unwrap();
        assert_eq!(store.pending_callbacks().unwrap(), 0);
        assert_eq!(utc_day().len(), 10);
    }

    #[test]
    fn prune_forgets_finished_work_only_and_old_stores_gain_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.db");
        // A store from before the retention columns.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                conversation TEXT NOT NULL, message TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued');
             CREATE TABLE callbacks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);
             INSERT INTO jobs (id, conversation, message, state) VALUES ('old', 'a', '{}', 'done');",
        )
        .unwrap();
        drop(old);
        let store = Store::open(&path).unwrap();
        for id in ["done", "queued"] {
            store.add_job(&message(id, "a")).unwrap();
        }
        let done = store.runnable(1).unwrap().remove(0);
        store.set_state(done.seq, JobState::Done).unwrap();
        let reply = |id: &str| Callback {
            id: id.into(),
            conversation: "a".into(),
            kind: contract::protocol::CallbackKind::Message,
            text: "t".into(),
            images: vec![],
            question: None,
            status: None,
        };
        store.enqueue_callback(&reply("sent")).unwrap();
        store.enqueue_callback(&reply("unsent")).unwrap();
        let (seq, _) = store.next_callback().unwrap().unwrap();
        store.callback_done(seq).unwrap();

        assert_eq!(
            store.prune(now_ms() - 60_000).unwrap(),
            0,
            "nothing is old yet"
        );
        // The old row, the finished job and the delivered result go; queued work stays.
        assert_eq!(store.prune(now_ms() + 1).unwrap(), 3);
        assert_eq!(store.counts(None).unwrap(), (0, 1));
        assert_eq!(store.pending_callbacks().unwrap(), 1);
        assert_eq!(store.runnable(5).unwrap()[0].message.id, "queued");
    }

    #[test]
    fn a_full_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vm.db")).unwrap();
        // SQLite's page limit gives the same error a full volume does (SQLITE_FULL).
        let pages: i64 = store
            .db()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        store
            .db()
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let big = VmMessage {
            text: "x".repeat(64 * 1024),
            ..message("big", "a")
        };
        let error = store.add_job(&big).unwrap_err();
        assert!(error.is_disk_full(), "{error}");
    }
}
