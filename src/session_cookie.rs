//! The cookie session store, split over numbered cookies when one is not
//! enough.
//!
//! Browsers keep a cookie of at most 4,096 bytes (name, value and
//! attributes), and real work and school access tokens (groups, roles,
//! `xms_cc`) are larger than one cookie holds once encrypted. So, as ASP.NET
//! Core's chunking cookie manager does, the encrypted session is cut into
//! pieces: `inbox_session`, `inbox_session.1`, `inbox_session.2`, … each
//! within 4,096 bytes with its attributes, and put back together before it
//! is decrypted. Stale pieces (a longer session earlier) are deleted on
//! every write, and every piece at sign-out.
//!
//! actix-session's own cookie store cannot do this (its session key is
//! capped at 4,064 bytes), so this middleware takes its place for
//! `SESSION_STORE=cookie`. It keeps actix-session's `Session` type, so every
//! handler reads and writes the session the same way with either store; the
//! encryption is the cookie crate's private jar (AES-256-GCM with the cookie
//! name as associated data), as with actix-session.

use std::collections::HashMap;

use actix_session::{SessionExt as _, SessionStatus};
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::middleware::Next;
use actix_web::web;

use crate::session::cookie_name;
use crate::state::AppState;

/// Largest `Set-Cookie` (name, value and attributes) browsers are guaranteed to keep.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// A session may take at most this many cookies (about 16 KB: access tokens
/// up to about 11 KB). Beyond it, the person gets the page that names
/// `SESSION_STORE=redis`; more would also outgrow the request-header limits
/// of common proxies.
pub const MAX_CHUNKS: usize = 4;

/// Pieces read back at most (a few more than are ever written, so that
/// stale ones can still be deleted).
const MAX_READ: usize = 8;

type State = HashMap<String, String>;

/// The session cookie's key and shape.
#[derive(Clone)]
pub struct CookieShape {
    pub key: Key,
    pub https: bool,
}

impl CookieShape {
    fn name(&self) -> &'static str {
        cookie_name(self.https)
    }

    /// The name of piece `i` (0 is the base name).
    fn piece_name(&self, i: usize) -> String {
        match i {
            0 => self.name().to_owned(),
            i => format!("{}.{i}", self.name()),
        }
    }

    /// The attributes every piece carries (the `__Host-` rules on https:
    /// `Secure`, `Path=/`, no `Domain`).
    fn attributes(&self) -> &'static str {
        if self.https {
            "; Path=/; HttpOnly; SameSite=Lax; Secure"
        } else {
            "; Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// `state` encrypted, as the `Set-Cookie` values of its pieces, each
    /// within [`MAX_COOKIE_BYTES`] with its name and attributes.
    pub fn seal(&self, state: &State) -> Result<Vec<String>, String> {
        let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(self.name(), json));
        let sealed = jar
            .get(self.name())
            .map(|c| c.value().to_owned())
            .ok_or("the cookie jar lost the cookie")?;
        // The value is standard base64: every character is a valid cookie
        // octet, so it is sent as is (no percent-encoding to grow it).
        let mut pieces = Vec::new();
        let mut rest = sealed.as_str();
        while !rest.is_empty() || pieces.is_empty() {
            let name = self.piece_name(pieces.len());
            let room = MAX_COOKIE_BYTES - name.len() - 1 - self.attributes().len();
            let (piece, more) = rest.split_at(room.min(rest.len()));
            pieces.push(format!("{name}={piece}{}", self.attributes()));
            rest = more;
        }
        Ok(pieces)
    }

    /// How many cookies `state` takes.
    pub fn pieces_needed(&self, state: &State) -> Result<usize, String> {
        self.seal(state).map(|p| p.len())
    }

    /// The `Set-Cookie` that deletes piece `i`.
    fn removal(&self, i: usize) -> String {
        format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{}",
            self.piece_name(i),
            self.attributes()
        )
    }

    /// The session in `req`'s cookies, and how many pieces it came in
    /// (pieces are read while they follow on: `name`, `name.1`, …). A
    /// session that does not decrypt is no session.
    fn open(&self, req: &ServiceRequest) -> (Option<State>, usize) {
        let Ok(cookies) = req.cookies() else {
            return (None, 0);
        };
        let value = |i: usize| {
            let name = self.piece_name(i);
            cookies
                .iter()
                .find(|c| c.name() == name)
                .map(|c| c.value().to_owned())
        };
        let mut sealed = String::new();
        let mut found = 0;
        while found < MAX_READ
            && let Some(piece) = value(found)
        {
            sealed.push_str(&piece);
            found += 1;
        }
        if found == 0 {
            return (None, 0);
        }
        let jar = CookieJar::new();
        let state = jar
            .private(&self.key)
            .decrypt(Cookie::new(self.name(), sealed))
            .and_then(|c| serde_json::from_str::<State>(c.value()).ok());
        if state.is_none() {
            tracing::info!(
                pieces = found,
                "a session cookie did not decrypt (another key, or pieces from two sessions); starting a new session"
            );
        }
        (state, found)
    }
}

/// The middleware: opens the session before the handler, and after it
/// writes the session back (all pieces, stale ones deleted) if it changed,
/// or deletes every piece if it was purged.
pub async fn sessions(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let shape = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.cookie.clone());
    let Some(shape) = shape else {
        return next.call(req).await;
    };
    let (state, present) = shape.open(&req);
    let session = req.get_session();
    for (k, v) in state.into_iter().flatten() {
        // The values are JSON already: stored as they are.
        if let Ok(raw) = serde_json::value::RawValue::from_string(v) {
            let _ = session.insert(k, raw);
        }
    }
    let before = session.entries().clone();
    let mut res = next.call(req).await?;
    let session = res.request().get_session();
    let write: Option<State> = match session.status() {
        SessionStatus::Purged => Some(State::new()),
        SessionStatus::Unchanged => None,
        SessionStatus::Renewed => Some(session.entries().clone()),
        SessionStatus::Changed if *session.entries() != before => Some(session.entries().clone()),
        SessionStatus::Changed => None,
    };
    let Some(state) = write else {
        return Ok(res);
    };
    let pieces = if state.is_empty() {
        Vec::new()
    } else {
        match shape.seal(&state) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the session could not be written");
                return Ok(res);
            }
        }
    };
    let headers = res.headers_mut();
    for piece in &pieces {
        if let Ok(v) = HeaderValue::from_str(piece) {
            headers.append(SET_COOKIE, v);
        }
    }
    for i in pieces.len()..present {
        if let Ok(v) = HeaderValue::from_str(&shape.removal(i)) {
            headers.append(SET_COOKIE, v);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(https: bool) -> CookieShape {
        CookieShape {
            key: Key::from(&[7u8; 64]),
            https,
        }
    }

    fn state_with(token_len: usize) -> State {
        HashMap::from([
            ("user".to_owned(), format!("\"{}\"", "t".repeat(token_len))),
            ("issued_at".to_owned(), "1796300000".to_owned()),
        ])
    }

    #[test]
    fn a_small_session_is_one_cookie_and_a_large_one_several_each_within_4096_bytes() {
        for https in [false, true] {
            let s = shape(https);
            let one = s.seal(&state_with(100)).unwrap();
            assert_eq!(one.len(), 1);
            assert!(one[0].starts_with(&format!("{}=", s.name())));
            for len in [3_000, 5_000, 7_500, 8_192, 11_000] {
                let pieces = s.seal(&state_with(len)).unwrap();
                assert!(pieces.len() > 1, "{len}");
                assert!(pieces.len() <= MAX_CHUNKS, "{len} took {}", pieces.len());
                for (i, p) in pieces.iter().enumerate() {
                    assert!(
                        p.len() <= MAX_COOKIE_BYTES,
                        "{len}: piece {i} is {}",
                        p.len()
                    );
                    assert!(p.starts_with(&format!("{}=", s.piece_name(i))));
                    assert!(p.ends_with(s.attributes()));
                }
                // Every piece but the last is full.
                for p in &pieces[..pieces.len() - 1] {
                    assert_eq!(p.len(), MAX_COOKIE_BYTES);
                }
            }
            assert!(s.pieces_needed(&state_with(16_000)).unwrap() > MAX_CHUNKS);
        }
    }

    #[test]
    fn pieces_are_named_in_order_and_host_prefixed_on_https() {
        let s = shape(true);
        assert_eq!(s.piece_name(0), "__Host-inbox_session");
        assert_eq!(s.piece_name(2), "__Host-inbox_session.2");
        assert!(
            s.removal(3)
                .starts_with("__Host-inbox_session.3=; Max-Age=0")
        );
        assert!(s.removal(3).ends_with("; Secure"));
        assert_eq!(shape(false).piece_name(1), "inbox_session.1");
    }
}
