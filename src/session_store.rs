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
use std::path::Path;

use deadpool_redis::{Pool, PoolError, Runtime};
use redis::{ConnectionAddr, RedisError, TlsCertificates};

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
    target: String,
    /// For connections outside the pool (pub/sub).
    client: redis::Client,
}

impl Redis {
    /// Validates `REDIS_URL` (a one-line error if it is not usable) and, for
    /// `rediss://`, the roots its certificate must chain to: the Mozilla roots
    /// (as for every other outbound call), plus `REDIS_CA_FILE` when set.
    /// Nothing connects here; see [`Redis::ping`].
    pub async fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, ConfigError> {
        // Never quote the URL: it may hold the password.
        let bad = |e: String| ConfigError {
            variable: "REDIS_URL",
            message: format!("is not a usable Redis URL ({e})"),
        };
        let client = match ca_file {
            None => redis::Client::open(url),
            Some(path) => {
                let roots = roots_with(path).await?;
                redis::Client::build_with_tls(
                    url,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(roots),
                    },
                )
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        let info = client.get_connection_info().clone();
        let target = match &info.addr {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            ConnectionAddr::Unix(path) => path.display().to_string(),
        };
        let manager = deadpool_redis::Manager::new(info.clone()).map_err(|e| bad(e.to_string()))?;
        let pool = Pool::builder(manager)
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
        Ok(Self {
            store,
            pool,
            target,
            client,
        })
    }

    /// Where Redis is, for log lines (host and port, never the password).
    pub fn target(&self) -> &str {
        &self.target
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

    /// A connection of its own for pub/sub (subscribed connections cannot
    /// serve other commands), within [`REDIS_TIMEOUT`].
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        tokio::time::timeout(REDIS_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "no answer within 2 s".to_owned())?
            .map_err(|e| explain_redis(&e))
    }

    /// The connection pool (shared with the decision store).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// `PING`s Redis: the health of the session store. A failure says
    /// plainly what is wrong (an untrusted certificate, a refused password,
    /// an unreachable host each get their own sentence), for the start-up
    /// line and for every log line about Redis being down.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.pool.get().await.map_err(|e| explain(&e))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| explain_redis(&e))
    }
}

/// The trust roots for a `rediss://` server when `REDIS_CA_FILE` is set: the
/// file's certificates and the Mozilla roots, as PEM (what the redis crate
/// takes; given any roots, it uses only those).
async fn roots_with(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bad = |message: String| ConfigError {
        variable: "REDIS_CA_FILE",
        message,
    };
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| bad(format!("{} is not PEM certificates: {e}", path.display())))?;
        found += 1;
    }
    if found == 0 {
        return Err(bad(format!("{} holds no PEM certificate", path.display())));
    }
    let mut roots = pem;
    roots.push(b'\n');
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        roots.extend_from_slice(pem_certificate(cert).as_bytes());
    }
    Ok(roots)
}

/// One DER certificate as a PEM block.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A pool error in words an operator can act on.
fn explain(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => explain_redis(e),
        PoolError::Timeout(_) => {
            "no answer within 2 s (is the host and port right, and does it speak TLS if the URL is rediss://?)".into()
        }
        other => other.to_string(),
    }
}

/// A Redis error in words an operator can act on.
fn explain_redis(e: &RedisError) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid peer certificate") || lower.contains("unknownissuer") {
        format!(
            "the server's TLS certificate is not trusted ({text}); for a private CA, set REDIS_CA_FILE to its PEM file"
        )
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!("the server's TLS certificate does not name this host ({text})")
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed
        || lower.contains("wrongpass")
        || lower.contains("noauth")
        || lower.contains("invalid password")
    {
        format!("Redis refused the password in REDIS_URL ({text})")
    } else if lower.contains("reset by peer") || lower.contains("broken pipe") {
        format!(
            "the server closed the connection ({text}); if it accepts only TLS (Azure: port 6380 or 10000), use rediss://"
        )
    } else if e.is_connection_refusal() {
        format!("nothing accepts connections there ({text})")
    } else {
        text
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
                crate::metrics::session_store_error("load");
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
                crate::metrics::session_store_error("save");
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
            Err(e) => {
                crate::metrics::session_store_error("update");
                tracing::warn!(error = %e, "updating the session in Redis failed")
            }
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
                    crate::metrics::session_store_error("update_ttl");
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
                    crate::metrics::session_store_error("delete");
                    tracing::error!(error = %e, "deleting a session from Redis failed; it lives until its TTL");
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_password_is_named_whatever_the_server_said() {
        // Each of these alone means the password was refused.
        for e in [
            RedisError::from((
                redis::ErrorKind::AuthenticationFailed,
                "Password authentication failed",
            )),
            RedisError::from((redis::ErrorKind::ResponseError, "WRONGPASS", "x".into())),
            RedisError::from((redis::ErrorKind::ResponseError, "NOAUTH", "x".into())),
            RedisError::from((redis::ErrorKind::ResponseError, "invalid password")),
        ] {
            assert!(
                explain_redis(&e).starts_with("Redis refused the password in REDIS_URL"),
                "{}",
                explain_redis(&e)
            );
        }
        for text in ["Connection reset by peer", "Broken pipe"] {
            let e = RedisError::from(std::io::Error::other(text));
            assert!(
                explain_redis(&e).starts_with("the server closed the connection"),
                "{}",
                explain_redis(&e)
            );
        }
        let other = RedisError::from((redis::ErrorKind::ResponseError, "busy"));
        assert!(!explain_redis(&other).contains("password"));
    }
}
