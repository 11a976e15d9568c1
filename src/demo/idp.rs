//! The stand-in identity platform: discovery, authorize, token, keys, logout.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, LOCATION};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::{Demo, PEOPLE, TENANT_ID};
use crate::clock::now;
use crate::error::html;
use crate::pages::Chrome;

/// Remembers who signed in at the stand-in, for `prompt=none`.
const SSO_COOKIE: &str = "demo_sso";
const CODE_TTL_SECS: i64 = 600;
/// The stand-in's stores are bounded: at most this many live codes (and as
/// many refresh tokens), so a flood of sign-ins cannot grow memory.
pub(super) const MAX_GRANTS: usize = 2_000;
/// The longest value accepted for any authorize parameter (Microsoft refuses
/// long ones too); a 60 KB `nonce` is refused, not stored.
pub(super) const MAX_PARAM_LEN: usize = 1_024;

/// What an authorization code (or refresh token) was issued for.
#[derive(Clone)]
pub(super) struct Grant {
    pub person: usize,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub expires_at: i64,
}

#[derive(Deserialize, Default)]
pub(super) struct AuthorizeParams {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
    /// Form only: the chosen person's index, or `cancel`.
    choice: Option<String>,
}

#[derive(Template)]
#[template(path = "demo/authorize.html")]
struct AuthorizeView<'a> {
    chrome: Chrome,
    people: &'a [super::mailbox::DemoPerson],
    hint: Option<&'a str>,
    fields: Vec<(&'static str, String)>,
    scopes: Vec<&'a str>,
}

#[derive(Template)]
#[template(path = "demo/message.html")]
struct MessageView<'a> {
    chrome: Chrome,
    title: &'a str,
    detail: &'a str,
}

fn chrome() -> Chrome {
    Chrome {
        demo: true,
        user: None,
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().finish()
}

pub(super) async fn discovery(demo: web::Data<Demo>) -> HttpResponse {
    let d: &Demo = &demo;
    let (public, internal) = (&d.public_base, &d.internal_base);
    HttpResponse::Ok().json(json!({
        "token_endpoint": format!("{internal}/_demo/common/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "jwks_uri": format!("{internal}/_demo/common/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": d.issuer_template(),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{internal}/_demo/graph/oidc/userinfo"),
        "authorization_endpoint": format!("{public}/_demo/common/oauth2/v2.0/authorize"),
        "end_session_endpoint": format!("{public}/_demo/common/oauth2/v2.0/logout"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "preferred_username", "oid", "tid", "ver"],
        "tenant_region_scope": null,
        "cloud_instance_name": "demo.invalid",
    }))
}

pub(super) async fn discovery_v1(demo: web::Data<Demo>) -> HttpResponse {
    let d: &Demo = &demo;
    HttpResponse::Ok().json(json!({
        "issuer": d.v1_issuer_template(),
        "jwks_uri": format!("{}/_demo/common/discovery/keys", d.internal_base),
        "authorization_endpoint": format!("{}/_demo/common/oauth2/authorize", d.public_base),
        "token_endpoint": format!("{}/_demo/common/oauth2/token", d.internal_base),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

pub(super) async fn keys(demo: web::Data<Demo>) -> HttpResponse {
    let d: &Demo = &demo;
    let Ok(demo_keys) = d.keys().await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let mut jwk = demo_keys.signer.jwk();
    jwk["issuer"] = Value::String(d.issuer_template());
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "max-age=86400, private"))
        .json(json!({ "keys": [jwk] }))
}

/// Checks the client and redirect URI; an unknown one gets a page, never a redirect.
fn check_client<'a>(d: &Demo, p: &'a AuthorizeParams) -> Result<&'a str, Box<HttpResponse>> {
    if p.client_id.as_deref() != Some(d.client_id.as_str()) {
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "AADSTS700016: Application not found",
            "The client_id in this request is not registered with the demo identity platform.",
        )));
    }
    match p.redirect_uri.as_deref() {
        Some(uri) if uri == d.redirect_uri => Ok(uri),
        _ => Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "AADSTS50011: The redirect URI does not match",
            "The redirect_uri in this request is not the one registered for this app.",
        ))),
    }
}

fn message(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    html(
        status,
        &MessageView {
            chrome: chrome(),
            title,
            detail,
        },
    )
}

/// Redirects back to the app with `params` (always carrying `state`).
fn back(redirect_uri: &str, state: Option<&str>, params: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return not_found();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    HttpResponse::Found()
        .insert_header((LOCATION, url.as_str()))
        .finish()
}

/// Validates what the app must send; a fault goes back to the app as an OAuth error.
fn check_request(p: &AuthorizeParams, redirect_uri: &str) -> Result<(), Box<HttpResponse>> {
    let error = |code: &str, text: &str| {
        Box::new(back(
            redirect_uri,
            p.state.as_deref(),
            &[("error", code), ("error_description", text)],
        ))
    };
    let too_long = [
        &p.state,
        &p.nonce,
        &p.scope,
        &p.code_challenge,
        &p.login_hint,
        &p.prompt,
    ]
    .into_iter()
    .any(|v| v.as_ref().is_some_and(|v| v.len() > MAX_PARAM_LEN));
    if too_long {
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "AADSTS90015: A request parameter is too long",
            "A parameter of this sign-in request is longer than the demo identity platform accepts.",
        )));
    }
    if p.response_type.as_deref() != Some("code") {
        return Err(error(
            "unsupported_response_type",
            "AADSTS700054: response_type 'code' is expected.",
        ));
    }
    if !p
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == "openid")
    {
        return Err(error(
            "invalid_request",
            "AADSTS900144: the scope must include 'openid'.",
        ));
    }
    if p.code_challenge.is_none() || p.code_challenge_method.as_deref() != Some("S256") {
        return Err(error(
            "invalid_request",
            "AADSTS9002325: PKCE with S256 is required by this demo.",
        ));
    }
    Ok(())
}

pub(super) async fn authorize(
    demo: web::Data<Demo>,
    req: HttpRequest,
    q: web::Query<AuthorizeParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let redirect_uri = match check_client(d, &q) {
        Ok(u) => u,
        Err(page) => return *page,
    };
    if let Err(r) = check_request(&q, redirect_uri) {
        return *r;
    }
    if q.prompt.as_deref() == Some("none") {
        let remembered = req
            .cookie(SSO_COOKIE)
            .and_then(|c| c.value().parse::<usize>().ok())
            .filter(|&i| i < PEOPLE.len())
            .filter(|&i| {
                q.login_hint
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(PEOPLE[i].upn))
            });
        return match remembered {
            Some(person) => issue_code(d, &q, redirect_uri, person),
            None => back(
                redirect_uri,
                q.state.as_deref(),
                &[
                    ("error", "login_required"),
                    (
                        "error_description",
                        "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
                    ),
                ],
            ),
        };
    }
    let fields = vec![
        ("client_id", q.client_id.clone().unwrap_or_default()),
        ("response_type", q.response_type.clone().unwrap_or_default()),
        ("redirect_uri", redirect_uri.to_owned()),
        ("scope", q.scope.clone().unwrap_or_default()),
        ("state", q.state.clone().unwrap_or_default()),
        ("nonce", q.nonce.clone().unwrap_or_default()),
        (
            "code_challenge",
            q.code_challenge.clone().unwrap_or_default(),
        ),
        (
            "code_challenge_method",
            q.code_challenge_method.clone().unwrap_or_default(),
        ),
    ];
    let scope = q.scope.as_deref().unwrap_or_default();
    html(
        StatusCode::OK,
        &AuthorizeView {
            chrome: chrome(),
            people: &PEOPLE,
            hint: q.login_hint.as_deref(),
            fields,
            scopes: scope.split(' ').filter(|s| !s.is_empty()).collect(),
        },
    )
}

pub(super) async fn choose(
    demo: web::Data<Demo>,
    form: web::Form<AuthorizeParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let p = form.into_inner();
    let redirect_uri = match check_client(d, &p) {
        Ok(u) => u.to_owned(),
        Err(page) => return *page,
    };
    if let Err(r) = check_request(&p, &redirect_uri) {
        return *r;
    }
    match p.choice.as_deref().map(str::parse::<usize>) {
        Some(Ok(person)) if person < PEOPLE.len() => {
            let mut response = issue_code(d, &p, &redirect_uri, person);
            let cookie = Cookie::build(SSO_COOKIE, person.to_string())
                .path("/_demo")
                .http_only(true)
                .same_site(SameSite::Lax)
                .finish();
            let _ = response.add_cookie(&cookie);
            response
        }
        _ => back(
            &redirect_uri,
            p.state.as_deref(),
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "AADSTS65004: The user canceled the authentication.",
                ),
            ],
        ),
    }
}

fn issue_code(d: &Demo, p: &AuthorizeParams, redirect_uri: &str, person: usize) -> HttpResponse {
    let code = format!(
        "0.demo-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let grant = Grant {
        person,
        redirect_uri: redirect_uri.to_owned(),
        code_challenge: p.code_challenge.clone(),
        nonce: p.nonce.clone(),
        scope: p.scope.clone().unwrap_or_default(),
        expires_at: now() + CODE_TTL_SECS,
    };
    let stored = d.codes.lock().is_ok_and(|mut codes| {
        codes.retain(|_, g| g.expires_at > now());
        codes.len() < MAX_GRANTS && codes.insert(code.clone(), grant).is_none()
    });
    if !stored {
        return back(
            redirect_uri,
            p.state.as_deref(),
            &[
                ("error", "temporarily_unavailable"),
                (
                    "error_description",
                    "AADSTS90033: The demo identity platform is busy; try again in a few minutes.",
                ),
            ],
        );
    }
    let session_state = uuid::Uuid::new_v4().to_string();
    back(
        redirect_uri,
        p.state.as_deref(),
        &[("code", &code), ("session_state", &session_state)],
    )
}

fn token_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let trace = uuid::Uuid::new_v4().to_string();
    let correlation = uuid::Uuid::new_v4().to_string();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    HttpResponse::build(status).json(json!({
        "error": error,
        "error_description": format!("{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"),
        "error_codes": [],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
    }))
}

/// The client's credentials from the body (`client_secret_post`) or Basic auth.
fn client_credentials(
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some(basic) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        && let Some((id, secret)) = basic.split_once(':')
    {
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return (decode(id), decode(secret));
    }
    (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    )
}

pub(super) async fn token(
    demo: web::Data<Demo>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let (client_id, secret) = client_credentials(&req, &form);
    if client_id.as_deref() != Some(d.client_id.as_str()) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    // Compared in constant time: the demo should not teach timing leaks.
    let secret_ok = secret.is_some_and(|s| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            s.as_bytes(),
            d.client_secret.expose().as_bytes(),
        )
        .is_ok()
    });
    if !secret_ok {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let grant = d.codes.lock().ok().and_then(|mut c| c.remove(&code));
            let Some(grant) = grant.filter(|g| g.expires_at > now()) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                );
            };
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS50148: The redirect_uri does not match the one used in the authorization request.",
                );
            }
            let verifier = form
                .get("code_verifier")
                .map(String::as_str)
                .unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
            if grant.code_challenge.as_deref() != Some(computed.as_str()) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                );
            }
            issue_tokens(d, grant, true).await
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let grant = d
                .refresh_tokens
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&presented));
            match grant {
                Some(mut grant) if grant.expires_at > now() => {
                    if let Some(scope) = form.get("scope") {
                        grant.scope = scope.clone();
                    }
                    grant.nonce = None;
                    issue_tokens(d, grant, false).await
                }
                _ => token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS70008: The refresh token has expired or been revoked.",
                ),
            }
        }
        _ => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        ),
    }
}

/// The audience an access token for `scope` is for: Outlook, a SharePoint
/// host (`https://{host}/AllSites.Read`), or Graph.
fn resource_of(scope: &str) -> String {
    for s in scope.split(' ') {
        if s.starts_with("https://outlook.office.com/") {
            return "https://outlook.office.com".into();
        }
        if let Some(host) = s.strip_suffix("/AllSites.Read") {
            return host.to_owned();
        }
    }
    "https://graph.microsoft.com".into()
}

async fn issue_tokens(d: &Demo, grant: Grant, with_id_token: bool) -> HttpResponse {
    let Ok(keys) = d.keys().await else {
        return token_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The demo signing keys are not ready.",
        );
    };
    let person = &PEOPLE[grant.person];
    let now = now();
    let lifetime = 3599;
    let tid = TENANT_ID;
    let access_claims = json!({
        "aud": resource_of(&grant.scope),
        "iss": d.v1_issuer_template().replace("{tenantid}", tid),
        "iat": now, "nbf": now, "exp": now + lifetime,
        "acct": 0, "amr": ["pwd", "mfa"], "app_displayname": "outlook-inbox (demo)",
        "appid": d.client_id, "appidacr": "1", "idtyp": "user",
        "name": person.name, "oid": person.oid, "scp": grant.scope.replace("openid", "").replace("offline_access", "").split_whitespace().collect::<Vec<_>>().join(" "),
        "sub": format!("demo-sub-{}", person.oid), "tid": tid, "unique_name": person.upn, "upn": person.upn,
        "uti": uuid::Uuid::new_v4().simple().to_string(), "ver": "1.0",
    });
    // Graph access tokens carry a `nonce` in their header (which is why clients
    // must not try to validate them); the stand-in does the same.
    let header = json!({"typ": "JWT", "nonce": uuid::Uuid::new_v4().simple().to_string(), "alg": "RS256", "kid": keys.signer.kid()});
    let Ok(access_token) = keys.signer.sign_with_header(&header, &access_claims) else {
        return token_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        );
    };
    let mut body = json!({
        "token_type": "Bearer",
        "scope": grant.scope.split(' ').filter(|s| *s != "openid" && *s != "offline_access" && *s != "profile").collect::<Vec<_>>().join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    if with_id_token && grant.scope.split(' ').any(|s| s == "openid") {
        let id_claims = json!({
            "aud": d.client_id, "iss": d.issuer_template().replace("{tenantid}", tid),
            "iat": now, "nbf": now, "exp": now + 3600,
            "aio": uuid::Uuid::new_v4().simple().to_string(),
            "name": person.name, "nonce": grant.nonce, "oid": person.oid,
            "preferred_username": person.upn, "rh": "0.demo", "sid": uuid::Uuid::new_v4().to_string(),
            "sub": format!("demo-sub-{}", person.oid), "tid": tid,
            "uti": uuid::Uuid::new_v4().simple().to_string(), "ver": "2.0",
        });
        match keys.signer.sign(&id_claims) {
            Ok(t) => body["id_token"] = Value::String(t),
            Err(_) => {
                return token_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "signing failed",
                );
            }
        }
    }
    if grant.scope.split(' ').any(|s| s == "offline_access") {
        let refresh = format!(
            "1.demo-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let stored = d.refresh_tokens.lock().is_ok_and(|mut r| {
            r.retain(|_, g| g.expires_at > now);
            if r.len() >= MAX_GRANTS {
                // Oldest first out: a refresh token is a cache here, not a promise.
                if let Some(oldest) = r
                    .iter()
                    .min_by_key(|(_, g)| g.expires_at)
                    .map(|(k, _)| k.clone())
                {
                    r.remove(&oldest);
                }
            }
            r.insert(
                refresh.clone(),
                Grant {
                    expires_at: now + 24 * 3600,
                    ..grant
                },
            );
            true
        });
        if stored {
            body["refresh_token"] = Value::String(refresh);
        }
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

#[derive(Deserialize)]
pub(super) struct LogoutParams {
    post_logout_redirect_uri: Option<String>,
}

pub(super) async fn logout(demo: web::Data<Demo>, q: web::Query<LogoutParams>) -> HttpResponse {
    let d: &Demo = &demo;
    // Only a redirect back to this app is honoured, as Entra honours only registered URIs.
    let link = q
        .post_logout_redirect_uri
        .as_deref()
        .filter(|u| *u == format!("{}/", d.public_base) || *u == d.public_base);
    let mut response = match link {
        Some(uri) => HttpResponse::Found()
            .insert_header((LOCATION, uri))
            .finish(),
        None => html(
            StatusCode::OK,
            &MessageView {
                chrome: chrome(),
                title: "You signed out of the demo identity platform",
                detail: "Your demo account is signed out.",
            },
        ),
    };
    let mut cookie = Cookie::build(SSO_COOKIE, "").path("/_demo").finish();
    cookie.make_removal();
    let _ = response.add_cookie(&cookie);
    response
}

/// Where "Open in Outlook on the web" leads in demo mode.
pub(super) async fn outlook_web() -> HttpResponse {
    html(
        StatusCode::OK,
        &MessageView {
            chrome: chrome(),
            title: "Outlook on the web (demo)",
            detail: "With a real Microsoft account, this link opens the message in Outlook on the web.",
        },
    )
}
