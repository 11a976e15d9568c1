//! Messages and profiles as the pages show them, read from either API shape.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// The `value` array of an OData collection.
#[derive(Deserialize)]
pub(super) struct Envelope {
    pub value: Vec<RawMessage>,
}

/// One message in Graph (camelCase) or Outlook REST (PascalCase) shape.
#[derive(Deserialize)]
pub(super) struct RawMessage {
    #[serde(default, alias = "Subject")]
    subject: Option<String>,
    #[serde(default, alias = "From")]
    from: Option<RawRecipient>,
    #[serde(default, rename = "receivedDateTime", alias = "ReceivedDateTime")]
    received: Option<String>,
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

/// A message row: every field may be missing, and renders as such.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: Option<String>,
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub received: Option<OffsetDateTime>,
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
        Message {
            subject: non_empty(raw.subject),
            from_name,
            from_address,
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
