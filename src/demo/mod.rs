//! Demo mode: small but faithful stand-ins for the Microsoft services the app
//! talks to, served under `/_demo/` on the app's own port.
//!
//! The app reaches them over real HTTP, through the same discovery, oauth2,
//! JWT and mail code it uses against Microsoft; only the endpoints differ.

mod actions;
mod attachments;
pub mod bodies;
mod graph;
mod idp;
pub mod mailbox;
mod png;
mod subscriptions;

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::web;
use time::OffsetDateTime;

use crate::jwt::signer::{RsaSigner, SignerError};
use crate::pages::Chrome;
use crate::session::TypedSession;
use crate::settings::{Secret, Settings};
use crate::state::DemoLinks;
use mailbox::DemoMessage;

pub use mailbox::{PEOPLE, TENANT_ID};

/// The stand-in's signing keys. Generating RSA keys takes tens of
/// milliseconds, so they are made on a blocking thread after the server
/// listens, not before.
pub struct DemoKeys {
    pub signer: RsaSigner,
    /// A key Microsoft never published, for the "forged token" button.
    pub forger: RsaSigner,
}

/// The demo keys as kept in `DATA_DIR` (the stand-in's own signing keys;
/// only demo mode has them).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptKeys {
    kid: String,
    signer: String,
    forger: String,
}

/// Where the demo keys are kept between starts.
const KEYS_FILE: &str = "demo-signing-keys.json";

impl DemoKeys {
    fn generate() -> Result<Self, SignerError> {
        Ok(Self {
            signer: RsaSigner::generate(format!(
                "demo-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ))?,
            forger: RsaSigner::generate("forged")?,
        })
    }

    /// The keys kept in `dir` by an earlier start, else new ones, kept
    /// there (readable by this user only) for the next start: making two
    /// RSA keys took 100–300 ms of every demo start.
    fn load_or_generate(dir: Option<&std::path::Path>) -> Result<Self, SignerError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let Some(dir) = dir else {
            return Self::generate();
        };
        let path = dir.join(KEYS_FILE);
        let kept = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<KeptKeys>(&bytes).ok())
            .and_then(|k| {
                let signer = RsaSigner::from_pkcs8(k.kid, &b64.decode(k.signer).ok()?).ok()?;
                let forger = RsaSigner::from_pkcs8("forged", &b64.decode(k.forger).ok()?).ok()?;
                Some(Self { signer, forger })
            });
        if let Some(keys) = kept {
            return Ok(keys);
        }
        let keys = Self::generate()?;
        let kept = KeptKeys {
            kid: keys.signer.kid().to_owned(),
            signer: b64.encode(keys.signer.pkcs8()?),
            forger: b64.encode(keys.forger.pkcs8()?),
        };
        let written = serde_json::to_vec(&kept).ok().and_then(|json| {
            use std::io::Write as _;
            std::fs::create_dir_all(dir).ok()?;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .ok()?;
            file.write_all(&json).ok()
        });
        if written.is_none() {
            tracing::warn!(
                "the demo signing keys could not be kept in DATA_DIR; new ones at every start"
            );
        }
        Ok(keys)
    }
}

/// The client id and secret the stand-in accepts, and its keys and state.
pub struct Demo {
    keys: tokio::sync::OnceCell<DemoKeys>,
    /// Where the keys are kept between starts (`DATA_DIR`).
    keys_dir: Option<std::path::PathBuf>,
    client_id: String,
    client_secret: Secret,
    redirect_uri: String,
    /// Where browsers reach us (`PUBLIC_URL`).
    public_base: String,
    /// Where the app itself reaches us (the bound address).
    internal_base: String,
    mailboxes: Vec<std::sync::RwLock<Vec<DemoMessage>>>,
    /// Numbers the messages `sendMail` delivers.
    delivered: std::sync::atomic::AtomicUsize,
    /// Requests for the demo's tracking pixel: a mail reader that protects
    /// privacy makes none until the reader asks for remote images.
    pub tracker_hits: std::sync::atomic::AtomicUsize,
    codes: Mutex<HashMap<String, idp::Grant>>,
    refresh_tokens: Mutex<HashMap<String, idp::Grant>>,
    http: reqwest::Client,
    action_audience: String,
    legacy_actions: bool,
    legacy_issuer: String,
    /// Graph subscriptions the stand-in keeps, by id.
    subscriptions: Mutex<HashMap<String, subscriptions::DemoSubscription>>,
    /// The last delivery's sequence number (for delta tokens).
    next_seq: std::sync::atomic::AtomicU64,
    /// How long "have someone send me a message" takes.
    arrival_delay: std::time::Duration,
}

impl Demo {
    pub fn new(settings: &Settings, internal_base: &str, http: reqwest::Client) -> Self {
        // Whole seconds, as Graph reports them.
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        Self {
            keys: tokio::sync::OnceCell::new(),
            keys_dir: Some(settings.data_dir.clone()),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            redirect_uri: settings.redirect_uri(),
            public_base: settings.public_base().to_owned(),
            internal_base: internal_base.to_owned(),
            mailboxes: {
                // One 1 MB body, shared by the three mailboxes.
                let long: std::sync::Arc<str> = bodies::long_thread(1024 * 1024).into();
                let base = settings.public_base();
                (0..PEOPLE.len())
                    .map(|p| std::sync::RwLock::new(mailbox::mailbox(p, now, base, &long)))
                    .collect()
            },
            delivered: std::sync::atomic::AtomicUsize::new(0),
            tracker_hits: std::sync::atomic::AtomicUsize::new(0),
            codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            http,
            action_audience: settings
                .action_audiences
                .first()
                .cloned()
                .unwrap_or_default(),
            legacy_actions: settings.action_scheme == crate::settings::ActionScheme::Legacy,
            legacy_issuer: settings.action_issuer.clone(),
            subscriptions: Mutex::new(HashMap::new()),
            next_seq: std::sync::atomic::AtomicU64::new(0),
            arrival_delay: settings.demo_arrival_delay,
        }
    }

    /// `person`'s mailbox, to read.
    pub(crate) fn mailbox(
        &self,
        person: usize,
    ) -> std::sync::RwLockReadGuard<'_, Vec<DemoMessage>> {
        self.mailboxes[person]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `person`'s mailbox, to change.
    pub(crate) fn mailbox_mut(
        &self,
        person: usize,
    ) -> std::sync::RwLockWriteGuard<'_, Vec<DemoMessage>> {
        self.mailboxes[person]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The card of message `id`, if it is an actionable message.
    pub fn card_of(&self, id: &str) -> Option<mailbox::DemoCard> {
        (0..PEOPLE.len()).find_map(|p| {
            self.mailbox(p)
                .iter()
                .find(|m| m.id == id)
                .and_then(|m| m.card.clone())
        })
    }

    /// The signing keys, generated on first use (off the async runtime's
    /// threads); concurrent callers wait for the one generation.
    pub async fn keys(&self) -> Result<&DemoKeys, SignerError> {
        self.keys
            .get_or_try_init(|| async {
                let dir = self.keys_dir.clone();
                tokio::task::spawn_blocking(move || DemoKeys::load_or_generate(dir.as_deref()))
                    .await
                    .map_err(|_| SignerError("key generation"))?
            })
            .await
    }

    /// The issuer template of the demo v2.0 endpoint.
    pub fn issuer_template(&self) -> String {
        format!("{}/_demo/{{tenantid}}/v2.0", self.public_base)
    }

    /// The issuer template of the demo v1 endpoint (Microsoft's is `https://sts.windows.net/{tenantid}/`).
    pub fn v1_issuer_template(&self) -> String {
        format!("{}/_demo/sts/{{tenantid}}/", self.public_base)
    }
}

impl Demo {
    /// Graph subscriptions the stand-in holds now (tests count them).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.lock().map(|s| s.len()).unwrap_or(0)
    }
}

impl DemoLinks for Demo {
    fn card_page(&self, message_id: &str) -> Option<String> {
        self.card_of(message_id)
            .map(|_| format!("/_demo/actions?message={message_id}"))
    }
}

/// The page frame of a stand-in page: the demo banner, and who is signed in to the app.
fn chrome(session: &TypedSession) -> Chrome {
    Chrome {
        demo: true,
        user: session.user().map(|u| u.name),
    }
}

/// Registers the stand-in services under `/_demo`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_demo")
            .route("/actions", web::get().to(actions::card))
            .route("/actions", web::post().to(actions::press))
            .route("/graph/v1.0/me", web::get().to(graph::me))
            .route(
                "/graph/v1.0/me/mailfolders/{folder}/messages",
                web::get().to(graph::messages),
            )
            .route("/outlook/api/v2.0/me", web::get().to(graph::me))
            .route(
                "/sharepoint/sites/team/_api/web/currentuser",
                web::get().to(graph::sharepoint_user),
            )
            .route(
                "/outlook/api/v2.0/me/mailfolders/{folder}/messages",
                web::get().to(graph::messages),
            )
            .route(
                "/graph/v1.0/me/messages/{id}",
                web::get().to(graph::message),
            )
            .route(
                "/outlook/api/v2.0/me/messages/{id}",
                web::get().to(graph::message),
            )
            .route("/graph/v1.0/me/sendMail", web::post().to(graph::send_mail))
            .route("/graph/v1.0/me/messages", web::get().to(graph::search))
            .route(
                "/graph/v1.0/subscriptions",
                web::post().to(subscriptions::create),
            )
            .route(
                "/graph/v1.0/subscriptions/{id}",
                web::patch().to(subscriptions::renew),
            )
            .route(
                "/graph/v1.0/subscriptions/{id}",
                web::delete().to(subscriptions::delete),
            )
            .route(
                "/graph/v1.0/subscriptions/{id}/reauthorize",
                web::post().to(subscriptions::reauthorize),
            )
            .route(
                "/graph/v1.0/me/mailFolders/inbox/messages/delta",
                web::get().to(subscriptions::delta),
            )
            .route("/mail/arrive", web::post().to(subscriptions::arrive))
            .route("/mail/lifecycle", web::post().to(subscriptions::lifecycle))
            .route(
                "/outlook/api/v2.0/me/messages",
                web::get().to(graph::search),
            )
            .route(
                "/graph/v1.0/me/messages/{id}/attachments",
                web::get().to(attachments::list),
            )
            .route(
                "/outlook/api/v2.0/me/messages/{id}/attachments",
                web::get().to(attachments::list),
            )
            .route(
                "/graph/v1.0/me/messages/{id}/attachments/{aid}",
                web::get().to(attachments::one),
            )
            .route(
                "/outlook/api/v2.0/me/messages/{id}/attachments/{aid}",
                web::get().to(attachments::one),
            )
            .route(
                "/graph/v1.0/me/messages/{id}/attachments/{aid}/$value",
                web::get().to(attachments::value),
            )
            .route(
                "/outlook/api/v2.0/me/messages/{id}/attachments/{aid}/$value",
                web::get().to(attachments::value),
            )
            .route("/images/hero.svg", web::get().to(graph::image))
            .route("/tracker/open.gif", web::get().to(graph::tracker))
            .route("/owa/", web::get().to(idp::outlook_web))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                web::get().to(idp::discovery),
            )
            .route(
                "/{tenant}/.well-known/openid-configuration",
                web::get().to(idp::discovery_v1),
            )
            .route("/{tenant}/discovery/v2.0/keys", web::get().to(idp::keys))
            .route(
                "/{tenant}/oauth2/v2.0/authorize",
                web::get().to(idp::authorize),
            )
            .route(
                "/{tenant}/oauth2/v2.0/authorize",
                web::post().to(idp::choose),
            )
            .route("/{tenant}/oauth2/v2.0/token", web::post().to(idp::token))
            .route("/{tenant}/oauth2/v2.0/logout", web::get().to(idp::logout)),
    );
}
