//! Decisions that last: recorded once, answered the same way on a retry,
//! the card refreshed, tickets checked, cards sent (issue 11).

use std::sync::Arc;

use outlook_inbox::jwt::action_token::ACTIONS_APP_ID;
use outlook_inbox::store::{DecisionStore as _, NewExpense};
use serde_json::{Value, json};

use crate::helpers::*;

const APP_ID_URI: &str = "api://auth-am-decisions/6cb04018-a3f5-46a7-b995-940c78f5aef3";
const STATUS: &str = "CARD-ACTION-STATUS";

pub struct Provider {
    pub idp: MockIdp,
    pub app: TestApp,
}

pub async fn provider(extra: &[(&str, &str)]) -> Provider {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let mut vars = vec![("ACTION_AUDIENCE", audiences.as_str())];
    vars.extend_from_slice(extra);
    let app = spawn_with(idp.settings(&vars)).await;
    Provider { idp, app }
}

pub fn token_for(idp: &MockIdp, upn: &str) -> String {
    let now = now();
    idp.signer
        .sign(&json!({
            "aud": APP_ID_URI, "iss": idp.v1_issuer(), "iat": now, "nbf": now, "exp": now + 3600,
            "appid": ACTIONS_APP_ID, "tid": TENANT, "upn": upn, "ver": "1.0",
            "uti": uuid::Uuid::new_v4().to_string(),
        }))
        .unwrap()
}

/// The person most tests act as, and the recipient of their expenses.
pub const JOHN: &str = "john@contoso.com";

pub async fn new_expense(app: &TestApp, recipient: Option<&str>) -> String {
    app.state
        .store
        .create_expense(NewExpense {
            amount_cents: 48_213,
            currency: "EUR".into(),
            submitter: "Megan Bowen".into(),
            purpose: "Customer visit".into(),
            recipient: recipient.map(str::to_owned),
            created_at: now(),
        })
        .await
        .unwrap()
        .id
}

pub struct Reply {
    pub status: u16,
    pub message: Option<String>,
    pub update: bool,
    pub card: Option<Value>,
}

pub async fn press(app: &TestApp, token: &str, body: Value, request_id: Option<&str>) -> Reply {
    press_at(app, "/api/expense", token, body, request_id).await
}

pub async fn press_at(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
    request_id: Option<&str>,
) -> Reply {
    let mut req = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Card-Correlation-Id", "corr-7")
        .json(&body);
    if let Some(id) = request_id {
        req = req.header("Action-Request-Id", id);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let message = r
        .headers()
        .get(STATUS)
        .map(|v| v.to_str().unwrap().to_owned());
    let update = r
        .headers()
        .get("CARD-UPDATE-IN-BODY")
        .is_some_and(|v| v == "true");
    let json_type = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    let text = r.text().await.unwrap();
    let card = (json_type && !text.is_empty()).then(|| serde_json::from_str(&text).unwrap());
    Reply {
        status,
        message,
        update,
        card,
    }
}

pub fn decision_line(card: &Value) -> String {
    card["body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "decision")
        .map(|b| b["text"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_first_decision_is_recorded_and_the_card_refreshed() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, "john@contoso.com");
    let r = press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "approve"}),
        Some("r-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.message.as_deref(), Some("The expense was approved."));
    assert!(r.update, "no CARD-UPDATE-IN-BODY");
    let card = r.card.expect("the refreshed card");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.0");
    assert!(card.get("actions").is_none(), "buttons left to press");
    assert!(
        decision_line(&card).starts_with("Approved by john@contoso.com on "),
        "{card}"
    );
    // The status text names no person; the card does.
    assert!(!r.message.unwrap().contains("john"));
    let (_, recorded) = p.app.state.store.expense(&id).await.unwrap().unwrap();
    let recorded = recorded.unwrap();
    assert_eq!(recorded.performer, "john@contoso.com");
    assert_eq!(recorded.action_request_id.as_deref(), Some("r-1"));
    assert_eq!(recorded.card_correlation_id.as_deref(), Some("corr-7"));
}

#[tokio::test]
async fn pressing_again_is_already_and_the_other_action_is_409() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, "john@contoso.com");
    assert_eq!(
        press(
            &p.app,
            &token,
            json!({"expenseId": id, "action": "reject"}),
            Some("a")
        )
        .await
        .status,
        200
    );
    let again = press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "reject"}),
        Some("b"),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.message.as_deref(),
        Some("This expense was already rejected.")
    );
    assert!(again.update);
    let other = press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "approve"}),
        Some("c"),
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(
        other.message.as_deref(),
        Some("This expense was already rejected.")
    );
    assert!(decision_line(&other.card.unwrap()).starts_with("Rejected by john@contoso.com"));
}

#[tokio::test]
async fn the_same_action_request_id_gets_exactly_the_first_answer() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, "john@contoso.com");
    let first = press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "approve"}),
        Some("same-id"),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.message.as_deref(), Some("The expense was approved."));
    // A retry (even one that says something else) gets the first answer, not "already".
    for action in ["approve", "reject"] {
        let retry = press(
            &p.app,
            &token,
            json!({"expenseId": id, "action": action}),
            Some("same-id"),
        )
        .await;
        assert_eq!(retry.status, first.status);
        assert_eq!(retry.message, first.message);
        assert!(retry.update);
    }
}

#[tokio::test]
async fn an_unknown_expense_is_404_and_the_seed_shape_records_nothing() {
    let p = provider(&[]).await;
    let token = token_for(&p.idp, "john@contoso.com");
    let r = press(
        &p.app,
        &token,
        json!({"expenseId": "EXP-2026-999999", "action": "approve"}),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.message.as_deref(), Some("This expense is not known."));
    let r = press(&p.app, &token, json!({"action": "reject"}), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.message.as_deref(), Some("The expense was rejected."));
    assert!(!r.update && r.card.is_none());
}

#[tokio::test]
async fn the_card_endpoint_returns_the_current_card_for_auto_invoke() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, "john@contoso.com");
    let r = press_at(
        &p.app,
        "/api/expense/card",
        &token,
        json!({"expenseId": id}),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.update);
    let card = r.card.unwrap();
    assert_eq!(
        card["actions"].as_array().unwrap().len(),
        2,
        "an undecided card has its buttons"
    );
    assert_eq!(
        card["autoInvokeAction"]["url"],
        format!("{}/api/expense/card", p.app.address)
    );
    press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "approve"}),
        None,
    )
    .await;
    let card = press_at(
        &p.app,
        "/api/expense/card",
        &token,
        json!({"expenseId": id}),
        None,
    )
    .await
    .card
    .unwrap();
    assert!(card.get("actions").is_none());
    assert!(decision_line(&card).starts_with("Approved by"));
    // The same token rules: no token, no card.
    let r = p
        .app
        .client
        .post(p.app.url("/api/expense/card"))
        .json(&json!({"expenseId": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_ticket_for_someone_else_is_403_and_the_recipients_ticket_works() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some("adelev@contoso.com")).await;
    let ticket = p
        .app
        .state
        .actions
        .tickets
        .issue(&id, "AdeleV@contoso.com", now());
    let alex = token_for(&p.idp, "AlexW@contoso.com");
    let r = press(
        &p.app,
        &alex,
        json!({"expenseId": id, "action": "approve", "ticket": ticket}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message.as_deref(),
        Some("This card was sent to someone else, or it has expired.")
    );
    let forged = format!("{}x", &ticket[..ticket.len() - 1]);
    let adele = token_for(&p.idp, "AdeleV@contoso.com");
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": id, "action": "approve", "ticket": forged}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": id, "action": "approve", "ticket": ticket}),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.message);
    // A ticket for one expense does not work on another.
    let other = new_expense(&p.app, Some("adelev@contoso.com")).await;
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": other, "action": "approve", "ticket": ticket}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn action_require_ticket_refuses_actions_without_one() {
    let p = provider(&[("ACTION_REQUIRE_TICKET", "true")]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, "john@contoso.com");
    let r = press(
        &p.app,
        &token,
        json!({"expenseId": id, "action": "approve"}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = press(&p.app, &token, json!({"action": "approve"}), None).await;
    assert_eq!(r.status, 403, "the seed shape needs a ticket too");
}

/// Forty presses at once by the card's recipient (Approve and Reject mixed,
/// each with its own request id, as forty clicks would be), and ten by
/// people the card was not sent to.
async fn forty_presses(apps: &[Arc<TestApp>], idp: &MockIdp, id: &str) {
    let mut tasks = Vec::new();
    let mut strangers = Vec::new();
    for i in 0..40 {
        let app = apps[i % apps.len()].clone();
        let token = token_for(idp, JOHN);
        let action = if i % 2 == 0 { "approve" } else { "reject" };
        let body = json!({"expenseId": id, "action": action});
        let rid = format!("press-{i}");
        tasks.push(tokio::spawn(async move {
            (action, press(&app, &token, body, Some(&rid)).await)
        }));
        if i % 4 == 0 {
            let app = apps[i % apps.len()].clone();
            let token = token_for(idp, &format!("person{i}@contoso.com"));
            let body = json!({"expenseId": id, "action": action});
            strangers.push(tokio::spawn(async move {
                press(&app, &token, body, None).await
            }));
        }
    }
    for s in strangers {
        let r = s.await.unwrap();
        assert_eq!(r.status, 403);
        assert!(r.card.is_none(), "someone else's card was shown");
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let (_, recorded) = apps[0].state.store.expense(id).await.unwrap().unwrap();
    let decided = recorded.expect("a decision was recorded").decision.as_str();
    let mut firsts = 0;
    for (action, r) in &replies {
        let msg = r.message.clone().unwrap();
        let same = decided.starts_with(&action[..5]);
        if msg == format!("The expense was {decided}.") {
            firsts += 1;
            assert!(same && r.status == 200);
        } else if same {
            assert_eq!(
                (r.status, msg),
                (200, format!("This expense was already {decided}."))
            );
        } else {
            assert_eq!(
                (r.status, msg),
                (409, format!("This expense was already {decided}."))
            );
        }
        assert!(
            decision_line(r.card.as_ref().unwrap())
                .to_lowercase()
                .starts_with(decided)
        );
    }
    assert_eq!(firsts, 1, "exactly one press recorded the decision");
}

#[tokio::test]
async fn forty_concurrent_mixed_presses_record_exactly_one_decision_in_sqlite() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    forty_presses(&[Arc::new(p.app)], &p.idp, &id).await;
}

#[tokio::test]
async fn forty_concurrent_mixed_presses_over_two_instances_sharing_redis_record_one_decision() {
    let (url, _server) = test_redis();
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let vars = [
        ("ACTION_AUDIENCE", audiences.as_str()),
        ("DECISION_STORE", "redis"),
        ("REDIS_URL", url.as_str()),
    ];
    let a = Arc::new(spawn_with(idp.settings(&vars)).await);
    let b = Arc::new(spawn_with(idp.settings(&vars)).await);
    let id = new_expense(&a, Some(JOHN)).await;
    assert!(
        b.state.store.expense(&id).await.unwrap().is_some(),
        "the instances share the store"
    );
    forty_presses(&[a, b], &idp, &id).await;
}

#[tokio::test]
async fn an_unreachable_store_is_503_with_a_card_status_and_no_decision() {
    let idp = MockIdp::start().await;
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let app = spawn_with(idp.settings(&[
        ("ACTION_AUDIENCE", audiences.as_str()),
        ("DECISION_STORE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:9"),
    ]))
    .await;
    let token = token_for(&idp, "john@contoso.com");
    let r = press(
        &app,
        &token,
        json!({"expenseId": "EXP-2026-000001", "action": "approve"}),
        Some("x"),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.message.as_deref(),
        Some("The service cannot record actions right now. Please try again later.")
    );
    let h = app.get("/healthz").await;
    assert_eq!(h.status(), 503);
    assert_eq!(body(h).await, "store unavailable");
}

/// Redis goes away between two presses of one card: the press meanwhile is
/// a 503 that records nothing; once it is back, Outlook's retry of that
/// same request records the decision, exactly once.
#[tokio::test]
async fn redis_stopping_is_503_with_nothing_recorded_and_the_retry_after_it_returns_records_once() {
    let mut redis = RedisServer::start_persistent();
    let url = redis.url();
    let p = provider(&[("DECISION_STORE", "redis"), ("REDIS_URL", url.as_str())]).await;
    let id = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, JOHN);
    let body = json!({"expenseId": id, "action": "approve"});
    redis.stop();
    let r = press(&p.app, &token, body.clone(), Some("through-the-outage")).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.message.as_deref(),
        Some("The service cannot record actions right now. Please try again later.")
    );
    redis.restart();
    assert!(eventually(&p.app, "/healthz", 200).await);
    // Nothing was recorded while it was down: the card still asks.
    let card = press_at(
        &p.app,
        "/api/expense/card",
        &token,
        json!({"expenseId": id}),
        None,
    )
    .await;
    assert_eq!(card.status, 200);
    assert_eq!(decision_line(card.card.as_ref().unwrap()), "");
    // Outlook retries the same request (twice, racing): one decision, the
    // same first answer for both.
    let (a, b) = tokio::join!(
        press(&p.app, &token, body.clone(), Some("through-the-outage")),
        press(&p.app, &token, body.clone(), Some("through-the-outage")),
    );
    for r in [&a, &b] {
        assert_eq!(r.status, 200);
        assert_eq!(r.message.as_deref(), Some("The expense was approved."));
    }
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("outlook-inbox:decision:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[tokio::test]
async fn a_corrupt_or_unwritable_data_dir_is_a_start_up_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("oi-corrupt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("outlook-inbox.sqlite3"),
        b"this is not a database, but it is long enough to look like one to a careless opener",
    )
    .unwrap();
    let e = outlook_inbox::startup::Application::build(settings(&[(
        "DATA_DIR",
        dir.to_str().unwrap(),
    )]))
    .await
    .err()
    .expect("a corrupt store must not start");
    assert!(e.to_string().starts_with("DATA_DIR: "), "{e}");
    // A folder that cannot be created (its parent is a file).
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let inside = file.join("data");
    let e = outlook_inbox::startup::Application::build(settings(&[(
        "DATA_DIR",
        inside.to_str().unwrap(),
    )]))
    .await
    .err()
    .expect("an unusable folder must not start");
    assert!(e.to_string().starts_with("DATA_DIR: "), "{e}");
}

#[tokio::test]
async fn a_decision_survives_the_process_being_killed() {
    let idp = MockIdp::start().await;
    let dir = std::env::temp_dir().join(format!("oi-kill-{}", uuid::Uuid::new_v4().simple()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let audiences = format!("{APP_ID_URI},{CLIENT_ID}");
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_outlook-inbox"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", &base)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("AUTHORITY", format!("{}/common", idp.uri()))
            .env("MAIL_API_URL", format!("{}/v1.0", idp.uri()))
            .env("ACTION_AUDIENCE", &audiences)
            .env("DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::new();
    let wait_ready = || async {
        for _ in 0..200 {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the app did not start");
    };
    // An expense made through a store opened beside the app (same file).
    let mut child = start();
    wait_ready().await;
    let store = outlook_inbox::store::Store::new(outlook_inbox::store::Backend::Sqlite(
        outlook_inbox::store::sqlite::SqliteStore::open(&dir).unwrap(),
    ));
    let id = store
        .create_expense(NewExpense {
            amount_cents: 100,
            currency: "EUR".into(),
            submitter: "Megan Bowen".into(),
            purpose: "Taxi".into(),
            recipient: Some(JOHN.into()),
            created_at: now(),
        })
        .await
        .unwrap()
        .id;
    // Ready means ready: once /healthz said 200, a v1 token is judged at once.
    let token = token_for(&idp, JOHN);
    let r = client
        .post(format!("{base}/api/expense"))
        .bearer_auth(&token)
        .json(&json!({"expenseId": id, "action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SIGKILL right after the 200: no shutdown, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = start();
    wait_ready().await;
    let r = client
        .post(format!("{base}/api/expense"))
        .bearer_auth(token_for(&idp, JOHN))
        .json(&json!({"expenseId": id, "action": "reject"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let message = r
        .headers()
        .get(STATUS)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 409);
    assert_eq!(message, "This expense was already approved.");
}

#[tokio::test]
async fn a_cross_origin_card_send_is_refused_and_sends_nothing() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    for (origin, fetch_site) in [
        (Some("https://evil.example"), None),
        (Some("https://evil.example"), Some("same-origin")),
        (Some("null"), None),
        (Some("null"), Some("cross-site")),
        (None, None),
        (None, Some("same-site")),
    ] {
        let mut req = app.client.post(app.url("/cards/send"));
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        if let Some(s) = fetch_site {
            req = req.header("Sec-Fetch-Site", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{origin:?} {fetch_site:?}");
        assert!(
            body(r)
                .await
                .contains("This request did not come from this site")
        );
    }
    let inbox = body(app.get("/mail").await).await;
    assert!(!inbox.contains("is waiting for your decision"));
    // What a browser sends from our own page under `Referrer-Policy: no-referrer`.
    let r = app
        .client
        .post(app.url("/cards/send"))
        .header("Origin", "null")
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sending_is_off_without_an_originator_and_with_outlook() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_ok(&app).await;
    let home = body(app.get("/").await).await;
    assert!(!home.contains("Send me a test expense card"));
    let r = app
        .client
        .post(app.url("/cards/send"))
        .header("Origin", app.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let app = spawn_with(settings(&[("MAIL_API", "outlook")])).await;
    sign_in_as(&app, 0).await;
    assert!(
        !body(app.get("/").await)
            .await
            .contains("Send me a test expense card")
    );
}

/// Signs in to `p`'s app, has it send a card (Graph accepting the mail),
/// and returns the email's HTML and the card from its `<head>`.
pub async fn send_a_card(p: &Provider) -> (String, Value) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    p.idp.sign_in_ok(&p.app).await;
    Mock::given(method("POST"))
        .and(path("/v1.0/me/sendMail"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&p.idp.server)
        .await;
    let r = p
        .app
        .client
        .post(p.app.url("/cards/send"))
        .header("Origin", p.app.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", body(r).await);
    let requests = p.idp.server.received_requests().await.unwrap();
    let sent = requests
        .iter()
        .rfind(|r| r.url.path() == "/v1.0/me/sendMail")
        .unwrap();
    let mail: Value = serde_json::from_slice(&sent.body).unwrap();
    let html = mail["message"]["body"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let head = &html[..html.find("</head>").unwrap()];
    let open = "<script type=\"application/adaptivecard+json\">";
    let start = head.find(open).unwrap() + open.len();
    let json = &head[start..start + head[start..].find("</script>").unwrap()];
    assert!(
        !json.contains(['<', '>', '&']),
        "the card JSON carries raw markup characters: {json}"
    );
    let card: Value = serde_json::from_str(json).unwrap();
    (html, card)
}

/// The expense id a card is for.
pub fn card_expense(card: &Value) -> String {
    card["body"][0]["text"]
        .as_str()
        .unwrap()
        .trim_start_matches("Expense report ")
        .to_owned()
}

#[tokio::test]
async fn a_sent_card_carries_the_card_in_its_head_with_tickets_and_the_originator() {
    let p = provider(&[("ACTION_ORIGINATOR", "5f3c2a1e-0000-4000-8000-000000000001")]).await;
    let authorize = p.app.start_sign_in().await;
    assert!(query(&authorize, "scope").unwrap().contains("Mail.Send"));
    let (html, card) = send_a_card(&p).await;
    let requests = p.idp.server.received_requests().await.unwrap();
    let sent: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1.0/me/sendMail")
        .collect();
    assert_eq!(sent.len(), 1);
    let mail: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(mail["saveToSentItems"], true);
    assert_eq!(
        mail["message"]["toRecipients"][0]["emailAddress"]["address"],
        "AbeLi@contoso.com"
    );
    assert_eq!(mail["message"]["body"]["contentType"], "HTML");
    assert_eq!(card["originator"], "5f3c2a1e-0000-4000-8000-000000000001");
    assert_eq!(card["version"], "1.0");
    assert_eq!(
        card["autoInvokeAction"]["url"],
        format!("{}/api/expense/card", p.app.address)
    );
    let id = card_expense(&card);
    let tickets = &p.app.state.actions.tickets;
    for (i, action) in ["approve", "reject"].iter().enumerate() {
        let button = &card["actions"][i];
        assert_eq!(button["type"], "Action.Http");
        assert_eq!(button["url"], format!("{}/api/expense", p.app.address));
        let payload: Value = serde_json::from_str(button["body"].as_str().unwrap()).unwrap();
        assert_eq!(payload["action"], *action);
        assert_eq!(payload["expenseId"], id.as_str());
        let ticket = payload["ticket"].as_str().unwrap();
        assert!(
            tickets
                .check(ticket, &id, "abeli@contoso.com", now())
                .is_ok()
        );
    }
    let refresh: Value =
        serde_json::from_str(card["autoInvokeAction"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(refresh["expenseId"], id.as_str());
    let ticket = refresh["ticket"].as_str().unwrap();
    assert!(
        tickets
            .check(ticket, &id, "abeli@contoso.com", now())
            .is_ok()
    );
    // A readable body for mail clients that show no cards: the expense and
    // who submitted it, in the text after <body> (the card in <head> does not count).
    let submitter = card["body"][1]["facts"][1]["value"].as_str().unwrap();
    let readable = &html[html.find("<body").unwrap()..];
    assert!(readable.contains(&id), "{readable}");
    assert!(readable.contains(submitter), "{readable}");
}

/// A file whose header and schema read but whose pages are damaged starts
/// (checking every page would hold start-up), and the background check
/// then logs it naming DATA_DIR and takes the instance out of rotation.
#[tokio::test]
async fn a_store_damaged_past_its_header_is_found_by_the_background_check() {
    captured_logs();
    let dir = std::env::temp_dir().join(format!("oi-damaged-{}", uuid::Uuid::new_v4().simple()));
    let file = dir.join("outlook-inbox.sqlite3");
    {
        let app = spawn_with(settings(&[("DATA_DIR", dir.to_str().unwrap())])).await;
        for _ in 0..300 {
            new_expense(&app, Some(JOHN)).await;
        }
        app.state.store.close().await;
    }
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 8 * 4096, "{size}");
    let mut bytes = std::fs::read(&file).unwrap();
    // Page 4 onwards: garbage over a table's pages.
    for b in &mut bytes[3 * 4096..(size as usize).min(8 * 4096)] {
        *b = 0xA5;
    }
    std::fs::write(&file, bytes).unwrap();
    let app = spawn_with(settings(&[("DATA_DIR", dir.to_str().unwrap())])).await;
    assert!(eventually(&app, "/healthz", 503).await);
    assert_eq!(body(app.get("/healthz").await).await, "store unavailable");
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("DATA_DIR: outlook-inbox.sqlite3 is damaged")),
        "{logs}"
    );
}
