//! Graph's subscriptions API: create, renew, reauthorize and delete the one
//! subscription each person has to their Inbox (`changeType=created`).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::read_limited;

/// Graph keeps a message subscription at most 4,230 minutes; ours ask for
/// a little less, so that a clock a few minutes off is never refused.
pub const LIFETIME: Duration = Duration::from_secs(4_200 * 60);

/// What went wrong, by what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// The subscription no longer exists: create a new one.
    #[error("the subscription is gone")]
    Gone,
    /// The token was refused: wait for a fresh one (the next Inbox open).
    #[error("the access token was refused")]
    Unauthorized,
    #[error("Graph is throttling us (retry after {0:?} s)")]
    Throttled(Option<u64>),
    #[error("Graph refused: {0}")]
    Failed(String),
}

/// A subscription Graph accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

pub struct Subscriptions {
    http: reqwest::Client,
    /// `MAIL_API_URL` (Graph v1.0).
    base: String,
}

impl Subscriptions {
    pub fn new(http: reqwest::Client, base: &url::Url) -> Self {
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        mailbox: &str,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header(ACCEPT, "application/json")
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .header("return-client-request-id", "true");
        if let Ok(anchor) = HeaderValue::from_str(mailbox)
            && !mailbox.is_empty()
        {
            r = r.header("X-AnchorMailbox", anchor);
        }
        r
    }

    /// A new subscription to `mailbox`'s Inbox. Graph validates
    /// `notification_url` (and the lifecycle URL) before it answers.
    pub async fn create(
        &self,
        token: &str,
        mailbox: &str,
        notification_url: &str,
        lifecycle_url: &str,
        client_state: &str,
        now: OffsetDateTime,
    ) -> Result<Created, GraphError> {
        let body = json!({
            "changeType": "created",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": "me/mailFolders('inbox')/messages",
            "expirationDateTime": expiry(now),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        });
        let r = self
            .request(reqwest::Method::POST, "/subscriptions", token, mailbox)
            .json(&body);
        let answer = send(r).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            id: String,
            #[serde(rename = "expirationDateTime")]
            expiration: String,
        }
        let a: Answer = serde_json::from_slice(&answer)
            .map_err(|e| GraphError::Failed(format!("an unreadable answer ({e})")))?;
        if !crate::mail::model::valid_id(&a.id) {
            return Err(GraphError::Failed("an unusable subscription id".into()));
        }
        Ok(Created {
            id: a.id,
            expires_at: parse_expiry(&a.expiration, now),
        })
    }

    /// Moves the subscription's expiry to the longest Graph allows.
    pub async fn renew(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<i64, GraphError> {
        let r = self
            .request(reqwest::Method::PATCH, &path(id, ""), token, mailbox)
            .json(&json!({ "expirationDateTime": expiry(now) }));
        let answer = send(r).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "expirationDateTime")]
            expiration: Option<String>,
        }
        let a: Option<Answer> = serde_json::from_slice(&answer).ok();
        let fallback = now + LIFETIME;
        Ok(a.and_then(|a| a.expiration)
            .map(|e| parse_expiry(&e, now))
            .unwrap_or(fallback.unix_timestamp()))
    }

    /// Answers a `reauthorizationRequired` lifecycle event with a fresh token.
    pub async fn reauthorize(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
    ) -> Result<(), GraphError> {
        let r = self.request(
            reqwest::Method::POST,
            &path(id, "/reauthorize"),
            token,
            mailbox,
        );
        send(r).await.map(|_| ())
    }

    /// Deletes the subscription (at sign-out); one already gone is fine.
    pub async fn delete(&self, token: &str, mailbox: &str, id: &str) -> Result<(), GraphError> {
        let r = self.request(reqwest::Method::DELETE, &path(id, ""), token, mailbox);
        match send(r).await {
            Ok(_) | Err(GraphError::Gone) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A path segment: unreserved characters as they are (Graph's ids are
/// GUIDs), everything else encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn path(id: &str, rest: &str) -> String {
    let id = percent_encoding::utf8_percent_encode(id, SEGMENT);
    format!("/subscriptions/{id}{rest}")
}

fn expiry(now: OffsetDateTime) -> String {
    (now + LIFETIME)
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Graph's `expirationDateTime`, clamped to what Graph allows (a faulty
/// answer cannot keep a subscription "alive" for years).
fn parse_expiry(text: &str, now: OffsetDateTime) -> i64 {
    let longest = (now + Duration::from_secs(4_230 * 60)).unix_timestamp();
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(longest)
        .clamp(now.unix_timestamp(), longest)
}

/// Sends `r` and reads a success's body (at most 64 KB); failures by kind.
async fn send(r: reqwest::RequestBuilder) -> Result<Vec<u8>, GraphError> {
    let response = crate::metrics::send(crate::metrics::Service::Graph, r)
        .await
        .map_err(|e| GraphError::Failed(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return read_limited(response, 64 * 1024)
            .await
            .map_err(|e| GraphError::Failed(e.to_string()));
    }
    let wait = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::mail::parse_retry_after)
        .map(|s| s.ceil() as u64);
    let text = read_limited(response, 16 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.pointer("/error/code")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Err(match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => GraphError::Gone,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => GraphError::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            GraphError::Throttled(wait)
        }
        s => GraphError::Failed(format!("{s} {}", crate::logging::clean(&text))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiries_stay_under_graphs_cap() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let asked = OffsetDateTime::parse(&expiry(now), &Rfc3339).unwrap();
        assert!(asked - now <= time::Duration::minutes(4_230));
        assert!(asked - now >= time::Duration::minutes(4_100));
        assert_eq!(
            parse_expiry("2030-01-01T00:00:00Z", now),
            (now + time::Duration::minutes(4_230)).unix_timestamp()
        );
        assert_eq!(
            parse_expiry("1999-01-01T00:00:00Z", now),
            now.unix_timestamp()
        );
        assert_eq!(
            parse_expiry("2026-12-08T12:00:00.1234567Z", now),
            datetime!(2026-12-08 12:00 UTC).unix_timestamp()
        );
    }
}
