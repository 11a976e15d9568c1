//! The edges: hostile input, hostile upstreams, and what real tenants do
//! (claims challenges, consent blocked by policy). Issue 9, one test per defect.

use std::time::Duration;

use actix_web::cookie::{Cookie, CookieJar};
use base64::Engine as _;
use outlook_inbox::jwt::action_token::ACTIONS_APP_ID;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const INBOX: &str = "/v1.0/me/mailfolders/inbox/messages";
const APP_ID_URI: &str = "api://auth-am-edges/6cb04018-a3f5-46a7-b995-940c78f5aef3";

fn v1_action_claims(idp: &MockIdp) -> Value {
    let now = now();
    json!({
        "aud": APP_ID_URI, "iss": idp.v1_issuer(), "iat": now, "nbf": now, "exp": now + 3600,
        "appid": ACTIONS_APP_ID, "tid": TENANT, "upn": "john@contoso.com", "ver": "1.0",
    })
}

fn v2_action_claims(idp: &MockIdp) -> Value {
    let now = now();
    json!({
        "aud": CLIENT_ID, "iss": idp.issuer(), "iat": now, "nbf": now, "exp": now + 3600,
        "azp": ACTIONS_APP_ID, "tid": TENANT, "preferred_username": "john@contoso.com", "ver": "2.0",
    })
}

async fn action(app: &TestApp, token: &str, marker: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/api/expense"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Card-Correlation-Id", marker)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---- 1. log forging and floods ----

#[tokio::test]
async fn a_newline_in_an_unverified_header_cannot_forge_a_log_line() {
    captured_logs();
    let app = spawn_app().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let forged_line = format!("2026-12-03T00:00:00Z  INFO expense action accepted forged-{marker}");
    let header = json!({"alg": format!("RS256x\n{forged_line}"), "kid": "k"});
    let token = format!("{}.{}.sig", b64(header.to_string().as_bytes()), b64(b"{}"));
    let long_id = format!("{marker}-{}", "x".repeat(500));
    let r = app
        .client
        .post(app.url("/api/expense"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Action-Request-Id", long_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let logs = captured_logs();
    let ours: Vec<&str> = logs.lines().filter(|l| l.contains(&marker)).collect();
    assert!(!ours.is_empty(), "the refusal was not logged");
    for line in &ours {
        assert!(line.contains("action refused"), "a forged line: {line}");
        assert!(
            !line.contains(&long_id),
            "an untrusted value over 100 characters was logged"
        );
    }
    assert!(
        ours.iter().any(|l| l.contains("RS256x\\n2026-12-03")),
        "{ours:?}"
    );
}

#[tokio::test]
async fn a_flood_of_forged_tokens_is_logged_at_a_bounded_rate_and_counted() {
    captured_logs();
    let app = spawn_app().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let mut request_ids = Vec::new();
    for _ in 0..300 {
        let r = action(&app, "not.a.token", &marker, Vec::new()).await;
        assert_eq!(r.status(), 401);
        request_ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let logs = captured_logs();
    let logged = logs.lines().filter(|l| l.contains(&marker)).count() as u64;
    assert!(logged <= 40, "{logged} lines for 300 refusals");
    // The rest are summed up in the periodic line.
    assert_eq!(app.state.actions.refusals.summarize(), 300 - logged);
    // Every line these requests left, request lines included, is bounded too.
    let lines_of_the_flood = logs
        .lines()
        .filter(|l| request_ids.iter().any(|id| l.contains(id.as_str())))
        .count() as u64;
    let request_lines = lines_of_the_flood - logged;
    assert!(
        (1..=40).contains(&request_lines),
        "{request_lines} request lines"
    );
    assert_eq!(
        app.state.actions.refused_request_lines.summarize(),
        300 - request_lines
    );
}

#[tokio::test]
async fn healthz_gives_a_fixed_reason_and_no_redis_error_text() {
    // Nothing listens on port 9 (discard) on loopback.
    let app = spawn_with(settings(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:9"),
    ]))
    .await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(body(r).await, "redis unavailable");
}

// ---- 2. no redirect loop ----

#[tokio::test]
async fn a_mail_api_that_keeps_refusing_gets_one_silent_sign_in_then_a_page() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "code": "InvalidAuthenticationToken", "message": "Access token validation failure. Invalid audience."
        }})))
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
    let r = app.get("/mail").await;
    assert_eq!(location(&r), "/signin?prompt=none");

    // The silent sign-in succeeds (Microsoft has a session) and the token is refused again.
    let authorize = app.start_sign_in_silently().await;
    let state = query(&authorize, "state").unwrap();
    let nonce = query(&authorize, "nonce").unwrap();
    idp.token_answers(json!({
        "token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QifQ.second.token",
        "id_token": idp.signer.sign(&idp.id_claims(&nonce)).unwrap(),
    }))
    .await;
    let r = app.get(&format!("/gettoken?code=c2&state={state}")).await;
    assert_eq!(location(&r), "/mail");

    let r = app.get("/mail").await;
    assert_eq!(r.status(), 502, "a second redirect would start a loop");
    let page = body(r).await;
    assert!(page.contains("Microsoft refused access to your mailbox"));
    assert!(page.contains("InvalidAuthenticationToken"));
    assert!(page.contains("Invalid audience"));
}

// ---- 4. bounded token-endpoint reads ----

#[tokio::test]
async fn a_huge_token_endpoint_answer_is_not_read_whole() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    // A valid answer, padded past the cap: read whole, it would sign in.
    let r = idp
        .sign_in_valid(&app, json!({"padding": "A".repeat(2 * 1024 * 1024)}))
        .await;
    assert!(
        r.status().is_server_error(),
        "status {} for a 2 MB token answer",
        r.status()
    );
    assert_eq!(location(&app.get("/mail").await), "/");
}

// ---- 5. no panics on upstream data ----

#[tokio::test]
async fn a_received_time_that_utc_cannot_hold_renders_as_missing() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"subject": "From the end of time", "receivedDateTime": "9999-12-31T23:59:59-23:59",
             "from": {"emailAddress": {"name": "Ann", "address": "ann@contoso.com"}}}
        ]})))
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("From the end of time"));
}

#[tokio::test]
async fn an_absurd_expires_in_is_clamped_to_28_hours_not_overflowed() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp
        .sign_in_valid(&app, json!({"expires_in": 9_223_372_036_854_775_807u64}))
        .await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
    // The session believes the token for at most 28 hours.
    let entries = session_entries(&app, &app_cookie(&app).await);
    let user: Value = serde_json::from_str(&entries["user"]).unwrap();
    let expires_at = user["expires_at"].as_i64().unwrap();
    assert!(expires_at <= now() + 28 * 3600, "{expires_at}");
    assert!(expires_at >= now() + 28 * 3600 - 60, "{expires_at}");
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&idp.server)
        .await;
    assert_eq!(app.get("/mail").await.status(), 200);
}

#[tokio::test]
async fn a_plain_expires_in_is_kept_as_it_is() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp.sign_in_valid(&app, json!({"expires_in": 4000})).await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
    let entries = session_entries(&app, &app_cookie(&app).await);
    let user: Value = serde_json::from_str(&entries["user"]).unwrap();
    let expires_at = user["expires_at"].as_i64().unwrap();
    assert!(
        (now() + 3990..=now() + 4000).contains(&expires_at),
        "{expires_at}"
    );
}

// ---- 6. the action body is read only after the token ----

#[tokio::test]
async fn a_body_that_never_ends_without_a_token_is_401_not_read() {
    let app = spawn_app().await;
    // A body with no end: an answer at all proves the app did not wait to
    // read it (a big read limit would wait forever).
    let endless = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Ok::<_, std::io::Error>(vec![b' '; 16 * 1024]), ()))
    });
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        app.client
            .post(app.url("/api/expense"))
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(endless))
            .send(),
    )
    .await
    .expect("the app waited for a body that never ends")
    .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn with_a_valid_token_bodies_over_16_kb_are_413() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app = spawn_with(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    let token = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    // Exactly 16 KiB fits; one byte more does not.
    let sized = |len: usize| {
        let frame = r#"{"action":"approve","note":""}"#.len();
        format!(
            r#"{{"action":"approve","note":"{}"}}"#,
            "n".repeat(len - frame)
        )
    };
    let fits = sized(16 * 1024);
    assert_eq!(fits.len(), 16 * 1024);
    assert_eq!(
        action(&app, &token, "m", fits.into_bytes()).await.status(),
        200
    );
    let over = sized(16 * 1024 + 1);
    let r = action(&app, &token, "m", over.into_bytes()).await;
    assert_eq!(r.status(), 413);
    assert!(r.headers().get("CARD-ACTION-STATUS").is_some());
}

// ---- 7. discovery at start-up, unknown v1 issuer, stale keys ----

#[tokio::test]
async fn while_v1_discovery_fails_v1_tokens_get_503_and_v2_tokens_still_work() {
    let idp = MockIdp::start().await;
    Mock::given(method("GET"))
        .and(path("/common/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&idp.server)
        .await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app = spawn_with(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    let v1 = idp.signer.sign(&v1_action_claims(&idp)).unwrap();
    let r = action(&app, &v1, "m", Vec::new()).await;
    assert_eq!(r.status(), 503, "a genuine v1 token is not 'invalid'");
    assert!(r.headers().get("CARD-ACTION-STATUS").is_some());
    let v2 = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    assert_eq!(action(&app, &v2, "m", Vec::new()).await.status(), 200);
}

#[tokio::test]
async fn v1_discovery_happens_at_start_up_not_on_the_request() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app = spawn_with(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    assert!(
        app.state.provider.v1_issuer().is_some(),
        "the v1 issuer was not fetched at start-up"
    );
}

#[tokio::test]
async fn an_action_during_start_up_discovery_waits_for_it_instead_of_fetching_again() {
    let idp = MockIdp::start().await;
    const V2: &str = "/common/v2.0/.well-known/openid-configuration";
    // A slow authority: the first action arrives while discovery is under way.
    Mock::given(method("GET"))
        .and(path(V2))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(discovery_document(&idp.uri()))
                .set_delay(Duration::from_millis(500)),
        )
        .with_priority(1)
        .mount(&idp.server)
        .await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app =
        TestApp::start_unready(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    let token = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
    let fetches = idp.server.received_requests().await.unwrap();
    let v2 = fetches.iter().filter(|r| r.url.path() == V2).count();
    assert_eq!(v2, 1, "the discovery document was fetched {v2} times");
}

#[tokio::test]
async fn keys_older_than_their_limit_are_not_used_when_they_cannot_be_refreshed() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let mut s = idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())]);
    s.jwks_min_refetch = Duration::ZERO;
    // One hour and 24 hours in production; short here so the test can age the cache.
    s.jwks_max_age = Duration::from_millis(100);
    s.jwks_max_stale = Duration::from_millis(300);
    let app = spawn_with(s).await;
    let token = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
    *idp.keys.broken.lock().unwrap() = Some(502);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = action(&app, &token, "m", Vec::new()).await;
    assert_eq!(r.status(), 503, "a key too old to trust was used");
    // When the key endpoint is back, the same token verifies again.
    *idp.keys.broken.lock().unwrap() = None;
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
}

// ---- 8. the cookie size check measures the real Set-Cookie ----

#[tokio::test]
async fn no_accepted_sign_in_sends_a_set_cookie_over_4096_bytes() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let mut accepted = 0;
    let mut refused = 0;
    // Access tokens with `/`, `+` and `=`, from one cookie to more than the
    // numbered cookies carry.
    for size in (2400..14_400).step_by(600) {
        let person = app.another_browser();
        let token = format!("eyJ0eXAiOiJKV1QifQ.{}.s", "a/b+c=".repeat(size / 6));
        let r = idp
            .sign_in_valid(&person, json!({"access_token": token}))
            .await;
        match r.status().as_u16() {
            302 => {
                accepted += 1;
                for c in r.headers().get_all(SET_COOKIE) {
                    assert!(c.len() <= 4096, "a {}-byte Set-Cookie was sent", c.len());
                }
            }
            413 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

// ---- 9. forged callback errors ----

#[tokio::test]
async fn a_forged_error_callback_shows_no_text_and_does_not_cancel_the_sign_in() {
    let app = spawn_app().await;
    let callback = pick_person(&app, 0).await;
    let r = app
        .get("/gettoken?error=access_denied&error_description=Call%20us%20at%20555-SCAM&state=forged")
        .await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(!page.contains("555-SCAM"), "the attacker's text was shown");
    assert!(!page.contains("access_denied"));
    let r = app.get(&callback).await;
    assert_eq!(r.status(), 302, "the forged callback cancelled the sign-in");
    assert_eq!(app.get("/mail").await.status(), 200);
}

// ---- 10. a signed-out Redis session stays signed out ----

#[tokio::test]
async fn an_update_after_sign_out_does_not_bring_the_redis_session_back() {
    use actix_session::storage::SessionStore as _;
    use outlook_inbox::session_store::{Redis, Store};
    let (url, _server) = test_redis();
    let store = Store::Redis(std::sync::Arc::new(Redis::new(&url, None).await.unwrap()));
    let ttl = actix_web::cookie::time::Duration::hours(12);
    let state = std::collections::HashMap::from([("user".to_owned(), "\"someone\"".to_owned())]);
    let key = store.save(state.clone(), &ttl).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
    // /signout deletes the record while another request (a token refresh) still runs...
    store.delete(&key).await.unwrap();
    // ...and that request then writes its session back.
    let returned = store.update(key, state, &ttl).await.unwrap();
    assert_eq!(
        store.load(&returned).await.unwrap(),
        None,
        "the deleted session came back"
    );
}

// ---- 11. the demo stand-in's stores are bounded ----

#[tokio::test]
async fn the_demo_refuses_oversized_authorize_parameters() {
    let app = spawn_app().await;
    let mut authorize = app.start_sign_in().await;
    let long = "n".repeat(60 * 1024);
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                long.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let r = app.client.get(authorize.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("too long"));
}

// ---- 12. sessions expire after 12 hours, whatever the cookie says ----

#[tokio::test]
async fn a_cookie_session_lasts_12_hours_and_no_longer() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    // Read the cookie the browser holds, as the app would, and age it.
    let cookie = app_cookie(&app).await;
    let plain = session_entries(&app, &cookie);
    // The cookie store keeps no ID or refresh token.
    assert!(
        plain
            .keys()
            .all(|k| !k.contains("refresh") && !k.contains("id_token"))
    );
    assert!(
        plain
            .values()
            .all(|v| !v.contains("refresh_token") && !v.contains("id_token"))
    );
    let issued: i64 = plain["issued_at"].parse().unwrap();
    let aged = |by: i64| {
        edit_cookie(&app, cookie.clone(), |state| {
            state.insert("issued_at".into(), (issued - by).to_string());
        })
    };
    let fresh = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    // Just inside: 11 h 59 min old, still signed in.
    let r = fresh()
        .get(app.url("/mail"))
        .header(COOKIE, aged(12 * 3600 - 60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Past: 12 h 1 min old, signed out.
    let r = fresh()
        .get(app.url("/mail"))
        .header(COOKIE, aged(12 * 3600 + 60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/");
}

/// The session cookie as the app last set it (name=value, percent-encoded).
async fn app_cookie(app: &TestApp) -> String {
    // A request that changes the session makes the app send the cookie again.
    let r = app.get("/signin").await;
    let c = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("inbox_session="))
        .unwrap();
    c.split(';').next().unwrap().to_owned()
}

// ---- claims challenges and consent ----

#[tokio::test]
async fn every_sign_in_declares_cp1() {
    let app = spawn_app().await;
    let authorize = app.start_sign_in().await;
    let claims: Value = serde_json::from_str(&query(&authorize, "claims").unwrap()).unwrap();
    assert_eq!(
        claims,
        json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
    );
}

#[tokio::test]
async fn a_claims_challenge_drops_the_token_and_signs_in_with_the_claims() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
    let header = format!(
        r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="{}""#,
        base64::engine::general_purpose::STANDARD.encode(challenge)
    );
    Mock::given(path(INBOX))
        .respond_with(ResponseTemplate::new(401).insert_header("WWW-Authenticate", header.as_str()))
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/signin");
    let authorize = app.start_sign_in().await;
    let claims: Value = serde_json::from_str(&query(&authorize, "claims").unwrap()).unwrap();
    assert_eq!(claims["access_token"]["nbf"]["value"], "1604106651");
    assert_eq!(claims["access_token"]["xms_cc"]["values"][0], "cp1");
    // The challenge is used once: the next sign-in asks for cp1 only.
    let again = app.start_sign_in().await;
    let claims: Value = serde_json::from_str(&query(&again, "claims").unwrap()).unwrap();
    assert!(claims["access_token"].get("nbf").is_none());
}

/// The admin-consent link of a "consent required" page, unescaped.
fn admin_consent_link(page: &str) -> url::Url {
    let start = page.find("id=\"admin-consent\" href=\"").unwrap() + 25;
    let link = page[start..start + page[start..].find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    url::Url::parse(&link).unwrap()
}

#[tokio::test]
async fn consent_blocked_by_policy_gets_a_page_with_the_admin_consent_link() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?error=access_denied&error_description=AADSTS90094%3A+Admin+approval+required&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 403);
    let page = body(r).await;
    assert!(page.contains("An administrator must approve this app"));
    let link = admin_consent_link(&page);
    assert_eq!(link.path(), "/common/v2.0/adminconsent");
    assert_eq!(query(&link, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query(&link, "redirect_uri"),
        Some(format!("{}/gettoken", app.address))
    );
    assert_eq!(
        query(&link, "scope").as_deref(),
        Some("https://graph.microsoft.com/User.Read https://graph.microsoft.com/Mail.Read")
    );
    let consent_state = query(&link, "state").unwrap();

    // A forged admin-consent answer is refused; the real one is understood.
    let r = app
        .get("/gettoken?admin_consent=True&tenant=x&state=forged")
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .get(&format!(
            "/gettoken?admin_consent=True&tenant={TENANT}&state={consent_state}"
        ))
        .await;
    // The forged answer spent nothing: only a matching state is consumed.
    assert_eq!(r.status(), 200, "{}", body(r).await);
}

#[tokio::test]
async fn an_admin_consent_answer_other_than_true_is_not_taken_for_consent() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let page = body(
        app.get(&format!(
            "/gettoken?error=access_denied&error_description=AADSTS90094%3A+Admin+approval+required&state={state}"
        ))
        .await,
    )
    .await;
    let consent_state = query(&admin_consent_link(&page), "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?admin_consent=False&tenant={TENANT}&state={consent_state}"
        ))
        .await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(page.contains("admin_consent_not_granted"), "{page}");
}

// ---- the memory of verified action tokens ----

#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_is_retired() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let mut s = idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())]);
    s.jwks_min_refetch = Duration::ZERO;
    let app = spawn_with(s).await;
    let token = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
    // The key is retired and a new one published; the refresh installs the new set.
    let rotated = outlook_inbox::jwt::signer::RsaSigner::generate("key-2").unwrap();
    idp.keys.publish(&[&rotated]);
    let url = url::Url::parse(&format!("{}/common/discovery/v2.0/keys", idp.uri())).unwrap();
    app.state.verifier.keys().refresh_if_cached(&url).await;
    // The remembered token was signed by the retired key: it is refused now.
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 401);
}

/// The periodic refresh itself (every 55 minutes by default; 300 ms here):
/// a key published after start-up is used without any request asking for
/// it, while an unknown `kid` alone may not refetch (60 s apart).
#[tokio::test]
async fn the_periodic_refresh_installs_a_new_key_set_by_itself() {
    let defaults = outlook_inbox::settings::Settings::from_lookup(|_| None).unwrap();
    assert!(defaults.refresh_period <= Duration::from_secs(3600));
    assert_eq!(defaults.jwks_min_refetch, Duration::from_secs(60));
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let mut s = idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())]);
    // Long enough that the press right after publishing meets the old set
    // even on a busy machine; short enough for a test.
    s.refresh_period = Duration::from_secs(2);
    s.jwks_min_refetch = Duration::from_secs(3600);
    // Made before the app starts: an RSA key takes a while in a debug build.
    let rotated = outlook_inbox::jwt::signer::RsaSigner::generate("key-periodic").unwrap();
    let app = spawn_with(s).await;
    let old = idp.signer.sign(&v2_action_claims(&idp)).unwrap();
    assert_eq!(action(&app, &old, "m", Vec::new()).await.status(), 200);
    idp.keys.publish(&[&rotated]);
    let fresh = rotated.sign(&v2_action_claims(&idp)).unwrap();
    // Until the refresh, the new kid is unknown (and may not be refetched).
    assert_eq!(action(&app, &fresh, "m", Vec::new()).await.status(), 401);
    let mut accepted = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if action(&app, &fresh, "m", Vec::new()).await.status() == 200 {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the periodic refresh never installed the new key");
    // And the retired key is gone with it.
    assert_eq!(action(&app, &old, "m", Vec::new()).await.status(), 401);
}

#[tokio::test]
async fn a_remembered_token_still_expires() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app = spawn_with(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    let mut claims = v2_action_claims(&idp);
    // Expired 299 s ago: inside the 300 s leeway now, outside it in two seconds.
    claims["exp"] = json!(now() - 299);
    let token = idp.signer.sign(&claims).unwrap();
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(action(&app, &token, "m", Vec::new()).await.status(), 401);
}

// ---- promises the suite did not hold (issue 13) ----

#[tokio::test]
async fn interaction_required_after_a_silent_attempt_leads_to_the_interactive_sign_in() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp.sign_in_valid(&app, json!({"expires_in": "30"})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&app.get("/mail").await), "/signin?prompt=none");
    let authorize = app.start_sign_in_silently().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?error=interaction_required&error_description=AADSTS50076%3A+MFA+required&state={state}"
        ))
        .await;
    assert_eq!(location(&r), "/signin");
    let interactive = app.start_sign_in().await;
    assert_eq!(query(&interactive, "prompt"), None);
}

#[tokio::test]
async fn only_a_silent_attempt_that_needs_interaction_goes_round_again() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    // An interactive sign-in answered login_required: a page, not a loop.
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?error=login_required&error_description=AADSTS50058&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("login_required"));
    // A silent attempt refused for another reason: a page too.
    let r = idp.sign_in_valid(&app, json!({"expires_in": "30"})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&app.get("/mail").await), "/signin?prompt=none");
    let authorize = app.start_sign_in_silently().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?error=access_denied&error_description=AADSTS50105&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("access_denied"));
}

#[tokio::test]
async fn a_sign_in_answered_with_an_error_cannot_be_finished_afterwards() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let nonce = query(&authorize, "nonce").unwrap();
    let challenge = query(&authorize, "code_challenge").unwrap();
    let r = app
        .get(&format!("/gettoken?error=access_denied&state={state}"))
        .await;
    assert_eq!(r.status(), 400);
    // A code presented later with the same state is refused unspent: the
    // state was used up by the first answer.
    idp.token_answers_pkce(
        json!({
            "token_type": "Bearer", "scope": "User.Read Mail.Read", "expires_in": 3599,
            "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.access.token",
            "id_token": idp.signer.sign(&idp.id_claims(&nonce)).unwrap(),
        }),
        challenge,
    )
    .await;
    let r = app
        .get(&format!("/gettoken?code=late-code&state={state}"))
        .await;
    assert_eq!(r.status(), 400);
    assert!(
        body(r)
            .await
            .contains("This sign-in link is not valid here")
    );
    assert_eq!(location(&app.get("/mail").await), "/");
}

/// Decrypts the app's session cookie (as the test browser last got it), lets
/// `edit` change its entries, and returns the re-encrypted `name=value`.
async fn edited_cookie(
    app: &TestApp,
    edit: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> String {
    let cookie = app_cookie(app).await;
    edit_cookie(app, cookie, edit)
}

/// The entries of the session in `cookie` (`name=value`, one piece).
fn session_entries(app: &TestApp, cookie: &str) -> std::collections::HashMap<String, String> {
    let key = app.state.session_key.clone();
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::parse_encoded(cookie.to_owned()).unwrap());
    let plain = jar.private(&key).get("inbox_session").unwrap();
    serde_json::from_str(plain.value()).unwrap()
}

/// `cookie` decrypted, changed by `edit` and encrypted again.
fn edit_cookie(
    app: &TestApp,
    cookie: String,
    edit: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> String {
    let key = app.state.session_key.clone();
    let mut state = session_entries(app, &cookie);
    edit(&mut state);
    let mut jar = CookieJar::new();
    jar.private_mut(&key).add(Cookie::new(
        "inbox_session",
        serde_json::to_string(&state).unwrap(),
    ));
    jar.get("inbox_session").unwrap().encoded().to_string()
}

/// Starts a sign-in and ages its pending state by `age` seconds; then
/// comes back to `/gettoken` with a code the token endpoint redeems (PKCE
/// and nonce right), as Microsoft would after a slow sign-in.
async fn come_back_after(idp: &MockIdp, app: &TestApp, age: i64) -> reqwest::Response {
    let r = app.get("/signin").await;
    let authorize = url::Url::parse(&location(&r)).unwrap();
    let cookie = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("inbox_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let aged = edit_cookie(app, cookie, |state| {
        let mut pending: Value = serde_json::from_str(&state["pending"]).unwrap();
        pending["created_at"] = json!(now() - age);
        state.insert("pending".into(), pending.to_string());
    });
    let nonce = query(&authorize, "nonce").unwrap();
    idp.token_answers_pkce(
        json!({
            "token_type": "Bearer", "expires_in": 3599,
            "access_token": "eyJ0eXAiOiJKV1QifQ.aged.token",
            "id_token": idp.signer.sign(&idp.id_claims(&nonce)).unwrap(),
        }),
        query(&authorize, "code_challenge").unwrap(),
    )
    .await;
    let state = query(&authorize, "state").unwrap();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!("/gettoken?code=c&state={state}")))
        .header(COOKIE, aged)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pending_sign_in_lasts_ten_minutes_and_not_a_second_more() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    // Just inside: 9 min 50 s after it started, the sign-in completes.
    let r = come_back_after(&idp, &app, 590).await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
    assert_eq!(location(&r), "/mail");
    // Just past: 10 min 1 s, it is refused before the code is redeemed.
    let r = come_back_after(&idp, &app, 601).await;
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("This sign-in took too long"));
}

#[tokio::test]
async fn the_cookie_store_keeps_no_id_or_refresh_token() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp
        .sign_in_valid(&app, json!({"refresh_token": "0.refresh-secret-value"}))
        .await;
    assert_eq!(r.status(), 302);
    let mut seen = String::new();
    let _ = edited_cookie(&app, |state| {
        seen = serde_json::to_string(state).unwrap();
    })
    .await;
    assert!(seen.contains("access_token"), "{seen}");
    assert!(
        !seen.contains("0.refresh-secret-value"),
        "a refresh token in the cookie"
    );
    assert!(!seen.contains("refresh_token"), "{seen}");
    assert!(
        !seen.contains("id_token") && !seen.contains(&idp.signer.kid().to_string()),
        "{seen}"
    );
}

#[tokio::test]
async fn the_outbound_client_follows_no_redirect() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    Mock::given(path(INBOX))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}/elsewhere", idp.uri()).as_str()),
        )
        .mount(&idp.server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .expect(0)
        .mount(&idp.server)
        .await;
    let r = app.get("/mail").await;
    assert_eq!(
        r.status(),
        502,
        "a redirect is an error, not something to follow"
    );
    idp.server.verify().await;
}

// ---- the demo's stores are bounded ----

#[tokio::test]
async fn the_demo_keeps_at_most_2000_live_codes() {
    let app = spawn_app().await;
    let authorize = app.start_sign_in().await;
    let page = body(app.client.get(authorize.as_str()).send().await.unwrap()).await;
    let mut form: Vec<(String, String)> = page
        .split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + input[start..].find('"').unwrap();
                input[start..end]
                    .replace("&amp;", "&")
                    .replace("&#34;", "\"")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    form.push(("choice".into(), "0".into()));
    let picked = || async {
        let r = app
            .client
            .post(authorize.as_str())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        url::Url::parse(&location(&r)).unwrap()
    };
    for n in 0..2000 {
        let back = picked().await;
        assert!(query(&back, "code").is_some(), "code {n}: {back}");
    }
    // The 2,001st is refused, not stored.
    let back = picked().await;
    assert_eq!(query(&back, "code"), None);
    assert!(query(&back, "error").is_some(), "{back}");
}

#[tokio::test]
async fn the_demo_keeps_at_most_20_card_messages_a_mailbox() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let entries = session_entries(&app, &app_cookie(&app).await);
    let user: Value = serde_json::from_str(&entries["user"]).unwrap();
    let token = user["access_token"].as_str().unwrap().to_owned();
    let me = user["email"].as_str().unwrap().to_owned();
    for n in 0..25 {
        let html = format!(
            "<html><head><script type=\"application/adaptivecard+json\">{{\"type\":\"AdaptiveCard\",\"n\":{n}}}</script></head><body>Card {n}</body></html>"
        );
        let r = app
            .client
            .post(app.url("/_demo/graph/v1.0/me/sendMail"))
            .bearer_auth(&token)
            .json(&json!({"message": {
                "subject": format!("Card {n}"),
                "body": {"contentType": "HTML", "content": html},
                "toRecipients": [{"emailAddress": {"address": me}}],
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "card {n}");
    }
    let list: Value = app
        .client
        .get(app.url("/_demo/graph/v1.0/me/mailfolders/inbox/messages?$top=200&$select=subject"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cards: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .filter(|s| s.starts_with("Card "))
        .collect();
    assert_eq!(cards.len(), 20, "{cards:?}");
    // The newest are kept, the oldest went first.
    assert!(cards.contains(&"Card 24") && !cards.contains(&"Card 4"));
}
