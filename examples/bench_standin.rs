//! A fast local stand-in for the identity platform and Graph, for benchmarks.
//!
//! `cargo run --release --example bench_standin -- 127.0.0.1:18081`
//!
//! It signs people in without a page (authorize redirects straight back),
//! serves a fixed ten-message Inbox, mints Actionable Message tokens at
//! `/action-token?aud=…` (`&scheme=legacy` for the retired EAT tokens; `/action-tokens?n=…`
//! for a pool), and reports at `/stats` how many TCP connections it
//! accepted and how often its keys were fetched.

// A benchmark helper, not part of the product: it may panic on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use outlook_inbox::jwt::action_token::ACTIONS_APP_ID;
use outlook_inbox::jwt::signer::RsaSigner;
use serde_json::json;

const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

struct State {
    base: String,
    signer: RsaSigner,
    nonces: Mutex<HashMap<String, String>>,
    key_hits: AtomicUsize,
    inbox: String,
    /// A 50 KB newsletter as Graph's `$select=body` answer.
    message_body: String,
    /// A 100 MB attachment's content.
    big: web::Bytes,
    /// Messages that arrived and the delta query has not returned yet.
    arrived: AtomicUsize,
    /// Messages the delta query returned so far (their ids).
    delivered: AtomicUsize,
}

/// The size of the attachment every message has (`/attachments/{aid}`).
const BIG: usize = 100 * 1024 * 1024;

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let value: Vec<_> = (0..10)
        .map(|i| {
            json!({
                "@odata.etag": format!("W/\"CQAAABYAAAAoPBSqxXQOT6tuE0pxCMrtAABufX4{i}\""),
                "id": format!("AAMkADRmMDExYzhjLWYyNGMtNDZmMC1iZDU4LTRkMjk4YTdjMjU5OABGAAAAAABp4MZ{i}"),
                "receivedDateTime": format!("2026-11-{:02}T09:14:00Z", 20 - i),
                "subject": format!("Benchmark message {i} — café ☕"),
                "from": {"emailAddress": {"name": format!("Sender {i}"), "address": format!("sender{i}@contoso.com")}},
            })
        })
        .collect();
    let state = web::Data::new(State {
        base: format!("http://{addr}"),
        signer: RsaSigner::generate("bench-key").expect("key generation"),
        nonces: Mutex::new(HashMap::new()),
        key_hits: AtomicUsize::new(0),
        inbox: json!({"@odata.context": "bench", "value": value}).to_string(),
        message_body: {
            let one = outlook_inbox::demo::bodies::newsletter(
                "https://cdn.contoso.example",
                "M1",
                "Weekly",
            );
            let content = one.repeat(50 * 1024 / one.len() + 1);
            json!({"id": "BENCH1", "changeKey": "CQAAABYAAAAbench", "body": {"contentType": "html", "content": content}}).to_string()
        },
        big: web::Bytes::from(vec![0x5a; BIG]),
        arrived: AtomicUsize::new(0),
        delivered: AtomicUsize::new(0),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route(
                "/common/v2.0/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route(
                "/common/.well-known/openid-configuration",
                web::get().to(discovery_v1),
            )
            .route(
                "/sts/common/.well-known/openid-configuration",
                web::get().to(discovery_legacy),
            )
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token))
            .route("/keys", web::get().to(keys))
            .route("/v1.0/me/mailfolders/inbox/messages", web::get().to(inbox))
            .route("/v1.0/me", web::get().to(me))
            .route("/v1.0/me/messages/{id}", web::get().to(message_body))
            .route(
                "/v1.0/me/messages/{id}/attachments/{aid}",
                web::get().to(attachment),
            )
            .route(
                "/v1.0/me/messages/{id}/attachments/{aid}/$value",
                web::get().to(attachment_value),
            )
            .route(
                "/v1.0/me/mailFolders/inbox/messages/delta",
                web::get().to(delta),
            )
            .route("/arrive", web::post().to(arrive))
            .route("/action-token", web::get().to(action_token))
            .route("/action-tokens", web::get().to(action_tokens))
            .route("/stats", web::get().to(stats))
    })
    .on_connect(|_, _| {
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    })
    .bind(addr)?
    .run()
    .await
}

async fn discovery(s: web::Data<State>) -> HttpResponse {
    let b = &s.base;
    HttpResponse::Ok().json(json!({
        "issuer": format!("{b}/{{tenantid}}/v2.0"),
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "jwks_uri": format!("{b}/keys"),
        "end_session_endpoint": format!("{b}/logout"),
    }))
}

/// The retired Actionable Message discovery document (what the Flask
/// sample reads before it fetches the keys).
async fn discovery_legacy(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": "https://substrate.office.com/sts/",
        "jwks_uri": format!("{}/keys", s.base),
    }))
}

async fn discovery_v1(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "issuer": format!("{}/sts/{{tenantid}}/", s.base) }))
}

async fn authorize(s: web::Data<State>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    let code = uuid::Uuid::new_v4().simple().to_string();
    if let Some(nonce) = q.get("nonce") {
        s.nonces.lock().unwrap().insert(code.clone(), nonce.clone());
    }
    let mut to = url::Url::parse(
        q.get("redirect_uri")
            .map(String::as_str)
            .unwrap_or("http://invalid/"),
    )
    .unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""));
    HttpResponse::Found()
        .insert_header(("Location", to.as_str()))
        .finish()
}

async fn token(s: web::Data<State>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let code = form.get("code").cloned().unwrap_or_default();
    let nonce = s.nonces.lock().unwrap().remove(&code).unwrap_or_default();
    let now = now();
    let id_token = s
        .signer
        .sign(&json!({
            "ver": "2.0", "iss": format!("{}/{TENANT}/v2.0", s.base), "aud": form.get("client_id"),
            "exp": now + 3600, "iat": now, "nbf": now, "name": "Bench Person",
            "preferred_username": "bench@contoso.com", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "tid": TENANT, "nonce": nonce, "sub": "bench",
        }))
        .unwrap();
    HttpResponse::Ok().json(json!({
        "token_type": "Bearer", "scope": "User.Read Mail.Read", "expires_in": 3599,
        "access_token": "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImJlbmNoIn0.bench.access", "id_token": id_token,
    }))
}

async fn keys(s: web::Data<State>) -> HttpResponse {
    s.key_hits.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().json(json!({ "keys": [s.signer.jwk()] }))
}

async fn inbox(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("request-id", "00000000-0000-0000-0000-000000000000"))
        .body(s.inbox.clone())
}

async fn message_body(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("request-id", "00000000-0000-0000-0000-000000000000"))
        .body(s.message_body.clone())
}

async fn attachment(path: web::Path<(String, String)>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "@odata.type": "#microsoft.graph.fileAttachment", "id": path.1,
        "name": "archive.bin", "contentType": "application/octet-stream",
        "size": BIG, "isInline": false,
    }))
}

async fn attachment_value(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(s.big.clone())
}

/// Someone sends the bench person a message: the next delta returns it.
async fn arrive(s: web::Data<State>) -> HttpResponse {
    s.arrived.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Accepted().finish()
}

/// The Inbox delta query: the messages that arrived since the last call.
async fn delta(s: web::Data<State>) -> HttpResponse {
    let n = s.arrived.swap(0, Ordering::SeqCst);
    let first = s.delivered.fetch_add(n, Ordering::SeqCst);
    let received = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let value: Vec<_> = (first..first + n)
        .map(|i| {
            json!({
                "id": format!("AAMkADlive{i:08}"), "receivedDateTime": received,
                "subject": format!("Arrived {i}"), "isRead": false, "hasAttachments": false,
                "importance": "normal",
                "from": {"emailAddress": {"name": "Live Sender", "address": "live@contoso.com"}},
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "value": value,
        "@odata.deltaLink": format!("{}/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=t{}", s.base, first + n),
    }))
}

async fn me() -> HttpResponse {
    HttpResponse::Ok().json(json!({"displayName": "Bench Person", "jobTitle": "Benchmarker"}))
}

/// One action token for `aud`: an Entra v1 token unique by its `uti` (as
/// Microsoft's are), or with `legacy` a retired EAT token (issuer
/// `https://substrate.office.com/sts/`, `sender` and `sub` claims) unique by its `jti`.
fn mint(s: &State, aud: Option<&String>, legacy: bool) -> String {
    let now = now();
    let claims = if legacy {
        json!({
            "aud": aud, "iss": "https://substrate.office.com/sts/", "iat": now, "nbf": now,
            "exp": now + 3600, "appid": ACTIONS_APP_ID, "appidacr": "2", "acr": "0",
            "ver": "STI.ExternalAccessToken.V1", "sender": "lob@contoso.com",
            "sub": "john@contoso.com", "jti": uuid::Uuid::new_v4().to_string(),
        })
    } else {
        json!({
            "aud": aud, "iss": format!("{}/sts/{TENANT}/", s.base), "iat": now, "nbf": now,
            "exp": now + 3600, "appid": ACTIONS_APP_ID, "appidacr": "2", "scp": "Global.Test",
            "tid": TENANT, "upn": "john@contoso.com", "ver": "1.0",
            "uti": uuid::Uuid::new_v4().simple().to_string(),
        })
    };
    s.signer.sign(&claims).unwrap()
}

fn legacy(q: &HashMap<String, String>) -> bool {
    q.get("scheme").is_some_and(|s| s == "legacy")
}

async fn action_token(s: web::Data<State>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    HttpResponse::Ok().body(mint(&s, q.get("aud"), legacy(&q)))
}

/// `n` distinct tokens, one a line (signed on every core: RSA signing is
/// the slow part of making a pool of tens of thousands).
async fn action_tokens(
    s: web::Data<State>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let n: usize = q
        .get("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
        .min(200_000);
    let aud = q.get("aud").cloned();
    let legacy = legacy(&q);
    let s = s.into_inner();
    let lines = web::block(move || {
        let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..cores)
                .map(|i| {
                    let (s, aud) = (&s, aud.as_ref());
                    let count = n / cores + usize::from(i < n % cores);
                    scope
                        .spawn(move || (0..count).map(|_| mint(s, aud, legacy)).collect::<Vec<_>>())
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        })
    })
    .await
    .unwrap();
    HttpResponse::Ok().body(lines)
}

async fn stats(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "connections": CONNECTIONS.load(Ordering::Relaxed),
        "key_fetches": s.key_hits.load(Ordering::Relaxed),
    }))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
