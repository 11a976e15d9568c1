//! `SESSION_STORE=redis` against a real Redis server and real app instances.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const INBOX: &str = "/v1.0/me/mailfolders/inbox/messages";
/// A test-only session key (64 bytes, base64) shared by the instances of a test.
const SHARED_KEY: &str =
    "dGVzdC1vbmx5LXNlc3Npb24ta2V5LWZvci1vdXRsb29rLWluYm94LWludGVncmF0aW9uLXRlc3RzLTEyMzQ1Njc4";

fn redis_settings(idp: &MockIdp, url: &str) -> outlook_inbox::settings::Settings {
    idp.settings(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", url),
        ("SESSION_KEY", SHARED_KEY),
    ])
}

async fn inbox_answers(idp: &MockIdp, token: &str) {
    Mock::given(path(INBOX))
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"subject": "From Redis land", "receivedDateTime": "2026-11-20T09:14:00Z",
             "from": {"emailAddress": {"name": "Ann", "address": "ann@contoso.com"}}}
        ]})))
        .mount(&idp.server)
        .await;
}

fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("inbox_session=") && !c.starts_with("inbox_session=;"))
}

#[tokio::test]
async fn a_6_kb_access_token_signs_in_and_the_cookie_holds_only_an_id() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, &url)).await;
    let big = format!("eyJ0eXAiOiJKV1QifQ.{}.sig", "B".repeat(6 * 1024));
    let r = idp.sign_in_valid(&app, json!({"access_token": big})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/mail");
    let cookie = session_cookie(&r).unwrap();
    let value = cookie.split(';').next().unwrap();
    assert!(value.len() < 200, "{} bytes", value.len());
    assert!(!value.contains("eyJ"));
    inbox_answers(&idp, &big).await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("From Redis land"));
}

#[tokio::test]
async fn two_instances_share_a_session_and_sign_out_on_one_revokes_on_the_other() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let a = spawn_with(redis_settings(&idp, &url)).await;
    let b = spawn_with(redis_settings(&idp, &url)).await;
    inbox_answers(
        &idp,
        "eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.access.token",
    )
    .await;

    let r = idp.sign_in_valid(&a, json!({})).await;
    let cookie = session_cookie(&r).unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    // Another browser-less client, sending only that cookie, to instance B.
    let replay = || {
        browser()
            .get(b.url("/mail"))
            .header(COOKIE, cookie.clone())
            .send()
    };
    let r = replay().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("From Redis land"));

    let r = a
        .client
        .get(a.url("/signout"))
        .header(COOKIE, cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = replay().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_two_concurrent_requests() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, &url)).await;
    Mock::given(method("POST"))
        .and(path("/common/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=0.refresh"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "token_type": "Bearer", "expires_in": "3599", "access_token": "renewed-access",
                    "refresh_token": "0.refresh-rotated", "scope": "User.Read Mail.Read",
                }))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&idp.server)
        .await;
    inbox_answers(&idp, "renewed-access").await;
    // Expires inside the two-minute margin.
    let r = idp.sign_in_valid(&app, json!({"expires_in": 90})).await;
    assert_eq!(r.status(), 302);

    let (one, two) = tokio::join!(app.get("/mail"), app.get("/mail"));
    assert_eq!(one.status(), 200);
    assert_eq!(two.status(), 200);
    // The rotated refresh token is what the session now keeps.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut found = false;
    for key in keys {
        let value: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if value.contains("renewed-access") {
            assert!(value.contains("0.refresh-rotated"));
            found = true;
        }
    }
    assert!(found, "no session holds the refreshed tokens");
    // And later requests use the stored token without refreshing again.
    assert_eq!(app.get("/mail").await.status(), 200);
}

#[tokio::test]
async fn a_refused_refresh_sends_the_person_to_sign_in() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, &url)).await;
    Mock::given(method("POST"))
        .and(path("/common/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=0.refresh"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired.",
        })))
        .expect(1)
        .mount(&idp.server)
        .await;
    // 90 s left: inside the two-minute refresh margin, outside the one-minute
    // expiry margin, so only the refusal of the refresh can send the person away.
    let r = idp.sign_in_valid(&app, json!({"expires_in": 90})).await;
    assert_eq!(r.status(), 302);
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/signin?prompt=none");
    idp.server.verify().await;
}

#[tokio::test]
async fn redis_down_gives_503_pages_and_health_and_recovers_without_a_restart() {
    let mut server = RedisServer::start();
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, &server.url())).await;
    inbox_answers(
        &idp,
        "eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.access.token",
    )
    .await;
    idp.sign_in_ok(&app).await;
    assert_eq!(app.get("/mail").await.status(), 200);

    server.stop();
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 503);
    assert!(body(r).await.contains("Sign-in is unavailable for now"));
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 503);
    assert!(body(r).await.contains("redis"));
    // A newcomer cannot start a sign-in either, but the rest keeps working.
    let r = browser().get(app.url("/signin")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        browser().get(app.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(app.get("/static/site.css").await.status(), 200);

    server.restart();
    assert!(
        eventually(&app, "/healthz", 200).await,
        "Redis did not come back"
    );
    // Redis kept nothing (no persistence): sign in again, and it all works.
    let fresh = app.another_browser();
    idp.sign_in_ok(&fresh).await;
    let r = fresh.get("/mail").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_app_starts_without_redis_and_a_bad_url_is_a_start_up_error() {
    let e = outlook_inbox::settings::Settings::from_lookup(|k| match k {
        "SESSION_STORE" => Some("redis".into()),
        "REDIS_URL" => Some("redis://exa mple".into()),
        _ => None,
    })
    .expect_err("a URL with a space is refused");
    assert_eq!(e.variable, "REDIS_URL");
    // A URL that parses but that Redis cannot use: the start-up error names it
    // (on port 0, so a busy port 8000 cannot be the reason).
    let s = settings(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:6379/not-a-database-number"),
    ]);
    let e = outlook_inbox::startup::Application::build(s)
        .await
        .err()
        .expect("an unusable REDIS_URL must not start");
    assert!(e.to_string().starts_with("REDIS_URL: "), "{e}");
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, "redis://127.0.0.1:9")).await;
    assert_eq!(app.get("/healthz").await.status(), 503);
    assert_eq!(app.get("/").await.status(), 200);
}

#[tokio::test]
async fn the_session_record_expires_after_12_hours_and_sign_in_renews_the_id() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let app = spawn_with(redis_settings(&idp, &url)).await;
    // The cookie holds the encrypted session id: decrypt it as the app does.
    let session_id = |r: &reqwest::Response| {
        let set_cookie = session_cookie(r).unwrap();
        let mut jar = actix_web::cookie::CookieJar::new();
        jar.add_original(
            actix_web::cookie::Cookie::parse_encoded(
                set_cookie.split(';').next().unwrap().to_owned(),
            )
            .unwrap(),
        );
        jar.private(&app.state.session_key)
            .get("inbox_session")
            .unwrap()
            .value()
            .to_owned()
    };
    let before = session_id(&app.get("/signin").await);
    let r = idp.sign_in_valid(&app, json!({})).await;
    let after = session_id(&r);
    assert_ne!(before, after, "the session id was not renewed at sign-in");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert!(
        !exists(before.clone()).await,
        "the pre-sign-in record still exists"
    );
    assert!(exists(after.clone()).await);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&after)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((12 * 3600 - 60..=12 * 3600).contains(&ttl), "TTL {ttl}");
}

#[tokio::test]
async fn demo_mode_works_with_the_redis_store() {
    let (url, _server) = test_redis();
    let app = spawn_with(settings(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", url.as_str()),
    ]))
    .await;
    sign_in_as(&app, 0).await;
    let page = body(app.get("/mail").await).await;
    assert!(page.contains("Q4 budget review"), "{page}");
}
