//! Actionable Message tokens: the bearer token Microsoft's Actions service
//! sends with a card action, in the current `entra` and the retired `legacy`
//! scheme.

use serde::Deserialize;
use url::Url;

use super::{Check, JwtError, Verifier, check_issuer, is_guid};

/// The application id of Microsoft's Actionable Messages service.
pub const ACTIONS_APP_ID: &str = "48af08dc-f6d2-435f-b2a7-069abd99c086";

/// Who acted on the card, once the token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionIdentity {
    /// The person who pressed the button.
    pub performer: String,
    /// The sender of the email the card was in (legacy tokens only).
    pub sender: Option<String>,
    /// The token's `exp` (Unix seconds).
    pub expires_at: i64,
}

#[derive(Debug, Deserialize)]
struct EntraClaims {
    exp: i64,
    iss: String,
    tid: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    unique_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LegacyClaims {
    exp: i64,
    iss: String,
    appid: Option<String>,
    sub: Option<String>,
    sender: Option<String>,
}

/// Rules for an Entra access token sent by the Actions service.
pub struct EntraRules<'a> {
    /// The identity platform's `jwks_uri` (the same cache entry as ID tokens).
    pub jwks_url: &'a Url,
    /// Issuer templates: v2 and, when known, v1 (`https://sts.windows.net/{tenantid}/`).
    pub issuers: &'a [String],
    pub audiences: &'a [String],
    /// Allowed tenants; empty means any.
    pub tenants: &'a [String],
}

/// Rules for a retired EAT token.
pub struct LegacyRules<'a> {
    pub jwks_url: &'a Url,
    pub issuer: &'a str,
    pub audiences: &'a [String],
}

/// Verifies an `entra` action token.
///
/// Beyond the shared checks: `iss` must be the v2 or v1 issuer template filled
/// with the token's `tid` (a GUID, and in the allow-list when one is set), and
/// the token must have been obtained by the Actions service itself (`appid` in
/// v1 tokens, `azp` in v2), so that no other app holding a token for our API
/// can pose as a card action.
pub async fn verify_entra(
    verifier: &Verifier,
    token: &str,
    rules: &EntraRules<'_>,
) -> Result<ActionIdentity, JwtError> {
    let claims: EntraClaims = verifier
        .verify(
            token,
            &Check {
                jwks_url: rules.jwks_url,
                audiences: rules.audiences,
            },
        )
        .await?;
    let tid = claims
        .tid
        .as_deref()
        .filter(|t| is_guid(t))
        .ok_or(JwtError::BadTenant)?;
    if !rules
        .issuers
        .iter()
        .any(|template| check_issuer(template, &claims.iss, Some(tid)).is_ok())
    {
        return Err(JwtError::WrongIssuer);
    }
    if !rules.tenants.is_empty() && !rules.tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(JwtError::TenantNotAllowed);
    }
    let app = claims.appid.as_deref().or(claims.azp.as_deref());
    if !app.is_some_and(|a| a.eq_ignore_ascii_case(ACTIONS_APP_ID)) {
        return Err(JwtError::WrongApp);
    }
    let performer = claims
        .upn
        .or(claims.preferred_username)
        .or(claims.unique_name)
        .ok_or_else(|| JwtError::MissingClaim("upn".into()))?;
    Ok(ActionIdentity {
        performer,
        sender: None,
        expires_at: claims.exp,
    })
}

/// Verifies a `legacy` (EAT) action token: fixed issuer, `appid` compared
/// without case as Microsoft's own validators did, performer from `sub`.
pub async fn verify_legacy(
    verifier: &Verifier,
    token: &str,
    rules: &LegacyRules<'_>,
) -> Result<ActionIdentity, JwtError> {
    let claims: LegacyClaims = verifier
        .verify(
            token,
            &Check {
                jwks_url: rules.jwks_url,
                audiences: rules.audiences,
            },
        )
        .await?;
    check_issuer(rules.issuer, &claims.iss, None)?;
    if !claims
        .appid
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case(ACTIONS_APP_ID))
    {
        return Err(JwtError::WrongApp);
    }
    let performer = claims
        .sub
        .ok_or_else(|| JwtError::MissingClaim("sub".into()))?;
    Ok(ActionIdentity {
        performer,
        sender: claims.sender,
        expires_at: claims.exp,
    })
}

/// True when `email` is allowed by `list`: an exact address or an `@domain`
/// entry, both compared without case. An empty list allows everyone when
/// `empty_allows` is set (performers) and no one otherwise (senders).
pub fn allowed(list: &[String], email: &str, empty_allows: bool) -> bool {
    if list.is_empty() {
        return empty_allows;
    }
    let email = email.trim();
    list.iter().any(|entry| {
        if entry.starts_with('@') {
            email.len() > entry.len()
                && email
                    .get(email.len() - entry.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(entry))
        } else {
            entry.eq_ignore_ascii_case(email)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn addresses_match_without_case() {
        assert!(allowed(
            &list(&["John@Contoso.com"]),
            "john@contoso.COM",
            false
        ));
        assert!(!allowed(
            &list(&["john@contoso.com"]),
            "jane@contoso.com",
            false
        ));
    }

    #[test]
    fn a_domain_entry_allows_that_domain_only() {
        let l = list(&["@contoso.com"]);
        assert!(allowed(&l, "Jane@CONTOSO.com", false));
        assert!(!allowed(&l, "jane@notcontoso.com", false));
        assert!(!allowed(&l, "jane@contoso.com.evil.example", false));
        assert!(!allowed(&l, "@contoso.com", false));
    }

    #[test]
    fn empty_lists_follow_their_default() {
        assert!(allowed(&[], "anyone@example.com", true));
        assert!(!allowed(&[], "anyone@example.com", false));
    }
}
