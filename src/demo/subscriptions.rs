//! The stand-in Graph's change notifications: subscriptions (created only
//! after the app passes the validation handshake, as Graph does; renewed,
//! deleted, reauthorized), the Inbox delta query, notifications when mail
//! arrives, lifecycle events on demand, and the demo controls that make
//! mail arrive.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::bodies::DemoBody;
use super::graph::{caller, graph_error, render, respond};
use super::mailbox::{DemoMessage, Folder};
use super::{Demo, PEOPLE, TENANT_ID};
use crate::session::TypedSession;

/// Subscriptions the stand-in keeps at most (its stores are bounded).
pub(super) const MAX_SUBSCRIPTIONS: usize = 1_000;

/// A subscription the stand-in Graph keeps.
#[derive(Clone, Debug)]
pub(super) struct DemoSubscription {
    pub id: String,
    pub person: usize,
    pub client_state: Option<String>,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub expires: OffsetDateTime,
}

#[derive(Deserialize)]
pub(super) struct NewSubscription {
    #[serde(rename = "changeType")]
    change_type: String,
    #[serde(rename = "notificationUrl")]
    notification_url: String,
    #[serde(default, rename = "lifecycleNotificationUrl")]
    lifecycle_url: Option<String>,
    resource: String,
    #[serde(rename = "expirationDateTime")]
    expiration: String,
    #[serde(default, rename = "clientState")]
    client_state: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Renewal {
    #[serde(rename = "expirationDateTime")]
    expiration: String,
}

/// Where the stand-in reaches a URL the app gave as public.
fn internal(d: &Demo, url: &str) -> String {
    match url.strip_prefix(&d.public_base) {
        Some(rest) => format!("{}{rest}", d.internal_base),
        None => url.to_owned(),
    }
}

/// Graph's validation handshake: a token to the URL, which must come back
/// exactly, as plain text, within 10 seconds.
async fn validates(d: &Demo, url: &str) -> bool {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let answer = d
        .http
        .post(internal(d, url))
        .query(&[("validationToken", token.as_str())])
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let Ok(r) = answer else { return false };
    let plain = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    r.status() == reqwest::StatusCode::OK
        && plain
        && crate::http::read_limited(r, 16 * 1024)
            .await
            .is_ok_and(|b| b == token.as_bytes())
}

fn describe(s: &DemoSubscription) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
        "id": s.id, "resource": "me/mailFolders('inbox')/messages", "changeType": "created",
        "clientState": s.client_state, "notificationUrl": s.notification_url,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": s.expires.format(&Rfc3339).unwrap_or_default(),
        "applicationId": crate::settings::DEMO_CLIENT_ID,
        "latestSupportedTlsVersion": "v1_2",
    })
}

/// `POST /subscriptions`.
pub(super) async fn create(
    demo: web::Data<Demo>,
    req: HttpRequest,
    body: web::Json<NewSubscription>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b = body.into_inner();
    let bad = |message: &str| graph_error(&req, StatusCode::BAD_REQUEST, "InvalidRequest", message);
    if b.change_type != "created"
        || !b
            .resource
            .eq_ignore_ascii_case("me/mailFolders('inbox')/messages")
    {
        return bad(
            "The stand-in supports changeType 'created' on me/mailFolders('inbox')/messages.",
        );
    }
    if b.client_state.as_ref().is_some_and(|c| c.len() > 128) {
        return bad("clientState is longer than 128 characters.");
    }
    let now = OffsetDateTime::now_utc();
    let Ok(expires) = OffsetDateTime::parse(&b.expiration, &Rfc3339) else {
        return bad("expirationDateTime is not a date.");
    };
    if expires <= now || expires > now + time::Duration::minutes(4_230) {
        return graph_error(
            &req,
            StatusCode::BAD_REQUEST,
            "ExtensionError",
            "Subscription expiration can only be 4230 minutes in the future.",
        );
    }
    let urls = std::iter::once(&b.notification_url).chain(b.lifecycle_url.as_ref());
    for url in urls {
        if !validates(d, url).await {
            return graph_error(
                &req,
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "Subscription validation request failed. Response must exactly match validationToken query parameter.",
            );
        }
    }
    let s = DemoSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        person,
        client_state: b.client_state,
        notification_url: b.notification_url,
        lifecycle_url: b.lifecycle_url,
        expires,
    };
    {
        let mut all = d.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SUBSCRIPTIONS {
            return graph_error(
                &req,
                StatusCode::FORBIDDEN,
                "ExtensionError",
                "The maximum number of subscriptions has been reached.",
            );
        }
        all.insert(s.id.clone(), s.clone());
    }
    respond(&req, StatusCode::CREATED, describe(&s))
}

/// The caller's subscription `id`, or Graph's 404.
async fn own(d: &Demo, req: &HttpRequest, id: &str) -> Result<usize, Box<HttpResponse>> {
    let person = caller(d, req).await?;
    let all = d.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
    match all.get(id) {
        Some(s) if s.person == person => Ok(person),
        _ => Err(Box::new(graph_error(
            req,
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The object was not found.",
        ))),
    }
}

/// `PATCH /subscriptions/{id}`: a new expiry.
pub(super) async fn renew(
    demo: web::Data<Demo>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Renewal>,
) -> HttpResponse {
    let d: &Demo = &demo;
    if let Err(r) = own(d, &req, &id).await {
        return *r;
    }
    let now = OffsetDateTime::now_utc();
    let expires = match OffsetDateTime::parse(&body.expiration, &Rfc3339) {
        Ok(e) if e > now && e <= now + time::Duration::minutes(4_230) => e,
        _ => {
            return graph_error(
                &req,
                StatusCode::BAD_REQUEST,
                "ExtensionError",
                "Subscription expiration can only be 4230 minutes in the future.",
            );
        }
    };
    let mut all = d.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
    match all.get_mut(id.as_str()) {
        Some(s) => {
            s.expires = expires;
            let described = describe(s);
            drop(all);
            respond(&req, StatusCode::OK, described)
        }
        None => HttpResponse::NotFound().finish(),
    }
}

/// `DELETE /subscriptions/{id}`.
pub(super) async fn delete(
    demo: web::Data<Demo>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let d: &Demo = &demo;
    if let Err(r) = own(d, &req, &id).await {
        return *r;
    }
    d.subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id.as_str());
    HttpResponse::NoContent().finish()
}

/// `POST /subscriptions/{id}/reauthorize`.
pub(super) async fn reauthorize(
    demo: web::Data<Demo>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    match own(&demo, &req, &id).await {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
pub(super) struct DeltaParams {
    #[serde(rename = "$deltatoken")]
    token: Option<String>,
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// `GET /me/mailFolders/inbox/messages/delta`: the Inbox messages that
/// arrived after the token (or, first, since the filter's time), and the
/// next deltaLink. A token the stand-in did not issue is `410 Gone`.
pub(super) async fn delta(
    demo: web::Data<Demo>,
    req: HttpRequest,
    q: web::Query<DeltaParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let newest = d.next_seq.load(Ordering::SeqCst);
    let after = match q.token.as_deref() {
        None => None,
        Some(t) => match t.strip_prefix("seq-").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n <= newest => Some(n),
            _ => {
                return graph_error(
                    &req,
                    StatusCode::GONE,
                    "SyncStateNotFound",
                    "The sync state generation is not found.",
                );
            }
        },
    };
    let since = q
        .filter
        .as_deref()
        .and_then(|f| f.strip_prefix("receivedDateTime ge "))
        .and_then(|t| OffsetDateTime::parse(t.trim(), &Rfc3339).ok());
    let mailbox = d.mailbox(person);
    let mut changed: Vec<&DemoMessage> = mailbox
        .iter()
        .filter(|m| m.folder == Folder::Inbox)
        .filter(|m| match (after, since) {
            (Some(n), _) => m.seq > n,
            (None, Some(t)) => m.received >= t,
            (None, None) => true,
        })
        .collect();
    changed.sort_by_key(|m| std::cmp::Reverse(m.received));
    let value: Vec<Value> = changed
        .iter()
        .map(|m| render(m, false, &d.public_base))
        .collect();
    let link = format!(
        "{}/_demo/graph/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=seq-{newest}",
        d.internal_base
    );
    respond(
        &req,
        StatusCode::OK,
        json!({ "@odata.context": "demo", "value": value, "@odata.deltaLink": link }),
    )
}

impl Demo {
    /// A sequence number for a message delivered now.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Tells every subscription of `person` that message `id` arrived, as
    /// Graph does: in the background, a batch per subscription.
    pub(super) fn notify_created(&self, person: usize, id: &str) {
        let subs: Vec<DemoSubscription> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.person == person && s.expires > OffsetDateTime::now_utc())
            .cloned()
            .collect();
        for s in subs {
            let body = json!({ "value": [{
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": s.expires.format(&Rfc3339).unwrap_or_default(),
                "changeType": "created",
                "resource": format!("Users/{}/Messages/{id}", PEOPLE[person].oid),
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Message",
                    "@odata.id": format!("Users/{}/Messages/{id}", PEOPLE[person].oid),
                    "@odata.etag": "W/\"demo\"",
                    "id": id,
                },
                "clientState": s.client_state,
                "tenantId": TENANT_ID,
            }]});
            let (http, url) = (self.http.clone(), internal(self, &s.notification_url));
            tokio::spawn(async move {
                let _ = http.post(url).json(&body).send().await;
            });
        }
    }

    /// Sends lifecycle event `event` for every subscription of `person`
    /// (`subscriptionRemoved` also removes them, as Graph does).
    pub(super) fn lifecycle(&self, person: usize, event: &str) -> usize {
        let mut all = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let subs: Vec<DemoSubscription> = all
            .values()
            .filter(|s| s.person == person)
            .cloned()
            .collect();
        if event == "subscriptionRemoved" {
            all.retain(|_, s| s.person != person);
        }
        drop(all);
        let mut sent = 0;
        for s in subs {
            let Some(url) = s.lifecycle_url.as_deref() else {
                continue;
            };
            let body = json!({ "value": [{
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": s.expires.format(&Rfc3339).unwrap_or_default(),
                "lifecycleEvent": event,
                "resource": "me/mailFolders('inbox')/messages",
                "clientState": s.client_state,
                "tenantId": TENANT_ID,
            }]});
            let (http, url) = (self.http.clone(), internal(self, url));
            tokio::spawn(async move {
                let _ = http.post(url).json(&body).send().await;
            });
            sent += 1;
        }
        sent
    }

    /// Delivers a message to `person`'s Inbox now, and notifies.
    pub(super) fn deliver(&self, person: usize, mut message: DemoMessage) {
        message.seq = self.next_seq();
        let id = message.id.clone();
        self.mailbox_mut(person).push(message);
        self.notify_created(person, &id);
    }
}

/// Who is signed in to the app in this browser, among the demo people.
fn signed_in_person(session: &TypedSession) -> Option<usize> {
    let user = session.user()?;
    PEOPLE
        .iter()
        .position(|p| p.upn.eq_ignore_ascii_case(&user.email))
}

/// A demo control pressed on one of this app's own pages.
fn from_this_site(d: &Demo, req: &HttpRequest) -> bool {
    url::Url::parse(&d.public_base).is_ok_and(|u| crate::http::same_origin(&u, req))
}

fn back_to_inbox() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, "/mail"))
        .finish()
}

/// What someone sends you in the demo, in turn.
const ARRIVALS: &[(&str, &str, &str, &str)] = &[
    (
        "Megan Bowen",
        "MeganB@contoso.com",
        "Quick question about the Q4 numbers",
        "Do you have five minutes this afternoon? I have a question about the travel budget.",
    ),
    (
        "Alex Wilber",
        "AlexW@contoso.com",
        "Lunch today? 🍜",
        "Ramen at 12:30, the usual place?",
    ),
    (
        "Lee Gu",
        "LeeG@contoso.com",
        "Expense policy: the new limits",
        "The new limits apply from January; details in the policy site.",
    ),
    (
        "Isaiah Langer",
        "IsaiahL@contoso.com",
        "Réunion déplacée à 15 h",
        "La réunion de ce matin est déplacée à 15 h, même salle.",
    ),
    (
        "Lidia Holloway",
        "LidiaH@contoso.com",
        "会议改到周四",
        "下午的会议改到周四上午十点。",
    ),
];

/// The demo control "Have someone send me a message": a message from a
/// colleague arrives in a few seconds (and is notified, as Graph would).
pub(super) async fn arrive(
    demo: web::Data<Demo>,
    session: TypedSession,
    req: HttpRequest,
) -> HttpResponse {
    let d = demo.into_inner();
    let Some(person) = signed_in_person(&session) else {
        return HttpResponse::Unauthorized().body("Sign in first.");
    };
    if !from_this_site(&d, &req) {
        return HttpResponse::Forbidden().body("This request did not come from this site.");
    }
    let n = d.delivered.fetch_add(1, Ordering::SeqCst);
    let (name, address, subject, text) = ARRIVALS[n % ARRIVALS.len()];
    let delay = d.arrival_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let message = DemoMessage {
            id: format!("AAMkAD{person}N{n:05}"),
            folder: Folder::Inbox,
            subject: subject.to_owned(),
            from: Some((Some(name.to_owned()), address.to_owned())),
            received: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc()),
            body: DemoBody::Text(text.into()),
            unread: true,
            important: false,
            attachments: vec![],
            to: vec![(
                PEOPLE[person].name.to_owned(),
                PEOPLE[person].upn.to_owned(),
            )],
            cc: vec![],
            card: None,
            seq: 0,
        };
        d.deliver(person, message);
    });
    back_to_inbox()
}

#[derive(Deserialize)]
pub(super) struct LifecycleForm {
    event: String,
}

/// The demo control that sends a lifecycle event for your subscription.
pub(super) async fn lifecycle(
    demo: web::Data<Demo>,
    session: TypedSession,
    req: HttpRequest,
    form: web::Form<LifecycleForm>,
) -> HttpResponse {
    let Some(person) = signed_in_person(&session) else {
        return HttpResponse::Unauthorized().body("Sign in first.");
    };
    let event = match form.event.as_str() {
        e @ ("missed" | "reauthorizationRequired" | "subscriptionRemoved") => e,
        _ => return HttpResponse::BadRequest().body("Unknown lifecycle event."),
    };
    if !from_this_site(&demo, &req) {
        return HttpResponse::Forbidden().body("This request did not come from this site.");
    }
    demo.lifecycle(person, event);
    back_to_inbox()
}
