//! Errors at the web boundary: each becomes a status and a friendly page.
//!
//! Every page is an [`ErrorPage`]: a status, a title and a sentence, plus
//! only what differs from the defaults (a code from the remote side, a
//! reference to quote, the link to offer, a `Retry-After`).

use std::borrow::Cow;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use askama::Template;

use crate::auth::oidc::OidcError;
use crate::jwt::JwtError;
use crate::mail::MailError;
use crate::pages::{Chrome, ErrorView};
use crate::session::SessionError;

const HOME: (&str, &str) = ("/", "Back to the home page");
const SIGN_IN_AGAIN: (&str, &str) = ("/signin", "Sign in again");
const INBOX_AGAIN: (&str, &str) = ("/mail", "Try again");

/// One error page: what it says and the one way forward it offers.
pub struct ErrorPage<'a> {
    status: StatusCode,
    title: &'a str,
    detail: Cow<'a, str>,
    code: Option<&'a str>,
    remote: Option<&'a str>,
    reference: Option<&'a str>,
    action: (&'a str, &'a str),
    admin_link: Option<&'a str>,
    retry_after: Option<u64>,
}

impl<'a> ErrorPage<'a> {
    /// A page with `status`, `title` and `detail`, offering the home page.
    pub fn new(status: StatusCode, title: &'a str, detail: impl Into<Cow<'a, str>>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            code: None,
            remote: None,
            reference: None,
            action: HOME,
            admin_link: None,
            retry_after: None,
        }
    }

    /// The link the page offers instead of the home page.
    pub fn action(mut self, href: &'a str, label: &'a str) -> Self {
        self.action = (href, label);
        self
    }

    /// A code from the remote side (`access_denied`, `ErrorItemNotFound`).
    pub fn code(mut self, code: Option<&'a str>) -> Self {
        self.code = code;
        self
    }

    /// Text from the remote side (escaped like everything else).
    pub fn remote(mut self, text: Option<&'a str>) -> Self {
        self.remote = text;
        self
    }

    /// A reference to quote to an administrator (a `client-request-id`).
    pub fn reference(mut self, reference: Option<&'a str>) -> Self {
        self.reference = reference;
        self
    }

    /// The admin-consent link.
    pub fn admin_link(mut self, link: Option<&'a str>) -> Self {
        self.admin_link = link;
        self
    }

    /// Asks the client to wait `secs` (a `Retry-After` header, and a sentence).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The page as a response.
    pub fn render(self, chrome: Chrome) -> HttpResponse {
        let detail = match self.retry_after {
            Some(secs) => Cow::Owned(format!("{} Please try again in {secs} s.", self.detail)),
            None => self.detail,
        };
        let view = ErrorView {
            admin_link: self.admin_link,
            chrome,
            status: self.status.as_u16(),
            title: self.title,
            detail: &detail,
            code: self.code,
            remote_detail: self.remote,
            request_id: self.reference,
            action_href: self.action.0,
            action_label: self.action.1,
        };
        let mut response = html(self.status, &view);
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        response
    }
}

/// Everything a page handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the identity platform is unreachable: {0}")]
    SignInUnavailable(String),
    #[error("the sign-in response has no state")]
    StateMissing,
    #[error("no sign-in is pending in this browser, or it was already used")]
    NoPendingSignIn,
    #[error("the sign-in response's state does not match this browser's")]
    StateMismatch,
    #[error("the sign-in request expired")]
    SignInExpired,
    #[error("the sign-in response has no code")]
    CodeMissing,
    #[error("Microsoft answered {code}")]
    Provider {
        code: String,
        description: Option<String>,
    },
    #[error("the token endpoint refused: {code}")]
    TokenRefused {
        code: String,
        description: Option<String>,
    },
    #[error("the token endpoint answer was unusable: {0}")]
    TokenUnusable(String),
    #[error("the ID token was rejected: {0}")]
    IdToken(#[from] JwtError),
    #[error("the session store is unavailable")]
    SessionStoreDown,
    #[error("the session does not fit in the cookies a browser keeps ({0} needed)")]
    SessionTooBig(usize),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A state-changing POST from another origin (or with no `Origin`).
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// Cards are not sent here (no `ACTION_ORIGINATOR`, or `MAIL_API=outlook`).
    #[error("sending cards is off")]
    SendingOff,
    /// More test cards than a person may send in a minute.
    #[error("too many card sends")]
    TooManySends { retry_after_secs: u64 },
    /// The decision store cannot be used right now.
    #[error("the decision store is unavailable")]
    StoreDown,
    /// `?page=` is not a whole number from 1 to 50.
    #[error("no such Inbox page")]
    BadPage,
    /// `?q=` is empty or too long.
    #[error("no such search")]
    BadSearch,
    /// An attachment id of a shape no attachment has, or none by that id.
    #[error("no such attachment")]
    NoSuchAttachment,
    /// A message id of a shape no message has (checked before any call).
    #[error("no such message id")]
    NoSuchMessage,
    /// The tenant does not let this person consent; an administrator must.
    #[error("consent is missing")]
    ConsentRequired { admin_consent_url: String },
    #[error("an administrator granted consent")]
    AdminConsentGranted,
    /// The mail API refused a token fresh from sign-in: no redirect loop, say what it answered.
    #[error("the mail API refused the access token again right after sign-in")]
    MailRefused {
        code: Option<String>,
        message: Option<String>,
    },
}

impl From<OidcError> for AppError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unavailable(m) => AppError::SignInUnavailable(m),
            OidcError::Refused { error, description } => AppError::TokenRefused {
                code: error,
                description,
            },
            OidcError::BadResponse(m) => AppError::TokenUnusable(m),
        }
    }
}

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::TooBig(n) => AppError::SessionTooBig(n),
            SessionError::Write(m) => AppError::Internal(m),
        }
    }
}

impl AppError {
    /// The page for this error.
    pub fn page(&self) -> ErrorPage<'_> {
        use StatusCode as S;
        match self {
            AppError::SignInUnavailable(_) => ErrorPage::new(
                S::SERVICE_UNAVAILABLE,
                "Microsoft sign-in is unreachable right now",
                "We could not reach the Microsoft identity platform. Nothing is wrong with your account; please try again in a minute.",
            )
            .action("/signin", "Try again"),
            AppError::StateMissing | AppError::NoPendingSignIn | AppError::StateMismatch => ErrorPage::new(
                S::BAD_REQUEST,
                "This sign-in link is not valid here",
                "The answer from Microsoft does not belong to a sign-in started in this browser, or it was already used. For your safety we ignored it. Start again and it will work.",
            )
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::SignInExpired => ErrorPage::new(
                S::BAD_REQUEST,
                "This sign-in took too long",
                "Sign-in requests expire after ten minutes. Please start again.",
            )
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::CodeMissing => ErrorPage::new(
                S::BAD_REQUEST,
                "Microsoft sent no authorization code",
                "The sign-in answer was incomplete. Please start again.",
            )
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::Provider { code, description } => ErrorPage::new(
                S::BAD_REQUEST,
                if code == "access_denied" {
                    "Sign-in was cancelled"
                } else {
                    "Microsoft could not sign you in"
                },
                "Microsoft returned an error instead of signing you in.",
            )
            .code(Some(code))
            .remote(description.as_deref())
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::TokenRefused { code, description } => ErrorPage::new(
                S::BAD_REQUEST,
                "Microsoft refused to complete the sign-in",
                "The sign-in code could not be redeemed (it may have been used already, or expired). Please start again.",
            )
            .code(Some(code))
            .remote(description.as_deref())
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::TokenUnusable(_) => ErrorPage::new(
                S::BAD_GATEWAY,
                "Microsoft's answer could not be read",
                "The token endpoint answered with something we could not use. Please try again.",
            )
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::IdToken(_) => ErrorPage::new(
                S::UNAUTHORIZED,
                "We could not verify your sign-in",
                "The identity token did not pass verification (signature, issuer, audience, lifetime or nonce), so we did not sign you in.",
            )
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::SessionStoreDown => ErrorPage::new(
                S::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable for now",
                "We cannot reach the store that keeps sign-in sessions. Nothing is wrong with your account; please try again in a minute.",
            ),
            AppError::SessionTooBig(_) => ErrorPage::new(
                S::PAYLOAD_TOO_LARGE,
                "Your sign-in is too large for cookies",
                "Microsoft issued a token too large to keep in this browser's cookies, even split over several. The administrator of this app can fix this by setting SESSION_STORE=redis, which keeps sessions on the server.",
            ),
            AppError::Mail(e) => mail_page(e),
            AppError::CrossOrigin => ErrorPage::new(
                S::FORBIDDEN,
                "This request did not come from this site",
                "For your safety, actions that change something must start from a page of this app. Go back and try again.",
            ),
            AppError::SendingOff => ErrorPage::new(
                S::NOT_FOUND,
                "Sending cards is not set up here",
                "This deployment does not send Actionable Message cards (it needs ACTION_ORIGINATOR and Microsoft Graph).",
            ),
            AppError::TooManySends { retry_after_secs } => ErrorPage::new(
                S::TOO_MANY_REQUESTS,
                "That is enough test cards for now",
                format!(
                    "You can send at most {} test cards a minute.",
                    crate::cards::SENDS_PER_MINUTE
                ),
            )
            .retry_after(*retry_after_secs),
            AppError::StoreDown => ErrorPage::new(
                S::SERVICE_UNAVAILABLE,
                "Expenses cannot be saved right now",
                "The store that keeps expense decisions is unavailable. Please try again in a minute.",
            ),
            AppError::BadPage => ErrorPage::new(
                S::BAD_REQUEST,
                "There is no such page of your Inbox",
                "Inbox pages are numbered from 1 (the newest ten messages) to 50.",
            )
            .action("/mail", "Go to your Inbox"),
            AppError::BadSearch => ErrorPage::new(
                S::BAD_REQUEST,
                "That search cannot be run",
                format!(
                    "Type between 1 and {} characters to search your mail.",
                    crate::mail::MAX_QUERY_CHARS
                ),
            )
            .action("/mail", "Go to your Inbox"),
            AppError::NoSuchMessage => ErrorPage::new(
                S::NOT_FOUND,
                "There is no such message",
                "This address does not name a message.",
            )
            .action("/mail", "Go to your Inbox"),
            AppError::NoSuchAttachment => ErrorPage::new(
                S::NOT_FOUND,
                "There is no such attachment",
                "This message has no attachment at this address (it may have been removed).",
            )
            .action("/mail", "Go to your Inbox"),
            AppError::ConsentRequired { admin_consent_url } => ErrorPage::new(
                S::FORBIDDEN,
                "An administrator must approve this app",
                "Your organization does not let people approve apps that read mail on their own. An administrator of your Microsoft Entra tenant can approve it for everyone with the link below; after that, sign in again.",
            )
            .admin_link(Some(admin_consent_url.as_str()).filter(|l| !l.is_empty()))
            .action(SIGN_IN_AGAIN.0, SIGN_IN_AGAIN.1),
            AppError::AdminConsentGranted => ErrorPage::new(
                S::OK,
                "The app is approved for your organization",
                "An administrator granted consent for the whole tenant. Everyone in it can now sign in.",
            )
            .action("/signin", "Sign in"),
            AppError::MailRefused { code, message } => ErrorPage::new(
                S::BAD_GATEWAY,
                "Microsoft refused access to your mailbox",
                "You signed in, but the mail service refused the new access token, so signing in again would not help. This is usually a configuration problem (SCOPES that do not match MAIL_API, or an API that is no longer available): please tell the administrator of this app what Microsoft answered.",
            )
            .code(code.as_deref())
            .remote(message.as_deref()),
            AppError::Internal(_) => ErrorPage::new(
                S::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side",
                "The error has been logged.",
            ),
        }
    }

    /// Renders the page for this error; unexpected ones are logged with a reference.
    pub fn render(&self, chrome: Chrome) -> HttpResponse {
        let page = self.page();
        if let AppError::Internal(_) = self {
            let reference = uuid::Uuid::new_v4().to_string();
            tracing::error!(error = %self, %reference, "internal error");
            return page.reference(Some(&reference)).render(chrome);
        }
        if page.status().is_server_error() || matches!(self, AppError::IdToken(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        page.render(chrome)
    }
}

/// The page for a failed mail call, with the `client-request-id` to quote.
fn mail_page(e: &MailError) -> ErrorPage<'_> {
    use StatusCode as S;
    let cid = Some(e.client_request_id());
    let page = match e {
        MailError::Throttled {
            retry_after_secs, ..
        } => {
            return ErrorPage::new(
                S::SERVICE_UNAVAILABLE,
                "Microsoft is throttling us",
                "Too many requests reached your mailbox at once. Microsoft asks us to wait.",
            )
            .reference(cid)
            .action(INBOX_AGAIN.0, INBOX_AGAIN.1)
            .retry_after(retry_after_secs.unwrap_or(30));
        }
        MailError::Timeout { .. } => ErrorPage::new(
            S::GATEWAY_TIMEOUT,
            "Your mailbox did not answer in time",
            "The mail service took too long to answer. This is usually temporary.",
        ),
        MailError::Upstream { code, .. } => ErrorPage::new(
            S::BAD_GATEWAY,
            "Your mailbox could not be read",
            "The mail service answered with an error.",
        )
        .code(code.as_deref()),
        MailError::Malformed { .. } | MailError::SyncReset { .. } => ErrorPage::new(
            S::BAD_GATEWAY,
            "Your mailbox sent something we could not read",
            "The mail service answered, but not with the messages we asked for.",
        ),
        MailError::NotFound { .. } => {
            return ErrorPage::new(
                S::NOT_FOUND,
                "This message no longer exists",
                "It may have been deleted, or moved somewhere this app cannot see.",
            )
            .action("/mail", "Back to your Inbox");
        }
        MailError::Unreachable { .. } | MailError::Unauthorized { .. } => ErrorPage::new(
            S::BAD_GATEWAY,
            "Your mailbox could not be reached",
            "We could not connect to the mail service.",
        ),
    };
    page.reference(cid).action(INBOX_AGAIN.0, INBOX_AGAIN.1)
}

/// Renders a template as an HTML response with `status`.
pub fn html(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(body) => HttpResponse::build(status)
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError()
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("Something went wrong on our side.")
        }
    }
}
