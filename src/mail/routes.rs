//! `/mail`: the ten most recent Inbox messages.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use time::OffsetDateTime;

use super::MailError;
use crate::auth::routes::redirect;
use crate::error::{AppError, html};
use crate::pages::{InboxView, MessageRow};
use crate::session::{TypedSession, now};
use crate::startup::AppState;

/// Where an expired or refused access token sends the person: a silent
/// sign-in first (`prompt=none` with the remembered `login_hint`).
const SILENT_SIGN_IN: &str = "/signin?prompt=none";

pub async fn inbox(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    let Some(user) = session.user() else {
        return redirect("/");
    };
    if user.expired(now()) {
        session.expire_user();
        return redirect(SILENT_SIGN_IN);
    }
    match state.mail.inbox(&user.access_token, &user.email).await {
        Ok(messages) => {
            let now = OffsetDateTime::now_utc();
            let view = InboxView {
                chrome: state.chrome(&session),
                email: user.email,
                rows: messages
                    .into_iter()
                    .map(|m| MessageRow::new(m, now))
                    .collect(),
            };
            html(StatusCode::OK, &view)
        }
        Err(MailError::Unauthorized { .. }) => {
            session.expire_user();
            redirect(SILENT_SIGN_IN)
        }
        Err(e) => AppError::Mail(e).render(state.chrome(&session)),
    }
}
