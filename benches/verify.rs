//! Verifying one `entra` Actionable Message token with cached keys.
//!
//! `cargo bench --bench verify`; compare with `openssl speed -seconds 3 rsa2048`
//! (its "verify/s" column) on the same machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use outlook_inbox::jwt::action_token::{ACTIONS_APP_ID, EntraRules, verify_entra};
use outlook_inbox::jwt::signer::RsaSigner;
use outlook_inbox::jwt::{JwksCache, Verifier};
use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let signer = RsaSigner::generate("bench-key").unwrap();
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(path("/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [signer.jwk()]})))
            .mount(&server)
            .await;
        server
    });
    let jwks_url = url::Url::parse(&format!("{}/keys", server.uri())).unwrap();
    let http = reqwest::Client::new();
    let verifier = Verifier::new(JwksCache::new(
        http,
        Duration::from_secs(60),
        Duration::from_secs(3600),
        Duration::from_secs(24 * 3600),
    ));
    let issuers = vec![
        "https://login.microsoftonline.com/{tenantid}/v2.0".to_owned(),
        "https://sts.windows.net/{tenantid}/".to_owned(),
    ];
    let audiences = vec!["api://auth-am-bench/6cb04018-a3f5-46a7-b995-940c78f5aef3".to_owned()];
    let rules = EntraRules {
        jwks_url: &jwks_url,
        issuers: &issuers,
        audiences: &audiences,
        tenants: &[],
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = signer
        .sign(&json!({
            "aud": audiences[0], "iss": format!("https://sts.windows.net/{TENANT}/"), "iat": now,
            "nbf": now, "exp": now + 3600, "appid": ACTIONS_APP_ID, "appidacr": "2",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81", "scp": "Global.Test", "sub": "pairwise",
            "tid": TENANT, "upn": "john@contoso.com", "ver": "1.0",
        }))
        .unwrap();
    // Warm the cache: the benchmark measures verification with cached keys.
    rt.block_on(verify_entra(&verifier, &token, &rules))
        .unwrap();

    c.bench_function("verify entra action token (cached keys)", |b| {
        b.to_async(&rt)
            .iter(|| async { verify_entra(&verifier, &token, &rules).await.unwrap() })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
