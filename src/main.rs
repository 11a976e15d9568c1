use std::process::ExitCode;

use outlook_inbox::settings::Settings;
use outlook_inbox::startup::Application;
use outlook_inbox::telemetry;

#[actix_web::main]
async fn main() -> ExitCode {
    telemetry::init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outlook-inbox: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if settings.session_key.generated {
        tracing::warn!(
            "SESSION_KEY is not set: using a random key, so sessions end when the app restarts"
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
