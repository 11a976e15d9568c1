//! A fast local stand-in for the identity platform and Graph, for benchmarks.
//!
//! `cargo run --release --example bench_standin -- 127.0.0.1:18081`
//!
//! It signs people in without a page (authorize redirects straight back),
//! serves a fixed ten-message Inbox, mints Actionable Message tokens at
//! `/action-token?aud=…`, and reports at `/stats` how many TCP connections it
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
}

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
            json!({"id": "BENCH1", "body": {"contentType": "html", "content": content}}).to_string()
        },
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
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token))
            .route("/keys", web::get().to(keys))
            .route("/v1.0/me/mailfolders/inbox/messages", web::get().to(inbox))
            .route("/v1.0/me", web::get().to(me))
            .route("/v1.0/me/messages/{id}", web::get().to(message_body))
            .route("/action-token", web::get().to(action_token))
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

async fn me() -> HttpResponse {
    HttpResponse::Ok().json(json!({"displayName": "Bench Person", "jobTitle": "Benchmarker"}))
}

async fn action_token(s: web::Data<State>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    let now = now();
    let token = s
        .signer
        .sign(&json!({
            "aud": q.get("aud"), "iss": format!("{}/sts/{TENANT}/", s.base), "iat": now, "nbf": now,
            "exp": now + 3600, "appid": ACTIONS_APP_ID, "appidacr": "2", "scp": "Global.Test",
            "tid": TENANT, "upn": "john@contoso.com", "ver": "1.0",
        }))
        .unwrap();
    HttpResponse::Ok().body(token)
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
