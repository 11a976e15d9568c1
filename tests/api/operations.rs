//! What an operator relies on: the `healthcheck` subcommand, log formats,
//! and a graceful stop on SIGTERM (issue 12, part). These run the real
//! binary (`CARGO_BIN_EXE_outlook-inbox`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

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
    binary()
        .arg("healthcheck")
        .env("BIND", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
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

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let idp = MockIdp::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = binary()
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &base)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("AUTHORITY", format!("{}/common", idp.uri()))
        .env("MAIL_API_URL", format!("{}/v1.0", idp.uri()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let browser = browser();
    let mut ready = false;
    for _ in 0..200 {
        if browser
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the app did not start");
    // Sign in through the real flow.
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
    // A slow Inbox: the request is in flight when SIGTERM arrives.
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"value": [{"subject": "Finished after SIGTERM"}]}))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&idp.server)
        .await;
    let in_flight = tokio::spawn({
        let browser = browser.clone();
        let base = base.clone();
        async move { browser.get(format!("{base}/mail")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let r = in_flight
        .await
        .unwrap()
        .expect("the request in flight was cut off");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Finished after SIGTERM"));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // And it stopped taking new requests.
    assert!(browser.get(format!("{base}/healthz")).send().await.is_err());
}
