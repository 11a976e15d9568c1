//! Deciding an admitted action: who may act on the expense (its recipient,
//! or a performer whose ticket is for it), a retry's first answer, the one
//! decision, and the answer kept for retries.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use super::admit::{Admitted, NOT_YOURS};
use super::answer::{card, with_status};
use super::metrics_refused;
use crate::clock::now;
use crate::logging::Untrusted;
use crate::metrics;
use crate::state::AppState;
use crate::store::{
    Answer, Decided, Decision, DecisionStore as _, Expense, Recorded, StoreError, performer_key,
};

const NOT_RECORDED: &str = "The service cannot record actions right now. Please try again later.";
const UNKNOWN_EXPENSE: &str = "This expense is not known.";

/// `POST /api/expense` once admitted.
pub(super) async fn expense(state: &AppState, a: Admitted) -> HttpResponse {
    let asked = if a.body.reject {
        Decision::Rejected
    } else {
        Decision::Approved
    };
    let performer = &a.identity.performer;
    let Some(expense_id) = a.body.expense_id.as_deref() else {
        // The original sample's shape: nothing to record.
        metrics::action(asked.as_str(), "");
        tracing::info!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, performer = %Untrusted(performer), outcome = asked.as_str(), "expense action accepted (no expense id; nothing recorded)");
        return with_status(
            StatusCode::OK,
            &format!("The expense was {}.", asked.as_str()),
        );
    };
    let (expense, standing) = match load(state, &a, expense_id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let ticket = ticket_for(state, &a, &expense);
    // A retry of the same action gets exactly the first answer: looked up by
    // this performer's request id, and only for this expense.
    if let Some(rid) = &a.stored_request_id {
        match state.store.answer(performer, rid, now()).await {
            Ok(Some(first)) if first.expense_id == expense.id => {
                metrics::action("repeated", "");
                tracing::info!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, status = first.status, "a repeated action request: the first answer again");
                let standing = match standing {
                    Some(d) => Some(d),
                    None => match state.store.expense(&expense.id).await {
                        Ok(found) => found.and_then(|(_, d)| d),
                        Err(e) => return store_down(&a, e),
                    },
                };
                let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK);
                return card(
                    state,
                    status,
                    Some(&first.message),
                    &expense,
                    standing.as_ref(),
                    ticket.as_deref(),
                );
            }
            Ok(_) => {}
            Err(e) => return store_down(&a, e),
        }
    }
    let recorded = Recorded {
        decision: asked,
        performer: performer.clone(),
        at: now(),
        action_request_id: a.stored_request_id.clone(),
        card_correlation_id: a.stored_correlation_id.clone(),
    };
    let decided = match standing {
        Some(d) => Decided::Earlier(expense, d),
        None => match state.store.decide(&expense.id, &recorded).await {
            Ok(d) => d,
            Err(e) => return store_down(&a, e),
        },
    };
    let (expense, standing, first) = match decided {
        Decided::First(e, d) => (e, d, true),
        Decided::Earlier(e, d) => (e, d, false),
        Decided::Unknown => return unknown(&a, expense_id),
    };
    // Two copies of one request racing: the one that did not record the
    // decision finds it under its own request id, and answers as the first.
    let same_request = a.stored_request_id.is_some()
        && standing.action_request_id == a.stored_request_id
        && performer_key(&standing.performer) == performer_key(performer);
    let done = standing.decision.as_str();
    let (status, message, outcome) = if first {
        (StatusCode::OK, format!("The expense was {done}."), done)
    } else if same_request {
        (
            StatusCode::OK,
            format!("The expense was {done}."),
            "repeated",
        )
    } else if standing.decision == asked {
        (
            StatusCode::OK,
            format!("This expense was already {done}."),
            "already",
        )
    } else {
        (
            StatusCode::CONFLICT,
            format!("This expense was already {done}."),
            "conflict",
        )
    };
    metrics::action(outcome, "");
    tracing::info!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, expense = %Untrusted(&expense.id), performer = %Untrusted(performer), asked = asked.as_str(), outcome = if first { "recorded" } else { outcome }, status = status.as_u16(), "expense action");
    let mut answer = Answer {
        status: status.as_u16(),
        message,
        expense_id: expense.id.clone(),
    };
    if let Some(rid) = &a.stored_request_id {
        match state
            .store
            .keep_answer(performer, rid, &answer, now())
            .await
        {
            // Whichever copy kept its answer first is the answer.
            Ok(kept) if kept.expense_id == expense.id => answer = kept,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(action_request_id = %a.request_id, error = %e, "the answer could not be kept for retries")
            }
        }
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(status);
    card(
        state,
        status,
        Some(&answer.message),
        &expense,
        Some(&standing),
        ticket.as_deref(),
    )
}

/// `POST /api/expense/card` once admitted: the expense's current card, for
/// its recipient (or a performer with a ticket for it) only.
pub(super) async fn current_card(state: &AppState, a: Admitted) -> HttpResponse {
    let Some(expense_id) = a.body.expense_id.as_deref() else {
        return with_status(StatusCode::BAD_REQUEST, "The request names no expense.");
    };
    let (expense, standing) = match load(state, &a, expense_id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    tracing::info!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, expense = %Untrusted(&expense.id), "card refresh");
    let ticket = ticket_for(state, &a, &expense);
    card(
        state,
        StatusCode::OK,
        None,
        &expense,
        standing.as_ref(),
        ticket.as_deref(),
    )
}

/// The expense and its decision, if this performer may see them: 404 for
/// an expense never issued, 403 for someone else's card, 503 when the store
/// cannot be read.
async fn load(
    state: &AppState,
    a: &Admitted,
    expense_id: &str,
) -> Result<(Expense, Option<Recorded>), HttpResponse> {
    let (expense, standing) = match state.store.expense(expense_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(unknown(a, expense_id)),
        Err(e) => return Err(store_down(a, e)),
    };
    if !may_act(a, &expense) {
        metrics_refused("not_recipient");
        if state.actions.refusals.allow() {
            tracing::warn!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, expense = %Untrusted(expense_id), performer = %Untrusted(&a.identity.performer), "action refused: 403 (not the card's recipient)");
        }
        return Err(with_status(StatusCode::FORBIDDEN, NOT_YOURS));
    }
    Ok((expense, standing))
}

/// Its recipient may act on an expense, and a performer whose ticket for
/// it verified (tickets are issued to the recipient, so this is the same
/// person); nobody else, whatever their token.
fn may_act(a: &Admitted, expense: &Expense) -> bool {
    a.ticket_valid
        || expense
            .recipient
            .as_deref()
            .is_some_and(|r| performer_key(r) == performer_key(&a.identity.performer))
}

/// The ticket a refreshed card carries: the one presented, else a new one
/// for the recipient (who alone gets here without a ticket).
fn ticket_for(state: &AppState, a: &Admitted, expense: &Expense) -> Option<String> {
    if a.ticket_valid {
        return a.body.ticket.clone();
    }
    expense
        .recipient
        .as_deref()
        .map(|r| state.actions.tickets.issue(&expense.id, r, now()))
}

fn unknown(a: &Admitted, expense_id: &str) -> HttpResponse {
    metrics::action("unknown_expense", "");
    tracing::info!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, expense = %Untrusted(expense_id), "action refused: unknown expense");
    with_status(StatusCode::NOT_FOUND, UNKNOWN_EXPENSE)
}

fn store_down(a: &Admitted, e: StoreError) -> HttpResponse {
    metrics::decision_store_error();
    metrics_refused("store_unavailable");
    tracing::error!(action_request_id = %a.request_id, card_correlation_id = %a.correlation_id, error = %e, "action not recorded: the store is unavailable");
    with_status(StatusCode::SERVICE_UNAVAILABLE, NOT_RECORDED)
}
