//! What every request leaves behind: an id (the `X-Request-Id` answer header,
//! and a `request_id` on every log line written while it runs), one request
//! line with method, route, status and duration, and, with metrics on, a count
//! and a latency sample by route pattern.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument as _;

use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label for requests no route matched (raw paths would let anyone
/// mint new series).
const UNMATCHED: &str = "unmatched";

pub async fn requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4();
    let span = tracing::info_span!("request", request_id = %id);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let metrics_on = state
        .as_ref()
        .is_some_and(|s| s.settings.metrics_bind.is_some());
    let method = req.method().clone();
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let (status, route) = match &result {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    let route = route.as_deref().unwrap_or(UNMATCHED);
    // Milliseconds with microsecond precision.
    let duration_ms = (elapsed.as_micros() as f64) / 1000.0;
    // Refused actions (forged tokens, bad bodies) are logged at a bounded
    // rate, their request lines too; metrics count them all.
    let refused_action = route.starts_with("/api/expense")
        && (status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE);
    let quiet = refused_action
        && state
            .as_ref()
            .is_some_and(|s| !s.actions.refused_request_lines.allow());
    span.in_scope(|| {
        if quiet {
            // Counted in the periodic summary line.
        } else if route == "/healthz" && status.is_success() {
            // A health probe every few seconds is not news unless it fails.
            tracing::debug!(method = %method, route, status = status.as_u16(), duration_ms, "request");
        } else {
            tracing::info!(method = %method, route, status = status.as_u16(), duration_ms, "request");
        }
    });
    if metrics_on {
        crate::metrics::request(&method, route, status.as_u16(), elapsed);
    }
    result.map(|mut res| {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        if let Ok(value) = HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)) {
            res.headers_mut().insert(REQUEST_ID, value);
        }
        res
    })
}
