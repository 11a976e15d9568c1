//! What an operator relies on: the `healthcheck` subcommand, log formats,
//! and a graceful stop on SIGTERM (issue 12, part). These run the real
//! binary (`CARGO_BIN_EXE_outlook-inbox`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use outlook_inbox::jwt::action_token::ACTIONS_APP_ID;

use crate::helpers::*;

/// The Actions app's audience as a v1 token carries it (test-only value).
const APP_ID_URI: &str = "api://auth-am-0b6a2c1e-test/6cb04018-a3f5-46a7-b995-940c78f5aef3";

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outlook-inbox"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env(
            "DATA_DIR",
            std::env::temp_dir().join(format!("oi-ops-{}", uuid::Uuid::new_v4().simple())),
        );
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthcheck(port: u16) -> i32 {
    healthcheck_with(&[("BIND", &format!("127.0.0.1:{port}"))]).0
}

/// Runs `outlook-inbox healthcheck` with these variables: its exit code and
/// what it printed on standard error.
fn healthcheck_with(vars: &[(&str, &str)]) -> (i32, String) {
    let out = binary()
        .arg("healthcheck")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_healthy_app_and_1_otherwise() {
    let app = spawn_app().await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap(),
        0
    );
    // Nothing listening.
    let closed = free_port();
    assert_eq!(
        tokio::task::spawn_blocking(move || healthcheck(closed))
            .await
            .unwrap(),
        1
    );
    // Listening, but unhealthy (503: its Redis is down).
    let sick = spawn_with(settings(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:9"),
    ]))
    .await;
    let port: u16 = sick.address.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn healthcheck_needs_only_bind_wants_exactly_200_and_never_exits_2() {
    // Docker reserves exit code 2; a bad BIND is just "unhealthy", said plainly.
    let (code, stderr) = tokio::task::spawn_blocking(|| healthcheck_with(&[("BIND", "port 8000")]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("healthcheck: BIND:"), "{stderr}");
    // A probe does not read the rest of the configuration or its secrets: a
    // variable the server would refuse does not make a healthy app look sick.
    let app = spawn_app().await;
    let bind = app.address.trim_start_matches("http://").to_owned();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        healthcheck_with(&[("BIND", &bind), ("CLIENT_ID", "without-a-secret")])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    // Only 200 is healthy: a 204 or a redirect from /healthz is not.
    for answer in [
        ResponseTemplate::new(204),
        ResponseTemplate::new(302).insert_header("location", "/healthz"),
    ] {
        let server = wiremock::MockServer::start().await;
        Mock::given(path("/healthz"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let bind = server.address().to_string();
        let (code, stderr) =
            tokio::task::spawn_blocking(move || healthcheck_with(&[("BIND", &bind)]))
                .await
                .unwrap();
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("/healthz answered"), "{stderr}");
    }
}

/// Starts the binary and returns it with the lines it printed up to the one
/// that says it is listening (at most 20).
fn first_lines(mut command: Command) -> (Child, Vec<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().take(20) {
        let line = line.unwrap();
        let done = line.contains("listening; open");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[tokio::test]
async fn a_bind_port_that_the_default_public_url_misses_is_warned_about() {
    let lines_with = |public_url: Option<&str>| {
        let mut command = binary();
        command.env("BIND", format!("127.0.0.1:{}", free_port()));
        if let Some(url) = public_url {
            command.env("PUBLIC_URL", url);
        }
        let (mut child, lines) = first_lines(command);
        child.kill().unwrap();
        child.wait().unwrap();
        lines
    };
    let (unset, set) = tokio::task::spawn_blocking(move || {
        (lines_with(None), lines_with(Some("http://localhost:9999")))
    })
    .await
    .unwrap();
    let warned = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("set PUBLIC_URL"))
    };
    assert!(warned(&unset), "{unset:?}");
    assert!(!warned(&set), "{set:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_time_level_and_message() {
    let mut command = binary();
    command
        .env("BIND", format!("127.0.0.1:{}", free_port()))
        .env("LOG_FORMAT", "json");
    let (mut child, lines) = tokio::task::spawn_blocking(move || first_lines(command))
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(
            ["INFO", "WARN"].contains(&v["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("listening; open")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let mut command = binary();
    command.env("BIND", format!("127.0.0.1:{}", free_port()));
    let (mut child, lines) = tokio::task::spawn_blocking(move || first_lines(command))
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("listening; open")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
}

#[tokio::test]
async fn a_bad_log_format_is_a_start_up_error_naming_it() {
    let out = binary().env("LOG_FORMAT", "xml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOG_FORMAT: "));
}

/// The binary against the mock identity provider, on a free port.
fn registered(idp: &MockIdp, port: u16) -> Command {
    let mut command = binary();
    command
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("AUTHORITY", format!("{}/common", idp.uri()))
        .env("MAIL_API_URL", format!("{}/v1.0", idp.uri()));
    command
}

/// The status a plain GET of `url` gets.
async fn status_of(url: &str) -> u16 {
    browser().get(url).send().await.unwrap().status().as_u16()
}

/// The metrics text served on `port`.
async fn scrape(port: u16) -> String {
    let r = browser()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Sends SIGTERM.
fn terminate(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits until `/healthz` answers 200.
async fn wait_ready(base: &str) {
    let client = browser();
    for _ in 0..200 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the app at {base} did not start");
}

/// One sample of `/metrics`: the value of the series whose name and labels
/// are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_upstream_calls_actions_and_key_fetches() {
    let idp = MockIdp::start().await;
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut child = registered(&idp, port)
        .env("METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
        .env("ACTION_AUDIENCE", format!("{APP_ID_URI},{CLIENT_ID}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let client = browser();
    for path in [
        "/",
        "/mail/AAMkAGI2",
        "/mail/AAMkAGI3",
        "/no/such/page-7f3a",
    ] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    // A forged action, then a valid one (which fetches the keys once).
    let forged = client
        .post(format!("{base}/api/expense"))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let now = now();
    let token = idp
        .signer
        .sign(&json!({
            "aud": APP_ID_URI, "iss": idp.v1_issuer(), "iat": now, "nbf": now, "exp": now + 3600,
            "appid": ACTIONS_APP_ID, "tid": TENANT, "upn": "megan@contoso.com", "ver": "1.0",
        }))
        .unwrap();
    let approved = client
        .post(format!("{base}/api/expense"))
        .bearer_auth(&token)
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);

    // Not on the public port.
    assert_eq!(status_of(&format!("{base}/metrics")).await, 404);
    let r = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        count(r#"http_requests_total{method="GET",route="/",status="200"}"#),
        1.0
    );
    // The route pattern, not the raw path: two ids, one series.
    assert_eq!(
        count(r#"http_requests_total{method="GET",route="/mail/{id}",status="302"}"#),
        2.0
    );
    // The page that does not exist, and `/metrics` asked of the public port.
    assert_eq!(
        count(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
        2.0
    );
    assert!(
        !text.contains("AAMkAGI") && !text.contains("page-7f3a"),
        "{text}"
    );
    assert_eq!(
        count(r#"http_requests_total{method="POST",route="/api/expense",status="401"}"#),
        1.0
    );
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        count(
            r#"http_request_duration_seconds_count{method="POST",route="/api/expense",status="200"}"#
        ),
        1.0
    );
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{method="GET",route="/",status="200",le="0.005"}"#
    ));
    // Discovery (v2 and v1) and the key set, each once.
    assert!(count(r#"upstream_requests_total{service="identity",status="200"}"#) >= 2.0);
    assert_eq!(
        count(r#"upstream_requests_total{service="keys",status="200"}"#),
        1.0
    );
    assert_eq!(count(r#"key_fetches_total{result="ok"}"#), 1.0);
    assert!(text.contains("upstream_request_duration_seconds_bucket{service=\"keys\""));
    assert_eq!(
        count(r#"actions_total{outcome="refused",reason="invalid_token"}"#),
        1.0
    );
    assert_eq!(count(r#"actions_total{outcome="approved",reason=""}"#), 1.0);
}

#[tokio::test]
async fn metrics_count_session_store_errors_and_a_503_health() {
    let idp = MockIdp::start().await;
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut child = registered(&idp, port)
        .env("METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
        .env("SESSION_STORE", "redis")
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = browser();
    let mut health = None;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            health = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(health.map(|s| s.as_u16()), Some(503));
    assert_eq!(status_of(&format!("{base}/signin")).await, 503);
    let text = scrape(metrics_port).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        // `/healthz` and `/signin` each found Redis down.
        sample(&text, r#"session_store_errors_total{operation="ping"}"#) == Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="GET",route="/healthz",status="503"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_are_off_without_metrics_bind() {
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = registered(&idp, port)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let r = browser()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn json_request_lines_carry_the_request_id_method_route_status_and_duration() {
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = registered(&idp, port)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let r = browser()
        .post(format!("{base}/api/expense"))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.")
        .header("Action-Request-Id", "a-r-i-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    // SIGTERM: a clean stop writes out every queued line.
    terminate(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &Value| v["span"]["request_id"] == id.as_str())
        // Discovery may still be under way when the request arrives; then the
        // request waits for it and its line can fall inside the request.
        .filter(|v: &Value| v["fields"]["message"] != "OpenID discovery succeeded")
        .collect();
    // The refusal and the request line, both with the request's id.
    assert_eq!(lines.len(), 2, "{text}");
    let refusal = &lines[0];
    assert_eq!(refusal["level"], "WARN");
    assert_eq!(refusal["fields"]["message"], "action refused: 401");
    assert_eq!(refusal["fields"]["action_request_id"], "a-r-i-1");
    let line = &lines[1];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["message"], "request");
    assert_eq!(line["fields"]["method"], "POST");
    assert_eq!(line["fields"]["route"], "/api/expense");
    assert_eq!(line["fields"]["status"], 401);
    assert!(
        line["fields"]["duration_ms"].as_f64().unwrap() > 0.0,
        "{line}"
    );
    assert!(line["timestamp"].is_string());
}

/// Signs `browser` in to the binary at `base` through the real flow.
async fn sign_in_to(idp: &MockIdp, base: &str, browser: &reqwest::Client) {
    let r = browser.get(format!("{base}/signin")).send().await.unwrap();
    let authorize = url::Url::parse(&location(&r)).unwrap();
    let nonce = query(&authorize, "nonce").unwrap();
    let state = query(&authorize, "state").unwrap();
    idp.token_answers_pkce(
        json!({
            "token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QifQ.slow.token",
            "id_token": idp.signer.sign(&idp.id_claims(&nonce)).unwrap(),
        }),
        query(&authorize, "code_challenge").unwrap(),
    )
    .await;
    let r = browser
        .get(format!("{base}/gettoken?code=c&state={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/mail");
}

/// An Inbox that answers after `delay`.
async fn slow_inbox(idp: &MockIdp, delay: Duration) {
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [{"subject": "Finished after SIGTERM"}]}))
                .set_delay(delay),
        )
        .mount(&idp.server)
        .await;
}

/// A connection of the test's own to the app's SQLite file, with a write
/// of its own in the write-ahead log. While it stays open, the app's
/// connection closing is not the last one, so SQLite does not fold the log
/// into the file by itself: only the app's own checkpoint at close can.
fn hold_the_store(data: &std::path::Path) -> (rusqlite::Connection, std::path::PathBuf) {
    let held = rusqlite::Connection::open(data.join("outlook-inbox.sqlite3")).unwrap();
    held.execute_batch(
        "CREATE TABLE held_by_the_test(x); INSERT INTO held_by_the_test VALUES (1);",
    )
    .unwrap();
    let wal = data.join("outlook-inbox.sqlite3-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the write went to the write-ahead log"
    );
    (held, wal)
}

/// Whether a brand-new connection (not a pooled one) gets an answer.
async fn new_connection_answers(base: &str) -> bool {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok()
}

/// Sends `signal` (`TERM`, `INT`) to `child`.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_refuses_new_ones_and_checkpoints_the_store() {
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = std::env::temp_dir().join(format!("oi-sigterm-{}", uuid::Uuid::new_v4().simple()));
    let child = registered(&idp, port)
        .env("DATA_DIR", &data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let (held, wal) = hold_the_store(&data);
    let browser = browser();
    sign_in_to(&idp, &base, &browser).await;
    // A slow Inbox: the request is in flight when SIGTERM arrives.
    slow_inbox(&idp, Duration::from_millis(2500)).await;
    let in_flight = tokio::spawn({
        let browser = browser.clone();
        let base = base.clone();
        async move { browser.get(format!("{base}/mail")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(new_connection_answers(&base).await);
    terminate(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // During the drain: the request is still in flight, and a new
    // connection is refused.
    assert!(!in_flight.is_finished(), "the drain did not wait");
    assert!(
        !new_connection_answers(&base).await,
        "a new connection was served during the drain"
    );
    let r = in_flight
        .await
        .unwrap()
        .expect("the request in flight was cut off");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Finished after SIGTERM"));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    // The store was closed after the last request: its log is folded into
    // the file although the test's connection is still open.
    let log = String::from_utf8_lossy(&out.stdout);
    let finished = log
        .find(r#"route="/mail" status=200"#)
        .expect("the request line");
    let closed = log
        .find("decision store closed")
        .expect("the store was not closed");
    assert!(finished < closed, "{log}");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the write-ahead log still holds pages"
    );
    let rows: i64 = held
        .query_row("SELECT count(*) FROM held_by_the_test", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    drop(held);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn sigint_stops_without_waiting_for_requests_but_still_checkpoints_the_store() {
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data = std::env::temp_dir().join(format!("oi-sigint-{}", uuid::Uuid::new_v4().simple()));
    let child = registered(&idp, port)
        .env("DATA_DIR", &data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let (held, wal) = hold_the_store(&data);
    let browser = browser();
    sign_in_to(&idp, &base, &browser).await;
    slow_inbox(&idp, Duration::from_secs(20)).await;
    let in_flight = tokio::spawn({
        let browser = browser.clone();
        let base = base.clone();
        async move { browser.get(format!("{base}/mail")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    signal(&child, "INT");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // The process ended while its request was still waiting upstream.
    assert!(
        in_flight.await.unwrap().is_err(),
        "SIGINT waited for the request in flight"
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("decision store closed"), "{log}");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the write-ahead log still holds pages"
    );
    drop(held);
    let _ = std::fs::remove_dir_all(&data);
}

/// The drain is capped at 25 s, inside the 30 s Container Apps and
/// Kubernetes allow before SIGKILL: a request that would take a minute (here
/// a notification body sent a byte at a time) does not hold the stop. (This
/// test waits the 25 s.)
#[tokio::test]
async fn the_drain_ends_after_25_seconds_whatever_is_in_flight() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    assert_eq!(outlook_inbox::startup::DRAIN, Duration::from_secs(25));
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = registered(&idp, port)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(
        b"POST /notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    let (mut read, mut write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..180 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stopped = std::time::Instant::now();
    terminate(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let took = stopped.elapsed();
    assert!(out.status.success(), "{:?}", out.status);
    // It waited for the request (the drain), then gave up on it: the
    // process ended long before the body would have been complete (90 s).
    assert!(took >= Duration::from_secs(24), "stopped after {took:?}");
    assert!(took < Duration::from_secs(60), "stopped after {took:?}");
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    trickle.abort();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("decision store closed"), "{log}");
}

/// One press of `/api/expense` on the binary at `base`.
async fn press_binary(base: &str, token: &str, body: Value, request_id: &str) -> u16 {
    browser()
        .post(format!("{base}/api/expense"))
        .bearer_auth(token)
        .header("Action-Request-Id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every action outcome, a store that cannot be written, failed and timed-out
/// upstream calls of both services, a method no route knows: each has its
/// series. And the sign-in and the Inbox leave no code, secret, token or
/// cookie in the log, even at `debug`.
#[tokio::test]
async fn metrics_count_every_outcome_store_errors_upstream_failures_and_logs_hold_no_secret() {
    use outlook_inbox::store::{Backend, NewExpense, Store, sqlite::SqliteStore};
    let idp = MockIdp::start().await;
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let data = std::env::temp_dir().join(format!("oi-outcomes-{}", uuid::Uuid::new_v4().simple()));
    let child = registered(&idp, port)
        .env("DATA_DIR", &data)
        .env("RUST_LOG", "debug")
        .env("METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
        .env("ACTION_AUDIENCE", format!("{APP_ID_URI},{CLIENT_ID}"))
        // SharePoint on a port nothing listens on: an upstream `error`.
        .env(
            "SHAREPOINT_SITE",
            format!("http://127.0.0.1:{}/sites/team", free_port()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;

    // Two expenses for Megan, written beside the running app.
    let store = Store::new(Backend::Sqlite(SqliteStore::open(&data).unwrap()));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let e = store
            .create_expense(NewExpense {
                amount_cents: 1_200,
                currency: "EUR".into(),
                submitter: "Megan Bowen".into(),
                purpose: "Train".into(),
                recipient: Some("megan@contoso.com".into()),
                created_at: now(),
            })
            .await
            .unwrap();
        ids.push(e.id);
    }
    let now = now();
    let token = idp
        .signer
        .sign(&json!({
            "aud": APP_ID_URI, "iss": idp.v1_issuer(), "iat": now, "nbf": now, "exp": now + 3600,
            "appid": ACTIONS_APP_ID, "tid": TENANT, "upn": "megan@contoso.com", "ver": "1.0",
        }))
        .unwrap();
    let one = &ids[0];
    let approve = json!({"expenseId": one, "action": "approve"});
    assert_eq!(
        press_binary(&base, &token, approve.clone(), "r1").await,
        200
    );
    assert_eq!(
        press_binary(&base, &token, approve.clone(), "r2").await,
        200
    );
    let reject = json!({"expenseId": one, "action": "reject"});
    assert_eq!(press_binary(&base, &token, reject, "r3").await, 409);
    assert_eq!(press_binary(&base, &token, approve, "r1").await, 200);
    let unknown = json!({"expenseId": "EXP-2026-999999", "action": "approve"});
    assert_eq!(press_binary(&base, &token, unknown, "r4").await, 404);
    // The file locked by someone else for longer than the app waits.
    let locker = rusqlite::Connection::open(data.join("outlook-inbox.sqlite3")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let two = json!({"expenseId": ids[1], "action": "approve"});
    assert_eq!(press_binary(&base, &token, two, "r5").await, 503);
    locker.execute_batch("ROLLBACK").unwrap();

    // A method no route knows.
    let brew = browser()
        .request(
            reqwest::Method::from_bytes(b"BREW").unwrap(),
            format!("{base}/"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(brew.status(), 404);

    // Sign in (with a refresh token, so SharePoint is asked), then an Inbox
    // that answers 500 and one that answers too late.
    let browser = browser();
    let r = browser.get(format!("{base}/signin")).send().await.unwrap();
    let authorize = url::Url::parse(&location(&r)).unwrap();
    let nonce = query(&authorize, "nonce").unwrap();
    let state = query(&authorize, "state").unwrap();
    let code = "code-0f9d2c4e";
    let id_token = idp.signer.sign(&idp.id_claims(&nonce)).unwrap();
    idp.token_answers_pkce(
        json!({
            "token_type": "Bearer", "expires_in": 3599,
            "access_token": "eyJ0eXAiOiJKV1QifQ.access-5e1b.token",
            "refresh_token": "0.refresh-77c2", "id_token": id_token,
        }),
        query(&authorize, "code_challenge").unwrap(),
    )
    .await;
    Mock::given(wiremock::matchers::body_string_contains(
        "grant_type=refresh_token",
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer", "expires_in": 3599,
        "access_token": "sp-access-9a41", "refresh_token": "0.rotated-31f0",
    })))
    .mount(&idp.server)
    .await;
    let r = browser
        .get(format!("{base}/gettoken?code={code}&state={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/mail");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            let c = v.to_str().ok()?;
            Some(c.split(';').next()?.split_once('=')?.1.to_owned())
        })
        .filter(|v| v.len() > 20)
        .collect();
    assert!(!cookies.is_empty());
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&idp.server)
        .await;
    let r = browser.get(format!("{base}/mail")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(15)))
        .mount(&idp.server)
        .await;
    let r = browser.get(format!("{base}/mail")).send().await.unwrap();
    assert_eq!(r.status(), 504);

    let text = scrape(metrics_port).await;
    terminate(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    for outcome in [
        "approved",
        "already",
        "conflict",
        "repeated",
        "unknown_expense",
    ] {
        assert_eq!(
            count(&format!(
                r#"actions_total{{outcome="{outcome}",reason=""}}"#
            )),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(count("decision_store_errors_total"), 1.0);
    assert_eq!(
        count(r#"http_requests_total{method="OTHER",route="/",status="404"}"#),
        1.0
    );
    assert_eq!(
        count(r#"upstream_requests_total{service="sharepoint",status="error"}"#),
        1.0
    );
    assert_eq!(
        count(r#"upstream_requests_total{service="graph",status="500"}"#),
        1.0
    );
    assert_eq!(
        count(r#"upstream_requests_total{service="graph",status="timeout"}"#),
        1.0
    );

    // The log, at debug, of all of it: no code, secret, token or cookie.
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("/gettoken"), "the log is empty?\n{log}");
    let signature = token.rsplit('.').next().unwrap();
    let id_signature = id_token.rsplit('.').next().unwrap().to_owned();
    for secret in [
        code,
        CLIENT_SECRET,
        "access-5e1b",
        "refresh-77c2",
        "sp-access-9a41",
        "rotated-31f0",
        signature,
        &id_signature,
        &state,
        &nonce,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(cookies)
    {
        assert!(!log.contains(&secret), "{secret} is in the log:\n{log}");
    }
}

/// A `/healthz` that never answers (a hung instance) is unhealthy: the
/// check gives up after its 2 s and exits 1, it does not hang the probe.
#[tokio::test]
async fn healthcheck_exits_1_when_healthz_hangs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections, reads the request, never answers.
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Ok((socket, _)) = listener.accept() {
            kept.push(socket);
            std::thread::sleep(Duration::from_secs(20));
        }
    });
    let mut child = binary()
        .arg("healthcheck")
        .env("BIND", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    for _ in 0..150 {
        if let Some(status) = child.try_wait().unwrap() {
            code = status.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if code.is_none() {
        let _ = child.kill();
    }
    assert_eq!(code, Some(1), "the health check hung on a hung /healthz");
    drop(held);
}

/// Open live-Inbox streams do not hold the drain: SIGTERM ends them (the
/// browser's EventSource reconnects to another instance) and the process
/// stops at once instead of after 25 s.
#[tokio::test]
async fn sigterm_ends_live_inbox_streams_instead_of_waiting_for_them() {
    use futures_util::StreamExt as _;
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = registered(&idp, port)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let browser = browser();
    sign_in_to(&idp, &base, &browser).await;
    Mock::given(path("/v1.0/me/mailFolders/inbox/messages/delta"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [],
            "@odata.deltaLink": format!("{}/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=t", idp.uri()),
        })))
        .mount(&idp.server)
        .await;
    let r = browser
        .get(format!("{base}/mail/events"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let stopped = std::time::Instant::now();
    terminate(&child);
    // The stream ends (cleanly or cut), well before the drain's 25 s.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream was still open after 20 s");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
}
