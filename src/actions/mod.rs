//! `POST /api/expense` and `POST /api/expense/card`: the Actionable Message
//! action endpoints.
//!
//! Microsoft's Actions service posts here when someone presses a button on an
//! expense card (or opens it: the card's `autoInvokeAction`). The bearer
//! token proves who pressed it; nothing is trusted before it verifies, and
//! the answer is always a clear status: 401 for any token problem, 403 for a
//! valid token from someone not allowed (or not the card's recipient), 400
//! for a body that is not JSON, 404 for an expense never issued, 200 when the
//! expense was approved or rejected.
//!
//! - [`admit`]: the token, who may act, the body and its ticket;
//! - [`decide`]: the expense's recipient, retries, the one decision;
//! - [`answer`]: the status text and the refreshed card.

mod admit;
mod answer;
mod decide;

use actix_web::{HttpRequest, HttpResponse, web};

pub use crate::cards::STATUS_HEADER;
pub use admit::MAX_BODY_BYTES;

use crate::state::AppState;

/// Counts a refused action by why (the `outcome` label is `refused`).
fn metrics_refused(reason: &'static str) {
    crate::metrics::action("refused", reason);
}

/// The body is taken as a stream, not as `web::Bytes`: nothing of it is read
/// before the token verifies, and then at most [`MAX_BODY_BYTES`].
pub async fn expense(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    match admit::admit(&state, &req, payload).await {
        Ok(admitted) => decide::expense(&state, admitted).await,
        Err(refused) => refused,
    }
}

/// `POST /api/expense/card`: the expense's current card, for the card's
/// `autoInvokeAction` (Outlook ignores answers slower than 2 s: nothing here
/// waits on the network once keys are cached).
pub async fn current_card(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    match admit::admit(&state, &req, payload).await {
        Ok(admitted) => decide::current_card(&state, admitted).await,
        Err(refused) => refused,
    }
}
