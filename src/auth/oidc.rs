//! OpenID Connect with the Microsoft identity platform: discovery, the
//! authorization request, the code exchange and the refresh grant.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, TokenUrl,
};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::http::{CappedClient, MAX_TOKEN_RESPONSE, read_limited};
use crate::settings::Settings;

/// After a failed discovery, wait this long before trying again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// The parts of the discovery document the app uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// May hold the `{tenantid}` placeholder (multi-tenant authorities).
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    pub end_session_endpoint: Option<Url>,
}

#[derive(Debug, Deserialize)]
struct V1Metadata {
    issuer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity platform could not be reached: {0}")]
    Unavailable(String),
    /// The token endpoint refused (e.g. `invalid_grant` for a replayed code).
    #[error("the token endpoint refused the request: {error}")]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the token endpoint gave an answer we cannot use: {0}")]
    BadResponse(String),
}

/// A token endpoint answer, tolerant of `expires_in` sent as a string.
#[derive(Debug, Deserialize, Serialize)]
pub struct TokenResponse {
    access_token: AccessToken,
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    refresh_token: Option<RefreshToken>,
    #[serde(rename = "scope", default, deserialize_with = "space_separated")]
    scopes: Option<Vec<Scope>>,
    id_token: Option<String>,
}

impl TokenResponse {
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_deref()
    }
}

impl oauth2::TokenResponse for TokenResponse {
    type TokenType = BasicTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(u64),
        Text(String),
    }
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(Value::Text(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn space_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Scope>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| {
        s.split_whitespace()
            .map(|p| Scope::new(p.to_owned()))
            .collect()
    }))
}

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The fresh secrets of one authorization request.
pub struct AuthorizationRequest {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The identity platform: discovery (lazy, retried), and the OAuth calls.
pub struct Provider {
    http: reqwest::Client,
    /// `AUTHORITY`, for the admin-consent link.
    authority: Url,
    discovery_url: Url,
    v1_discovery_url: Url,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    scopes: Vec<String>,
    cached: RwLock<Option<Arc<Discovered>>>,
    v1_issuer: RwLock<Option<String>>,
    last_attempt: RwLock<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

/// Discovery metadata and the OAuth client built from it.
pub struct Discovered {
    pub metadata: Metadata,
    client: OAuthClient,
}

impl Provider {
    pub fn new(settings: &Settings, authority: &Url, http: reqwest::Client) -> Self {
        let base = authority.as_str().trim_end_matches('/');
        let parse = |s: String| Url::parse(&s).unwrap_or_else(|_| authority.clone());
        Self {
            http,
            authority: authority.clone(),
            discovery_url: parse(format!("{base}/v2.0/.well-known/openid-configuration")),
            v1_discovery_url: parse(format!("{base}/.well-known/openid-configuration")),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.expose().to_owned(),
            redirect_uri: settings.redirect_uri(),
            scopes: settings.scopes.clone(),
            cached: RwLock::new(None),
            v1_issuer: RwLock::new(None),
            last_attempt: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared client, reading token answers through the size cap.
    fn capped(&self) -> CappedClient<'_> {
        CappedClient {
            http: &self.http,
            limit: MAX_TOKEN_RESPONSE,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The discovery metadata, fetched on first use and retried after failures
    /// (at most every few seconds), so an unreachable authority at start-up
    /// does not stop the app.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = read(&self.cached) {
            return Ok(d);
        }
        let _guard = self.fetching.lock().await;
        if let Some(d) = read(&self.cached) {
            return Ok(d);
        }
        if read(&self.last_attempt).is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
            return Err(OidcError::Unavailable(
                "the last attempt failed moments ago".into(),
            ));
        }
        write(&self.last_attempt, Some(Instant::now()));
        let metadata: Metadata = self.get_json(&self.discovery_url).await.map_err(|e| {
            tracing::warn!(url = %self.discovery_url, error = %e, "OpenID discovery failed");
            OidcError::Unavailable(e)
        })?;
        let client = self.oauth_client(&metadata)?;
        let discovered = Arc::new(Discovered { metadata, client });
        write(&self.cached, Some(discovered.clone()));
        tracing::info!(issuer = %discovered.metadata.issuer, "OpenID discovery succeeded");
        Ok(discovered)
    }

    /// The v1 issuer template (`https://sts.windows.net/{tenantid}/` for
    /// Microsoft), as last read from the v1 discovery document; `None` until
    /// that succeeded. Never fetches: [`Provider::refresh`] does, at start-up
    /// and in the background, so the action endpoint makes no outbound call.
    pub fn v1_issuer(&self) -> Option<String> {
        read(&self.v1_issuer)
    }

    /// Fetches the v2 and v1 discovery documents again and installs what
    /// succeeded; a failure keeps what was known. True when both are known.
    pub async fn refresh_discovery(&self) -> bool {
        let (v2, v1) = tokio::join!(self.refresh_v2_once(), self.refresh_v1());
        v2 && v1
    }

    /// The v2 document, fetched under the lock `discovered` takes on a cold
    /// cache: a request arriving while this fetch is under way waits for it,
    /// and a request that got there first is not followed by a second fetch
    /// of the same document. True when a document is known.
    async fn refresh_v2_once(&self) -> bool {
        let was_cold = read(&self.cached).is_none();
        let guard = self.fetching.lock().await;
        if !(was_cold && read(&self.cached).is_some()) {
            self.refresh_v2().await;
        }
        drop(guard);
        read(&self.cached).is_some()
    }

    /// The v1 issuer; true when one is known.
    async fn refresh_v1(&self) -> bool {
        match self.get_json::<V1Metadata>(&self.v1_discovery_url).await {
            Ok(m) => write(&self.v1_issuer, Some(m.issuer)),
            Err(e) => {
                tracing::warn!(url = %self.v1_discovery_url, error = %e, "v1 discovery failed; keeping what was known")
            }
        }
        read(&self.v1_issuer).is_some()
    }

    /// Fetches the v2 document and installs it; a failure keeps what was known.
    async fn refresh_v2(&self) {
        match self.get_json::<Metadata>(&self.discovery_url).await {
            Ok(metadata) => match self.oauth_client(&metadata) {
                Ok(client) => {
                    let fresh = Arc::new(Discovered { metadata, client });
                    let changed = read(&self.cached)
                        .is_none_or(|old| old.metadata.issuer != fresh.metadata.issuer);
                    write(&self.cached, Some(fresh.clone()));
                    if changed {
                        tracing::info!(issuer = %fresh.metadata.issuer, "OpenID discovery succeeded");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the discovery document is unusable"),
            },
            Err(e) => {
                tracing::warn!(url = %self.discovery_url, error = %e, "OpenID discovery failed; keeping what was known")
            }
        }
    }

    /// Keeps discovery and the signing keys fresh for the life of the
    /// process: at once, then retried with a growing pause while anything
    /// fails, and every `period` once all of it succeeded. `ready` is marked
    /// the first time v2 and v1 discovery and the keys (the identity
    /// platform's, and `extra_keys` when the legacy action scheme needs
    /// another set) are all loaded.
    pub async fn keep_fresh(
        &self,
        keys: &crate::jwt::JwksCache,
        extra_keys: Option<&Url>,
        period: Duration,
        ready: &crate::ready::Readiness,
    ) {
        let mut pause = Duration::from_millis(250);
        loop {
            // v2 discovery then its keys, beside v1 discovery and the legacy
            // keys: the start waits for the longest of the three, not their sum.
            let v2_and_keys = async {
                self.refresh_v2_once().await
                    && match read(&self.cached) {
                        Some(d) => keys.load(&d.metadata.jwks_uri).await,
                        None => false,
                    }
            };
            let extra = async {
                match extra_keys {
                    Some(url) => keys.load(url).await,
                    None => true,
                }
            };
            let (v2, v1, extra) = tokio::join!(v2_and_keys, self.refresh_v1(), extra);
            let loaded = v2 && v1 && extra;
            if loaded {
                if !ready.is_loaded() {
                    tracing::info!("ready: discovery and signing keys are loaded");
                }
                ready.set_loaded();
                pause = Duration::from_millis(250);
                tokio::time::sleep(period).await;
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url) -> Result<T, String> {
        let request = self.http.get(url.clone());
        let response = crate::metrics::send(crate::metrics::Service::Identity, request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = read_limited(response, 256 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("not a discovery document: {e}"))
    }

    fn oauth_client(&self, m: &Metadata) -> Result<OAuthClient, OidcError> {
        let bad = |e: url::ParseError| OidcError::BadResponse(e.to_string());
        Ok(oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(m.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(m.token_endpoint.clone()))
            .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone()).map_err(bad)?))
    }

    /// The tenant-wide admin-consent link for this app's scopes
    /// (`{AUTHORITY}/v2.0/adminconsent`); the answer returns to `/gettoken`.
    pub fn admin_consent_url(&self, state: &str) -> Url {
        let mut url = self.authority.clone();
        url.set_path(&format!(
            "{}/v2.0/adminconsent",
            url.path().trim_end_matches('/')
        ));
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &admin_consent_scopes(&self.scopes))
            .append_pair("state", state);
        url
    }

    /// Builds the authorization request: `state`, `nonce` and a PKCE S256
    /// challenge, each fresh and random, and `claims` declaring that the app
    /// handles claims challenges (`cp1`), merged with `challenge` when a
    /// resource sent one. With `login_hint`, asks for a silent sign-in
    /// (`prompt=none`) first.
    pub fn authorization_request(
        &self,
        discovered: &Discovered,
        login_hint: Option<&str>,
        claims_challenge: Option<&str>,
    ) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random().secret().clone();
        let mut request = discovered
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.clone())
            .add_extra_param("response_mode", "query")
            .add_extra_param("claims", claims_request(claims_challenge));
        if let Some(hint) = login_hint {
            request = request
                .add_extra_param("prompt", "none")
                .add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state) = request.url();
        AuthorizationRequest {
            url,
            state: state.secret().clone(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Redeems an authorization code with the PKCE verifier and client secret.
    pub async fn exchange_code(
        &self,
        discovered: &Discovered,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<TokenResponse, OidcError> {
        discovered
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.capped())
            .await
            .map_err(token_error)
    }

    /// Redeems a refresh token (for a new access token, or one for another resource).
    pub async fn refresh(
        &self,
        discovered: &Discovered,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<TokenResponse, OidcError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        discovered
            .client
            .exchange_refresh_token(&token)
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .request_async(&self.capped())
            .await
            .map_err(token_error)
    }
}

/// When an access token expires: `expires_in` from now, 1 hour when absent,
/// clamped to [`MAX_TOKEN_LIFETIME_SECS`] (CAE tokens live up to 28 hours;
/// an absurd value from a faulty endpoint must not overflow or live forever).
pub fn token_expiry(expires_in: Option<std::time::Duration>) -> i64 {
    let secs = expires_in.map_or(3600, |d| d.as_secs());
    crate::clock::expiry(crate::clock::now(), secs, MAX_TOKEN_LIFETIME_SECS)
}

/// The longest access-token lifetime believed: 28 hours (continuous access
/// evaluation tokens live 20–28 h).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 28 * 3600;

/// The capability every sign-in declares: this app handles claims challenges.
const CP1: &str = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;

/// The `claims` parameter: `cp1`, deep-merged with a resource's challenge.
/// A challenge that is not a JSON object is ignored (the `cp1` request stands).
pub fn claims_request(challenge: Option<&str>) -> String {
    let mut claims: serde_json::Value = serde_json::from_str(CP1).unwrap_or_default();
    if let Some(serde_json::Value::Object(extra)) =
        challenge.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
    {
        merge(&mut claims, serde_json::Value::Object(extra));
    }
    claims.to_string()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Scopes for the admin-consent endpoint: resource-qualified (an unprefixed
/// scope means Graph), without the OpenID ones it does not take.
fn admin_consent_scopes(scopes: &[String]) -> String {
    scopes
        .iter()
        .filter(|s| {
            !matches!(
                s.as_str(),
                "openid" | "profile" | "email" | "offline_access"
            )
        })
        .map(|s| {
            if s.contains("://") {
                s.clone()
            } else {
                format!("https://graph.microsoft.com/{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when an authorize answer says consent is missing: `consent_required`,
/// or AADSTS65001 (no consent), 90094/90095 (admin approval required).
pub fn consent_missing(error: &str, description: Option<&str>) -> bool {
    error == "consent_required"
        || description.is_some_and(|d| {
            ["AADSTS65001", "AADSTS90094", "AADSTS90095"]
                .iter()
                .any(|code| d.contains(code))
        })
}

fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<E, BasicErrorResponse>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Refused {
            error: r.error().as_ref().to_owned(),
            description: r.error_description().cloned(),
        },
        RequestTokenError::Request(e) => OidcError::Unavailable(e.to_string()),
        RequestTokenError::Parse(e, _) => OidcError::BadResponse(e.to_string()),
        RequestTokenError::Other(e) => OidcError::BadResponse(e),
    }
}

fn read<T: Clone>(lock: &RwLock<Option<T>>) -> Option<T> {
    match lock.read() {
        Ok(v) => v.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<Option<T>>, value: Option<T>) {
    match lock.write() {
        Ok(mut v) => *v = value,
        Err(p) => *p.into_inner() = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claims_challenge_is_merged_with_cp1() {
        let merged: serde_json::Value = serde_json::from_str(&claims_request(Some(
            r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#,
        )))
        .unwrap();
        assert_eq!(merged["access_token"]["xms_cc"]["values"][0], "cp1");
        assert_eq!(merged["access_token"]["nbf"]["value"], "1604106651");
        assert_eq!(claims_request(Some("[1]")), CP1);
        assert_eq!(claims_request(None), CP1);
    }

    #[test]
    fn consent_is_recognised_by_code_or_description() {
        assert!(consent_missing("consent_required", None));
        assert!(consent_missing(
            "invalid_client",
            Some("AADSTS65001: The user or administrator has not consented")
        ));
        assert!(consent_missing(
            "access_denied",
            Some("AADSTS90094: admin approval required")
        ));
        assert!(!consent_missing(
            "access_denied",
            Some("AADSTS65004: User declined to consent")
        ));
    }

    #[test]
    fn admin_consent_asks_for_qualified_scopes() {
        let scopes: Vec<String> =
            "openid profile offline_access User.Read https://outlook.office.com/Mail.Read"
                .split(' ')
                .map(str::to_owned)
                .collect();
        assert_eq!(
            admin_consent_scopes(&scopes),
            "https://graph.microsoft.com/User.Read https://outlook.office.com/Mail.Read"
        );
    }

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        let n: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","token_type":"Bearer","expires_in":3599}"#)
                .unwrap();
        let s: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","token_type":"Bearer","expires_in":"3599","scope":"Mail.Read User.Read"}"#)
                .unwrap();
        assert_eq!(n.expires_in, Some(3599));
        assert_eq!(s.expires_in, Some(3599));
        assert_eq!(s.scopes.unwrap().len(), 2);
    }
}
