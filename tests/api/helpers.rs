//! Spawning the app, a mock identity platform, and a browser-like client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outlook_inbox::jwt::signer::RsaSigner;
use outlook_inbox::settings::Settings;
use outlook_inbox::startup::{AppState, Application};
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_ID: &str = "6cb04018-a3f5-46a7-b995-940c78f5aef3";
pub const CLIENT_SECRET: &str = "test-only-secret";
pub const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    /// The stand-in services, in demo mode.
    pub demo: Option<Arc<outlook_inbox::demo::Demo>>,
}

/// A client that keeps cookies and does not follow redirects, like a careful browser test.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn settings(vars: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("BIND".into())
        .or_insert_with(|| "127.0.0.1:0".into());
    // Each app gets its own embedded decision store.
    map.entry("DATA_DIR".into()).or_insert_with(|| {
        std::env::temp_dir()
            .join(format!(
                "outlook-inbox-test-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .to_string_lossy()
            .into_owned()
    });
    let mut s = Settings::from_lookup(|k| map.get(k).cloned()).unwrap();
    s.upstream_timeout = Duration::from_secs(2);
    s
}

/// The app in demo mode (the embedded stand-in services).
pub async fn spawn_app() -> TestApp {
    spawn_with(settings(&[])).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let demo = app.demo();
    tokio::spawn(app.run_until_stopped());
    // Discovery (v2 and v1) and the keys load in the background from the
    // start; tests begin where a deployment sends traffic: once the app says
    // it is ready. An unreachable authority (some tests want one) just ends
    // the wait.
    state.ready.wait(Duration::from_secs(3)).await;
    TestApp {
        address,
        client: browser(),
        state,
        demo,
    }
}

impl TestApp {
    /// The same app, seen from a second browser (its own cookies).
    pub fn another_browser(&self) -> TestApp {
        TestApp {
            address: self.address.clone(),
            client: browser(),
            state: self.state.clone(),
            demo: self.demo.clone(),
        }
    }

    /// Builds and starts the app without waiting for it to be ready (tests
    /// of start-up itself).
    pub async fn start_unready(settings: Settings) -> TestApp {
        let built = Application::build(settings).await.expect("the app builds");
        let app = TestApp {
            address: format!("http://127.0.0.1:{}", built.port()),
            client: browser(),
            state: built.state(),
            demo: built.demo(),
        };
        tokio::spawn(built.run_until_stopped());
        app
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.address, path)
        }
    }

    /// A POST as one of the app's own pages sends it (its `Origin`).
    pub fn post_from_page(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("Origin", self.address.as_str())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Starts a sign-in and returns the authorization URL it redirects to.
    pub async fn start_sign_in(&self) -> url::Url {
        let r = self.get("/signin").await;
        assert_eq!(r.status(), 302);
        url::Url::parse(&location(&r)).unwrap()
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn body(r: reqwest::Response) -> String {
    r.text().await.unwrap()
}

/// A JWKS endpoint whose keys can be changed mid-test and whose hits are counted.
#[derive(Clone)]
pub struct KeysEndpoint {
    pub keys: Arc<Mutex<Value>>,
    pub hits: Arc<AtomicUsize>,
    /// When set, answers this status with a garbage body.
    pub broken: Arc<Mutex<Option<u16>>>,
    /// When set, every answer takes this long.
    pub delay: Arc<Mutex<Option<Duration>>>,
}

impl Respond for KeysEndpoint {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay.lock().unwrap().unwrap_or_default();
        if let Some(status) = *self.broken.lock().unwrap() {
            return ResponseTemplate::new(status)
                .set_body_string("<html>gateway error</html>")
                .set_delay(delay);
        }
        ResponseTemplate::new(200)
            .set_body_json(self.keys.lock().unwrap().clone())
            .set_delay(delay)
    }
}

impl KeysEndpoint {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn publish(&self, signers: &[&RsaSigner]) {
        *self.keys.lock().unwrap() =
            json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() });
    }
}

/// The v2 discovery document of the mock identity platform at `uri`.
pub fn discovery_document(uri: &str) -> Value {
    json!({
        "issuer": format!("{uri}/{{tenantid}}/v2.0"),
        "authorization_endpoint": format!("{uri}/common/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{uri}/common/oauth2/v2.0/token"),
        "jwks_uri": format!("{uri}/common/discovery/v2.0/keys"),
        "end_session_endpoint": format!("{uri}/common/oauth2/v2.0/logout"),
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

/// A mock Microsoft identity platform (and mail API) on its own port.
pub struct MockIdp {
    pub server: MockServer,
    pub signer: RsaSigner,
    pub keys: KeysEndpoint,
}

impl MockIdp {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let signer = RsaSigner::generate("key-1").unwrap();
        let uri = server.uri();
        Mock::given(method("GET"))
            .and(path("/common/v2.0/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery_document(&uri)))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/common/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": format!("{uri}/sts/{{tenantid}}/"),
                "jwks_uri": format!("{uri}/common/discovery/keys"),
            })))
            .mount(&server)
            .await;
        let keys = KeysEndpoint {
            keys: Arc::new(Mutex::new(json!({"keys": [signer.jwk()]}))),
            hits: Arc::new(AtomicUsize::new(0)),
            broken: Arc::new(Mutex::new(None)),
            delay: Arc::new(Mutex::new(None)),
        };
        Mock::given(method("GET"))
            .and(path("/common/discovery/v2.0/keys"))
            .respond_with(keys.clone())
            .mount(&server)
            .await;
        Self {
            server,
            signer,
            keys,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn issuer(&self) -> String {
        format!("{}/{TENANT}/v2.0", self.uri())
    }

    pub fn v1_issuer(&self) -> String {
        format!("{}/sts/{TENANT}/", self.uri())
    }

    /// Settings for the app against this mock (a real registration, not demo mode).
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let authority = format!("{}/common", self.uri());
        let mail = format!("{}/v1.0", self.uri());
        let mut vars = vec![
            ("CLIENT_ID", CLIENT_ID),
            ("CLIENT_SECRET", CLIENT_SECRET),
            ("AUTHORITY", authority.as_str()),
            ("MAIL_API_URL", mail.as_str()),
        ];
        vars.extend_from_slice(extra);
        settings(&vars)
    }

    /// Valid ID token claims for `nonce`.
    pub fn id_claims(&self, nonce: &str) -> Value {
        let now = now();
        json!({
            "ver": "2.0", "iss": self.issuer(), "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "aud": CLIENT_ID, "exp": now + 3600, "iat": now, "nbf": now,
            "name": "Abe <b>Lincoln</b>", "preferred_username": "AbeLi@contoso.com",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": TENANT, "nonce": nonce,
        })
    }

    /// Makes the token endpoint answer `body` (once per call).
    pub async fn token_answers(&self, body: Value) {
        Mock::given(method("POST"))
            .and(path("/common/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .up_to_n_times(1)
            .mount(&self.server)
            .await;
    }

    /// Like the real token endpoint: answers `body` (once) only to a code
    /// redemption whose `code_verifier` hashes (S256) to `challenge`.
    pub async fn token_answers_pkce(&self, body: Value, challenge: String) {
        Mock::given(method("POST"))
            .and(path("/common/oauth2/v2.0/token"))
            .and(PkceVerifier(challenge))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .up_to_n_times(1)
            .mount(&self.server)
            .await;
    }

    /// Signs in through the app with an ID token made from the request's nonce.
    pub async fn sign_in(
        &self,
        app: &TestApp,
        id_token: impl FnOnce(&str) -> String,
        token_fields: Value,
    ) -> reqwest::Response {
        let authorize = app.start_sign_in().await;
        let state = query(&authorize, "state").unwrap();
        let nonce = query(&authorize, "nonce").unwrap();
        let challenge = query(&authorize, "code_challenge").unwrap();
        let mut answer = json!({
            "token_type": "Bearer", "scope": "User.Read Mail.Read", "expires_in": 3599,
            "ext_expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6Im9wYXF1ZSJ9.access.token",
            "refresh_token": "0.refresh", "id_token": id_token(&nonce),
        });
        for (k, v) in token_fields.as_object().cloned().unwrap_or_default() {
            answer[k] = v;
        }
        self.token_answers_pkce(answer, challenge).await;
        app.get(&format!(
            "/gettoken?code=test-code&state={state}&session_state=x"
        ))
        .await
    }

    /// Signs in with a valid ID token and checks it worked.
    /// Signs in with a valid ID token; `token_fields` change the token endpoint's answer.
    pub async fn sign_in_valid(&self, app: &TestApp, token_fields: Value) -> reqwest::Response {
        self.sign_in(
            app,
            |nonce| self.signer.sign(&self.id_claims(nonce)).unwrap(),
            token_fields,
        )
        .await
    }

    /// Signs in with a valid ID token and checks it worked.
    pub async fn sign_in_ok(&self, app: &TestApp) {
        let r = self.sign_in_valid(app, json!({})).await;
        assert_eq!(r.status(), 302, "{}", body(r).await);
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl TestApp {
    /// Starts the silent sign-in that an expired token leads to.
    pub async fn start_sign_in_silently(&self) -> url::Url {
        let r = self.get("/signin?prompt=none").await;
        assert_eq!(r.status(), 302);
        url::Url::parse(&location(&r)).unwrap()
    }
}

/// A private Redis server on a free loopback port, without persistence,
/// stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// Where an append-only file keeps the data across restarts, if it does.
    keeps_in: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            child: None,
            keeps_in: None,
        };
        server.restart();
        server
    }

    /// A server that keeps its data across [`restart`](Self::restart): every
    /// write is in its append-only file before it answers.
    pub fn start_persistent() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("oi-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            child: None,
            keeps_in: Some(dir),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(match &self.keeps_in {
                Some(dir) => vec![
                    "--appendonly".to_owned(),
                    "yes".to_owned(),
                    "--appendfsync".to_owned(),
                    "always".to_owned(),
                    "--dir".to_owned(),
                    dir.to_string_lossy().into_owned(),
                ],
                None => vec!["--appendonly".to_owned(), "no".to_owned()],
            })
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for the tests (apt-get install -y redis-server)",
            );
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.keeps_in {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The Redis the tests share: `OUTLOOK_INBOX_TEST_REDIS_URL` (set by `.ci/run`),
/// or a private server started for this test.
pub fn test_redis() -> (String, Option<RedisServer>) {
    match std::env::var("OUTLOOK_INBOX_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
    }
}

/// Polls `path` until it answers `status` (for a dependency coming back), at most ~10 s.
pub async fn eventually(app: &TestApp, path: &str, status: u16) -> bool {
    for _ in 0..100 {
        if app.get(path).await.status().as_u16() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Walks the demo authorize page as a person would and returns the callback URL.
pub async fn pick_person(app: &TestApp, person: usize) -> String {
    let authorize = app.start_sign_in().await;
    let page = body(app.client.get(authorize.as_str()).send().await.unwrap()).await;
    assert!(page.contains("Pick an account"));
    let mut form: Vec<(String, String)> = Vec::new();
    for input in page.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let end = start + input[start..].find('"').unwrap();
            html_unescape(&input[start..end])
        };
        form.push((attr("name"), attr("value")));
    }
    form.push(("choice".into(), person.to_string()));
    let r = app
        .client
        .post(authorize.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    location(&r)
}

fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
}

pub async fn sign_in_as(app: &TestApp, person: usize) {
    let callback = pick_person(app, person).await;
    let r = app.get(&callback).await;
    assert_eq!(r.status(), 302, "{}", body(r).await);
}

/// Everything the app logs during the tests, in one buffer (the subscriber is
/// global because the app logs from its worker threads). Tests find their own
/// lines by a value unique to them.
pub fn captured_logs() -> String {
    use std::sync::OnceLock;
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Matches a code redemption whose `code_verifier` is the PKCE S256 preimage
/// of the `code_challenge` the app sent to the authorize endpoint.
pub struct PkceVerifier(pub String);

impl wiremock::Match for PkceVerifier {
    fn matches(&self, request: &Request) -> bool {
        use base64::Engine as _;
        let verifier = url::form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "code_verifier")
            .map(|(_, v)| v.into_owned());
        verifier.is_some_and(|v| {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref()) == self.0
        })
    }
}
