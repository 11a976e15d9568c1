use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::de::DeserializeOwned;
use url::Url;

use super::model::{Envelope, Message, Profile, RawProfile};
use crate::http::read_limited;
use crate::logging::clean;
use crate::settings::MailApi;

/// Largest mail API answer we buffer (ten messages with three fields each are a few KB).
const MAX_BODY: usize = 1024 * 1024;

/// A throttled call is retried once when the server asks for at most this long.
const MAX_RETRY_WAIT: f64 = 5.0;

/// Why the mail call failed, keyed by what the caller must do.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MailError {
    /// The access token was refused: sign in again (with `claims`, when the
    /// API sent a claims challenge). `code` and `message` are what it said.
    #[error("the mail API refused the access token (client-request-id {client_request_id})")]
    Unauthorized {
        client_request_id: String,
        code: Option<String>,
        message: Option<String>,
        /// The decoded claims challenge of `error="insufficient_claims"`.
        claims: Option<String>,
    },
    /// Throttled twice (or asked to wait long): try again later.
    #[error("the mail API is throttling us (client-request-id {client_request_id})")]
    Throttled {
        retry_after_secs: Option<u64>,
        client_request_id: String,
    },
    /// Any other error status: give up, show what to quote to an admin.
    #[error("the mail API answered {status} (client-request-id {client_request_id})")]
    Upstream {
        status: u16,
        code: Option<String>,
        client_request_id: String,
        request_id: Option<String>,
    },
    #[error("the mail API did not answer in time (client-request-id {client_request_id})")]
    Timeout { client_request_id: String },
    #[error("the mail API could not be reached (client-request-id {client_request_id})")]
    Unreachable { client_request_id: String },
    #[error(
        "the mail API sent an answer we could not read (client-request-id {client_request_id})"
    )]
    Malformed {
        client_request_id: String,
        request_id: Option<String>,
    },
}

impl MailError {
    pub fn client_request_id(&self) -> &str {
        match self {
            MailError::Unauthorized {
                client_request_id, ..
            }
            | MailError::Throttled {
                client_request_id, ..
            }
            | MailError::Upstream {
                client_request_id, ..
            }
            | MailError::Timeout { client_request_id }
            | MailError::Unreachable { client_request_id }
            | MailError::Malformed {
                client_request_id, ..
            } => client_request_id,
        }
    }
}

/// Reads the Inbox and the profile through the shared HTTP client.
pub struct MailClient {
    http: reqwest::Client,
    base: String,
    api: MailApi,
}

impl MailClient {
    pub fn new(http: reqwest::Client, base: &Url, api: MailApi) -> Self {
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            api,
        }
    }

    /// The path and query of the Inbox call for this flavour.
    pub fn inbox_path(&self) -> &'static str {
        match self.api {
            MailApi::Graph => {
                "/me/mailfolders/inbox/messages?$top=10&$select=receivedDateTime,subject,from&$orderby=receivedDateTime%20DESC"
            }
            MailApi::Outlook => {
                "/me/mailfolders/inbox/messages?$top=10&$select=ReceivedDateTime,Subject,From&$orderby=ReceivedDateTime%20DESC"
            }
        }
    }

    /// The ten most recent Inbox messages, newest first.
    pub async fn inbox(&self, token: &str, mailbox: &str) -> Result<Vec<Message>, MailError> {
        let envelope: Envelope = self.get(self.inbox_path(), token, mailbox, true).await?;
        Ok(envelope.value.into_iter().map(Message::from).collect())
    }

    /// The signed-in person's name and job title (`/me`).
    pub async fn profile(&self, token: &str, mailbox: &str) -> Result<Profile, MailError> {
        let path = match self.api {
            MailApi::Graph => "/me?$select=displayName,jobTitle,mail",
            MailApi::Outlook => "/me",
        };
        let raw: RawProfile = self.get(path, token, mailbox, false).await?;
        Ok(raw.into())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        mailbox: &str,
        retry: bool,
    ) -> Result<T, MailError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .get(&url)
                .bearer_auth(token)
                .header(ACCEPT, "application/json")
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true");
            if let Ok(anchor) = HeaderValue::from_str(mailbox)
                && !mailbox.is_empty()
            {
                request = request.header("X-AnchorMailbox", anchor);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    tracing::warn!(%client_request_id, "mail API timed out");
                    return Err(MailError::Timeout { client_request_id });
                }
                Err(e) => {
                    tracing::warn!(%client_request_id, error = %e, "mail API unreachable");
                    return Err(MailError::Unreachable { client_request_id });
                }
            };
            let status = response.status();
            let request_id = header(&response, "request-id");
            match status {
                s if s.is_success() => {
                    let body = read_limited(response, MAX_BODY).await.map_err(|e| {
                        tracing::warn!(%client_request_id, ?request_id, error = %e, "reading the mail API answer failed");
                        if e.is_timeout() {
                            MailError::Timeout {
                                client_request_id: client_request_id.clone(),
                            }
                        } else {
                            MailError::Malformed {
                                client_request_id: client_request_id.clone(),
                                request_id: request_id.clone(),
                            }
                        }
                    })?;
                    return serde_json::from_slice(&body).map_err(|e| {
                        tracing::warn!(%client_request_id, ?request_id, error = %e, "mail API answer is not the expected JSON");
                        MailError::Malformed {
                            client_request_id,
                            request_id,
                        }
                    });
                }
                StatusCode::UNAUTHORIZED => {
                    let claims = header(&response, WWW_AUTHENTICATE.as_str())
                        .and_then(|v| claims_challenge(&v));
                    let (code, message) = error_of(response).await;
                    tracing::info!(%client_request_id, ?request_id, code = ?code.as_deref().map(clean), challenge = claims.is_some(), "mail API refused the access token");
                    return Err(MailError::Unauthorized {
                        client_request_id,
                        code,
                        message,
                        claims,
                    });
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let wait =
                        header(&response, RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v));
                    tracing::warn!(%client_request_id, ?request_id, %status, ?wait, attempt, "mail API is throttling");
                    match wait {
                        Some(secs) if retry && attempt == 1 && secs <= MAX_RETRY_WAIT => {
                            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                            continue;
                        }
                        _ => {
                            return Err(MailError::Throttled {
                                retry_after_secs: wait.map(|s| s.ceil() as u64),
                                client_request_id,
                            });
                        }
                    }
                }
                _ => {
                    let (code, _) = error_of(response).await;
                    tracing::warn!(%client_request_id, ?request_id, %status, code = ?code.as_deref().map(clean), "mail API failed");
                    return Err(MailError::Upstream {
                        status: status.as_u16(),
                        code,
                        client_request_id,
                        request_id,
                    });
                }
            }
        }
    }
}

/// Graph's `{"error": {"code", "message"}}` (or Outlook REST's PascalCase),
/// each shortened; `None`s when the body is not that.
async fn error_of(response: reqwest::Response) -> (Option<String>, Option<String>) {
    let body = read_limited(response, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let field = |names: [&str; 2]| {
        body.as_ref().and_then(|v| {
            names
                .iter()
                .find_map(|n| v.pointer(n).and_then(|c| c.as_str()))
                .map(|s| s.chars().take(300).collect::<String>())
        })
    };
    (
        field(["/error/code", "/error/Code"]),
        field(["/error/message", "/error/Message"]),
    )
}

/// The decoded `claims` of a `WWW-Authenticate: Bearer …, error="insufficient_claims",
/// claims="<base64>"` challenge: a JSON object of at most 4 KB, else `None`.
pub fn claims_challenge(header: &str) -> Option<String> {
    use base64::Engine as _;
    let param = |name: &str| {
        header.split(',').find_map(|part| {
            let (k, v) = part.trim().trim_start_matches("Bearer ").split_once('=')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    if param("error")? != "insufficient_claims" {
        return None;
    }
    let encoded = param("claims")?;
    if encoded.len() > 8 * 1024 {
        return None;
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(&encoded).ok())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    (value.is_object() && bytes.len() <= 4096).then(|| value.to_string())
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` as decimal seconds (Graph has sent both `10` and `2.128`).
/// An HTTP-date or garbage gives `None`.
pub fn parse_retry_after(value: &str) -> Option<f64> {
    let secs: f64 = value.trim().parse().ok()?;
    (0.0..86_400.0).contains(&secs).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claims_challenge_is_decoded_from_www_authenticate() {
        // {"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}
        let header = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=""#;
        let claims: serde_json::Value =
            serde_json::from_str(&claims_challenge(header).unwrap()).unwrap();
        assert_eq!(claims["access_token"]["nbf"]["value"], "1604106651");
        assert_eq!(claims_challenge(r#"Bearer error="invalid_token""#), None);
        assert_eq!(
            claims_challenge(r#"Bearer error="insufficient_claims", claims="!!!""#),
            None
        );
        // Valid base64 of something that is not a JSON object.
        assert_eq!(
            claims_challenge(r#"Bearer error="insufficient_claims", claims="WzFd""#),
            None
        );
    }

    #[test]
    fn retry_after_is_decimal_seconds() {
        assert_eq!(parse_retry_after("10"), Some(10.0));
        assert_eq!(parse_retry_after(" 2.128 "), Some(2.128));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
    }
}
