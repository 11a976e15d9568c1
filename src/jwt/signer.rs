//! An RS256 signer with a generated key, for the demo stand-in and the tests.
//!
//! Production code never signs tokens; the demo identity platform and the
//! tests do, with a key generated at start-up (so no key is ever committed).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};

/// A freshly generated RSA-2048 key and the `kid` it is published under.
pub struct RsaSigner {
    kid: String,
    key: KeyPair,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
#[error("RSA {0} failed")]
pub struct SignerError(pub &'static str);

impl RsaSigner {
    /// Generates a new RSA-2048 key (takes tens of milliseconds).
    pub fn generate(kid: impl Into<String>) -> Result<Self, SignerError> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| SignerError("key generation"))?;
        Ok(Self {
            kid: kid.into(),
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The key from its PKCS#8 form (as [`pkcs8`](Self::pkcs8) gives it).
    pub fn from_pkcs8(kid: impl Into<String>, pkcs8: &[u8]) -> Result<Self, SignerError> {
        let key = KeyPair::from_pkcs8(pkcs8).map_err(|_| SignerError("key parsing"))?;
        Ok(Self {
            kid: kid.into(),
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The private key in PKCS#8 (DER), to keep it across restarts.
    pub fn pkcs8(&self) -> Result<Vec<u8>, SignerError> {
        use aws_lc_rs::encoding::AsDer as _;
        self.key
            .as_der()
            .map(|der| der.as_ref().to_vec())
            .map_err(|_| SignerError("key export"))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, shaped like an entry of Microsoft's key sets.
    pub fn jwk(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The public key's modulus and exponent, big-endian.
    pub fn public_components(&self) -> (Vec<u8>, Vec<u8>) {
        let public = self.key.public_key();
        (
            public.modulus().big_endian_without_leading_zero().to_vec(),
            public.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    /// Signs `claims` as an RS256 JWT with `typ: JWT` and this key's `kid`.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, SignerError> {
        self.sign_with_header(
            &json!({"typ": "JWT", "alg": "RS256", "kid": self.kid}),
            claims,
        )
    }

    /// Signs with RS256 under an arbitrary header (tests use this to lie in it).
    pub fn sign_with_header(
        &self,
        header: &Value,
        claims: &impl Serialize,
    ) -> Result<String, SignerError> {
        let header = serde_json::to_vec(header).map_err(|_| SignerError("header encoding"))?;
        let claims = serde_json::to_vec(claims).map_err(|_| SignerError("claims encoding"))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SignerError("signing"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}
