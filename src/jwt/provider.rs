//! jsonwebtoken's crypto, with RS256 public keys parsed once.
//!
//! jsonwebtoken's aws-lc provider builds an RSA key from the JWK's `n` and
//! `e` for every token: a Montgomery context and a key check each time, a
//! tenth of an action's CPU. This provider keeps each public key parsed
//! (aws-lc-rs [`ParsedPublicKey`], which also keeps its Montgomery context)
//! and verifies with it; everything else is jsonwebtoken's own aws-lc
//! provider. The keys are still only those of the JWKS we fetched: this is a
//! cache of their parsed form, keyed by the whole key (`n` and `e`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::Verifier;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// Parsed keys kept at once; Microsoft publishes a handful.
const CAPACITY: usize = 64;

type Parsed = HashMap<(Vec<u8>, Vec<u8>), Arc<ParsedPublicKey>>;

fn parsed() -> &'static Mutex<Parsed> {
    static PARSED: OnceLock<Mutex<Parsed>> = OnceLock::new();
    PARSED.get_or_init(Mutex::default)
}

/// An RS256 verifier holding a parsed key.
struct Rs256(Arc<ParsedPublicKey>);

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        self.0
            .verify_sig(msg, signature)
            .map_err(jsonwebtoken::signature::Error::from_source)
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// The parsed form of `n`, `e` (parsed now if new).
fn rs256_key(n: &[u8], e: &[u8]) -> Result<Arc<ParsedPublicKey>, Error> {
    let mut cache = parsed().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(key) = cache.get(&(n.to_vec(), e.to_vec())) {
        return Ok(key.clone());
    }
    let key = RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .map(Arc::new)
        .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert((n.to_vec(), e.to_vec()), key.clone());
    Ok(key)
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match (algorithm, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Ok(Box::new(Rs256(rs256_key(n, e)?)))
        }
        _ => (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    }
}

/// Makes this the process's jsonwebtoken provider (once; later calls, and
/// a provider installed before, leave it as it is).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        verifier_factory: new_verifier,
        ..jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.clone()
    });
    let _ = provider.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_installed_rs256_tokens_are_verified_with_keys_parsed_once() {
        install();
        let signer = crate::jwt::signer::RsaSigner::generate("k1").unwrap();
        let jwk = signer.jwk();
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
            panic!("not an RSA key");
        };
        let cache_key = (n.to_vec(), e.to_vec());
        assert!(!parsed().lock().unwrap().contains_key(&cache_key));
        let token = signer
            .sign(&serde_json::json!({"exp": 4_000_000_000_i64, "sub": "x"}))
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        for _ in 0..2 {
            jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        }
        // Verified through this provider, which kept the parsed key.
        assert!(parsed().lock().unwrap().contains_key(&cache_key));
        // A token signed by another key does not verify.
        let other = crate::jwt::signer::RsaSigner::generate("k1").unwrap();
        let forged = other
            .sign(&serde_json::json!({"exp": 4_000_000_000_i64, "sub": "x"}))
            .unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &key, &validation).is_err());
    }
}
