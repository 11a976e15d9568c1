//! A short memory of action tokens that verified, so that the same token
//! presented again (Outlook's Actions service reuses a token for its
//! lifetime: a second press, the card's auto-invoke refresh) costs a hash
//! and a lookup instead of an RSA verification.
//!
//! Security invariants:
//! - the key is SHA-256 of the whole token, signature included, so only a
//!   byte-identical token hits;
//! - a hit is re-checked against the clock (`exp` with the same leeway as a
//!   full verification) and against the key cache: if the signing key is no
//!   longer published (retired at a refresh) or too old to trust, the entry
//!   is dropped and the token is verified again from scratch;
//! - only the result of the token rules is kept; who may act (performers,
//!   senders, tickets) is still decided on every request;
//! - it is bounded: when full, it is emptied (a cache, not a store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{SHA256, digest};
use url::Url;

use super::action_token::ActionIdentity;
use super::{JwksCache, LEEWAY_SECS};

/// Most tokens remembered at once.
const CAPACITY: usize = 10_000;

/// Where a remembered token's key came from: shared by every token that
/// key signed.
#[derive(PartialEq, Eq)]
struct Source {
    jwks_url: Url,
    kid: String,
}

struct Entry {
    identity: ActionIdentity,
    source: Arc<Source>,
}

/// Entries are boxed and their key's source shared, so that the table
/// holds 40 bytes a slot: inline, a full memory took 4.8 MB, now 1.8 MB.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Box<Entry>>>,
    /// The source of the last token put (nearly always the next one's).
    last_source: Mutex<Option<Arc<Source>>>,
}

fn key_of(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    key
}

impl VerifiedTokens {
    /// The identity of `token` if it verified before and still would.
    pub fn get(&self, token: &str, keys: &JwksCache, now: i64) -> Option<ActionIdentity> {
        let key = key_of(token);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(&key)?;
        let live = now <= entry.identity.expires_at.saturating_add(LEEWAY_SECS as i64)
            && keys.still_trusted(&entry.source.jwks_url, &entry.source.kid);
        if live {
            Some(entry.identity.clone())
        } else {
            entries.remove(&key);
            None
        }
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers a token that just verified with key `kid` of `jwks_url`.
    pub fn put(&self, token: &str, identity: &ActionIdentity, jwks_url: &Url, kid: &str) {
        let source = {
            let mut last = self.last_source.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some(s) if s.jwks_url == *jwks_url && s.kid == kid => s.clone(),
                _ => {
                    let s = Arc::new(Source {
                        jwks_url: jwks_url.clone(),
                        kid: kid.to_owned(),
                    });
                    *last = Some(s.clone());
                    s
                }
            }
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            key_of(token),
            Box::new(Entry {
                identity: identity.clone(),
                source,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ActionIdentity {
        ActionIdentity {
            performer: "john@contoso.com".into(),
            sender: None,
            expires_at: 4_000_000_000,
        }
    }

    #[tokio::test]
    async fn a_remembered_token_is_recalled_while_its_key_is_trusted_and_it_has_not_expired() {
        use wiremock::matchers::path;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let signer = crate::jwt::signer::RsaSigner::generate("k1").unwrap();
        Mock::given(path("/keys"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"keys": [signer.jwk()]})),
            )
            .mount(&server)
            .await;
        let url = Url::parse(&format!("{}/keys", server.uri())).unwrap();
        let keys = JwksCache::for_tests();
        assert!(keys.load(&url).await);
        let memory = VerifiedTokens::default();
        let now = 1_800_000_000;
        let who = ActionIdentity {
            expires_at: now + 600,
            ..identity()
        };
        assert_eq!(memory.get("t", &keys, now), None, "nothing put yet");
        memory.put("t", &who, &url, "k1");
        assert_eq!(memory.get("t", &keys, now), Some(who.clone()));
        assert_eq!(memory.get("another", &keys, now), None);
        // Within the leeway after expiry, still; past it, dropped.
        let leeway = LEEWAY_SECS as i64;
        assert_eq!(
            memory.get("t", &keys, now + 600 + leeway),
            Some(who.clone())
        );
        assert_eq!(memory.get("t", &keys, now + 600 + leeway + 1), None);
        assert!(memory.is_empty(), "an expired token stays remembered");
        // A key the set does not publish: the token is dropped, not recalled.
        memory.put("u", &who, &url, "retired");
        assert!(!memory.is_empty());
        assert_eq!(memory.get("u", &keys, now), None);
        assert!(memory.is_empty());
    }

    #[test]
    fn each_token_keeps_the_key_that_signed_it_and_tokens_of_one_key_share_it() {
        let memory = VerifiedTokens::default();
        let url = Url::parse("https://login.example/keys").unwrap();
        let other = Url::parse("https://other.example/keys").unwrap();
        memory.put("a", &identity(), &url, "k1");
        memory.put("b", &identity(), &url, "k2");
        memory.put("c", &identity(), &other, "k2");
        memory.put("d", &identity(), &other, "k2");
        let entries = memory.entries.lock().unwrap();
        let source = |t: &str| entries[&key_of(t)].source.clone();
        let kept = |t: &str| {
            let s = source(t);
            (s.jwks_url.to_string(), s.kid.clone())
        };
        // A retired key must drop exactly the tokens it signed.
        assert_eq!(kept("a"), (url.to_string(), "k1".to_owned()));
        assert_eq!(kept("b"), (url.to_string(), "k2".to_owned()));
        assert_eq!(kept("c"), (other.to_string(), "k2".to_owned()));
        assert!(Arc::ptr_eq(&source("c"), &source("d")));
        assert_eq!(entries.len(), 4);
    }
}
