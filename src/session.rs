//! The typed view of the session: a pending sign-in, or a signed-in person.

use std::future::{Ready, ready};

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A pending sign-in expires after ten minutes (an authorization code lives
/// about as long).
pub const PENDING_TTL_SECS: i64 = 600;

/// Largest cookie (name and value) browsers are guaranteed to keep.
const MAX_COOKIE_BYTES: usize = 4096;

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
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The encrypted cookie would exceed what a browser keeps.
    #[error("the session ({0} bytes) does not fit in one cookie")]
    TooBig(usize),
    #[error("the session could not be written: {0}")]
    Write(String),
}

const PENDING: &str = "pending";
const USER: &str = "user";
const LOGIN_HINT: &str = "login_hint";

/// A typed wrapper over the actix session.
pub struct TypedSession(Session);

impl TypedSession {
    /// Takes the pending sign-in out of the session: it is single use, whatever happens next.
    pub fn take_pending(&self) -> Option<PendingSignIn> {
        self.0
            .remove_as::<PendingSignIn>(PENDING)
            .and_then(Result::ok)
    }

    pub fn set_pending(&self, pending: &PendingSignIn) -> Result<(), SessionError> {
        self.0
            .insert(PENDING, pending)
            .map_err(|e| SessionError::Write(e.to_string()))
    }

    pub fn user(&self) -> Option<SignedInUser> {
        self.0.get::<SignedInUser>(USER).ok().flatten()
    }

    /// Signs the person in: a new session id (no fixation), and the user,
    /// provided the result still fits in a cookie when `cookie_store` is set.
    pub fn sign_in(
        &self,
        user: &SignedInUser,
        cookie_store: bool,
        cookie_name: &str,
    ) -> Result<(), SessionError> {
        if cookie_store {
            let size = cookie_size_with(&self.0, cookie_name, USER, user)?;
            if size > MAX_COOKIE_BYTES {
                return Err(SessionError::TooBig(size));
            }
        }
        self.0.remove(LOGIN_HINT);
        self.0.renew();
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

/// The size of the encrypted cookie once `key` holds `value`.
///
/// actix-session stores the state as a JSON map of JSON strings; the private
/// cookie is AES-256-GCM (12-byte nonce, 16-byte tag), base64-encoded.
fn cookie_size_with(
    session: &Session,
    cookie_name: &str,
    key: &str,
    value: &impl Serialize,
) -> Result<usize, SessionError> {
    let mut state = session.entries().clone();
    let json = serde_json::to_string(value).map_err(|e| SessionError::Write(e.to_string()))?;
    state.insert(key.to_owned(), json);
    state.remove(LOGIN_HINT);
    let plain = serde_json::to_string(&state)
        .map_err(|e| SessionError::Write(e.to_string()))?
        .len();
    let encrypted = (plain + 12 + 16).div_ceil(3) * 4;
    Ok(cookie_name.len() + 1 + encrypted)
}

/// Unix seconds now.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession(req.get_session())))
    }
}
