//! The embedded decision store: one SQLite file under `DATA_DIR`, in WAL
//! mode. SQLite calls block, so every one runs on the blocking pool, never
//! on the async workers; one connection behind a mutex serialises writes
//! (SQLite allows one writer at a time anyway).
//!
//! Durability: WAL with `synchronous=NORMAL` — a committed decision is in
//! the WAL file before the answer is sent, so it survives the process being
//! killed; only a power loss can lose the last transactions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ANSWER_TTL_SECS, Answer, Decided, Decision, DecisionStore, Expense, Recorded, StoreError,
    Subscription, SubscriptionStore, expense_id, performer_key,
};
use crate::settings::ConfigError;

/// The file's name under `DATA_DIR`.
pub const FILE_NAME: &str = "outlook-inbox.sqlite3";

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: expenses, their one decision, and the answer to each action request.
    "CREATE TABLE expenses (
        id TEXT PRIMARY KEY,
        year INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        amount_cents INTEGER NOT NULL,
        currency TEXT NOT NULL,
        submitter TEXT NOT NULL,
        purpose TEXT NOT NULL,
        recipient TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (year, seq)
    );
    CREATE TABLE decisions (
        expense_id TEXT PRIMARY KEY REFERENCES expenses(id),
        decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
        performer TEXT NOT NULL,
        at INTEGER NOT NULL,
        action_request_id TEXT,
        card_correlation_id TEXT
    );
    CREATE TABLE answers (
        request_id TEXT PRIMARY KEY,
        expense_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        message TEXT NOT NULL
    );",
    // 2: answers kept per performer (a request id alone is chosen by the
    // caller), with the time kept so that they can be pruned like Redis
    // expires them; and the last id taken per year, so that an id can be
    // reserved before its expense is written. Answers kept under the old
    // key are dropped: a retry after the upgrade gets the standing decision.
    "DROP TABLE answers;
    CREATE TABLE answers (
        performer TEXT NOT NULL,
        request_id TEXT NOT NULL,
        expense_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        message TEXT NOT NULL,
        kept_at INTEGER NOT NULL,
        PRIMARY KEY (performer, request_id)
    );
    CREATE INDEX answers_by_age ON answers (kept_at);
    CREATE TABLE expense_ids (
        year INTEGER PRIMARY KEY,
        last INTEGER NOT NULL
    );
    INSERT INTO expense_ids (year, last) SELECT year, MAX(seq) FROM expenses GROUP BY year;",
    // 3: each person's Graph subscription to their Inbox (its clientState
    // only as a hash), and their Inbox deltaLink.
    "CREATE TABLE subscriptions (
        owner TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        client_state_hash TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        mailbox TEXT NOT NULL
    );
    CREATE TABLE delta_links (
        owner TEXT PRIMARY KEY,
        link TEXT NOT NULL
    );",
];

pub struct SqliteStore {
    /// The one writer.
    conn: Arc<Mutex<Connection>>,
    /// Readers: write-ahead logging lets them read while the writer writes.
    readers: Arc<Vec<Mutex<Connection>>>,
    path: PathBuf,
    /// Card sends in the last minute, per person (one instance: memory is enough).
    sends: super::RecentSends,
    /// Set when the background check found the file damaged.
    damaged: Arc<std::sync::atomic::AtomicBool>,
    /// One writer call at a time on the blocking pool; the others wait
    /// without a thread.
    writer_turn: Arc<tokio::sync::Semaphore>,
    /// As many reader calls at a time as there are readers.
    reader_turns: Arc<tokio::sync::Semaphore>,
}

/// Each connection's page cache: 256 KiB (SQLite's default is 2 MiB a
/// connection, 6 MiB for the three). Expenses are read by primary key, a
/// few pages each.
const CACHE: &str = "PRAGMA cache_size=-256;";

/// Read-only connections beside the writer.
const READERS: usize = 2;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` and migrates it. A
    /// folder that cannot be created or written, or a file that is not a
    /// database, is a start-up error naming `DATA_DIR`.
    pub fn open(dir: &Path) -> Result<Self, ConfigError> {
        let bad = |what: String| ConfigError {
            variable: "DATA_DIR",
            message: format!("`{}`: {what}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot be created ({e})")))?;
        let path = dir.join(FILE_NAME);
        let conn =
            Connection::open(&path).map_err(|e| bad(format!("cannot open {FILE_NAME} ({e})")))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| bad(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| bad(format!("{FILE_NAME} is not a usable database ({e})")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(bad(format!(
                "{FILE_NAME} cannot use write-ahead logging (mode {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(|e| bad(e.to_string()))?;
        // The schema must read; the whole file is checked in the background
        // (`check_in_background`): `quick_check` reads every page, 65 ms for
        // 300,000 expenses, which start-up should not wait for.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| bad(format!("{FILE_NAME} is damaged ({e})")))?;
        conn.execute_batch(CACHE).map_err(|e| bad(e.to_string()))?;
        migrate(&conn).map_err(|e| bad(format!("migrating {FILE_NAME} failed ({e})")))?;
        // Writable? A read-only folder or file fails here, at start-up.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(|e| bad(format!("{FILE_NAME} is not writable ({e})")))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(&path)
                .map_err(|e| bad(format!("cannot open {FILE_NAME} ({e})")))?;
            reader
                .busy_timeout(std::time::Duration::from_secs(5))
                .and_then(|()| reader.execute_batch("PRAGMA query_only=ON;"))
                .and_then(|()| reader.execute_batch(CACHE))
                .map_err(|e| bad(e.to_string()))?;
            readers.push(Mutex::new(reader));
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            path,
            sends: Default::default(),
            damaged: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            writer_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            reader_turns: Arc::new(tokio::sync::Semaphore::new(READERS)),
        })
    }

    /// Checks every page of the file on a connection of its own, off the
    /// async workers, once the app serves. A damaged file is logged naming
    /// `DATA_DIR` and makes `/healthz` say `store unavailable`.
    pub fn check_in_background(&self) {
        let path = self.path.clone();
        let damaged = self.damaged.clone();
        let check = move || -> Result<String, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            conn.execute_batch("PRAGMA query_only=ON;")?;
            conn.execute_batch(CACHE)?;
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0))
        };
        tokio::task::spawn_blocking(move || match check() {
            Ok(ok) if ok == "ok" => tracing::debug!("store file checked: ok"),
            Ok(found) => {
                damaged.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(
                    "DATA_DIR: {FILE_NAME} is damaged ({}); restore it from a backup",
                    crate::logging::Untrusted(&found)
                );
            }
            Err(e) => {
                damaged.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::error!("DATA_DIR: {FILE_NAME} could not be checked ({e})");
            }
        });
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the write-ahead log into the database file and empties it.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|_busy| ())
        })
        .await
    }

    /// Runs `f` with a free reader (or the first one) on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        // A turn first, waited for on the async side: as many calls on the
        // blocking pool as there are readers, not one thread per waiting
        // request (a burst of 32 made 150 threads).
        let turn = self
            .reader_turns
            .clone()
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let guard = readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .unwrap_or_else(|| readers[0].lock().unwrap_or_else(|p| p.into_inner()));
            f(&guard)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    /// Runs `f` with the writer on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let turn = self
            .writer_turn
            .clone()
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }
}

const SELECT_SUBSCRIPTION: &str =
    "SELECT owner, id, client_state_hash, expires_at, mailbox FROM subscriptions";

fn subscription_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        owner: r.get(0)?,
        id: r.get(1)?,
        client_state_hash: r.get(2)?,
        expires_at: r.get(3)?,
        mailbox: r.get(4)?,
    })
}

impl SubscriptionStore for SqliteStore {
    async fn subscription_of(&self, owner: &str) -> Result<Option<Subscription>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("{SELECT_SUBSCRIPTION} WHERE owner = ?1"),
                [&owner],
                subscription_row,
            )
            .optional()
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.query_row(
                &format!("{SELECT_SUBSCRIPTION} WHERE id = ?1"),
                [&id],
                subscription_row,
            )
            .optional()
        })
        .await
    }

    async fn put_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let s = s.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM subscriptions WHERE owner = ?1 OR id = ?2", params![s.owner, s.id])?;
            tx.execute(
                "INSERT INTO subscriptions (owner, id, client_state_hash, expires_at, mailbox) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.owner, s.id, s.client_state_hash, s.expires_at, s.mailbox],
            )?;
            tx.commit()
        })
        .await
    }

    async fn delete_subscription(&self, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            conn.execute("DELETE FROM subscriptions WHERE owner = ?1", [&owner])
                .map(|_| ())
        })
        .await
    }

    async fn delta_link(&self, owner: &str) -> Result<Option<String>, StoreError> {
        let owner = owner.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT link FROM delta_links WHERE owner = ?1",
                [&owner],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn set_delta_link(&self, owner: &str, link: Option<&str>) -> Result<(), StoreError> {
        let (owner, link) = (owner.to_owned(), link.map(str::to_owned));
        self.with(move |conn| {
            match link {
                Some(link) => conn.execute(
                    "INSERT INTO delta_links (owner, link) VALUES (?1, ?2)
                     ON CONFLICT (owner) DO UPDATE SET link = excluded.link",
                    params![owner, link],
                ),
                None => conn.execute("DELETE FROM delta_links WHERE owner = ?1", [&owner]),
            }
            .map(|_| ())
        })
        .await
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
        tracing::info!(version = i + 1, "decision store migrated");
    }
    Ok(())
}

fn recorded(row: &rusqlite::Row<'_>) -> rusqlite::Result<Recorded> {
    let decision: String = row.get(0)?;
    Ok(Recorded {
        decision: Decision::parse(&decision).unwrap_or(Decision::Rejected),
        performer: row.get(1)?,
        at: row.get(2)?,
        action_request_id: row.get(3)?,
        card_correlation_id: row.get(4)?,
    })
}

const SELECT_EXPENSE: &str = "SELECT id, amount_cents, currency, submitter, purpose, recipient, created_at FROM expenses WHERE id = ?1";

fn expense_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Expense> {
    Ok(Expense {
        id: r.get(0)?,
        amount_cents: r.get(1)?,
        currency: r.get(2)?,
        submitter: r.get(3)?,
        purpose: r.get(4)?,
        recipient: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const SELECT_ANSWER: &str = "SELECT status, message, expense_id FROM answers WHERE performer = ?1 AND request_id = ?2 AND kept_at >= ?3";

fn answer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Answer> {
    Ok(Answer {
        status: r.get(0)?,
        message: r.get(1)?,
        expense_id: r.get(2)?,
    })
}

const SELECT_DECISION: &str = "SELECT decision, performer, at, action_request_id, card_correlation_id FROM decisions WHERE expense_id = ?1";

impl DecisionStore for SqliteStore {
    async fn reserve_expense_id(&self, year: i32) -> Result<String, StoreError> {
        self.with(move |conn| {
            let seq: i64 = conn.query_row(
                "INSERT INTO expense_ids (year, last) VALUES (?1, 1)
                 ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
                [year],
                |r| r.get(0),
            )?;
            Ok(expense_id(year, seq.max(1) as u64))
        })
        .await
    }

    async fn insert_expense(&self, e: &Expense) -> Result<(), StoreError> {
        let e = e.clone();
        self.with(move |conn| {
            let (year, seq) = e
                .id
                .strip_prefix("EXP-")
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(y, n)| Some((y.parse::<i64>().ok()?, n.parse::<i64>().ok()?)))
                .unwrap_or((0, 0));
            conn.execute(
                "INSERT INTO expenses (id, year, seq, amount_cents, currency, submitter, purpose, recipient, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![e.id, year, seq, e.amount_cents, e.currency, e.submitter, e.purpose, e.recipient, e.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn expense(&self, id: &str) -> Result<Option<(Expense, Option<Recorded>)>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let expense = conn
                .query_row(SELECT_EXPENSE, [&id], expense_row)
                .optional()?;
            let Some(expense) = expense else {
                return Ok(None);
            };
            let decision = conn
                .query_row(SELECT_DECISION, [&id], recorded)
                .optional()?;
            Ok(Some((expense, decision)))
        })
        .await
    }

    async fn decide(&self, expense_id: &str, d: &Recorded) -> Result<Decided, StoreError> {
        // A decision never changes once made, so a reader can find it
        // without the write lock; only an undecided expense goes to the writer.
        match self.expense(expense_id).await? {
            None => return Ok(Decided::Unknown),
            Some((expense, Some(earlier))) => return Ok(Decided::Earlier(expense, earlier)),
            Some((_, None)) => {}
        }
        let (id, d) = (expense_id.to_owned(), d.clone());
        self.with(move |conn| {
            let Some(expense) = conn.query_row(SELECT_EXPENSE, [&id], expense_row).optional()? else {
                return Ok(Decided::Unknown);
            };
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The primary key makes the first decision win; a later one changes nothing.
            let inserted = tx.execute(
                "INSERT INTO decisions (expense_id, decision, performer, at, action_request_id, card_correlation_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (expense_id) DO NOTHING",
                params![id, d.decision.as_str(), d.performer, d.at, d.action_request_id, d.card_correlation_id],
            )?;
            let outcome = if inserted == 1 {
                Decided::First(expense, d)
            } else {
                Decided::Earlier(expense, tx.query_row(SELECT_DECISION, [&id], recorded)?)
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn answer(
        &self,
        performer: &str,
        request_id: &str,
        now: i64,
    ) -> Result<Option<Answer>, StoreError> {
        let (who, rid) = (performer_key(performer), request_id.to_owned());
        self.read(move |conn| {
            conn.query_row(
                SELECT_ANSWER,
                params![who, rid, now - ANSWER_TTL_SECS],
                answer_row,
            )
            .optional()
        })
        .await
    }

    async fn keep_answer(
        &self,
        performer: &str,
        request_id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Answer, StoreError> {
        let (who, rid, a) = (
            performer_key(performer),
            request_id.to_owned(),
            answer.clone(),
        );
        self.with(move |conn| {
            // An expired answer under the same key gives way to the new one.
            conn.execute(
                "INSERT INTO answers (performer, request_id, expense_id, status, message, kept_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (performer, request_id) DO UPDATE SET
                   expense_id = excluded.expense_id, status = excluded.status,
                   message = excluded.message, kept_at = excluded.kept_at
                 WHERE answers.kept_at < ?7",
                params![
                    who,
                    rid,
                    a.expense_id,
                    a.status,
                    a.message,
                    now,
                    now - ANSWER_TTL_SECS
                ],
            )?;
            conn.query_row(SELECT_ANSWER, params![who, rid, i64::MIN], answer_row)
        })
        .await
    }

    async fn prune_answers(&self, now: i64) -> Result<u64, StoreError> {
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM answers WHERE kept_at < ?1",
                [now - ANSWER_TTL_SECS],
            )
            .map(|n| n as u64)
        })
        .await
    }

    async fn note_send(
        &self,
        person: &str,
        now: i64,
        limit: u32,
    ) -> Result<Result<(), u64>, StoreError> {
        Ok(self.sends.note(person, now, limit))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.damaged.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable(format!("{FILE_NAME} is damaged")));
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}
