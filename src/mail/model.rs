//! Messages and profiles as the pages show them, read from either API shape.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// The `value` array of an OData collection, and whether more pages follow.
#[derive(Deserialize)]
pub(super) struct Envelope<T = RawMessage> {
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// One message in Graph (camelCase) or Outlook REST (PascalCase) shape.
#[derive(Deserialize)]
pub(super) struct RawMessage {
    #[serde(default, alias = "Id")]
    id: Option<String>,
    #[serde(default, alias = "Subject")]
    subject: Option<String>,
    #[serde(default, alias = "From")]
    from: Option<RawRecipient>,
    #[serde(default, rename = "receivedDateTime", alias = "ReceivedDateTime")]
    received: Option<String>,
    #[serde(default, rename = "isRead", alias = "IsRead")]
    is_read: Option<bool>,
    #[serde(default, rename = "hasAttachments", alias = "HasAttachments")]
    has_attachments: Option<bool>,
    #[serde(default, alias = "Importance")]
    importance: Option<String>,
    #[serde(default, rename = "toRecipients", alias = "ToRecipients")]
    to: Option<Vec<RawRecipient>>,
    #[serde(default, rename = "ccRecipients", alias = "CcRecipients")]
    cc: Option<Vec<RawRecipient>>,
    #[serde(default, rename = "webLink", alias = "WebLink")]
    web_link: Option<String>,
    #[serde(default, alias = "Attachments")]
    attachments: Option<Vec<RawAttachment>>,
}

/// An attachment in either shape (`@odata.type` says which kind).
#[derive(Deserialize)]
pub(super) struct RawAttachment {
    #[serde(default, rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(default, alias = "Id")]
    id: Option<String>,
    #[serde(default, alias = "Name")]
    name: Option<String>,
    #[serde(default, rename = "contentType", alias = "ContentType")]
    content_type: Option<String>,
    #[serde(default, alias = "Size")]
    size: Option<u64>,
    #[serde(default, rename = "isInline", alias = "IsInline")]
    is_inline: Option<bool>,
    #[serde(default, rename = "contentId", alias = "ContentId")]
    pub content_id: Option<String>,
    /// Base64, for file attachments read one by one.
    #[serde(default, rename = "contentBytes", alias = "ContentBytes")]
    pub content_bytes: Option<String>,
    /// Where a reference attachment points (not every API version says).
    #[serde(default, rename = "sourceUrl", alias = "SourceUrl")]
    source_url: Option<String>,
}

/// A message body: `contentType` is `html` or `text`.
#[derive(Deserialize, Default)]
pub(super) struct RawBody {
    #[serde(default, rename = "contentType", alias = "ContentType")]
    pub content_type: Option<String>,
    #[serde(default, alias = "Content")]
    pub content: Option<String>,
}

#[derive(Deserialize)]
struct RawRecipient {
    #[serde(default, rename = "emailAddress", alias = "EmailAddress")]
    email_address: Option<RawEmailAddress>,
}

#[derive(Deserialize)]
struct RawEmailAddress {
    #[serde(default, alias = "Name")]
    name: Option<String>,
    #[serde(default, alias = "Address")]
    address: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawProfile {
    #[serde(default, rename = "displayName", alias = "DisplayName")]
    display_name: Option<String>,
    #[serde(default, rename = "jobTitle", alias = "JobTitle")]
    job_title: Option<String>,
}

/// A message: every field may be missing, and renders as such.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub id: Option<String>,
    pub subject: Option<String>,
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub received: Option<OffsetDateTime>,
    pub unread: bool,
    pub has_attachments: bool,
    pub important: bool,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub web_link: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// A recipient: a name, an address, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// What kind of attachment: a file, an attached item (another message,
/// downloaded as `.eml`), or a link to a file in cloud storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentKind {
    File,
    Item,
    Reference,
}

/// An attachment as the message page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id, when it has a usable one (checked like message ids).
    pub id: Option<String>,
    pub name: String,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    /// Shown in the body (a `cid:` image), not listed as an attachment.
    pub inline: bool,
    pub kind: AttachmentKind,
    /// A reference attachment's https link, when the API gave one.
    pub source_url: Option<String>,
}

impl From<RawAttachment> for Attachment {
    fn from(a: RawAttachment) -> Self {
        let t = a.odata_type.unwrap_or_default().to_ascii_lowercase();
        let kind = if t.ends_with("itemattachment") {
            AttachmentKind::Item
        } else if t.ends_with("referenceattachment") {
            AttachmentKind::Reference
        } else {
            AttachmentKind::File
        };
        Attachment {
            id: a.id.filter(|id| valid_id(id)),
            name: non_empty(a.name).unwrap_or_else(|| "(unnamed attachment)".into()),
            content_type: non_empty(a.content_type),
            size: a.size,
            inline: a.is_inline.unwrap_or(false),
            kind,
            source_url: non_empty(a.source_url)
                .filter(|u| url::Url::parse(u).is_ok_and(|u| u.scheme() == "https")),
        }
    }
}

/// One page of the Inbox, or of search results.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    pub messages: Vec<Message>,
    /// The API says more messages follow (`@odata.nextLink`).
    pub more: bool,
    /// That next page's whole URL, for search results (followed as is).
    pub next_link: Option<String>,
}

/// A message body as the API sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Html(String),
    Text(String),
}

/// The longest message id accepted; real ones are under 200 characters.
pub const MAX_ID_LEN: usize = 512;

/// True for a message id shape: `A–Z a–z 0–9 - _ =`, at most [`MAX_ID_LEN`].
/// Checked before any call, so that no path (`../`), query (`?`) or
/// parameter (`;`) can be smuggled into the upstream URL.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

/// "12 KB", "1.4 MB": an attachment's size as people read it.
pub fn readable_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{} KB", bytes.div_ceil(1_000)),
        _ => format!("{:.1} MB", bytes as f64 / 1_000_000.0),
    }
}

fn address(r: RawRecipient) -> Option<Address> {
    let a = r.email_address?;
    let (name, address) = (non_empty(a.name), non_empty(a.address));
    (name.is_some() || address.is_some()).then_some(Address { name, address })
}

/// The signed-in person as Graph `/me` describes them.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub display_name: Option<String>,
    pub job_title: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl From<RawMessage> for Message {
    fn from(raw: RawMessage) -> Self {
        let (from_name, from_address) = match raw.from.and_then(|f| f.email_address) {
            Some(a) => (non_empty(a.name), non_empty(a.address)),
            None => (None, None),
        };
        let recipients = |list: Option<Vec<RawRecipient>>| {
            list.unwrap_or_default()
                .into_iter()
                .filter_map(address)
                .collect()
        };
        Message {
            id: raw.id.filter(|id| valid_id(id)),
            subject: non_empty(raw.subject),
            from_name,
            from_address,
            unread: raw.is_read == Some(false),
            has_attachments: raw.has_attachments.unwrap_or(false),
            important: raw
                .importance
                .is_some_and(|i| i.eq_ignore_ascii_case("high")),
            to: recipients(raw.to),
            cc: recipients(raw.cc),
            web_link: non_empty(raw.web_link),
            attachments: raw
                .attachments
                .unwrap_or_default()
                .into_iter()
                .map(Attachment::from)
                .collect(),
            // Normalised to UTC here; a time that UTC cannot hold (year
            // 9999 at -23:59) is treated as missing rather than panicking later.
            received: raw
                .received
                .and_then(|r| OffsetDateTime::parse(&r, &Rfc3339).ok())
                .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC)),
        }
    }
}

impl From<RawProfile> for Profile {
    fn from(raw: RawProfile) -> Self {
        Profile {
            display_name: non_empty(raw.display_name),
            job_title: non_empty(raw.job_title),
        }
    }
}

/// A short, readable time: "Today 09:14", "Yesterday 17:02", "Mon 3 Nov"
/// this year, "3 Nov 2024" before. Times are UTC (the page says so).
pub fn readable_time(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let utc = |t: OffsetDateTime| t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    let t = utc(t);
    let today: Date = utc(now).date();
    let hm = format_description!("[hour]:[minute]");
    let clock = t.format(&hm).unwrap_or_default();
    if t.date() == today {
        format!("Today {clock}")
    } else if today.previous_day() == Some(t.date()) {
        format!("Yesterday {clock}")
    } else if t.year() == today.year() {
        let f = format_description!("[weekday repr:short] [day padding:none] [month repr:short]");
        t.format(&f).unwrap_or_default()
    } else {
        let f = format_description!("[day padding:none] [month repr:short] [year]");
        t.format(&f).unwrap_or_default()
    }
}

/// The ISO 8601 form for `<time datetime>`.
pub fn iso_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn both_api_shapes_read_the_same() {
        let graph: RawMessage = serde_json::from_str(
            r#"{"subject":"Hi","receivedDateTime":"2026-11-03T09:14:00Z","from":{"emailAddress":{"name":"Ann","address":"ann@contoso.com"}}}"#,
        )
        .unwrap();
        let outlook: RawMessage = serde_json::from_str(
            r#"{"Subject":"Hi","ReceivedDateTime":"2026-11-03T09:14:00Z","From":{"EmailAddress":{"Name":"Ann","Address":"ann@contoso.com"}}}"#,
        )
        .unwrap();
        for m in [Message::from(graph), Message::from(outlook)] {
            assert_eq!(m.subject.as_deref(), Some("Hi"));
            assert_eq!(m.from_name.as_deref(), Some("Ann"));
            assert_eq!(m.from_address.as_deref(), Some("ann@contoso.com"));
            assert_eq!(m.received, Some(datetime!(2026-11-03 09:14 UTC)));
        }
    }

    #[test]
    fn times_that_utc_cannot_hold_are_missing_not_a_panic() {
        for received in ["9999-12-31T23:59:59-23:59", "-9999-01-01T00:00:00+23:59"] {
            let raw: RawMessage =
                serde_json::from_str(&format!(r#"{{"receivedDateTime":"{received}"}}"#)).unwrap();
            assert!(Message::from(raw).received.is_none(), "{received}");
        }
        let edge = datetime!(9999-12-31 23:59:59 -23:59);
        let _ = readable_time(edge, edge);
    }

    #[test]
    fn ids_are_checked_before_any_call() {
        assert!(valid_id("AAMkADRmMDExYzhj-_=="));
        for bad in [
            "",
            "../x",
            "a%2Fb",
            "a b",
            "a;b",
            "a/b",
            "a?b",
            "é",
            &"A".repeat(513),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_id(&"A".repeat(512)));
    }

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(readable_size(512), "512 bytes");
        assert_eq!(readable_size(12_345), "13 KB");
        assert_eq!(readable_size(1_400_000), "1.4 MB");
    }

    #[test]
    fn flags_recipients_and_attachments_are_read_in_both_shapes() {
        let graph: RawMessage = serde_json::from_str(r##"{"id":"A1","isRead":false,"hasAttachments":true,"importance":"high",
            "toRecipients":[{"emailAddress":{"name":"Ann","address":"ann@contoso.com"}},{"emailAddress":{}}],
            "attachments":[{"@odata.type":"#microsoft.graph.fileAttachment","id":"AT1","name":"q4.xlsx","size":12345,"isInline":false,"contentType":"application/vnd.ms-excel"},
              {"@odata.type":"#microsoft.graph.itemAttachment","id":"AT2","name":"Fwd","size":10},
              {"@odata.type":"#microsoft.graph.referenceAttachment","id":"AT3","name":"Plan","sourceUrl":"http://x.example/plan"}]}"##).unwrap();
        let outlook: RawMessage = serde_json::from_str(
            r##"{"Id":"A1","IsRead":false,"HasAttachments":true,"Importance":"High",
            "ToRecipients":[{"EmailAddress":{"Name":"Ann","Address":"ann@contoso.com"}}],
            "Attachments":[{"@odata.type":"#Microsoft.OutlookServices.FileAttachment","Id":"AT1","Name":"q4.xlsx","Size":12345,"IsInline":false,"ContentType":"application/vnd.ms-excel"},
              {"@odata.type":"#Microsoft.OutlookServices.ItemAttachment","Id":"AT2","Name":"Fwd","Size":10},
              {"@odata.type":"#Microsoft.OutlookServices.ReferenceAttachment","Id":"AT3","Name":"Plan","SourceUrl":"http://x.example/plan"}]}"##,
        )
        .unwrap();
        for m in [Message::from(graph), Message::from(outlook)] {
            assert!(m.unread && m.has_attachments && m.important);
            assert_eq!(m.id.as_deref(), Some("A1"));
            assert_eq!(m.to.len(), 1);
            let a = &m.attachments;
            assert_eq!(a[0].name, "q4.xlsx");
            assert_eq!(a[0].id.as_deref(), Some("AT1"));
            assert_eq!(a[0].kind, AttachmentKind::File);
            assert_eq!(
                a[0].content_type.as_deref(),
                Some("application/vnd.ms-excel")
            );
            assert_eq!(a[1].kind, AttachmentKind::Item);
            assert_eq!(a[2].kind, AttachmentKind::Reference);
            assert_eq!(a[2].source_url, None, "a plain-http link is not offered");
        }
    }

    #[test]
    fn missing_fields_are_missing_not_errors() {
        let m: RawMessage = serde_json::from_str(r#"{"subject":"","from":null}"#).unwrap();
        let m = Message::from(m);
        assert!(m.subject.is_none() && m.from_name.is_none() && m.received.is_none());
    }

    #[test]
    fn times_read_like_a_mail_client() {
        let now = datetime!(2026-11-23 15:00 UTC);
        assert_eq!(
            readable_time(datetime!(2026-11-23 09:14 UTC), now),
            "Today 09:14"
        );
        assert_eq!(
            readable_time(datetime!(2026-11-22 17:02 UTC), now),
            "Yesterday 17:02"
        );
        assert_eq!(
            readable_time(datetime!(2026-11-03 08:00 UTC), now),
            "Tue 3 Nov"
        );
        assert_eq!(
            readable_time(datetime!(2024-11-03 08:00 UTC), now),
            "3 Nov 2024"
        );
    }
}
