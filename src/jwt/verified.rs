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
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use url::Url;

use super::action_token::ActionIdentity;
use super::{JwksCache, LEEWAY_SECS};

/// Most tokens remembered at once.
const CAPACITY: usize = 10_000;

struct Entry {
    identity: ActionIdentity,
    jwks_url: Url,
    kid: String,
}

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
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
            && keys.still_trusted(&entry.jwks_url, &entry.kid);
        if live {
            Some(entry.identity.clone())
        } else {
            entries.remove(&key);
            None
        }
    }

    /// Remembers a token that just verified with key `kid` of `jwks_url`.
    pub fn put(&self, token: &str, identity: &ActionIdentity, jwks_url: &Url, kid: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            key_of(token),
            Entry {
                identity: identity.clone(),
                jwks_url: jwks_url.clone(),
                kid: kid.to_owned(),
            },
        );
    }
}
