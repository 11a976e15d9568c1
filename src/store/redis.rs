//! The decision store in Redis, for several instances: the pool the
//! sessions use. The first decision wins by `SET NX`; ids come from `INCR`.

use std::sync::Arc;

use super::{
    Answer, Decided, DecisionStore, Expense, NewExpense, Recorded, StoreError, expense_id, year_of,
};
use crate::session_store::Redis;

/// Answers to action requests are kept this long (Outlook refuses actions on
/// messages older than a month, so no retry comes later).
const ANSWER_TTL_SECS: u64 = 31 * 24 * 3600;

pub struct RedisStore {
    redis: Arc<Redis>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn key(kind: &str, id: &str) -> String {
    format!("outlook-inbox:{kind}:{id}")
}

impl RedisStore {
    pub fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }

    /// Closes the pool (shared with sessions; called after the server stopped).
    pub fn close(&self) {
        self.redis.pool().close();
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.redis.pool().get().await.map_err(unavailable)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        conn: &mut deadpool_redis::Connection,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        raw.map(|r| serde_json::from_str(&r).map_err(unavailable))
            .transpose()
    }

    /// `SET key value NX [EX ttl]`; true when this call set it.
    async fn set_nx(
        &self,
        conn: &mut deadpool_redis::Connection,
        key: &str,
        value: &impl serde::Serialize,
        ttl: Option<u64>,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(value).map_err(unavailable)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(json).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("EX").arg(ttl);
        }
        let set: Option<String> = cmd.query_async(conn).await.map_err(unavailable)?;
        Ok(set.is_some())
    }
}

impl DecisionStore for RedisStore {
    async fn create_expense(&self, e: NewExpense) -> Result<Expense, StoreError> {
        let mut conn = self.conn().await?;
        let year = year_of(e.created_at);
        let seq: u64 = redis::cmd("INCR")
            .arg(key("expense-seq", &year.to_string()))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let expense = Expense {
            id: expense_id(year, seq),
            amount_cents: e.amount_cents,
            currency: e.currency,
            submitter: e.submitter,
            purpose: e.purpose,
            recipient: e.recipient,
            created_at: e.created_at,
        };
        if !self
            .set_nx(&mut conn, &key("expense", &expense.id), &expense, None)
            .await?
        {
            return Err(StoreError::Unavailable(format!(
                "expense id {} is taken",
                expense.id
            )));
        }
        Ok(expense)
    }

    async fn expense(&self, id: &str) -> Result<Option<(Expense, Option<Recorded>)>, StoreError> {
        let mut conn = self.conn().await?;
        let Some(expense) = self
            .get_json::<Expense>(&mut conn, &key("expense", id))
            .await?
        else {
            return Ok(None);
        };
        let decision = self.get_json(&mut conn, &key("decision", id)).await?;
        Ok(Some((expense, decision)))
    }

    async fn decide(&self, expense_id: &str, d: &Recorded) -> Result<Decided, StoreError> {
        let mut conn = self.conn().await?;
        let Some(expense) = self
            .get_json::<Expense>(&mut conn, &key("expense", expense_id))
            .await?
        else {
            return Ok(Decided::Unknown);
        };
        let decision_key = key("decision", expense_id);
        if self.set_nx(&mut conn, &decision_key, d, None).await? {
            return Ok(Decided::First(expense, d.clone()));
        }
        match self.get_json(&mut conn, &decision_key).await? {
            Some(earlier) => Ok(Decided::Earlier(expense, earlier)),
            None => Err(StoreError::Unavailable(
                "the recorded decision vanished".into(),
            )),
        }
    }

    async fn answer(&self, request_id: &str) -> Result<Option<Answer>, StoreError> {
        let mut conn = self.conn().await?;
        self.get_json(&mut conn, &key("answer", request_id)).await
    }

    async fn keep_answer(&self, request_id: &str, answer: &Answer) -> Result<Answer, StoreError> {
        let mut conn = self.conn().await?;
        let k = key("answer", request_id);
        if self
            .set_nx(&mut conn, &k, answer, Some(ANSWER_TTL_SECS))
            .await?
        {
            return Ok(answer.clone());
        }
        Ok(self
            .get_json(&mut conn, &k)
            .await?
            .unwrap_or_else(|| answer.clone()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await.map_err(StoreError::Unavailable)
    }
}
