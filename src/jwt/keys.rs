//! The JWKS cache: signing keys by `kid`, per key-set URL, shared by all workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use url::Url;

use super::JwtError;
use crate::http::read_limited;

/// Largest key-set document we accept.
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// Caches JSON Web Key Sets by URL.
///
/// Rules (see the design's "One JWT verifier"):
/// - keys are fetched once and shared; concurrent misses wait for one fetch;
/// - a set older than `max_age` is refreshed by the next request that sees it;
/// - an unknown `kid` refetches at once, unless that URL was fetched (or tried)
///   less than `min_refetch` ago, so forged `kid`s cannot make us hammer the
///   identity platform;
/// - when a fetch fails or returns garbage, the keys we have keep working and
///   the failure is logged, but only while they are younger than `max_stale`
///   (24 hours): older keys may have been revoked, so then nothing verifies
///   (503) rather than a withdrawn key being trusted.
pub struct JwksCache {
    http: reqwest::Client,
    sets: Mutex<HashMap<String, Arc<KeySet>>>,
    min_refetch: Duration,
    max_age: Duration,
    max_stale: Duration,
}

struct KeySet {
    url: Url,
    state: RwLock<KeySetState>,
    /// Held while fetching, so that concurrent misses cause one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeySetState {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl JwksCache {
    pub fn new(
        http: reqwest::Client,
        min_refetch: Duration,
        max_age: Duration,
        max_stale: Duration,
    ) -> Self {
        Self {
            http,
            sets: Mutex::new(HashMap::new()),
            min_refetch,
            max_age,
            max_stale,
        }
    }

    /// Refreshes the set at `url` if it was ever fetched (the background
    /// refresh, so that requests do not meet a stale set).
    pub async fn refresh_if_cached(&self, url: &Url) {
        let set = self.set(url);
        if set.read(|s| s.fetched_at.is_none()) {
            return;
        }
        let _guard = set.fetching.lock().await;
        let _ = self.fetch(&set).await;
    }

    /// Fetches the set at `url` now (at start-up, and in the background
    /// refresh), waiting for a fetch already under way; true when keys young
    /// enough to trust are cached afterwards.
    pub async fn load(&self, url: &Url) -> bool {
        let set = self.set(url);
        let before = set.read(|s| s.fetched_at);
        let _guard = set.fetching.lock().await;
        // Fetched by someone else while this waited: that fetch will do.
        if set.read(|s| s.fetched_at) == before || before.is_none() {
            let _ = self.fetch(&set).await;
        }
        !set.older_than(self.max_stale)
    }

    /// The key `kid` of the set at `url`, fetching or refreshing as the rules allow.
    pub async fn key(&self, url: &Url, kid: &str) -> Result<Arc<DecodingKey>, JwtError> {
        let set = self.set(url);
        let (cached, fresh) = set.lookup(kid, self.max_age);
        match cached {
            Some(key) if fresh => Ok(key),
            Some(_) if set.older_than(self.max_stale) => {
                // Too old to trust: refresh (waiting for one in progress) or refuse.
                let _guard = set.fetching.lock().await;
                if !set.older_than(self.max_stale) {
                    return set.lookup(kid, self.max_age).0.ok_or(JwtError::UnknownKey);
                }
                if set.may_fetch(self.min_refetch) && self.fetch(&set).await.is_ok() {
                    return set.lookup(kid, self.max_age).0.ok_or(JwtError::UnknownKey);
                }
                Err(JwtError::KeysUnavailable)
            }
            Some(key) => {
                // Stale: one request refreshes, the others keep using what we have.
                if let Ok(_guard) = set.fetching.try_lock()
                    && set.may_fetch(self.min_refetch)
                    && self.fetch(&set).await.is_ok()
                {
                    // A refreshed set that dropped this kid means the key was retired.
                    return set.lookup(kid, self.max_age).0.ok_or(JwtError::UnknownKey);
                }
                Ok(key)
            }
            None => {
                let _guard = set.fetching.lock().await;
                // Someone else may have fetched while we waited.
                if let (Some(key), _) = set.lookup(kid, self.max_age) {
                    return Ok(key);
                }
                if !set.may_fetch(self.min_refetch) {
                    return Err(set.miss_reason(self.max_stale));
                }
                match self.fetch(&set).await {
                    Ok(()) => set.lookup(kid, self.max_age).0.ok_or(JwtError::UnknownKey),
                    Err(()) => Err(set.miss_reason(self.max_stale)),
                }
            }
        }
    }

    /// True when key `kid` of the set at `url` is cached and young enough to
    /// trust (published at the last fetch, fetched less than `max_stale` ago).
    /// Never fetches.
    pub fn still_trusted(&self, url: &Url, kid: &str) -> bool {
        let sets = match self.sets.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sets.get(url.as_str()).is_some_and(|set| {
            set.read(|s| {
                s.keys.contains_key(kid)
                    && s.fetched_at.is_some_and(|t| t.elapsed() < self.max_stale)
            })
        })
    }

    /// How many key sets have been fetched successfully, for `/healthz`-style checks and tests.
    pub fn cached_sets(&self) -> usize {
        self.sets.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn set(&self, url: &Url) -> Arc<KeySet> {
        let mut sets = match self.sets.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sets.entry(url.as_str().to_owned())
            .or_insert_with(|| {
                Arc::new(KeySet {
                    url: url.clone(),
                    state: RwLock::new(KeySetState::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Fetches and installs the key set; on failure keeps the old keys and logs why.
    async fn fetch(&self, set: &KeySet) -> Result<(), ()> {
        set.write(|s| s.attempted_at = Some(Instant::now()));
        match self.download(&set.url).await {
            Ok(keys) => {
                crate::metrics::key_fetch(true);
                tracing::info!(url = %set.url, keys = keys.len(), "fetched signing keys");
                set.write(|s| {
                    s.keys = keys;
                    s.fetched_at = Some(Instant::now());
                });
                Ok(())
            }
            Err(reason) => {
                crate::metrics::key_fetch(false);
                tracing::warn!(url = %set.url, %reason, "could not fetch signing keys; keeping the cached ones");
                Err(())
            }
        }
    }

    async fn download(&self, url: &Url) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let response = crate::metrics::send(crate::metrics::Service::Keys, request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = read_limited(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        parse_jwks(&body)
    }
}

/// Parses a JWKS document into RSA signing keys by `kid`.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let jwks: Jwks =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
            keys.insert(kid, Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err("the document holds no RSA signing key".into());
    }
    Ok(keys)
}

impl KeySet {
    fn read<T>(&self, f: impl FnOnce(&KeySetState) -> T) -> T {
        match self.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut KeySetState)) {
        match self.state.write() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The key if cached, and whether the set is younger than `max_age`.
    fn lookup(&self, kid: &str, max_age: Duration) -> (Option<Arc<DecodingKey>>, bool) {
        self.read(|s| {
            let fresh = s.fetched_at.is_some_and(|t| t.elapsed() < max_age);
            (s.keys.get(kid).cloned(), fresh)
        })
    }

    /// True when the keys were fetched more than `age` ago (or never).
    fn older_than(&self, age: Duration) -> bool {
        self.read(|s| s.fetched_at.is_none_or(|t| t.elapsed() >= age))
    }

    fn may_fetch(&self, min_refetch: Duration) -> bool {
        self.read(|s| s.attempted_at.is_none_or(|t| t.elapsed() >= min_refetch))
    }

    fn miss_reason(&self, max_stale: Duration) -> JwtError {
        self.read(|s| {
            if s.fetched_at.is_some_and(|t| t.elapsed() < max_stale) {
                JwtError::UnknownKey
            } else {
                JwtError::KeysUnavailable
            }
        })
    }
}

#[cfg(test)]
impl JwksCache {
    /// A cache with the default timings (refetch after 60 s, trusted for an
    /// hour, stale for an hour) that has fetched nothing yet.
    pub(crate) fn for_tests() -> Self {
        Self::new(
            reqwest::Client::new(),
            Duration::from_secs(60),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_keeps_rsa_signing_keys_only() {
        let body = br#"{"keys":[
            {"kty":"RSA","use":"sig","kid":"a","n":"sXch","e":"AQAB"},
            {"kty":"RSA","use":"enc","kid":"b","n":"sXch","e":"AQAB"},
            {"kty":"EC","kid":"c","crv":"P-256","x":"x","y":"y"},
            {"kty":"RSA","n":"sXch","e":"AQAB"}
        ]}"#;
        let keys = parse_jwks(body).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn garbage_is_not_a_key_set() {
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
    }
}
