use std::process::ExitCode;
use std::time::Duration;

use outlook_inbox::settings::Settings;
use outlook_inbox::startup::{self, Application};
use outlook_inbox::telemetry;

#[actix_web::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck().await;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outlook-inbox: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _log_writer = telemetry::init(settings.log_format);
    if settings.session_key.generated {
        tracing::warn!(
            "SESSION_KEY is not set: using a random key, so sessions end when the app restarts"
        );
    }
    if !settings.public_url_explicit
        && settings.bind.port() != 0
        && settings.public_url.port_or_known_default() != Some(settings.bind.port())
    {
        tracing::warn!(
            public_url = %settings.public_base(),
            bind = %settings.bind,
            "PUBLIC_URL is not set, so links and the sign-in redirect go to the default address, \
             on another port than BIND: set PUBLIC_URL to the address people reach"
        );
    }
    let demo = settings.demo;
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("outlook-inbox: {e}");
            return ExitCode::from(2);
        }
    };
    let url = app.state().settings.public_base().to_owned();
    if demo {
        tracing::info!(
            "demo mode: no CLIENT_ID set, so Microsoft's services are played by stand-ins under /_demo/"
        );
        if app.state().settings.demo_on_network {
            tracing::warn!(
                bind = %app.state().settings.bind,
                "DEMO=on: demo mode is served on a network address; anyone who reaches it can sign in as a demo person (publish the port on 127.0.0.1 only)"
            );
        }
    }
    tracing::info!("listening; open {url}");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outlook-inbox: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `outlook-inbox healthcheck`: exit 0 when this instance's `/healthz`
/// answers 200 within 2 s, 1 otherwise. For container images with no shell
/// or curl (a `HEALTHCHECK` calls the binary itself).
///
/// It reads only `BIND`, and never exits 2: Docker reserves that code for
/// itself, so even a bad `BIND` is an ordinary "unhealthy".
async fn healthcheck() -> ExitCode {
    let bind = match Settings::bind_from_env() {
        Ok(bind) => bind,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://{}/healthz", startup::reachable(bind));
    let client = match outlook_inbox::http::client(Duration::from_secs(2)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("healthcheck: {url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
