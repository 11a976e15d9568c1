//! `POST /notifications`, `POST /notifications/lifecycle` (Graph's change
//! and lifecycle notifications: no session, `clientState` decides) and
//! `GET /mail/events` (the signed-in person's stream of new Inbox rows).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder as _, web};
use actix_web_lab::sse;
use futures_util::StreamExt as _;
use serde::Deserialize;

use super::live::{Credentials, Live, LiveEvent, OpenError, Verdict};
use super::upkeep;
use crate::clock::now;
use crate::session::TypedSession;
use crate::settings::Notifications;
use crate::state::AppState;

/// Largest notification body read (10,000 notifications fit).
pub const MAX_BODY: usize = 1024 * 1024;

/// Longest validation token echoed (Graph's are a few hundred characters).
pub const MAX_VALIDATION_TOKEN: usize = 4 * 1024;

/// Subscriptions not in memory that one request may look up in the store.
const LOOKUPS_PER_REQUEST: usize = 16;

#[derive(Deserialize)]
pub struct Validation {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    value: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default, rename = "subscriptionId")]
    subscription_id: Option<String>,
    #[serde(default, rename = "clientState")]
    client_state: Option<String>,
    #[serde(default, rename = "lifecycleEvent")]
    lifecycle_event: Option<String>,
}

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text.to_owned())
}

/// Graph's validation handshake: the token back, as plain text (Graph gives
/// us 10 s; this is immediate).
fn validation(token: &str) -> HttpResponse {
    if token.len() > MAX_VALIDATION_TOKEN || token.chars().any(char::is_control) {
        crate::metrics::notification("bad_validation");
        return plain(
            StatusCode::BAD_REQUEST,
            "The validation token is not acceptable.",
        );
    }
    crate::metrics::notification("validation");
    plain(StatusCode::OK, token)
}

/// The body, at most [`MAX_BODY`], as a batch; the refusal otherwise.
async fn batch(mut payload: web::Payload) -> Result<Batch, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| plain(StatusCode::BAD_REQUEST, "The body could not be read."))?;
        if body.len() + chunk.len() > MAX_BODY {
            crate::metrics::notification("too_large");
            return Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The body is larger than 1 MB.",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| {
        crate::metrics::notification("malformed");
        plain(
            StatusCode::BAD_REQUEST,
            "The body is not a batch of notifications.",
        )
    })
}

/// Checks every item's subscription and `clientState` (each distinct pair
/// once); counts and, at a bounded rate, logs what is not ours.
async fn verified<'a>(state: &AppState, items: &'a [Item]) -> Vec<(&'a Item, String)> {
    let mut lookups = LOOKUPS_PER_REQUEST;
    let mut verdicts: HashMap<(&str, &str), Option<String>> = HashMap::new();
    let (mut unknown, mut forged) = (0usize, 0usize);
    let mut ours = Vec::new();
    for item in items {
        let (Some(id), Some(client_state)) = (
            item.subscription_id.as_deref(),
            item.client_state.as_deref(),
        ) else {
            unknown += 1;
            continue;
        };
        let owner = match verdicts.get(&(id, client_state)) {
            Some(v) => v.clone(),
            None => {
                let v = match state
                    .live
                    .owner_of(state, id, client_state, &mut lookups)
                    .await
                {
                    Verdict::Owner(o) => Some(o),
                    Verdict::Unknown => {
                        unknown += 1;
                        None
                    }
                    Verdict::Forged => {
                        forged += 1;
                        None
                    }
                };
                verdicts.insert((id, client_state), v.clone());
                v
            }
        };
        if let Some(owner) = owner {
            ours.push((item, owner));
        }
    }
    if unknown > 0 {
        crate::metrics::notifications("unknown", unknown);
    }
    if forged > 0 {
        crate::metrics::notifications("forged", forged);
    }
    if (unknown > 0 || forged > 0) && state.live.refusals.allow() {
        tracing::warn!(
            unknown,
            forged,
            "notifications ignored: not for a subscription of ours, or a wrong clientState"
        );
    }
    ours
}

/// `POST /notifications`: answered 202 at once; the reading is queued.
pub async fn notifications(
    state: web::Data<AppState>,
    q: web::Query<Validation>,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(token) = q.validation_token.as_deref() {
        return validation(token);
    }
    let batch = match batch(payload).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let owners: HashSet<String> = verified(&state, &batch.value)
        .await
        .into_iter()
        .map(|(_, owner)| owner)
        .collect();
    crate::metrics::notifications("accepted", owners.len());
    let state = state.into_inner();
    for owner in owners {
        let state = state.clone();
        tokio::spawn(async move { state.live.bus.changed(&state, &owner).await });
    }
    HttpResponse::Accepted().finish()
}

/// `POST /notifications/lifecycle`: `reauthorizationRequired`,
/// `subscriptionRemoved` and `missed`, for subscriptions of ours.
pub async fn lifecycle(
    state: web::Data<AppState>,
    q: web::Query<Validation>,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(token) = q.validation_token.as_deref() {
        return validation(token);
    }
    let batch = match batch(payload).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let ours = verified(&state, &batch.value).await;
    let app = state.clone().into_inner();
    for (item, owner) in ours {
        let id = item.subscription_id.clone().unwrap_or_default();
        let app = app.clone();
        match item.lifecycle_event.as_deref() {
            Some("reauthorizationRequired") => {
                crate::metrics::notification("reauthorization_required");
                tokio::spawn(upkeep::reauthorize(app, owner, id));
            }
            Some("subscriptionRemoved") => {
                crate::metrics::notification("subscription_removed");
                tokio::spawn(upkeep::removed(app, owner, id));
            }
            Some("missed") => {
                crate::metrics::notification("missed");
                tokio::spawn(async move { app.live.bus.changed(&app, &owner).await });
            }
            _ => crate::metrics::notification("unknown_lifecycle_event"),
        }
    }
    HttpResponse::Accepted().finish()
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// When the page with the open Inbox was made (Unix seconds).
    since: Option<i64>,
}

/// `GET /mail/events`: Server-Sent Events of the person's new Inbox rows
/// (`rows`), and `expired` when their sign-in has run out.
pub async fn events(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    q: web::Query<EventsQuery>,
) -> HttpResponse {
    if state.settings.notifications == Notifications::Off {
        return plain(StatusCode::NOT_FOUND, "The live Inbox is off here.");
    }
    if session.store_unavailable() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable for now.",
        );
    }
    let now = now();
    let Some(user) = session.user().filter(|u| !u.expired(now)) else {
        return plain(
            StatusCode::UNAUTHORIZED,
            "Sign in to see new mail as it arrives.",
        );
    };
    let Some(browser) = session.browser_id() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable for now.",
        );
    };
    let since = q.since.unwrap_or(now).clamp(now - 3_600, now);
    let last_id = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let credentials = Credentials {
        token: user.access_token.clone(),
        mailbox: user.email.clone(),
        expires_at: user.expires_at,
        since,
    };
    let person = user.person_key();
    let opened = state.live.open(&person, &browser, credentials, last_id);
    let (backlog, rx, guard, first) = match opened {
        Ok(o) => o,
        Err(OpenError::Full) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "This server keeps as many live Inboxes open as it can; try again later.",
            );
        }
    };
    if let Some(feed) = state.live.feed(&person) {
        let app = state.clone().into_inner();
        if first {
            // Catch up from the page's time, and keep a deltaLink for later.
            tokio::spawn(Live::refresh(app.clone(), feed.clone()));
            if state.settings.notifications == Notifications::Poll {
                tokio::spawn(upkeep::poll(app, Arc::downgrade(&feed)));
            }
        }
    }
    let later = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // When the sign-in runs out, the stream says so and ends.
    let expiry = Duration::from_secs(u64::try_from(user.expires_at - now).unwrap_or(0));
    let expired = futures_util::stream::once(async move {
        tokio::time::sleep(expiry).await;
        Arc::new(LiveEvent::Expired)
    });
    // A newer stream of this browser may take this one's place, and a
    // stopping server ends them all.
    let ended = guard.ended.clone();
    let stopped = state.live.stopped();
    let replaced = async move {
        tokio::select! {
            () = ended.notified() => {}
            () = stopped => {}
        }
    };
    let events = futures_util::stream::iter(backlog)
        .chain(futures_util::stream::select(later, expired))
        .take_until(replaced)
        .scan(false, |done, event| {
            // Nothing after `expired`.
            let out = if *done { None } else { Some(event) };
            if matches!(out.as_deref(), Some(LiveEvent::Expired)) {
                *done = true;
            }
            std::future::ready(out)
        })
        .map(move |event| {
            // The guard lives as long as the stream: dropped with it.
            let _counted = &guard;
            sse_event(&event)
        });
    sse::Sse::from_infallible_stream(events)
        .with_keep_alive(state.settings.live_heartbeat)
        .with_retry_duration(Duration::from_secs(3))
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .respond_to(&req)
        .map_into_boxed_body()
}

fn sse_event(event: &LiveEvent) -> sse::Event {
    match event {
        LiveEvent::Rows {
            id,
            html,
            ids,
            announce,
        } => {
            let data = serde_json::json!({ "html": html, "ids": ids, "announce": announce });
            sse::Event::Data(
                sse::Data::new(data.to_string())
                    .event("rows")
                    .id(id.to_string()),
            )
        }
        LiveEvent::Expired => sse::Event::Data(sse::Data::new("{}").event("expired")),
    }
}
