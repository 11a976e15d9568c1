//! The decision store in Redis, for several instances: the pool the
//! sessions use. The first decision wins by `SET NX`; ids come from `INCR`.

use std::sync::Arc;

use super::{
    ANSWER_TTL_SECS, Answer, Decided, DecisionStore, Expense, Recorded, StoreError, Subscription,
    SubscriptionStore, expense_id, performer_key,
};
use crate::session_store::Redis;

/// A kept answer, with whose it is (checked again when read).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAnswer {
    performer: String,
    #[serde(flatten)]
    answer: Answer,
}

/// The key of `performer`'s answer to `request_id`: the performer is
/// length-prefixed, so no choice of request id can reach another person's key.
fn answer_key(performer: &str, request_id: &str) -> String {
    let who = performer_key(performer);
    key("answer", &format!("{}:{who}:{request_id}", who.len()))
}

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

    /// The shared Redis (for live-Inbox events across instances).
    pub fn redis(&self) -> Arc<Redis> {
        self.redis.clone()
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
    async fn reserve_expense_id(&self, year: i32) -> Result<String, StoreError> {
        let mut conn = self.conn().await?;
        let seq: u64 = redis::cmd("INCR")
            .arg(key("expense-seq", &year.to_string()))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(expense_id(year, seq))
    }

    async fn insert_expense(&self, expense: &Expense) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        if !self
            .set_nx(&mut conn, &key("expense", &expense.id), expense, None)
            .await?
        {
            return Err(StoreError::Unavailable(format!(
                "expense id {} is taken",
                expense.id
            )));
        }
        Ok(())
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

    async fn answer(
        &self,
        performer: &str,
        request_id: &str,
        _now: i64,
    ) -> Result<Option<Answer>, StoreError> {
        let mut conn = self.conn().await?;
        let kept: Option<KeptAnswer> = self
            .get_json(&mut conn, &answer_key(performer, request_id))
            .await?;
        Ok(kept
            .filter(|k| k.performer == performer_key(performer))
            .map(|k| k.answer))
    }

    async fn keep_answer(
        &self,
        performer: &str,
        request_id: &str,
        answer: &Answer,
        _now: i64,
    ) -> Result<Answer, StoreError> {
        let mut conn = self.conn().await?;
        let k = answer_key(performer, request_id);
        let kept = KeptAnswer {
            performer: performer_key(performer),
            answer: answer.clone(),
        };
        if self
            .set_nx(&mut conn, &k, &kept, Some(ANSWER_TTL_SECS as u64))
            .await?
        {
            return Ok(answer.clone());
        }
        Ok(self
            .get_json::<KeptAnswer>(&mut conn, &k)
            .await?
            .map_or_else(|| answer.clone(), |k| k.answer))
    }

    async fn prune_answers(&self, _now: i64) -> Result<u64, StoreError> {
        // Each answer carries its own expiry (`EX`).
        Ok(0)
    }

    async fn note_send(
        &self,
        person: &str,
        now: i64,
        limit: u32,
    ) -> Result<Result<(), u64>, StoreError> {
        // A sliding window shared by every instance: the sends of the last
        // minute in a sorted set, trimmed, counted and added to in one script.
        const SCRIPT: &str = r"
            redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - 60)
            if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
                local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
                return tonumber(oldest[2]) + 60 - tonumber(ARGV[1])
            end
            redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
            redis.call('EXPIRE', KEYS[1], 61)
            return 0";
        let mut conn = self.conn().await?;
        let wait: i64 = redis::cmd("EVAL")
            .arg(SCRIPT)
            .arg(1)
            .arg(key("sends", &performer_key(person)))
            .arg(now)
            .arg(limit)
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(if wait > 0 { Err(wait as u64) } else { Ok(()) })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await.map_err(StoreError::Unavailable)
    }
}

impl SubscriptionStore for RedisStore {
    async fn subscription_of(&self, owner: &str) -> Result<Option<Subscription>, StoreError> {
        let mut conn = self.conn().await?;
        self.get_json(&mut conn, &key("subscription", owner)).await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let mut conn = self.conn().await?;
        let owner: Option<String> = redis::cmd("GET")
            .arg(key("subscription-id", id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(owner) = owner else {
            return Ok(None);
        };
        let found: Option<Subscription> = self
            .get_json(&mut conn, &key("subscription", &owner))
            .await?;
        Ok(found.filter(|s| s.id == id))
    }

    async fn put_subscription(&self, s: &Subscription) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let json = serde_json::to_string(s).map_err(unavailable)?;
        // Both keys live as long as the subscription, and a day more.
        let ttl = (s.expires_at - crate::clock::now()).max(0) + 24 * 3600;
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key("subscription", &s.owner))
            .arg(json)
            .arg("EX")
            .arg(ttl)
            .ignore()
            .cmd("SET")
            .arg(key("subscription-id", &s.id))
            .arg(&s.owner)
            .arg("EX")
            .arg(ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete_subscription(&self, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        if let Some(s) = self
            .get_json::<Subscription>(&mut conn, &key("subscription", owner))
            .await?
        {
            redis::cmd("DEL")
                .arg(key("subscription-id", &s.id))
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        redis::cmd("DEL")
            .arg(key("subscription", owner))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delta_link(&self, owner: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(key("delta", owner))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn set_delta_link(&self, owner: &str, link: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let cmd = match link {
            // A deltaLink older than a month is not worth keeping.
            Some(link) => {
                let mut c = redis::cmd("SET");
                c.arg(key("delta", owner))
                    .arg(link)
                    .arg("EX")
                    .arg(31 * 24 * 3600);
                c
            }
            None => {
                let mut c = redis::cmd("DEL");
                c.arg(key("delta", owner));
                c
            }
        };
        cmd.query_async::<()>(&mut conn).await.map_err(unavailable)
    }
}
