//! One struct per page; every value is escaped by Askama.

use askama::Template;
use time::OffsetDateTime;

use crate::mail::model::{Address, iso_time, readable_size, readable_time};
use crate::mail::{Message, Profile};
use crate::sharepoint::SharePointUser;

/// What every page's frame needs: the demo banner and who is signed in.
#[derive(Clone, Default)]
pub struct Chrome {
    pub demo: bool,
    /// The signed-in person's display name, for the header.
    pub user: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomeView {
    pub chrome: Chrome,
    /// "Send me a test expense card" is offered.
    pub can_send: bool,
    pub person: Option<Person>,
    pub mail_api_label: &'static str,
}

/// The signed-in person on the home page.
pub struct Person {
    pub name: String,
    pub email: String,
    pub profile: Option<Profile>,
    /// Shown where the job title would be when `/me` failed.
    pub profile_note: Option<String>,
    pub sharepoint: Option<SharePointUser>,
}

impl Person {
    pub fn job_title(&self) -> Option<&str> {
        self.profile.as_ref().and_then(|p| p.job_title.as_deref())
    }
    pub fn display_name(&self) -> &str {
        self.profile
            .as_ref()
            .and_then(|p| p.display_name.as_deref())
            .unwrap_or(&self.name)
    }
    pub fn sharepoint_title(&self) -> Option<&str> {
        match &self.sharepoint {
            Some(SharePointUser::Found { title, .. }) => Some(title),
            _ => None,
        }
    }
    pub fn sharepoint_email(&self) -> Option<&str> {
        match &self.sharepoint {
            Some(SharePointUser::Found { email, .. }) => email.as_deref(),
            _ => None,
        }
    }
    pub fn sharepoint_note(&self) -> Option<&str> {
        match &self.sharepoint {
            Some(SharePointUser::Unavailable { reason }) => Some(reason),
            _ => None,
        }
    }
    pub fn initials(&self) -> String {
        self.display_name()
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .take(2)
            .collect::<String>()
            .to_uppercase()
    }
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxView {
    pub chrome: Chrome,
    pub email: String,
    pub page: u32,
    /// The page of newer messages, if any.
    pub newer: Option<u32>,
    /// The page of older messages, if any.
    pub older: Option<u32>,
    /// Search results for these words (`/mail?q=…`), not the Inbox.
    pub query: Option<String>,
    /// A later page of search results.
    pub continued: bool,
    /// "More results" (the search's next page).
    pub more_href: Option<String>,
    pub rows: Vec<MessageRow>,
    /// New mail appears by itself (page 1 of the Inbox, Graph): the time
    /// the page was made (Unix seconds), for the stream to start from.
    pub live_since: Option<i64>,
}

/// New Inbox rows, as the table renders them (for the live Inbox).
#[derive(Template)]
#[template(path = "live_rows.html")]
pub struct RowsView {
    pub rows: Vec<MessageRow>,
}

/// A message as the Inbox table shows it.
pub struct MessageRow {
    /// The message's link (`/mail/{id}`), when it has a usable id.
    pub href: Option<String>,
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub subject: Option<String>,
    pub received_text: Option<String>,
    pub received_iso: Option<String>,
    pub unread: bool,
    pub has_attachments: bool,
    pub important: bool,
}

impl MessageRow {
    pub fn new(m: Message, now: OffsetDateTime) -> Self {
        MessageRow {
            href: m.id.as_ref().map(|id| format!("/mail/{id}")),
            received_text: m.received.map(|t| readable_time(t, now)),
            received_iso: m.received.map(iso_time),
            from_name: m.from_name,
            from_address: m.from_address,
            subject: m.subject,
            unread: m.unread,
            has_attachments: m.has_attachments,
            important: m.important,
        }
    }
}

/// One message: its headers, attachments and the frame its body shows in.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessageView {
    pub chrome: Chrome,
    pub subject: Option<String>,
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub received_text: Option<String>,
    pub received_iso: Option<String>,
    pub important: bool,
    pub attachments: Vec<AttachmentRow>,
    /// "Open in Outlook on the web", when the link is to Outlook itself.
    pub web_link: Option<String>,
    pub images: bool,
    /// `/mail/{id}`.
    pub href: String,
    /// Demo mode: the stand-in card page, for an actionable message.
    pub card_link: Option<String>,
}

impl MessageView {
    pub fn new(
        chrome: Chrome,
        m: Message,
        web_link: Option<String>,
        images: bool,
        now: OffsetDateTime,
    ) -> Self {
        let from = (m.from_name.is_some() || m.from_address.is_some()).then(|| Address {
            name: m.from_name.clone(),
            address: m.from_address.clone(),
        });
        let href = format!("/mail/{}", m.id.as_deref().unwrap_or_default());
        MessageView {
            chrome,
            href: href.clone(),
            subject: m.subject,
            from,
            to: m.to,
            cc: m.cc,
            received_text: m.received.map(|t| readable_time(t, now)),
            received_iso: m.received.map(iso_time),
            important: m.important,
            attachments: m
                .attachments
                .into_iter()
                .filter(|a| !a.inline)
                .map(|a| AttachmentRow::new(&href, a))
                .collect(),
            web_link,
            images,
            card_link: None,
        }
    }
}

/// An attachment as the message page lists it.
pub struct AttachmentRow {
    /// Its download (or link) page, when it has a usable id.
    pub href: Option<String>,
    pub name: String,
    /// "message (.eml)" or "link", for what is not a plain file.
    pub kind: Option<&'static str>,
    pub size: Option<String>,
    pub content_type: Option<String>,
}

impl AttachmentRow {
    pub fn new(message_href: &str, a: crate::mail::model::Attachment) -> Self {
        use crate::mail::model::AttachmentKind;
        AttachmentRow {
            href: a
                .id
                .as_ref()
                .map(|aid| format!("{message_href}/attachments/{aid}")),
            kind: match a.kind {
                AttachmentKind::File => None,
                AttachmentKind::Item => Some("message, .eml"),
                AttachmentKind::Reference => Some("link to a file in cloud storage"),
            },
            size: a
                .size
                .filter(|_| a.kind != AttachmentKind::Reference)
                .map(readable_size),
            content_type: a.content_type,
            name: a.name,
        }
    }
}

/// A message body as its own document (for the sandboxed frame): sanitized
/// HTML, escaped text, or a one-line note.
#[derive(Template)]
#[template(path = "mail_body.html")]
pub struct BodyView<'a> {
    /// Already sanitized by [`crate::mail::sanitize`]; inserted as is.
    pub html: Option<&'a str>,
    /// Escaped by the template.
    pub text: Option<&'a str>,
    pub note: Option<&'a str>,
    pub truncated: bool,
    /// Nested deeper than is shown: the layout was simplified.
    pub flattened: bool,
}

impl<'a> BodyView<'a> {
    pub fn html(html: &'a str, truncated: bool, flattened: bool) -> Self {
        Self {
            html: Some(html),
            text: None,
            note: None,
            truncated,
            flattened,
        }
    }
    pub fn text(text: &'a str, truncated: bool) -> Self {
        Self {
            html: None,
            text: Some(text),
            note: None,
            truncated,
            flattened: false,
        }
    }
    pub fn note(note: &'a str) -> Self {
        Self {
            html: None,
            text: None,
            note: Some(note),
            truncated: false,
            flattened: false,
        }
    }
}

/// A reference attachment: a link to a file in cloud storage.
#[derive(Template)]
#[template(path = "attachment_link.html")]
pub struct AttachmentLinkView<'a> {
    pub chrome: Chrome,
    pub name: &'a str,
    /// The https link, when the mail API gave one.
    pub link: Option<&'a str>,
    pub host: Option<&'a str>,
    /// The message's page.
    pub back: &'a str,
}

/// "Your test expense card is on its way".
#[derive(Template)]
#[template(path = "card_sent.html")]
pub struct CardSentView {
    pub chrome: Chrome,
    pub expense_id: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorView<'a> {
    pub chrome: Chrome,
    pub status: u16,
    pub title: &'a str,
    pub detail: &'a str,
    /// A code from the remote side, e.g. `access_denied` or `ErrorItemNotFound`.
    pub code: Option<&'a str>,
    /// Text from the remote side (escaped like everything else).
    pub remote_detail: Option<&'a str>,
    /// The `client-request-id` to quote to an administrator.
    pub request_id: Option<&'a str>,
    pub action_href: &'a str,
    pub action_label: &'a str,
    /// The admin-consent link, on the "an administrator must approve" page.
    pub admin_link: Option<&'a str>,
}
