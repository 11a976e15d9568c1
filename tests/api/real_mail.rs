//! Real mail (issue 21): bodies of any shape read in linear time, inline
//! images, attachments that download safely, bodies remembered per person,
//! and search — against the demo stand-in and a mock mail API.

use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;
use crate::reading::api;

const ID: &str = "AAMkAGI2TG93AAA=";

/// The demo's first person, signed in.
async fn demo() -> TestApp {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    app
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Requests the mock received under `prefix`, but discovery, keys and token.
async fn mail_calls(idp: &MockIdp, prefix: &str) -> Vec<wiremock::Request> {
    idp.server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with(prefix))
        .collect()
}

// ---- bodies at any size, in linear time ----

#[tokio::test]
async fn a_body_nested_past_the_limit_is_shown_flattened_with_all_its_text() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let deep = format!(
        "{}the bottom line{}",
        "<div>".repeat(200_000),
        "</div>".repeat(10)
    );
    Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "changeKey": "CK1", "body": {"contentType": "html", "content": deep}
        })))
        .mount(&idp.server)
        .await;
    let r = app.get(&format!("/mail/{ID}/body")).await;
    assert_eq!(r.status(), 200);
    let html = body(r).await;
    assert!(html.contains("the bottom line"));
    assert!(html.contains("id=\"flattened\""), "no note");
    assert!(html.matches("<div>").count() <= outlook_inbox::mail::depth::MAX_DEPTH);
    // Opened again, from the memory of bodies: still flattened, with its note.
    assert!(app.state.mail.reader.kept_bytes() > 0);
    assert_eq!(body(app.get(&format!("/mail/{ID}/body")).await).await, html);
}

#[tokio::test]
async fn ordinary_bodies_carry_no_flattening_note() {
    let app = demo().await;
    let html = body(app.get("/mail/AAMkAD0009/body").await).await;
    assert!(html.contains("Summing up the thread"));
    assert!(!html.contains("id=\"flattened\""));
}

// ---- opening a message again ----

#[tokio::test]
async fn a_body_is_sanitized_once_per_change_key_and_images_choice() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let answer = |ck: &str, text: &str| {
        ResponseTemplate::new(200)
            .set_body_json(json!({"changeKey": ck, "body": {"contentType": "html", "content": format!("<p>{text}</p>")}}))
    };
    let mock = Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(answer("CK1", "first version"))
        .mount_as_scoped(&idp.server)
        .await;
    assert!(
        body(app.get(&format!("/mail/{ID}/body")).await)
            .await
            .contains("first version")
    );
    assert!(app.state.mail.reader.kept_bytes() > 0);
    drop(mock);
    // The same change key: the remembered body, not the new text (which
    // would only come from sanitizing again).
    let mock = Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(answer("CK1", "same key, other text"))
        .mount_as_scoped(&idp.server)
        .await;
    let page = body(app.get(&format!("/mail/{ID}/body")).await).await;
    assert!(page.contains("first version") && !page.contains("other text"));
    // The images choice is its own entry.
    let page = body(app.get(&format!("/mail/{ID}/body?images=1")).await).await;
    assert!(page.contains("same key, other text"));
    drop(mock);
    // A changed message has a new change key.
    Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(answer("CK2", "second version"))
        .mount(&idp.server)
        .await;
    assert!(
        body(app.get(&format!("/mail/{ID}/body")).await)
            .await
            .contains("second version")
    );
    // Signing out forgets them.
    app.get("/signout").await;
    assert_eq!(app.state.mail.reader.kept_bytes(), 0);
}

#[tokio::test]
async fn a_large_body_is_kept_packed_and_shown_again_exactly() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    // A newsletter of 420 KB: past the size that is packed on the blocking pool.
    let rows = "<tr><td><a href=\"https://example.com/a\">An item</a> &amp; its price</td></tr>\n"
        .repeat(6_000);
    let newsletter = format!("<table>{rows}</table><p>Unsubscribe</p>");
    assert!(newsletter.len() > 400_000);
    let mock = Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "changeKey": "CK1", "body": {"contentType": "html", "content": newsletter}
        })))
        .mount_as_scoped(&idp.server)
        .await;
    let first = body(app.get(&format!("/mail/{ID}/body")).await).await;
    assert!(first.contains("Unsubscribe") && first.matches("An item").count() == 6_000);
    drop(mock);
    let kept = app.state.mail.reader.kept_bytes();
    assert!(
        kept > 0 && kept * 20 < first.len(),
        "{kept} bytes kept for a page of {}",
        first.len()
    );
    // The same change key, other text: shown from the memory, byte for byte.
    Mock::given(path(format!("/v1.0/me/messages/{ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "changeKey": "CK1", "body": {"contentType": "html", "content": "<p>other text</p>"}
        })))
        .mount(&idp.server)
        .await;
    assert_eq!(
        body(app.get(&format!("/mail/{ID}/body")).await).await,
        first
    );
}

#[tokio::test]
async fn remembered_bodies_are_never_shared_between_people() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let adele = body(app.get("/mail/AAMkAD0007/body").await).await;
    assert!(adele.contains("We launched"));
    // Alex opens the same message id: it is not in his mailbox.
    let alex = app.another_browser();
    sign_in_as(&alex, 1).await;
    let r = alex.get("/mail/AAMkAD0007/body").await;
    assert_eq!(r.status(), 404);
    assert!(!body(r).await.contains("We launched"));
}

// ---- inline images ----

#[tokio::test]
async fn inline_images_show_as_data_uris_from_the_messages_attachments() {
    let app = demo().await;
    let r = app.get("/mail/AAMkAD0007/body").await;
    assert_eq!(
        header(&r, "content-security-policy"),
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    );
    let html = body(r).await;
    assert!(!html.contains("src=\"cid:"), "{html}");
    let start = html
        .find("src=\"data:image/png;base64,")
        .expect("the photo")
        + 5;
    let uri = &html[start..start + html[start..].find('"').unwrap()];
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(uri.trim_start_matches("data:image/png;base64,"))
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(html.contains("alt=\"Team photo (an inline attachment)\""));
    // The inline image is part of the body, not listed as an attachment.
    let page = body(app.get("/mail/AAMkAD0007").await).await;
    assert!(!page.contains("image001.png"), "{page}");
}

#[tokio::test]
async fn inline_images_past_the_budget_get_a_placeholder_that_says_their_size() {
    let app = demo().await;
    let html = body(app.get("/mail/AAMkAD0X03/body").await).await;
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        1,
        "the small one"
    );
    assert!(html.contains("Image%20not%20shown:%205.8%20MB"), "{html}");
    assert!(html.contains("alt=\"Poster, full size\""));
}

// ---- attachments ----

#[tokio::test]
async fn a_file_attachment_downloads_with_safe_headers() {
    let app = demo().await;
    let page = body(app.get("/mail/AAMkAD0000").await).await;
    assert!(
        page.contains("href=\"/mail/AAMkAD0000/attachments/ATT1\" download>Q4-budget.xlsx</a>"),
        "{page}"
    );
    assert!(page.contains("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"));
    let r = app.get("/mail/AAMkAD0000/attachments/ATT1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/octet-stream");
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"Q4-budget.xlsx\"; filename*=UTF-8''Q4-budget.xlsx"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "content-security-policy"), "sandbox");
    assert_eq!(header(&r, "cache-control"), "private, no-store");
    assert_eq!(r.bytes().await.unwrap().len(), 48_213);
}

#[tokio::test]
async fn a_20_mb_attachment_streams_through_whole() {
    let app = demo().await;
    let mut r = app.get("/mail/AAMkAD0X00/attachments/ATT1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), (20 * 1024 * 1024).to_string());
    assert!(header(&r, "content-disposition").contains("filename=\"q4-export.csv\""));
    let mut total = 0usize;
    let mut first = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        if first.len() < 37 {
            first.extend_from_slice(&chunk[..chunk.len().min(37)]);
        }
        total += chunk.len();
    }
    assert_eq!(total, 20 * 1024 * 1024);
    assert!(first.starts_with(b"00000000,2026-12-01,north,"));
}

#[tokio::test]
async fn an_attached_message_downloads_as_eml_and_a_reference_is_a_link_out() {
    let app = demo().await;
    let page = body(app.get("/mail/AAMkAD0X01").await).await;
    assert!(
        page.contains("Offsite agenda") && page.contains("message, .eml"),
        "{page}"
    );
    let r = app.get("/mail/AAMkAD0X01/attachments/ATT1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "message/rfc822");
    assert!(header(&r, "content-disposition").contains("filename=\"Offsite agenda.eml\""));
    assert!(body(r).await.starts_with("From: Patti Fernandez"));
    let r = app.get("/mail/AAMkAD0X02/attachments/ATT1").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/html"));
    let page = body(r).await;
    assert!(
        page.contains("on <strong>contoso-my.sharepoint.com</strong>"),
        "{page}"
    );
    assert!(page.contains(
        "href=\"https://contoso-my.sharepoint.com/personal/leeg_contoso_com/Documents/Q1%20plan.docx\" target=\"_blank\" rel=\"noopener noreferrer\""
    ));
}

#[tokio::test]
async fn attachment_names_are_only_ever_names_in_both_shapes() {
    for outlook in [false, true] {
        let a = api(outlook).await;
        let (idp, app, prefix) = (&a.idp, &a.app, a.prefix);
        let f = |g: &str| a.f(g);
        let long = format!("{}.pdf", "Ω".repeat(300));
        for (aid, name, ascii) in [
            ("AT1", "Q4 \"final\"; v2.xlsx", "Q4 _final__ v2.xlsx"),
            (
                "AT2",
                "evil\r\nSet-Cookie: a=b.txt",
                "evil  Set-Cookie: a=b.txt",
            ),
            ("AT3", "../../etc/passwd", "passwd"),
            ("AT4", "Übersicht 会议.docx", "_bersicht __.docx"),
            ("AT5", long.as_str(), ""),
        ] {
            Mock::given(path(format!("{prefix}/me/messages/{ID}/attachments/{aid}")))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    f("id"): aid, f("name"): name, f("size"): 3, f("contentType"): "text/html",
                })))
                .mount(&idp.server)
                .await;
            Mock::given(path(format!(
                "{prefix}/me/messages/{ID}/attachments/{aid}/$value"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_string("<b>"))
            .mount(&idp.server)
            .await;
            let r = app.get(&format!("/mail/{ID}/attachments/{aid}")).await;
            assert_eq!(r.status(), 200, "{name}");
            let cd = header(&r, "content-disposition");
            assert!(cd.is_ascii() && !cd.contains(['\r', '\n']), "{cd}");
            assert_eq!(cd.matches(';').count(), 2, "{cd}");
            if !ascii.is_empty() {
                assert!(
                    cd.contains(&format!("filename=\"{ascii}\"")),
                    "{name}: {cd}"
                );
            }
            assert!(!cd.contains(".."), "{cd}");
            // Never shown on this origin, whatever type the sender claimed.
            assert_eq!(header(&r, "content-type"), "application/octet-stream");
            assert_eq!(header(&r, "content-security-policy"), "sandbox");
            let exact = percent_encoding::percent_decode_str(cd.split("UTF-8''").nth(1).unwrap())
                .decode_utf8()
                .unwrap()
                .into_owned();
            assert!(exact.chars().count() <= 150, "{exact}");
            if aid == "AT5" {
                assert!(exact.ends_with("Ω.pdf"));
            }
            if aid == "AT4" {
                assert_eq!(exact, "Übersicht 会议.docx");
            }
        }
    }
}

#[tokio::test]
async fn attachment_ids_are_checked_before_any_call_and_failures_get_pages() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    for bad in [
        "/mail/AAMk/attachments/..%2Fx",
        "/mail/AAMk/attachments/a%3Bb",
        "/mail/a%20b/attachments/AT1",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status(), 404, "{bad}");
    }
    let long = "A".repeat(513);
    assert_eq!(
        app.get(&format!("/mail/AAMk/attachments/{long}"))
            .await
            .status(),
        404
    );
    assert!(
        mail_calls(&idp, "/v1.0/me").await.is_empty(),
        "a malformed id reached the API"
    );
    // Throttled, and gone.
    Mock::given(path(format!("/v1.0/me/messages/{ID}/attachments/AT1")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "40"))
        .mount(&idp.server)
        .await;
    let r = app.get(&format!("/mail/{ID}/attachments/AT1")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "40");
    assert!(body(r).await.contains("Microsoft is throttling us"));
    Mock::given(path(format!("/v1.0/me/messages/{ID}/attachments/AT2")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&idp.server)
        .await;
    let r = app.get(&format!("/mail/{ID}/attachments/AT2")).await;
    assert_eq!(r.status(), 404);
    assert!(body(r).await.contains("There is no such attachment"));
}

// ---- search ----

/// The "More results" link of a page of search results.
fn more_results(page: &str) -> String {
    let marker = "id=\"more-results\" href=\"";
    let start = page.find(marker).expect("a More results link") + marker.len();
    page[start..start + page[start..].find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn the_inbox_has_a_search_box_and_search_finds_and_says_when_nothing_matches() {
    let app = demo().await;
    let inbox = body(app.get("/mail").await).await;
    assert!(
        inbox.contains("<form class=\"search\" role=\"search\" action=\"/mail\" method=\"get\">")
    );
    assert!(inbox.contains("<label for=\"q\">Search your mail</label>"));
    let page = body(app.get("/mail?q=budget").await).await;
    assert!(page.contains("Q4 budget review"), "{page}");
    assert!(page.contains("value=\"budget\""));
    assert!(page.contains("<a href=\"/mail/AAMkAD0000\">"));
    let page = body(app.get("/mail?q=%E4%BC%9A%E8%AE%AE").await).await;
    assert!(page.contains("会议纪要"), "non-ASCII search");
    let r = app.get("/mail?q=zzzz-nothing-like-it").await;
    assert_eq!(r.status(), 200);
    assert!(
        body(r)
            .await
            .contains("No messages match “zzzz-nothing-like-it”")
    );
}

#[tokio::test]
async fn an_empty_or_over_long_search_is_a_400_that_calls_nothing() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let long = "é".repeat(257);
    for q in ["", "%20%20", long.as_str()] {
        let r = app.get(&format!("/mail?q={q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        assert!(body(r).await.contains("That search cannot be run"));
    }
    assert!(mail_calls(&idp, "/v1.0/me").await.is_empty());
}

#[tokio::test]
async fn search_words_are_one_kql_phrase_in_both_shapes() {
    for outlook in [false, true] {
        let a = api(outlook).await;
        let (idp, app, prefix) = (&a.idp, &a.app, a.prefix);
        Mock::given(method("GET"))
            .and(path(format!("{prefix}/me/messages")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
            .mount(&idp.server)
            .await;
        let words = "he said \"hi\" \\ OR from:alex 会议";
        let r = app
            .client
            .get(app.url("/mail"))
            .query(&[("q", words)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let calls = mail_calls(idp, &format!("{prefix}/me/messages")).await;
        assert_eq!(calls.len(), 1);
        let pairs: Vec<(String, String)> = calls[0]
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("$search").as_deref(),
            Some(r#""he said \"hi\" \\ OR from:alex 会议""#)
        );
        assert_eq!(get("$top").as_deref(), Some("10"));
        let select = if outlook {
            "ReceivedDateTime,Subject,From,IsRead,HasAttachments,Importance"
        } else {
            "receivedDateTime,subject,from,isRead,hasAttachments,importance"
        };
        assert_eq!(get("$select").as_deref(), Some(select));
        assert!(get("$orderby").is_none() && get("$skip").is_none());
    }
}

#[tokio::test]
async fn more_results_follow_the_next_link_and_only_one_of_our_own() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let row = |i: usize| json!({"id": format!("R{i}"), "subject": format!("Result {i}"), "receivedDateTime": "2026-11-20T09:14:00Z"});
    let next = format!(
        "{}/v1.0/me/messages?$search=%22budget%22&$top=10&$skiptoken=MSGSKIP123",
        idp.uri()
    );
    Mock::given(path("/v1.0/me/messages"))
        .and(query_param("$skiptoken", "MSGSKIP123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [row(11)]})))
        .mount(&idp.server)
        .await;
    Mock::given(path("/v1.0/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [row(1)], "@odata.nextLink": next})),
        )
        .mount(&idp.server)
        .await;
    let page = body(app.get("/mail?q=budget").await).await;
    assert!(page.contains("Result 1"));
    let href = more_results(&page);
    assert!(href.starts_with("/mail?q=budget&next="), "{href}");
    let page = body(app.get(&href).await).await;
    assert!(
        page.contains("Result 11") && !page.contains("More results"),
        "{page}"
    );
    // A next link to anywhere else is refused before any call.
    let before = mail_calls(&idp, "/v1.0/me").await.len();
    for elsewhere in [
        "https://evil.example/v1.0/me/messages?$skiptoken=1".to_owned(),
        format!("{}/v1.0/me/mailfolders/inbox/messages", idp.uri()),
        format!("{}/v1.0/me/messages/../../x", idp.uri()),
    ] {
        let r = app
            .client
            .get(app.url("/mail"))
            .query(&[("q", "budget"), ("next", elsewhere.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{elsewhere}");
    }
    assert_eq!(mail_calls(&idp, "/v1.0/me").await.len(), before);
}

#[tokio::test]
async fn the_demo_searches_its_mailbox_with_paging() {
    let app = demo().await;
    let page = body(app.get("/mail?q=contoso").await).await;
    let rows = page.matches("<tr").count() - 1;
    assert_eq!(rows, 10, "{page}");
    let href = more_results(&page);
    let r = app.get(&href).await;
    assert_eq!(r.status(), 200, "{href}");
    let next = body(r).await;
    assert!(next.contains("(more results)"), "{next}");
}
