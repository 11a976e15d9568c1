//! Trust in every corner (issue 20): cards bound to their recipient, kept
//! answers bound to their performer and expense, sends that leave nothing
//! behind, demo mode kept off the network, sessions that fit real tokens,
//! and ready meaning ready.

use std::time::Duration;

use outlook_inbox::store::{Answer, DecisionStore as _};
use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::decisions::{
    JOHN, card_expense, decision_line, new_expense, press, press_at, provider, send_a_card,
    token_for,
};
use crate::helpers::*;

const ADELE: &str = "adelev@contoso.com";
const ALEX: &str = "alexw@contoso.com";

// ---- 1. a request id replays nobody else's answer ----

#[tokio::test]
async fn someone_elses_request_id_replays_nothing_of_theirs() {
    let p = provider(&[]).await;
    let adeles = new_expense(&p.app, Some(ADELE)).await;
    let alexs = new_expense(&p.app, Some(ALEX)).await;
    let adele = token_for(&p.idp, ADELE);
    let first = press(
        &p.app,
        &adele,
        json!({"expenseId": adeles, "action": "reject"}),
        Some("req-adele-1"),
    )
    .await;
    assert_eq!(first.message.as_deref(), Some("The expense was rejected."));
    // Alex reuses Adele's request id, with a ticket for his own expense.
    let ticket = p.app.state.actions.tickets.issue(&alexs, ALEX, now());
    let alex = token_for(&p.idp, ALEX);
    let r = press(
        &p.app,
        &alex,
        json!({"expenseId": alexs, "action": "approve", "ticket": ticket}),
        Some("req-adele-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.message.as_deref(), Some("The expense was approved."));
    let card = r.card.unwrap().to_string();
    assert!(card.contains(&alexs), "{card}");
    assert!(
        !card.contains(&adeles) && !card.to_lowercase().contains(ADELE),
        "Adele's card leaked: {card}"
    );
    // And with no body naming an expense of his, he gets nothing of hers either.
    let r = press(
        &p.app,
        &alex,
        json!({"expenseId": adeles, "action": "approve"}),
        Some("req-adele-1"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.card.is_none());
    // Adele's own retry still gets her first answer.
    let again = press(
        &p.app,
        &adele,
        json!({"expenseId": adeles, "action": "approve"}),
        Some("req-adele-1"),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.message, first.message);
}

#[tokio::test]
async fn a_request_id_reused_for_another_expense_answers_for_that_expense() {
    let p = provider(&[]).await;
    let one = new_expense(&p.app, Some(JOHN)).await;
    let two = new_expense(&p.app, Some(JOHN)).await;
    let token = token_for(&p.idp, JOHN);
    press(
        &p.app,
        &token,
        json!({"expenseId": one, "action": "reject"}),
        Some("reused"),
    )
    .await;
    let r = press(
        &p.app,
        &token,
        json!({"expenseId": two, "action": "approve"}),
        Some("reused"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.message.as_deref(), Some("The expense was approved."));
    let card = r.card.unwrap();
    assert_eq!(card_expense(&card), two);
    let (_, decided) = p.app.state.store.expense(&two).await.unwrap().unwrap();
    assert_eq!(
        decided.unwrap().decision,
        outlook_inbox::store::Decision::Approved
    );
}

#[tokio::test]
async fn two_performers_racing_one_request_id_each_get_their_own_answer() {
    let p = provider(&[]).await;
    let adeles = new_expense(&p.app, Some(ADELE)).await;
    let alexs = new_expense(&p.app, Some(ALEX)).await;
    let (adele, alex) = (token_for(&p.idp, ADELE), token_for(&p.idp, ALEX));
    for round in 0..5 {
        let rid = format!("shared-{round}");
        let action = if round % 2 == 0 { "approve" } else { "reject" };
        let (a, b) = tokio::join!(
            press(
                &p.app,
                &adele,
                json!({"expenseId": adeles, "action": action}),
                Some(&rid)
            ),
            press(
                &p.app,
                &alex,
                json!({"expenseId": alexs, "action": action}),
                Some(&rid)
            ),
        );
        for (reply, own, other) in [(&a, &adeles, &alexs), (&b, &alexs, &adeles)] {
            let card = reply.card.as_ref().unwrap();
            assert_eq!(card_expense(card), *own, "round {round}");
            assert!(!card.to_string().contains(other.as_str()));
        }
        assert!(decision_line(a.card.as_ref().unwrap()).contains(ADELE));
        assert!(decision_line(b.card.as_ref().unwrap()).contains(ALEX));
    }
}

#[tokio::test]
async fn two_copies_of_one_request_racing_get_identical_first_answers() {
    let p = provider(&[]).await;
    let token = token_for(&p.idp, JOHN);
    for round in 0..8 {
        let id = new_expense(&p.app, Some(JOHN)).await;
        let rid = format!("copy-{round}");
        let body = json!({"expenseId": id, "action": "approve"});
        let (a, b) = tokio::join!(
            press(&p.app, &token, body.clone(), Some(&rid)),
            press(&p.app, &token, body.clone(), Some(&rid)),
        );
        for r in [&a, &b] {
            assert_eq!(r.status, 200, "round {round}");
            assert_eq!(
                r.message.as_deref(),
                Some("The expense was approved."),
                "round {round}: a copy got another answer than the first"
            );
        }
        // The kept answer is that first answer, for later retries too.
        let later = press(&p.app, &token, body, Some(&rid)).await;
        assert_eq!(later.message.as_deref(), Some("The expense was approved."));
    }
}

/// The moment two racing copies meet, made to happen every time: the
/// decision is recorded under the first copy's request id, but its answer is
/// not kept yet (deleted here behind the app's back). The second copy must
/// still answer as the first, not "already".
#[tokio::test]
async fn a_copy_that_finds_its_own_decision_but_no_kept_answer_answers_as_the_first() {
    let p = provider(&[]).await;
    let token = token_for(&p.idp, JOHN);
    let id = new_expense(&p.app, Some(JOHN)).await;
    let body = json!({"expenseId": id, "action": "approve"});
    let first = press(&p.app, &token, body.clone(), Some("copy-x")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.message.as_deref(), Some("The expense was approved."));
    let file = p.app.state.settings.data_dir.join("outlook-inbox.sqlite3");
    let db = rusqlite::Connection::open(file).unwrap();
    assert_eq!(db.execute("DELETE FROM answers", []).unwrap(), 1);
    drop(db);
    let copy = press(&p.app, &token, body.clone(), Some("copy-x")).await;
    assert_eq!(copy.status, 200);
    assert_eq!(copy.message.as_deref(), Some("The expense was approved."));
    // Another request id of the same person is a second press: "already".
    let again = press(&p.app, &token, body, Some("copy-y")).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.message.as_deref(),
        Some("This expense was already approved.")
    );
}

// ---- 2. cards bound to their recipient ----

#[tokio::test]
async fn only_the_recipient_or_a_ticket_holder_reads_or_decides_a_card() {
    let p = provider(&[]).await;
    let id = new_expense(&p.app, Some(ADELE)).await;
    let alex = token_for(&p.idp, ALEX);
    // Someone else: no card, no decision, whatever the endpoint.
    let r = press_at(
        &p.app,
        "/api/expense/card",
        &alex,
        json!({"expenseId": id}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.card.is_none() && !r.update);
    let r = press(
        &p.app,
        &alex,
        json!({"expenseId": id, "action": "approve"}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.message.as_deref(),
        Some("This card was sent to someone else, or it has expired.")
    );
    let (_, decided) = p.app.state.store.expense(&id).await.unwrap().unwrap();
    assert!(decided.is_none(), "someone else decided Adele's expense");
    // The recipient, with or without a ticket (case of the address aside).
    let adele = token_for(&p.idp, "AdeleV@Contoso.com");
    let r = press_at(
        &p.app,
        "/api/expense/card",
        &adele,
        json!({"expenseId": id}),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.card.unwrap()["actions"].as_array().unwrap().len(), 2);
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": id, "action": "approve"}),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    // Still nobody else, even after the decision.
    let r = press_at(
        &p.app,
        "/api/expense/card",
        &alex,
        json!({"expenseId": id}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    // An expense sent to nobody can be decided only with a ticket.
    let nobodys = new_expense(&p.app, None).await;
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": nobodys, "action": "approve"}),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let ticket = p.app.state.actions.tickets.issue(&nobodys, ADELE, now());
    let r = press(
        &p.app,
        &adele,
        json!({"expenseId": nobodys, "action": "approve", "ticket": ticket}),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

// ---- 3. auto-refresh with ACTION_REQUIRE_TICKET ----

#[tokio::test]
async fn with_tickets_required_a_sent_cards_refresh_works_and_its_refreshed_card_keeps_working() {
    let p = provider(&[
        ("ACTION_ORIGINATOR", "5f3c2a1e-0000-4000-8000-000000000001"),
        ("ACTION_REQUIRE_TICKET", "true"),
    ])
    .await;
    let (_, card) = send_a_card(&p).await;
    let token = token_for(&p.idp, "AbeLi@contoso.com");
    let refresh: Value =
        serde_json::from_str(card["autoInvokeAction"]["body"].as_str().unwrap()).unwrap();
    let r = press_at(&p.app, "/api/expense/card", &token, refresh, None).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
    // Approve with the button's body, then refresh with the refreshed card's
    // own autoInvokeAction, as Outlook does the next time the mail is opened.
    let approve: Value =
        serde_json::from_str(card["actions"][0]["body"].as_str().unwrap()).unwrap();
    let r = press(&p.app, &token, approve, Some("abe-1")).await;
    assert_eq!(r.status, 200);
    let refreshed = r.card.unwrap();
    assert!(refreshed.get("actions").is_none());
    let again: Value =
        serde_json::from_str(refreshed["autoInvokeAction"]["body"].as_str().unwrap()).unwrap();
    assert!(again["ticket"].is_string(), "{refreshed}");
    let r = press_at(&p.app, "/api/expense/card", &token, again, None).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
    assert!(decision_line(&r.card.unwrap()).starts_with("Approved by AbeLi@contoso.com"));
}

// ---- 4. sends: nothing behind a refused send, at most ten a minute ----

#[tokio::test]
async fn a_refused_or_throttled_send_leaves_no_expense_behind() {
    let p = provider(&[("ACTION_ORIGINATOR", "5f3c2a1e-0000-4000-8000-000000000001")]).await;
    p.idp.sign_in_ok(&p.app).await;
    let year = time::OffsetDateTime::now_utc().year();
    for (n, answer) in [
        ResponseTemplate::new(429).insert_header("Retry-After", "30"),
        ResponseTemplate::new(403).set_body_json(
            json!({"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}),
        ),
        ResponseTemplate::new(500),
    ]
    .into_iter()
    .enumerate()
    {
        let mock = Mock::given(method("POST"))
            .and(path("/v1.0/me/sendMail"))
            .respond_with(answer)
            .expect(1)
            .mount_as_scoped(&p.idp.server)
            .await;
        let r = p
            .app
            .client
            .post(p.app.url("/cards/send"))
            .header("Origin", p.app.address.as_str())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error() || r.status().is_server_error());
        drop(mock);
        let id = format!("EXP-{year}-{:06}", n + 1);
        assert!(
            p.app.state.store.expense(&id).await.unwrap().is_none(),
            "a refused send left {id} behind"
        );
    }
    // A send that Graph accepts is kept, under the next id.
    let (_, card) = send_a_card(&p).await;
    let id = card_expense(&card);
    assert_eq!(id, format!("EXP-{year}-000004"));
    assert!(p.app.state.store.expense(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn the_eleventh_send_in_a_minute_is_429_with_retry_after() {
    let app = spawn_app().await;
    sign_in_as(&app, 0).await;
    let send = || {
        app.client
            .post(app.url("/cards/send"))
            .header("Origin", app.address.as_str())
            .send()
    };
    for n in 0..10 {
        assert_eq!(send().await.unwrap().status(), 200, "send {n}");
    }
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let page = body(r).await;
    assert!(page.contains("at most 10 test cards a minute"), "{page}");
    // Another person has their own ten.
    let other = app.another_browser();
    sign_in_as(&other, 1).await;
    let r = other
        .client
        .post(other.url("/cards/send"))
        .header("Origin", other.address.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn redis_counts_sends_across_instances() {
    let (url, _server) = test_redis();
    let vars = [("DECISION_STORE", "redis"), ("REDIS_URL", url.as_str())];
    let store_a = spawn_with(settings(&vars)).await;
    let store_b = spawn_with(settings(&vars)).await;
    let person = format!("{}@contoso.com", uuid::Uuid::new_v4().simple());
    let now = now();
    for n in 0..10 {
        let app = if n % 2 == 0 { &store_a } else { &store_b };
        assert_eq!(
            app.state.store.note_send(&person, now, 10).await.unwrap(),
            Ok(())
        );
    }
    let wait = store_b
        .state
        .store
        .note_send(&person, now + 5, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(wait, 55);
    assert_eq!(
        store_a
            .state
            .store
            .note_send(&person, now + 61, 10)
            .await
            .unwrap(),
        Ok(())
    );
}

// ---- 5. kept answers expire in SQLite as in Redis ----

#[tokio::test]
async fn kept_answers_older_than_31_days_are_ignored_and_pruned_in_sqlite() {
    let app = spawn_app().await;
    let store = &app.state.store;
    let answer = |id: &str| Answer {
        status: 200,
        message: "The expense was approved.".into(),
        expense_id: id.into(),
    };
    let day = 24 * 3600;
    let now = now();
    store
        .keep_answer(JOHN, "old", &answer("EXP-1"), now - 32 * day)
        .await
        .unwrap();
    store
        .keep_answer(JOHN, "recent", &answer("EXP-2"), now - 30 * day)
        .await
        .unwrap();
    assert_eq!(store.answer(JOHN, "old", now).await.unwrap(), None);
    assert_eq!(
        store
            .answer("JOHN@contoso.com", "recent", now)
            .await
            .unwrap(),
        Some(answer("EXP-2"))
    );
    assert_eq!(store.answer(ADELE, "recent", now).await.unwrap(), None);
    // An expired answer gives way to a new one under the same key.
    let kept = store
        .keep_answer(JOHN, "old", &answer("EXP-3"), now)
        .await
        .unwrap();
    assert_eq!(kept, answer("EXP-3"));
    store
        .keep_answer(JOHN, "older", &answer("EXP-4"), now - 40 * day)
        .await
        .unwrap();
    assert_eq!(store.prune_answers(now).await.unwrap(), 1);
    assert_eq!(store.prune_answers(now).await.unwrap(), 0);
    assert!(store.answer(JOHN, "recent", now).await.unwrap().is_some());
}

// ---- 7. demo mode stays off the network ----

#[tokio::test]
async fn demo_mode_on_a_network_bind_needs_demo_on_and_says_so() {
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_outlook-inbox"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(std::env::temp_dir())
            .envs(vars.iter().copied());
        cmd
    };
    let out = run(&[("BIND", "0.0.0.0:0")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BIND: ") && err.contains("DEMO=on"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // With DEMO=on it starts, and says in its log that the demo is on the network.
    let dir = std::env::temp_dir().join(format!("oi-demo-on-{}", uuid::Uuid::new_v4().simple()));
    let dir_s = dir.to_string_lossy().into_owned();
    let mut child = run(&[("BIND", "0.0.0.0:0"), ("DEMO", "on"), ("DATA_DIR", &dir_s)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("DEMO=on"))
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("no DEMO=on line within 20 s")
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("the log ended without a DEMO=on line");
    assert!(line.contains("WARN") && line.contains("network"), "{line}");
}

// ---- 8. sessions that fit real tokens ----

/// The `Set-Cookie` headers of a response, as sent.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A test access token of about `bytes` bytes, shaped like a JWT.
fn access_token(bytes: usize) -> String {
    use base64::Engine as _;
    let claims = json!({"aud": "https://graph.microsoft.com", "groups": "g".repeat(bytes)});
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let token = format!("eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.{body}.c2ln");
    token[..bytes.min(token.len())].to_owned()
}

#[tokio::test]
async fn access_tokens_of_3_5_and_7_5_kb_sign_in_on_the_cookie_store() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&idp.server)
        .await;
    for kb in [3.0, 5.0, 7.5] {
        let person = app.another_browser();
        let token = access_token((kb * 1024.0) as usize);
        let r = idp
            .sign_in_valid(&person, json!({"access_token": token}))
            .await;
        assert_eq!(r.status(), 302, "{kb} KB: {}", body(r).await);
        let cookies = set_cookies(&r);
        let pieces: Vec<&String> = cookies
            .iter()
            .filter(|c| c.starts_with("inbox_session"))
            .collect();
        assert!(pieces.len() >= 2, "{kb} KB fit one cookie?");
        for c in &cookies {
            assert!(c.len() <= 4096, "{kb} KB: a {}-byte Set-Cookie", c.len());
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"));
        }
        // The Inbox works, with the token the browser sent back in pieces.
        let r = person.get("/mail").await;
        assert_eq!(r.status(), 200, "{kb} KB");
        let requests = idp.server.received_requests().await.unwrap();
        let inbox = requests
            .iter()
            .rfind(|r| r.url.path() == "/v1.0/me/mailfolders/inbox/messages")
            .unwrap();
        assert_eq!(
            inbox.headers["authorization"].to_str().unwrap(),
            format!("Bearer {token}")
        );
    }
}

#[tokio::test]
async fn sign_out_deletes_every_piece_and_a_shorter_session_leaves_no_stale_piece() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&idp.server)
        .await;
    let r = idp
        .sign_in_valid(&app, json!({"access_token": access_token(7_600)}))
        .await;
    assert_eq!(r.status(), 302);
    let long: Vec<String> = set_cookies(&r)
        .into_iter()
        .filter(|c| c.starts_with("inbox_session") && !c.contains("Max-Age=0"))
        .collect();
    assert!(long.len() >= 3, "{long:?}");
    // Signing in again with a small token: the extra pieces are deleted.
    let r = idp
        .sign_in_valid(&app, json!({"access_token": access_token(1_000)}))
        .await;
    assert_eq!(r.status(), 302);
    let cookies = set_cookies(&r);
    let written: Vec<&String> = cookies
        .iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .collect();
    let deleted: Vec<&String> = cookies.iter().filter(|c| c.contains("Max-Age=0")).collect();
    assert_eq!(written.len(), 1, "{cookies:?}");
    for i in 1..long.len() {
        assert!(
            deleted
                .iter()
                .any(|c| c.starts_with(&format!("inbox_session.{i}=;"))),
            "piece {i} was not deleted: {cookies:?}"
        );
    }
    assert_eq!(app.get("/mail").await.status(), 200);
    // A long one again, then sign-out deletes every piece.
    let r = idp
        .sign_in_valid(&app, json!({"access_token": access_token(7_600)}))
        .await;
    assert_eq!(r.status(), 302);
    let pieces = set_cookies(&r).len();
    let r = app.get("/signout").await;
    let cookies = set_cookies(&r);
    for i in 0..pieces {
        let name = if i == 0 {
            "inbox_session=".to_owned()
        } else {
            format!("inbox_session.{i}=")
        };
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with(&name) && c.contains("Max-Age=0")),
            "{name} was not deleted at sign-out: {cookies:?}"
        );
    }
    assert_eq!(location(&app.get("/mail").await), "/");
}

#[tokio::test]
async fn pieces_are_host_prefixed_and_secure_on_https() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[("PUBLIC_URL", "https://inbox.contoso.com")])).await;
    let r = idp
        .sign_in_valid(&app, json!({"access_token": access_token(6_000)}))
        .await;
    assert_eq!(r.status(), 302);
    let cookies = set_cookies(&r);
    let pieces: Vec<&String> = cookies
        .iter()
        .filter(|c| c.contains("inbox_session"))
        .collect();
    assert!(pieces.len() >= 2);
    for c in pieces {
        assert!(c.starts_with("__Host-inbox_session"), "{c}");
        assert!(c.contains("; Secure") && c.contains("Path=/") && !c.contains("Domain"));
        assert!(c.len() <= 4096);
    }
}

#[tokio::test]
async fn a_piece_from_another_session_is_no_session_not_an_error() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[])).await;
    idp.sign_in_valid(&app, json!({"access_token": access_token(6_000)}))
        .await;
    let other = app.another_browser();
    let r = idp
        .sign_in_valid(&other, json!({"access_token": access_token(6_000)}))
        .await;
    let foreign = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("inbox_session.1="))
        .unwrap();
    let foreign = foreign.split(';').next().unwrap().to_owned();
    // A browser that holds the first piece of one session and the second of another.
    let r = browser()
        .get(app.url("/mail"))
        .header(
            "Cookie",
            format!("inbox_session=AAAA; {foreign}; inbox_session.2=garbage"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/");
}

// ---- 9. ready means ready ----

/// The app against a mock identity platform whose v1 discovery answers
/// only after `delay`, started without waiting for it to be ready.
async fn slow_v1_discovery(delay: Duration) -> (MockIdp, TestApp) {
    let idp = MockIdp::start().await;
    // Mounted with a higher priority than the mock's own document.
    Mock::given(method("GET"))
        .and(path("/common/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "issuer": format!("{}/sts/{{tenantid}}/", idp.uri()),
                    "jwks_uri": format!("{}/common/discovery/keys", idp.uri()),
                }))
                .set_delay(delay),
        )
        .with_priority(1)
        .mount(&idp.server)
        .await;
    let audiences = format!("api://auth-am-decisions/{CLIENT_ID},{CLIENT_ID}");
    let app =
        TestApp::start_unready(idp.settings(&[("ACTION_AUDIENCE", audiences.as_str())])).await;
    (idp, app)
}

/// A v1 Entra action token for `upn`, as the Actions service sends.
fn v1_action_token(idp: &MockIdp, upn: &str) -> String {
    let now = now();
    idp.signer
        .sign(&json!({
            "aud": format!("api://auth-am-decisions/{CLIENT_ID}"), "iss": idp.v1_issuer(),
            "iat": now, "nbf": now, "exp": now + 3600,
            "appid": outlook_inbox::jwt::action_token::ACTIONS_APP_ID,
            "tid": TENANT, "upn": upn, "ver": "1.0",
        }))
        .unwrap()
}

#[tokio::test]
async fn a_v1_action_token_sent_the_moment_healthz_first_says_200_is_accepted() {
    let (idp, app) = slow_v1_discovery(Duration::from_millis(600)).await;
    let mut saw_not_ready = false;
    loop {
        let r = app.get("/healthz").await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert_eq!(body(r).await, "identity platform unavailable");
        saw_not_ready = true;
    }
    assert!(
        saw_not_ready,
        "healthz said 200 before v1 discovery was done"
    );
    let token = v1_action_token(&idp, JOHN);
    let r = press(&app, &token, json!({"action": "approve"}), None).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
}

#[tokio::test]
async fn an_action_that_arrives_before_ready_waits_for_it_instead_of_failing() {
    let (idp, app) = slow_v1_discovery(Duration::from_millis(700)).await;
    assert!(!app.state.ready.is_loaded());
    let token = v1_action_token(&idp, JOHN);
    let r = press(&app, &token, json!({"action": "approve"}), None).await;
    assert_eq!(r.status, 200, "{:?}", r.message);
}
