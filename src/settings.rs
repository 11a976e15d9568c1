//! Settings, read once at start-up from the environment (and `.env`).
//!
//! Every variable of the design's configuration table is parsed here into a
//! typed value. A bad value is a one-line error naming the variable; nothing
//! later in the program parses configuration again.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use url::Url;

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent to its rightful recipient.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which mail API the app reads the Inbox from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailApi {
    /// Microsoft Graph v1.0 (camelCase fields).
    Graph,
    /// The retired Outlook REST API v2.0 shape (PascalCase fields).
    Outlook,
}

/// Where the session lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStore {
    Cookie,
    Redis,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where expense decisions are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionStoreKind {
    /// An embedded SQLite file under `DATA_DIR`.
    Sqlite,
    /// Redis at `REDIS_URL` (several instances).
    Redis,
}

/// How the open Inbox learns of new mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notifications {
    /// Graph change notifications to `{PUBLIC_URL}/notifications`.
    Webhook,
    /// A delta query every 30 s per person with an open Inbox.
    Poll,
    /// No live Inbox.
    Off,
}

/// Which Actionable Message token scheme `/api/expense` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionScheme {
    /// Entra ID access tokens (current since 2026-06-08).
    Entra,
    /// Retired EAT tokens from `substrate.office.com`.
    Legacy,
}

/// The 64-byte key that signs and encrypts the session cookie.
#[derive(Clone)]
pub struct SessionKey {
    bytes: Vec<u8>,
    /// True when no `SESSION_KEY` was given and a random one was made.
    pub generated: bool,
}

impl SessionKey {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn random() -> Self {
        let mut bytes = vec![0u8; 64];
        // The OS generator (getrandom): aws-lc's own generator starts with a
        // CPU-jitter entropy test that took 40 ms of every start.
        if getrandom::fill(&mut bytes).is_err() {
            // The system RNG failing is exceptional; fall back to v4 UUIDs (also from the OS RNG).
            bytes = (0..4)
                .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
                .collect();
        }
        Self {
            bytes,
            generated: true,
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// The app's complete configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    /// The URL people reach; without a trailing slash when rendered.
    pub public_url: Url,
    /// Whether `PUBLIC_URL` was given (when not, a test on port 0 gets the bound port).
    pub public_url_explicit: bool,
    /// True when no `CLIENT_ID` is set: the embedded stand-in services are used.
    pub demo: bool,
    /// `DEMO=on`: demo mode on a non-loopback `BIND` is meant.
    pub demo_on_network: bool,
    pub client_id: String,
    pub client_secret: Secret,
    /// Base of the identity platform; `None` in demo mode until the port is known.
    pub authority: Option<Url>,
    pub scopes: Vec<String>,
    pub mail_api: MailApi,
    /// `None` in demo mode until the port is known.
    pub mail_api_url: Option<Url>,
    pub session_key: SessionKey,
    pub session_store: SessionStore,
    /// May carry a password (`rediss://:password@host:port`).
    pub redis_url: Secret,
    /// A PEM CA trusted for `rediss://` besides the usual roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    pub action_scheme: ActionScheme,
    pub action_audiences: Vec<String>,
    pub action_issuer: String,
    pub action_keys_url: Url,
    pub action_tenants: Vec<String>,
    pub action_senders: Vec<String>,
    pub action_performers: Vec<String>,
    pub sharepoint_site: Option<Url>,
    pub decision_store: DecisionStoreKind,
    pub log_format: LogFormat,
    /// Where `/metrics` is served (unset: no metrics).
    pub metrics_bind: Option<SocketAddr>,
    /// The embedded store's folder.
    pub data_dir: std::path::PathBuf,
    /// The provider id from the Actionable Email Developer Dashboard; cards
    /// can be sent when set (always in demo mode).
    pub action_originator: Option<String>,
    /// Refuse actions whose body carries no ticket.
    pub action_require_ticket: bool,
    /// How the open Inbox learns of new mail (`Off` with the Outlook API).
    pub notifications: Notifications,
    /// Live Inbox streams one instance holds at most.
    pub live_max_streams: usize,
    /// How often polling asks the delta query (30 s; tests shorten it).
    pub poll_period: Duration,
    /// How long the demo's "have someone send me a message" takes (3 s).
    pub demo_arrival_delay: Duration,
    /// How often an open live-Inbox stream says it is still there (25 s;
    /// a client that went away is noticed at the next one).
    pub live_heartbeat: Duration,
    /// Timeout for every outbound HTTP call (10 s; tests shorten it).
    pub upstream_timeout: Duration,
    /// An unknown `kid` refetches a key set at most this often (60 s; tests shorten it).
    pub jwks_min_refetch: Duration,
    /// A key set older than this is refreshed (one hour).
    pub jwks_max_age: Duration,
    /// Keys older than this are not used when they cannot be refreshed (24 hours).
    pub jwks_max_stale: Duration,
    /// How often discovery and keys are refreshed in the background (55 minutes).
    pub refresh_period: Duration,
}

/// A start-up configuration error: one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Loads `.env` into the environment. A missing file is normal; a malformed
/// one is an error worth stopping for.
fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(bad(".env", e.to_string())),
    }
}

/// A variable's value without surrounding spaces; empty counts as unset.
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `BIND`, or 127.0.0.1:8000 when unset.
fn parse_bind(value: Option<String>) -> Result<SocketAddr, ConfigError> {
    match value {
        Some(v) => v.parse::<SocketAddr>().map_err(|_| {
            bad(
                "BIND",
                format!("`{v}` is not an address like 127.0.0.1:8000"),
            )
        }),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 8000))),
    }
}

/// The retired EAT key set (legacy scheme), unless `ACTION_KEYS_URL` says otherwise.
pub const DEFAULT_ACTION_KEYS_URL: &str = "https://substrate.office.com/sts/common/discovery/keys";

/// The provider id demo mode sends cards as.
pub const DEMO_ORIGINATOR: &str = "00000000-0000-4000-8000-0000000de0a0";

/// The client id the demo stand-in registers for the app.
pub const DEMO_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000d3e0";

impl Settings {
    /// Reads the process environment (after loading `.env`, if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        load_dotenv()?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Only `BIND` (after loading `.env`, if present): all the `healthcheck`
    /// subcommand needs, so a probe never depends on secrets or on the rest
    /// of the configuration.
    pub fn bind_from_env() -> Result<SocketAddr, ConfigError> {
        load_dotenv()?;
        parse_bind(given(std::env::var("BIND").ok()))
    }

    /// Builds settings from any variable lookup (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| given(get(name));

        let bind = parse_bind(var("BIND"))?;

        let metrics_bind = match var("METRICS_BIND") {
            None => None,
            Some(v) => {
                let addr = v.parse::<SocketAddr>().map_err(|_| {
                    bad(
                        "METRICS_BIND",
                        format!("`{v}` is not an address like 127.0.0.1:9000"),
                    )
                })?;
                let same_port = addr.port() != 0 && addr.port() == bind.port();
                let overlapping = addr.ip() == bind.ip()
                    || addr.ip().is_unspecified()
                    || bind.ip().is_unspecified();
                if same_port && overlapping {
                    return Err(bad(
                        "METRICS_BIND",
                        "must not be the public port (BIND): metrics are for operators only",
                    ));
                }
                Some(addr)
            }
        };

        let public_url_explicit = var("PUBLIC_URL").is_some();
        let public_url = parse_base_url(
            "PUBLIC_URL",
            &var("PUBLIC_URL").unwrap_or_else(|| "http://localhost:8000".into()),
        )?;

        let demo_on = match var("DEMO").as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(bad("DEMO", format!("`{other}` is not `on` or `off`"))),
        };
        let (demo, client_id, client_secret) = match (var("CLIENT_ID"), var("CLIENT_SECRET")) {
            // A public server never falls into demo mode: anyone could sign in
            // as a demo person and approve expenses through the stand-in.
            (None, None) if !is_loopback(&public_url) => {
                return Err(bad(
                    "CLIENT_ID",
                    format!(
                        "is not set, and demo mode runs only when PUBLIC_URL is on this machine (it is `{}`); set CLIENT_ID and CLIENT_SECRET",
                        public_url.as_str().trim_end_matches('/')
                    ),
                ));
            }
            // Nor does a server listening on the network, unless that is meant
            // (a container whose port is published on purpose).
            (None, None) if !bind.ip().is_loopback() && !demo_on => {
                return Err(bad(
                    "BIND",
                    format!(
                        "is {bind}, which other machines can reach, and CLIENT_ID is not set: demo mode there would let anyone on the network sign in as a demo person; set CLIENT_ID and CLIENT_SECRET, or DEMO=on if serving the demo on the network is meant"
                    ),
                ));
            }
            (None, None) => (
                true,
                DEMO_CLIENT_ID.to_owned(),
                Secret::new(uuid::Uuid::new_v4().simple().to_string()),
            ),
            (Some(id), Some(secret)) => (false, id, Secret::new(secret)),
            (Some(_), None) => {
                return Err(bad("CLIENT_SECRET", "is required when CLIENT_ID is set"));
            }
            (None, Some(_)) => {
                return Err(bad("CLIENT_ID", "is required when CLIENT_SECRET is set"));
            }
        };

        let mail_api = match var("MAIL_API").as_deref() {
            None | Some("graph") => MailApi::Graph,
            Some("outlook") => MailApi::Outlook,
            Some(other) => {
                return Err(bad(
                    "MAIL_API",
                    format!("`{other}` is not `graph` or `outlook`"),
                ));
            }
        };

        let authority = match var("AUTHORITY") {
            Some(v) if demo => {
                return Err(bad(
                    "AUTHORITY",
                    format!(
                        "`{v}` is set but CLIENT_ID is not; set both (or neither, for demo mode)"
                    ),
                ));
            }
            Some(v) => Some(secure(parse_base_url("AUTHORITY", &v)?, "AUTHORITY")?),
            None if demo => None,
            None => Some(parse_base_url(
                "AUTHORITY",
                "https://login.microsoftonline.com/common",
            )?),
        };

        let mail_api_url = match var("MAIL_API_URL") {
            Some(v) => Some(secure(parse_base_url("MAIL_API_URL", &v)?, "MAIL_API_URL")?),
            None if demo => None,
            None => Some(parse_base_url(
                "MAIL_API_URL",
                default_mail_api_url(mail_api),
            )?),
        };

        let action_originator = var("ACTION_ORIGINATOR");
        if let Some(o) = &action_originator
            && !o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(
                "ACTION_ORIGINATOR",
                "is not a provider id (letters, digits and hyphens, from the Actionable Email Developer Dashboard)",
            ));
        }
        let scopes = match var("SCOPES") {
            Some(v) => v.split_whitespace().map(str::to_owned).collect(),
            None => {
                let mut scopes = default_scopes(mail_api);
                // Sending cards needs Mail.Send; asked for only when cards are sent (graph only).
                if (action_originator.is_some() || demo) && mail_api == MailApi::Graph {
                    scopes.push("Mail.Send".to_owned());
                }
                scopes
            }
        };
        if !scopes.iter().any(|s| s == "openid") {
            return Err(bad(
                "SCOPES",
                "must include `openid` (the app verifies the ID token)",
            ));
        }

        let session_key = match var("SESSION_KEY") {
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .map_err(|_| bad("SESSION_KEY", "is not valid base64"))?;
                if bytes.len() < 64 {
                    return Err(bad(
                        "SESSION_KEY",
                        format!("decodes to {} bytes; at least 64 are needed", bytes.len()),
                    ));
                }
                SessionKey {
                    bytes,
                    generated: false,
                }
            }
            None => SessionKey::random(),
        };

        let session_store = match var("SESSION_STORE").as_deref() {
            None | Some("cookie") => SessionStore::Cookie,
            Some("redis") => SessionStore::Redis,
            Some(other) => {
                return Err(bad(
                    "SESSION_STORE",
                    format!("`{other}` is not `cookie` or `redis`"),
                ));
            }
        };

        let redis_url = var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        // The URL may hold a password: errors never quote it.
        let tls = match Url::parse(&redis_url) {
            Ok(u) if u.fragment().is_some() => {
                return Err(bad(
                    "REDIS_URL",
                    "must not have a `#` part (`#insecure` would turn certificate checks off)",
                ));
            }
            Ok(u) if u.scheme() == "rediss" => true,
            Ok(u) if u.scheme() == "redis" => false,
            _ => return Err(bad("REDIS_URL", "is not a redis:// or rediss:// URL")),
        };
        let redis_ca_file = var("REDIS_CA_FILE").map(std::path::PathBuf::from);
        if redis_ca_file.is_some() && !tls {
            return Err(bad(
                "REDIS_CA_FILE",
                "is set but REDIS_URL is not a rediss:// (TLS) URL",
            ));
        }
        let redis_url = Secret::new(redis_url);

        let action_scheme = match var("ACTION_TOKEN").as_deref() {
            None | Some("entra") => ActionScheme::Entra,
            Some("legacy") => ActionScheme::Legacy,
            Some(other) => {
                return Err(bad(
                    "ACTION_TOKEN",
                    format!("`{other}` is not `entra` or `legacy`"),
                ));
            }
        };

        let action_audiences = match var("ACTION_AUDIENCE") {
            Some(v) => list(&v),
            None => match action_scheme {
                ActionScheme::Entra => vec![client_id.clone()],
                ActionScheme::Legacy => vec![public_url.as_str().trim_end_matches('/').to_owned()],
            },
        };
        if action_audiences.is_empty() {
            return Err(bad("ACTION_AUDIENCE", "lists no audience"));
        }

        let action_issuer =
            var("ACTION_ISSUER").unwrap_or_else(|| "https://substrate.office.com/sts/".into());
        let action_keys_url = secure(
            parse_url(
                "ACTION_KEYS_URL",
                &var("ACTION_KEYS_URL").unwrap_or_else(|| DEFAULT_ACTION_KEYS_URL.into()),
            )?,
            "ACTION_KEYS_URL",
        )?;

        let action_tenants = var("ACTION_TENANTS").map(|v| list(&v)).unwrap_or_default();
        for t in &action_tenants {
            if !crate::jwt::is_guid(t) {
                return Err(bad(
                    "ACTION_TENANTS",
                    format!("`{t}` is not a tenant id (a GUID)"),
                ));
            }
        }
        let action_senders = var("ACTION_SENDERS").map(|v| list(&v)).unwrap_or_default();
        let action_performers = var("ACTION_PERFORMERS")
            .map(|v| list(&v))
            .unwrap_or_default();

        let sharepoint_site = match var("SHAREPOINT_SITE") {
            Some(v) => Some(secure(
                parse_base_url("SHAREPOINT_SITE", &v)?,
                "SHAREPOINT_SITE",
            )?),
            None => None,
        };

        // DATA_STORE, or DECISION_STORE, its old name.
        let (store_variable, store_value) = match (var("DATA_STORE"), var("DECISION_STORE")) {
            (Some(v), _) => ("DATA_STORE", Some(v)),
            (None, Some(v)) => ("DECISION_STORE", Some(v)),
            (None, None) => ("DATA_STORE", None),
        };
        let decision_store = match store_value.as_deref() {
            None | Some("sqlite") => DecisionStoreKind::Sqlite,
            Some("redis") => DecisionStoreKind::Redis,
            Some(other) => {
                return Err(bad(
                    store_variable,
                    format!("`{other}` is not `sqlite` or `redis`"),
                ));
            }
        };
        let data_dir = std::path::PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "data".into()));
        let action_require_ticket = match var("ACTION_REQUIRE_TICKET").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad(
                    "ACTION_REQUIRE_TICKET",
                    format!("`{other}` is not `true` or `false`"),
                ));
            }
        };

        let reachable_by_graph = public_url.scheme() == "https";
        let notifications = match var("NOTIFICATIONS").as_deref() {
            None | Some("auto") if reachable_by_graph || demo => Notifications::Webhook,
            None | Some("auto") => Notifications::Poll,
            Some("webhook") if reachable_by_graph || is_loopback(&public_url) => {
                Notifications::Webhook
            }
            Some("webhook") => {
                return Err(bad(
                    "NOTIFICATIONS",
                    format!(
                        "is `webhook`, but Graph delivers change notifications only to https URLs and PUBLIC_URL is `{}`; use `poll`, or an https PUBLIC_URL",
                        public_url.as_str().trim_end_matches('/')
                    ),
                ));
            }
            Some("poll") => Notifications::Poll,
            Some("off") => Notifications::Off,
            Some(other) => {
                return Err(bad(
                    "NOTIFICATIONS",
                    format!("`{other}` is not `webhook`, `poll`, `off` or `auto`"),
                ));
            }
        };
        // Graph only: the retired Outlook REST API has no live Inbox here.
        let notifications = if mail_api == MailApi::Outlook {
            Notifications::Off
        } else {
            notifications
        };
        let live_max_streams = match var("LIVE_MAX_STREAMS") {
            None => 5_000,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    bad(
                        "LIVE_MAX_STREAMS",
                        format!("`{v}` is not a number from 1 to 1000000"),
                    )
                })?,
        };

        let log_format = match var("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };

        Ok(Self {
            log_format,
            metrics_bind,
            decision_store,
            data_dir,
            action_originator,
            action_require_ticket,
            notifications,
            live_max_streams,
            poll_period: Duration::from_secs(30),
            demo_arrival_delay: Duration::from_secs(3),
            live_heartbeat: Duration::from_secs(25),
            bind,
            public_url,
            public_url_explicit,
            demo_on_network: demo && !bind.ip().is_loopback(),
            demo,
            client_id,
            client_secret,
            authority,
            scopes,
            mail_api,
            mail_api_url,
            session_key,
            session_store,
            redis_url,
            redis_ca_file,
            action_scheme,
            action_audiences,
            action_issuer,
            action_keys_url,
            action_tenants,
            action_senders,
            action_performers,
            sharepoint_site,
            upstream_timeout: Duration::from_secs(10),
            jwks_min_refetch: Duration::from_secs(60),
            jwks_max_age: Duration::from_secs(3600),
            jwks_max_stale: Duration::from_secs(24 * 3600),
            refresh_period: Duration::from_secs(55 * 60),
        })
    }

    /// `PUBLIC_URL` without a trailing slash, for building absolute links.
    pub fn public_base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    /// The redirect URI registered with the identity platform.
    pub fn redirect_uri(&self) -> String {
        format!("{}/gettoken", self.public_base())
    }

    /// Cookies carry `Secure` when people reach the app over https.
    pub fn https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Points demo mode at the stand-in services served on `base` (this app's own address).
    pub fn use_demo_services(&mut self, base: &str) -> Result<(), ConfigError> {
        if !self.demo {
            return Ok(());
        }
        self.authority = Some(parse_base_url(
            "AUTHORITY",
            &format!("{base}/_demo/common"),
        )?);
        if self.mail_api_url.is_none() {
            let path = match self.mail_api {
                MailApi::Graph => "/_demo/graph/v1.0",
                MailApi::Outlook => "/_demo/outlook/api/v2.0",
            };
            self.mail_api_url = Some(parse_base_url("MAIL_API_URL", &format!("{base}{path}"))?);
        }
        if self.sharepoint_site.is_none() {
            let site = format!("{base}/_demo/sharepoint/sites/team");
            self.sharepoint_site = Some(parse_base_url("SHAREPOINT_SITE", &site)?);
        }
        // Demo mode always sends cards, as a provider the stand-in knows.
        if self.action_originator.is_none() {
            self.action_originator = Some(DEMO_ORIGINATOR.to_owned());
        }
        // The legacy scheme in demo mode checks tokens against the demo's own keys.
        if self.action_keys_url.as_str() == DEFAULT_ACTION_KEYS_URL {
            let keys = format!("{base}/_demo/common/discovery/v2.0/keys");
            self.action_keys_url = parse_url("ACTION_KEYS_URL", &keys)?;
        }
        Ok(())
    }
}

/// The default mail API base URL for each flavour.
pub fn default_mail_api_url(api: MailApi) -> &'static str {
    match api {
        MailApi::Graph => "https://graph.microsoft.com/v1.0",
        MailApi::Outlook => "https://outlook.office.com/api/v2.0",
    }
}

/// The default scopes for each flavour.
pub fn default_scopes(api: MailApi) -> Vec<String> {
    let scopes = match api {
        MailApi::Graph => "openid profile offline_access User.Read Mail.Read",
        MailApi::Outlook => "openid profile offline_access https://outlook.office.com/Mail.Read",
    };
    scopes.split(' ').map(str::to_owned).collect()
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// True when `url`'s host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Tokens, keys and mail travel over these URLs: https, unless the host is
/// this machine (tests and local stand-ins).
fn secure(url: Url, variable: &'static str) -> Result<Url, ConfigError> {
    if url.scheme() == "https" || is_loopback(&url) {
        Ok(url)
    } else {
        Err(bad(
            variable,
            format!("`{url}` must be https (http is allowed only on a loopback host)"),
        ))
    }
}

fn parse_url(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(value).map_err(|e| bad(variable, format!("`{value}` is not a URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad(variable, format!("`{value}` is not an http(s) URL")));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(bad(variable, format!("`{value}` has no host")));
    }
    Ok(url)
}

/// A URL that paths are appended to: no query, no fragment, no trailing slash.
fn parse_base_url(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = parse_url(variable, value.trim_end_matches('/'))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            variable,
            format!("`{value}` must not have a query or fragment"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_client_id_means_demo_mode_with_graph_defaults() {
        let s = settings(&[]).unwrap();
        assert!(s.demo);
        assert_eq!(s.mail_api, MailApi::Graph);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.redirect_uri(), "http://localhost:8000/gettoken");
        assert!(s.session_key.generated);
        assert_eq!(s.session_key.bytes().len(), 64);
        // Demo mode sends cards, so it asks for Mail.Send too.
        assert_eq!(
            s.scopes.join(" "),
            "openid profile offline_access User.Read Mail.Read Mail.Send"
        );
    }

    #[test]
    fn mail_send_is_asked_for_only_when_cards_are_sent() {
        let real = [("CLIENT_ID", "abc"), ("CLIENT_SECRET", "s")];
        let s = settings(&real).unwrap();
        assert!(!s.scopes.contains(&"Mail.Send".to_owned()));
        let mut vars = real.to_vec();
        vars.push(("ACTION_ORIGINATOR", "5f3c2a1e-provider"));
        let s = settings(&vars).unwrap();
        assert!(s.scopes.contains(&"Mail.Send".to_owned()));
        vars.push(("MAIL_API", "outlook"));
        let s = settings(&vars).unwrap();
        assert!(
            !s.scopes.iter().any(|x| x.ends_with("Mail.Send")),
            "no sending with outlook"
        );
    }

    #[test]
    fn a_real_registration_uses_microsoft_endpoints() {
        let s = settings(&[
            ("CLIENT_ID", "abc"),
            ("CLIENT_SECRET", "s3cret"),
            ("MAIL_API", "outlook"),
        ])
        .unwrap();
        assert!(!s.demo);
        assert_eq!(
            s.authority.unwrap().as_str(),
            "https://login.microsoftonline.com/common"
        );
        assert_eq!(
            s.mail_api_url.unwrap().as_str(),
            "https://outlook.office.com/api/v2.0"
        );
        assert!(
            s.scopes
                .contains(&"https://outlook.office.com/Mail.Read".to_string())
        );
        assert_eq!(s.action_audiences, vec!["abc".to_string()]);
        assert_eq!(format!("{:?}", s.client_secret), "[redacted]");
    }

    #[test]
    fn secrets_print_as_redacted() {
        let key = "dGVzdC1vbmx5LXNlc3Npb24ta2V5LWZvci1vdXRsb29rLWluYm94LWludGVncmF0aW9uLXRlc3RzLTEyMzQ1Njc4";
        let s = settings(&[
            ("CLIENT_ID", "abc"),
            ("CLIENT_SECRET", "s3cret-value"),
            ("SESSION_KEY", key),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(printed.contains("SessionKey([redacted])"), "{printed}");
        assert!(!printed.contains(key) && !printed.contains("s3cret-value"));
        assert!(!printed.contains("116, 101, 115, 116"), "key bytes printed");
    }

    #[test]
    fn metrics_are_never_served_on_the_public_port() {
        let e = settings(&[
            ("BIND", "0.0.0.0:8000"),
            ("DEMO", "on"),
            ("METRICS_BIND", "127.0.0.1:8000"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "METRICS_BIND");
        let s = settings(&[
            ("BIND", "0.0.0.0:8000"),
            ("DEMO", "on"),
            ("METRICS_BIND", "0.0.0.0:9464"),
        ])
        .unwrap();
        assert_eq!(s.metrics_bind, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(settings(&[]).unwrap().metrics_bind, None);
    }

    #[test]
    fn redis_tls_settings_are_checked_and_the_password_never_printed() {
        let url = "rediss://:test-only-pw@cache.example.net:10000";
        let s = settings(&[("REDIS_URL", url), ("REDIS_CA_FILE", "/etc/ca.pem")]).unwrap();
        assert_eq!(s.redis_url.expose(), url);
        assert!(!format!("{s:?}").contains("test-only-pw"));

        let e =
            settings(&[("REDIS_URL", "rediss://cache.example.net:6380/#insecure")]).unwrap_err();
        assert_eq!(e.variable, "REDIS_URL");
        assert!(e.to_string().contains("#insecure"), "{e}");

        let e = settings(&[
            ("REDIS_URL", "redis://:test-only-pw@cache.example.net:6379"),
            ("REDIS_CA_FILE", "/etc/ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_CA_FILE");
        assert!(!e.to_string().contains("test-only-pw"));
    }

    #[test]
    fn half_a_registration_names_the_missing_variable() {
        let e = settings(&[("CLIENT_ID", "abc")]).unwrap_err();
        assert_eq!(e.variable, "CLIENT_SECRET");
        let e = settings(&[("CLIENT_SECRET", "x")]).unwrap_err();
        assert_eq!(e.variable, "CLIENT_ID");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("BIND", "localhost"),
            ("METRICS_BIND", "9000"),
            ("PUBLIC_URL", "not a url"),
            ("MAIL_API", "imap"),
            ("SESSION_KEY", "c2hvcnQ="),
            ("SESSION_KEY", "***"),
            ("SESSION_STORE", "memcached"),
            ("REDIS_URL", "http://x"),
            ("ACTION_TOKEN", "eat"),
            ("ACTION_TENANTS", "contoso.com"),
            ("SHAREPOINT_SITE", "ftp://x"),
            ("SCOPES", "Mail.Read"),
        ] {
            let e = settings(&[(name, value)]).unwrap_err();
            assert_eq!(e.variable, name, "{name}={value} gave {e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn a_public_url_that_is_not_loopback_never_runs_demo_mode() {
        for url in [
            "https://inbox.contoso.com",
            "http://10.0.0.5:8000",
            "http://0.0.0.0:8000",
        ] {
            let e = settings(&[
                ("PUBLIC_URL", url),
                ("CLIENT_ID", ""),
                ("CLIENT_SECRET", " "),
            ])
            .unwrap_err();
            assert_eq!(e.variable, "CLIENT_ID", "{url}");
        }
        for url in [
            "http://localhost:8000",
            "https://127.0.0.1:8443",
            "http://[::1]:8000",
        ] {
            assert!(settings(&[("PUBLIC_URL", url)]).unwrap().demo, "{url}");
        }
    }

    #[test]
    fn notifications_follow_the_public_url_and_the_mail_api() {
        let real = [("CLIENT_ID", "abc"), ("CLIENT_SECRET", "s")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = real.to_vec();
            v.extend_from_slice(extra);
            settings(&v)
        };
        assert_eq!(
            settings(&[]).unwrap().notifications,
            Notifications::Webhook,
            "demo"
        );
        assert_eq!(with(&[]).unwrap().notifications, Notifications::Poll);
        assert_eq!(
            with(&[("PUBLIC_URL", "https://inbox.contoso.com")])
                .unwrap()
                .notifications,
            Notifications::Webhook
        );
        let e = with(&[
            ("PUBLIC_URL", "http://inbox.contoso.com"),
            ("NOTIFICATIONS", "webhook"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "NOTIFICATIONS");
        assert!(e.to_string().contains("https"), "{e}");
        assert_eq!(
            with(&[("NOTIFICATIONS", "webhook")]).unwrap().notifications,
            Notifications::Webhook,
            "loopback (tests)"
        );
        assert_eq!(
            with(&[("NOTIFICATIONS", "off")]).unwrap().notifications,
            Notifications::Off
        );
        assert_eq!(
            with(&[("NOTIFICATIONS", "webhook"), ("MAIL_API", "outlook")])
                .unwrap()
                .notifications,
            Notifications::Off
        );
        assert_eq!(
            with(&[("NOTIFICATIONS", "push")]).unwrap_err().variable,
            "NOTIFICATIONS"
        );
        assert_eq!(
            with(&[("LIVE_MAX_STREAMS", "0")]).unwrap_err().variable,
            "LIVE_MAX_STREAMS"
        );
        assert_eq!(
            with(&[("LIVE_MAX_STREAMS", "20")])
                .unwrap()
                .live_max_streams,
            20
        );
    }

    #[test]
    fn data_store_is_read_under_both_names() {
        assert_eq!(
            settings(&[("DATA_STORE", "redis")]).unwrap().decision_store,
            DecisionStoreKind::Redis
        );
        assert_eq!(
            settings(&[("DECISION_STORE", "redis")])
                .unwrap()
                .decision_store,
            DecisionStoreKind::Redis
        );
        assert_eq!(
            settings(&[("DATA_STORE", "sqlite"), ("DECISION_STORE", "redis")])
                .unwrap()
                .decision_store,
            DecisionStoreKind::Sqlite,
            "the new name wins"
        );
        assert_eq!(
            settings(&[("DATA_STORE", "pg")]).unwrap_err().variable,
            "DATA_STORE"
        );
        assert_eq!(
            settings(&[("DECISION_STORE", "pg")]).unwrap_err().variable,
            "DECISION_STORE"
        );
    }

    #[test]
    fn demo_mode_on_a_network_address_needs_demo_on() {
        let e = settings(&[("BIND", "0.0.0.0:8000")]).unwrap_err();
        assert_eq!(e.variable, "BIND");
        assert!(e.to_string().contains("DEMO=on"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let s = settings(&[("BIND", "0.0.0.0:8000"), ("DEMO", "on")]).unwrap();
        assert!(s.demo && s.demo_on_network);
        let s = settings(&[("BIND", "127.0.0.1:8000")]).unwrap();
        assert!(s.demo && !s.demo_on_network);
        // DEMO=on never makes a public PUBLIC_URL acceptable.
        let e = settings(&[
            ("BIND", "0.0.0.0:8000"),
            ("DEMO", "on"),
            ("PUBLIC_URL", "https://inbox.contoso.com"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "CLIENT_ID");
        // A real registration listens wherever it is told.
        let s = settings(&[
            ("BIND", "0.0.0.0:8000"),
            ("CLIENT_ID", "abc"),
            ("CLIENT_SECRET", "s"),
        ])
        .unwrap();
        assert!(!s.demo);
        assert_eq!(settings(&[("DEMO", "yes")]).unwrap_err().variable, "DEMO");
    }

    #[test]
    fn upstream_urls_must_be_https_unless_loopback() {
        let real = [("CLIENT_ID", "abc"), ("CLIENT_SECRET", "s")];
        for name in [
            "AUTHORITY",
            "MAIL_API_URL",
            "SHAREPOINT_SITE",
            "ACTION_KEYS_URL",
        ] {
            let mut vars = real.to_vec();
            vars.push((name, "http://login.example.com/common"));
            let e = settings(&vars).unwrap_err();
            assert_eq!(e.variable, name);
            let mut vars = real.to_vec();
            vars.push((name, "http://127.0.0.1:9/common"));
            assert!(settings(&vars).is_ok(), "{name} on loopback");
        }
    }

    #[test]
    fn legacy_audience_defaults_to_public_url_and_lists_split_on_commas() {
        let s = settings(&[
            ("CLIENT_ID", "abc"),
            ("CLIENT_SECRET", "s"),
            ("ACTION_TOKEN", "legacy"),
            ("PUBLIC_URL", "https://api.contoso.com/"),
            ("ACTION_PERFORMERS", " a@contoso.com, @fabrikam.com ,"),
        ])
        .unwrap();
        assert_eq!(
            s.action_audiences,
            vec!["https://api.contoso.com".to_string()]
        );
        assert_eq!(s.action_performers, vec!["a@contoso.com", "@fabrikam.com"]);
        assert!(s.https());
    }
}
