//! `POST /api/expense`: the Actionable Message action endpoint.
//!
//! Microsoft's Actions service posts here when someone presses a button on an
//! expense card. The bearer token proves who pressed it; nothing is trusted
//! before it verifies, and the answer is always a clear status: 401 for any
//! token problem, 403 for a valid token from someone not allowed, 400 for a
//! body that is not JSON, 200 when the expense was approved or rejected.

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::clock::now;
use crate::jwt::JwtError;
use crate::jwt::action_token::{
    ActionIdentity, EntraRules, LegacyRules, allowed, verify_entra, verify_legacy,
};
use crate::logging::{Untrusted, clean};
use crate::settings::ActionScheme;
use crate::state::AppState;

/// The header Outlook shows the person (and, for MessageCards, saves with the card).
pub const STATUS_HEADER: &str = "CARD-ACTION-STATUS";

const NOT_ALLOWED: &str = "Invalid sender or the action performer is not allowed.";

/// Why a request was refused before its body was looked at.
#[derive(Debug)]
enum Refusal {
    NoToken,
    Invalid(JwtError),
    /// We could not check the token (discovery or keys unreachable, nothing cached).
    Unverifiable(String),
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

/// Largest action body read, and only after the token verified.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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

async fn identify(state: &AppState, token: &str) -> Result<ActionIdentity, Refusal> {
    let s = &state.settings;
    let unverifiable = |e: JwtError| match e {
        JwtError::KeysUnavailable => Refusal::Unverifiable(e.to_string()),
        other => Refusal::Invalid(other),
    };
    match s.action_scheme {
        ActionScheme::Entra => {
            let discovered = state
                .provider
                .discovered()
                .await
                .map_err(|e| Refusal::Unverifiable(e.to_string()))?;
            let jwks_url = &discovered.metadata.jwks_uri;
            if let Some(known) = state.verified.get(token, state.verifier.keys(), now()) {
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
            if let Some(known) = state.verified.get(token, state.verifier.keys(), now()) {
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
        state.verified.put(token, identity, jwks_url, &kid);
    }
}

fn with_status(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((STATUS_HEADER, message))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// The body is taken as a stream, not as `web::Bytes`: nothing of it is read
/// before the token verifies, and then at most [`MAX_BODY_BYTES`].
pub async fn expense(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = log_header(&req, "Action-Request-Id");
    let correlation_id = log_header(&req, "Card-Correlation-Id");

    let identity = match bearer_token(&req) {
        None => Err(Refusal::NoToken),
        Some(token) => identify(&state, token).await,
    };
    let identity = match identity {
        Ok(i) => i,
        Err(Refusal::Unverifiable(reason)) => {
            if state.refusals.allow() {
                tracing::error!(%request_id, %correlation_id, %reason, "action refused: the token cannot be checked right now");
            }
            return with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service cannot verify actions right now. Please try again later.",
            );
        }
        Err(refusal) => {
            let reason = match refusal {
                Refusal::Invalid(e) => e.to_string(),
                _ => "no bearer token".to_owned(),
            };
            if state.refusals.allow() {
                tracing::warn!(%request_id, %correlation_id, %reason, "action refused: 401");
            }
            return HttpResponse::Unauthorized()
                .insert_header((WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""))
                .insert_header((CACHE_CONTROL, "no-store"))
                .finish();
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
        if state.refusals.allow() {
            let sender = identity.sender.as_deref().map(clean);
            tracing::warn!(%request_id, %correlation_id, performer = %Untrusted(&identity.performer), ?sender, "action refused: 403");
        }
        return with_status(StatusCode::FORBIDDEN, NOT_ALLOWED);
    }

    let body = match read_body(payload).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            if state.refusals.allow() {
                tracing::warn!(%request_id, %correlation_id, "action refused: 413 (body over 16 KB)");
            }
            return with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large.",
            );
        }
        Err(e) => {
            if state.refusals.allow() {
                tracing::warn!(%request_id, %correlation_id, error = %e, "action refused: 400 (the body could not be read)");
            }
            return with_status(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
            );
        }
    };
    let reject = match parse_action(&body) {
        Ok(reject) => reject,
        Err(message) => {
            if state.refusals.allow() {
                tracing::info!(%request_id, %correlation_id, "action refused: 400 ({message})");
            }
            return with_status(StatusCode::BAD_REQUEST, message);
        }
    };
    let outcome = if reject { "rejected" } else { "approved" };
    tracing::info!(%request_id, %correlation_id, performer = %Untrusted(&identity.performer), outcome, "expense action accepted");
    with_status(StatusCode::OK, &format!("The expense was {outcome}."))
}

/// `true` to reject. No body or no `action` approves; a body that is not a
/// JSON object, or an unknown action, is a 400.
fn parse_action(body: &[u8]) -> Result<bool, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| "The request body is not JSON.")?;
    let Value::Object(map) = value else {
        return Err("The request body is not a JSON object.");
    };
    match map.get("action") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(a)) if a.eq_ignore_ascii_case("approve") => Ok(false),
        Some(Value::String(a)) if a.eq_ignore_ascii_case("reject") => Ok(true),
        Some(_) => Err("The action must be \"approve\" or \"reject\"."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn actions_default_to_approve() {
        assert_eq!(parse_action(b""), Ok(false));
        assert_eq!(parse_action(b"{}"), Ok(false));
        assert_eq!(
            parse_action(br#"{"expenseId":"1","action":"reject"}"#),
            Ok(true)
        );
        assert!(parse_action(b"not json").is_err());
        assert!(parse_action(b"[1]").is_err());
        assert!(parse_action(br#"{"action":"delete"}"#).is_err());
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
}
