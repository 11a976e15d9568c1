//! ID tokens that must not sign anyone in, and the key cache behind them.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outlook_inbox::jwt::signer::RsaSigner;
use serde_json::{Value, json};

use crate::helpers::*;

/// Signs in with ID-token claims changed by `edit`, and expects a refusal.
async fn refused(edit: impl FnOnce(&mut Value)) {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp
        .sign_in(
            &app,
            |nonce| {
                let mut claims = idp.id_claims(nonce);
                edit(&mut claims);
                idp.signer.sign(&claims).unwrap()
            },
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert!(body(r).await.contains("We could not verify your sign-in"));
    assert_eq!(location(&app.get("/mail").await), "/");
}

/// Signs in with a raw ID token built from the nonce, and expects a refusal.
async fn refused_token(make: impl FnOnce(&MockIdp, &str) -> String) {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp
        .sign_in(&app, |nonce| make(&idp, nonce), json!({}))
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(location(&app.get("/mail").await), "/");
}

#[tokio::test]
async fn a_valid_id_token_signs_in() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let page = body(app.get("/").await).await;
    // The name from the token is shown, escaped.
    assert!(
        page.contains("Abe &#60;b&#62;Lincoln&#60;/b&#62;"),
        "{page}"
    );
}

#[tokio::test]
async fn a_token_answer_with_expires_in_as_a_string_is_accepted() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp.sign_in_valid(&app, json!({"expires_in": "3599"})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/mail");
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    refused_token(|idp, nonce| {
        let token = idp.signer.sign(&idp.id_claims(nonce)).unwrap();
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[10] ^= 0x01;
        format!("{rest}.{}", URL_SAFE_NO_PAD.encode(sig))
    })
    .await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_our_kid_is_refused() {
    refused_token(|idp, nonce| {
        let other = RsaSigner::generate("key-1").unwrap();
        other.sign(&idp.id_claims(nonce)).unwrap()
    })
    .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    refused_token(|idp, nonce| {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none","kid":"key-1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&idp.id_claims(nonce)).unwrap());
        format!("{header}.{claims}.")
    })
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    refused_token(|idp, nonce| {
        let jwk = idp.signer.jwk();
        let secret = serde_json::to_vec(&jwk).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("key-1".into());
        jsonwebtoken::encode(
            &header,
            &idp.id_claims(nonce),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap()
    })
    .await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    refused(|c| c["aud"] = json!("00000000-1111-2222-3333-444444444444")).await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    refused(|c| {
        c["iss"] =
            json!("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0")
    })
    .await;
}

#[tokio::test]
async fn an_issuer_of_another_tenant_is_refused() {
    refused(|c| c["tid"] = json!("72f988bf-86f1-41af-91ab-2d7cd011db47")).await;
}

#[tokio::test]
async fn a_tenant_id_that_is_not_a_guid_is_refused() {
    refused(|c| {
        let iss = c["iss"].as_str().unwrap().replace(TENANT, "contoso");
        c["iss"] = json!(iss);
        c["tid"] = json!("contoso");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    refused(|c| {
        c["exp"] = json!(now() - 310);
        c["iat"] = json!(now() - 4200);
        c["nbf"] = json!(now() - 4200);
    })
    .await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    refused(|c| c["nbf"] = json!(now() + 310)).await;
}

/// Signs in with ID-token claims changed by `edit`, and expects success.
async fn accepted(edit: impl FnOnce(&mut Value)) {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let r = idp
        .sign_in(
            &app,
            |nonce| {
                let mut claims = idp.id_claims(nonce);
                edit(&mut claims);
                idp.signer.sign(&claims).unwrap()
            },
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
}

#[tokio::test]
async fn clock_skew_inside_five_minutes_is_tolerated_on_both_sides() {
    accepted(|c| {
        c["exp"] = json!(now() - 290);
        c["iat"] = json!(now() - 3890);
        c["nbf"] = json!(now() - 3890);
    })
    .await;
    accepted(|c| c["nbf"] = json!(now() + 290)).await;
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    refused(|c| c["nonce"] = json!("someone-elses-nonce")).await;
}

#[tokio::test]
async fn a_missing_nonce_is_refused() {
    refused(|c| {
        c.as_object_mut().unwrap().remove("nonce");
    })
    .await;
}

#[tokio::test]
async fn an_unknown_kid_is_not_refetched_within_a_minute() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    assert_eq!(idp.keys.hits(), 1);

    let rotated = RsaSigner::generate("key-2").unwrap();
    idp.keys.publish(&[&idp.signer, &rotated]);
    let r = idp
        .sign_in(
            &app,
            |n| rotated.sign(&idp.id_claims(n)).unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(idp.keys.hits(), 1, "refetched within the minimum interval");
}

#[tokio::test]
async fn an_unknown_kid_is_accepted_after_key_rotation() {
    let idp = MockIdp::start().await;
    let mut s = idp.settings(&[]);
    s.jwks_min_refetch = Duration::ZERO;
    let app = spawn_with(s).await;
    idp.sign_in_ok(&app).await;

    let rotated = RsaSigner::generate("key-2").unwrap();
    // Before the new key is published, its tokens are refused…
    let r = idp
        .sign_in(
            &app,
            |n| rotated.sign(&idp.id_claims(n)).unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // …and once it is, the unknown kid triggers a refetch and is accepted.
    idp.keys.publish(&[&idp.signer, &rotated]);
    let r = idp
        .sign_in(
            &app,
            |n| rotated.sign(&idp.id_claims(n)).unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(idp.keys.hits(), 3);
}

#[tokio::test]
async fn an_unreachable_authority_gives_a_clear_page_and_the_app_keeps_running() {
    let s = settings(&[
        ("CLIENT_ID", CLIENT_ID),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("AUTHORITY", "http://127.0.0.1:9/common"),
        ("MAIL_API_URL", "http://127.0.0.1:9/v1.0"),
    ]);
    let app = spawn_with(s).await;
    let r = app.get("/signin").await;
    assert_eq!(r.status(), 503);
    assert!(
        body(r)
            .await
            .contains("Microsoft sign-in is unreachable right now")
    );
    // Ready means ready: nothing that needs the identity platform can work.
    let h = app.get("/healthz").await;
    assert_eq!(h.status(), 503);
    assert_eq!(body(h).await, "identity platform unavailable");
    assert_eq!(app.get("/").await.status(), 200);
}

#[tokio::test]
async fn a_token_endpoint_refusal_is_explained() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    wiremock::Mock::given(wiremock::matchers::path("/common/oauth2/v2.0/token"))
        .respond_with(wiremock::ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS70008: The provided authorization code or refresh token has expired. <b>x</b>",
        })))
        .mount(&idp.server)
        .await;
    let r = app.get(&format!("/gettoken?code=old&state={state}")).await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(page.contains("invalid_grant") && page.contains("AADSTS70008"));
    assert!(page.contains("&#60;b&#62;x&#60;/b&#62;"));
}

#[tokio::test]
async fn the_code_exchange_sends_the_pkce_verifier_and_secret() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let requests = idp.server.received_requests().await.unwrap();
    let token_call = requests
        .iter()
        .find(|r| r.url.path().ends_with("/token"))
        .unwrap();
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&token_call.body)
            .into_owned()
            .collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "test-code");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["redirect_uri"], format!("{}/gettoken", app.address));
    assert!(form["code_verifier"].len() >= 43);
}
