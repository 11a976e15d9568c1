//! The mail call against a mock API: its request, and every way it can fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const INBOX: &str = "/v1.0/me/mailfolders/inbox/messages";

fn messages(n: usize) -> serde_json::Value {
    let value: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "receivedDateTime": format!("2026-11-{:02}T09:14:00Z", 20 - i),
                "subject": format!("Message <{i}>"),
                "from": {"emailAddress": {"name": format!("Sender {i}"), "address": format!("s{i}@contoso.com")}},
            })
        })
        .collect();
    json!({ "value": value })
}

async fn signed_in(extra: &[(&str, &str)]) -> (MockIdp, TestApp) {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(extra)).await;
    idp.sign_in_ok(&app).await;
    (idp, app)
}

#[tokio::test]
async fn the_mail_call_asks_graph_for_the_inbox_with_tracing_headers() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(method("GET"))
        .and(path(INBOX))
        .and(query_param("$top", "10"))
        .and(query_param(
            "$select",
            "receivedDateTime,subject,from,isRead,hasAttachments,importance",
        ))
        .and(query_param("$orderby", "receivedDateTime DESC"))
        .and(header("Prefer", "IdType=\"ImmutableId\""))
        .and(header(
            "Authorization",
            "Bearer eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.access.token",
        ))
        .and(header("Accept", "application/json"))
        .and(header("X-AnchorMailbox", "AbeLi@contoso.com"))
        .and(header("return-client-request-id", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(messages(10)))
        .expect(1)
        .mount(&idp.server)
        .await;

    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(page.contains("Message &#60;0&#62;"));
    assert!(page.contains("title=\"s0@contoso.com\""));
    assert!(page.contains("<time datetime=\"2026-11-20T09:14:00Z\""));
    let requests = idp.server.received_requests().await.unwrap();
    let call = requests.iter().find(|r| r.url.path() == INBOX).unwrap();
    let id = call
        .headers
        .get("client-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // Page 1 skips nothing.
    assert!(call.url.query().is_some_and(|q| !q.contains("skip")));
}

#[tokio::test]
async fn the_outlook_flavour_asks_for_pascal_case_and_reads_it() {
    let idp = MockIdp::start().await;
    let api = format!("{}/api/v2.0", idp.uri());
    let app =
        spawn_with(idp.settings(&[("MAIL_API", "outlook"), ("MAIL_API_URL", api.as_str())])).await;
    let authorize = app.start_sign_in().await;
    assert_eq!(
        query(&authorize, "scope").as_deref(),
        Some("openid profile offline_access https://outlook.office.com/Mail.Read")
    );
    idp.sign_in_ok(&app).await;
    Mock::given(method("GET"))
        .and(path("/api/v2.0/me/mailfolders/inbox/messages"))
        .and(query_param(
            "$select",
            "ReceivedDateTime,Subject,From,IsRead,HasAttachments,Importance",
        ))
        .and(query_param("$orderby", "ReceivedDateTime DESC"))
        .and(query_param("$top", "10"))
        .and(header("X-AnchorMailbox", "AbeLi@contoso.com"))
        .and(header("return-client-request-id", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"Id": "1", "Subject": "Outlook shaped", "ReceivedDateTime": "2026-11-20T09:14:00Z",
             "From": {"EmailAddress": {"Name": "Pascal", "Address": "pascal@contoso.com"}}}
        ]})))
        .expect(1)
        .mount(&idp.server)
        .await;
    let page = body(app.get("/mail").await).await;
    assert!(
        page.contains("Outlook shaped") && page.contains("Pascal"),
        "{page}"
    );
}

#[tokio::test]
async fn an_empty_inbox_has_its_own_page() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("Your Inbox is empty"));
}

#[tokio::test]
async fn a_refused_access_token_sends_the_person_to_a_silent_sign_in() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
        )
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/signin?prompt=none");
    let authorize = app.start_sign_in_silently().await;
    assert_eq!(query(&authorize, "prompt").as_deref(), Some("none"));
    assert_eq!(
        query(&authorize, "login_hint").as_deref(),
        Some("AbeLi@contoso.com")
    );
}

#[tokio::test]
async fn an_expired_access_token_tries_silently_then_interactively() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    // A token that is already inside the one-minute safety margin.
    let r = idp.sign_in_valid(&app, json!({"expires_in": "30"})).await;
    assert_eq!(r.status(), 302);
    let r = app.get("/mail").await;
    assert_eq!(location(&r), "/signin?prompt=none");

    let authorize = app.start_sign_in_silently().await;
    assert_eq!(
        query(&authorize, "login_hint").as_deref(),
        Some("AbeLi@contoso.com")
    );
    let state = query(&authorize, "state").unwrap();
    // Microsoft has no session for this person: fall back to the interactive sign-in.
    let r = app
        .get(&format!(
            "/gettoken?error=login_required&error_description=AADSTS50058&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/signin");
    let interactive = app.start_sign_in().await;
    assert_eq!(query(&interactive, "prompt"), None);
}

#[tokio::test]
async fn throttling_is_retried_once_when_the_wait_is_short() {
    let (idp, app) = signed_in(&[]).await;
    let times = Arc::new(Mutex::new(Vec::new()));
    Mock::given(path(INBOX))
        .respond_with(Stamped(
            times.clone(),
            ResponseTemplate::new(429).insert_header("Retry-After", "0.4"),
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&idp.server)
        .await;
    Mock::given(path(INBOX))
        .respond_with(Stamped(
            times.clone(),
            ResponseTemplate::new(200).set_body_json(messages(3)),
        ))
        .expect(1)
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("Message &#60;2&#62;"));
    idp.server.verify().await;
    // The retry waited at least as long as Retry-After asked (a lower bound: it cannot flake).
    let t = times.lock().unwrap();
    assert_eq!(t.len(), 2);
    assert!(
        t[1] - t[0] >= Duration::from_millis(400),
        "{:?}",
        t[1] - t[0]
    );
}

/// A response that notes when it was given.
struct Stamped(Arc<Mutex<Vec<std::time::Instant>>>, ResponseTemplate);

impl wiremock::Respond for Stamped {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(std::time::Instant::now());
        self.1.clone()
    }
}

#[tokio::test]
async fn persistent_throttling_says_when_to_retry() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})),
        )
        .expect(2)
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    assert!(body(r).await.contains("Microsoft is throttling us"));
}

#[tokio::test]
async fn a_long_retry_after_is_not_waited_for() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "120"))
        .expect(1)
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 503);
    assert!(body(r).await.contains("try again in 120 s"));
}

#[tokio::test]
async fn a_server_error_shows_the_client_request_id() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("request-id", "f88be238-0000-0000-0000-000000000000")
                .set_body_json(json!({"error": {"code": "ErrorInternalServerError", "message": "<b>boom</b>"}})),
        )
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 502);
    let page = body(r).await;
    let requests = idp.server.received_requests().await.unwrap();
    let call = requests.iter().find(|r| r.url.path() == INBOX).unwrap();
    let id = call
        .headers
        .get("client-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(page.contains(id), "{page}");
    assert!(page.contains("ErrorInternalServerError"));
    assert!(!page.contains("<b>boom"));
}

#[tokio::test]
async fn a_hung_mail_api_times_out_with_a_page() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(messages(1))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 504);
    assert!(body(r).await.contains("did not answer in time"));
}

#[tokio::test]
async fn malformed_json_gets_an_explanation() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"value\": [ {\"subject\": "))
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 502);
    assert!(body(r).await.contains("could not read"));
}

#[tokio::test]
async fn a_token_too_big_for_a_cookie_gets_a_page_naming_the_redis_store() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    // Beyond what the numbered cookies carry (about 11 KB of token).
    let big = format!("eyJ0eXAiOiJKV1QifQ.{}.sig", "A".repeat(16_000));
    let r = idp.sign_in_valid(&app, json!({"access_token": big})).await;
    assert_eq!(r.status(), 413);
    for cookie in r.headers().get_all("set-cookie") {
        assert!(cookie.len() < 4096);
    }
    let page = body(r).await;
    assert!(page.contains("SESSION_STORE=redis"), "{page}");
    assert_eq!(location(&app.get("/mail").await), "/");
}

#[tokio::test]
async fn a_failing_profile_call_leaves_the_home_page_working() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path("/v1.0/me"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&idp.server)
        .await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(page.contains("Abe &#60;b&#62;Lincoln&#60;/b&#62;"));
    assert!(page.contains("could not be loaded"));
}

#[tokio::test]
async fn the_profile_shows_the_job_title_from_graph() {
    let (idp, app) = signed_in(&[]).await;
    Mock::given(path("/v1.0/me"))
        .and(query_param("$select", "displayName,jobTitle,mail"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"displayName": "Abe Lincoln", "jobTitle": "President <16th>"}),
            ),
        )
        .mount(&idp.server)
        .await;
    let page = body(app.get("/").await).await;
    assert!(page.contains("President &#60;16th&#62;"), "{page}");
}
