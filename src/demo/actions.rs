//! The stand-in Actions service: an expense card whose buttons mint a token
//! the way Microsoft's Actions service does and post it to `/api/expense`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{Demo, DemoKeys, PEOPLE, TENANT_ID};
use crate::actions::STATUS_HEADER;
use crate::clock::now;
use crate::error::html;
use crate::jwt::action_token::ACTIONS_APP_ID;
use crate::pages::Chrome;
use crate::session::TypedSession;
use crate::state::AppState;

pub const EXPENSE_ID: &str = "EXP-2026-1142";

#[derive(Template)]
#[template(path = "demo/actions.html")]
struct ActionsView<'a> {
    chrome: Chrome,
    people: &'a [super::mailbox::DemoPerson],
    selected: usize,
    legacy: bool,
    result: Option<ActionResult>,
}

/// What came back from `/api/expense`.
struct ActionResult {
    pressed: &'static str,
    token_kind: String,
    status: u16,
    status_text: String,
    card_status: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Press {
    button: String,
    person: Option<usize>,
}

fn view(d: &Demo, chrome: Chrome, selected: usize, result: Option<ActionResult>) -> HttpResponse {
    html(
        StatusCode::OK,
        &ActionsView {
            chrome,
            people: &PEOPLE,
            selected,
            legacy: d.legacy_actions,
            result,
        },
    )
}

pub(super) async fn card(state: web::Data<AppState>, session: TypedSession) -> HttpResponse {
    let Some(d) = state.demo.as_ref() else {
        return HttpResponse::NotFound().finish();
    };
    view(d, state.chrome(&session), 0, None)
}

pub(super) async fn press(
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<Press>,
) -> HttpResponse {
    let Some(d) = state.demo.as_ref() else {
        return HttpResponse::NotFound().finish();
    };
    let person = form.person.filter(|&p| p < PEOPLE.len()).unwrap_or(0);
    let (pressed, action, forged) = match form.button.as_str() {
        "reject" => ("Reject", "reject", false),
        "forged" => ("Send a forged token", "approve", true),
        _ => ("Approve", "approve", false),
    };
    let minted = match d.keys().await {
        Ok(keys) => mint(d, keys, person, action, forged),
        Err(e) => Err(e),
    };
    let (token, token_kind) = match minted {
        Ok(t) => t,
        Err(_) => {
            return HttpResponse::InternalServerError().body("The demo could not sign a token.");
        }
    };
    let sent = d
        .http
        .post(format!("{}/api/expense", d.internal_base))
        .bearer_auth(token)
        .header("Action-Request-Id", uuid::Uuid::new_v4().to_string())
        .header("Card-Correlation-Id", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "expenseId": EXPENSE_ID, "action": action }))
        .send()
        .await;
    let result = match sent {
        Ok(r) => ActionResult {
            pressed,
            token_kind,
            status: r.status().as_u16(),
            status_text: r.status().canonical_reason().unwrap_or_default().to_owned(),
            card_status: r
                .headers()
                .get(STATUS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
        Err(e) => ActionResult {
            pressed,
            token_kind,
            status: 0,
            status_text: format!("the request failed: {e}"),
            card_status: None,
        },
    };
    view(d, state.chrome(&session), person, Some(result))
}

/// Mints what the Actions service would send: Approve an Entra v1 access
/// token, Reject a v2 one (both are in use), or a retired EAT token when the
/// app runs the `legacy` scheme. A forged token is signed with a key nobody
/// published, under the real key's `kid`.
fn mint(
    d: &Demo,
    keys: &DemoKeys,
    person: usize,
    action: &str,
    forged: bool,
) -> Result<(String, String), crate::jwt::signer::SignerError> {
    let p = &PEOPLE[person];
    let now = now();
    let (claims, kind) = if d.legacy_actions {
        (
            json!({
                "iat": now, "nbf": now, "exp": now + 3600, "ver": "STI.ExternalAccessToken.V1",
                "appid": ACTIONS_APP_ID, "iss": d.legacy_issuer, "appidacr": "2", "acr": "0",
                "sub": p.upn, "sender": "expenses@contoso.com", "aud": d.action_audience,
            }),
            "legacy EAT token",
        )
    } else if action == "reject" {
        (
            json!({
                "aud": d.action_audience, "iss": d.issuer_template().replace("{tenantid}", TENANT_ID),
                "iat": now, "nbf": now, "exp": now + 3600, "azp": ACTIONS_APP_ID, "azpacr": "2",
                "name": p.name, "oid": p.oid, "preferred_username": p.upn, "scp": "Global.Test",
                "sub": format!("am-{}", p.oid), "tid": TENANT_ID, "ver": "2.0",
            }),
            "Entra v2.0 access token",
        )
    } else {
        (
            json!({
                "aud": d.action_audience, "iss": d.v1_issuer_template().replace("{tenantid}", TENANT_ID),
                "iat": now, "nbf": now, "exp": now + 3600, "appid": ACTIONS_APP_ID, "appidacr": "2",
                "name": p.name, "oid": p.oid, "upn": p.upn, "unique_name": p.upn, "scp": "Global.Test",
                "sub": format!("am-{}", p.oid), "tid": TENANT_ID, "ver": "1.0",
            }),
            "Entra v1.0 access token",
        )
    };
    if forged {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": keys.signer.kid()});
        Ok((
            keys.forger.sign_with_header(&header, &claims)?,
            format!("{kind}, signed with an unpublished key"),
        ))
    } else {
        Ok((keys.signer.sign(&claims)?, kind.to_owned()))
    }
}
