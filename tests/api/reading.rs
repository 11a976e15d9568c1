//! Reading mail: pages of the Inbox, one message, and its body in a sandbox,
//! for both API shapes, against a mock API and the demo stand-in (issue 10).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const INBOX: &str = "/v1.0/me/mailfolders/inbox/messages";
const ID: &str = "AAMkAGI2TG93AAA=";

/// The exact policy of the body document, without and with remote images.
const BODY_POLICY: &str = "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";
const BODY_POLICY_IMAGES: &str = "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

pub struct Api {
    pub idp: MockIdp,
    pub app: TestApp,
    /// `/v1.0` (graph) or `/api/v2.0` (outlook).
    pub prefix: &'static str,
    pub outlook: bool,
}

/// The app against a mock mail API of either shape, signed in.
pub async fn api(outlook: bool) -> Api {
    let idp = MockIdp::start().await;
    let prefix = if outlook { "/api/v2.0" } else { "/v1.0" };
    let url = format!("{}{prefix}", idp.uri());
    let flavour = if outlook { "outlook" } else { "graph" };
    let app =
        spawn_with(idp.settings(&[("MAIL_API", flavour), ("MAIL_API_URL", url.as_str())])).await;
    idp.sign_in_ok(&app).await;
    Api {
        idp,
        app,
        prefix,
        outlook,
    }
}

impl Api {
    fn message_path(&self) -> String {
        format!("{}/me/messages/{ID}", self.prefix)
    }

    /// A field name in this API's case.
    pub fn f(&self, graph: &str) -> String {
        if self.outlook {
            let mut c = graph.chars();
            c.next()
                .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        } else {
            graph.to_owned()
        }
    }

    fn message_json(&self, web_link: &str) -> Value {
        let addr = |n: &str, a: &str| json!({ self.f("emailAddress"): { self.f("name"): n, self.f("address"): a } });
        json!({
            self.f("id"): ID, self.f("subject"): "Budget <review>",
            self.f("from"): addr("Megan Bowen", "MeganB@contoso.com"),
            self.f("toRecipients"): [addr("Abe Lincoln", "AbeLi@contoso.com")],
            self.f("ccRecipients"): [addr("Nestor Wilke", "NestorW@contoso.com")],
            self.f("receivedDateTime"): "2026-11-20T09:14:00Z",
            self.f("isRead"): false, self.f("hasAttachments"): true, self.f("importance"): if self.outlook { "High" } else { "high" },
            self.f("webLink"): web_link,
            self.f("attachments"): [
                { "@odata.type": "#microsoft.graph.fileAttachment", self.f("id"): "ATT1", self.f("name"): "Q4 budget.xlsx", self.f("size"): 48213, self.f("isInline"): false, self.f("contentType"): "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
                { "@odata.type": "#microsoft.graph.fileAttachment", self.f("id"): "ATT2", self.f("name"): "logo.png", self.f("size"): 2048, self.f("isInline"): true, self.f("contentType"): "image/png" },
            ],
        })
    }

    fn body_json(&self, kind: &str, content: &str) -> Value {
        json!({ self.f("id"): ID, self.f("changeKey"): "CQAAABYAAAB", self.f("body"): { self.f("contentType"): kind, self.f("content"): content } })
    }

    /// `$select` of a body call in this API's case.
    fn body_select(&self) -> String {
        format!("{},{}", self.f("changeKey"), self.f("body"))
    }

    async fn answer(&self, path_: String, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(path_))
            .respond_with(response)
            .mount(&self.idp.server)
            .await;
    }

    /// Every request the mock received but discovery, keys and the token
    /// endpoint: whatever path a stray call would take.
    async fn mail_calls(&self) -> usize {
        calls_beside_sign_in(&self.idp).await
    }
}

/// Requests `idp` received, discovery, signing keys and the token endpoint
/// aside.
pub async fn calls_beside_sign_in(idp: &MockIdp) -> usize {
    idp.server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            let p = r.url.path();
            !p.contains("/.well-known/") && !p.ends_with("/keys") && !p.ends_with("/token")
        })
        .count()
}

fn inbox_rows(n: usize, start: usize) -> Value {
    let value: Vec<_> = (start..start + n)
        .map(|i| {
            json!({
                "id": format!("MSG{i}"), "receivedDateTime": format!("2026-11-{:02}T09:14:00Z", 28 - i % 27),
                "subject": format!("Message {i}"), "isRead": i % 2 == 1, "hasAttachments": i == 0,
                "importance": if i == 0 { "high" } else { "normal" },
                "from": {"emailAddress": {"name": format!("Sender {i}"), "address": format!("s{i}@contoso.com")}},
            })
        })
        .collect();
    json!({ "value": value })
}

// ---- the Inbox list ----

#[tokio::test]
async fn the_inbox_marks_unread_attachments_and_importance_and_links_each_row() {
    let a = api(false).await;
    let mut page = inbox_rows(10, 0);
    page["@odata.nextLink"] = json!(format!("{}{INBOX}?$skip=10", a.idp.uri()));
    a.answer(INBOX.into(), ResponseTemplate::new(200).set_body_json(page))
        .await;
    let html = body(a.app.get("/mail").await).await;
    assert!(html.contains("<tr class=\"unread\">"), "{html}");
    assert_eq!(html.matches("<tr class=\"unread\">").count(), 5);
    assert_eq!(
        html.matches("<span class=\"visually-hidden\">Unread: </span>")
            .count(),
        5
    );
    assert!(html.contains("(has attachments)") && html.contains("title=\"Has attachments\""));
    assert!(html.contains("High importance: "));
    assert!(html.contains("<a href=\"/mail/MSG3\">"));
    assert!(html.contains("href=\"/mail?page=2\"") && html.contains("Older"));
    assert!(!html.contains("Newer"), "page 1 has nothing newer");
}

#[tokio::test]
async fn page_two_skips_ten_and_links_both_ways() {
    let a = api(false).await;
    let mut page = inbox_rows(10, 10);
    page["@odata.nextLink"] = json!("next");
    Mock::given(path(INBOX))
        .and(query_param("$skip", "10"))
        .and(query_param("$top", "10"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .expect(1)
        .mount(&a.idp.server)
        .await;
    let r = a.app.get("/mail?page=2").await;
    assert_eq!(r.status(), 200);
    let html = body(r).await;
    assert!(html.contains("Message 10"));
    assert!(html.contains("href=\"/mail\"") && html.contains("Newer"));
    assert!(html.contains("href=\"/mail?page=3\""));
}

#[tokio::test]
async fn the_last_page_has_no_older_link() {
    let a = api(false).await;
    a.answer(
        INBOX.into(),
        ResponseTemplate::new(200).set_body_json(inbox_rows(3, 20)),
    )
    .await;
    let html = body(a.app.get("/mail?page=3").await).await;
    assert!(html.contains("href=\"/mail?page=2\""));
    assert!(!html.contains("rel=\"next\""));
}

#[tokio::test]
async fn a_page_outside_1_to_50_is_a_400_page_and_no_call() {
    let a = api(false).await;
    for bad in ["0", "51", "-1", "x", "2.5", "", "1%0a"] {
        let r = a.app.get(&format!("/mail?page={bad}")).await;
        assert_eq!(r.status(), 400, "page={bad}");
        assert!(
            body(r)
                .await
                .contains("There is no such page of your Inbox")
        );
    }
    assert_eq!(a.mail_calls().await, 0);
}

#[tokio::test]
async fn the_outlook_flavour_pages_with_pascal_case() {
    let a = api(true).await;
    let rows = json!({"value": [{"Id": "P1", "Subject": "Pascal page", "IsRead": false, "HasAttachments": true,
        "Importance": "High", "ReceivedDateTime": "2026-11-20T09:14:00Z"}]});
    Mock::given(path("/api/v2.0/me/mailfolders/inbox/messages"))
        .and(query_param("$skip", "40"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rows))
        .expect(1)
        .mount(&a.idp.server)
        .await;
    let html = body(a.app.get("/mail?page=5").await).await;
    assert!(
        html.contains("<a href=\"/mail/P1\">") && html.contains("<tr class=\"unread\">"),
        "{html}"
    );
    assert!(html.contains("(has attachments)") && html.contains("High importance"));
}

// ---- one message ----

async fn message_page(outlook: bool) {
    let a = api(outlook).await;
    let query = if outlook {
        "$select=Subject,From,ToRecipients,CcRecipients,ReceivedDateTime,IsRead,HasAttachments,Importance,WebLink&$expand=Attachments($select=Id,Name,ContentType,Size,IsInline)"
    } else {
        "$select=subject,from,toRecipients,ccRecipients,receivedDateTime,isRead,hasAttachments,importance,webLink&$expand=attachments($select=id,name,contentType,size,isInline)"
    };
    let link = "https://outlook.office365.com/owa/?ItemID=AAMk&exvsurl=1&viewmodel=ReadMessageItem";
    Mock::given(method("GET"))
        .and(path(a.message_path()))
        .and(header("X-AnchorMailbox", "AbeLi@contoso.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(a.message_json(link)))
        .expect(1)
        .mount(&a.idp.server)
        .await;
    let r = a.app.get(&format!("/mail/{ID}")).await;
    assert_eq!(r.status(), 200);
    let html = body(r).await;
    assert!(html.contains("Budget &#60;review&#62;"), "{html}");
    assert!(html.contains("Megan Bowen") && html.contains("&lt;MeganB@contoso.com&gt;"));
    assert!(html.contains("<dt>To</dt>") && html.contains("Abe Lincoln"));
    assert!(html.contains("<dt>Cc</dt>") && html.contains("Nestor Wilke"));
    assert!(html.contains("Q4 budget.xlsx") && html.contains("49 KB"));
    assert!(html.contains("<time datetime=\"2026-11-20T09:14:00Z\""));
    assert!(html.contains("High importance"));
    assert!(
        html.contains(&format!("href=\"{}\"", link.replace('&', "&#38;"))),
        "{html}"
    );
    assert!(html.contains("Open in Outlook on the web"));
    assert!(html.contains(&format!(
        "<iframe class=\"body-frame\" title=\"Message body\" sandbox=\"allow-popups allow-popups-to-escape-sandbox\" src=\"/mail/{ID}/body\">"
    )));
    assert!(html.contains(&format!("href=\"/mail/{ID}?images=1\"")));
    let requests = a.idp.server.received_requests().await.unwrap();
    let call = requests
        .iter()
        .find(|r| r.url.path() == a.message_path())
        .unwrap();
    let sent = url::form_urlencoded::parse(call.url.query().unwrap().as_bytes())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(sent, query);
    let prefer = call
        .headers
        .get("Prefer")
        .map(|v| v.to_str().unwrap().to_owned());
    if outlook {
        assert_eq!(prefer, None);
    } else {
        assert_eq!(prefer.as_deref(), Some("IdType=\"ImmutableId\""));
    }
}

#[tokio::test]
async fn a_message_shows_its_headers_attachments_and_a_sandboxed_body_with_graph() {
    message_page(false).await;
}

#[tokio::test]
async fn a_message_shows_its_headers_attachments_and_a_sandboxed_body_with_outlook() {
    message_page(true).await;
}

#[tokio::test]
async fn open_in_outlook_appears_only_for_https_outlook_hosts() {
    for (link, shown) in [
        ("https://outlook.office.com/owa/?ItemID=1", true),
        ("https://outlook.live.com/owa/?ItemID=1", true),
        ("http://outlook.office.com/owa/?ItemID=1", false),
        ("https://outlook.office.com.evil.example/owa/", false),
        ("https://evil.example/?outlook.office.com", false),
        ("javascript:alert(1)", false),
        ("https://outlook.office.com:8443/owa/", false),
    ] {
        let a = api(false).await;
        a.answer(
            a.message_path(),
            ResponseTemplate::new(200).set_body_json(a.message_json(link)),
        )
        .await;
        let html = body(a.app.get(&format!("/mail/{ID}")).await).await;
        assert_eq!(html.contains("Open in Outlook on the web"), shown, "{link}");
    }
}

#[tokio::test]
async fn a_message_that_no_longer_exists_has_its_own_404_page() {
    let a = api(false).await;
    a.answer(
        a.message_path(),
        ResponseTemplate::new(404).set_body_json(json!({"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}})),
    )
    .await;
    let r = a.app.get(&format!("/mail/{ID}")).await;
    assert_eq!(r.status(), 404);
    assert!(body(r).await.contains("This message no longer exists"));
}

#[tokio::test]
async fn ids_that_are_not_message_ids_are_404_with_no_upstream_call() {
    let a = api(false).await;
    let long = "A".repeat(600);
    for bad in [
        "..%2F..%2Fme",
        "a%2Fb",
        "a%20b",
        "a;b",
        "a%3Bb",
        "a.b",
        "a%3Fb=1",
        "%C3%A9",
        long.as_str(),
    ] {
        for suffix in ["", "/body"] {
            let r = a.app.get(&format!("/mail/{bad}{suffix}")).await;
            assert_eq!(r.status(), 404, "/mail/{bad}{suffix}");
        }
    }
    // `../` in the path itself is normalised away by the client or refused.
    assert_eq!(a.mail_calls().await, 0);
}

#[tokio::test]
async fn failures_of_the_message_call_get_the_same_pages_as_the_list() {
    let a = api(false).await;
    Mock::given(path_regex("^/v1.0/me/messages/T429$"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&a.idp.server)
        .await;
    Mock::given(path_regex("^/v1.0/me/messages/T500$"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"code": "InternalServerError"}})),
        )
        .mount(&a.idp.server)
        .await;
    Mock::given(path_regex("^/v1.0/me/messages/TJSON$"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not json"))
        .mount(&a.idp.server)
        .await;
    Mock::given(path_regex("^/v1.0/me/messages/THUNG$"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&a.idp.server)
        .await;
    let r = a.app.get("/mail/T429").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("Retry-After").unwrap(), "30");
    assert!(body(r).await.contains("Microsoft is throttling us"));
    let r = a.app.get("/mail/T500").await;
    assert_eq!(r.status(), 502);
    assert!(body(r).await.contains("InternalServerError"));
    let r = a.app.get("/mail/TJSON").await;
    assert_eq!(r.status(), 502);
    assert!(body(r).await.contains("could not read"));
    let r = a.app.get("/mail/THUNG").await;
    assert_eq!(r.status(), 504);
}

// ---- the body document ----

async fn body_doc(a: &Api, kind: &str, content: &str, images: bool) -> (HeaderMap, String) {
    Mock::given(method("GET"))
        .and(path(format!("{}/me/messages/{ID}", a.prefix)))
        .and(query_param("$select", a.body_select()))
        .respond_with(ResponseTemplate::new(200).set_body_json(a.body_json(kind, content)))
        .mount(&a.idp.server)
        .await;
    let r = a
        .app
        .get(&format!(
            "/mail/{ID}/body{}",
            if images { "?images=1" } else { "" }
        ))
        .await;
    let headers = r.headers().clone();
    (headers, body(r).await)
}

fn header_of(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn hostile_body_is_defused(outlook: bool) {
    let a = api(outlook).await;
    let hostile = outlook_inbox::demo::bodies::hostile("https://tracker.example", "M1");
    let (r, html) = body_doc(&a, "html", &hostile, false).await;
    assert_eq!(header_of(&r, "content-security-policy"), BODY_POLICY);
    assert_eq!(header_of(&r, "x-frame-options"), "SAMEORIGIN");
    assert_eq!(header_of(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header_of(&r, "cache-control"), "no-store");
    for forbidden in [
        "<script",
        "onerror",
        "onload",
        "javascript:",
        "<form",
        "<iframe",
        "<object",
        "<base",
        "<meta http-equiv",
        "<svg",
        "tracker.example",
        "<link",
        "data:text",
    ] {
        assert!(!html.contains(forbidden), "`{forbidden}` survived");
    }
    assert!(html.contains("the quarterly numbers are below"));
    assert!(
        html.contains("<td style=\"padding:4px 8px\">Q3</td>"),
        "{html}"
    );
    let requests = a.idp.server.received_requests().await.unwrap();
    let call = requests
        .iter()
        .find(|r| r.url.path().ends_with(ID))
        .unwrap();
    let prefer = call.headers.get("Prefer").unwrap().to_str().unwrap();
    assert!(
        prefer.contains("outlook.body-content-type=\"html\""),
        "{prefer}"
    );
}

#[tokio::test]
async fn a_hostile_html_body_is_sanitized_and_sandboxed_with_graph() {
    hostile_body_is_defused(false).await;
}

#[tokio::test]
async fn a_hostile_html_body_is_sanitized_and_sandboxed_with_outlook() {
    hostile_body_is_defused(true).await;
}

#[tokio::test]
async fn remote_images_are_shown_only_when_asked() {
    let a = api(false).await;
    let html_in = "<p>Hi</p><img src=\"https://cdn.contoso.com/logo.png\" alt=\"Logo\"><img src=\"http://plain.contoso.com/pixel.gif\" alt=\"Plain\"><img src=\"cid:image001.png@01D\" alt=\"Inline\">";
    let (r, html) = body_doc(&a, "html", html_in, false).await;
    assert_eq!(header_of(&r, "content-security-policy"), BODY_POLICY);
    assert!(!html.contains("cdn.contoso.com") && !html.contains("cid:"));
    assert!(!html.contains("plain.contoso.com"));
    assert!(html.contains("alt=\"Logo\"") && html.contains("data:image/svg+xml"));
    let (r, html) = body_doc(&a, "html", html_in, true).await;
    assert_eq!(header_of(&r, "content-security-policy"), BODY_POLICY_IMAGES);
    assert!(html.contains("https://cdn.contoso.com/logo.png"));
    // Asked for, a plain-http image still is not loaded: it stays a
    // placeholder (the frame's policy allows https: only, and the page
    // would be mixed content).
    assert!(!html.contains("plain.contoso.com"), "{html}");
    assert!(html.contains("alt=\"Plain\""));
    assert!(
        !html.contains("cid:"),
        "an inline image the message lacks stays a placeholder"
    );
}

#[tokio::test]
async fn a_text_body_is_escaped_and_wrapped() {
    let a = api(true).await;
    let (_, html) = body_doc(
        &a,
        "Text",
        "Hi <b>there</b>\n\n<script>alert(1)</script>",
        false,
    )
    .await;
    assert!(
        html.contains("<pre class=\"text\">Hi &#60;b&#62;there&#60;/b&#62;"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
}

#[tokio::test]
async fn a_5_mb_body_is_cut_with_a_note_and_a_1_mb_one_is_whole() {
    let a = api(false).await;
    let paragraph = "<p>Lorem ipsum dolor sit amet, \"quoted\" &amp; é.</p>\n";
    let one_mb = paragraph.repeat(1024 * 1024 / paragraph.len());
    let (_, html) = body_doc(&a, "html", &one_mb, false).await;
    assert!(!html.contains("id=\"truncated\""));
    assert_eq!(
        html.matches("Lorem ipsum").count(),
        one_mb.matches("Lorem ipsum").count()
    );

    let a = api(false).await;
    let five_mb = paragraph.repeat(5 * 1024 * 1024 / paragraph.len());
    let (_, html) = body_doc(&a, "html", &five_mb, false).await;
    assert!(html.contains("id=\"truncated\""), "no note");
    let shown = html.matches("Lorem ipsum").count();
    assert!(
        shown > 10_000 && shown < five_mb.matches("Lorem ipsum").count() / 2,
        "{shown}"
    );
}

#[tokio::test]
async fn the_body_of_a_missing_message_says_so_inside_the_frame() {
    let a = api(false).await;
    a.answer(a.message_path(), ResponseTemplate::new(404)).await;
    let r = a.app.get(&format!("/mail/{ID}/body")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        header_of(r.headers(), "content-security-policy"),
        BODY_POLICY
    );
    assert!(body(r).await.contains("This message no longer exists"));
}

#[tokio::test]
async fn signed_out_the_body_frame_asks_to_sign_in_and_calls_nothing() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = app.get("/mail/AAMkAD0003/body").await;
    assert_eq!(r.status(), 401);
    assert!(body(r).await.contains("Sign in again"));
    assert_eq!(location(&app.get("/mail/AAMkAD0003").await), "/");
    assert_eq!(location(&app.get("/mail").await), "/");
    assert_eq!(
        app.get("/mail/AAMkAD0003/attachments/AAMkAT01")
            .await
            .status(),
        302
    );
    assert_eq!(calls_beside_sign_in(&idp).await, 0);
}

// ---- the demo mailbox ----

#[tokio::test]
async fn the_demo_mailbox_opens_messages_and_never_fetches_the_tracker() {
    for flavour in ["graph", "outlook"] {
        let app = spawn_with(settings(&[("MAIL_API", flavour)])).await;
        sign_in_as(&app, 0).await;
        let list = body(app.get("/mail").await).await;
        assert!(list.contains("<tr class=\"unread\">") && list.contains("(has attachments)"));
        assert!(list.contains("href=\"/mail?page=2\""), "{flavour}: paging");
        let page2 = body(app.get("/mail?page=2").await).await;
        assert!(page2.contains("href=\"/mail?page=3\"") && page2.contains("Newer"));
        for i in 0..10 {
            let id = format!("AAMkAD0{i:03}");
            let r = app.get(&format!("/mail/{id}")).await;
            assert_eq!(r.status(), 200, "{flavour} {id}");
            let r = app.get(&format!("/mail/{id}/body")).await;
            assert_eq!(r.status(), 200, "{flavour} {id} body");
            let html = body(r).await;
            assert!(
                !html.contains("<script") && !html.contains("onerror"),
                "{flavour} {id}"
            );
            // With images blocked, no body names the tracker at all.
            assert!(!html.contains("/_demo/tracker"), "{flavour} {id}");
        }
        let hostile = body(app.get("/mail/AAMkAD0003").await).await;
        assert!(hostile.contains("invoice.pdf.exe"));
        let demo = app.demo.as_ref().unwrap();
        assert_eq!(
            demo.tracker_hits.load(Ordering::SeqCst),
            0,
            "the server fetched a tracker"
        );
        // Asked for, the newsletter's images point at the stand-in (and still no server fetch).
        let shown = body(app.get("/mail/AAMkAD0001/body?images=1").await).await;
        assert!(shown.contains("/_demo/images/hero.svg"), "{shown}");
        assert_eq!(demo.tracker_hits.load(Ordering::SeqCst), 0);
        // The 1 MB thread renders whole.
        let long = body(app.get("/mail/AAMkAD0009/body").await).await;
        assert!(long.len() > 500_000 && !long.contains("id=\"truncated\""));
        // The demo's webLink is the stand-in's Outlook page.
        let message = body(app.get("/mail/AAMkAD0000").await).await;
        assert!(
            message.contains("Open in Outlook on the web") && message.contains("Q4-budget.xlsx")
        );
        assert_eq!(app.get("/mail/AAMkAD0999").await.status(), 404);
    }
}

/// A mail API whose every answer is a message body that never ends
/// (chunked, a paragraph at a time, until the reader goes away).
async fn endless_mail_api() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("http://{}/v1.0", listener.local_addr().unwrap());
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = socket.read(&mut head).await;
                let start = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let first = r#"{"changeKey":"ck","body":{"contentType":"html","content":""#;
                let mut out = start.as_bytes().to_vec();
                out.extend_from_slice(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes());
                if socket.write_all(&out).await.is_err() {
                    return;
                }
                let paragraph = "<p>Endless paragraph, the same again.</p>".repeat(400);
                let chunk = format!("{:x}\r\n{paragraph}\r\n", paragraph.len());
                // At most 1 GiB, which the app must never get near.
                for _ in 0..(1 << 30) / paragraph.len() {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    counter.fetch_add(paragraph.len(), Ordering::SeqCst);
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn a_body_that_never_ends_is_cut_at_2_mib_and_the_rest_never_read() {
    let idp = MockIdp::start().await;
    let (url, sent) = endless_mail_api().await;
    let app = spawn_with(idp.settings(&[("MAIL_API_URL", url.as_str())])).await;
    idp.sign_in_ok(&app).await;
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        app.get(&format!("/mail/{ID}/body")),
    )
    .await
    .expect("the app kept reading a body that never ends");
    assert_eq!(r.status(), 200);
    let html = body(r).await;
    assert!(html.contains("id=\"truncated\""), "no note");
    assert!(html.contains("Endless paragraph"));
    // The app stopped reading: what the upstream managed to send is the
    // 2 MiB taken plus what the connection's buffers held, far from 1 GiB.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = sent.load(Ordering::SeqCst);
    assert!(written < 64 * 1024 * 1024, "{written} bytes were sent");
}
