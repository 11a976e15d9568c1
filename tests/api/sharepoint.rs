//! The SharePoint user's title at sign-in, and every way it can fail gracefully.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const CURRENT_USER: &str = "/sites/team/_api/web/currentuser";

/// A mock platform whose refresh grant answers `refresh` and whose SharePoint answers `site`.
async fn with_sharepoint(refresh: ResponseTemplate, site: ResponseTemplate) -> (MockIdp, TestApp) {
    let idp = MockIdp::start().await;
    let site_url = format!("{}/sites/team", idp.uri());
    let app = spawn_with(idp.settings(&[("SHAREPOINT_SITE", site_url.as_str())])).await;
    Mock::given(method("POST"))
        .and(path("/common/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(refresh)
        .mount(&idp.server)
        .await;
    Mock::given(method("GET"))
        .and(path(CURRENT_USER))
        .respond_with(site)
        .mount(&idp.server)
        .await;
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"subject": "Still here", "receivedDateTime": "2026-11-20T09:14:00Z",
             "from": {"emailAddress": {"name": "Ann", "address": "ann@contoso.com"}}}
        ]})))
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
    (idp, app)
}

fn sharepoint_token() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer", "expires_in": 3599, "access_token": "sp-access-token-secret",
        "refresh_token": "0.rotated", "scope": "AllSites.Read",
    }))
}

fn current_user() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "Id": 7, "Title": "Abe <i>Lincoln</i>", "Email": "AbeLi@contoso.com",
        "LoginName": "i:0#.f|membership|abeli@contoso.com",
    }))
}

/// Home and the Inbox still work, and the home page explains `reason`.
async fn explains(app: &TestApp, reason: &str) {
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(page.contains("On SharePoint"));
    assert!(page.contains(reason), "{reason} missing from {page}");
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("Still here"));
}

#[tokio::test]
async fn the_sharepoint_title_is_shown_and_the_request_is_right() {
    let (idp, app) = with_sharepoint(sharepoint_token(), current_user()).await;
    let page = body(app.get("/").await).await;
    assert!(
        page.contains("Abe &#60;i&#62;Lincoln&#60;/i&#62;"),
        "{page}"
    );
    assert!(page.contains("AbeLi@contoso.com"));

    let requests = idp.server.received_requests().await.unwrap();
    let refresh = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("grant_type=refresh_token"))
        .unwrap();
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&refresh.body)
            .into_owned()
            .collect();
    assert_eq!(form["refresh_token"], "0.refresh");
    assert_eq!(form["scope"], format!("{}/AllSites.Read", idp.uri()));
    let call = requests
        .iter()
        .find(|r| r.url.path() == CURRENT_USER)
        .unwrap();
    assert_eq!(
        call.headers.get("accept").unwrap(),
        "application/json;odata=nometadata"
    );
    assert_eq!(
        call.headers.get("authorization").unwrap(),
        "Bearer sp-access-token-secret"
    );
}

#[tokio::test]
async fn no_token_appears_in_any_page() {
    let (_idp, app) = with_sharepoint(sharepoint_token(), current_user()).await;
    for p in ["/", "/mail", "/signout"] {
        let page = body(app.get(p).await).await;
        for secret in [
            "sp-access-token-secret",
            "0.refresh",
            "0.rotated",
            "access.token",
            "eyJ",
        ] {
            assert!(!page.contains(secret), "{p} shows {secret}");
        }
    }
}

#[tokio::test]
async fn missing_consent_is_explained() {
    let refused = ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant",
        "error_description": "AADSTS65001: The user or administrator has not consented to use the application.",
    }));
    let (_idp, app) = with_sharepoint(refused, current_user()).await;
    explains(&app, "has not been consented to").await;
}

#[tokio::test]
async fn consent_required_is_explained() {
    let refused = ResponseTemplate::new(400).set_body_json(json!({"error": "consent_required"}));
    let (_idp, app) = with_sharepoint(refused, current_user()).await;
    explains(&app, "AllSites.Read").await;
}

#[tokio::test]
async fn a_401_or_403_from_sharepoint_is_explained() {
    for status in [401, 403] {
        let (_idp, app) = with_sharepoint(sharepoint_token(), ResponseTemplate::new(status)).await;
        explains(&app, "SharePoint refused access to the site").await;
    }
}

#[tokio::test]
async fn a_missing_site_is_explained() {
    let (_idp, app) = with_sharepoint(sharepoint_token(), ResponseTemplate::new(404)).await;
    explains(&app, "The SharePoint site was not found.").await;
}

#[tokio::test]
async fn a_hung_sharepoint_is_explained() {
    let slow = current_user().set_delay(Duration::from_secs(5));
    let (_idp, app) = with_sharepoint(sharepoint_token(), slow).await;
    explains(&app, "SharePoint did not answer in time.").await;
}

#[tokio::test]
async fn demo_mode_shows_the_sharepoint_title_out_of_the_box() {
    let app = spawn_app().await;
    sign_in_as(&app, 1).await;
    let page = body(app.get("/").await).await;
    assert!(page.contains("On SharePoint"));
    assert!(page.contains("Alex Wilber"));
    assert!(page.contains("AlexW@contoso.com"));
    assert!(!page.contains("eyJ"));
}

#[tokio::test]
async fn the_sharepoint_call_asks_for_flat_json() {
    let idp = MockIdp::start().await;
    let site_url = format!("{}/sites/team", idp.uri());
    let app = spawn_with(idp.settings(&[("SHAREPOINT_SITE", site_url.as_str())])).await;
    Mock::given(body_string_contains("grant_type=refresh_token"))
        .respond_with(sharepoint_token())
        .mount(&idp.server)
        .await;
    Mock::given(path(CURRENT_USER))
        .and(header("accept", "application/json;odata=nometadata"))
        .respond_with(current_user())
        .expect(1)
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
}

#[tokio::test]
async fn a_sharepoint_server_error_is_explained() {
    for status in [500, 502, 503] {
        let (_idp, app) = with_sharepoint(sharepoint_token(), ResponseTemplate::new(status)).await;
        explains(&app, "SharePoint answered with an error.").await;
    }
}

#[tokio::test]
async fn an_unreadable_sharepoint_answer_is_explained() {
    for answer in [
        ResponseTemplate::new(200).set_body_string("<html>not json</html>"),
        ResponseTemplate::new(200).set_body_json(json!({"Id": 7})),
        ResponseTemplate::new(200).set_body_json(json!({"Title": "   "})),
    ] {
        let (_idp, app) = with_sharepoint(sharepoint_token(), answer).await;
        explains(&app, "SharePoint sent an answer we could not read.").await;
    }
}

#[tokio::test]
async fn an_unreachable_sharepoint_is_explained() {
    let idp = MockIdp::start().await;
    // Nothing listens on the discard port of this machine.
    let app =
        spawn_with(idp.settings(&[("SHAREPOINT_SITE", "http://127.0.0.1:9/sites/team")])).await;
    Mock::given(method("POST"))
        .and(path("/common/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(sharepoint_token())
        .mount(&idp.server)
        .await;
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"subject": "Still here", "receivedDateTime": "2026-11-20T09:14:00Z"}
        ]})))
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
    explains(&app, "SharePoint could not be reached.").await;
}
