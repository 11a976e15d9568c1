//! Admitting an action: the token, who may act, the body and its ticket, in
//! that order. Nothing of the body is read before the token verifies.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::answer::with_status;
use super::metrics_refused;
use crate::clock::now;
use crate::jwt::JwtError;
use crate::jwt::action_token::{
    ActionIdentity, EntraRules, LegacyRules, allowed, verify_entra, verify_legacy,
};
use crate::logging::{Untrusted, clean};
use crate::settings::ActionScheme;
use crate::state::AppState;
use crate::store::valid_expense_id;

const NOT_ALLOWED: &str = "Invalid sender or the action performer is not allowed.";
/// A ticket that does not fit, and a card that is someone else's: one text,
/// so that the answer does not say which.
pub(super) const NOT_YOURS: &str = "This card was sent to someone else, or it has expired.";

/// Largest action body read, and only after the token verified.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// An action that passed every check before its meaning: the token, who may
/// act, the body, and the ticket.
pub(super) struct Admitted {
    /// `Action-Request-Id` and `Card-Correlation-Id` for the log (escaped).
    pub request_id: String,
    pub correlation_id: String,
    /// The same, for storing: visible ASCII, at most 128 characters.
    pub stored_request_id: Option<String>,
    pub stored_correlation_id: Option<String>,
    pub identity: ActionIdentity,
    pub body: ActionBody,
    /// The body's ticket verified for this expense and this performer.
    pub ticket_valid: bool,
}

/// What an action's body says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ActionBody {
    pub expense_id: Option<String>,
    pub reject: bool,
    pub ticket: Option<String>,
}

/// Why a request was refused before its body was looked at.
#[derive(Debug)]
enum Refusal {
    NoToken,
    Invalid(JwtError),
    /// We could not check the token (discovery or keys unreachable, nothing cached).
    Unverifiable(String),
}

/// The checks both action endpoints make, in order; the refusal otherwise.
pub(super) async fn admit(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Admitted, HttpResponse> {
    let request_id = log_header(req, "Action-Request-Id");
    let correlation_id = log_header(req, "Card-Correlation-Id");
    let identity = authenticate(state, req, &request_id, &correlation_id).await?;
    let body = body_of(state, payload, &request_id, &correlation_id).await?;
    let ticket_valid = check_ticket(state, &body, &identity, &request_id, &correlation_id)
        .map_err(|refused| *refused)?;
    Ok(Admitted {
        stored_request_id: stored_header(req, "Action-Request-Id"),
        stored_correlation_id: stored_header(req, "Card-Correlation-Id"),
        request_id,
        correlation_id,
        identity,
        body,
        ticket_valid,
    })
}

/// The token from `Authorization: Bearer …` or, when the card blanked that
/// header, from `Action-Authorization`. Anything else (Basic, an empty bearer,
/// non-ASCII bytes) counts as no token.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let from = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let value = from(AUTHORIZATION.as_str()).or_else(|| from("Action-Authorization"))?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A request header for the log: escaped and shortened (see [`crate::logging`]).
fn log_header(req: &HttpRequest, name: &str) -> String {
    req.headers()
        .get(name)
        .map(|v| clean(&String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default()
}

/// A request header's value for storing (not logging): visible ASCII, at
/// most 128 characters, else `None`.
fn stored_header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

/// Reads the body up to [`MAX_BODY_BYTES`]; `None` when it is larger.
async fn read_body(
    mut payload: web::Payload,
) -> Result<Option<web::BytesMut>, actix_web::error::PayloadError> {
    use futures_util::StreamExt as _;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Verifies `token` by the configured scheme. A request that arrives while
/// start-up loading (discovery, keys) is still under way waits for it, at
/// most [`crate::ready::WAIT`], rather than being refused for it.
async fn identify(state: &AppState, token: &str) -> Result<ActionIdentity, Refusal> {
    if !state.ready.is_loaded() {
        state.ready.wait(crate::ready::WAIT).await;
    }
    let s = &state.settings;
    let unverifiable = |e: JwtError| match e {
        JwtError::KeysUnavailable => Refusal::Unverifiable(e.to_string()),
        other => Refusal::Invalid(other),
    };
    let actions = &state.actions;
    match s.action_scheme {
        ActionScheme::Entra => {
            let discovered = state
                .provider
                .discovered()
                .await
                .map_err(|e| Refusal::Unverifiable(e.to_string()))?;
            let jwks_url = &discovered.metadata.jwks_uri;
            if let Some(known) = actions.verified.get(token, state.verifier.keys(), now()) {
                return Ok(known);
            }
            // The v1 issuer comes from discovery done at start-up and refreshed
            // in the background: nothing is fetched here.
            let v1 = state.provider.v1_issuer();
            let mut issuers = vec![discovered.metadata.issuer.clone()];
            issuers.extend(v1.clone());
            let rules = EntraRules {
                jwks_url,
                issuers: &issuers,
                audiences: &s.action_audiences,
                tenants: &s.action_tenants,
            };
            match verify_entra(&state.verifier, token, &rules).await {
                Ok(identity) => {
                    remember(state, token, &identity, jwks_url);
                    Ok(identity)
                }
                // A v1 token cannot be judged before the v1 issuer is known.
                Err(JwtError::WrongIssuer) if v1.is_none() => Err(Refusal::Unverifiable(
                    "the v1 issuer is not known yet (v1 discovery has not succeeded)".into(),
                )),
                Err(e) => Err(unverifiable(e)),
            }
        }
        ActionScheme::Legacy => {
            let jwks_url = &s.action_keys_url;
            if let Some(known) = actions.verified.get(token, state.verifier.keys(), now()) {
                return Ok(known);
            }
            let rules = LegacyRules {
                jwks_url,
                issuer: &s.action_issuer,
                audiences: &s.action_audiences,
            };
            let identity = verify_legacy(&state.verifier, token, &rules)
                .await
                .map_err(unverifiable)?;
            remember(state, token, &identity, jwks_url);
            Ok(identity)
        }
    }
}

/// Remembers a token that verified, with the key that signed it.
fn remember(state: &AppState, token: &str, identity: &ActionIdentity, jwks_url: &url::Url) {
    if let Some(kid) = crate::jwt::unverified_kid(token) {
        state.actions.verified.put(token, identity, jwks_url, &kid);
    }
}

/// The token, and who may act: the verified identity, or the refusal to send.
async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    correlation_id: &str,
) -> Result<ActionIdentity, HttpResponse> {
    let identity = match bearer_token(req) {
        None => Err(Refusal::NoToken),
        Some(token) => identify(state, token).await,
    };
    let refusals = &state.actions.refusals;
    let identity = match identity {
        Ok(i) => i,
        Err(Refusal::Unverifiable(reason)) => {
            metrics_refused("unverifiable");
            if refusals.allow() {
                tracing::error!(action_request_id = %request_id, card_correlation_id = %correlation_id, %reason, "action refused: the token cannot be checked right now");
            }
            return Err(with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot verify actions right now. Please try again later.",
            ));
        }
        Err(refusal) => {
            let reason = match refusal {
                Refusal::Invalid(e) => {
                    metrics_refused("invalid_token");
                    e.to_string()
                }
                _ => {
                    metrics_refused("no_token");
                    "no bearer token".to_owned()
                }
            };
            if refusals.allow() {
                tracing::warn!(action_request_id = %request_id, card_correlation_id = %correlation_id, %reason, "action refused: 401");
            }
            return Err(HttpResponse::Unauthorized()
                .insert_header((WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""))
                .insert_header((CACHE_CONTROL, "no-store"))
                .finish());
        }
    };
    let s = &state.settings;
    let sender_ok = match s.action_scheme {
        ActionScheme::Legacy => identity
            .sender
            .as_deref()
            .is_some_and(|sender| allowed(&s.action_senders, sender, false)),
        ActionScheme::Entra => true,
    };
    if !sender_ok || !allowed(&s.action_performers, &identity.performer, true) {
        metrics_refused("not_allowed");
        if refusals.allow() {
            let sender = identity.sender.as_deref().map(clean);
            tracing::warn!(action_request_id = %request_id, card_correlation_id = %correlation_id, performer = %Untrusted(&identity.performer), ?sender, "action refused: 403");
        }
        return Err(with_status(StatusCode::FORBIDDEN, NOT_ALLOWED));
    }
    Ok(identity)
}

/// The body, read only now and at most [`MAX_BODY_BYTES`], parsed.
async fn body_of(
    state: &AppState,
    payload: web::Payload,
    request_id: &str,
    correlation_id: &str,
) -> Result<ActionBody, HttpResponse> {
    let refuse = |status: StatusCode, message: &str, why: &str| {
        metrics_refused(if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        });
        if state.actions.refusals.allow() {
            tracing::warn!(action_request_id = %request_id, card_correlation_id = %correlation_id, status = status.as_u16(), why, "action refused");
        }
        with_status(status, message)
    };
    let bytes = match read_body(payload).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
                "body over 16 KB",
            ));
        }
        Err(_) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
                "unreadable body",
            ));
        }
    };
    parse_action(&bytes).map_err(|message| refuse(StatusCode::BAD_REQUEST, message, message))
}

/// A ticket, when the body carries one (or `ACTION_REQUIRE_TICKET` wants
/// one), must be for this expense and this performer, and unexpired.
/// `Ok(true)` when one verified, `Ok(false)` when none was needed.
fn check_ticket(
    state: &AppState,
    body: &ActionBody,
    identity: &ActionIdentity,
    request_id: &str,
    correlation_id: &str,
) -> Result<bool, Box<HttpResponse>> {
    let refuse = |why: &str| {
        metrics_refused("ticket");
        if state.actions.refusals.allow() {
            tracing::warn!(action_request_id = %request_id, card_correlation_id = %correlation_id, why, "action refused: 403 (ticket)");
        }
        Box::new(with_status(StatusCode::FORBIDDEN, NOT_YOURS))
    };
    match (&body.ticket, &body.expense_id) {
        (None, _) if state.settings.action_require_ticket => Err(refuse("no ticket")),
        (None, _) => Ok(false),
        (Some(_), None) => Err(refuse("a ticket without an expense")),
        (Some(ticket), Some(expense)) => state
            .actions
            .tickets
            .check(ticket, expense, &identity.performer, now())
            .map(|()| true)
            .map_err(|e| refuse(&e.to_string())),
    }
}

/// No body or no `action` approves; a body that is not a JSON object, an
/// unknown action, or an expense id of a shape no expense has, is a 400.
fn parse_action(body: &[u8]) -> Result<ActionBody, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| "The request body is not JSON.")?;
    let Value::Object(map) = value else {
        return Err("The request body is not a JSON object.");
    };
    let reject = match map.get("action") {
        None | Some(Value::Null) => false,
        Some(Value::String(a)) if a.eq_ignore_ascii_case("approve") => false,
        Some(Value::String(a)) if a.eq_ignore_ascii_case("reject") => true,
        Some(_) => return Err("The action must be \"approve\" or \"reject\"."),
    };
    let expense_id = match map.get("expenseId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_expense_id(id) => Some(id.clone()),
        Some(_) => return Err("The expense id is not valid."),
    };
    let ticket = match map.get("ticket") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.len() <= 256 => Some(t.clone()),
        Some(_) => return Err("The ticket is not valid."),
    };
    Ok(ActionBody {
        expense_id,
        reject,
        ticket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn actions_default_to_approve() {
        assert_eq!(parse_action(b""), Ok(ActionBody::default()));
        assert_eq!(parse_action(b" \n"), Ok(ActionBody::default()));
        assert_eq!(parse_action(b"{}"), Ok(ActionBody::default()));
        let b = parse_action(
            br#"{"expenseId":"EXP-2026-000001","action":"reject","ticket":"v1.1.AA"}"#,
        )
        .unwrap();
        assert!(b.reject);
        assert_eq!(b.expense_id.as_deref(), Some("EXP-2026-000001"));
        assert_eq!(b.ticket.as_deref(), Some("v1.1.AA"));
        assert!(!parse_action(br#"{"action":"APPROVE"}"#).unwrap().reject);
        assert!(parse_action(br#"{"action":"Reject"}"#).unwrap().reject);
        assert!(parse_action(b"not json").is_err());
        assert!(parse_action(b"[1]").is_err());
        assert!(parse_action(br#"{"action":"delete"}"#).is_err());
        assert!(parse_action(br#"{"action":1}"#).is_err());
        assert!(parse_action(br#"{"expenseId":"../x"}"#).is_err());
        assert!(parse_action(br#"{"expenseId":7}"#).is_err());
        let long = format!(r#"{{"ticket":"{}"}}"#, "a".repeat(257));
        assert!(parse_action(long.as_bytes()).is_err());
        let fits = format!(r#"{{"ticket":"{}"}}"#, "a".repeat(256));
        assert!(parse_action(fits.as_bytes()).is_ok());
    }

    #[test]
    fn the_token_comes_from_a_bearer_header_only() {
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer abc"))
            .to_http_request();
        assert_eq!(bearer_token(&req), Some("abc"));
        let req = TestRequest::default()
            .insert_header(("Authorization", "bearer  abc "))
            .to_http_request();
        assert_eq!(bearer_token(&req), Some("abc"));
        let req = TestRequest::default()
            .insert_header(("Authorization", "Basic abc"))
            .to_http_request();
        assert_eq!(bearer_token(&req), None);
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer "))
            .to_http_request();
        assert_eq!(bearer_token(&req), None);
        let req = TestRequest::default()
            .insert_header(("Authorization", ""))
            .insert_header(("Action-Authorization", "Bearer xyz"))
            .to_http_request();
        assert_eq!(bearer_token(&req), Some("xyz"));
    }

    #[test]
    fn stored_headers_are_short_visible_ascii() {
        let long = "a".repeat(129);
        let req = TestRequest::default()
            .insert_header(("Action-Request-Id", " 5d1e "))
            .insert_header(("Card-Correlation-Id", long.as_str()))
            .to_http_request();
        assert_eq!(
            stored_header(&req, "Action-Request-Id").as_deref(),
            Some("5d1e")
        );
        assert_eq!(stored_header(&req, "Card-Correlation-Id"), None);
        let fits = "a".repeat(128);
        let req = TestRequest::default()
            .insert_header(("Card-Correlation-Id", fits.as_str()))
            .to_http_request();
        assert_eq!(
            stored_header(&req, "Card-Correlation-Id").as_deref(),
            Some(fits.as_str())
        );
    }
}
