//! The live Inbox (issue 22): subscriptions, the change and lifecycle
//! webhooks, the event stream, polling, and several instances over Redis.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outlook_inbox::store::SubscriptionStore as _;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

/// A Server-Sent Events stream read by the test client.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its name, id and data.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

impl Events {
    pub async fn open(app: &TestApp, since: Option<i64>, last_id: Option<&str>) -> Self {
        let mut req = app
            .client
            .get(app.url(&format!("/mail/events?since={}", since.unwrap_or_else(now))));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200, "the stream did not open");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (heartbeats and the retry hint skipped), within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.name = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `rows` event's data.
    pub async fn rows(&mut self, wait: Duration) -> Option<(Option<String>, Value)> {
        while let Some(e) = self.next(wait).await {
            if e.name == "rows" {
                return Some((e.id, serde_json::from_str(&e.data).unwrap()));
            }
        }
        None
    }
}

/// The `since` the Inbox page gives its stream.
fn since_of(page: &str) -> i64 {
    let start = page.find("/mail/events?since=").expect("a live Inbox page") + 19;
    page[start..start + page[start..].find('"').unwrap()]
        .parse()
        .unwrap()
}

/// Waits (at most ~5 s) until `check` holds.
async fn until<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---- in demo mode: the whole loop ----

async fn demo_app() -> TestApp {
    let mut s = settings(&[]);
    s.demo_arrival_delay = Duration::from_millis(100);
    let app = spawn_with(s).await;
    sign_in_as(&app, 0).await;
    app
}

#[tokio::test]
async fn opening_the_inbox_subscribes_once_after_graph_validated_the_app() {
    let app = demo_app().await;
    let page = body(app.get("/mail").await).await;
    assert!(page.contains("id=\"live\""), "{page}");
    assert!(page.contains("<script src=\"/static/live-inbox.js\" defer></script>"));
    assert!(page.contains("aria-live=\"polite\""));
    let person = format!(
        "{}/{}",
        outlook_inbox::demo::TENANT_ID,
        outlook_inbox::demo::PEOPLE[0].oid
    );
    let store = &app.state.store;
    assert!(
        until(|| async { store.subscription_of(&person).await.unwrap().is_some() }).await,
        "no subscription"
    );
    let first = store.subscription_of(&person).await.unwrap().unwrap();
    assert_eq!(first.client_state_hash.len(), 64, "only a hash is kept");
    for _ in 0..3 {
        app.get("/mail").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = store.subscription_of(&person).await.unwrap().unwrap();
    assert_eq!(again.id, first.id, "a second subscription was made");
    assert_eq!(app.demo.as_ref().unwrap().subscription_count(), 1);
    // Page 2 and searches are not live.
    assert!(
        !body(app.get("/mail?page=2").await)
            .await
            .contains("id=\"live\"")
    );
    assert!(
        !body(app.get("/mail?q=budget").await)
            .await
            .contains("id=\"live\"")
    );
}

#[tokio::test]
async fn a_message_that_arrives_appears_on_the_open_stream_as_a_table_row() {
    let app = demo_app().await;
    let page = body(app.get("/mail").await).await;
    let mut events = Events::open(&app, Some(since_of(&page)), None).await;
    let r = app
        .post_from_page("/_demo/mail/arrive")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (id, data) = events.rows(Duration::from_secs(10)).await.expect("no rows");
    assert!(id.is_some());
    let html = data["html"].as_str().unwrap();
    assert!(html.contains("<tr class=\"unread\">"), "{html}");
    assert!(
        html.contains("Quick question about the Q4 numbers"),
        "{html}"
    );
    assert!(html.contains("<a href=\"/mail/AAMkAD0N"), "{html}");
    assert!(html.contains("<time datetime="));
    assert_eq!(
        data["announce"],
        "New message from Megan Bowen: Quick question about the Q4 numbers"
    );
    // And it is in the Inbox for real.
    assert!(
        body(app.get("/mail").await)
            .await
            .contains("Quick question about the Q4 numbers")
    );
}

// ---- against a mock Graph ----

/// Answers from a queue, then the default.
#[derive(Clone)]
struct Script {
    queue: Arc<Mutex<VecDeque<ResponseTemplate>>>,
    default: ResponseTemplate,
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.queue
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

const DELTA: &str = "/v1.0/me/mailFolders/inbox/messages/delta";
const SUBSCRIPTION: &str = "sub-7f3a2c";

struct Graph {
    idp: MockIdp,
    app: TestApp,
    delta: Script,
}

impl Graph {
    /// The app against a mock Graph with the webhook on, signed in.
    async fn start(extra: &[(&str, &str)]) -> Self {
        let idp = MockIdp::start().await;
        let mut vars = vec![("NOTIFICATIONS", "webhook")];
        vars.extend_from_slice(extra);
        let app = spawn_with(idp.settings(&vars)).await;
        Self::mount(&idp).await;
        let delta = Script {
            queue: Arc::default(),
            default: ResponseTemplate::new(200).set_body_json(delta_page(&idp, &[], "t-idle")),
        };
        Mock::given(method("GET"))
            .and(path(DELTA))
            .respond_with(delta.clone())
            .mount(&idp.server)
            .await;
        idp.sign_in_ok(&app).await;
        Self { idp, app, delta }
    }

    async fn mount(idp: &MockIdp) {
        empty_inbox(idp).await;
        Mock::given(method("POST"))
            .and(path("/v1.0/subscriptions"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": SUBSCRIPTION, "expirationDateTime": "2099-01-01T00:00:00Z",
            })))
            .mount(&idp.server)
            .await;
        Mock::given(method("DELETE"))
            .and(path(format!("/v1.0/subscriptions/{SUBSCRIPTION}")))
            .respond_with(ResponseTemplate::new(204))
            .mount(&idp.server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/v1.0/subscriptions/{SUBSCRIPTION}/reauthorize"
            )))
            .respond_with(ResponseTemplate::new(204))
            .mount(&idp.server)
            .await;
    }

    fn then(&self, answer: ResponseTemplate) {
        self.delta.queue.lock().unwrap().push_back(answer);
    }

    /// Opens the Inbox, waits for the subscription, and returns the
    /// `clientState` the app gave Graph.
    async fn subscribe(&self, app: &TestApp) -> String {
        app.get("/mail").await;
        let idp = &self.idp;
        assert!(
            until(|| async { !calls(idp, "POST", "/v1.0/subscriptions").await.is_empty() }).await,
            "no subscription request"
        );
        let made = calls(idp, "POST", "/v1.0/subscriptions").await;
        let body: Value = serde_json::from_slice(&made[0].body).unwrap();
        assert_eq!(body["changeType"], "created");
        assert_eq!(body["resource"], "me/mailFolders('inbox')/messages");
        assert_eq!(
            body["notificationUrl"],
            format!("{}/notifications", app.address)
        );
        assert_eq!(
            body["lifecycleNotificationUrl"],
            format!("{}/notifications/lifecycle", app.address)
        );
        let state = app.state.clone();
        assert!(
            until(|| async {
                state
                    .store
                    .subscription(SUBSCRIPTION)
                    .await
                    .unwrap()
                    .is_some()
            })
            .await,
            "the subscription was not kept"
        );
        body["clientState"].as_str().unwrap().to_owned()
    }

    async fn notify(&self, app: &TestApp, path_: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(app.url(path_))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the app no longer keeps the subscription.
    async fn forgot_the_subscription(&self) -> bool {
        let state = self.app.state.clone();
        until(|| async {
            state
                .store
                .subscription(SUBSCRIPTION)
                .await
                .unwrap()
                .is_none()
        })
        .await
    }

    async fn deltas(&self) -> usize {
        calls(&self.idp, "GET", DELTA).await.len()
    }
}

/// Graph's answer for an Inbox with nothing in it.
async fn empty_inbox(idp: &MockIdp) {
    Mock::given(method("GET"))
        .and(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&idp.server)
        .await;
}

async fn calls(idp: &MockIdp, verb: &str, p: &str) -> Vec<Request> {
    idp.server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .collect()
}

/// A delta page with these messages, ending the round with token `token`.
fn delta_page(idp: &MockIdp, ids: &[&str], token: &str) -> Value {
    let value: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id, "subject": format!("Subject of {id}"), "receivedDateTime": "2026-12-07T10:00:00Z",
                "isRead": false, "hasAttachments": false, "importance": "normal",
                "from": {"emailAddress": {"name": "Sender", "address": "sender@contoso.com"}},
            })
        })
        .collect();
    json!({
        "value": value,
        "@odata.deltaLink": format!("{}{DELTA}?$deltatoken={token}", idp.uri()),
    })
}

fn created(client_state: &str) -> Value {
    json!({"value": [{
        "subscriptionId": SUBSCRIPTION, "clientState": client_state, "changeType": "created",
        "resource": "Users/x/Messages/M1", "resourceData": {"id": "M1"},
    }]})
}

#[tokio::test]
async fn the_validation_handshake_echoes_the_token_as_plain_text_and_refuses_a_bad_one() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[("NOTIFICATIONS", "webhook")])).await;
    for endpoint in ["/notifications", "/notifications/lifecycle"] {
        let r = reqwest::Client::new()
            .post(app.url(endpoint))
            .query(&[(
                "validationToken",
                "Validation: Testing client <b>reachability</b> & more",
            )])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            body(r).await,
            "Validation: Testing client <b>reachability</b> & more"
        );
        let long = "a".repeat(10 * 1024);
        for bad in [long.as_str(), "line\nbreak"] {
            let r = reqwest::Client::new()
                .post(app.url(endpoint))
                .query(&[("validationToken", bad)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{endpoint}");
        }
    }
}

#[tokio::test]
async fn strangers_forgeries_garbage_and_floods_get_a_clear_answer_and_no_read() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(
        until(|| async { g.deltas().await >= 1 }).await,
        "no catch-up read"
    );
    let before = g.deltas().await;
    // Unknown subscription, wrong clientState: 202, ignored.
    let unknown = json!({"value": [{"subscriptionId": "someone-elses", "clientState": state, "changeType": "created"}]});
    assert_eq!(
        g.notify(&g.app, "/notifications", unknown).await.status(),
        202
    );
    assert_eq!(
        g.notify(&g.app, "/notifications", created("not-the-secret"))
            .await
            .status(),
        202
    );
    // Not JSON, not a batch, too large.
    for garbage in ["{", "[1,2]", "{\"value\": 7}"] {
        let r = reqwest::Client::new()
            .post(g.app.url("/notifications"))
            .header("content-type", "application/json")
            .body(garbage)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{garbage}");
    }
    let huge = format!(
        "{{\"value\": [], \"pad\": \"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    let r = reqwest::Client::new()
        .post(g.app.url("/notifications"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        g.deltas().await,
        before,
        "a stranger's notification caused a read"
    );
    // 10,000 genuine notifications in one body: one read, one row.
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["NEW1"], "t1")));
    let many: Vec<Value> = (0..10_000)
        .map(|_| json!({"subscriptionId": SUBSCRIPTION, "clientState": state}))
        .collect();
    let r = g
        .notify(&g.app, "/notifications", json!({ "value": many }))
        .await;
    assert_eq!(r.status(), 202);
    let (_, data) = events.rows(Duration::from_secs(5)).await.expect("no row");
    assert_eq!(data["ids"], json!(["NEW1"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.deltas().await, before + 1, "one batch, one read");
    assert!(
        events.rows(Duration::from_millis(300)).await.is_none(),
        "a second row event"
    );
}

#[tokio::test]
async fn a_gone_delta_link_starts_again_and_nothing_is_lost_or_repeated() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &[], "t1")));
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    // The deltaLink is gone: the app starts again from the page's time.
    g.then(
        ResponseTemplate::new(410).set_body_json(json!({"error": {"code": "SyncStateNotFound"}})),
    );
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["A1", "A2"], "t2")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    let (_, data) = events
        .rows(Duration::from_secs(5))
        .await
        .expect("no rows after a reset");
    assert_eq!(data["ids"].as_array().unwrap().len(), 2);
    let calls = calls(&g.idp, "GET", DELTA).await;
    let fresh = &calls[calls.len() - 1];
    assert!(
        fresh.url.query().unwrap().contains("filter"),
        "the reset did not start from a time"
    );
    // The same messages again (a changed flag, say) are not new.
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["A1"], "t3")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    assert!(
        events.rows(Duration::from_millis(800)).await.is_none(),
        "a row came twice"
    );
}

#[tokio::test]
async fn in_redis_a_subscription_outlives_its_expiry_by_a_day() {
    let server = RedisServer::start();
    let url = server.url();
    let g = Graph::start(&[("DATA_STORE", "redis"), ("REDIS_URL", url.as_str())]).await;
    g.subscribe(&g.app).await;
    let owner = format!("{TENANT}/00000000-0000-0000-66f3-3332eca7ea81");
    // Graph's answer, clamped to the longest it allows.
    let expires_at = g
        .app
        .state
        .store
        .subscription_of(&owner)
        .await
        .unwrap()
        .unwrap()
        .expires_at;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in [
        format!("outlook-inbox:subscription:{owner}"),
        format!("outlook-inbox:subscription-id:{SUBSCRIPTION}"),
    ] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let left = expires_at - now();
        assert!(
            (left + 24 * 3600 - 60..=left + 24 * 3600 + 60).contains(&ttl),
            "{key}: TTL {ttl}, {left} s to expiry"
        );
    }
}

#[tokio::test]
async fn the_delta_link_is_kept_in_the_data_store_of_either_kind() {
    let server = RedisServer::start();
    let url = server.url();
    let owner = format!("{TENANT}/00000000-0000-0000-66f3-3332eca7ea81");
    for vars in [
        vec![],
        vec![("DATA_STORE", "redis"), ("REDIS_URL", url.as_str())],
    ] {
        let g = Graph::start(&vars).await;
        let state = g.subscribe(&g.app).await;
        g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &[], "kept-1")));
        let mut events = Events::open(&g.app, None, None).await;
        assert!(until(|| async { g.deltas().await >= 1 }).await);
        g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["K1"], "kept-2")));
        g.notify(&g.app, "/notifications", created(&state)).await;
        events.rows(Duration::from_secs(5)).await.expect("no row");
        // What another instance, or this one after a restart, goes on from.
        let store = &g.app.state.store;
        assert!(
            until(|| async {
                store
                    .delta_link(&owner)
                    .await
                    .unwrap()
                    .is_some_and(|l| l.ends_with("kept-2"))
            })
            .await,
            "{vars:?}: the deltaLink was not kept"
        );
    }
}

#[tokio::test]
async fn a_throttled_delta_waits_as_graph_asks_then_delivers() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    g.then(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_json(json!({"error": {"code": "TooManyRequests"}})),
    );
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["T1"], "t1")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    let (_, data) = events
        .rows(Duration::from_secs(6))
        .await
        .expect("no row after throttling");
    assert_eq!(data["ids"], json!(["T1"]));
}

#[tokio::test]
async fn a_refused_token_ends_the_stream_with_expired() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    g.then(
        ResponseTemplate::new(401)
            .set_body_json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
    );
    g.notify(&g.app, "/notifications", created(&state)).await;
    let mut last = None;
    while let Some(e) = events.next(Duration::from_secs(5)).await {
        last = Some(e.name.clone());
        if e.name == "expired" {
            break;
        }
    }
    assert_eq!(last.as_deref(), Some("expired"));
    assert!(
        events.next(Duration::from_millis(500)).await.is_none(),
        "the stream went on"
    );
}

#[tokio::test]
async fn poll_mode_reads_the_delta_on_its_own() {
    let idp = MockIdp::start().await;
    let mut s = idp.settings(&[("NOTIFICATIONS", "poll")]);
    s.poll_period = Duration::from_millis(300);
    let app = spawn_with(s).await;
    Graph::mount(&idp).await;
    let queue: Arc<Mutex<VecDeque<ResponseTemplate>>> = Arc::default();
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(Script {
            queue: queue.clone(),
            default: ResponseTemplate::new(200).set_body_json(delta_page(&idp, &[], "idle")),
        })
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
    let page = body(app.get("/mail").await).await;
    let mut events = Events::open(&app, Some(since_of(&page)), None).await;
    queue.lock().unwrap().extend([
        ResponseTemplate::new(200).set_body_json(delta_page(&idp, &[], "p1")),
        ResponseTemplate::new(200).set_body_json(delta_page(&idp, &["P1"], "p2")),
    ]);
    let (_, data) = events
        .rows(Duration::from_secs(5))
        .await
        .expect("polling found nothing");
    assert_eq!(data["ids"], json!(["P1"]));
    assert!(
        calls(&idp, "POST", "/v1.0/subscriptions").await.is_empty(),
        "poll mode subscribed"
    );
}

#[tokio::test]
async fn streams_are_five_a_browser_bounded_in_all_and_released_when_the_client_goes() {
    let idp = MockIdp::start().await;
    let mut s = idp.settings(&[("NOTIFICATIONS", "poll"), ("LIVE_MAX_STREAMS", "7")]);
    // A client that went away is noticed at the next heartbeat.
    s.live_heartbeat = Duration::from_millis(200);
    let app = spawn_with(s).await;
    Graph::mount(&idp).await;
    idp.sign_in_ok(&app).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(Events::open(&app, None, None).await);
    }
    // A sixth in this browser takes the place of its oldest, which ends.
    open.push(Events::open(&app, None, None).await);
    let mut oldest = open.remove(0);
    while let Some(e) = oldest.next(Duration::from_secs(5)).await {
        assert_ne!(e.name, "rows");
    }
    let live = app.state.live.clone();
    assert!(
        until(|| async { live.open_streams() == 5 }).await,
        "more than five for one browser"
    );
    let other = app.another_browser();
    idp.sign_in_ok(&other).await;
    open.push(Events::open(&other, None, None).await);
    open.push(Events::open(&other, None, None).await);
    assert_eq!(app.state.live.open_streams(), 7);
    let third = app.another_browser();
    idp.sign_in_ok(&third).await;
    assert_eq!(third.get("/mail/events").await.status(), 503);
    // Clients that go away free their places.
    open.clear();
    let live = app.state.live.clone();
    assert!(
        until(|| async { live.open_streams() == 0 }).await,
        "streams were not released"
    );
    assert_eq!(third.get("/mail/events").await.status(), 200);
    // Signed out: no stream.
    assert_eq!(
        browser()
            .get(app.url("/mail/events"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn last_event_id_resumes_after_a_dropped_connection() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["R1"], "r1")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    let (first, _) = events.rows(Duration::from_secs(5)).await.unwrap();
    let first: u64 = first.unwrap().parse().unwrap();
    // Keep the person's feed alive with a second stream, drop the first.
    let mut keeper = Events::open(&g.app, None, None).await;
    drop(events);
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["R2"], "r2")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    let (second, _) = keeper.rows(Duration::from_secs(5)).await.unwrap();
    // Reconnecting after the first event gets the second, and only it.
    let mut resumed = Events::open(&g.app, None, Some(&first.to_string())).await;
    let (id, data) = resumed
        .rows(Duration::from_secs(2))
        .await
        .expect("nothing resumed");
    assert_eq!(id, second);
    assert_eq!(data["ids"], json!(["R2"]));
    assert!(resumed.rows(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn lifecycle_events_resync_reauthorize_and_forget() {
    let g = Graph::start(&[]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    let event = |name: &str, cs: &str| json!({"value": [{"subscriptionId": SUBSCRIPTION, "clientState": cs, "lifecycleEvent": name}]});
    // missed: the delta is read again.
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["L1"], "l1")));
    let r = g
        .notify(&g.app, "/notifications/lifecycle", event("missed", &state))
        .await;
    assert_eq!(r.status(), 202);
    let (_, data) = events
        .rows(Duration::from_secs(5))
        .await
        .expect("missed did not resync");
    assert_eq!(data["ids"], json!(["L1"]));
    // reauthorizationRequired: reauthorized with the person's token.
    g.notify(
        &g.app,
        "/notifications/lifecycle",
        event("reauthorizationRequired", &state),
    )
    .await;
    let idp = &g.idp;
    let reauth = format!("/v1.0/subscriptions/{SUBSCRIPTION}/reauthorize");
    assert!(until(|| async { !calls(idp, "POST", &reauth).await.is_empty() }).await);
    let call = &calls(idp, "POST", &reauth).await[0];
    assert!(
        call.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    // A forged one does nothing; subscriptionRemoved forgets ours.
    g.notify(
        &g.app,
        "/notifications/lifecycle",
        event("subscriptionRemoved", "forged"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        g.app
            .state
            .store
            .subscription(SUBSCRIPTION)
            .await
            .unwrap()
            .is_some()
    );
    g.notify(
        &g.app,
        "/notifications/lifecycle",
        event("subscriptionRemoved", &state),
    )
    .await;
    assert!(g.forgot_the_subscription().await);
    // The next Inbox view makes a new one at once (the app looks again,
    // though it found the old one live moments ago).
    let made = calls(idp, "POST", "/v1.0/subscriptions").await.len();
    g.app.get("/mail").await;
    assert!(
        until(|| async { calls(idp, "POST", "/v1.0/subscriptions").await.len() > made }).await,
        "no new subscription after subscriptionRemoved"
    );
}

#[tokio::test]
async fn signing_out_deletes_the_subscription() {
    let g = Graph::start(&[]).await;
    g.subscribe(&g.app).await;
    g.app.get("/signout").await;
    let idp = &g.idp;
    let path_ = format!("/v1.0/subscriptions/{SUBSCRIPTION}");
    assert!(until(|| async { !calls(idp, "DELETE", &path_).await.is_empty() }).await);
    assert!(g.forgot_the_subscription().await);
}

#[tokio::test]
async fn a_subscription_graph_refuses_is_tried_once_a_minute_not_at_every_inbox_view() {
    let idp = MockIdp::start().await;
    let app = spawn_with(idp.settings(&[("NOTIFICATIONS", "webhook")])).await;
    empty_inbox(&idp).await;
    // What Graph answers when the validation request never reached the app.
    Mock::given(method("POST"))
        .and(path("/v1.0/subscriptions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": "ValidationError",
            "message": "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        }})))
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&app).await;
    let idp_ = &idp;
    assert_eq!(app.get("/mail").await.status(), 200);
    assert!(
        until(|| async { !calls(idp_, "POST", "/v1.0/subscriptions").await.is_empty() }).await,
        "no attempt"
    );
    // Let the failed attempt finish, then view the Inbox again and again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        assert_eq!(app.get("/mail").await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls(idp_, "POST", "/v1.0/subscriptions").await.len(),
        1,
        "every Inbox view tried again"
    );
    // Signing out and in again is a new start: the next view tries at once.
    app.get("/signout").await;
    idp.sign_in_ok(&app).await;
    assert!(
        until(|| async {
            app.get("/mail").await;
            calls(idp_, "POST", "/v1.0/subscriptions").await.len() == 2
        })
        .await,
        "no new attempt after signing in again"
    );
}

// ---- several instances ----

#[tokio::test]
async fn a_notification_to_one_instance_reaches_a_stream_on_another_through_redis() {
    // A Redis of its own: a subscription another test left for the same
    // person in a shared one would (rightly) spare the app making one.
    let server = RedisServer::start();
    let url = server.url();
    let idp = MockIdp::start().await;
    let key =
        "dGVzdC1vbmx5LXNlc3Npb24ta2V5LWZvci1vdXRsb29rLWluYm94LWludGVncmF0aW9uLXRlc3RzLTEyMzQ1Njc4";
    let vars = [
        ("NOTIFICATIONS", "webhook"),
        ("DATA_STORE", "redis"),
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", url.as_str()),
        ("SESSION_KEY", key),
    ];
    let a = spawn_with(idp.settings(&vars)).await;
    let b = spawn_with(idp.settings(&vars)).await;
    Graph::mount(&idp).await;
    let queue: Arc<Mutex<VecDeque<ResponseTemplate>>> = Arc::default();
    Mock::given(method("GET"))
        .and(path(DELTA))
        .respond_with(Script {
            queue: queue.clone(),
            default: ResponseTemplate::new(200).set_body_json(delta_page(&idp, &[], "idle")),
        })
        .mount(&idp.server)
        .await;
    idp.sign_in_ok(&b).await;
    let g = Graph {
        idp,
        app: b,
        delta: Script {
            queue,
            default: ResponseTemplate::new(200),
        },
    };
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    let live = a.state.live.clone();
    assert!(
        until(|| async { live.bus.is_up() }).await,
        "instance A never reached Redis"
    );
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["X1"], "x1")));
    // The notification reaches instance A, which holds no stream.
    let r = g.notify(&a, "/notifications", created(&state)).await;
    assert_eq!(r.status(), 202);
    let (_, data) = events
        .rows(Duration::from_secs(5))
        .await
        .expect("B's stream got nothing");
    assert_eq!(data["ids"], json!(["X1"]));
    assert!(
        events.rows(Duration::from_millis(500)).await.is_none(),
        "delivered twice"
    );
}

#[tokio::test]
async fn when_redis_goes_away_and_comes_back_the_stream_resumes_without_repeats() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let g = Graph::start(&[("DATA_STORE", "redis"), ("REDIS_URL", url.as_str())]).await;
    let state = g.subscribe(&g.app).await;
    let mut events = Events::open(&g.app, None, None).await;
    assert!(until(|| async { g.deltas().await >= 1 }).await);
    let live = g.app.state.live.clone();
    assert!(until(|| async { live.bus.is_up() }).await);
    redis.stop();
    assert!(
        until(|| async { !live.bus.is_up() }).await,
        "the loss was not noticed"
    );
    // Mail arrives while Redis is away; Redis comes back (empty: no
    // persistence), and the app reads what it missed.
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["W1"], "w1")));
    redis.restart();
    let (_, data) = events
        .rows(Duration::from_secs(10))
        .await
        .expect("nothing after Redis came back");
    assert_eq!(data["ids"], json!(["W1"]));
    // A late notification for the same mail shows nothing new.
    g.then(ResponseTemplate::new(200).set_body_json(delta_page(&g.idp, &["W1"], "w2")));
    g.notify(&g.app, "/notifications", created(&state)).await;
    assert!(
        events.rows(Duration::from_millis(800)).await.is_none(),
        "a repeat reached the page"
    );
}

#[tokio::test]
async fn the_stand_in_refuses_a_subscription_whose_validation_echo_is_wrong() {
    let app = spawn_app().await;
    let demo = app.demo.as_ref().unwrap();
    let keys = demo.keys().await.unwrap();
    let now = now();
    let token = keys
        .signer
        .sign(&json!({"aud": "https://graph.microsoft.com", "oid": outlook_inbox::demo::PEOPLE[1].oid, "exp": now + 600}))
        .unwrap();
    let echo = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/wrong"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not the token"))
        .mount(&echo)
        .await;
    Mock::given(method("POST"))
        .and(path("/right"))
        .respond_with(|r: &Request| {
            let token = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "validationToken")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_string(token)
        })
        .mount(&echo)
        .await;
    let subscribe = |url: String| {
        let body = json!({
            "changeType": "created", "notificationUrl": url,
            "resource": "me/mailFolders('inbox')/messages",
            "expirationDateTime": time::OffsetDateTime::now_utc()
                .saturating_add(time::Duration::hours(1))
                .format(&time::format_description::well_known::Rfc3339).unwrap(),
            "clientState": "x",
        });
        reqwest::Client::new()
            .post(app.url("/_demo/graph/v1.0/subscriptions"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = subscribe(format!("{}/wrong", echo.uri())).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(body(r).await.contains("ValidationError"));
    let r = subscribe(format!("{}/right", echo.uri())).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(demo.subscription_count(), 1);
}

#[tokio::test]
async fn the_demo_controls_send_lifecycle_events_the_app_acts_on() {
    let app = demo_app().await;
    let page = body(app.get("/mail").await).await;
    assert!(page.contains("Have someone send me a message"));
    let person = format!(
        "{}/{}",
        outlook_inbox::demo::TENANT_ID,
        outlook_inbox::demo::PEOPLE[0].oid
    );
    let store = app.state.clone();
    assert!(
        until(|| async {
            store
                .store
                .subscription_of(&person)
                .await
                .unwrap()
                .is_some()
        })
        .await
    );
    let r = app
        .post_from_page("/_demo/mail/lifecycle")
        .form(&[("event", "subscriptionRemoved")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        until(|| async {
            store
                .store
                .subscription_of(&person)
                .await
                .unwrap()
                .is_none()
        })
        .await,
        "the app did not forget the removed subscription"
    );
    // The next Inbox open subscribes again.
    app.get("/mail").await;
    assert!(
        until(|| async {
            store
                .store
                .subscription_of(&person)
                .await
                .unwrap()
                .is_some()
        })
        .await
    );
    // A control pressed from another site does nothing.
    let r = app
        .client
        .post(app.url("/_demo/mail/arrive"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
