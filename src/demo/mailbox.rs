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
    pub attachments: Vec<DemoAttachment>,
    pub to: Vec<(String, String)>,
    pub cc: Vec<(String, String)>,
    /// An actionable message's card: as sent, and as last refreshed.
    pub card: Option<DemoCard>,
    /// When it was delivered, in the stand-in's order (0: there from the start).
    pub seq: u64,
}

impl DemoMessage {
    /// Graph's `hasAttachments`: inline images do not count.
    pub fn has_attachments(&self) -> bool {
        self.attachments.iter().any(|a| a.content_id.is_none())
    }

    /// The message's `changeKey`: it changes when the message does (a
    /// refreshed card is a change).
    pub fn change_key(&self) -> String {
        let current = self.card.as_ref().map_or(0, |c| c.current.len());
        format!("CQAAAB{}{current}", self.id.len())
    }
}

/// An attachment of a demo message.
#[derive(Clone, Debug)]
pub struct DemoAttachment {
    pub id: String,
    pub name: String,
    pub content_type: &'static str,
    pub kind: AttachmentKind,
    /// Its content id, for an inline image the body shows with `cid:`.
    pub content_id: Option<String>,
    pub content: DemoContent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentKind {
    File,
    /// An attached message: its content is MIME.
    Item,
    /// A link to a file in cloud storage.
    Reference,
}

/// An attachment's content: made when asked for, never stored.
#[derive(Clone, Debug)]
pub enum DemoContent {
    /// Stand-in bytes of a document of this size.
    Filler(u64),
    /// A CSV export of this size, written as it is sent.
    Csv(u64),
    /// A PNG picture of this size, painted in this hue.
    Png { width: u32, height: u32, hue: u8 },
    /// An attached message (RFC 5322).
    Mime(&'static str),
    /// A reference attachment's link.
    Link(&'static str),
}

impl DemoContent {
    pub fn size(&self) -> u64 {
        match self {
            DemoContent::Filler(n) | DemoContent::Csv(n) => *n,
            DemoContent::Png { width, height, .. } => super::png::png_len(*width, *height),
            DemoContent::Mime(m) => m.len() as u64,
            DemoContent::Link(_) => 0,
        }
    }

    /// Bytes `from..to` of the content.
    pub fn bytes(&self, from: u64, to: u64) -> Vec<u8> {
        let to = to.min(self.size());
        let from = from.min(to);
        match self {
            DemoContent::Filler(_) => (from..to)
                .map(|i| b"%PDF-1.7 demo "[i as usize % 14])
                .collect(),
            DemoContent::Csv(_) => {
                const LINE: usize = 37;
                let line = |n: u64| {
                    format!(
                        "{:08},2026-12-01,north,{:07}.{:02}\n",
                        n,
                        n * 37 % 9_999_999,
                        n % 100
                    )
                };
                let mut out = Vec::with_capacity((to - from) as usize);
                let mut n = from / LINE as u64;
                let mut skip = (from % LINE as u64) as usize;
                while (out.len() as u64) < to - from {
                    let l = line(n);
                    let take = (l.len() - skip).min((to - from) as usize - out.len());
                    out.extend_from_slice(&l.as_bytes()[skip..skip + take]);
                    skip = 0;
                    n += 1;
                }
                out
            }
            DemoContent::Png { width, height, hue } => {
                let hue = *hue;
                let picture = super::png::png(*width, *height, |x, y| {
                    let wave = ((x * 7 + y * 3) % 64) as u8;
                    [
                        hue.wrapping_add(wave),
                        120u8.wrapping_add(y as u8 / 3),
                        200u8.wrapping_sub(x as u8 / 4),
                    ]
                });
                picture[from as usize..to as usize].to_vec()
            }
            DemoContent::Mime(m) => m.as_bytes()[from as usize..to as usize].to_vec(),
            DemoContent::Link(_) => Vec::new(),
        }
    }
}

/// A file attachment of `size` stand-in bytes.
pub fn file(id: &str, name: &str, content_type: &'static str, size: u64) -> DemoAttachment {
    DemoAttachment {
        id: id.into(),
        name: name.into(),
        content_type,
        kind: AttachmentKind::File,
        content_id: None,
        content: DemoContent::Filler(size),
    }
}

/// An inline PNG the body shows as `cid:{content_id}`.
pub fn inline_png(
    id: &str,
    name: &str,
    content_id: &str,
    width: u32,
    height: u32,
    hue: u8,
) -> DemoAttachment {
    DemoAttachment {
        id: id.into(),
        name: name.into(),
        content_type: "image/png",
        kind: AttachmentKind::File,
        content_id: Some(content_id.into()),
        content: DemoContent::Png { width, height, hue },
    }
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
            seq: 0,
        });
        // Gaps grow from minutes to days, like a real Inbox.
        at -= Duration::minutes(23 + (i as i64 * i as i64) * 9 + (i as i64 % 3) * 41);
    }
    for (n, extra) in extras_beyond_the_first_page(person, base)
        .into_iter()
        .enumerate()
    {
        let (from, subject, body, attachments) = extra;
        messages.push(DemoMessage {
            id: format!("AAMkAD{person}X{n:02}"),
            folder: Folder::Inbox,
            subject: subject.to_owned(),
            from: Some((Some(from.0.to_owned()), from.1.to_owned())),
            received: now - Duration::days(4 + n as i64) - Duration::minutes(13 * n as i64),
            body,
            unread: n == 0,
            important: false,
            attachments,
            to: vec![(me.name.to_owned(), me.upn.to_owned())],
            cc: vec![],
            card: None,
            seq: 0,
        });
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
        seq: 0,
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
        seq: 0,
    });
    // Newest first, as the folders list them.
    messages.sort_by_key(|m| std::cmp::Reverse(m.received));
    messages
}

type Extra = (
    (&'static str, &'static str),
    &'static str,
    DemoBody,
    Vec<DemoAttachment>,
);

/// Messages a few days old (past the first page): a 20 MB export, an
/// attached message, a link to a file in cloud storage, and inline images
/// past the per-message budget.
fn extras_beyond_the_first_page(person: usize, _base: &str) -> Vec<Extra> {
    let html = |s: &str| DemoBody::Html(Arc::from(s));
    vec![
        (
            ("Data Platform", "dataplatform@contoso.com"),
            "Q4 export attached (20 MB)",
            html(
                "<p>Hi,</p><p>the full Q4 export is attached as CSV (about 20 MB). It opens in Excel.</p><p>Data Platform team</p>",
            ),
            vec![DemoAttachment {
                id: "ATT1".into(),
                name: "q4-export.csv".into(),
                content_type: "text/csv",
                kind: AttachmentKind::File,
                content_id: None,
                content: DemoContent::Csv(20 * 1024 * 1024),
            }],
        ),
        (
            ("Megan Bowen", "MeganB@contoso.com"),
            "Fwd: Offsite agenda",
            html(
                "<p>Forwarding the agenda Patti sent last week; it is attached as a message.</p><p>Megan</p>",
            ),
            vec![DemoAttachment {
                id: "ATT1".into(),
                name: "Offsite agenda".into(),
                content_type: "message/rfc822",
                kind: AttachmentKind::Item,
                content_id: None,
                content: DemoContent::Mime(OFFSITE_AGENDA),
            }],
        ),
        (
            ("Lee Gu", "LeeG@contoso.com"),
            "Q1 plan (shared from OneDrive)",
            html("<p>I shared the Q1 plan from OneDrive: it is attached as a link.</p><p>Lee</p>"),
            vec![DemoAttachment {
                id: "ATT1".into(),
                name: "Q1 plan.docx".into(),
                content_type: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                kind: AttachmentKind::Reference,
                content_id: None,
                content: DemoContent::Link(
                    "https://contoso-my.sharepoint.com/personal/leeg_contoso_com/Documents/Q1%20plan.docx",
                ),
            }],
        ),
        (
            ("Miriam Graham", "MiriamG@contoso.com"),
            "Poster drafts (large pictures)",
            html(
                "<p>Two drafts of the launch poster. The full-size one is large.</p><p><img src=\"cid:poster-small.png@01DB4C00.1\" alt=\"Poster, small draft\" width=\"240\" height=\"160\"></p><p><img src=\"cid:poster-full.png@01DB4C00.2\" alt=\"Poster, full size\" width=\"480\" height=\"320\"></p><p>Miriam</p>",
            ),
            vec![
                inline_png(
                    "ATT1",
                    "poster-small.png",
                    "poster-small.png@01DB4C00.1",
                    240,
                    160,
                    40 + person as u8,
                ),
                inline_png(
                    "ATT2",
                    "poster-full.png",
                    "poster-full.png@01DB4C00.2",
                    1600,
                    1200,
                    90,
                ),
            ],
        ),
    ]
}

const OFFSITE_AGENDA: &str = "From: Patti Fernandez <PattiF@contoso.com>\r\nTo: Team <team@contoso.com>\r\nSubject: Offsite agenda\r\nDate: Mon, 30 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDay 1: roadmap, demos, dinner.\r\nDay 2: planning in small groups, wrap-up by 15:00.\r\n\r\nPatti\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_contents_have_the_size_they_announce() {
        let csv = DemoContent::Csv(1_000);
        let whole = csv.bytes(0, 1_000);
        assert_eq!(whole.len(), 1_000);
        assert_eq!(csv.bytes(100, 300), whole[100..300].to_vec());
        assert!(whole.starts_with(b"00000000,2026-12-01,north,"));
        let png = DemoContent::Png {
            width: 40,
            height: 30,
            hue: 1,
        };
        assert_eq!(png.bytes(0, u64::MAX).len() as u64, png.size());
        assert_eq!(DemoContent::Filler(10).bytes(3, 7).len(), 4);
    }

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
