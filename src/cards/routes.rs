//! `POST /cards/send`: "Send me a test expense card".

use actix_web::http::StatusCode;
use actix_web::http::header::ORIGIN;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::ticket::Tickets;
use super::{CardContext, amount, card};
use crate::clock::now;
use crate::error::{AppError, html};
use crate::mail::routes::{mail_failed, signed_in};
use crate::pages::CardSentView;
use crate::session::TypedSession;
use crate::settings::MailApi;
use crate::state::AppState;
use crate::store::{DecisionStore as _, Expense, NewExpense};

/// The email that carries a card: the card in `<head>` for Outlook, and a
/// readable body for mail clients that show no cards.
#[derive(Template)]
#[template(path = "card_email.html")]
struct CardEmail<'a> {
    expense: &'a Expense,
    amount: String,
    /// The card's JSON, made safe to sit inside a `<script>` element.
    card_json: String,
}

/// Sample reports, so each test card differs.
const SAMPLES: &[(i64, &str, &str)] = &[
    (48_213, "Megan Bowen", "Customer visit to Fabrikam, Lisbon"),
    (12_950, "Alex Wilber", "Team lunch after the launch"),
    (189_000, "Lee Gu", "Conference tickets: RustConf"),
    (7_420, "Patti Fernandez", "Taxi to the airport"),
];

/// True when this deployment sends cards (`ACTION_ORIGINATOR`, Graph only).
pub fn sending_on(state: &AppState) -> bool {
    state.settings.action_originator.is_some() && state.settings.mail_api == MailApi::Graph
}

/// The card's JSON inside `<script>`: `</` cannot close the element early.
fn script_safe(json: &str) -> String {
    json.replace("</", "<\\/")
}

/// A POST from one of this app's own pages: `Origin` is ours, or — since
/// `Referrer-Policy: no-referrer` makes browsers send `Origin: null` — the
/// browser says `Sec-Fetch-Site: same-origin` (a header pages cannot set).
/// A request with neither is refused.
fn same_origin(state: &AppState, req: &HttpRequest) -> bool {
    let ours = state.settings.public_url.origin().ascii_serialization();
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match (header(ORIGIN.as_str()), header("sec-fetch-site")) {
        (Some(o), _) if o == ours => true,
        (Some("null") | None, Some("same-origin")) => true,
        _ => false,
    }
}

pub async fn send(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
) -> HttpResponse {
    if !same_origin(&state, &req) {
        tracing::warn!("a card send from another origin (or none) was refused");
        return AppError::CrossOrigin.render(state.chrome(&session));
    }
    if !sending_on(&state) {
        return AppError::SendingOff.render(state.chrome(&session));
    }
    let user = match signed_in(&state, &session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let created_at = now();
    let (cents, submitter, purpose) =
        SAMPLES[(uuid::Uuid::new_v4().as_bytes()[0] as usize) % SAMPLES.len()];
    let recipient = user.email.trim().to_lowercase();
    let expense = match state
        .decisions
        .create_expense(NewExpense {
            amount_cents: cents,
            currency: "EUR".into(),
            submitter: submitter.into(),
            purpose: purpose.into(),
            recipient: Some(recipient.clone()),
            created_at,
        })
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "no expense could be created");
            return AppError::StoreDown.render(state.chrome(&session));
        }
    };
    let ticket = Tickets::issue(&state.tickets, &expense.id, &recipient, created_at);
    let originator = state
        .settings
        .action_originator
        .as_deref()
        .unwrap_or_default();
    let json = card(
        &expense,
        None,
        &CardContext {
            public_base: state.settings.public_base(),
            originator,
            ticket: Some(&ticket),
        },
    );
    let email = CardEmail {
        expense: &expense,
        amount: amount(expense.amount_cents, &expense.currency),
        card_json: script_safe(&json.to_string()),
    };
    let body = match email.render() {
        Ok(b) => b,
        Err(e) => return AppError::Internal(e.to_string()).render(state.chrome(&session)),
    };
    let subject = format!("Expense {} is waiting for your decision", expense.id);
    if let Err(e) = state
        .mail
        .send_mail(
            &user.access_token,
            &user.email,
            &user.email,
            &subject,
            &body,
        )
        .await
    {
        return mail_failed(&session, &state, e);
    }
    tracing::info!(expense = %expense.id, "a test expense card was sent");
    html(
        StatusCode::OK,
        &CardSentView {
            chrome: state.chrome(&session),
            expense_id: expense.id.clone(),
            amount: amount(expense.amount_cents, &expense.currency),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_json_cannot_close_its_script_element() {
        assert_eq!(
            script_safe(r#"{"text":"</script><script>x"}"#),
            r#"{"text":"<\/script><script>x"}"#
        );
    }
}
