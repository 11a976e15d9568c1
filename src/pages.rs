//! One struct per page; every value is escaped by Askama.

use askama::Template;
use time::OffsetDateTime;

use crate::mail::model::{iso_time, readable_time};
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
    pub rows: Vec<MessageRow>,
}

/// A message as the Inbox table shows it.
pub struct MessageRow {
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub subject: Option<String>,
    pub received_text: Option<String>,
    pub received_iso: Option<String>,
}

impl MessageRow {
    pub fn new(m: Message, now: OffsetDateTime) -> Self {
        MessageRow {
            received_text: m.received.map(|t| readable_time(t, now)),
            received_iso: m.received.map(iso_time),
            from_name: m.from_name,
            from_address: m.from_address,
            subject: m.subject,
        }
    }
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
