//! `/mail` (a page of the Inbox), `/mail/{id}` (one message) and
//! `/mail/{id}/body` (its body, alone, for a sandboxed frame).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use time::OffsetDateTime;

use super::MailError;
use super::model::valid_id;
use super::reader::{ReadError, Rendered};
use crate::auth::oidc::OidcError;
use crate::clock::now;
use crate::error::{AppError, html};
use crate::http::redirect;
use crate::pages::{BodyView, InboxView, MessageRow, MessageView};
use crate::session::{SignedInUser, TypedSession};
use crate::settings::Notifications;
use crate::state::AppState;

/// Where an expired or refused access token sends the person: a silent
/// sign-in first (`prompt=none` with the remembered `login_hint`).
const SILENT_SIGN_IN: &str = "/signin?prompt=none";

/// With a refresh token, an access token this close to expiry is renewed first.
const REFRESH_MARGIN_SECS: i64 = 120;

/// The last Inbox page offered (`$skip` 490).
pub const MAX_PAGE: u32 = 50;

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    /// Search words (`/mail?q=…`).
    q: Option<String>,
    /// The search's next page: the mail API's `@odata.nextLink`, checked
    /// to be a messages URL of this mail API before it is followed.
    next: Option<String>,
}

/// The words of `?q=`, trimmed: 1 to [`super::MAX_QUERY_CHARS`] characters.
fn search_words(q: &str) -> Option<&str> {
    let q = q.trim();
    (!q.is_empty() && q.chars().count() <= super::MAX_QUERY_CHARS).then_some(q)
}

#[derive(Deserialize)]
pub struct ImagesQuery {
    images: Option<String>,
}

impl ImagesQuery {
    fn wanted(&self) -> bool {
        self.images.as_deref() == Some("1")
    }
}

/// `?page=N`: absent is 1; anything but a whole number from 1 to 50 is `None`.
fn page_number(q: &PageQuery) -> Option<u32> {
    match q.page.as_deref() {
        None => Some(1),
        Some(p) => p.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE).contains(n)),
    }
}

pub async fn inbox(
    state: web::Data<AppState>,
    session: TypedSession,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    let user = match signed_in(&state, &session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    if let Some(words) = q.q.as_deref() {
        return search(&state, &session, user, words, q.next.as_deref()).await;
    }
    let Some(page) = page_number(&q) else {
        return AppError::BadPage.render(state.chrome(&session));
    };
    // Page 1 of the Inbox is live: new mail appears by itself.
    let live = page == 1 && state.settings.notifications != Notifications::Off;
    if live
        && state.settings.notifications == Notifications::Webhook
        && !state.live.looked_lately(&user.person_key())
    {
        tokio::spawn(crate::notifications::upkeep::ensure_subscription(
            state.clone().into_inner(),
            user.clone(),
        ));
    }
    match state
        .mail
        .client
        .inbox(&user.access_token, &user.email, page)
        .await
    {
        Ok(inbox) => {
            let now = OffsetDateTime::now_utc();
            let view = InboxView {
                chrome: state.chrome(&session),
                email: user.email,
                page,
                newer: (page > 1).then(|| page - 1),
                older: (inbox.more && page < MAX_PAGE).then(|| page + 1),
                query: None,
                continued: false,
                more_href: None,
                live_since: live.then(crate::clock::now),
                rows: inbox
                    .messages
                    .into_iter()
                    .map(|m| MessageRow::new(m, now))
                    .collect(),
            };
            html(StatusCode::OK, &view)
        }
        Err(e) => mail_failed(&session, &state, e),
    }
}

/// `/mail?q=…`: the messages that match, in the Inbox's table, with "More
/// results" while the mail API has more. An empty or over-long search is a
/// 400 page that calls nothing.
async fn search(
    state: &AppState,
    session: &TypedSession,
    user: SignedInUser,
    words: &str,
    next: Option<&str>,
) -> HttpResponse {
    let Some(words) = search_words(words) else {
        return AppError::BadSearch.render(state.chrome(session));
    };
    let client = &state.mail.client;
    if next.is_some_and(|n| client.own_link(n).is_none()) {
        return AppError::BadSearch.render(state.chrome(session));
    }
    match client
        .search(&user.access_token, &user.email, words, next)
        .await
    {
        Ok(found) => {
            let now = OffsetDateTime::now_utc();
            let more_href = found.next_link.as_deref().map(|link| {
                let mut href =
                    url::form_urlencoded::Serializer::for_suffix(String::from("/mail?"), 6);
                href.append_pair("q", words).append_pair("next", link);
                href.finish()
            });
            let view = InboxView {
                chrome: state.chrome(session),
                email: user.email,
                page: 1,
                newer: None,
                older: None,
                query: Some(words.to_owned()),
                continued: next.is_some(),
                more_href,
                live_since: None,
                rows: found
                    .messages
                    .into_iter()
                    .map(|m| MessageRow::new(m, now))
                    .collect(),
            };
            html(StatusCode::OK, &view)
        }
        Err(e) => mail_failed(session, state, e),
    }
}

pub async fn message(
    state: web::Data<AppState>,
    session: TypedSession,
    id: web::Path<String>,
    q: web::Query<ImagesQuery>,
) -> HttpResponse {
    let user = match signed_in(&state, &session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    if !valid_id(&id) {
        return AppError::NoSuchMessage.render(state.chrome(&session));
    }
    match state
        .mail
        .client
        .message(&user.access_token, &user.email, &id)
        .await
    {
        Ok(m) => {
            let web_link = m.web_link.clone().filter(|link| outlook_link(link, &state));
            let mut view = MessageView::new(
                state.chrome(&session),
                m,
                web_link,
                q.wanted(),
                OffsetDateTime::now_utc(),
            );
            // Demo mode: an actionable message opens on the stand-in's card page.
            view.card_link = state.demo_links.as_ref().and_then(|d| d.card_page(&id));
            html(StatusCode::OK, &view)
        }
        Err(e) => mail_failed(&session, &state, e),
    }
}

/// "Open in Outlook on the web" only to https on Outlook's own hosts (or, in
/// demo mode, the stand-in): a link is data from the mail API, not trusted.
fn outlook_link(link: &str, state: &AppState) -> bool {
    if state.settings.demo && link.starts_with(&format!("{}/_demo/", state.settings.public_base()))
    {
        return true;
    }
    url::Url::parse(link).is_ok_and(|u| {
        u.scheme() == "https"
            && u.port().is_none()
            && u.host_str().is_some_and(|h| {
                matches!(
                    h.to_ascii_lowercase().as_str(),
                    "outlook.office.com" | "outlook.office365.com" | "outlook.live.com"
                )
            })
    })
}

/// The body alone, as its own small document for the sandboxed frame, with a
/// policy that forbids script, plugins, forms and every request but inline
/// images (and https images when asked for).
pub async fn body(
    state: web::Data<AppState>,
    session: TypedSession,
    id: web::Path<String>,
    q: web::Query<ImagesQuery>,
) -> HttpResponse {
    let images = q.wanted();
    let frame = |status: StatusCode, view: BodyView| body_response(&state, status, &view, images);
    if session.store_unavailable() {
        return frame(
            StatusCode::SERVICE_UNAVAILABLE,
            BodyView::note("Sign-in is unavailable for now."),
        );
    }
    let Some(user) = session.user().filter(|u| !u.expired(now())) else {
        return frame(
            StatusCode::UNAUTHORIZED,
            BodyView::note("Sign in again to read this message."),
        );
    };
    if !valid_id(&id) {
        return frame(
            StatusCode::NOT_FOUND,
            BodyView::note("There is no such message."),
        );
    }
    let read = state
        .mail
        .reader
        .read(
            &state.mail.client,
            &user.access_token,
            &user.email,
            &user.person_key(),
            &id,
            images,
        )
        .await;
    let (rendered, truncated) = match read {
        Ok(r) => r,
        Err(ReadError::Mail(MailError::NotFound { .. })) => {
            return frame(
                StatusCode::NOT_FOUND,
                BodyView::note("This message no longer exists."),
            );
        }
        Err(ReadError::Mail(MailError::Throttled {
            retry_after_secs, ..
        })) => {
            return frame(
                StatusCode::SERVICE_UNAVAILABLE,
                BodyView::note(&format!(
                    "Microsoft is throttling us; try again in {} s.",
                    retry_after_secs.unwrap_or(30)
                )),
            );
        }
        Err(ReadError::Mail(e)) => {
            return frame(
                StatusCode::BAD_GATEWAY,
                BodyView::note(&format!(
                    "The message could not be loaded (client-request-id {}).",
                    e.client_request_id()
                )),
            );
        }
        Err(ReadError::Busy) => {
            return frame(
                StatusCode::SERVICE_UNAVAILABLE,
                BodyView::note("Many messages are being opened right now; try again in a moment."),
            );
        }
        Err(ReadError::Failed) => {
            return frame(
                StatusCode::INTERNAL_SERVER_ERROR,
                BodyView::note("The message could not be shown."),
            );
        }
    };
    let view = match &*rendered {
        Rendered::Text(text) => BodyView::text(text, truncated),
        Rendered::Html { html, flattened } => BodyView::html(html, truncated, *flattened),
    };
    frame(StatusCode::OK, view)
}

/// The policy of the body document: a sandbox (no script, no same-origin
/// access, popups only for links), nothing loaded but inline styles and
/// `data:` images (plus `https:` images when asked), framed only by us.
///
/// `demo_origin`: the demo stand-in's origin, whose "remote" images are
/// served over http.
pub fn body_policy(images: bool, demo_origin: Option<&str>) -> String {
    let remote = match (images, demo_origin) {
        (false, _) => String::new(),
        (true, None) => " https:".to_owned(),
        (true, Some(o)) => format!(" https: {o}"),
    };
    format!(
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:{remote}; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )
}

fn body_response(
    state: &AppState,
    status: StatusCode,
    view: &BodyView,
    images: bool,
) -> HttpResponse {
    let mut response = html(status, view);
    let headers = response.headers_mut();
    let demo_origin = state
        .settings
        .demo
        .then(|| state.settings.public_url.origin().ascii_serialization());
    if let Ok(csp) = body_policy(images, demo_origin.as_deref()).parse() {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        X_FRAME_OPTIONS,
        actix_web::http::header::HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The signed-in person with a usable access token, or the response that
/// gets them one (home when signed out, a silent sign-in when expired).
pub(crate) async fn signed_in(
    state: &AppState,
    session: &TypedSession,
) -> Result<SignedInUser, HttpResponse> {
    if session.store_unavailable() {
        return Err(AppError::SessionStoreDown.render(state.chrome(session)));
    }
    let Some(user) = session.user() else {
        return Err(redirect("/"));
    };
    match fresh_token(state, session, user).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => {
            session.expire_user();
            // One silent attempt a minute; after that the person signs in themselves.
            Err(if session.may_reauthenticate(now()) {
                redirect(SILENT_SIGN_IN)
            } else {
                redirect("/signin")
            })
        }
        Err(e) => Err(e.render(state.chrome(session))),
    }
}

/// A failed mail call: a refused token goes back through sign-in (once a
/// minute at most, with a claims challenge when the API sent one); the rest
/// are pages.
pub(crate) fn mail_failed(session: &TypedSession, state: &AppState, e: MailError) -> HttpResponse {
    match e {
        MailError::Unauthorized {
            code,
            message,
            claims,
            ..
        } => {
            session.expire_user();
            if !session.may_reauthenticate(now()) {
                // Refused again right after a sign-in: a page, not a loop.
                return AppError::MailRefused { code, message }.render(state.chrome(session));
            }
            match claims {
                // A claims challenge (continuous access evaluation): sign in
                // again asking for those claims.
                Some(claims) => match session.set_claims_challenge(&claims) {
                    Ok(()) => redirect("/signin"),
                    Err(e) => AppError::from(e).render(state.chrome(session)),
                },
                None => redirect(SILENT_SIGN_IN),
            }
        }
        e => AppError::Mail(e).render(state.chrome(session)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_whole_numbers_from_1_to_50() {
        let q = |p: Option<&str>| PageQuery {
            page: p.map(str::to_owned),
            q: None,
            next: None,
        };
        assert_eq!(page_number(&q(None)), Some(1));
        assert_eq!(page_number(&q(Some("2"))), Some(2));
        assert_eq!(page_number(&q(Some("50"))), Some(50));
        for bad in ["0", "51", "-1", "1.5", "x", "", "99999999999"] {
            assert_eq!(page_number(&q(Some(bad))), None, "{bad}");
        }
    }

    #[test]
    fn searches_are_1_to_256_characters_trimmed() {
        assert_eq!(search_words("  budget  "), Some("budget"));
        assert_eq!(search_words("   "), None);
        assert_eq!(search_words(""), None);
        assert!(search_words(&"é".repeat(256)).is_some());
        assert!(search_words(&"é".repeat(257)).is_none());
    }

    #[test]
    fn the_body_policy_allows_no_script_and_remote_images_only_when_asked() {
        let p = body_policy(false, None);
        assert!(p.starts_with("sandbox allow-popups allow-popups-to-escape-sandbox;"));
        assert!(p.contains("default-src 'none'") && p.contains("img-src data:;"));
        assert!(!p.contains("script"));
        assert!(body_policy(true, None).contains("img-src data: https:;"));
        assert!(
            body_policy(true, Some("http://127.0.0.1:8000"))
                .contains("img-src data: https: http://127.0.0.1:8000;")
        );
    }
}
