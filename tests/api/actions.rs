//! `POST /api/expense` with both token schemes, and everything that must fail.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outlook_inbox::jwt::action_token::ACTIONS_APP_ID;
use outlook_inbox::jwt::signer::RsaSigner;
use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

use crate::helpers::*;

const APP_ID_URI: &str = "api://auth-am-0b6a2c1e-test/6cb04018-a3f5-46a7-b995-940c78f5aef3";
const STATUS: &str = "card-action-status";

/// A change to a token's claims.
type Edit = Box<dyn Fn(&mut Value)>;

struct Actions {
    idp: MockIdp,
    app: TestApp,
}

async fn entra(extra: &[(&str, &str)]) -> Actions {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let mut vars = vec![("ACTION_AUDIENCE", audiences.as_str())];
    vars.extend_from_slice(extra);
    let app = spawn_with(idp.settings(&vars)).await;
    Actions { idp, app }
}

/// A v1 Entra access token as the Actions service sends it.
fn v1_claims(idp: &MockIdp, upn: &str) -> Value {
    let now = now();
    json!({
        "aud": APP_ID_URI, "iss": idp.v1_issuer(), "iat": now, "nbf": now, "exp": now + 3600,
        "appid": ACTIONS_APP_ID, "appidacr": "2", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "scp": "Global.Test", "sub": "pairwise", "tid": TENANT, "upn": upn, "ver": "1.0",
    })
}

/// A v2 Entra access token.
fn v2_claims(idp: &MockIdp, user: &str) -> Value {
    let now = now();
    json!({
        "aud": CLIENT_ID, "iss": idp.issuer(), "iat": now, "nbf": now, "exp": now + 3600,
        "azp": ACTIONS_APP_ID, "preferred_username": user, "tid": TENANT, "ver": "2.0", "scp": "Global.Test",
    })
}

impl Actions {
    fn token(&self, claims: &Value) -> String {
        self.idp.signer.sign(claims).unwrap()
    }

    async fn post_with(&self, headers: &[(&str, &str)], body: Option<&str>) -> reqwest::Response {
        let mut req = self.app.client.post(self.app.url("/api/expense"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = req
            .header("Action-Request-Id", "3d5a1f8e-0000-4000-8000-000000000001")
            .header("Card-Correlation-Id", "corr-1");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        req.send().await.unwrap()
    }

    async fn post(&self, token: &str) -> reqwest::Response {
        self.post_with(
            &[("Authorization", &format!("Bearer {token}"))],
            Some(r#"{"action":"approve"}"#),
        )
        .await
    }

    async fn status_of(&self, claims: &Value) -> u16 {
        self.post(&self.token(claims)).await.status().as_u16()
    }
}

fn card_status(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(STATUS)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_valid_v1_entra_token_approves_with_a_card_status() {
    let a = entra(&[]).await;
    let r = a
        .post(&a.token(&v1_claims(&a.idp, "john@contoso.com")))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        card_status(&r).as_deref(),
        Some("The expense was approved.")
    );
}

#[tokio::test]
async fn a_token_that_verified_is_remembered_and_a_refused_one_is_not() {
    let a = entra(&[]).await;
    let verified = &a.app.state.actions.verified;
    assert!(verified.is_empty());
    let mut forged = v1_claims(&a.idp, "john@contoso.com");
    forged["aud"] = json!("api://someone-else");
    assert_eq!(a.status_of(&forged).await, 401);
    assert!(verified.is_empty(), "a refused token was remembered");
    let token = a.token(&v1_claims(&a.idp, "john@contoso.com"));
    assert_eq!(a.post(&token).await.status(), 200);
    assert_eq!(verified.len(), 1, "the verified token was not remembered");
    // The second press of the same token is answered from the memory.
    assert_eq!(a.post(&token).await.status(), 200);
    assert_eq!(verified.len(), 1);
    // A legacy token as well.
    let l = legacy(&[]).await;
    let (status, _) = l
        .status_of(&eat_claims("john@contoso.com", "expense@contoso.com"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(l.app.state.actions.verified.len(), 1);
}

#[tokio::test]
async fn a_valid_v2_entra_token_can_reject() {
    let a = entra(&[]).await;
    let token = a.token(&v2_claims(&a.idp, "john@contoso.com"));
    let r = a
        .post_with(
            &[("Authorization", &format!("Bearer {token}"))],
            Some(r#"{"action":"reject"}"#),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        card_status(&r).as_deref(),
        Some("The expense was rejected.")
    );
}

#[tokio::test]
async fn no_body_approves_and_a_body_that_is_not_json_is_a_400() {
    let a = entra(&[]).await;
    let auth = format!("Bearer {}", a.token(&v1_claims(&a.idp, "john@contoso.com")));
    let r = a.post_with(&[("Authorization", &auth)], None).await;
    assert_eq!(
        card_status(&r).as_deref(),
        Some("The expense was approved.")
    );
    let r = a
        .post_with(&[("Authorization", &auth)], Some("approve=yes"))
        .await;
    assert_eq!(r.status(), 400);
    assert!(card_status(&r).is_some());
}

#[tokio::test]
async fn the_token_may_come_in_action_authorization() {
    let a = entra(&[]).await;
    let token = a.token(&v1_claims(&a.idp, "john@contoso.com"));
    let r = a
        .post_with(
            &[
                ("Authorization", ""),
                ("Action-Authorization", &format!("Bearer {token}")),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_performer_not_allowed_gets_403_with_a_card_status() {
    let a = entra(&[("ACTION_PERFORMERS", "jane@contoso.com")]).await;
    let r = a
        .post(&a.token(&v1_claims(&a.idp, "john@contoso.com")))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        card_status(&r).as_deref(),
        Some("Invalid sender or the action performer is not allowed.")
    );
}

#[tokio::test]
async fn performer_entries_match_without_case_and_by_domain() {
    let a = entra(&[("ACTION_PERFORMERS", "JANE@Contoso.com, @fabrikam.com")]).await;
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "jane@CONTOSO.COM")).await,
        200
    );
    assert_eq!(
        a.status_of(&v2_claims(&a.idp, "Bob@Fabrikam.com")).await,
        200
    );
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "bob@notfabrikam.com")).await,
        403
    );
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401() {
    let a = entra(&[]).await;
    let big = format!("Bearer {}", "A".repeat(64 * 1024));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("Authorization", "Basic am9objpzZWNyZXQ=")],
        vec![("Authorization", "Bearer")],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", "Bearer garbage")],
        vec![("Authorization", "Bearer a.b.c")],
        vec![("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.e30.e30")],
        vec![("Authorization", big.as_str())],
    ];
    for headers in cases {
        let r = a.post_with(&headers, None).await;
        let label: Vec<_> = headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", &v[..v.len().min(30)]))
            .collect();
        assert_eq!(r.status(), 401, "{label:?}");
        assert!(r.headers().get("www-authenticate").is_some());
    }
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_public_key_are_401() {
    let a = entra(&[]).await;
    let claims = v1_claims(&a.idp, "john@contoso.com");
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none","kid":"key-1"}"#);
    let none = format!(
        "{header}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_eq!(a.post(&none).await.status(), 401);

    let secret = serde_json::to_vec(&a.idp.signer.jwk()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("key-1".into());
    let hs = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_eq!(a.post(&hs).await.status(), 401);
}

#[tokio::test]
async fn a_bad_signature_is_401() {
    let a = entra(&[]).await;
    let other = RsaSigner::generate("key-1").unwrap();
    let forged = other.sign(&v1_claims(&a.idp, "john@contoso.com")).unwrap();
    assert_eq!(a.post(&forged).await.status(), 401);
    // A valid token with one claim changed after signing.
    let good = a.token(&v1_claims(&a.idp, "john@contoso.com"));
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims = v1_claims(&a.idp, "john@contoso.com");
    claims["upn"] = json!("ceo@contoso.com");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(a.post(&tampered).await.status(), 401);
}

#[tokio::test]
async fn claims_that_do_not_fit_are_401() {
    let a = entra(&[]).await;
    let base = v1_claims(&a.idp, "john@contoso.com");
    let other_tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let cases: Vec<(&str, Edit)> = vec![
        (
            "expired",
            Box::new(|c| {
                c["exp"] = json!(now() - 310);
                c["iat"] = json!(now() - 4000);
                c["nbf"] = json!(now() - 4000);
            }),
        ),
        ("not yet valid", Box::new(|c| c["nbf"] = json!(now() + 310))),
        (
            "wrong iss",
            Box::new(|c| c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"))),
        ),
        (
            "wrong aud",
            Box::new(|c| c["aud"] = json!("api://someone-else")),
        ),
        (
            "wrong appid",
            Box::new(|c| c["appid"] = json!("11111111-2222-3333-4444-555555555555")),
        ),
        (
            "no appid",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("appid");
            }),
        ),
        (
            "tid not a guid",
            Box::new(|c| {
                c["tid"] = json!("contoso");
                c["iss"] = json!(c["iss"].as_str().unwrap().replace(TENANT, "contoso"));
            }),
        ),
        (
            "iss of another tenant",
            Box::new(move |c| c["tid"] = json!(other_tenant)),
        ),
        (
            "no exp",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "no performer",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("upn");
            }),
        ),
    ];
    assert_eq!(a.status_of(&base).await, 200);
    for (name, edit) in cases {
        let mut c = base.clone();
        edit(&mut c);
        assert_eq!(a.status_of(&c).await, 401, "{name}");
    }
    let mut v2 = v2_claims(&a.idp, "john@contoso.com");
    v2["azp"] = json!("11111111-2222-3333-4444-555555555555");
    assert_eq!(a.status_of(&v2).await, 401, "wrong azp");
}

#[tokio::test]
async fn a_tenant_outside_action_tenants_is_401() {
    let a = entra(&[("ACTION_TENANTS", "72f988bf-86f1-41af-91ab-2d7cd011db47")]).await;
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        401
    );
    let b = entra(&[("ACTION_TENANTS", TENANT)]).await;
    assert_eq!(
        b.status_of(&v1_claims(&b.idp, "john@contoso.com")).await,
        200
    );
}

#[tokio::test]
async fn an_unknown_kid_is_accepted_after_rotation() {
    let idp = MockIdp::start().await;
    let mut s = idp.settings(&[("ACTION_AUDIENCE", APP_ID_URI)]);
    s.jwks_min_refetch = Duration::ZERO;
    let a = Actions {
        app: spawn_with(s).await,
        idp,
    };
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        200
    );
    let rotated = RsaSigner::generate("key-2").unwrap();
    let token = rotated
        .sign(&v1_claims(&a.idp, "john@contoso.com"))
        .unwrap();
    assert_eq!(a.post(&token).await.status(), 401);
    a.idp.keys.publish(&[&a.idp.signer, &rotated]);
    assert_eq!(a.post(&token).await.status(), 200);
}

#[tokio::test]
async fn an_unknown_kid_does_not_refetch_within_a_minute() {
    let a = entra(&[]).await;
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        200
    );
    let stranger = RsaSigner::generate("never-published").unwrap();
    for _ in 0..5 {
        let t = stranger
            .sign(&v1_claims(&a.idp, "john@contoso.com"))
            .unwrap();
        assert_eq!(a.post(&t).await.status(), 401);
    }
    assert_eq!(a.idp.keys.hits(), 1);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_key_endpoint_is_down() {
    let idp = MockIdp::start().await;
    let mut s = idp.settings(&[("ACTION_AUDIENCE", APP_ID_URI)]);
    // Every request wants a refresh, so every request meets the outage.
    s.jwks_max_age = Duration::ZERO;
    s.jwks_min_refetch = Duration::ZERO;
    let a = Actions {
        app: spawn_with(s).await,
        idp,
    };
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        200
    );
    *a.idp.keys.broken.lock().unwrap() = Some(502);
    for i in 0..3 {
        // A new token each time (a token seen before is not verified again).
        let mut claims = v1_claims(&a.idp, "john@contoso.com");
        claims["jti"] = json!(format!("fresh-{i}"));
        assert_eq!(a.status_of(&claims).await, 200);
    }
    assert!(a.idp.keys.hits() >= 3, "the refresh was not attempted");
}

#[tokio::test]
async fn many_concurrent_requests_with_a_cold_cache_fetch_the_keys_once() {
    let a = Arc::new(entra(&[]).await);
    // A slow key endpoint: every request arrives while the first fetch is under
    // way, so a cache without single-flight would fetch once per request.
    *a.idp.keys.delay.lock().unwrap() = Some(Duration::from_millis(500));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let a = a.clone();
        let mut claims = v1_claims(&a.idp, "john@contoso.com");
        claims["jti"] = json!(i);
        let token = a.token(&claims);
        tasks.push(tokio::spawn(async move {
            a.post(&token).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(a.idp.keys.hits(), 1);
}

#[tokio::test]
async fn id_tokens_and_action_tokens_share_one_key_cache_entry() {
    let a = entra(&[]).await;
    a.idp.sign_in_ok(&a.app).await;
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        200
    );
    assert_eq!(a.idp.keys.hits(), 1);
    assert_eq!(a.app.state.verifier.keys().cached_sets(), 1);
}

// ---- legacy (EAT) ----

struct Legacy {
    keys_server: MockServer,
    signer: RsaSigner,
    app: TestApp,
}

async fn legacy(extra: &[(&str, &str)]) -> Legacy {
    let keys_server = MockServer::start().await;
    let signer = RsaSigner::generate("eat-key").unwrap();
    Mock::given(path("/sts/common/discovery/keys"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(json!({"keys": [signer.jwk()]})),
        )
        .mount(&keys_server)
        .await;
    let keys_url = format!("{}/sts/common/discovery/keys", keys_server.uri());
    let mut vars = vec![
        ("ACTION_TOKEN", "legacy"),
        ("ACTION_KEYS_URL", keys_url.as_str()),
        ("ACTION_AUDIENCE", "https://api.contoso.com"),
        ("ACTION_SENDERS", "expense@contoso.com"),
    ];
    vars.extend_from_slice(extra);
    let app = spawn_with(settings(&vars)).await;
    Legacy {
        keys_server,
        signer,
        app,
    }
}

fn eat_claims(sub: &str, sender: &str) -> Value {
    let now = now();
    json!({
        "iat": now, "nbf": now, "exp": now + 3600, "ver": "STI.ExternalAccessToken.V1",
        "appid": ACTIONS_APP_ID.to_uppercase(), "iss": "https://substrate.office.com/sts/",
        "appidacr": "2", "acr": "0", "sub": sub, "sender": sender, "aud": "https://api.contoso.com",
    })
}

impl Legacy {
    async fn status_of(&self, claims: &Value) -> (u16, Option<String>) {
        let token = self.signer.sign(claims).unwrap();
        let r = self
            .app
            .client
            .post(self.app.url("/api/expense"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), card_status(&r))
    }
}

#[tokio::test]
async fn a_valid_legacy_token_from_an_allowed_sender_approves() {
    let l = legacy(&[]).await;
    let (status, card) = l
        .status_of(&eat_claims("john@contoso.com", "Expense@Contoso.com"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(card.as_deref(), Some("The expense was approved."));
    assert_eq!(l.keys_server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_legacy_sender_or_performer_not_allowed_gets_403() {
    let l = legacy(&[("ACTION_PERFORMERS", "@contoso.com")]).await;
    let (status, card) = l
        .status_of(&eat_claims("john@contoso.com", "spoof@fabrikam.com"))
        .await;
    assert_eq!(status, 403);
    assert!(card.is_some());
    let (status, _) = l
        .status_of(&eat_claims("eve@fabrikam.com", "expense@contoso.com"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = l
        .status_of(&eat_claims("JOHN@CONTOSO.COM", "expense@contoso.com"))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn legacy_tokens_with_wrong_claims_are_401() {
    let l = legacy(&[]).await;
    let good = eat_claims("john@contoso.com", "expense@contoso.com");
    for (name, key, value) in [
        ("iss", "iss", json!("https://login.microsoftonline.com/")),
        ("aud", "aud", json!("https://api.fabrikam.com")),
        (
            "appid",
            "appid",
            json!("00000000-0000-0000-0000-000000000000"),
        ),
        ("exp", "exp", json!(now() - 900)),
        ("nbf", "nbf", json!(now() + 900)),
    ] {
        let mut c = good.clone();
        c[key] = value;
        assert_eq!(l.status_of(&c).await.0, 401, "{name}");
    }
    // An Entra-shaped token is not accepted by the legacy scheme.
    let mut c = good.clone();
    c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(l.status_of(&c).await.0, 401);
}

#[tokio::test]
async fn a_correctly_signed_token_over_16_kib_is_401_before_any_key_lookup() {
    let a = entra(&[]).await;
    let mut claims = v1_claims(&a.idp, "john@contoso.com");
    claims["padding"] = json!("p".repeat(17 * 1024));
    let token = a.token(&claims);
    assert!(token.len() > 16 * 1024);
    let hits = a.idp.keys.hits();
    assert_eq!(a.post(&token).await.status(), 401);
    assert_eq!(
        a.idp.keys.hits(),
        hits,
        "the key set was fetched for an oversized token"
    );
    // The same claims without the padding verify: size was the only reason.
    assert_eq!(
        a.status_of(&v1_claims(&a.idp, "john@contoso.com")).await,
        200
    );
}

#[tokio::test]
async fn the_leeway_is_five_minutes_on_both_sides_for_action_tokens() {
    let a = entra(&[]).await;
    let with = |field: &str, value: i64| {
        let mut c = v1_claims(&a.idp, "john@contoso.com");
        c[field] = json!(value);
        if field == "exp" {
            c["iat"] = json!(value - 3600);
            c["nbf"] = json!(value - 3600);
        }
        c
    };
    assert_eq!(
        a.status_of(&with("exp", now() - 290)).await,
        200,
        "expired 290 s ago: inside the leeway"
    );
    assert_eq!(
        a.status_of(&with("exp", now() - 310)).await,
        401,
        "expired 310 s ago: outside"
    );
    assert_eq!(
        a.status_of(&with("nbf", now() + 290)).await,
        200,
        "valid in 290 s: inside the leeway"
    );
    assert_eq!(
        a.status_of(&with("nbf", now() + 310)).await,
        401,
        "valid in 310 s: outside"
    );
}

#[tokio::test]
async fn bodies_that_are_not_an_object_or_an_unknown_action_are_400_with_the_header() {
    let a = entra(&[]).await;
    let token = a.token(&v1_claims(&a.idp, "john@contoso.com"));
    let auth = format!("Bearer {token}");
    for (body, message) in [
        ("[1]", "The request body is not a JSON object."),
        (
            r#"{"action":"delete"}"#,
            "The action must be \"approve\" or \"reject\".",
        ),
        ("not json", "The request body is not JSON."),
    ] {
        let r = a
            .post_with(&[("Authorization", auth.as_str())], Some(body))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(card_status(&r).as_deref(), Some(message), "{body}");
    }
}

#[tokio::test]
async fn when_keys_cannot_be_fetched_and_none_are_cached_actions_fail_closed_with_503() {
    let idp = MockIdp::start().await;
    *idp.keys.broken.lock().unwrap() = Some(502);
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let a = Actions {
        app: spawn_with(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await,
        idp,
    };
    let r = a
        .post(&a.token(&v1_claims(&a.idp, "john@contoso.com")))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        card_status(&r).as_deref(),
        Some("The service cannot verify actions right now. Please try again later.")
    );
}

#[tokio::test]
async fn a_refused_token_is_logged_with_its_reason() {
    captured_logs();
    let a = entra(&[]).await;
    let mut early = v1_claims(&a.idp, "john@contoso.com");
    early["nbf"] = json!(now() + 900);
    let mut late = v1_claims(&a.idp, "john@contoso.com");
    late["exp"] = json!(now() - 900);
    late["iat"] = json!(now() - 5000);
    late["nbf"] = json!(now() - 5000);
    let mut stranger = v1_claims(&a.idp, "john@contoso.com");
    stranger["aud"] = json!("api://someone-else");
    let mut markers = Vec::new();
    for (claims, reason) in [
        (early, "the token is not valid yet"),
        (late, "the token has expired"),
        (stranger, "the audience is not this app"),
    ] {
        let cid = format!("corr-{}", uuid::Uuid::new_v4().simple());
        let r = a
            .app
            .client
            .post(a.app.url("/api/expense"))
            .header("Authorization", format!("Bearer {}", a.token(&claims)))
            .header("Card-Correlation-Id", cid.as_str())
            .body(r#"{"action":"approve"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        markers.push((cid, reason));
    }
    let logs = captured_logs();
    for (cid, reason) in &markers {
        assert!(
            logs.lines()
                .any(|l| l.contains(cid.as_str()) && l.contains(reason)),
            "no line with {cid} and {reason:?}"
        );
    }
}

#[tokio::test]
async fn outcomes_are_logged_with_both_ids_and_never_the_token() {
    captured_logs();
    let a = entra(&[("ACTION_PERFORMERS", "@contoso.com")]).await;
    let good = a.token(&v1_claims(&a.idp, "john@contoso.com"));
    let stranger = a.token(&v1_claims(&a.idp, "eve@fabrikam.com"));
    let mut ids = Vec::new();
    for (token, body) in [
        (good.as_str(), r#"{"action":"approve"}"#),
        (stranger.as_str(), r#"{"action":"approve"}"#),
        (good.as_str(), "[1]"),
        ("not-a-token", r#"{"action":"approve"}"#),
    ] {
        let rid = uuid::Uuid::new_v4().to_string();
        let cid = format!("corr-{}", uuid::Uuid::new_v4().simple());
        let r = a
            .app
            .client
            .post(a.app.url("/api/expense"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Action-Request-Id", rid.as_str())
            .header("Card-Correlation-Id", cid.as_str())
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            match (token, body) {
                ("not-a-token", _) => 401,
                (t, _) if t == stranger => 403,
                (_, "[1]") => 400,
                _ => 200,
            }
        );
        ids.push((rid, cid));
    }
    let logs = captured_logs();
    for (rid, cid) in &ids {
        assert!(
            logs.lines()
                .any(|l| l.contains(rid.as_str()) && l.contains(cid.as_str())),
            "no line with both ids {rid} {cid}"
        );
    }
    let signature = good.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token reached the log");
}
