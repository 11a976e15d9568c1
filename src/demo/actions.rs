//! The stand-in Actions service: renders an actionable message's card the
//! way Outlook would (after asking the card's `autoInvokeAction` for its
//! current state), and when a button is pressed, mints a token the way
//! Microsoft's Actions service does and POSTs the button's body to its URL.
//! A `CARD-UPDATE-IN-BODY` answer replaces the card in the demo mailbox.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Demo, DemoKeys, PEOPLE, TENANT_ID};
use crate::cards::STATUS_HEADER;
use crate::clock::now;
use crate::error::html;
use crate::jwt::action_token::ACTIONS_APP_ID;
use crate::pages::Chrome;
use crate::session::TypedSession;

/// A card as the page shows it.
struct CardView {
    title: String,
    facts: Vec<(String, String)>,
    /// Text blocks after the facts, with Adaptive Card colour names.
    lines: Vec<(String, String)>,
    /// Button titles, by their index in `actions`.
    buttons: Vec<(usize, String)>,
}

impl CardView {
    fn from_json(card: &Value) -> Self {
        let mut view = CardView {
            title: String::new(),
            facts: Vec::new(),
            lines: Vec::new(),
            buttons: Vec::new(),
        };
        for item in card["body"].as_array().into_iter().flatten() {
            match item["type"].as_str() {
                Some("TextBlock") if view.title.is_empty() => {
                    view.title = item["text"].as_str().unwrap_or_default().to_owned();
                }
                Some("TextBlock") => view.lines.push((
                    item["text"].as_str().unwrap_or_default().to_owned(),
                    item["color"]
                        .as_str()
                        .unwrap_or("Default")
                        .to_ascii_lowercase(),
                )),
                Some("FactSet") => {
                    for f in item["facts"].as_array().into_iter().flatten() {
                        view.facts.push((
                            f["title"].as_str().unwrap_or_default().to_owned(),
                            f["value"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
                _ => {}
            }
        }
        for (i, a) in card["actions"].as_array().into_iter().flatten().enumerate() {
            if a["type"] == "Action.Http" {
                view.buttons
                    .push((i, a["title"].as_str().unwrap_or("Action").to_owned()));
            }
        }
        view
    }
}

#[derive(Template)]
#[template(path = "demo/actions.html")]
struct ActionsView<'a> {
    chrome: Chrome,
    people: &'a [super::mailbox::DemoPerson],
    selected: usize,
    legacy: bool,
    signed_in: bool,
    message: Option<String>,
    card: Option<CardView>,
    /// The buttons of the card as it arrived, once the current one has none.
    original_buttons: Vec<(usize, String)>,
    result: Option<ActionResult>,
}

/// What came back from the action's URL.
struct ActionResult {
    pressed: String,
    token_kind: String,
    status: u16,
    status_text: String,
    card_status: Option<String>,
    refreshed: bool,
}

#[derive(Deserialize)]
pub(super) struct CardQuery {
    message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Press {
    message: String,
    /// `current:N`, `original:N` or `forged`.
    button: String,
    person: Option<usize>,
}

/// The demo person signed in to the app in this browser, by address.
fn signed_in_person(session: &TypedSession) -> Option<usize> {
    let user = session.user()?;
    PEOPLE
        .iter()
        .position(|p| p.upn.eq_ignore_ascii_case(&user.email))
}

/// The newest actionable message in `person`'s demo Inbox.
fn newest_card_message(d: &Demo, person: usize) -> Option<String> {
    d.mailbox(person)
        .iter()
        .filter(|m| m.card.is_some())
        .max_by_key(|m| m.received)
        .map(|m| m.id.clone())
}

/// Replaces the current card of message `id` (as Outlook does with a
/// `CARD-UPDATE-IN-BODY` answer).
fn replace_card(d: &Demo, id: &str, card: &str) {
    for p in 0..PEOPLE.len() {
        let mut mailbox = d.mailbox_mut(p);
        if let Some(m) = mailbox.iter_mut().find(|m| m.id == id)
            && let Some(c) = m.card.as_mut()
        {
            c.current = card.into();
        }
    }
}

fn view(
    d: &Demo,
    chrome: Chrome,
    selected: usize,
    signed_in: bool,
    message: Option<String>,
    result: Option<ActionResult>,
) -> HttpResponse {
    let (card, original_buttons) = match message.as_deref().and_then(|m| d.card_of(m)) {
        Some(c) => {
            let current: Value = serde_json::from_str(&c.current).unwrap_or_default();
            let original: Value = serde_json::from_str(&c.original).unwrap_or_default();
            let current = CardView::from_json(&current);
            let original = if current.buttons.is_empty() {
                CardView::from_json(&original).buttons
            } else {
                Vec::new()
            };
            (Some(current), original)
        }
        None => (None, Vec::new()),
    };
    html(
        StatusCode::OK,
        &ActionsView {
            chrome,
            people: &PEOPLE,
            selected,
            legacy: d.legacy_actions,
            signed_in,
            message,
            card,
            original_buttons,
            result,
        },
    )
}

pub(super) async fn card(
    demo: web::Data<Demo>,
    session: TypedSession,
    q: web::Query<CardQuery>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let me = signed_in_person(&session);
    let message = q
        .message
        .clone()
        .filter(|m| d.card_of(m).is_some())
        .or_else(|| me.and_then(|p| newest_card_message(d, p)));
    // Opening the card asks its autoInvokeAction for the current state, as Outlook does.
    if let (Some(id), Some(person)) = (&message, me)
        && let Some(c) = d.card_of(id)
        && let Ok(card) = serde_json::from_str::<Value>(&c.current)
        && card["autoInvokeAction"]["type"] == "Action.Http"
        && let Ok(keys) = d.keys().await
    {
        let auto = &card["autoInvokeAction"];
        if let Ok((_, refreshed)) = post_action(d, keys, person, auto, false, id).await
            && let Some(refreshed) = refreshed
        {
            replace_card(d, id, &refreshed);
        }
    }
    view(
        d,
        super::chrome(&session),
        me.unwrap_or(0),
        me.is_some(),
        message,
        None,
    )
}

pub(super) async fn press(
    demo: web::Data<Demo>,
    session: TypedSession,
    form: web::Form<Press>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let me = signed_in_person(&session);
    let person = form
        .person
        .filter(|&p| p < PEOPLE.len())
        .or(me)
        .unwrap_or(0);
    let Some(c) = d.card_of(&form.message) else {
        return view(d, super::chrome(&session), person, me.is_some(), None, None);
    };
    let (which, index, forged) = match form.button.split_once(':') {
        Some(("current", i)) => (&c.current, i.parse().unwrap_or(usize::MAX), false),
        Some(("original", i)) => (&c.original, i.parse().unwrap_or(usize::MAX), false),
        _ => (&c.original, 0, true),
    };
    let card: Value = serde_json::from_str(which).unwrap_or_default();
    let action = &card["actions"][index];
    if action["type"] != "Action.Http" {
        return view(
            d,
            super::chrome(&session),
            person,
            me.is_some(),
            Some(form.message.clone()),
            None,
        );
    }
    let pressed = if forged {
        format!(
            "{} (with a forged token)",
            action["title"].as_str().unwrap_or("Action")
        )
    } else {
        action["title"].as_str().unwrap_or("Action").to_owned()
    };
    let result = match d.keys().await {
        Ok(keys) => match post_action(d, keys, person, action, forged, &form.message).await {
            Ok((mut result, refreshed)) => {
                result.pressed = pressed;
                if let Some(card) = refreshed {
                    replace_card(d, &form.message, &card);
                    result.refreshed = true;
                }
                result
            }
            Err(e) => ActionResult {
                pressed,
                token_kind: String::new(),
                status: 0,
                status_text: format!("the request failed: {e}"),
                card_status: None,
                refreshed: false,
            },
        },
        Err(_) => {
            return HttpResponse::InternalServerError().body("The demo could not sign a token.");
        }
    };
    view(
        d,
        super::chrome(&session),
        person,
        me.is_some(),
        Some(form.message.clone()),
        Some(result),
    )
}

/// POSTs an `Action.Http` to its URL (on this app's bound address) with a
/// token for `person`, and returns the answer and any refreshed card.
async fn post_action(
    d: &Demo,
    keys: &DemoKeys,
    person: usize,
    action: &Value,
    forged: bool,
    message: &str,
) -> Result<(ActionResult, Option<String>), String> {
    let url = action["url"].as_str().unwrap_or_default();
    let path = url.strip_prefix(&d.public_base).unwrap_or(url);
    if !path.starts_with('/') {
        return Err("the action's URL is not on this app".into());
    }
    let body = action["body"].as_str().unwrap_or("{}").to_owned();
    let asked: Value = serde_json::from_str(&body).unwrap_or_default();
    let kind = asked["action"].as_str().unwrap_or("approve");
    let (token, token_kind) = mint(d, keys, person, kind, forged).map_err(|e| e.to_string())?;
    let r = d
        .http
        .post(format!("{}{path}", d.internal_base))
        .bearer_auth(token)
        .header("Action-Request-Id", uuid::Uuid::new_v4().to_string())
        .header("Card-Correlation-Id", message)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let card_status = r
        .headers()
        .get(STATUS_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let update = r
        .headers()
        .get("CARD-UPDATE-IN-BODY")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let text = crate::http::read_limited(r, 64 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    let refreshed = update
        .then(|| String::from_utf8(text).ok())
        .flatten()
        .filter(|t| serde_json::from_str::<Value>(t).is_ok_and(|v| v["type"] == "AdaptiveCard"));
    Ok((
        ActionResult {
            pressed: String::new(),
            token_kind,
            status: status.as_u16(),
            status_text: status.canonical_reason().unwrap_or_default().to_owned(),
            card_status,
            refreshed: false,
        },
        refreshed,
    ))
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
                "jti": uuid::Uuid::new_v4().to_string(),
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
                "uti": uuid::Uuid::new_v4().simple().to_string(),
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
                "uti": uuid::Uuid::new_v4().simple().to_string(),
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
