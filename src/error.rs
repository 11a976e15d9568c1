//! Errors at the web boundary: each becomes a status and a friendly page.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use askama::Template;

use crate::auth::oidc::OidcError;
use crate::jwt::JwtError;
use crate::mail::MailError;
use crate::pages::{Chrome, ErrorView};
use crate::session::SessionError;

/// Status, title, detail, remote code, remote detail, request id, and the link to offer.
type PageParts<'a> = (
    StatusCode,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    (&'a str, &'a str),
);

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
    #[error("the session does not fit in a cookie ({0} bytes)")]
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
    /// The decision store cannot be used right now.
    #[error("the decision store is unavailable")]
    StoreDown,
    /// `?page=` is not a whole number from 1 to 50.
    #[error("no such Inbox page")]
    BadPage,
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
    /// Renders the page for this error; unexpected ones are logged with a reference.
    pub fn render(&self, chrome: Chrome) -> HttpResponse {
        let again = ("/signin", "Sign in again");
        let home = ("/", "Back to the home page");
        let mut retry_after = None;
        let reference;
        let (status, title, detail, code, remote, request_id, action): PageParts<'_> = match self {
            AppError::SignInUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Microsoft sign-in is unreachable right now",
                "We could not reach the Microsoft identity platform. Nothing is wrong with your account; please try again in a minute.",
                None,
                None,
                None,
                ("/signin", "Try again"),
            ),
            AppError::StateMissing | AppError::NoPendingSignIn | AppError::StateMismatch => (
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid here",
                "The answer from Microsoft does not belong to a sign-in started in this browser, or it was already used. For your safety we ignored it. Start again and it will work.",
                None,
                None,
                None,
                again,
            ),
            AppError::SignInExpired => (
                StatusCode::BAD_REQUEST,
                "This sign-in took too long",
                "Sign-in requests expire after ten minutes. Please start again.",
                None,
                None,
                None,
                again,
            ),
            AppError::CodeMissing => (
                StatusCode::BAD_REQUEST,
                "Microsoft sent no authorization code",
                "The sign-in answer was incomplete. Please start again.",
                None,
                None,
                None,
                again,
            ),
            AppError::Provider { code, description } => (
                StatusCode::BAD_REQUEST,
                if code == "access_denied" {
                    "Sign-in was cancelled"
                } else {
                    "Microsoft could not sign you in"
                },
                "Microsoft returned an error instead of signing you in.",
                Some(code.as_str()),
                description.as_deref(),
                None,
                again,
            ),
            AppError::TokenRefused { code, description } => (
                StatusCode::BAD_REQUEST,
                "Microsoft refused to complete the sign-in",
                "The sign-in code could not be redeemed (it may have been used already, or expired). Please start again.",
                Some(code.as_str()),
                description.as_deref(),
                None,
                again,
            ),
            AppError::TokenUnusable(_) => (
                StatusCode::BAD_GATEWAY,
                "Microsoft's answer could not be read",
                "The token endpoint answered with something we could not use. Please try again.",
                None,
                None,
                None,
                again,
            ),
            AppError::IdToken(_) => (
                StatusCode::UNAUTHORIZED,
                "We could not verify your sign-in",
                "The identity token did not pass verification (signature, issuer, audience, lifetime or nonce), so we did not sign you in.",
                None,
                None,
                None,
                again,
            ),
            AppError::SessionStoreDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable for now",
                "We cannot reach the store that keeps sign-in sessions. Nothing is wrong with your account; please try again in a minute.",
                None,
                None,
                None,
                ("/", "Back to the home page"),
            ),
            AppError::SessionTooBig(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your sign-in is too large for a cookie",
                "Microsoft issued a token too large to keep in a browser cookie (browsers keep at most 4 KB). The administrator of this app can fix this by setting SESSION_STORE=redis, which keeps sessions on the server.",
                None,
                None,
                None,
                home,
            ),
            AppError::Mail(e) => {
                let cid = Some(e.client_request_id());
                match e {
                    MailError::Throttled {
                        retry_after_secs, ..
                    } => {
                        retry_after = Some(retry_after_secs.unwrap_or(30));
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Microsoft is throttling us",
                            "Too many requests reached your mailbox at once.",
                            None,
                            None,
                            cid,
                            ("/mail", "Try again"),
                        )
                    }
                    MailError::Timeout { .. } => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "Your mailbox did not answer in time",
                        "The mail service took too long to answer. This is usually temporary.",
                        None,
                        None,
                        cid,
                        ("/mail", "Try again"),
                    ),
                    MailError::Upstream { code, .. } => (
                        StatusCode::BAD_GATEWAY,
                        "Your mailbox could not be read",
                        "The mail service answered with an error.",
                        code.as_deref(),
                        None,
                        cid,
                        ("/mail", "Try again"),
                    ),
                    MailError::Malformed { .. } => (
                        StatusCode::BAD_GATEWAY,
                        "Your mailbox sent something we could not read",
                        "The mail service answered, but not with the messages we asked for.",
                        None,
                        None,
                        cid,
                        ("/mail", "Try again"),
                    ),
                    MailError::NotFound { .. } => (
                        StatusCode::NOT_FOUND,
                        "This message no longer exists",
                        "It may have been deleted, or moved somewhere this app cannot see.",
                        None,
                        None,
                        None,
                        ("/mail", "Back to your Inbox"),
                    ),
                    MailError::Unreachable { .. } | MailError::Unauthorized { .. } => (
                        StatusCode::BAD_GATEWAY,
                        "Your mailbox could not be reached",
                        "We could not connect to the mail service.",
                        None,
                        None,
                        cid,
                        ("/mail", "Try again"),
                    ),
                }
            }
            AppError::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "This request did not come from this site",
                "For your safety, actions that change something must start from a page of this app. Go back and try again.",
                None,
                None,
                None,
                home,
            ),
            AppError::SendingOff => (
                StatusCode::NOT_FOUND,
                "Sending cards is not set up here",
                "This deployment does not send Actionable Message cards (it needs ACTION_ORIGINATOR and Microsoft Graph).",
                None,
                None,
                None,
                home,
            ),
            AppError::StoreDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Expenses cannot be saved right now",
                "The store that keeps expense decisions is unavailable. Please try again in a minute.",
                None,
                None,
                None,
                home,
            ),
            AppError::BadPage => (
                StatusCode::BAD_REQUEST,
                "There is no such page of your Inbox",
                "Inbox pages are numbered from 1 (the newest ten messages) to 50.",
                None,
                None,
                None,
                ("/mail", "Go to your Inbox"),
            ),
            AppError::NoSuchMessage => (
                StatusCode::NOT_FOUND,
                "There is no such message",
                "This address does not name a message.",
                None,
                None,
                None,
                ("/mail", "Go to your Inbox"),
            ),
            AppError::ConsentRequired { .. } => (
                StatusCode::FORBIDDEN,
                "An administrator must approve this app",
                "Your organization does not let people approve apps that read mail on their own. An administrator of your Microsoft Entra tenant can approve it for everyone with the link below; after that, sign in again.",
                None,
                None,
                None,
                again,
            ),
            AppError::AdminConsentGranted => (
                StatusCode::OK,
                "The app is approved for your organization",
                "An administrator granted consent for the whole tenant. Everyone in it can now sign in.",
                None,
                None,
                None,
                ("/signin", "Sign in"),
            ),
            AppError::MailRefused { code, message } => (
                StatusCode::BAD_GATEWAY,
                "Microsoft refused access to your mailbox",
                "You signed in, but the mail service refused the new access token, so signing in again would not help. This is usually a configuration problem (SCOPES that do not match MAIL_API, or an API that is no longer available): please tell the administrator of this app what Microsoft answered.",
                code.as_deref(),
                message.as_deref(),
                None,
                home,
            ),
            AppError::Internal(_) => {
                reference = uuid::Uuid::new_v4().to_string();
                tracing::error!(error = %self, %reference, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side",
                    "The error has been logged.",
                    None,
                    None,
                    Some(reference.as_str()),
                    home,
                )
            }
        };
        if status.is_server_error() && !matches!(self, AppError::Internal(_))
            || matches!(self, AppError::IdToken(_))
        {
            tracing::warn!(error = %self, "request failed");
        }
        let throttle_detail;
        let detail = match retry_after {
            Some(secs) => {
                throttle_detail =
                    format!("{detail} Microsoft asks us to wait: try again in {secs} s.");
                throttle_detail.as_str()
            }
            None => detail,
        };
        let admin_link = match self {
            AppError::ConsentRequired { admin_consent_url } if !admin_consent_url.is_empty() => {
                Some(admin_consent_url.as_str())
            }
            _ => None,
        };
        let view = ErrorView {
            admin_link,
            chrome,
            status: status.as_u16(),
            title,
            detail,
            code,
            remote_detail: remote,
            request_id,
            action_href: action.0,
            action_label: action.1,
        };
        let mut response = html(status, &view);
        if let Some(secs) = retry_after
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, v);
        }
        response
    }
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
