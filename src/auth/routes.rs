//! `/signin`, `/gettoken` and `/signout`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::oidc::{Discovered, OidcError, consent_missing};
use crate::clock::now;
use crate::error::AppError;
use crate::http::redirect;
use crate::jwt::id_token::{IdTokenRules, verify_id_token};
use crate::logging::clean;
use crate::session::{PendingSignIn, SignedInUser, TypedSession};
use crate::settings::SessionStore;
use crate::sharepoint::{self, SharePointUser};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct SignInQuery {
    prompt: Option<String>,
}

/// Starts the authorization-code flow. `?prompt=none` (used after an access
/// token expired) tries a silent sign-in with the remembered `login_hint`.
pub async fn signin(
    state: web::Data<AppState>,
    session: TypedSession,
    q: web::Query<SignInQuery>,
) -> HttpResponse {
    if session.store_unavailable() || !state.sessions_available().await {
        return AppError::SessionStoreDown.render(state.chrome(&session));
    }
    let discovered = match state.provider.discovered().await {
        Ok(d) => d,
        Err(e) => return AppError::from(e).render(state.chrome(&session)),
    };
    let hint = match q.prompt.as_deref() {
        Some("none") => session.login_hint(),
        _ => None,
    };
    let challenge = session.take_claims_challenge();
    let request =
        state
            .provider
            .authorization_request(&discovered, hint.as_deref(), challenge.as_deref());
    let pending = PendingSignIn {
        state: request.state,
        nonce: request.nonce,
        pkce_verifier: request.pkce_verifier,
        created_at: now(),
        silent: hint.is_some(),
    };
    if let Err(e) = session.set_pending(&pending) {
        return AppError::from(e).render(state.chrome(&session));
    }
    redirect(request.url.as_str())
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// The admin-consent answer: `admin_consent=True&tenant=…`.
    admin_consent: Option<String>,
    tenant: Option<String>,
}

/// The redirect URI: checks `state`, redeems the code, verifies the ID token.
pub async fn gettoken(
    state: web::Data<AppState>,
    session: TypedSession,
    q: web::Query<Callback>,
) -> HttpResponse {
    match finish_sign_in(&state, &session, q.into_inner()).await {
        Ok(to) => redirect(to),
        Err(AppError::ConsentRequired { .. }) => {
            // A fresh state for the admin-consent round trip, checked on return.
            let consent_state = oauth2::CsrfToken::new_random().secret().clone();
            if let Err(e) = session.set_admin_consent_state(&consent_state) {
                return AppError::from(e).render(state.chrome(&session));
            }
            AppError::ConsentRequired {
                admin_consent_url: state.provider.admin_consent_url(&consent_state).to_string(),
            }
            .render(state.chrome(&session))
        }
        Err(e) => e.render(state.chrome(&session)),
    }
}

/// Silent sign-in failures that mean "ask the person".
fn needs_interaction(error: &str) -> bool {
    matches!(
        error,
        "login_required" | "interaction_required" | "consent_required"
    )
}

fn clip(s: String, max: usize) -> String {
    s.chars().take(max).collect()
}

async fn finish_sign_in(
    state: &AppState,
    session: &TypedSession,
    q: Callback,
) -> Result<&'static str, AppError> {
    if session.store_unavailable() {
        return Err(AppError::SessionStoreDown);
    }
    let state_matches = |expected: &str| {
        q.state.as_deref().is_some_and(|s| {
            aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), expected.as_bytes())
                .is_ok()
        })
    };

    if q.admin_consent.is_some() {
        // An administrator's answer to the consent link: only for the link we made.
        let expected = session.admin_consent_state();
        if !expected.as_deref().is_some_and(state_matches) {
            return Err(AppError::StateMismatch);
        }
        session.consume_admin_consent_state();
        return match q.error {
            None if q
                .admin_consent
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true")) =>
            {
                tracing::info!(tenant = ?q.tenant.as_deref().map(clean), "admin consent granted");
                Err(AppError::AdminConsentGranted)
            }
            error => Err(AppError::Provider {
                code: clip(
                    error.unwrap_or_else(|| "admin_consent_not_granted".into()),
                    100,
                ),
                description: q.error_description.map(|d| clip(d, 1000)),
            }),
        };
    }

    if q.state.is_none() {
        return Err(AppError::StateMissing);
    }
    // Only a callback whose state matches may spend (or speak for) the
    // pending sign-in: a forged one neither cancels it nor shows its text.
    let pending = session.pending().ok_or(AppError::NoPendingSignIn)?;
    if !state_matches(&pending.state) {
        return Err(AppError::StateMismatch);
    }
    session.consume_pending();

    if let Some(error) = q.error {
        if pending.silent && needs_interaction(&error) {
            return Ok("/signin");
        }
        if consent_missing(&error, q.error_description.as_deref()) {
            return Err(AppError::ConsentRequired {
                admin_consent_url: String::new(),
            });
        }
        return Err(AppError::Provider {
            code: clip(error, 100),
            description: q.error_description.map(|d| clip(d, 1000)),
        });
    }
    if pending.expired(now()) {
        return Err(AppError::SignInExpired);
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or(AppError::CodeMissing)?;

    let discovered = state.provider.discovered().await?;
    let tokens = state
        .provider
        .exchange_code(&discovered, &code, &pending.pkce_verifier)
        .await?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| AppError::TokenUnusable("the answer has no id_token".into()))?;
    let claims = verify_id_token(
        &state.verifier,
        id_token,
        &IdTokenRules {
            jwks_url: &discovered.metadata.jwks_uri,
            client_id: state.provider.client_id(),
            issuer: &discovered.metadata.issuer,
            nonce: &pending.nonce,
        },
    )
    .await?;

    use oauth2::TokenResponse as _;
    let mut refresh_token = tokens.refresh_token().map(|t| t.secret().clone());
    let sharepoint = match &state.settings.sharepoint_site {
        None => None,
        Some(site) => {
            let (user, rotated) =
                sharepoint_user(state, &discovered, site, refresh_token.as_deref()).await;
            // Microsoft may rotate the refresh token on use: keep the newest.
            refresh_token = rotated.or(refresh_token);
            Some(user)
        }
    };
    let redis = state.settings.session_store == SessionStore::Redis;
    let email = claims.email().unwrap_or_default().to_owned();
    let user = SignedInUser {
        name: claims.name.clone().unwrap_or_else(|| email.clone()),
        email,
        access_token: tokens.access_token().secret().clone(),
        expires_at: crate::auth::oidc::token_expiry(tokens.expires_in()),
        sharepoint,
        // Only the server-side store keeps the refresh token; a cookie never does.
        refresh_token: refresh_token.filter(|_| redis),
        person: match (&claims.tid, &claims.oid) {
            (Some(tid), Some(oid)) => Some(format!("{tid}/{oid}")),
            _ => None,
        },
    };
    session.sign_in(&user, state.cookie.as_ref())?;
    tracing::info!(oid = ?claims.oid, tid = ?claims.tid, "signed in");
    Ok("/mail")
}

/// Redeems the refresh token for a SharePoint token (one resource per token on
/// the v2.0 endpoint) and reads the site's current user. The SharePoint token
/// is used once and dropped; failures become a one-line reason.
async fn sharepoint_user(
    state: &AppState,
    discovered: &Discovered,
    site: &url::Url,
    refresh_token: Option<&str>,
) -> (SharePointUser, Option<String>) {
    use oauth2::TokenResponse as _;
    let Some(refresh_token) = refresh_token else {
        let user = SharePointUser::Unavailable {
            reason: "No refresh token was issued, so no SharePoint token could be requested (add offline_access to SCOPES).".into(),
        };
        return (user, None);
    };
    match state
        .provider
        .refresh(discovered, refresh_token, &[sharepoint::scope_for(site)])
        .await
    {
        Ok(tokens) => (
            sharepoint::current_user(&state.http, site, tokens.access_token().secret()).await,
            tokens.refresh_token().map(|t| t.secret().clone()),
        ),
        Err(OidcError::Refused { error, .. }) => {
            tracing::info!(%error, "the SharePoint token was refused");
            (sharepoint::token_refused(&error), None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SharePoint token");
            (sharepoint::token_refused(""), None)
        }
    }
}

/// Clears the session and signs out at the provider (RP-initiated logout).
pub async fn signout(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    if let Some(user) = session.user() {
        // What the server kept for this person goes with the session.
        state.mail.reader.forget(&user.person_key());
        tokio::spawn(crate::notifications::upkeep::drop_subscription(
            state.clone().into_inner(),
            user,
        ));
    }
    session.purge();
    let end_session = state
        .provider
        .discovered()
        .await
        .ok()
        .and_then(|d| d.metadata.end_session_endpoint.clone());
    match end_session {
        Some(mut url) => {
            url.query_pairs_mut()
                .append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}/", state.settings.public_base()),
                )
                .append_pair("client_id", state.provider.client_id());
            redirect(url.as_str())
        }
        None => redirect("/"),
    }
}
