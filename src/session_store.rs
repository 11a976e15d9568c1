//! Session stores: the encrypted cookie, or Redis shared by many instances.
//!
//! The Redis store is actix-session's, wrapped so that Redis being down is a
//! state the pages can see (and answer 503 for) rather than a 500 from the
//! session middleware, and so that the app starts, and recovers, without Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_session::storage::{
    CookieSessionStore, LoadError, RedisSessionStore, SaveError, SessionKey, SessionStore,
    UpdateError, generate_session_key,
};
use actix_web::cookie::time::Duration as CookieDuration;
use deadpool_redis::{Pool, Runtime};

use crate::settings::ConfigError;

/// Present in a loaded session when the store could not be read.
pub const STORE_DOWN: &str = "__store_unavailable";

/// How long a request waits for Redis (to connect, for a pooled connection,
/// or to check one) before it counts as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

type State = HashMap<String, String>;

/// Redis through a small connection pool. Nothing connects at start-up, so the
/// app starts without Redis; pooled connections are checked before reuse, so
/// service resumes by itself when Redis returns.
pub struct Redis {
    store: RedisSessionStore,
    pool: Pool,
}

impl Redis {
    /// Validates `REDIS_URL` (a one-line error if it is not usable); connects on first use.
    pub async fn new(url: &str) -> Result<Self, ConfigError> {
        let bad = |e: String| ConfigError {
            variable: "REDIS_URL",
            message: format!("is not a usable Redis URL ({e})"),
        };
        redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|e| bad(e.to_string()))?
            .max_size(32)
            .wait_timeout(Some(REDIS_TIMEOUT))
            .create_timeout(Some(REDIS_TIMEOUT))
            .recycle_timeout(Some(REDIS_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let store = RedisSessionStore::new_pooled(pool.clone())
            .await
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self { store, pool })
    }

    /// Writes `state` over an existing record only (`SET … XX`), never
    /// creating one: actix-session's own `update` falls back to a new record,
    /// which brings back a session that `/signout` deleted moments before.
    /// Returns whether the record existed.
    async fn update_existing(
        &self,
        key: &str,
        state: &State,
        ttl: &CookieDuration,
    ) -> Result<bool, String> {
        let body = serde_json::to_string(state).map_err(|e| e.to_string())?;
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let written: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(body)
            .arg("XX")
            .arg("EX")
            .arg(ttl.whole_seconds().max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(written.is_some())
    }

    /// The connection pool (shared with the decision store).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// `PING`s Redis: the health of the session store.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The store the session middleware uses, whichever `SESSION_STORE` says.
#[derive(Clone)]
pub enum Store {
    Cookie(Arc<CookieSessionStore>),
    Redis(Arc<Redis>),
}

fn marker() -> State {
    HashMap::from([(STORE_DOWN.to_owned(), "true".to_owned())])
}

impl SessionStore for Store {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let redis = match self {
            Store::Cookie(c) => return c.load(key).await,
            Store::Redis(r) => r,
        };
        match redis.store.load(key).await {
            Ok(state) => Ok(state),
            // A record we cannot read is no session at all.
            Err(LoadError::Deserialization(_)) => Ok(None),
            Err(LoadError::Other(e)) => {
                tracing::warn!(error = %e, "reading the session from Redis failed");
                Ok(Some(marker()))
            }
        }
    }

    async fn save(&self, state: State, ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let redis = match self {
            Store::Cookie(c) => return c.save(state, ttl).await,
            Store::Redis(r) => r,
        };
        if state.contains_key(STORE_DOWN) {
            return Ok(generate_session_key());
        }
        match redis.store.save(state, ttl).await {
            Ok(key) => Ok(key),
            Err(e) => {
                tracing::warn!(error = %e, "storing a new session in Redis failed");
                Ok(generate_session_key())
            }
        }
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let redis = match self {
            Store::Cookie(c) => return c.update(key, state, ttl).await,
            Store::Redis(r) => r,
        };
        if state.contains_key(STORE_DOWN) {
            return Ok(key);
        }
        match redis.update_existing(key.as_ref(), &state, ttl).await {
            Ok(true) => {}
            // Gone: signed out (or expired) while this request ran. A deleted
            // record stays deleted; the cookie now points at nothing.
            Ok(false) => {
                tracing::info!("the session ended while a request used it; not recreating it")
            }
            Err(e) => tracing::warn!(error = %e, "updating the session in Redis failed"),
        }
        Ok(key)
    }

    async fn update_ttl(
        &self,
        key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        match self {
            Store::Cookie(c) => c.update_ttl(key, ttl).await,
            Store::Redis(r) => {
                if let Err(e) = r.store.update_ttl(key, ttl).await {
                    tracing::warn!(error = %e, "extending the session in Redis failed");
                }
                Ok(())
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        match self {
            Store::Cookie(c) => c.delete(key).await,
            Store::Redis(r) => {
                if let Err(e) = r.store.delete(key).await {
                    tracing::error!(error = %e, "deleting a session from Redis failed; it lives until its TTL");
                }
                Ok(())
            }
        }
    }
}
