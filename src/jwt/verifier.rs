use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{JwksCache, JwtError, LEEWAY_SECS, MAX_TOKEN_LEN};

/// What every token kind shares: where its keys are and who it must be for.
pub struct Check<'a> {
    /// The key-set URL the token's `kid` is looked up in.
    pub jwks_url: &'a Url,
    /// Accepted `aud` values (any one of them).
    pub audiences: &'a [String],
}

/// Verifies RS256 JWTs against cached key sets. One per process.
pub struct Verifier {
    keys: JwksCache,
    /// The validation rules for each audience list seen (one or two per
    /// process), built once instead of for every token.
    validations: Mutex<HashMap<Vec<String>, Arc<Validation>>>,
}

/// The rules every token is held to, for `audiences`.
fn validation(audiences: &[String]) -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_audience(audiences);
    // Issuers are templated per tenant; each token kind checks `iss` itself.
    validation.iss = None;
    validation.required_spec_claims =
        HashSet::from(["exp".to_owned(), "aud".to_owned(), "iss".to_owned()]);
    validation
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl Verifier {
    pub fn new(keys: JwksCache) -> Self {
        super::provider::install();
        Self {
            keys,
            validations: Mutex::default(),
        }
    }

    fn validation(&self, audiences: &[String]) -> Arc<Validation> {
        let mut known = self.validations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = known.get(audiences) {
            return v.clone();
        }
        let v = Arc::new(validation(audiences));
        if known.len() >= 16 {
            known.clear();
        }
        known.insert(audiences.to_vec(), v.clone());
        v
    }

    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// Verifies signature, audience and lifetime, and returns the claims.
    ///
    /// Security invariants:
    /// - Only RS256 is accepted, decided by us and not by the token: a token
    ///   saying `none`, or `HS256` (which would make the public key an HMAC
    ///   secret), is refused before any key is looked up.
    /// - The header's `kid` only selects a key from the set we fetched.
    /// - `exp` and `aud` (and `iss`, checked by each token kind) are required;
    ///   `nbf` is checked when present. Leeway is [`LEEWAY_SECS`].
    pub async fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        check: &Check<'_>,
    ) -> Result<C, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLarge);
        }
        let header = read_header(token)?;
        if header.alg != "RS256" {
            return Err(JwtError::Algorithm(crate::logging::clean(&header.alg)));
        }
        let kid = header.kid.ok_or(JwtError::MissingKid)?;
        let key = self.keys.key(check.jwks_url, &kid).await?;

        let validation = self.validation(check.audiences);
        jsonwebtoken::decode::<C>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidAudience => JwtError::WrongAudience,
                ErrorKind::InvalidAlgorithm => JwtError::Algorithm("mismatch".into()),
                ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
                _ => JwtError::Malformed,
            })
    }
}

/// The `kid` of a token's header, unverified: only for finding which key a
/// token that already verified was signed with.
pub fn unverified_kid(token: &str) -> Option<String> {
    read_header(token).ok()?.kid
}

/// Reads the (unverified) header, only to choose the algorithm check and key.
fn read_header(token: &str) -> Result<RawHeader, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier whose key cache has fetched nothing.
    fn verifier() -> Verifier {
        Verifier::new(JwksCache::for_tests())
    }

    #[test]
    fn the_unverified_kid_is_the_headers_or_none() {
        // {"alg":"RS256","kid":"k1"}
        assert_eq!(
            unverified_kid("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln").as_deref(),
            Some("k1")
        );
        // {"alg":"RS256"}
        assert_eq!(unverified_kid("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), None);
        assert_eq!(unverified_kid("not a token"), None);
    }

    #[test]
    fn headers_are_read_from_three_part_tokens_only() {
        assert_eq!(read_header("a.b").err(), Some(JwtError::Malformed));
        assert_eq!(read_header("a.b.c.d").err(), Some(JwtError::Malformed));
        assert_eq!(read_header("!!.b.c").err(), Some(JwtError::Malformed));
        // {"alg":"none"}
        let h = read_header("eyJhbGciOiJub25lIn0.e30.").unwrap();
        assert_eq!(h.alg, "none");
        assert!(h.kid.is_none());
    }

    #[test]
    fn validations_are_kept_per_audience_list_and_at_most_sixteen() {
        let verifier = verifier();
        let list = |i: usize| vec![format!("api://app-{i}")];
        let first = verifier.validation(&list(0));
        let second = verifier.validation(&list(1));
        assert!(!Arc::ptr_eq(&first, &second));
        // Both are remembered: asking again makes no new one.
        assert!(Arc::ptr_eq(&first, &verifier.validation(&list(0))));
        assert!(Arc::ptr_eq(&second, &verifier.validation(&list(1))));
        for i in 2..16 {
            verifier.validation(&list(i));
        }
        assert_eq!(verifier.validations.lock().unwrap().len(), 16);
        assert!(Arc::ptr_eq(&first, &verifier.validation(&list(0))));
        // A seventeenth list starts the memory over.
        verifier.validation(&list(16));
        assert_eq!(verifier.validations.lock().unwrap().len(), 1);
        assert!(!Arc::ptr_eq(&first, &verifier.validation(&list(0))));
    }

    #[tokio::test]
    async fn the_size_limit_refuses_only_what_is_over_it() {
        let verifier = verifier();
        let url = Url::parse("http://127.0.0.1:9/keys").unwrap();
        let audiences = ["api://x".to_owned()];
        let check = Check {
            jwks_url: &url,
            audiences: &audiences,
        };
        // At the limit the token is read (and found malformed, calling
        // nothing); one byte over, it is not read at all.
        let at = "a".repeat(MAX_TOKEN_LEN);
        let over = "a".repeat(MAX_TOKEN_LEN + 1);
        let read = verifier.verify::<serde_json::Value>(&at, &check).await;
        assert_eq!(read.err(), Some(JwtError::Malformed));
        let refused = verifier.verify::<serde_json::Value>(&over, &check).await;
        assert_eq!(refused.err(), Some(JwtError::TooLarge));
    }
}
