//! The demo people and their mailboxes: realistic, varied, and awkward on purpose.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::bodies::{self, DemoBody};

/// A person of the demo tenant.
pub struct DemoPerson {
    pub oid: &'static str,
    pub name: &'static str,
    pub upn: &'static str,
    pub job_title: Option<&'static str>,
    pub office: &'static str,
}

/// The demo tenant's id (a GUID, as the issuer rule requires).
pub const TENANT_ID: &str = "2b7f8c1e-5d3a-4f6b-9e0c-71a2d4c8b3f5";

pub const PEOPLE: [DemoPerson; 3] = [
    DemoPerson {
        oid: "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a51",
        name: "Adele Vance",
        upn: "AdeleV@contoso.com",
        job_title: Some("Retail Manager"),
        office: "Seattle",
    },
    DemoPerson {
        oid: "a1b2c3d4-0002-4e5f-8a9b-0c1d2e3f4a52",
        name: "Alex Wilber",
        upn: "AlexW@contoso.com",
        job_title: Some("Marketing Assistant"),
        office: "Lisbon",
    },
    DemoPerson {
        oid: "a1b2c3d4-0003-4e5f-8a9b-0c1d2e3f4a53",
        name: "Megan Bowen",
        upn: "MeganB@contoso.com",
        job_title: None,
        office: "Berlin",
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Folder {
    Inbox,
    SentItems,
    Drafts,
}

/// One stored message.
#[derive(Clone, Debug)]
pub struct DemoMessage {
    pub id: String,
    pub folder: Folder,
    pub subject: String,
    /// `None` for a draft; a sender may have no display name.
    pub from: Option<(Option<String>, String)>,
    pub received: OffsetDateTime,
    pub body: DemoBody,
    pub unread: bool,
    pub important: bool,
    pub attachments: Vec<(&'static str, u64)>,
    pub to: Vec<(String, String)>,
    pub cc: Vec<(String, String)>,
    /// An actionable message's card: as sent, and as last refreshed.
    pub card: Option<DemoCard>,
}

/// The card of an actionable message in the demo mailbox.
#[derive(Clone, Debug)]
pub struct DemoCard {
    /// The card as it arrived (its buttons stay pressable on this copy).
    pub original: Arc<str>,
    /// The card as Outlook shows it now (replaced by refresh answers).
    pub current: Arc<str>,
}

/// (sender name, sender address, subject) for the Inbox, newest first.
const INBOX: &[(Option<&str>, &str, &str)] = &[
    (
        Some("Megan Bowen"),
        "MeganB@contoso.com",
        "Q4 budget review — numbers attached",
    ),
    (
        None,
        "noreply@notifications.contoso.com",
        "Your weekly digest is ready",
    ),
    (Some("Alex Wilber"), "AlexW@contoso.com", ""),
    (
        Some("Lee Gu"),
        "LeeG@contoso.com",
        "<script>alert('inbox')</script> Quarterly numbers",
    ),
    (
        Some("Isaiah Langer"),
        "IsaiahL@contoso.com",
        "Café ☕ et croissants — vendredi 9 h ?",
    ),
    (
        Some("Johanna Lorenz"),
        "JohannaL@contoso.com",
        "Überprüfung: Reisekostenabrechnung März",
    ),
    (
        Some("Lidia Holloway"),
        "LidiaH@contoso.com",
        "会议纪要：产品路线图 (Product roadmap notes)",
    ),
    (
        Some("Nestor Wilke"),
        "NestorW@contoso.com",
        "🎉 Launch day! Thank you all",
    ),
    (
        Some("Microsoft Planner"),
        "noreply@Planner.Office365.com",
        "You have late tasks!",
    ),
    (
        Some("Patti Fernandez"),
        "PattiF@contoso.com",
        "Re: Re: Re: Fwd: the very long thread about the new office floor plan, the parking situation, the coffee machine on level three and who is bringing cake on Friday",
    ),
    (
        Some("Grady Archie"),
        "GradyA@contoso.com",
        "Design review moved to Thursday",
    ),
    (
        Some("Diego Siciliani"),
        "DiegoS@contoso.com",
        "Ελληνικά: συνάντηση με τον πελάτη",
    ),
    (
        Some("Pradeep Gupta"),
        "PradeepG@contoso.com",
        "Invoice #4471 & #4472 \"final\"",
    ),
    (
        Some("Henrietta Mueller"),
        "HenriettaM@contoso.com",
        "Security training due 30 Nov",
    ),
    (
        Some("Joni Sherman"),
        "JoniS@contoso.com",
        "Lunch & learn: Rust for web services",
    ),
    (
        Some("Lynne Robbins"),
        "LynneR@contoso.com",
        "Customer visit — Fabrikam, Lisbon",
    ),
    (
        Some("Miriam Graham"),
        "MiriamG@contoso.com",
        "Brand refresh: first drafts",
    ),
    (
        Some("IT Service Desk"),
        "servicedesk@contoso.com",
        "Scheduled maintenance this weekend",
    ),
    (
        Some("Christie Cline"),
        "ChristieC@contoso.com",
        "Onboarding checklist for new hires",
    ),
    (
        Some("Debra Berger"),
        "DebraB@contoso.com",
        "Board meeting prep",
    ),
    (
        Some("Enrico Cattaneo"),
        "EnricoC@contoso.com",
        "Preventivo per il progetto Milano",
    ),
    (
        Some("Irvin Sayers"),
        "IrvinS@contoso.com",
        "Sales kick-off agenda",
    ),
    (
        Some("Lee Gu"),
        "LeeG@contoso.com",
        "Re: expense policy question",
    ),
    (
        Some("Megan Bowen"),
        "MeganB@contoso.com",
        "Welcome to the team!",
    ),
    (
        Some("Microsoft 365"),
        "no-reply@microsoft.com",
        "Your subscription renews next month",
    ),
    (
        Some("Patti Fernandez"),
        "PattiF@contoso.com",
        "Team photo from the offsite 📸",
    ),
    (
        Some("Alex Wilber"),
        "AlexW@contoso.com",
        "Holiday calendar 2027",
    ),
    (
        Some("Nestor Wilke"),
        "NestorW@contoso.com",
        "Old but gold: the 2025 retrospective",
    ),
];

/// Builds `person`'s mailbox with times relative to `now`: at least 25 Inbox
/// messages spread over about six weeks, plus Sent and Drafts items that are
/// newer than any Inbox message (so a query that forgets the folder shows them).
pub fn mailbox(
    person: usize,
    now: OffsetDateTime,
    base: &str,
    long: &Arc<str>,
) -> Vec<DemoMessage> {
    let me = &PEOPLE[person % PEOPLE.len()];
    let mut messages = Vec::new();
    let mut at = now - Duration::minutes(17 + 11 * person as i64);
    for (i, (name, address, subject)) in INBOX.iter().enumerate() {
        // Rotate per person so the three Inboxes differ, keeping the awkward ones in the first ten.
        let (name, address, subject) = if i >= 10 {
            INBOX[10 + (i - 10 + person * 5) % (INBOX.len() - 10)]
        } else {
            (*name, *address, *subject)
        };
        let id = format!("AAMkAD{person}{i:03}");
        let extras = bodies::extras(i, subject, base, &id, long);
        let cc = if i.is_multiple_of(3) {
            vec![("Nestor Wilke".to_owned(), "NestorW@contoso.com".to_owned())]
        } else {
            vec![]
        };
        messages.push(DemoMessage {
            id,
            folder: Folder::Inbox,
            subject: subject.to_owned(),
            from: Some((name.map(str::to_owned), address.to_owned())),
            received: at,
            body: extras.body,
            unread: extras.unread,
            important: extras.important,
            attachments: extras.attachments,
            to: vec![(me.name.to_owned(), me.upn.to_owned())],
            cc,
            card: None,
        });
        // Gaps grow from minutes to days, like a real Inbox.
        at -= Duration::minutes(23 + (i as i64 * i as i64) * 9 + (i as i64 % 3) * 41);
    }
    messages.push(DemoMessage {
        id: format!("AAMkAD{person}S01"),
        folder: Folder::SentItems,
        subject: "SENT ITEM: Re: Q4 budget review".into(),
        from: Some((Some(me.name.into()), me.upn.into())),
        received: now - Duration::minutes(2),
        body: DemoBody::Text(Arc::from("Sent.")),
        unread: false,
        important: false,
        attachments: vec![],
        to: vec![],
        cc: vec![],
        card: None,
    });
    messages.push(DemoMessage {
        id: format!("AAMkAD{person}D01"),
        folder: Folder::Drafts,
        subject: "DRAFT: notes for Thursday".into(),
        from: None,
        received: now - Duration::minutes(1),
        body: DemoBody::Text(Arc::from("Draft.")),
        unread: false,
        important: false,
        attachments: vec![],
        to: vec![],
        cc: vec![],
        card: None,
    });
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inbox_is_big_enough_and_spans_weeks() {
        let now = OffsetDateTime::now_utc();
        for p in 0..PEOPLE.len() {
            let long: Arc<str> = Arc::from("x");
            let inbox: Vec<_> = mailbox(p, now, "http://127.0.0.1:8000", &long)
                .into_iter()
                .filter(|m| m.folder == Folder::Inbox)
                .collect();
            assert!(inbox.len() >= 25);
            let span = inbox[0].received - inbox[inbox.len() - 1].received;
            assert!(span > Duration::weeks(3), "span {span}");
            assert!(inbox.windows(2).all(|w| w[0].received > w[1].received));
        }
    }
}
