//! The whole product in demo mode: sign in at the stand-in, read the Inbox.

use outlook_inbox::demo::{PEOPLE, mailbox};
use reqwest::header::SET_COOKIE;

use crate::helpers::*;

fn rows(page: &str) -> Vec<&str> {
    page.split("<tbody>")
        .nth(1)
        .unwrap_or("")
        .split("</tbody>")
        .next()
        .unwrap_or("")
        .split("<tr")
        .skip(1)
        .collect()
}

#[tokio::test]
async fn signing_in_at_the_demo_shows_the_ten_newest_inbox_messages_in_order() {
    let app = spawn_app().await;

    let callback = pick_person(&app, 1).await;
    assert!(callback.starts_with(&format!("{}/gettoken?code=", app.address)));
    let r = app.get(&callback).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/mail");

    let page = body(app.get("/mail").await).await;
    let rows = rows(&page);
    assert_eq!(rows.len(), 10, "{page}");
    // The stand-in's Inbox, newest first, and none of the Sent or Drafts items.
    let long: std::sync::Arc<str> = std::sync::Arc::from("");
    let expected: Vec<_> =
        mailbox::mailbox(1, time::OffsetDateTime::now_utc(), &app.address, &long)
            .into_iter()
            .filter(|m| m.folder == mailbox::Folder::Inbox)
            .take(10)
            .collect();
    let times: Vec<&str> = rows
        .iter()
        .map(|r| {
            r.split("datetime=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {times:?}"
    );
    for (row, message) in rows.iter().zip(&expected) {
        if message.subject.is_empty() {
            assert!(row.contains("(no subject)"));
        } else if !message.subject.contains('<')
            && !message.subject.contains('\'')
            && !message.subject.contains('"')
        {
            assert!(
                row.contains(&message.subject),
                "{row} lacks {}",
                message.subject
            );
        }
    }
    assert!(!page.contains("SENT ITEM") && !page.contains("DRAFT:"));
    assert!(page.contains("AlexW@contoso.com") || page.contains(PEOPLE[1].upn));
}

#[tokio::test]
async fn markup_in_subjects_and_names_is_escaped() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let page = body(app.get("/mail").await).await;
    assert!(!page.contains("<script>alert"));
    assert!(
        page.contains("&#60;script&#62;alert(&#39;inbox&#39;)&#60;/script&#62; Quarterly numbers")
    );
    // A sender without a name shows the address; an empty subject says so.
    assert!(page.contains("noreply@notifications.contoso.com"));
    assert!(page.contains("(no subject)"));
    assert!(page.contains("Café ☕"));
}

#[tokio::test]
async fn home_shows_the_signed_in_name_and_job_title() {
    let app = spawn_app().await;
    let page = body(app.get("/").await).await;
    assert!(page.contains("Sign in with Microsoft"));
    sign_in_as(&app, 0).await;
    let page = body(app.get("/").await).await;
    assert!(page.contains("Adele Vance"));
    assert!(page.contains("Retail Manager"));
    assert!(page.contains("AdeleV@contoso.com"));
}

#[tokio::test]
async fn every_page_carries_the_demo_banner() {
    let app = spawn_app().await;
    for p in ["/", "/no/such/page", "/gettoken", "/_demo/actions"] {
        let page = body(app.get(p).await).await;
        assert!(page.contains("Demo mode."), "{p}");
        assert!(page.contains("CLIENT_ID"), "{p}");
    }
    let r = app.get("/no/such/page").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn pages_carry_security_headers_and_are_not_cached() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    for p in ["/", "/mail", "/no/such/page"] {
        let r = app.get(p).await;
        let h = r.headers();
        let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
        assert_eq!(
            csp,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
            "{p}"
        );
        assert!(!csp.contains("unsafe"), "{p}");
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{p}");
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff", "{p}");
        assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer", "{p}");
        assert_eq!(h.get("cache-control").unwrap(), "no-store", "{p}");
        assert!(
            h.get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{p}"
        );
    }
    for asset in [
        "/static/site.css",
        "/static/icon.svg",
        "/static/local-time.js",
    ] {
        let r = app.get(asset).await;
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.headers()
                .get("cache-control")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("max-age"),
            "{asset}"
        );
    }
}

#[tokio::test]
async fn signed_out_mail_redirects_home() {
    let app = spawn_app().await;
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/");
}

#[tokio::test]
async fn the_sign_in_request_carries_state_nonce_and_pkce() {
    let app = spawn_app().await;
    let url = app.start_sign_in().await;
    assert_eq!(url.path(), "/_demo/common/oauth2/v2.0/authorize");
    assert_eq!(
        query(&url, "client_id").as_deref(),
        Some(outlook_inbox::settings::DEMO_CLIENT_ID)
    );
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&url, "response_mode").as_deref(), Some("query"));
    assert_eq!(
        query(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&url, "redirect_uri"),
        Some(format!("{}/gettoken", app.address))
    );
    assert_eq!(
        query(&url, "scope").as_deref(),
        Some("openid profile offline_access User.Read Mail.Read Mail.Send")
    );
    assert!(query(&url, "state").unwrap().len() >= 16);
    assert!(query(&url, "nonce").unwrap().len() >= 16);
    assert_eq!(query(&url, "code_challenge").unwrap().len(), 43);
    // Fresh every time.
    let again = app.start_sign_in().await;
    assert_ne!(query(&url, "state"), query(&again, "state"));
    assert_ne!(query(&url, "nonce"), query(&again, "nonce"));
}

#[tokio::test]
async fn a_callback_without_state_is_refused() {
    let app = spawn_app().await;
    let callback = pick_person(&app, 0).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let code = query(&url, "code").unwrap();
    url.set_query(Some(&format!("code={code}")));
    let r = app.get(url.as_str()).await;
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("not valid here"));
    assert_eq!(app.get("/mail").await.status(), 302);
}

#[tokio::test]
async fn a_callback_with_the_wrong_state_is_refused_and_does_not_cancel_the_sign_in() {
    let app = spawn_app().await;
    let callback = pick_person(&app, 0).await;
    let tampered = callback.replace("state=", "state=x");
    let r = app.get(&tampered).await;
    assert_eq!(r.status(), 400);
    assert_eq!(location(&app.get("/mail").await), "/");
    // A forged callback does not spend the pending sign-in: the genuine one still works...
    let r = app.get(&callback).await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
    assert_eq!(app.get("/mail").await.status(), 200);
    // ...once: replaying it is refused by the app itself, before the code
    // could reach the identity platform again.
    let r = app.get(&callback).await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(
        page.contains("This sign-in link is not valid here"),
        "{page}"
    );
    assert!(!page.contains("invalid_grant"), "{page}");
}

#[tokio::test]
async fn a_callback_from_another_browser_session_is_refused() {
    let app = spawn_app().await;
    let victim_callback = pick_person(&app, 0).await;
    let attacker = browser();
    attacker.get(app.url("/signin")).send().await.unwrap();
    let r = attacker
        .get(app.url(&victim_callback))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mail = attacker.get(app.url("/mail")).send().await.unwrap();
    assert_eq!(location(&mail), "/");
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let app = spawn_app().await;
    let callback = pick_person(&app, 0).await;
    assert_eq!(app.get(&callback).await.status(), 302);
    let code = query(&url::Url::parse(&callback).unwrap(), "code").unwrap();

    // Same code with a fresh, valid state: the identity platform refuses it.
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!("/gettoken?code={code}&state={state}"))
        .await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(page.contains("invalid_grant"), "{page}");
    // Replaying the whole callback is refused by the state check.
    assert_eq!(app.get(&callback).await.status(), 400);
}

#[tokio::test]
async fn an_error_from_microsoft_is_shown_escaped() {
    let app = spawn_app().await;
    let authorize = app.start_sign_in().await;
    let state = query(&authorize, "state").unwrap();
    let r = app
        .get(&format!(
            "/gettoken?error=access_denied&error_description=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%20cancelled&state={state}"
        ))
        .await;
    assert_eq!(r.status(), 400);
    let page = body(r).await;
    assert!(page.contains("Sign-in was cancelled"));
    assert!(page.contains("access_denied"));
    assert!(page.contains("&#60;img src=x onerror=alert(1)&#62; cancelled"));
    assert!(!page.contains("<img src=x"));
}

#[tokio::test]
async fn session_cookies_are_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    let r = app.get("/signin").await;
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("inbox_session="));
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"));
    // The pending sign-in is encrypted: its secrets are not readable in the cookie.
    let url = url::Url::parse(&location(&r)).unwrap();
    assert!(!cookie.contains(&query(&url, "state").unwrap()));
    assert!(!cookie.contains(&query(&url, "nonce").unwrap()));
}

#[tokio::test]
async fn cookies_are_secure_and_host_prefixed_with_hsts_when_the_public_url_is_https() {
    let app = spawn_with(settings(&[("PUBLIC_URL", "https://localhost:8443")])).await;
    let r = app.get("/signin").await;
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-inbox_session="), "{cookie}");
    assert!(cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"));
    assert!(location(&r).contains("redirect_uri=https%3A%2F%2Flocalhost%3A8443%2Fgettoken"));
    assert_eq!(
        r.headers().get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
    // Plain http gets neither the prefix nor HSTS.
    let plain = spawn_app().await.get("/signin").await;
    assert!(plain.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn signing_out_ends_the_session_and_signs_out_at_the_provider() {
    let app = spawn_app().await;
    sign_in_as(&app, 2).await;
    assert_eq!(app.get("/mail").await.status(), 200);
    let r = app.get("/signout").await;
    assert_eq!(r.status(), 302);
    let logout = url::Url::parse(&location(&r)).unwrap();
    assert_eq!(logout.path(), "/_demo/common/oauth2/v2.0/logout");
    assert_eq!(
        query(&logout, "post_logout_redirect_uri"),
        Some(format!("{}/", app.address))
    );
    assert_eq!(
        query(&logout, "client_id").as_deref(),
        Some(outlook_inbox::settings::DEMO_CLIENT_ID)
    );
    let back = app.client.get(logout.as_str()).send().await.unwrap();
    assert_eq!(location(&back), format!("{}/", app.address));
    assert_eq!(location(&app.get("/mail").await), "/");
    assert!(
        body(app.get("/").await)
            .await
            .contains("Sign in with Microsoft")
    );
}

#[tokio::test]
async fn the_outlook_flavour_works_end_to_end_in_demo_mode() {
    let app = spawn_with(settings(&[("MAIL_API", "outlook")])).await;
    sign_in_as(&app, 0).await;
    let page = body(app.get("/mail").await).await;
    assert_eq!(rows(&page).len(), 10, "{page}");
    assert!(page.contains("Q4 budget review"));
}

#[tokio::test]
async fn the_demo_token_endpoint_checks_the_pkce_verifier_and_secret() {
    let app = spawn_app().await;
    let callback = pick_person(&app, 0).await;
    let code = query(&url::Url::parse(&callback).unwrap(), "code").unwrap();
    let token_url = app.url("/_demo/common/oauth2/v2.0/token");
    let redirect = format!("{}/gettoken", app.address);
    let secret = app.state.settings.client_secret.expose().to_owned();
    let attempt = |verifier: &'static str, secret: String| {
        let form = [
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", redirect.clone()),
            (
                "client_id",
                outlook_inbox::settings::DEMO_CLIENT_ID.to_owned(),
            ),
            ("client_secret", secret),
            ("code_verifier", verifier.to_owned()),
        ];
        browser().post(&token_url).form(&form).send()
    };
    let r = attempt(
        "wrong-verifier-wrong-verifier-wrong-verifier",
        "nope".into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = attempt("wrong-verifier-wrong-verifier-wrong-verifier", secret)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("Code_Verifier"));
}

#[tokio::test]
async fn the_demo_card_loop_sends_approves_refreshes_and_refuses_a_late_reject() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let expense = send_card(&app).await;
    // The card email is in the demo Inbox, and opens on the stand-in's card page.
    let inbox = body(app.get("/mail").await).await;
    let subject = format!("Expense {expense} is waiting for your decision");
    assert!(inbox.contains(&subject), "{inbox}");
    let id = card_message_id(&app);
    let message = body(app.get(&format!("/mail/{id}")).await).await;
    assert!(
        message.contains(&format!("href=\"/_demo/actions?message={id}\"")),
        "{message}"
    );
    let page = body(app.get(&format!("/_demo/actions?message={id}")).await).await;
    assert!(
        page.contains(&format!("Expense report {expense}")),
        "{page}"
    );
    assert!(
        page.contains("value=\"current:0\">Approve") && page.contains("value=\"current:1\">Reject")
    );

    let press = |button: &'static str| {
        app.client
            .post(app.url("/_demo/actions"))
            .form(&[
                ("message", id.as_str()),
                ("button", button),
                ("person", "0"),
            ])
            .send()
    };
    let page = body(press("current:0").await.unwrap()).await;
    assert!(page.contains("200 OK"), "{page}");
    assert!(page.contains("The expense was approved."));
    assert!(page.contains("id=\"card-refreshed\""));
    assert!(
        page.contains("Approved by AdeleV@contoso.com on "),
        "{page}"
    );
    assert!(
        !page.contains("value=\"current:0\""),
        "the refreshed card still has buttons"
    );
    // Reject on the card as it arrived: 409, and the decision stands.
    let page = body(press("original:1").await.unwrap()).await;
    assert!(page.contains("409 Conflict"), "{page}");
    assert!(page.contains("This expense was already approved."));
    assert!(page.contains("Approved by AdeleV@contoso.com on "));
    let page = body(press("forged").await.unwrap()).await;
    assert!(page.contains("401 Unauthorized"), "{page}");
}

#[tokio::test]
async fn the_demo_card_works_with_the_legacy_scheme_too() {
    let app = spawn_with(settings(&[
        ("ACTION_TOKEN", "legacy"),
        ("ACTION_SENDERS", "expenses@contoso.com"),
    ]))
    .await;
    sign_in_as(&app, 1).await;
    send_card(&app).await;
    let id = card_message_id(&app);
    let page = body(
        app.client
            .post(app.url("/_demo/actions"))
            .form(&[
                ("message", id.as_str()),
                ("button", "current:1"),
                ("person", "1"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(page.contains("legacy EAT token"), "{page}");
    assert!(page.contains("The expense was rejected."), "{page}");
}

#[tokio::test]
async fn the_card_page_without_a_card_offers_to_send_one() {
    let app = spawn_app().await;
    let page = body(app.get("/_demo/actions").await).await;
    assert!(page.contains("No card yet") && page.contains("Sign in first"));
    sign_in_as(&app, 2).await;
    let page = body(app.get("/_demo/actions").await).await;
    assert!(page.contains("Send me a test expense card"));
}

/// Presses "Send me a test expense card" and returns the expense id.
pub async fn send_card(app: &TestApp) -> String {
    let r = app
        .client
        .post(app.url("/cards/send"))
        .header("Origin", app.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = body(r).await;
    assert!(
        page.contains("Your test expense card is on its way"),
        "{page}"
    );
    let start = page.find("EXP-").unwrap();
    page[start..start + 15].to_owned()
}

/// The newest card message delivered in the demo.
fn card_message_id(app: &TestApp) -> String {
    let demo = app.demo.as_ref().unwrap();
    (0..3)
        .flat_map(|p| (0..200).map(move |n| format!("AAMkAD{p}C{n:05}")))
        .rfind(|id| demo.card_of(id).is_some())
        .unwrap()
}

/// The stand-in's signing keys are made once and kept in DATA_DIR (readable
/// by this user only), so that later starts are ready at once and tokens it
/// issued before a restart still verify.
#[tokio::test]
async fn the_demo_keeps_its_signing_keys_across_restarts() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("oi-demo-keys-{}", uuid::Uuid::new_v4().simple()));
    let vars = [("DATA_DIR", dir.to_str().unwrap())];
    // The kid of the first key an app's stand-in publishes.
    async fn published_kid(app: &TestApp) -> String {
        let keys: serde_json::Value = app
            .client
            .get(app.url("/_demo/common/discovery/v2.0/keys"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys["keys"][0]["kid"].as_str().unwrap().to_owned()
    }
    let first = spawn_with(settings(&vars)).await;
    let kid = published_kid(&first).await;
    let kept = dir.join("demo-signing-keys.json");
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = spawn_with(settings(&vars)).await;
    assert_eq!(kid, published_kid(&again).await);
    // A damaged file is replaced by new keys, not a failed start.
    std::fs::write(&kept, b"not keys").unwrap();
    let third = spawn_with(settings(&vars)).await;
    let r = third.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(std::fs::read(&kept).unwrap().starts_with(b"{"));
}
