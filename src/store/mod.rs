//! The decision store: expenses, the one decision each can get, and the
//! answer given to each `Action-Request-Id`.
//!
//! Two backends behind one small trait: SQLite (an embedded file, the
//! default) and Redis (for several instances). In both, the first decision
//! wins atomically (a primary key / `SET NX`, never read-then-write), so a
//! decision is recorded exactly once under any concurrency.

pub mod redis;
pub mod sqlite;

use serde::{Deserialize, Serialize};

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(Decision::Approved),
            "rejected" => Some(Decision::Rejected),
            _ => None,
        }
    }
}

/// An expense report waiting for (or having) a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expense {
    /// `EXP-YYYY-NNNNNN`.
    pub id: String,
    /// In cents.
    pub amount_cents: i64,
    pub currency: String,
    pub submitter: String,
    pub purpose: String,
    /// Who the card was sent to (lower case), if it was sent.
    pub recipient: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A recorded decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub decision: Decision,
    pub performer: String,
    /// Unix seconds.
    pub at: i64,
    pub action_request_id: Option<String>,
    pub card_correlation_id: Option<String>,
}

/// What `decide` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// This call recorded the decision.
    First(Expense, Recorded),
    /// A decision was already recorded (by this or another performer).
    Earlier(Expense, Recorded),
    /// No such expense.
    Unknown,
}

/// The answer given to an action, kept by `Action-Request-Id` so that a
/// retry gets exactly the first answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub message: String,
    pub expense_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or used right now: answer 503.
    #[error("the decision store is unavailable: {0}")]
    Unavailable(String),
}

/// What both backends offer.
pub trait DecisionStore: Send + Sync {
    /// Creates an expense with the next id of the year, `EXP-YYYY-NNNNNN`.
    fn create_expense(
        &self,
        expense: NewExpense,
    ) -> impl Future<Output = Result<Expense, StoreError>> + Send;

    /// The expense and its decision, if any.
    fn expense(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Expense, Option<Recorded>)>, StoreError>> + Send;

    /// Records `decision` unless one is recorded already (atomically), and
    /// returns the expense with the decision that stands.
    fn decide(
        &self,
        expense_id: &str,
        decision: &Recorded,
    ) -> impl Future<Output = Result<Decided, StoreError>> + Send;

    /// The answer first given to `request_id`, if any.
    fn answer(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<Answer>, StoreError>> + Send;

    /// Keeps `answer` for `request_id` unless one is kept already; returns the kept one.
    fn keep_answer(
        &self,
        request_id: &str,
        answer: &Answer,
    ) -> impl Future<Output = Result<Answer, StoreError>> + Send;

    /// Whether the store answers (for `/healthz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An expense before it has an id.
#[derive(Clone, Debug)]
pub struct NewExpense {
    pub amount_cents: i64,
    pub currency: String,
    pub submitter: String,
    pub purpose: String,
    pub recipient: Option<String>,
    pub created_at: i64,
}

/// The store `DECISION_STORE` chose, with a memory of decided expenses in
/// front: a decision never changes once recorded, so repeated presses and
/// card refreshes of a decided expense need no store call.
pub struct Store {
    backend: Backend,
    decided: std::sync::Mutex<std::collections::HashMap<String, (Expense, Recorded)>>,
}

/// Decided expenses remembered at once; when full, the memory starts over.
const DECIDED_CAPACITY: usize = 10_000;

pub enum Backend {
    Sqlite(sqlite::SqliteStore),
    Redis(redis::RedisStore),
}

impl Store {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            decided: Default::default(),
        }
    }

    /// At shutdown, after the last request: SQLite folds its write-ahead log
    /// into the database file (a self-contained file for backups); Redis
    /// closes the pool's connections.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => match s.checkpoint().await {
                Ok(()) => tracing::info!("decision store closed (write-ahead log checkpointed)"),
                Err(e) => tracing::warn!(error = %e, "closing the decision store failed"),
            },
            Backend::Redis(s) => {
                s.close();
                tracing::info!("decision store closed (Redis connections closed)");
            }
        }
    }

    fn remembered(&self, id: &str) -> Option<(Expense, Recorded)> {
        let decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        decided.get(id).cloned()
    }

    fn remember(&self, expense: &Expense, decision: &Recorded) {
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        if decided.len() >= DECIDED_CAPACITY {
            decided.clear();
        }
        decided.insert(expense.id.clone(), (expense.clone(), decision.clone()));
    }
}

impl DecisionStore for Store {
    async fn create_expense(&self, expense: NewExpense) -> Result<Expense, StoreError> {
        self.backend.create_expense(expense).await
    }

    async fn expense(&self, id: &str) -> Result<Option<(Expense, Option<Recorded>)>, StoreError> {
        if let Some((e, d)) = self.remembered(id) {
            return Ok(Some((e, Some(d))));
        }
        let found = self.backend.expense(id).await?;
        if let Some((e, Some(d))) = &found {
            self.remember(e, d);
        }
        Ok(found)
    }

    async fn decide(&self, expense_id: &str, decision: &Recorded) -> Result<Decided, StoreError> {
        if let Some((e, d)) = self.remembered(expense_id) {
            return Ok(Decided::Earlier(e, d));
        }
        let decided = self.backend.decide(expense_id, decision).await?;
        if let Decided::First(e, d) | Decided::Earlier(e, d) = &decided {
            self.remember(e, d);
        }
        Ok(decided)
    }

    async fn answer(&self, request_id: &str) -> Result<Option<Answer>, StoreError> {
        self.backend.answer(request_id).await
    }

    async fn keep_answer(&self, request_id: &str, answer: &Answer) -> Result<Answer, StoreError> {
        self.backend.keep_answer(request_id, answer).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }
}

impl DecisionStore for Backend {
    async fn create_expense(&self, expense: NewExpense) -> Result<Expense, StoreError> {
        match self {
            Backend::Sqlite(s) => s.create_expense(expense).await,
            Backend::Redis(s) => s.create_expense(expense).await,
        }
    }

    async fn expense(&self, id: &str) -> Result<Option<(Expense, Option<Recorded>)>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.expense(id).await,
            Backend::Redis(s) => s.expense(id).await,
        }
    }

    async fn decide(&self, expense_id: &str, decision: &Recorded) -> Result<Decided, StoreError> {
        match self {
            Backend::Sqlite(s) => s.decide(expense_id, decision).await,
            Backend::Redis(s) => s.decide(expense_id, decision).await,
        }
    }

    async fn answer(&self, request_id: &str) -> Result<Option<Answer>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.answer(request_id).await,
            Backend::Redis(s) => s.answer(request_id).await,
        }
    }

    async fn keep_answer(&self, request_id: &str, answer: &Answer) -> Result<Answer, StoreError> {
        match self {
            Backend::Sqlite(s) => s.keep_answer(request_id, answer).await,
            Backend::Redis(s) => s.keep_answer(request_id, answer).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Redis(s) => s.ping().await,
        }
    }
}

/// `EXP-YYYY-NNNNNN` for sequence number `n` of `year`.
pub fn expense_id(year: i32, n: u64) -> String {
    format!("EXP-{year}-{n:06}")
}

/// True for an expense id shape (checked before any store call).
pub fn valid_expense_id(id: &str) -> bool {
    id.len() <= 64
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The year of a Unix time, for expense ids.
pub fn year_of(unix: i64) -> i32 {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.year())
        .unwrap_or(1970)
}
