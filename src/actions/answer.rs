//! What the action endpoints answer: a status with `CARD-ACTION-STATUS`, and
//! for a known expense the refreshed card in the body.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;

use crate::cards::{self, STATUS_HEADER};
use crate::state::AppState;
use crate::store::{Expense, Recorded};

/// `status` with a `CARD-ACTION-STATUS` text and no body.
pub(super) fn with_status(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((STATUS_HEADER, message))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// `status` with `CARD-UPDATE-IN-BODY: true` and the card of `expense` as
/// `decision` leaves it. `ticket` goes into the card's `autoInvokeAction`
/// (and buttons, if any), so that its refreshes pass `ACTION_REQUIRE_TICKET`.
pub(super) fn card(
    state: &AppState,
    status: StatusCode,
    message: Option<&str>,
    expense: &Expense,
    decision: Option<&Recorded>,
    ticket: Option<&str>,
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
            ticket,
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
