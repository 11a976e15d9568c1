//! `POST /cards/send`: "Send me a test expense card".

use actix_web::http::StatusCode;
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
use crate::store::{DecisionStore as _, Expense, year_of};

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

/// The card's JSON inside `<script>`: `<`, `>` and `&` become JSON's
/// `\u003c`, `\u003e` and `\u0026`, so that no field, now or later, can
/// close the element, open a comment or start a character reference. The
/// JSON means exactly the same.
fn script_safe(json: &str) -> String {
    let mut safe = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => safe.push_str("\\u003c"),
            '>' => safe.push_str("\\u003e"),
            '&' => safe.push_str("\\u0026"),
            c => safe.push(c),
        }
    }
    safe
}

pub async fn send(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
) -> HttpResponse {
    if !crate::http::same_origin(&state.settings.public_url, &req) {
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
    let recipient = user.email.trim().to_lowercase();
    // At most SENDS_PER_MINUTE a person: each send is a real email.
    match state
        .store
        .note_send(&recipient, created_at, super::SENDS_PER_MINUTE)
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(wait)) => {
            tracing::info!(wait, "a card send over the per-minute limit was refused");
            return AppError::TooManySends {
                retry_after_secs: wait,
            }
            .render(state.chrome(&session));
        }
        Err(e) => {
            tracing::error!(error = %e, "the send limit could not be checked");
            return AppError::StoreDown.render(state.chrome(&session));
        }
    }
    let (cents, submitter, purpose) =
        SAMPLES[(uuid::Uuid::new_v4().as_bytes()[0] as usize) % SAMPLES.len()];
    // The id is taken now, the expense written only once Graph accepted the
    // mail: a refused or throttled send leaves nothing behind.
    let id = match state.store.reserve_expense_id(year_of(created_at)).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "no expense id could be taken");
            return AppError::StoreDown.render(state.chrome(&session));
        }
    };
    let expense = Expense {
        id,
        amount_cents: cents,
        currency: "EUR".into(),
        submitter: submitter.into(),
        purpose: purpose.into(),
        recipient: Some(recipient.clone()),
        created_at,
    };
    let ticket = Tickets::issue(&state.actions.tickets, &expense.id, &recipient, created_at);
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
        .client
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
    if let Err(e) = state.store.insert_expense(&expense).await {
        // The mail is out but its expense is not kept: its buttons will say
        // "not known". Rare (the store failed between two calls); logged.
        tracing::error!(expense = %expense.id, error = %e, "a card was sent but its expense could not be saved");
        return AppError::StoreDown.render(state.chrome(&session));
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
    fn card_json_cannot_close_its_script_element_or_open_anything() {
        let json = r#"{"text":"</script><!-- <script>&amp; é"}"#;
        let safe = script_safe(json);
        assert_eq!(
            safe,
            r#"{"text":"\u003c/script\u003e\u003c!-- \u003cscript\u003e\u0026amp; é"}"#
        );
        assert!(!safe.contains(['<', '>', '&']));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["text"], "</script><!-- <script>&amp; é");
    }
}
