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

use crate::cards;
use crate::clock::now;
use crate::jwt::JwtError;
use crate::jwt::action_token::{
    ActionIdentity, EntraRules, LegacyRules, allowed, verify_entra, verify_legacy,
};
use crate::logging::{Untrusted, clean};
use crate::metrics;
use crate::settings::ActionScheme;
use crate::state::AppState;
use crate::store::{
    Answer, Decided, Decision, DecisionStore as _, Recorded, StoreError, valid_expense_id,
};

pub use crate::cards::STATUS_HEADER;

/// The `outcome` label of a refused action (its `reason` says why).
const REFUSED: &str = "refused";
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
    let identity = match identity {
        Ok(i) => i,
        Err(Refusal::Unverifiable(reason)) => {
            metrics::action(REFUSED, "unverifiable");
            if state.refusals.allow() {
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
                    metrics::action(REFUSED, "invalid_token");
                    e.to_string()
                }
                _ => {
                    metrics::action(REFUSED, "no_token");
                    "no bearer token".to_owned()
                }
            };
            if state.refusals.allow() {
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
        metrics::action(REFUSED, "not_allowed");
        if state.refusals.allow() {
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
        metrics::action(
            REFUSED,
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            },
        );
        if state.refusals.allow() {
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

const NOT_RECORDED: &str = "The service cannot record actions right now. Please try again later.";
const UNKNOWN_EXPENSE: &str = "This expense is not known.";
const BAD_TICKET: &str = "This card was sent to someone else, or it has expired.";

/// An action that passed every check before its meaning: the token, who may
/// act, the body, and the ticket.
struct Admitted {
    /// For the log (escaped).
    request_id: String,
    correlation_id: String,
    identity: ActionIdentity,
    body: ActionBody,
}

/// The checks both action endpoints make, in order; the refusal otherwise.
async fn admit(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Admitted, Box<HttpResponse>> {
    let request_id = log_header(req, "Action-Request-Id");
    let correlation_id = log_header(req, "Card-Correlation-Id");
    let identity = authenticate(state, req, &request_id, &correlation_id)
        .await
        .map_err(Box::new)?;
    let body = body_of(state, payload, &request_id, &correlation_id)
        .await
        .map_err(Box::new)?;
    if let Some(refused) = ticket_refusal(state, &body, &identity, &request_id, &correlation_id) {
        return Err(Box::new(refused));
    }
    Ok(Admitted {
        request_id,
        correlation_id,
        identity,
        body,
    })
}

/// The body is taken as a stream, not as `web::Bytes`: nothing of it is read
/// before the token verifies, and then at most [`MAX_BODY_BYTES`].
pub async fn expense(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Admitted {
        request_id,
        correlation_id,
        identity,
        body,
    } = match admit(&state, &req, payload).await {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let decision = if body.reject {
        Decision::Rejected
    } else {
        Decision::Approved
    };
    let Some(expense_id) = body.expense_id else {
        // The original sample's shape: nothing to record.
        metrics::action(decision.as_str(), "");
        tracing::info!(action_request_id = %request_id, card_correlation_id = %correlation_id, performer = %Untrusted(&identity.performer), outcome = decision.as_str(), "expense action accepted (no expense id; nothing recorded)");
        return with_status(
            StatusCode::OK,
            &format!("The expense was {}.", decision.as_str()),
        );
    };
    let store_down = |e: StoreError| {
        metrics::decision_store_error();
        metrics::action(REFUSED, "store_unavailable");
        tracing::error!(action_request_id = %request_id, card_correlation_id = %correlation_id, error = %e, "action not recorded: the store is unavailable");
        with_status(StatusCode::SERVICE_UNAVAILABLE, NOT_RECORDED)
    };
    let raw_request_id = stored_header(&req, "Action-Request-Id");
    // A retry of the same action gets exactly the first answer.
    if let Some(rid) = &raw_request_id {
        match state.decisions.answer(rid).await {
            Ok(Some(first)) => {
                metrics::action("repeated", "");
                tracing::info!(action_request_id = %request_id, card_correlation_id = %correlation_id, status = first.status, "a repeated action request: the first answer again");
                return answer_with_card(&state, &first).await;
            }
            Ok(None) => {}
            Err(e) => return store_down(e),
        }
    }
    let recorded = Recorded {
        decision,
        performer: identity.performer.clone(),
        at: now(),
        action_request_id: raw_request_id.clone(),
        card_correlation_id: stored_header(&req, "Card-Correlation-Id"),
    };
    let decided = match state.decisions.decide(&expense_id, &recorded).await {
        Ok(d) => d,
        Err(e) => return store_down(e),
    };
    let (status, message, outcome) = match &decided {
        Decided::Unknown => {
            metrics::action("unknown_expense", "");
            tracing::info!(action_request_id = %request_id, card_correlation_id = %correlation_id, expense = %Untrusted(&expense_id), "action refused: unknown expense");
            return with_status(StatusCode::NOT_FOUND, UNKNOWN_EXPENSE);
        }
        Decided::First(_, d) => (
            StatusCode::OK,
            format!("The expense was {}.", d.decision.as_str()),
            "recorded",
        ),
        Decided::Earlier(_, d) if d.decision == decision => (
            StatusCode::OK,
            format!("This expense was already {}.", d.decision.as_str()),
            "already",
        ),
        Decided::Earlier(_, d) => (
            StatusCode::CONFLICT,
            format!("This expense was already {}.", d.decision.as_str()),
            "conflict",
        ),
    };
    metrics::action(
        match &decided {
            Decided::First(_, d) => d.decision.as_str(),
            _ => outcome,
        },
        "",
    );
    tracing::info!(action_request_id = %request_id, card_correlation_id = %correlation_id, expense = %Untrusted(&expense_id), performer = %Untrusted(&identity.performer), asked = decision.as_str(), outcome, status = status.as_u16(), "expense action");
    let answer = Answer {
        status: status.as_u16(),
        message,
        expense_id,
    };
    if let Some(rid) = &raw_request_id {
        // Two copies of one request racing: whichever was kept first is the answer.
        match state.decisions.keep_answer(rid, &answer).await {
            Ok(kept) if kept != answer => return answer_with_card(&state, &kept).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(action_request_id = %request_id, error = %e, "the answer could not be kept for retries")
            }
        }
    }
    let (Decided::First(expense, d) | Decided::Earlier(expense, d)) = decided else {
        return with_status(StatusCode::NOT_FOUND, UNKNOWN_EXPENSE);
    };
    card_of(&state, status, Some(&answer.message), &expense, Some(&d))
}

/// `POST /api/expense/card`: the expense's current card, for the card's
/// `autoInvokeAction` (Outlook ignores answers slower than 2 s: nothing here
/// waits on the network once keys are cached).
pub async fn current_card(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Admitted {
        request_id,
        correlation_id,
        identity: _,
        body,
    } = match admit(&state, &req, payload).await {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let Some(expense_id) = body.expense_id else {
        return with_status(StatusCode::BAD_REQUEST, "The request names no expense.");
    };
    tracing::info!(action_request_id = %request_id, card_correlation_id = %correlation_id, expense = %Untrusted(&expense_id), "card refresh");
    card_response(&state, StatusCode::OK, None, &expense_id).await
}

/// A ticket, when the body carries one (or `ACTION_REQUIRE_TICKET` wants
/// one), must be for this expense and this performer, and unexpired; the
/// refusal to send when it is not.
fn ticket_refusal(
    state: &AppState,
    body: &ActionBody,
    identity: &ActionIdentity,
    request_id: &str,
    correlation_id: &str,
) -> Option<HttpResponse> {
    let refuse = |why: &str| {
        metrics::action(REFUSED, "ticket");
        if state.refusals.allow() {
            tracing::warn!(action_request_id = %request_id, card_correlation_id = %correlation_id, why, "action refused: 403 (ticket)");
        }
        with_status(StatusCode::FORBIDDEN, BAD_TICKET)
    };
    match (&body.ticket, &body.expense_id) {
        (None, _) if state.settings.action_require_ticket => Some(refuse("no ticket")),
        (None, _) => None,
        (Some(_), None) => Some(refuse("a ticket without an expense")),
        (Some(ticket), Some(expense)) => state
            .tickets
            .check(ticket, expense, &identity.performer, now())
            .err()
            .map(|e| refuse(&e.to_string())),
    }
}

/// The kept answer, with the expense's current card in the body.
async fn answer_with_card(state: &AppState, answer: &Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    card_response(state, status, Some(&answer.message), &answer.expense_id).await
}

/// `status` with `CARD-UPDATE-IN-BODY: true` and the current card of
/// `expense_id` (Adaptive Card 1.0 JSON), read from the store.
async fn card_response(
    state: &AppState,
    status: StatusCode,
    message: Option<&str>,
    expense_id: &str,
) -> HttpResponse {
    match state.decisions.expense(expense_id).await {
        Ok(Some((expense, decision))) => {
            card_of(state, status, message, &expense, decision.as_ref())
        }
        Ok(None) => with_status(StatusCode::NOT_FOUND, UNKNOWN_EXPENSE),
        Err(e) => {
            tracing::error!(error = %e, "the card could not be read: the store is unavailable");
            with_status(StatusCode::SERVICE_UNAVAILABLE, NOT_RECORDED)
        }
    }
}

/// `status` with `CARD-UPDATE-IN-BODY: true` and the card of `expense` as `decision` leaves it.
fn card_of(
    state: &AppState,
    status: StatusCode,
    message: Option<&str>,
    expense: &crate::store::Expense,
    decision: Option<&Recorded>,
) -> HttpResponse {
    let originator = state
        .settings
        .action_originator
        .as_deref()
        .unwrap_or_default();
    let card = cards::card(
        expense,
        decision,
        &cards::CardContext {
            public_base: state.settings.public_base(),
            originator,
            ticket: None,
        },
    );
    let mut response = HttpResponse::build(status);
    if let Some(m) = message {
        response.insert_header((STATUS_HEADER, m));
    }
    response
        .insert_header(("CARD-UPDATE-IN-BODY", "true"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(card.to_string())
}

/// What an action's body says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ActionBody {
    expense_id: Option<String>,
    reject: bool,
    ticket: Option<String>,
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
        assert_eq!(parse_action(b"{}"), Ok(ActionBody::default()));
        let b = parse_action(
            br#"{"expenseId":"EXP-2026-000001","action":"reject","ticket":"v1.1.AA"}"#,
        )
        .unwrap();
        assert!(b.reject);
        assert_eq!(b.expense_id.as_deref(), Some("EXP-2026-000001"));
        assert_eq!(b.ticket.as_deref(), Some("v1.1.AA"));
        assert!(parse_action(b"not json").is_err());
        assert!(parse_action(b"[1]").is_err());
        assert!(parse_action(br#"{"action":"delete"}"#).is_err());
        assert!(parse_action(br#"{"expenseId":"../x"}"#).is_err());
        assert!(parse_action(br#"{"expenseId":7}"#).is_err());
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
