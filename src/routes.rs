//! Home, health and not-found.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::clock::now;
use crate::error::{AppError, ErrorPage, html};
use crate::pages::{HomeView, Person};
use crate::session::TypedSession;
use crate::settings::MailApi;
use crate::state::AppState;
use crate::store::DecisionStore as _;

pub async fn home(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    if session.store_unavailable() {
        return AppError::SessionStoreDown.render(state.chrome(&session));
    }
    let person = match session.user() {
        None => None,
        Some(user) if user.expired(now()) => Some(Person {
            sharepoint: user.sharepoint,
            name: user.name,
            email: user.email,
            profile: None,
            profile_note: Some("Your sign-in has expired; open your Inbox to renew it.".into()),
        }),
        Some(user) => {
            let (profile, profile_note) = match state
                .mail
                .client
                .profile(&user.access_token, &user.email)
                .await
            {
                Ok(p) => (Some(p), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "Your job title could not be loaded from Microsoft right now (client-request-id {}).",
                        e.client_request_id()
                    )),
                ),
            };
            Some(Person {
                sharepoint: user.sharepoint,
                name: user.name,
                email: user.email,
                profile,
                profile_note,
            })
        }
    };
    html(
        StatusCode::OK,
        &HomeView {
            can_send: crate::cards::routes::sending_on(&state),
            chrome: state.chrome(&session),
            person,
            mail_api_label: match state.settings.mail_api {
                MailApi::Graph => "Microsoft Graph",
                MailApi::Outlook => "the Outlook REST API",
            },
        },
    )
}

/// `ok` only when the app can do its whole job; else 503 with a fixed reason
/// (the details go to the log).
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if let Some(redis) = &state.redis
        && let Err(e) = redis.ping().await
    {
        // A fixed reason for the prober; the details (hosts, errors) go to the log only.
        crate::metrics::session_store_error("ping");
        tracing::warn!(error = %e, "health check: Redis is unavailable");
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("redis unavailable");
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "health check: the decision store is unavailable");
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("store unavailable");
    }
    if !state.ready.is_loaded() {
        // Discovery or the signing keys are not loaded yet (starting, or the
        // identity platform cannot be reached): no sign-in or action would work.
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("identity platform unavailable");
    }
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

pub async fn not_found(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    ErrorPage::new(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
    )
    .render(state.chrome(&session))
}
