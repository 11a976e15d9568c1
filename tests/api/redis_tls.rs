//! `rediss://`: sessions and decisions over TLS to a private `redis-server`
//! whose certificates are made for the test (test-only keys, never stored).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outlook_inbox::store::{DecisionStore as _, NewExpense};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

const PASSWORD: &str = "test-only-redis-password";
const SHARED_KEY: &str =
    "dGVzdC1vbmx5LXNlc3Npb24ta2V5LWZvci1vdXRsb29rLWluYm94LWludGVncmF0aW9uLXRlc3RzLTEyMzQ1Njc4";

/// A CA made now: its PEM file, and an issuer for server certificates.
fn make_ca(dir: &std::path::Path, name: &str) -> (PathBuf, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("outlook-inbox test CA {name}"));
    let cert = params.self_signed(&key).unwrap();
    let file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&file, cert.pem()).unwrap();
    (file, Issuer::new(params, key))
}

/// `redis-server` listening only on a TLS port, with a password, and the CA
/// that signed its certificate plus another CA that did not.
struct TlsRedis {
    port: u16,
    child: Child,
    ca: PathBuf,
    other_ca: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TlsRedis {
    fn start() -> Self {
        Self::start_named(&["127.0.0.1", "localhost"])
    }

    /// A server whose certificate (from the good CA) names only `names`.
    fn start_named(names: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "outlook-inbox-tls-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, issuer) = make_ca(&dir, "good");
        let (other_ca, _) = make_ca(&dir, "other");
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&cert_file)
            .arg("--tls-key-file")
            .arg(&key_file)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for the tests (apt-get install -y redis-server)",
            );
        let mut child = child;
        let mut open = false;
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                open = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !open {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not open its TLS port {port} (is it built with TLS?)");
        }
        Self {
            port,
            child,
            ca,
            other_ca,
            _dir: TempDir(dir),
        }
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_settings(
    idp: &MockIdp,
    url: &str,
    ca: &std::path::Path,
) -> outlook_inbox::settings::Settings {
    idp.settings(&[
        ("SESSION_STORE", "redis"),
        ("DECISION_STORE", "redis"),
        ("REDIS_URL", url),
        ("REDIS_CA_FILE", ca.to_str().unwrap()),
        ("SESSION_KEY", SHARED_KEY),
    ])
}

/// The start-up line about this Redis (the tests share one log).
async fn redis_line(port: u16) -> String {
    let target = format!("127.0.0.1:{port} (TLS)");
    for _ in 0..100 {
        if let Some(line) = captured_logs().lines().find(|l| {
            l.contains(&target) && (l.contains("Redis answers") || l.contains("REDIS_URL"))
        }) {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no start-up line about {target}:\n{}", captured_logs());
}

#[tokio::test]
async fn sessions_and_decisions_work_over_tls_with_a_private_ca() {
    captured_logs();
    let redis = TlsRedis::start();
    let idp = MockIdp::start().await;
    let app = spawn_with(tls_settings(&idp, &redis.url(PASSWORD), &redis.ca)).await;

    let line = redis_line(redis.port).await;
    assert!(
        line.contains("INFO") && line.contains("Redis answers"),
        "{line}"
    );
    assert!(!line.contains(PASSWORD));
    assert_eq!(app.get("/healthz").await.status(), 200);

    // A session kept in Redis over TLS: sign in, then read the Inbox with it.
    Mock::given(path("/v1.0/me/mailfolders/inbox/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"subject": "Sent over TLS", "receivedDateTime": "2026-11-20T09:14:00Z",
             "from": {"emailAddress": {"name": "Ann", "address": "ann@contoso.com"}}}
        ]})))
        .mount(&idp.server)
        .await;
    let r = idp.sign_in_valid(&app, json!({})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/mail");
    let r = app.get("/mail").await;
    assert_eq!(r.status(), 200);
    assert!(body(r).await.contains("Sent over TLS"));

    // The decision store on the same TLS connection pool.
    let created = app
        .state
        .store
        .create_expense(NewExpense {
            amount_cents: 1_250,
            currency: "EUR".into(),
            submitter: "Megan Bowen".into(),
            purpose: "Train ticket".into(),
            recipient: None,
            created_at: now(),
        })
        .await
        .unwrap();
    let (found, decided) = app.state.store.expense(&created.id).await.unwrap().unwrap();
    assert_eq!(found.purpose, "Train ticket");
    assert!(decided.is_none());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_with_a_clear_line_and_503_pages() {
    captured_logs();
    let redis = TlsRedis::start();
    let idp = MockIdp::start().await;
    let app = spawn_with(tls_settings(&idp, &redis.url(PASSWORD), &redis.other_ca)).await;

    let line = redis_line(redis.port).await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("REDIS_URL: cannot use Redis: the server's TLS certificate is not trusted"),
        "{line}"
    );
    assert!(line.contains("REDIS_CA_FILE"), "{line}");
    assert!(!line.contains(PASSWORD));

    // Pages answer at once with 503, not after a hang (the client gives up after 10 s).
    let r = app.get("/signin").await;
    assert_eq!(r.status(), 503);
    assert!(body(r).await.contains("Sign-in is unavailable for now"));
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_that_does_not_print_it() {
    captured_logs();
    let redis = TlsRedis::start();
    let idp = MockIdp::start().await;
    let wrong = "test-only-wrong-password";
    let app = spawn_with(tls_settings(&idp, &redis.url(wrong), &redis.ca)).await;

    let line = redis_line(redis.port).await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("Redis refused the password in REDIS_URL"),
        "{line}"
    );
    assert!(!line.contains(wrong) && !line.contains(PASSWORD), "{line}");
    assert_eq!(app.get("/signin").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 503);
    // Not in that line, nor in any other line of any test.
    let log = captured_logs();
    assert!(!log.contains(wrong) && !log.contains(PASSWORD));
}

/// A certificate from the trusted CA, but for another host name: refused
/// (rustls checks the name; there is no switch to turn that off).
#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused() {
    captured_logs();
    let redis = TlsRedis::start_named(&["redis.other.example"]);
    let idp = MockIdp::start().await;
    let app = spawn_with(tls_settings(&idp, &redis.url(PASSWORD), &redis.ca)).await;
    let line = redis_line(redis.port).await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("REDIS_URL: cannot use Redis"), "{line}");
    assert!(!line.contains("Redis answers"), "{line}");
    assert_eq!(app.get("/signin").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 503);
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_stops_the_start_naming_the_variable() {
    let redis = TlsRedis::start();
    let idp = MockIdp::start().await;
    let bad = std::env::temp_dir().join(format!("not-a-ca-{}.txt", uuid::Uuid::new_v4()));
    std::fs::write(&bad, "hello").unwrap();
    let error =
        outlook_inbox::startup::Application::build(tls_settings(&idp, &redis.url(PASSWORD), &bad))
            .await
            .err()
            .expect("the start fails");
    let _ = std::fs::remove_file(&bad);
    let message = error.to_string();
    assert!(message.starts_with("REDIS_CA_FILE"), "{message}");
    assert!(message.contains("no PEM certificate"), "{message}");
}
