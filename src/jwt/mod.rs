//! One JWT verifier for every token the app checks.
//!
//! [`Verifier`] checks what all our tokens share (RS256 signature with a key
//! from a cached JWKS, audience, lifetime with a bounded leeway); each token
//! kind ([`id_token`], [`action_token`]) then states its own issuer and claims
//! rules. Unverified header fields are used only to pick the key.

pub mod action_token;
pub mod id_token;
pub mod keys;
pub mod provider;
pub mod signer;
pub mod verified;
mod verifier;

pub use keys::JwksCache;
pub use verifier::{Check, Verifier, unverified_kid};

/// Clock skew tolerated on `exp`/`nbf`: five minutes, the upper bound the
/// design allows and what Microsoft's own validators use. More would let a
/// stolen, expired token live longer.
pub const LEEWAY_SECS: u64 = 300;

/// Longest token we look at. Real Microsoft tokens are a few KB; anything far
/// larger is rejected before any base64 or JSON work is spent on it.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. Every variant means "not authenticated"; the
/// distinction is for logs and tests, never shown with token contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("algorithm `{0}` is not accepted (RS256 only)")]
    Algorithm(String),
    #[error("the token header has no `kid`")]
    MissingKid,
    #[error("no signing key with this `kid` is published")]
    UnknownKey,
    #[error("the signing keys could not be fetched")]
    KeysUnavailable,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the audience is not this app")]
    WrongAudience,
    #[error("the issuer is not the expected one")]
    WrongIssuer,
    #[error("the tenant id is missing or not a GUID")]
    BadTenant,
    #[error("the tenant is not allowed")]
    TenantNotAllowed,
    #[error("the nonce does not match the sign-in request")]
    WrongNonce,
    #[error("the token was not issued to the expected application")]
    WrongApp,
    #[error("the claim `{0}` is missing")]
    MissingClaim(String),
}

/// True for a GUID in its usual 36-character hyphenated form.
///
/// Tenant ids are substituted into issuer templates; accepting only this shape
/// means a crafted `tid` such as `x/v2.0` or `../` cannot produce an issuer
/// string that matches something it should not.
pub fn is_guid(value: &str) -> bool {
    value.len() == 36 && uuid::Uuid::try_parse(value).is_ok()
}

/// Checks `iss` against an issuer that may hold the `{tenantid}` placeholder.
///
/// With the placeholder (multi-tenant authorities like `common`), the token's
/// `tid` must be a GUID and `iss` must equal the template with it filled in.
/// Without it (a single-tenant authority or another provider), `iss` must
/// equal the issuer exactly.
pub fn check_issuer(template: &str, iss: &str, tid: Option<&str>) -> Result<(), JwtError> {
    if template.contains("{tenantid}") {
        let tid = tid.filter(|t| is_guid(t)).ok_or(JwtError::BadTenant)?;
        if iss == template.replace("{tenantid}", tid) {
            return Ok(());
        }
        return Err(JwtError::WrongIssuer);
    }
    if iss == template {
        Ok(())
    } else {
        Err(JwtError::WrongIssuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

    #[test]
    fn guid_means_the_hyphenated_form_only() {
        assert!(is_guid(TID));
        assert!(!is_guid("9188040d6c674c5bb11236a304b66dad"));
        assert!(!is_guid("contoso.onmicrosoft.com"));
        assert!(!is_guid(""));
    }

    #[test]
    fn templated_issuer_takes_the_tokens_tenant() {
        let iss = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert_eq!(check_issuer(TEMPLATE, &iss, Some(TID)), Ok(()));
    }

    #[test]
    fn templated_issuer_refuses_a_tenant_that_is_not_a_guid() {
        let iss = "https://login.microsoftonline.com/evil/v2.0";
        assert_eq!(
            check_issuer(TEMPLATE, iss, Some("evil")),
            Err(JwtError::BadTenant)
        );
        assert_eq!(check_issuer(TEMPLATE, iss, None), Err(JwtError::BadTenant));
    }

    #[test]
    fn templated_issuer_refuses_an_iss_from_another_tenant() {
        let other = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let iss = format!("https://login.microsoftonline.com/{other}/v2.0");
        assert_eq!(
            check_issuer(TEMPLATE, &iss, Some(TID)),
            Err(JwtError::WrongIssuer)
        );
    }

    #[test]
    fn a_fixed_issuer_must_match_exactly() {
        assert_eq!(
            check_issuer("https://idp.example/", "https://idp.example/", None),
            Ok(())
        );
        assert_eq!(
            check_issuer("https://idp.example/", "https://idp.example", None),
            Err(JwtError::WrongIssuer)
        );
    }
}
