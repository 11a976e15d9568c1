//! Builds the shared state and the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::storage::CookieSessionStore;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::auth::oidc::Provider;
use crate::auth::refresh::Refresher;
use crate::demo::Demo;
use crate::jwt::{JwksCache, Verifier};
use crate::logging::RefusalLog;
use crate::mail::MailClient;
use crate::session::CookieShape;
use crate::session_store::{Redis, Store as SessionBackend};
use crate::settings::{ConfigError, DecisionStoreKind, SessionStore, Settings};
use crate::store::redis::RedisStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Backend, DecisionStore as _, Store};
use crate::{actions, auth, demo, mail, routes};

/// Content Security Policy: our own styles, no scripts from anywhere else,
/// no framing, forms only to ourselves.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub use crate::state::AppState;

/// How long a graceful stop waits for requests in flight. Kubernetes and
/// Container Apps send SIGKILL 30 s after SIGTERM, and actix's own default is
/// those same 30 s, which would leave no time to close the store; the
/// slowest request (a token refresh, then Graph, each capped at 10 s) fits.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("BIND: cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("METRICS_BIND: cannot serve metrics on {0}: {1}")]
    Metrics(SocketAddr, String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The running app: its port and server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// The Redis pool, when anything uses Redis: checked once at start.
    redis: Option<Arc<Redis>>,
    /// The metrics listener's port and server, with `METRICS_BIND`.
    metrics: Option<(u16, Server)>,
    /// The stand-in services, in demo mode.
    demo: Option<Arc<Demo>>,
}

impl Application {
    /// Binds the listener and builds the server (not yet running).
    ///
    /// With `BIND` on port 0 and no `PUBLIC_URL` (the tests), the public URL
    /// becomes `http://127.0.0.1:{the port the system chose}`.
    pub async fn build(mut settings: Settings) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(settings.bind).map_err(|e| StartupError::Bind(settings.bind, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(settings.bind, e))?;
        let internal_base = format!("http://{}", reachable(local));
        if settings.bind.port() == 0 && !settings.public_url_explicit {
            settings.public_url = url::Url::parse(&internal_base).map_err(|e| ConfigError {
                variable: "PUBLIC_URL",
                message: e.to_string(),
            })?;
        }
        if settings.demo {
            settings.use_demo_services(&internal_base)?;
        }

        let http = crate::http::client(settings.upstream_timeout)?;
        let authority = settings.authority.clone().ok_or(ConfigError {
            variable: "AUTHORITY",
            message: "is not set".into(),
        })?;
        let mail_url = settings.mail_api_url.clone().ok_or(ConfigError {
            variable: "MAIL_API_URL",
            message: "is not set".into(),
        })?;
        let demo = settings
            .demo
            .then(|| Arc::new(Demo::new(&settings, &internal_base, http.clone())));
        // One Redis pool for whatever uses Redis: sessions, decisions or both.
        let needs_redis = settings.session_store == SessionStore::Redis
            || settings.decision_store == DecisionStoreKind::Redis;
        let shared_redis = if needs_redis {
            Some(Arc::new(
                Redis::new(
                    settings.redis_url.expose(),
                    settings.redis_ca_file.as_deref(),
                )
                .await?,
            ))
        } else {
            None
        };
        let redis_check = shared_redis.clone();
        let redis = shared_redis
            .clone()
            .filter(|_| settings.session_store == SessionStore::Redis);
        let store = match (&settings.decision_store, shared_redis) {
            (DecisionStoreKind::Redis, Some(r)) => Store::new(Backend::Redis(RedisStore::new(r))),
            _ => {
                let dir = settings.data_dir.clone();
                Store::new(Backend::Sqlite(SqliteStore::open(&dir)?))
            }
        };
        let session_key = Key::try_from(settings.session_key.bytes()).map_err(|_| ConfigError {
            variable: "SESSION_KEY",
            message: "is not a usable key".into(),
        })?;
        let cookie = redis.is_none().then(|| CookieShape {
            key: session_key.clone(),
            https: settings.https(),
        });
        let state = web::Data::new(AppState {
            actions: crate::state::ActionParts {
                refusals: RefusalLog::new(),
                refused_request_lines: RefusalLog::with_summary(
                    "more refused actions were answered than have request lines; the rest are counted here",
                ),
                tickets: crate::cards::ticket::Tickets::new(settings.session_key.bytes()),
                verified: Default::default(),
            },
            ready: Default::default(),
            live: Arc::new(crate::notifications::Live::new(
                settings.live_max_streams,
                match store.redis() {
                    Some(r) => crate::notifications::bus::Bus::redis(r),
                    None => crate::notifications::bus::Bus::local(),
                },
                crate::notifications::graph::Subscriptions::new(http.clone(), &mail_url),
            )),
            store,

            cookie,
            session_key,
            redis,
            refresher: Refresher::default(),
            provider: Provider::new(&settings, &authority, http.clone()),
            verifier: Verifier::new(JwksCache::new(
                http.clone(),
                settings.jwks_min_refetch,
                settings.jwks_max_age,
                settings.jwks_max_stale,
            )),
            mail: crate::state::MailParts {
                client: MailClient::new(
                    http.clone(),
                    &mail_url,
                    settings.mail_api,
                    settings.upstream_timeout,
                ),
                reader: crate::mail::reader::Reader::new(Arc::new(
                    crate::mail::sanitize::Sanitizer::new(
                        settings
                            .demo
                            .then(|| settings.public_url.origin().ascii_serialization()),
                    ),
                )),
            },
            http,
            demo_links: demo.clone().map(|d| d as Arc<dyn crate::state::DemoLinks>),
            settings,
        });

        let metrics = match state.settings.metrics_bind {
            None => None,
            Some(addr) => {
                let fail = |e: String| StartupError::Metrics(addr, e);
                let listener = crate::metrics::bind(addr).map_err(|e| fail(e.to_string()))?;
                let port = listener
                    .local_addr()
                    .map_err(|e| fail(e.to_string()))?
                    .port();
                let handle = crate::metrics::install().map_err(fail)?;
                let server =
                    crate::metrics::serve(listener, handle).map_err(|e| fail(e.to_string()))?;
                Some((port, server))
            }
        };
        let server = server(listener, state.clone(), demo.clone())?;
        Ok(Self {
            port: local.port(),
            server,
            state,
            redis: redis_check,
            metrics,
            demo,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on, with `METRICS_BIND`.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The stand-in services, in demo mode (tests read their counters).
    pub fn demo(&self) -> Option<Arc<Demo>> {
        self.demo.clone()
    }

    /// Runs until the server stops. Discovery (v2 and v1) is fetched at once
    /// in the background and kept fresh, so neither the first sign-in nor an
    /// action waits for it; refusals not logged one by one are summed up
    /// periodically.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.state.store.check_in_background();
        if let Some(demo) = self.demo.clone() {
            // The demo's RSA keys are made now, off the runtime's threads,
            // while the server already answers.
            tokio::spawn(async move {
                if let Err(e) = demo.keys().await {
                    tracing::error!(error = %e, "the demo signing keys could not be made");
                }
            });
        }
        if let Some(redis) = self.redis.clone() {
            // Say at once, in one plain line, whether Redis works; the app
            // serves either way (what needs Redis answers 503 until it does).
            tokio::spawn(async move {
                match redis.ping().await {
                    Ok(()) => tracing::info!(redis = %redis.target(), "Redis answers"),
                    Err(reason) => tracing::error!(
                        redis = %redis.target(),
                        "REDIS_URL: cannot use Redis: {reason}; pages that need it answer 503 until it works"
                    ),
                }
            });
        }
        let state = self.state.clone();
        let discovery = tokio::spawn(async move {
            let legacy_keys = (state.settings.action_scheme
                == crate::settings::ActionScheme::Legacy)
                .then(|| state.settings.action_keys_url.clone());
            state
                .provider
                .keep_fresh(
                    state.verifier.keys(),
                    legacy_keys.as_ref(),
                    state.settings.refresh_period,
                    &state.ready,
                )
                .await;
        });
        let bus = tokio::spawn(crate::notifications::bus::Bus::listen(
            self.state.clone().into_inner(),
        ));
        let state = self.state.clone();
        let pruning = tokio::spawn(async move {
            // Kept answers expire after ANSWER_TTL_SECS in every store.
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                match state.store.prune_answers(crate::clock::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(answers = n, "forgot expired action answers"),
                    Err(e) => {
                        tracing::warn!(error = %e, "expired action answers could not be pruned")
                    }
                }
            }
        });
        let state = self.state.clone();
        let summary = tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::logging::REFUSAL_WINDOW);
            loop {
                every.tick().await;
                state.actions.refusals.summarize();
                state.actions.refused_request_lines.summarize();
            }
        });
        let metrics = self.metrics.map(|(port, server)| {
            tracing::info!(port, "metrics on /metrics");
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        // SIGTERM: stop accepting, end the live-Inbox streams (their
        // browsers reconnect elsewhere), let requests in flight finish (up
        // to DRAIN), then this returns. SIGINT (Ctrl-C) stops at once.
        let signals = tokio::spawn(stop_on_signals(
            self.server.handle(),
            self.state.live.clone(),
        ));
        let result = self.server.await;
        signals.abort();
        discovery.abort();
        bus.abort();
        pruning.abort();
        summary.abort();
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        self.state.store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// SIGTERM stops gracefully (new connections refused, live streams ended,
/// requests in flight given up to [`DRAIN`]); SIGINT stops at once.
async fn stop_on_signals(
    server: actix_web::dev::ServerHandle,
    live: Arc<crate::notifications::Live>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("signal handlers could not be installed; stop the server with SIGKILL");
        return;
    };
    let graceful = tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => false,
    };
    if graceful {
        tracing::info!(
            drain_secs = DRAIN.as_secs(),
            "SIGTERM: finishing requests in flight"
        );
        live.stop();
    } else {
        tracing::info!("SIGINT: stopping now");
    }
    server.stop(graceful).await;
}

/// Where this machine reaches a listener: a wildcard address (0.0.0.0 or
/// [::]) becomes the loopback address of its family.
pub fn reachable(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        other => other.to_string(),
    }
}

fn server(
    listener: TcpListener,
    state: web::Data<AppState>,
    demo: Option<Arc<Demo>>,
) -> Result<Server, StartupError> {
    let key = state.session_key.clone();
    let demo = demo.map(web::Data::from);
    // With the cookie store, crate::session_cookie keeps the session (in
    // numbered cookies when one is not enough); actix-session's middleware
    // runs only for the Redis store, whose cookie holds just an id.
    let redis_sessions = state.redis.is_some();
    let store = match &state.redis {
        Some(r) => SessionBackend::Redis(r.clone()),
        None => SessionBackend::Cookie(Arc::new(CookieSessionStore::default())),
    };
    let server = HttpServer::new(move || {
        let https = state.settings.https();
        let sessions = SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_name(crate::session::cookie_name(https).to_owned())
            .cookie_secure(https)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_content_security(CookieContentSecurity::Private)
            // A server-side record lives a working day; the cookie until the browser closes.
            .session_lifecycle(
                BrowserSession::default().state_ttl(actix_web::cookie::time::Duration::hours(12)),
            )
            .build();
        let mut security_headers = DefaultHeaders::new();
        if https {
            // Browsers that reached us over https once stay on https for a year.
            security_headers =
                security_headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"));
        }
        let security_headers = security_headers
            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .add((header::REFERRER_POLICY, "no-referrer"))
            .add((header::X_FRAME_OPTIONS, "DENY"))
            .add((header::CONTENT_SECURITY_POLICY, CSP))
            .add((header::CACHE_CONTROL, "no-store"));
        App::new()
            .app_data(state.clone())
            .app_data(web::FormConfig::default().limit(16 * 1024))
            .wrap(actix_web::middleware::Condition::new(
                redis_sessions,
                sessions,
            ))
            .wrap(actix_web::middleware::from_fn(
                crate::session_cookie::sessions,
            ))
            .wrap(security_headers)
            .wrap(actix_web::middleware::from_fn(crate::observe::requests))
            .route("/", web::get().to(routes::home))
            .route("/healthz", web::get().to(routes::healthz))
            .route("/signin", web::get().to(auth::routes::signin))
            .route("/gettoken", web::get().to(auth::routes::gettoken))
            .route("/signout", web::get().to(auth::routes::signout))
            .route("/mail", web::get().to(mail::routes::inbox))
            .route(
                "/mail/events",
                web::get().to(crate::notifications::routes::events),
            )
            .route(
                "/notifications",
                web::post().to(crate::notifications::routes::notifications),
            )
            .route(
                "/notifications/lifecycle",
                web::post().to(crate::notifications::routes::lifecycle),
            )
            .route("/mail/{id}", web::get().to(mail::routes::message))
            .route("/mail/{id}/body", web::get().to(mail::routes::body))
            .route(
                "/mail/{id}/attachments/{aid}",
                web::get().to(mail::attachments::download),
            )
            .route("/api/expense", web::post().to(actions::expense))
            .route("/api/expense/card", web::post().to(actions::current_card))
            .route("/cards/send", web::post().to(crate::cards::routes::send))
            .route("/static/site.css", web::get().to(stylesheet))
            .route("/static/icon.svg", web::get().to(icon))
            .route("/static/clip.svg", web::get().to(clip))
            .route("/static/local-time.js", web::get().to(local_time))
            .route("/static/live-inbox.js", web::get().to(live_inbox))
            .configure(|cfg| {
                if let Some(d) = &demo {
                    cfg.app_data(d.clone());
                    demo::configure(cfg);
                }
            })
            .default_service(web::to(routes::not_found))
    })
    .shutdown_timeout(DRAIN.as_secs())
    .disable_signals()
    // Without it, a live-Inbox event written while the previous one is not
    // yet acknowledged waits for the browser's delayed ACK (Nagle's
    // algorithm): measured, 0 to 5 rows in 300 arrived about 20 ms late on
    // Linux loopback, where the delayed-ACK timer is 40 ms (200 ms on Windows).
    .tcp_nodelay(true)
    .listen(listener)
    .map_err(|e| StartupError::Bind(SocketAddr::from(([0, 0, 0, 0], 0)), e))?
    .run();
    Ok(server)
}

const SITE_CSS: &str = include_str!("../static/site.css");
const ICON_SVG: &str = include_str!("../static/icon.svg");
const CLIP_SVG: &str = include_str!("../static/clip.svg");
const LOCAL_TIME_JS: &str = include_str!("../static/local-time.js");
const LIVE_INBOX_JS: &str = include_str!("../static/live-inbox.js");

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(body)
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", SITE_CSS)
}

async fn icon() -> HttpResponse {
    asset("image/svg+xml", ICON_SVG)
}

async fn clip() -> HttpResponse {
    asset("image/svg+xml", CLIP_SVG)
}

async fn local_time() -> HttpResponse {
    asset("text/javascript; charset=utf-8", LOCAL_TIME_JS)
}

async fn live_inbox() -> HttpResponse {
    asset("text/javascript; charset=utf-8", LIVE_INBOX_JS)
}
