//! ID tokens from the identity platform, checked at sign-in.

use serde::Deserialize;
use url::Url;

use super::{Check, JwtError, Verifier, check_issuer};

/// The claims of a v2.0 ID token that the app uses.
#[derive(Debug, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub tid: Option<String>,
    pub nonce: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub oid: Option<String>,
    pub sub: Option<String>,
}

impl IdTokenClaims {
    /// The address shown and used as the mailbox routing hint.
    pub fn email(&self) -> Option<&str> {
        self.preferred_username.as_deref().or(self.email.as_deref())
    }
}

/// What an ID token must match.
pub struct IdTokenRules<'a> {
    pub jwks_url: &'a Url,
    pub client_id: &'a str,
    /// The discovery document's `issuer`, possibly with `{tenantid}`.
    pub issuer: &'a str,
    /// The nonce sent in the authorization request.
    pub nonce: &'a str,
}

/// Verifies an ID token: RS256 with a published key, `aud` = our client id,
/// `iss` per the issuer rule (tenant GUID substituted into the template), not
/// expired, and `nonce` equal to the one we sent, which ties the token to the
/// sign-in this browser started and defeats token injection and replay.
pub async fn verify_id_token(
    verifier: &Verifier,
    token: &str,
    rules: &IdTokenRules<'_>,
) -> Result<IdTokenClaims, JwtError> {
    let audiences = [rules.client_id.to_owned()];
    let claims: IdTokenClaims = verifier
        .verify(
            token,
            &Check {
                jwks_url: rules.jwks_url,
                audiences: &audiences,
            },
        )
        .await?;
    check_issuer(rules.issuer, &claims.iss, claims.tid.as_deref())?;
    match claims.nonce.as_deref() {
        Some(n) if n == rules.nonce => Ok(claims),
        _ => Err(JwtError::WrongNonce),
    }
}
