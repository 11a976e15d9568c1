//! The typed view of the session: a pending sign-in, or a signed-in person.

use std::future::{Ready, ready};

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

pub use crate::session_cookie::CookieShape;

use crate::clock::now;

/// A pending sign-in expires after ten minutes (an authorization code lives
/// about as long).
pub const PENDING_TTL_SECS: i64 = 600;

/// A signed-in session lasts at most this long, whatever the store (the
/// Redis record has the same TTL; a cookie carries its own issued-at).
pub const SESSION_LIFETIME_SECS: i64 = 12 * 3600;

/// At most one automatic trip through sign-in (silent, or for a claims
/// challenge) per this many seconds; then a page instead of a redirect loop.
pub const REAUTH_INTERVAL_SECS: i64 = 60;

/// The session cookie's name; `__Host-` on https (Secure, `Path=/`, no
/// `Domain`: no subdomain and no plain-http page can set or shadow it).
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-inbox_session"
    } else {
        "inbox_session"
    }
}

/// The secrets of one authorization request, kept until the redirect returns.
#[derive(Serialize, Deserialize)]
pub struct PendingSignIn {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_at: i64,
    /// A `prompt=none` attempt: a `login_required` answer falls back to the interactive sign-in.
    pub silent: bool,
}

impl PendingSignIn {
    pub fn expired(&self, now: i64) -> bool {
        now - self.created_at > PENDING_TTL_SECS || now < self.created_at
    }
}

/// What the pages need about the signed-in person, and nothing more.
#[derive(Serialize, Deserialize, Clone)]
pub struct SignedInUser {
    pub name: String,
    pub email: String,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The SharePoint title (or why not), when `SHAREPOINT_SITE` is set.
    #[serde(default)]
    pub sharepoint: Option<crate::sharepoint::SharePointUser>,
    /// Kept only with the Redis store (never in a cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Who this is, for what the server keeps per person (bodies read, mail
    /// subscriptions): `{tid}/{oid}` from the ID token, never an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl SignedInUser {
    /// The key of what the server keeps for this person: tenant and object
    /// id when the ID token had them, else the address (a mailbox's own).
    pub fn person_key(&self) -> String {
        self.person
            .clone()
            .unwrap_or_else(|| format!("mail:{}", self.email.trim().to_lowercase()))
    }
}

impl SignedInUser {
    /// Expired, or close enough that a call started now might fail.
    pub fn expired(&self, now: i64) -> bool {
        now + 60 >= self.expires_at
    }
}

impl std::fmt::Debug for SignedInUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedInUser")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("sharepoint", &self.sharepoint)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("person", &self.person)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The encrypted session would take more cookies than a browser is
    /// asked to keep ([`crate::session_cookie::MAX_CHUNKS`]).
    #[error("the session needs {0} cookies")]
    TooBig(usize),
    #[error("the session could not be written: {0}")]
    Write(String),
}

const PENDING: &str = "pending";
const USER: &str = "user";
const LOGIN_HINT: &str = "login_hint";
const ISSUED_AT: &str = "issued_at";
const REAUTH_AT: &str = "reauth_at";
const CLAIMS: &str = "claims_challenge";
const ADMIN_CONSENT_STATE: &str = "admin_consent_state";
const BROWSER: &str = "browser";

/// A typed wrapper over the actix session.
pub struct TypedSession(Session);

impl TypedSession {
    /// The pending sign-in, left in place (a callback whose `state` does not
    /// match must not cancel it).
    pub fn pending(&self) -> Option<PendingSignIn> {
        self.0.get::<PendingSignIn>(PENDING).ok().flatten()
    }

    /// Spends the pending sign-in: it is single use once a callback matched it.
    pub fn consume_pending(&self) {
        self.0.remove(PENDING);
    }

    pub fn set_pending(&self, pending: &PendingSignIn) -> Result<(), SessionError> {
        self.0
            .insert(PENDING, pending)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    /// The signed-in person, unless the session is older than
    /// [`SESSION_LIFETIME_SECS`] (or carries no issued-at).
    pub fn user(&self) -> Option<SignedInUser> {
        let issued_at = self.0.get::<i64>(ISSUED_AT).ok().flatten()?;
        let age = now().saturating_sub(issued_at);
        if !(0..=SESSION_LIFETIME_SECS).contains(&age) {
            return None;
        }
        self.0.get::<SignedInUser>(USER).ok().flatten()
    }

    /// Records an automatic trip through sign-in, unless one happened in the
    /// last [`REAUTH_INTERVAL_SECS`]; false means "do not redirect again".
    pub fn may_reauthenticate(&self, now: i64) -> bool {
        let last = self.0.get::<i64>(REAUTH_AT).ok().flatten();
        if last.is_some_and(|t| (0..REAUTH_INTERVAL_SECS).contains(&now.saturating_sub(t))) {
            return false;
        }
        self.0.insert(REAUTH_AT, now).is_ok()
    }

    /// Keeps a claims challenge (decoded JSON) for the next `/signin`.
    pub fn set_claims_challenge(&self, claims: &str) -> Result<(), SessionError> {
        self.0
            .insert(CLAIMS, claims)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    /// Takes the claims challenge for the authorization request being built.
    pub fn take_claims_challenge(&self) -> Option<String> {
        self.0.remove_as::<String>(CLAIMS).and_then(Result::ok)
    }

    /// Remembers the `state` sent with an admin-consent link.
    pub fn set_admin_consent_state(&self, state: &str) -> Result<(), SessionError> {
        self.0
            .insert(ADMIN_CONSENT_STATE, state)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    /// The `state` of the admin-consent link this browser was given, if any.
    pub fn admin_consent_state(&self) -> Option<String> {
        self.0.get::<String>(ADMIN_CONSENT_STATE).ok().flatten()
    }

    /// Spends the admin-consent `state` (once an answer matched it).
    pub fn consume_admin_consent_state(&self) {
        self.0.remove(ADMIN_CONSENT_STATE);
    }

    /// Signs the person in: a new session id (no fixation), the user and the
    /// session's issued-at, provided the result still fits in the cookies a
    /// session may take when `cookie` (the cookie store's key and cookie
    /// shape) is given.
    pub fn sign_in(
        &self,
        user: &SignedInUser,
        cookie: Option<&CookieShape>,
    ) -> Result<(), SessionError> {
        let issued_at = now();
        if let Some(shape) = cookie {
            let mut state = self.0.entries().clone();
            state.remove(LOGIN_HINT);
            state.remove(PENDING);
            let user =
                serde_json::to_string(user).map_err(|e| SessionError::Write(e.to_string()))?;
            state.insert(USER.to_owned(), user);
            state.insert(ISSUED_AT.to_owned(), issued_at.to_string());
            let pieces = shape.pieces_needed(&state).map_err(SessionError::Write)?;
            if pieces > crate::session_cookie::MAX_CHUNKS {
                return Err(SessionError::TooBig(pieces));
            }
        }
        self.0.remove(LOGIN_HINT);
        self.0.remove(PENDING);
        self.0.renew();
        self.0
            .insert(ISSUED_AT, issued_at)
            .map_err(|e| SessionError::Write(e.to_string()))?;
        self.0
            .insert(USER, user)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    /// Forgets an expired sign-in but keeps the address as a `login_hint`.
    pub fn expire_user(&self) {
        if let Some(user) = self.user() {
            self.0.remove(USER);
            let _ = self.0.insert(LOGIN_HINT, &user.email);
        }
    }

    /// Stores a changed user (after a token refresh) in the same session.
    pub fn update_user(&self, user: &SignedInUser) -> Result<(), SessionError> {
        self.0
            .insert(USER, user)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    /// This browser session's own random id (made on first use), to count
    /// what one session holds open; `None` if the session cannot be written.
    pub fn browser_id(&self) -> Option<String> {
        if let Some(id) = self.0.get::<String>(BROWSER).ok().flatten() {
            return Some(id);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.0.insert(BROWSER, &id).ok().map(|()| id)
    }

    /// True when the server-side store (Redis) could not be read for this request.
    pub fn store_unavailable(&self) -> bool {
        self.0.contains_key(crate::session_store::STORE_DOWN)
    }

    pub fn login_hint(&self) -> Option<String> {
        self.0.get::<String>(LOGIN_HINT).ok().flatten()
    }

    /// Ends the session (and deletes its server-side record, if any).
    pub fn purge(&self) {
        self.0.purge();
    }
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession(req.get_session())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_in_user_debugs_with_tokens_redacted() {
        let user = SignedInUser {
            name: "Ann Lee".into(),
            email: "ann@contoso.com".into(),
            access_token: "eyJ0eXAi.secret-access.sig".into(),
            expires_at: 1_800_000_000,
            sharepoint: None,
            refresh_token: Some("0.secret-refresh".into()),
            person: Some("tenant/oid".into()),
        };
        let text = format!("{user:?}");
        for shown in ["Ann Lee", "ann@contoso.com", "1800000000", "tenant/oid"] {
            assert!(text.contains(shown), "{shown} missing from {text}");
        }
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(text.matches("[redacted]").count(), 2, "{text}");
    }
}
