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

/// The answer given to an action, kept by performer and `Action-Request-Id`
/// so that a retry gets exactly the first answer. A request id is chosen by
/// the caller, so it is never enough on its own: another person reusing it
/// finds nothing, and a kept answer is used only for the same expense.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub message: String,
    pub expense_id: String,
}

/// Kept answers live this long (Outlook refuses actions on messages older
/// than a month, so no retry comes later), in every backend.
pub const ANSWER_TTL_SECS: i64 = 31 * 24 * 3600;

/// Who may look up a kept answer: the performer, compared without case.
pub fn performer_key(performer: &str) -> String {
    performer.trim().to_lowercase()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or used right now: answer 503.
    #[error("the decision store is unavailable: {0}")]
    Unavailable(String),
}

/// What both backends offer.
pub trait DecisionStore: Send + Sync {
    /// Takes the next id of `year`, `EXP-YYYY-NNNNNN`, without writing an
    /// expense: a card is sent under it first, and only a card Graph accepted
    /// becomes an expense ([`DecisionStore::insert_expense`]). Ids taken for
    /// sends that failed are skipped, never reused.
    fn reserve_expense_id(
        &self,
        year: i32,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Writes an expense under an id from [`DecisionStore::reserve_expense_id`].
    fn insert_expense(
        &self,
        expense: &Expense,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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

    /// The answer first given to `performer` for `request_id`, if one was
    /// kept less than [`ANSWER_TTL_SECS`] before `now`.
    fn answer(
        &self,
        performer: &str,
        request_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<Answer>, StoreError>> + Send;

    /// Keeps `answer` for `performer` and `request_id` unless one is kept
    /// already (atomically); returns the kept one.
    fn keep_answer(
        &self,
        performer: &str,
        request_id: &str,
        answer: &Answer,
        now: i64,
    ) -> impl Future<Output = Result<Answer, StoreError>> + Send;

    /// Forgets answers kept more than [`ANSWER_TTL_SECS`] before `now`;
    /// returns how many (Redis expires them by itself: 0).
    fn prune_answers(&self, now: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counts a card send by `person` at `now` unless they already sent
    /// `limit` in the last minute; `Err(seconds)` until one is allowed again.
    fn note_send(
        &self,
        person: &str,
        now: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Result<(), u64>, StoreError>> + Send;

    /// Whether the store answers (for `/healthz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A person's Graph subscription to their Inbox, and their Inbox deltaLink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Whose it is: `{tid}/{oid}` (see `SignedInUser::person_key`).
    pub owner: String,
    /// Graph's subscription id.
    pub id: String,
    /// SHA-256 of the `clientState` sent at creation, hex (the secret itself
    /// is never kept).
    pub client_state_hash: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The mailbox, for `X-AnchorMailbox` when it is renewed or deleted.
    pub mailbox: String,
}

/// Subscriptions and deltaLinks, in the same store as expenses.
pub trait SubscriptionStore: Send + Sync {
    /// `owner`'s subscription, if any.
    fn subscription_of(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

    /// The subscription with Graph id `id`, if it is ours.
    fn subscription(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

    /// Keeps `s` as its owner's one subscription (replacing any other).
    fn put_subscription(
        &self,
        s: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets `owner`'s subscription.
    fn delete_subscription(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `owner`'s Inbox deltaLink, if any.
    fn delta_link(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Keeps (or, with `None`, forgets) `owner`'s Inbox deltaLink.
    fn set_delta_link(
        &self,
        owner: &str,
        link: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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
    /// Boxed, so that the table holds a pointer a slot (the pair is about
    /// 400 bytes: kept inline, 10,000 of them made a 4 MB table).
    decided: std::sync::Mutex<DecidedMemory>,
}

/// Expense id to the expense and its recorded decision.
type DecidedMemory = std::collections::HashMap<Box<str>, Box<(Expense, Recorded)>>;

/// Decided expenses remembered at once; when full, the memory starts over.
/// Repeated presses and card refreshes mostly come within minutes of the
/// decision; an older one costs one indexed read.
pub const DECIDED_CAPACITY: usize = 2_000;

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

    /// Checks the embedded store's whole file in the background (a no-op
    /// for Redis).
    pub fn check_in_background(&self) {
        if let Backend::Sqlite(s) = &self.backend {
            s.check_in_background();
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
        decided.get(id).map(|pair| (**pair).clone())
    }

    fn remember(&self, expense: &Expense, decision: &Recorded) {
        let mut decided = self.decided.lock().unwrap_or_else(|p| p.into_inner());
        if decided.len() >= DECIDED_CAPACITY {
            decided.clear();
        }
        decided.insert(
            expense.id.as_str().into(),
            Box::new((expense.clone(), decision.clone())),
        );
    }
}

impl Store {
    /// Reserves an id and writes `expense` under it at once (tests, seeding).
    pub async fn create_expense(&self, expense: NewExpense) -> Result<Expense, StoreError> {
        let id = self.reserve_expense_id(year_of(expense.created_at)).await?;
        let expense = Expense {
            id,
            amount_cents: expense.amount_cents,
            currency: expense.currency,
            submitter: expense.submitter,
            purpose: expense.purpose,
            recipient: expense.recipient,
            created_at: expense.created_at,
        };
        self.insert_expense(&expense).await?;
        Ok(expense)
    }
}

impl DecisionStore for Store {
    async fn reserve_expense_id(&self, year: i32) -> Result<String, StoreError> {
        self.backend.reserve_expense_id(year).await
    }

    async fn insert_expense(&self, expense: &Expense) -> Result<(), StoreError> {
        self.backend.insert_expense(expense).await
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

    async fn answer(
        &self,
        performer: &str,
        request_id: &str,
        now: i64,
    ) -> Result<Option<Answer>, StoreError> {
        self.backend.answer(performer, request_id, now).await
    }

    async fn keep_answer(
        &self,
        performer: &str,
        request_id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Answer, StoreError> {
        self.backend
            .keep_answer(performer, request_id, answer, now)
            .await
    }

    async fn prune_answers(&self, now: i64) -> Result<u64, StoreError> {
        self.backend.prune_answers(now).await
    }

    async fn note_send(
        &self,
        person: &str,
        now: i64,
        limit: u32,
    ) -> Result<Result<(), u64>, StoreError> {
        self.backend.note_send(person, now, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }
}

impl DecisionStore for Backend {
    async fn reserve_expense_id(&self, year: i32) -> Result<String, StoreError> {
        match self {
            Backend::Sqlite(s) => s.reserve_expense_id(year).await,
            Backend::Redis(s) => s.reserve_expense_id(year).await,
        }
    }

    async fn insert_expense(&self, expense: &Expense) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.insert_expense(expense).await,
            Backend::Redis(s) => s.insert_expense(expense).await,
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

    async fn answer(
        &self,
        performer: &str,
        request_id: &str,
        now: i64,
    ) -> Result<Option<Answer>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.answer(performer, request_id, now).await,
            Backend::Redis(s) => s.answer(performer, request_id, now).await,
        }
    }

    async fn keep_answer(
        &self,
        performer: &str,
        request_id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Answer, StoreError> {
        match self {
            Backend::Sqlite(s) => s.keep_answer(performer, request_id, answer, now).await,
            Backend::Redis(s) => s.keep_answer(performer, request_id, answer, now).await,
        }
    }

    async fn prune_answers(&self, now: i64) -> Result<u64, StoreError> {
        match self {
            Backend::Sqlite(s) => s.prune_answers(now).await,
            Backend::Redis(s) => s.prune_answers(now).await,
        }
    }

    async fn note_send(
        &self,
        person: &str,
        now: i64,
        limit: u32,
    ) -> Result<Result<(), u64>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.note_send(person, now, limit).await,
            Backend::Redis(s) => s.note_send(person, now, limit).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Redis(s) => s.ping().await,
        }
    }
}

/// Card sends of the last minute, per person, in memory (the embedded store
/// serves one instance). Bounded: people with no recent send are forgotten
/// first, and beyond [`RecentSends::PEOPLE`] the memory starts over.
#[derive(Default)]
pub struct RecentSends(std::sync::Mutex<std::collections::HashMap<String, Vec<i64>>>);

impl RecentSends {
    const PEOPLE: usize = 10_000;
    const WINDOW: i64 = 60;

    /// Counts a send by `person` at `now` unless `limit` were sent in the last
    /// minute; `Err(seconds)` until the oldest of those leaves the window.
    pub fn note(&self, person: &str, now: i64, limit: u32) -> Result<(), u64> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= Self::PEOPLE {
            all.retain(|_, times| times.iter().any(|t| now - t < Self::WINDOW));
            if all.len() >= Self::PEOPLE {
                all.clear();
            }
        }
        let times = all.entry(performer_key(person)).or_default();
        times.retain(|t| now - t < Self::WINDOW && *t <= now);
        if times.len() >= limit as usize {
            let oldest = times.iter().min().copied().unwrap_or(now);
            return Err((oldest + Self::WINDOW - now).max(1) as u64);
        }
        times.push(now);
        Ok(())
    }
}

impl SubscriptionStore for Store {
    async fn subscription_of(&self, owner: &str) -> Result<Option<Subscription>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.subscription_of(owner).await,
            Backend::Redis(s) => s.subscription_of(owner).await,
        }
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.subscription(id).await,
            Backend::Redis(s) => s.subscription(id).await,
        }
    }

    async fn put_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.put_subscription(sub).await,
            Backend::Redis(s) => s.put_subscription(sub).await,
        }
    }

    async fn delete_subscription(&self, owner: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete_subscription(owner).await,
            Backend::Redis(s) => s.delete_subscription(owner).await,
        }
    }

    async fn delta_link(&self, owner: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delta_link(owner).await,
            Backend::Redis(s) => s.delta_link(owner).await,
        }
    }

    async fn set_delta_link(&self, owner: &str, link: Option<&str>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.set_delta_link(owner, link).await,
            Backend::Redis(s) => s.set_delta_link(owner, link).await,
        }
    }
}

impl Store {
    /// The shared Redis, when this store is Redis (for live-Inbox events).
    pub fn redis(&self) -> Option<std::sync::Arc<crate::session_store::Redis>> {
        match &self.backend {
            Backend::Redis(s) => Some(s.redis()),
            Backend::Sqlite(_) => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_memory_of_sends_forgets_only_those_outside_the_minute() {
        let sends = RecentSends::default();
        let now = 1_796_000_000;
        for _ in 0..10 {
            sends.note("busy@contoso.com", now, 10).unwrap();
        }
        assert_eq!(sends.note("busy@contoso.com", now, 10), Err(60));
        // Fill the memory with people whose sends leave the window.
        for i in 1..RecentSends::PEOPLE {
            sends
                .note(&format!("p{i}@contoso.com"), now - 120, 10)
                .unwrap();
        }
        // The next newcomer makes room by forgetting those, not the busy one.
        sends.note("new@contoso.com", now + 1, 10).unwrap();
        assert_eq!(sends.note("busy@contoso.com", now + 1, 10), Err(59));
        // Once the busy minute has passed, they may send again.
        assert_eq!(sends.note("busy@contoso.com", now + 60, 10), Ok(()));
    }
}
