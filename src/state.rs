//! What the handlers share, built once at start-up and passed in as `web::Data`.
//!
//! Handlers depend on this module; this module depends only on the domain
//! modules, so every import arrow runs one way: handlers → state → domain.

use std::sync::Arc;

use crate::auth::oidc::Provider;
use crate::auth::refresh::Refresher;
use crate::jwt::Verifier;
use crate::logging::RefusalLog;
use crate::mail::MailClient;
use crate::pages::Chrome;
use crate::session::{CookieShape, TypedSession};
use crate::session_store::Redis;
use crate::settings::Settings;

/// What the app's own pages need from the demo stand-in; the stand-in
/// implements it, so nothing here depends on the demo.
pub trait DemoLinks: Send + Sync {
    /// The stand-in's card page for message `message_id`, when it is an
    /// actionable message.
    fn card_page(&self, message_id: &str) -> Option<String>;
}

/// Everything the handlers share, built once.
pub struct AppState {
    pub settings: Settings,
    pub http: reqwest::Client,
    pub provider: Provider,
    /// The one JWT verifier (ID tokens and action tokens share its key cache).
    pub verifier: Verifier,
    /// Whether start-up loading (discovery, keys) is done.
    pub ready: crate::ready::Readiness,
    /// What the action endpoints need besides the verifier.
    pub actions: ActionParts,
    /// The mail API and reading bodies.
    pub mail: MailParts,
    /// What the app's own pages need from the demo stand-in (demo mode only).
    pub demo_links: Option<Arc<dyn DemoLinks>>,
    /// The shared session store, with `SESSION_STORE=redis`.
    pub redis: Option<Arc<Redis>>,
    pub refresher: Refresher,
    /// The session cookie's key and shape, with the cookie store (to measure it).
    pub cookie: Option<CookieShape>,
    /// The key that encrypts session cookies.
    pub session_key: actix_web::cookie::Key,
    /// Expenses, decisions, subscriptions and deltaLinks (`DATA_STORE`).
    pub store: crate::store::Store,
    /// The live Inbox: streams, feeds, subscriptions.
    pub live: Arc<crate::notifications::Live>,
}

/// The mail API, and what reading a message body needs.
pub struct MailParts {
    pub client: MailClient,
    /// Sanitizing (behind a concurrency limit), inline images, and the
    /// per-person memory of bodies read.
    pub reader: crate::mail::reader::Reader,
}

/// What the action endpoints need besides the verifier.
pub struct ActionParts {
    /// Action tokens that verified recently (see [`crate::jwt::verified`]).
    pub verified: crate::jwt::verified::VerifiedTokens,
    /// Rate-limited logging of refused actions (a flood cannot fill the disk).
    pub refusals: RefusalLog,
    /// Request lines of refused actions, bounded the same way (a flood of
    /// forged tokens must not fill the disk through them either).
    pub refused_request_lines: RefusalLog,
    /// Issues and checks the tickets in card buttons.
    pub tickets: crate::cards::ticket::Tickets,
}

impl AppState {
    /// Whether the session store can be used now (always, for the cookie store).
    pub async fn sessions_available(&self) -> bool {
        match &self.redis {
            None => true,
            Some(r) => match r.ping().await {
                Ok(()) => true,
                Err(_) => {
                    crate::metrics::session_store_error("ping");
                    false
                }
            },
        }
    }

    /// The page frame for this request: demo banner and signed-in name.
    pub fn chrome(&self, session: &TypedSession) -> Chrome {
        Chrome {
            demo: self.settings.demo,
            user: session.user().map(|u| u.name),
        }
    }

    /// The session cookie's name: `__Host-`-prefixed on https, so that no
    /// subdomain or plain-http page can set or shadow it.
    pub fn cookie_name(&self) -> &'static str {
        crate::session::cookie_name(self.settings.https())
    }
}
