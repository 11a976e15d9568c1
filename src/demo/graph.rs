//! The stand-in Graph (and Outlook REST) mail and `/me` endpoints.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::bodies::DemoBody;
use super::mailbox::{DemoCard, DemoMessage, Folder};
use super::{Demo, PEOPLE};

#[derive(Deserialize)]
struct AccessClaims {
    oid: String,
}

/// Which API shape the request is for, by its path.
pub(super) fn outlook(req: &HttpRequest) -> bool {
    req.path().starts_with("/_demo/outlook/")
}

/// Like Graph: a `request-id`, and the caller's `client-request-id` echoed when asked.
pub(super) fn respond(req: &HttpRequest, status: StatusCode, body: Value) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = HttpResponse::build(status);
    response.insert_header(("request-id", request_id.as_str()));
    let echo = req
        .headers()
        .get("return-client-request-id")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if let Some(cid) = req.headers().get("client-request-id").filter(|_| echo) {
        response.insert_header(("client-request-id", cid.clone()));
    }
    response.json(body)
}

pub(super) fn graph_error(
    req: &HttpRequest,
    status: StatusCode,
    code: &str,
    message: &str,
) -> HttpResponse {
    let date = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    respond(
        req,
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"date": date}}}),
    )
}

/// Verifies the bearer token as the real API would: our key, our audience, not expired.
pub(super) async fn caller(d: &Demo, req: &HttpRequest) -> Result<usize, Box<HttpResponse>> {
    let Ok(keys) = d.keys().await else {
        return Err(Box::new(graph_error(
            req,
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The demo keys are not ready.",
        )));
    };
    let audience = if outlook(req) {
        "https://outlook.office.com".to_owned()
    } else if req.path().starts_with("/_demo/sharepoint/") {
        d.internal_base.clone()
    } else {
        "https://graph.microsoft.com".to_owned()
    };
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let (n, e) = keys.signer.public_components();
    let key = DecodingKey::from_rsa_raw_components(&n, &e);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_audience(&[audience.as_str()]);
    validation.required_spec_claims = HashSet::from(["exp".to_owned(), "aud".to_owned()]);
    let person = token
        .and_then(|t| jsonwebtoken::decode::<AccessClaims>(t, &key, &validation).ok())
        .and_then(|data| PEOPLE.iter().position(|p| p.oid == data.claims.oid));
    person.ok_or_else(|| {
        Box::new(graph_error(
            req,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience, signature or lifetime.",
        ))
    })
}

pub(super) async fn me(demo: web::Data<Demo>, req: HttpRequest) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => &PEOPLE[p],
        Err(r) => return *r,
    };
    let (given, surname) = person.name.split_once(' ').unwrap_or((person.name, ""));
    let body = if outlook(&req) {
        json!({
            "Id": format!("{}@{}", person.oid, super::TENANT_ID),
            "EmailAddress": person.upn, "DisplayName": person.name,
            "Alias": given, "MailboxGuid": person.oid,
        })
    } else {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "businessPhones": [], "displayName": person.name, "givenName": given,
            "jobTitle": person.job_title, "mail": person.upn, "mobilePhone": null,
            "officeLocation": person.office, "preferredLanguage": "en-US", "surname": surname,
            "userPrincipalName": person.upn, "id": person.oid,
        })
    };
    respond(&req, StatusCode::OK, body)
}

#[derive(Deserialize)]
pub(super) struct ListParams {
    #[serde(rename = "$top")]
    top: Option<String>,
    #[serde(rename = "$skip")]
    skip: Option<String>,
}

pub(super) async fn messages(
    demo: web::Data<Demo>,
    req: HttpRequest,
    folder: web::Path<String>,
    q: web::Query<ListParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let folder = match folder.to_ascii_lowercase().as_str() {
        "inbox" => Folder::Inbox,
        "sentitems" => Folder::SentItems,
        "drafts" => Folder::Drafts,
        _ => {
            return graph_error(
                &req,
                StatusCode::NOT_FOUND,
                "ErrorInvalidIdMalformed",
                "Id is malformed.",
            );
        }
    };
    let top = match q.top.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return graph_error(
                &req,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid value for $top.",
            );
        }
    };
    let skip = match q.skip.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return graph_error(
                &req,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid value for $skip.",
            );
        }
    };
    let mailbox = d.mailbox(person);
    let found: Vec<&DemoMessage> = mailbox.iter().filter(|m| m.folder == folder).collect();
    let (mut body, more) = page(d, &req, found, skip, top);
    if more {
        // Like Graph: the whole URL of the next page, to be followed as is.
        let (skip_name, top_name) = ("%24skip", "%24top");
        body["@odata.nextLink"] = Value::String(format!(
            "{}{}?{top_name}={top}&{skip_name}={}",
            d.internal_base,
            req.path(),
            skip + top
        ));
    }
    respond(&req, StatusCode::OK, body)
}

#[derive(Deserialize)]
pub(super) struct SearchParams {
    #[serde(rename = "$search")]
    search: Option<String>,
    #[serde(rename = "$top")]
    top: Option<usize>,
    #[serde(rename = "$skiptoken")]
    skiptoken: Option<usize>,
    #[serde(rename = "$select")]
    select: Option<String>,
}

/// Messages `skip..skip + top` of `found`, newest first, in the request's
/// shape; and whether more follow.
fn page(
    d: &Demo,
    req: &HttpRequest,
    mut found: Vec<&DemoMessage>,
    skip: usize,
    top: usize,
) -> (Value, bool) {
    found.sort_by_key(|m| std::cmp::Reverse(m.received));
    let pascal = outlook(req);
    let value: Vec<Value> = found
        .iter()
        .skip(skip)
        .take(top)
        .map(|m| render(m, pascal, &d.public_base))
        .collect();
    (
        json!({ "@odata.context": "demo", "value": value }),
        found.len() > skip.saturating_add(top),
    )
}

/// The words of a `$search="…"` KQL phrase (quotes and backslashes unescaped).
fn phrase(search: &str) -> String {
    let inner = search
        .trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(search.trim());
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The text a search looks in: subject, sender and the body's words.
fn searchable(m: &DemoMessage) -> String {
    let body = match &m.body {
        DemoBody::Html(h) => {
            let mut text = String::with_capacity(h.len());
            let mut in_tag = false;
            for c in h.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        text.push(' ');
                    }
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text
        }
        DemoBody::Text(t) => t.to_string(),
    };
    let from = m
        .from
        .as_ref()
        .map(|(n, a)| format!("{} {a}", n.as_deref().unwrap_or_default()))
        .unwrap_or_default();
    format!("{} {from} {}", m.subject, body).to_lowercase()
}

/// `GET /me/messages`, with `$search` (every folder, newest first, as Graph
/// orders search results) and `$skiptoken` paging.
pub(super) async fn search(
    demo: web::Data<Demo>,
    req: HttpRequest,
    q: web::Query<SearchParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let top = q.top.unwrap_or(10).clamp(1, 1000);
    let skip = q.skiptoken.unwrap_or(0);
    let words = q.search.as_deref().map(phrase).unwrap_or_default();
    let needles: Vec<String> = words
        .to_lowercase()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mailbox = d.mailbox(person);
    let found: Vec<&DemoMessage> = mailbox
        .iter()
        .filter(|m| {
            let text = searchable(m);
            needles.iter().all(|n| text.contains(n.as_str()))
        })
        .collect();
    let (mut body, more) = page(d, &req, found, skip, top);
    if more && let Ok(mut next) = url::Url::parse(&format!("{}{}", d.internal_base, req.path())) {
        {
            let mut pairs = next.query_pairs_mut();
            if let Some(s) = &q.search {
                pairs.append_pair("$search", s);
            }
            pairs.append_pair("$top", &top.to_string());
            if let Some(s) = &q.select {
                pairs.append_pair("$select", s);
            }
            pairs.append_pair("$skiptoken", &(skip + top).to_string());
        }
        body["@odata.nextLink"] = Value::String(next.to_string());
    }
    respond(&req, StatusCode::OK, body)
}

#[derive(Deserialize)]
pub(super) struct MessageParams {
    #[serde(rename = "$select")]
    select: Option<String>,
}

/// One message: headers and attachments, or (with `$select=body`) its body.
pub(super) async fn message(
    demo: web::Data<Demo>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<MessageParams>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mailbox = d.mailbox(person);
    let Some(m) = mailbox.iter().find(|m| m.id == *id) else {
        return graph_error(
            &req,
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let pascal = outlook(&req);
    let wants_body = q
        .select
        .as_deref()
        .is_some_and(|s| s.split(',').any(|f| f.eq_ignore_ascii_case("body")));
    if wants_body {
        let (kind, content) = match &m.body {
            DemoBody::Html(h) => ("html", h.to_string()),
            DemoBody::Text(t) => ("text", t.to_string()),
        };
        let change_key = m.change_key();
        let body = if pascal {
            json!({"@odata.etag": format!("W/\"{change_key}\""), "Id": m.id, "ChangeKey": change_key, "Body": {"ContentType": if kind == "html" { "HTML" } else { "Text" }, "Content": content}})
        } else {
            json!({"@odata.etag": format!("W/\"{change_key}\""), "id": m.id, "changeKey": change_key, "body": {"contentType": kind, "content": content}})
        };
        return respond(&req, StatusCode::OK, body);
    }
    let mut value = render(m, pascal, &d.public_base);
    let people = |list: &[(String, String)]| -> Vec<Value> {
        list.iter()
            .map(|(n, a)| {
                if pascal {
                    json!({"EmailAddress": {"Name": n, "Address": a}})
                } else {
                    json!({"emailAddress": {"name": n, "address": a}})
                }
            })
            .collect()
    };
    let attachments: Vec<Value> = m
        .attachments
        .iter()
        .map(|a| super::attachments::describe(a, pascal, false))
        .collect();
    if pascal {
        value["ToRecipients"] = Value::Array(people(&m.to));
        value["CcRecipients"] = Value::Array(people(&m.cc));
        value["Attachments"] = Value::Array(attachments);
    } else {
        value["toRecipients"] = Value::Array(people(&m.to));
        value["ccRecipients"] = Value::Array(people(&m.cc));
        value["attachments"] = Value::Array(attachments);
    }
    respond(&req, StatusCode::OK, value)
}

/// A stand-in "remote" image for newsletters.
pub(super) async fn image() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "no-store"))
        .body(HERO_SVG)
}

const HERO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="160" viewBox="0 0 600 160"><rect width="600" height="160" fill="#e8f1fb"/><circle cx="90" cy="80" r="46" fill="#0f6cbd"/><rect x="170" y="52" width="300" height="18" rx="4" fill="#0b5699"/><rect x="170" y="86" width="220" height="14" rx="4" fill="#5b616b"/></svg>"##;

/// The stand-in tracking pixel: counts every request, so tests can prove
/// nothing fetched it behind the reader's back.
pub(super) async fn tracker(demo: web::Data<Demo>) -> HttpResponse {
    let d: &Demo = &demo;
    d.tracker_hits
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header(("Cache-Control", "no-store"))
        .body(&b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"[..])
}

pub(super) fn render(m: &DemoMessage, pascal: bool, public_base: &str) -> Value {
    let web_link = format!(
        "{public_base}/_demo/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
        m.id
    );
    let importance = if m.important { "high" } else { "normal" };
    let received = m.received.format(&Rfc3339).unwrap_or_default();
    let from = m
        .from
        .as_ref()
        .map(|(name, address)| (name.clone(), address.clone()));
    if pascal {
        json!({
            "@odata.etag": format!("W/\"{}\"", m.id), "Id": m.id,
            "ReceivedDateTime": received, "Subject": m.subject,
            "From": from.map(|(n, a)| json!({"EmailAddress": {"Name": n, "Address": a}})),
            "IsRead": !m.unread, "HasAttachments": m.has_attachments(),
            "Importance": if m.important { "High" } else { "Normal" }, "WebLink": web_link,
        })
    } else {
        json!({
            "@odata.etag": format!("W/\"{}\"", m.id), "id": m.id,
            "receivedDateTime": received, "subject": m.subject,
            "from": from.map(|(n, a)| json!({"emailAddress": {"name": n, "address": a}})),
            "isRead": !m.unread, "hasAttachments": m.has_attachments(),
            "importance": importance, "webLink": web_link,
        })
    }
}

/// SharePoint's `/_api/web/currentuser`, for a token whose audience is this host.
pub(super) async fn sharepoint_user(demo: web::Data<Demo>, req: HttpRequest) -> HttpResponse {
    let d: &Demo = &demo;
    let person = match caller(d, &req).await {
        Ok(p) => &PEOPLE[p],
        // Keys not ready yet: the same 503 as the other stand-in endpoints.
        Err(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => return *r,
        Err(_) => {
            return HttpResponse::Unauthorized().json(json!({
                "error_description": "Invalid issuer or signature."
            }));
        }
    };
    let wants_json = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if !wants_json {
        // SharePoint answers Atom XML by default; the app must ask for JSON.
        return HttpResponse::Ok()
            .content_type("application/atom+xml")
            .body("<entry/>");
    }
    HttpResponse::Ok().json(json!({
        "Id": 11, "IsHiddenInUI": false,
        "LoginName": format!("i:0#.f|membership|{}", person.upn.to_lowercase()),
        "Title": person.name, "PrincipalType": 1, "Email": person.upn,
        "IsSiteAdmin": person.job_title.is_none(),
        "UserPrincipalName": person.upn.to_lowercase(),
    }))
}

/// Card messages kept per mailbox; older ones are dropped (the stand-in's stores are bounded).
const MAX_DELIVERED: usize = 20;

#[derive(Deserialize)]
pub(super) struct SendMail {
    message: OutgoingMessage,
}

#[derive(Deserialize)]
struct OutgoingMessage {
    #[serde(default)]
    subject: String,
    body: OutgoingBody,
    #[serde(rename = "toRecipients", default)]
    to: Vec<OutgoingRecipient>,
}

#[derive(Deserialize)]
struct OutgoingBody {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct OutgoingRecipient {
    #[serde(rename = "emailAddress")]
    email_address: OutgoingAddress,
}

#[derive(Deserialize)]
struct OutgoingAddress {
    address: String,
}

/// The card an actionable email carries in its `<head>`.
pub(super) fn card_in(html: &str) -> Option<String> {
    const OPEN: &str = "<script type=\"application/adaptivecard+json\">";
    let start = html.find(OPEN)? + OPEN.len();
    let end = start + html[start..].find("</script>")?;
    let json = html[start..end].replace("<\\/", "</");
    serde_json::from_str::<Value>(&json).ok()?;
    Some(json)
}

/// Graph's `POST /me/sendMail`: delivers into the demo Inbox of each demo
/// person addressed (202), as Exchange would.
pub(super) async fn send_mail(
    demo: web::Data<Demo>,
    req: HttpRequest,
    body: web::Json<SendMail>,
) -> HttpResponse {
    let d: &Demo = &demo;
    let sender = match caller(d, &req).await {
        Ok(p) => &PEOPLE[p],
        Err(r) => return *r,
    };
    let m = body.into_inner().message;
    if m.to.is_empty() || m.to.len() > 10 || m.body.content.len() > 256 * 1024 {
        return graph_error(
            &req,
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "The message has no recipient, too many, or too large a body.",
        );
    }
    let card = card_in(&m.body.content).map(|c| DemoCard {
        original: c.clone().into(),
        current: c.into(),
    });
    for r in &m.to {
        let Some(p) = PEOPLE
            .iter()
            .position(|p| p.upn.eq_ignore_ascii_case(r.email_address.address.trim()))
        else {
            continue;
        };
        let n = d
            .delivered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let message = DemoMessage {
            id: format!("AAMkAD{p}C{n:05}"),
            folder: Folder::Inbox,
            subject: m.subject.chars().take(255).collect(),
            from: Some((Some(sender.name.to_owned()), sender.upn.to_owned())),
            received: time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
            body: DemoBody::Html(m.body.content.clone().into()),
            unread: true,
            important: false,
            attachments: vec![],
            to: vec![(PEOPLE[p].name.to_owned(), PEOPLE[p].upn.to_owned())],
            cc: vec![],
            card: card.clone(),
            seq: 0,
        };
        {
            let mut mailbox = d.mailbox_mut(p);
            while mailbox.iter().filter(|m| m.card.is_some()).count() >= MAX_DELIVERED {
                if let Some(oldest) = mailbox.iter().position(|m| m.card.is_some()) {
                    mailbox.remove(oldest);
                }
            }
        }
        d.deliver(p, message);
    }
    HttpResponse::Accepted()
        .insert_header(("request-id", uuid::Uuid::new_v4().to_string()))
        .finish()
}
