//! `/mail`: the ten most recent Inbox messages.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use time::OffsetDateTime;

use super::MailError;
use crate::auth::oidc::OidcError;
use crate::clock::now;
use crate::error::{AppError, html};
use crate::http::redirect;
use crate::pages::{InboxView, MessageRow};
use crate::session::{SignedInUser, TypedSession};
use crate::state::AppState;

/// Where an expired or refused access token sends the person: a silent
/// sign-in first (`prompt=none` with the remembered `login_hint`).
const SILENT_SIGN_IN: &str = "/signin?prompt=none";

/// With a refresh token, an access token this close to expiry is renewed first.
const REFRESH_MARGIN_SECS: i64 = 120;

pub async fn inbox(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    if session.store_unavailable() {
        return AppError::SessionStoreDown.render(state.chrome(&session));
    }
    let Some(user) = session.user() else {
        return redirect("/");
    };
    let user = match fresh_token(&state, &session, user).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            session.expire_user();
            // One silent attempt a minute; after that the person signs in themselves.
            return if session.may_reauthenticate(now()) {
                redirect(SILENT_SIGN_IN)
            } else {
                redirect("/signin")
            };
        }
        Err(e) => return e.render(state.chrome(&session)),
    };
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
        Err(MailError::Unauthorized {
            code,
            message,
            claims,
            ..
        }) => {
            session.expire_user();
            if !session.may_reauthenticate(now()) {
                // Refused again right after a sign-in: a page, not a loop.
                return AppError::MailRefused { code, message }.render(state.chrome(&session));
            }
            match claims {
                // A claims challenge (continuous access evaluation): sign in
                // again asking for those claims.
                Some(claims) => match session.set_claims_challenge(&claims) {
                    Ok(()) => redirect("/signin"),
                    Err(e) => AppError::from(e).render(state.chrome(&session)),
                },
                None => redirect(SILENT_SIGN_IN),
            }
        }
        Err(e) => AppError::Mail(e).render(state.chrome(&session)),
    }
}

/// The user with a usable access token: as is, refreshed with the refresh
/// token (Redis store; the new tokens are stored), or `None` when the person
/// must sign in again (expired without a refresh token, or refresh refused).
async fn fresh_token(
    state: &AppState,
    session: &TypedSession,
    mut user: SignedInUser,
) -> Result<Option<SignedInUser>, AppError> {
    let now = now();
    let Some(refresh_token) = user.refresh_token.clone() else {
        return Ok((!user.expired(now)).then_some(user));
    };
    if user.expires_at - now > REFRESH_MARGIN_SECS {
        return Ok(Some(user));
    }
    match state
        .refresher
        .refresh(&state.provider, &refresh_token, &state.settings.scopes)
        .await
    {
        Ok(new) => {
            user.access_token = new.access_token;
            user.expires_at = new.expires_at;
            if new.refresh_token.is_some() {
                user.refresh_token = new.refresh_token;
            }
            session.update_user(&user)?;
            Ok(Some(user))
        }
        Err(OidcError::Refused { error, .. }) => {
            tracing::info!(%error, "the refresh token was refused; signing in again");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
