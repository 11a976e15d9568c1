use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::de::DeserializeOwned;
use url::Url;

use super::model::{
    Attachment, AttachmentKind, Body, Envelope, InboxPage, Message, Profile, RawAttachment,
    RawBody, RawMessage, RawProfile, valid_id,
};
use crate::http::read_limited;
use crate::logging::clean;
use crate::settings::MailApi;

/// Largest mail API answer we buffer (ten messages with a few fields each are a few KB).
const MAX_BODY: usize = 1024 * 1024;

/// The most of one message body read: a 1 MB body shows whole, a larger one is cut here.
pub const MAX_MESSAGE_BODY: usize = 2 * 1024 * 1024;

/// Everything but unreserved characters and `=` is percent-encoded in a path
/// segment (ids are checked first; this is the second wall).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'=');

/// A query parameter's value: everything but unreserved characters encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const IMMUTABLE_ID: &str = "IdType=\"ImmutableId\"";
const BODY_HTML: &str = "outlook.body-content-type=\"html\"";

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
    /// The message does not exist (any more), or the id is not a message id.
    #[error("no such message (client-request-id {client_request_id})")]
    NotFound { client_request_id: String },
    /// A delta query's state is gone (`410`): start again without the deltaLink.
    #[error(
        "the mail API no longer knows this delta state (client-request-id {client_request_id})"
    )]
    SyncReset { client_request_id: String },
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
            | MailError::NotFound { client_request_id }
            | MailError::SyncReset { client_request_id }
            | MailError::Malformed {
                client_request_id, ..
            } => client_request_id,
        }
    }
}

/// A message body as the API sent it, with its `changeKey`.
#[derive(Debug)]
pub struct BodyAnswer {
    pub body: Body,
    /// Cut at [`MAX_MESSAGE_BODY`].
    pub truncated: bool,
    pub change_key: Option<String>,
}

/// One round of a delta query: the Inbox messages created or changed (not
/// the removed ones), and where to go on.
#[derive(Debug, Default)]
pub struct DeltaPage {
    pub messages: Vec<Message>,
    /// More of this round.
    pub next_link: Option<String>,
    /// The round is done: ask this next time.
    pub delta_link: Option<String>,
}

/// An inline image: what the body's `cid:` names, and its content.
#[derive(Debug, Clone)]
pub struct InlineImage {
    pub content_id: String,
    pub content_type: String,
    /// Base64, as the API sent it.
    pub base64: String,
}

/// `words` as one KQL phrase for `$search`: in double quotes, with `\` and
/// `"` escaped, so that nothing in it is read as an operator or a property.
pub fn kql_phrase(words: &str) -> String {
    let mut phrase = String::with_capacity(words.len() + 2);
    phrase.push('"');
    for c in words.chars() {
        match c {
            '"' | '\\' => {
                phrase.push('\\');
                phrase.push(c);
            }
            c if c.is_control() => phrase.push(' '),
            c => phrase.push(c),
        }
    }
    phrase.push('"');
    phrase
}

/// Reads the Inbox and the profile through the shared HTTP client.
pub struct MailClient {
    http: reqwest::Client,
    base: String,
    api: MailApi,
    /// How long an answer's head may take (the shared client's timeout
    /// covers whole answers; a streamed download gets longer, see
    /// [`DOWNLOAD_LIMIT`]).
    head_timeout: Duration,
}

/// A streamed attachment may take this long in all (a large file to a slow
/// browser: the upstream is read only as fast as the browser takes it).
pub const DOWNLOAD_LIMIT: Duration = Duration::from_secs(3600);

/// A streamed attachment whose upstream sends nothing for this long is cut.
pub const DOWNLOAD_IDLE: Duration = Duration::from_secs(30);

impl MailClient {
    pub fn new(http: reqwest::Client, base: &Url, api: MailApi, head_timeout: Duration) -> Self {
        Self {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            api,
            head_timeout,
        }
    }

    /// The path and query of the Inbox call for this flavour: page `page`
    /// (1-based) of ten, newest first, with only the fields the list shows.
    pub fn inbox_path(&self, page: u32) -> String {
        let skip = match page {
            0 | 1 => String::new(),
            n => format!("&$skip={}", 10 * (n - 1)),
        };
        match self.api {
            MailApi::Graph => format!(
                "/me/mailfolders/inbox/messages?$top=10{skip}&$select=receivedDateTime,subject,from,isRead,hasAttachments,importance&$orderby=receivedDateTime%20DESC"
            ),
            MailApi::Outlook => format!(
                "/me/mailfolders/inbox/messages?$top=10{skip}&$select=ReceivedDateTime,Subject,From,IsRead,HasAttachments,Importance&$orderby=ReceivedDateTime%20DESC"
            ),
        }
    }

    /// One page of ten Inbox messages, newest first.
    pub async fn inbox(
        &self,
        token: &str,
        mailbox: &str,
        page: u32,
    ) -> Result<InboxPage, MailError> {
        let envelope: Envelope = self
            .get(&self.inbox_path(page), token, mailbox, true)
            .await?;
        Ok(InboxPage {
            more: envelope.next_link.is_some(),
            next_link: None,
            messages: envelope.value.into_iter().map(Message::from).collect(),
        })
    }

    /// `/me/messages/{id}` with `query`; the id is checked and percent-encoded.
    fn message_path(&self, id: &str, query: &str) -> Result<String, MailError> {
        if !valid_id(id) {
            return Err(MailError::NotFound {
                client_request_id: String::new(),
            });
        }
        let segment = percent_encoding::utf8_percent_encode(id, PATH_SEGMENT);
        Ok(format!("/me/messages/{segment}?{query}"))
    }

    /// One message's headers, recipients and attachments (not its body).
    pub async fn message(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
    ) -> Result<Message, MailError> {
        let query = match self.api {
            MailApi::Graph => {
                "$select=subject,from,toRecipients,ccRecipients,receivedDateTime,isRead,hasAttachments,importance,webLink&$expand=attachments($select=id,name,contentType,size,isInline)"
            }
            MailApi::Outlook => {
                "$select=Subject,From,ToRecipients,CcRecipients,ReceivedDateTime,IsRead,HasAttachments,Importance,WebLink&$expand=Attachments($select=Id,Name,ContentType,Size,IsInline)"
            }
        };
        let path = self.message_path(id, query)?;
        let raw: RawMessage = self.get(&path, token, mailbox, true).await?;
        let mut message = Message::from(raw);
        // The id we asked for, whatever the answer says.
        message.id = Some(id.to_owned());
        Ok(message)
    }

    /// One message's body, as HTML when it has one, and its `changeKey`
    /// (which changes whenever the message does). A body over
    /// [`MAX_MESSAGE_BODY`] is cut there (`truncated`), never read whole.
    pub async fn body(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
    ) -> Result<BodyAnswer, MailError> {
        let query = match self.api {
            MailApi::Graph => "$select=changeKey,body",
            MailApi::Outlook => "$select=ChangeKey,Body",
        };
        let path = self.message_path(id, query)?;
        let answer = self
            .fetch(
                &path,
                token,
                mailbox,
                true,
                Some(BODY_HTML),
                Read::Prefix(MAX_MESSAGE_BODY),
            )
            .await?;
        let (raw, change_key, truncated) = parse_body(&answer.bytes, answer.truncated).ok_or_else(|| {
            tracing::warn!(client_request_id = %answer.client_request_id, upstream_request_id = answer.request_id.as_deref().unwrap_or(""), "the message body is not the expected JSON");
            MailError::Malformed {
                client_request_id: answer.client_request_id.clone(),
                request_id: answer.request_id.clone(),
            }
        })?;
        let content = raw.content.unwrap_or_default();
        let body = match raw.content_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("html") => Body::Html(content),
            _ => Body::Text(content),
        };
        Ok(BodyAnswer {
            body,
            truncated,
            change_key,
        })
    }

    /// `/me/messages/{id}/attachments[/{aid}]…`, both ids checked and encoded.
    fn attachment_path(
        &self,
        id: &str,
        aid: Option<&str>,
        rest: &str,
    ) -> Result<String, MailError> {
        let path = self.message_path(id, "")?;
        let base = path.trim_end_matches('?');
        match aid {
            None => Ok(format!("{base}/attachments{rest}")),
            Some(aid) if valid_id(aid) => {
                let aid = percent_encoding::utf8_percent_encode(aid, PATH_SEGMENT);
                Ok(format!("{base}/attachments/{aid}{rest}"))
            }
            Some(_) => Err(MailError::NotFound {
                client_request_id: String::new(),
            }),
        }
    }

    fn attachment_select(&self) -> &'static str {
        match self.api {
            MailApi::Graph => "?$select=id,name,contentType,size,isInline",
            MailApi::Outlook => "?$select=Id,Name,ContentType,Size,IsInline",
        }
    }

    /// A message's attachments, without their content.
    pub async fn attachments(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
    ) -> Result<Vec<Attachment>, MailError> {
        let path = self.attachment_path(id, None, self.attachment_select())?;
        let envelope: Envelope<RawAttachment> = self.get(&path, token, mailbox, true).await?;
        Ok(envelope.value.into_iter().map(Attachment::from).collect())
    }

    /// One attachment, without its content. A reference attachment is read
    /// whole (it has no content, and its link is not selectable everywhere).
    pub async fn attachment(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
        aid: &str,
    ) -> Result<Attachment, MailError> {
        let path = self.attachment_path(id, Some(aid), self.attachment_select())?;
        let raw: RawAttachment = self.get(&path, token, mailbox, true).await?;
        let attachment = Attachment::from(raw);
        if attachment.kind != AttachmentKind::Reference {
            return Ok(attachment);
        }
        let path = self.attachment_path(id, Some(aid), "")?;
        let raw: RawAttachment = self.get(&path, token, mailbox, true).await?;
        Ok(Attachment::from(raw))
    }

    /// An inline image's type, content id and base64 content (a file
    /// attachment read as JSON, at most `limit` bytes of answer).
    pub async fn inline_image(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
        aid: &str,
        limit: usize,
    ) -> Result<Option<InlineImage>, MailError> {
        let path = self.attachment_path(id, Some(aid), "")?;
        let answer = self
            .fetch(&path, token, mailbox, true, None, Read::Whole(limit))
            .await?;
        let raw: RawAttachment =
            serde_json::from_slice(&answer.bytes).map_err(|_| MailError::Malformed {
                client_request_id: answer.client_request_id.clone(),
                request_id: answer.request_id.clone(),
            })?;
        let content_id = raw.content_id.clone();
        let bytes = raw.content_bytes.clone();
        let a = Attachment::from(raw);
        Ok(match (content_id, bytes, a.content_type) {
            (Some(cid), Some(base64), Some(content_type)) => Some(InlineImage {
                content_id: cid,
                content_type,
                base64,
            }),
            _ => None,
        })
    }

    /// An attachment's raw content (`…/$value`: a file's bytes, or an
    /// attached item's MIME), as a response to stream on, never read here.
    pub async fn attachment_value(
        &self,
        token: &str,
        mailbox: &str,
        id: &str,
        aid: &str,
    ) -> Result<reqwest::Response, MailError> {
        let path = self.attachment_path(id, Some(aid), "/$value")?;
        let url = format!("{}{path}", self.base);
        self.send(&url, token, mailbox, true, None, true)
            .await
            .map(|(response, _, _)| response)
    }

    /// Messages that match `query` (Graph's `$search`, KQL, newest sent
    /// first), ten at a time; `next` is the previous page's
    /// `@odata.nextLink`, followed whole once it is checked to be ours.
    pub async fn search(
        &self,
        token: &str,
        mailbox: &str,
        query: &str,
        next: Option<&str>,
    ) -> Result<InboxPage, MailError> {
        let url = match next {
            Some(link) => self.own_link(link).ok_or(MailError::NotFound {
                client_request_id: String::new(),
            })?,
            None => format!("{}{}", self.base, self.search_path(query)),
        };
        let answer = self
            .fetch_url(&url, token, mailbox, true, None, Read::Whole(MAX_BODY))
            .await?;
        let envelope: Envelope = serde_json::from_slice(&answer.bytes).map_err(|e| {
            tracing::warn!(client_request_id = %answer.client_request_id, error = %e, "search answer is not the expected JSON");
            MailError::Malformed {
                client_request_id: answer.client_request_id.clone(),
                request_id: answer.request_id.clone(),
            }
        })?;
        let next_link = envelope.next_link.filter(|l| self.own_link(l).is_some());
        Ok(InboxPage {
            more: next_link.is_some(),
            next_link,
            messages: envelope.value.into_iter().map(Message::from).collect(),
        })
    }

    /// One round of the Inbox's delta query: from `link` (a nextLink or
    /// deltaLink of an earlier round, checked to be ours), or, without one,
    /// a fresh start that counts only messages received from `since` on
    /// (Graph's `$filter` on `receivedDateTime`), so that an Inbox of
    /// thousands is not read in full to find what is new.
    pub async fn delta(
        &self,
        token: &str,
        mailbox: &str,
        link: Option<&str>,
        since: time::OffsetDateTime,
    ) -> Result<DeltaPage, MailError> {
        let url = match link {
            Some(link) => self.own_delta_link(link).ok_or(MailError::SyncReset {
                client_request_id: String::new(),
            })?,
            None => {
                let since = since
                    .replace_nanosecond(0)
                    .unwrap_or(since)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let filter = format!("receivedDateTime ge {since}");
                let filter = percent_encoding::utf8_percent_encode(&filter, QUERY_VALUE);
                format!(
                    "{}/me/mailFolders/inbox/messages/delta?$select=receivedDateTime,subject,from,isRead,hasAttachments,importance&$filter={filter}",
                    self.base
                )
            }
        };
        let answer = self
            .fetch_url(
                &url,
                token,
                mailbox,
                false,
                Some("odata.maxpagesize=50"),
                Read::Whole(MAX_BODY),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            value: Vec<serde_json::Value>,
            #[serde(default, rename = "@odata.nextLink")]
            next_link: Option<String>,
            #[serde(default, rename = "@odata.deltaLink")]
            delta_link: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(&answer.bytes).map_err(|e| {
            tracing::warn!(client_request_id = %answer.client_request_id, error = %e, "the delta answer is not the expected JSON");
            MailError::Malformed {
                client_request_id: answer.client_request_id.clone(),
                request_id: answer.request_id.clone(),
            }
        })?;
        let mut page = DeltaPage {
            next_link: raw.next_link.filter(|l| self.own_delta_link(l).is_some()),
            delta_link: raw.delta_link.filter(|l| self.own_delta_link(l).is_some()),
            ..DeltaPage::default()
        };
        for item in raw.value {
            if item.get("@removed").is_some() {
                continue;
            }
            if let Ok(m) = serde_json::from_value::<RawMessage>(item) {
                page.messages.push(Message::from(m));
            }
        }
        Ok(page)
    }

    /// `link` when it is a delta URL of this mail API's Inbox.
    pub fn own_delta_link(&self, link: &str) -> Option<String> {
        let url = Url::parse(link).ok()?;
        let base = Url::parse(&self.base).ok()?;
        let path = url.path().to_ascii_lowercase();
        let inbox = format!(
            "{}/me/mailfolders/inbox/messages/delta",
            base.path().trim_end_matches('/').to_ascii_lowercase()
        );
        let quoted = format!(
            "{}/me/mailfolders('inbox')/messages/delta",
            base.path().trim_end_matches('/').to_ascii_lowercase()
        );
        (url.origin() == base.origin()
            && (path == inbox || path == quoted || path == quoted.replace('\'', "%27"))
            && url.fragment().is_none()
            && url.username().is_empty())
        .then(|| url.to_string())
    }

    /// The path and query of a search: `$search` with the words as one KQL
    /// phrase (`"` and `\` escaped inside it), the list's fields, ten.
    pub fn search_path(&self, query: &str) -> String {
        let phrase = kql_phrase(query);
        let search = percent_encoding::utf8_percent_encode(&phrase, QUERY_VALUE);
        match self.api {
            MailApi::Graph => format!(
                "/me/messages?$search={search}&$top=10&$select=receivedDateTime,subject,from,isRead,hasAttachments,importance"
            ),
            MailApi::Outlook => format!(
                "/me/messages?$search={search}&$top=10&$select=ReceivedDateTime,Subject,From,IsRead,HasAttachments,Importance"
            ),
        }
    }

    /// `link` when it is a messages URL of this mail API (a next page to
    /// follow with the person's token goes nowhere else).
    pub fn own_link(&self, link: &str) -> Option<String> {
        let url = Url::parse(link).ok()?;
        let base = Url::parse(&self.base).ok()?;
        let path = format!("{}/me/messages", base.path().trim_end_matches('/'));
        (url.origin() == base.origin()
            && url.path() == path
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none())
        .then(|| url.to_string())
    }

    /// Sends an HTML email from the signed-in person to `to` with Graph's
    /// `POST /me/sendMail` (202; needs `Mail.Send`), saved to Sent Items.
    pub async fn send_mail(
        &self,
        token: &str,
        mailbox: &str,
        to: &str,
        subject: &str,
        html: &str,
    ) -> Result<(), MailError> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let message = serde_json::json!({
            "message": {
                "subject": subject,
                "body": {"contentType": "HTML", "content": html},
                "toRecipients": [{"emailAddress": {"address": to}}],
            },
            "saveToSentItems": true,
        });
        let mut request = self
            .http
            .post(format!("{}/me/sendMail", self.base))
            .bearer_auth(token)
            .header(ACCEPT, "application/json")
            .header("client-request-id", &client_request_id)
            .header("return-client-request-id", "true")
            .json(&message);
        if let Ok(anchor) = HeaderValue::from_str(mailbox)
            && !mailbox.is_empty()
        {
            request = request.header("X-AnchorMailbox", anchor);
        }
        let response = crate::metrics::send(crate::metrics::Service::Graph, request)
            .await
            .map_err(|e| send_failed(e, client_request_id.clone()))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(failure(response, client_request_id).await)
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
        let answer = self
            .fetch(path, token, mailbox, retry, None, Read::Whole(MAX_BODY))
            .await?;
        serde_json::from_slice(&answer.bytes).map_err(|e| {
            tracing::warn!(client_request_id = %answer.client_request_id, upstream_request_id = answer.request_id.as_deref().unwrap_or(""), error = %e, "mail API answer is not the expected JSON");
            MailError::Malformed {
                client_request_id: answer.client_request_id,
                request_id: answer.request_id,
            }
        })
    }

    /// One call with the design's headers to `path` under the base URL.
    async fn fetch(
        &self,
        path: &str,
        token: &str,
        mailbox: &str,
        retry: bool,
        prefer: Option<&str>,
        read: Read,
    ) -> Result<Answer, MailError> {
        let url = format!("{}{path}", self.base);
        self.fetch_url(&url, token, mailbox, retry, prefer, read)
            .await
    }

    /// One call to `url`, its answer read as `read` says.
    async fn fetch_url(
        &self,
        url: &str,
        token: &str,
        mailbox: &str,
        retry: bool,
        prefer: Option<&str>,
        read: Read,
    ) -> Result<Answer, MailError> {
        let (response, client_request_id, request_id) =
            self.send(url, token, mailbox, retry, prefer, false).await?;
        let read = match read {
            Read::Whole(limit) => read_limited(response, limit).await.map(|b| (b, false)),
            Read::Prefix(limit) => read_prefix(response, limit).await,
        };
        let (bytes, truncated) = read.map_err(|e| {
            tracing::warn!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), error = %e, "reading the mail API answer failed");
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
        Ok(Answer {
            bytes,
            truncated,
            client_request_id,
            request_id,
        })
    }

    /// Sends a GET with the design's headers, retrying once on a short
    /// throttle; a success is returned unread (with its client and server
    /// request ids), every failure is mapped and logged with both ids.
    async fn send(
        &self,
        url: &str,
        token: &str,
        mailbox: &str,
        retry: bool,
        prefer: Option<&str>,
        streamed: bool,
    ) -> Result<(reqwest::Response, String, Option<String>), MailError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut request = self
                .http
                .get(url)
                .bearer_auth(token)
                .header(ACCEPT, "application/json")
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true");
            // Immutable ids survive a move to another folder (Graph only).
            let prefer = match (self.api, prefer) {
                (MailApi::Graph, Some(p)) => Some(format!("{IMMUTABLE_ID}, {p}")),
                (MailApi::Graph, None) => Some(IMMUTABLE_ID.to_owned()),
                (MailApi::Outlook, p) => p.map(str::to_owned),
            };
            if let Some(p) = prefer {
                request = request.header("Prefer", p);
            }
            if let Ok(anchor) = HeaderValue::from_str(mailbox)
                && !mailbox.is_empty()
            {
                request = request.header("X-AnchorMailbox", anchor);
            }
            let response = if streamed {
                // The head within the usual time; the body as long as the
                // browser takes to read it.
                let request = request.timeout(DOWNLOAD_LIMIT);
                match tokio::time::timeout(
                    self.head_timeout,
                    crate::metrics::send(crate::metrics::Service::Graph, request),
                )
                .await
                {
                    Ok(sent) => sent.map_err(|e| send_failed(e, client_request_id.clone()))?,
                    Err(_) => {
                        crate::metrics::upstream_timed_out(crate::metrics::Service::Graph);
                        tracing::warn!(%client_request_id, "mail API timed out");
                        return Err(MailError::Timeout { client_request_id });
                    }
                }
            } else {
                crate::metrics::send(crate::metrics::Service::Graph, request)
                    .await
                    .map_err(|e| send_failed(e, client_request_id.clone()))?
            };
            let status = response.status();
            let request_id = header(&response, "request-id");
            match status {
                s if s.is_success() => return Ok((response, client_request_id, request_id)),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    if retry && attempt == 1 =>
                {
                    let wait =
                        header(&response, RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v));
                    if let Some(secs) = wait.filter(|s| *s <= MAX_RETRY_WAIT) {
                        tracing::warn!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), %status, secs, "mail API is throttling; retrying once");
                        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                        continue;
                    }
                    return Err(failure(response, client_request_id).await);
                }
                _ => return Err(failure(response, client_request_id).await),
            }
        }
    }
}

/// A request that got no answer: timed out, or the API could not be reached.
fn send_failed(e: reqwest::Error, client_request_id: String) -> MailError {
    if e.is_timeout() {
        tracing::warn!(%client_request_id, "mail API timed out");
        MailError::Timeout { client_request_id }
    } else {
        tracing::warn!(%client_request_id, error = %e, "mail API unreachable");
        MailError::Unreachable { client_request_id }
    }
}

/// An answer that is not a success, by what the caller must do: sign in
/// again (with a claims challenge, if any), give up on a missing item, wait
/// (throttled), or show what to quote to an administrator. Logged with both
/// request ids.
async fn failure(response: reqwest::Response, client_request_id: String) -> MailError {
    let status = response.status();
    let request_id = header(&response, "request-id");
    match status {
        StatusCode::UNAUTHORIZED => {
            let claims =
                header(&response, WWW_AUTHENTICATE.as_str()).and_then(|v| claims_challenge(&v));
            let (code, message) = error_of(response).await;
            tracing::info!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), code = ?code.as_deref().map(clean), challenge = claims.is_some(), "mail API refused the access token");
            MailError::Unauthorized {
                client_request_id,
                code,
                message,
                claims,
            }
        }
        StatusCode::NOT_FOUND => {
            tracing::info!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), "mail API: no such item");
            MailError::NotFound { client_request_id }
        }
        StatusCode::GONE => {
            tracing::info!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), "mail API: the delta state is gone; starting again");
            MailError::SyncReset { client_request_id }
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            let wait = header(&response, RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v));
            tracing::warn!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), %status, ?wait, "mail API is throttling");
            MailError::Throttled {
                retry_after_secs: wait.map(|s| s.ceil() as u64),
                client_request_id,
            }
        }
        _ => {
            let (code, _) = error_of(response).await;
            tracing::warn!(%client_request_id, upstream_request_id = request_id.as_deref().unwrap_or(""), %status, code = ?code.as_deref().map(clean), "mail API failed");
            MailError::Upstream {
                status: status.as_u16(),
                code,
                client_request_id,
                request_id,
            }
        }
    }
}

/// How much of a successful answer to read.
#[derive(Clone, Copy)]
enum Read {
    /// All of it, or an error past the limit.
    Whole(usize),
    /// At most the limit; the rest is not read.
    Prefix(usize),
}

struct Answer {
    bytes: Vec<u8>,
    truncated: bool,
    client_request_id: String,
    request_id: Option<String>,
}

/// Reads at most `limit` bytes of a body; `true` when there was more.
async fn read_prefix(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), crate::http::ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(crate::http::ReadError::Transport)?
    {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Parses a `$select=body` answer. When the read was cut short, the JSON is
/// cut inside the body's `content` string: close that string and the two
/// objects, dropping a partial escape or character at the cut.
fn parse_body(bytes: &[u8], truncated: bool) -> Option<(RawBody, Option<String>, bool)> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        #[serde(alias = "Body")]
        body: Option<RawBody>,
        #[serde(default, rename = "changeKey", alias = "ChangeKey")]
        change_key: Option<String>,
    }
    if !truncated {
        let w: Wrapper = serde_json::from_slice(bytes).ok()?;
        return Some((w.body?, w.change_key, false));
    }
    for drop in 0..8 {
        let end = bytes.len().checked_sub(drop)?;
        let mut repaired = bytes[..end].to_vec();
        repaired.extend_from_slice(b"\"}}");
        if let Ok(w) = serde_json::from_slice::<Wrapper>(&repaired)
            && let Some(body) = w.body
        {
            return Some((body, w.change_key, true));
        }
    }
    None
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
    fn a_body_cut_short_is_repaired_at_the_cut() {
        let whole = br#"{"@odata.etag":"W/\"x\"","id":"A","body":{"contentType":"html","content":"<p>caf\u00e9 \"quoted\" text</p>"}}"#;
        let (b, _, cut) = parse_body(whole, false).unwrap();
        assert!(!cut);
        assert_eq!(b.content.as_deref(), Some("<p>café \"quoted\" text</p>"));
        // Cut anywhere inside the content: inside an escape, or a UTF-8 character.
        let content_start = whole
            .windows(11)
            .position(|w| w == b"\"content\":\"")
            .unwrap()
            + 11;
        for end in content_start..whole.len() - 3 {
            let (b, _, cut) =
                parse_body(&whole[..end], true).unwrap_or_else(|| panic!("cut at {end}"));
            assert!(cut);
            assert!(b.content.unwrap().len() <= end - content_start);
        }
        let utf8 = "{\"body\":{\"contentType\":\"text\",\"content\":\"ééé".as_bytes();
        assert!(parse_body(&utf8[..utf8.len() - 1], true).is_some());
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
