//! The api as an OIDC resource server (SPEC §12 "Identity") against a real provider
//! (npm's oidc-provider, docs/IDENTITY.md): the dev instance for tokens and mappings,
//! instances of the test's own for key rotation, key removal and an outage.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use storeops::{admin::Readiness, roles::api::identity_checks, shutdown::Shutdown};
use uuid::Uuid;

use crate::common::{
    SeededStore, TestApp, assert_problem,
    oidc::{self, OwnProvider},
};

/// The dev users' subjects (scripts/oidc/dev-users.json).
const OLGA: &str = "7578b9a1-b11d-4e49-8736-6f2036b1ca00";
const DMITRY: &str = "8bd05c17-4dfd-41ef-a09b-fa4a5275305c";

const GROUP_ROLES: (&str, &str) = (
    "AUTH_OIDC_GROUP_ROLES",
    "storeops-hq=hq,storeops-regional-managers=regional_manager,storeops-store-managers=store_manager,storeops-associates=associate",
);

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/api/v1/me", token).await
}

async fn me_json(app: &TestApp, token: &str) -> Value {
    let response = me(app, token).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.expect("me json")
}

async fn store_status(app: &TestApp, token: &str, store: &SeededStore) -> u16 {
    app.get(&format!("/api/v1/stores/{}", store.id), token)
        .await
        .status()
        .as_u16()
}

/// A staff row whose provider subject is `subject`.
async fn add_staff(app: &TestApp, subject: &str, store: &SeededStore, role: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO staff (id, store_id, display_name, role, external_subject, email)
         VALUES ($1, $2, 'From the provider', $3, $4, $5)",
    )
    .bind(id)
    .bind(store.id.0)
    .bind(role)
    .bind(subject)
    .bind(format!("{subject}@chain.example"))
    .execute(&app.db)
    .await
    .expect("insert staff");
    id
}

fn in_region<'a>(stores: &'a [SeededStore], region: &str) -> &'a SeededStore {
    stores
        .iter()
        .find(|s| s.region == region)
        .unwrap_or_else(|| panic!("a store in {region}"))
}

fn header(token: &str) -> Value {
    let encoded = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64")).expect("json")
}

fn counter(name: &str, outcome: &str) -> u64 {
    let needle = format!("{name}{{outcome=\"{outcome}\"}} ");
    storeops::metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `check` every 200 ms for up to `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_providers_tokens_are_accepted_with_the_scope_their_claims_and_groups_map_to() {
    let issuer = oidc::dev_issuer();
    let app = oidc::spawn(30, &issuer, &[GROUP_ROLES]).await;
    let stores = app.stores().await;
    let (moscow, volga) = (in_region(&stores, "moscow"), in_region(&stores, "volga"));
    add_staff(&app, OLGA, moscow, "store_manager").await;
    add_staff(&app, DMITRY, volga, "associate").await;

    // HQ by group, signed with RS256 and with ES256.
    for alg in ["RS256", "ES256"] {
        let anna = oidc::user_token(&issuer, "anna.volkova", &["--alg", alg]).await;
        assert_eq!(header(&anna)["alg"], alg);
        let body = me_json(&app, &anna).await;
        assert_eq!(body["role"], "hq", "{alg}: {body}");
        assert_eq!(store_status(&app, &anna, volga).await, 200);
    }
    // Regional manager by group, region by claim.
    let igor = oidc::user_token(&issuer, "igor.smirnov", &[]).await;
    let body = me_json(&app, &igor).await;
    assert_eq!(
        (body["role"].as_str(), body["region"].as_str()),
        (Some("regional_manager"), Some("moscow"))
    );
    assert_eq!(store_status(&app, &igor, moscow).await, 200);
    assert_eq!(store_status(&app, &igor, volga).await, 403);
    // The role claim read as it is.
    let nina = oidc::user_token(&issuer, "nina.popova", &[]).await;
    assert_eq!(me_json(&app, &nina).await["region"], "volga");
    // Store staff by group, their store from the staff directory.
    let olga = oidc::user_token(&issuer, "olga.kuznetsova", &[]).await;
    let body = me_json(&app, &olga).await;
    assert_eq!(body["role"], "store_manager");
    assert_eq!(body["store_id"], moscow.id.to_string());
    assert_eq!(store_status(&app, &olga, volga).await, 403);
    let dmitry = oidc::user_token(&issuer, "dmitry.ivanov", &["--alg", "ES256"]).await;
    let body = me_json(&app, &dmitry).await;
    assert_eq!(body["role"], "associate");
    assert_eq!(body["store_id"], volga.id.to_string());

    // Unmappable: 403 saying what is missing.
    let maria = oidc::user_token(&issuer, "maria.sokolova", &[]).await;
    let body = assert_problem(me(&app, &maria).await, 403).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("store_id") && detail.contains("staff directory"),
        "{detail}"
    );
    let pavel = oidc::user_token(&issuer, "pavel.orlov", &[]).await;
    let body = assert_problem(me(&app, &pavel).await, 403).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("groups"),
        "{body}"
    );

    // The integration client's token is an integration principal.
    let integration = oidc::client_token(&issuer).await;
    let response = app
        .get(
            &format!("/api/v1/integrations/ingests/{}", Uuid::now_v7()),
            &integration,
        )
        .await;
    assert_problem(response, 404).await;

    // The ID token of the same sign-in is for the client, not for the api.
    let json: Value = serde_json::from_str(
        &oidc::user_token(&issuer, "anna.volkova", &["--print", "json"]).await,
    )
    .expect("token response");
    let id_token = json["id_token"].as_str().expect("id_token");
    assert_problem(me(&app, id_token).await, 401).await;
}

#[tokio::test]
async fn a_staff_member_moved_in_the_directory_is_scoped_to_the_new_store_on_the_next_request() {
    let issuer = oidc::dev_issuer();
    let app = oidc::spawn(30, &issuer, &[GROUP_ROLES]).await;
    let stores = app.stores().await;
    let (first, second) = (&stores[0], &stores[1]);
    let staff = add_staff(&app, DMITRY, first, "associate").await;
    let token = oidc::user_token(&issuer, "dmitry.ivanov", &[]).await;
    assert_eq!(store_status(&app, &token, first).await, 200);
    assert_eq!(store_status(&app, &token, second).await, 403);

    sqlx::query("UPDATE staff SET store_id = $1 WHERE id = $2")
        .bind(second.id.0)
        .bind(staff)
        .execute(&app.db)
        .await
        .expect("move");
    // The same token (its verification cached), the new store at once.
    assert_eq!(
        me_json(&app, &token).await["store_id"],
        second.id.to_string()
    );
    assert_eq!(store_status(&app, &token, second).await, 200);
    assert_eq!(store_status(&app, &token, first).await, 403);

    sqlx::query("UPDATE staff SET active = false WHERE id = $1")
        .bind(staff)
        .execute(&app.db)
        .await
        .expect("deactivate");
    assert_problem(me(&app, &token).await, 403).await;
}

#[tokio::test]
async fn forged_misdirected_and_stale_tokens_are_refused_with_401() {
    let issuer = oidc::dev_issuer();
    let keys = oidc::dev_keys();
    let app = oidc::spawn(3, &issuer, &[GROUP_ROLES]).await;
    let anna = oidc::user_token(&issuer, "anna.volkova", &[]).await;
    assert_eq!(me_json(&app, &anna).await["role"], "hq");
    let jwks = format!("{issuer}/jwks");
    let resigned = |changes: &'static [&'static str]| oidc::resign(&anna, &keys, changes);
    // Each only wrong in what its label says, and the outcome it is counted under.
    let cases = [
        (
            "wrong issuer",
            resigned(&["--set", "iss=http://localhost:9080"]).await,
            "wrong_issuer",
        ),
        (
            "wrong audience",
            resigned(&["--set", "aud=other-api"]).await,
            "wrong_audience",
        ),
        (
            "expired beyond the leeway",
            resigned(&["--exp-in=-120"]).await,
            "expired",
        ),
        (
            "not valid yet",
            resigned(&["--nbf-in=600"]).await,
            "not_yet_valid",
        ),
        (
            "alg none",
            oidc::forge(&anna, &["--alg", "none"]).await,
            "algorithm",
        ),
        (
            "HS256 keyed with the public key (PEM)",
            oidc::forge(&anna, &["--alg", "HS256", "--jwks", &jwks]).await,
            "algorithm",
        ),
        (
            "HS256 keyed with the public key (JWK)",
            oidc::forge(
                &anna,
                &["--alg", "HS256", "--jwks", &jwks, "--secret-form", "jwk"],
            )
            .await,
            "algorithm",
        ),
        (
            "a known kid, another key",
            oidc::forge(&anna, &["--random-key"]).await,
            "bad_signature",
        ),
        (
            "a kid the provider never published",
            oidc::forge(&anna, &["--random-key", "--kid", "never-published"]).await,
            "unknown_key",
        ),
    ];
    for (label, token, outcome) in cases {
        let before = counter("storeops_auth_verifications_total", outcome);
        let body = assert_problem(me(&app, &token).await, 401).await;
        assert!(
            counter("storeops_auth_verifications_total", outcome) > before,
            "{label}: not counted as {outcome}: {body}"
        );
    }
    // Within the leeway (30 s) is still accepted.
    let just_expired = resigned(&["--exp-in=-10"]).await;
    assert_eq!(me_json(&app, &just_expired).await["role"], "hq");
}

#[tokio::test]
async fn a_rotated_key_is_accepted_without_restart_a_removed_one_stops_and_an_outage_keeps_cached_keys()
 {
    let dir = OwnProvider::dir();
    OwnProvider::generate(&dir, "RS256", "key-a", "a.json").await;
    OwnProvider::generate(&dir, "RS256", "key-b", "b.json").await;
    let users = json!([{"username": "alice", "sub": "alice-sub", "role": "hq"}]);
    let provider = OwnProvider::start(dir, "a.json", &users).await;
    let issuer = provider.issuer.clone();
    let app = oidc::spawn(
        0,
        &issuer,
        &[
            ("AUTH_OIDC_JWKS_MIN_CACHE_SECONDS", "2"),
            ("AUTH_OIDC_JWKS_MAX_CACHE_SECONDS", "2"),
            ("AUTH_OIDC_UNKNOWN_KID_REFRESH_SECONDS", "1"),
        ],
    )
    .await;
    let readiness = Readiness::new(
        identity_checks(&app.verifier),
        Shutdown::new(Duration::ZERO, Duration::from_secs(1)),
    );

    let signed_by_a = oidc::user_token(&issuer, "alice", &[]).await;
    assert_eq!(header(&signed_by_a)["kid"], "key-a");
    assert_eq!(me_json(&app, &signed_by_a).await["role"], "hq");
    assert_eq!(readiness.report().await.status, "ok");

    // Rotation: B signs, A is still published; the running api takes B at its first token.
    provider.merge(&["b.json", "a.json"], "ba.json").await;
    provider.restart("ba.json").await;
    let signed_by_b = oidc::user_token(&issuer, "alice", &[]).await;
    assert_eq!(header(&signed_by_b)["kid"], "key-b");
    assert_eq!(me_json(&app, &signed_by_b).await["role"], "hq");
    assert_eq!(me_json(&app, &signed_by_a).await["role"], "hq");

    // Removal: only B is published; A's tokens stop within the cache window, the one
    // already verified (and cached) included.
    provider.restart("b.json").await;
    let new_by_a = oidc::resign(&signed_by_b, &provider.path("a.json"), &[]).await;
    eventually(Duration::from_secs(15), "key-a's removal", || async {
        me(&app, &signed_by_a).await.status() == 401
    })
    .await;
    assert_problem(me(&app, &new_by_a).await, 401).await;
    assert_eq!(me_json(&app, &signed_by_b).await["role"], "hq");

    // Outage: refreshes fail, the cached key B still verifies new tokens; readiness is
    // degraded, not failing.
    let errors_before = counter("storeops_auth_jwks_refreshes_total", "error");
    provider.stop().await;
    eventually(Duration::from_secs(15), "a failed refresh", || async {
        app.verifier
            .key_status()
            .is_some_and(|s| s.refresh_error.is_some())
    })
    .await;
    assert!(counter("storeops_auth_jwks_refreshes_total", "error") > errors_before);
    let fresh_by_b = oidc::forge(
        &signed_by_b,
        &[
            "--keys",
            &provider.path("b.json"),
            "--set",
            "jti=after-the-outage",
        ],
    )
    .await;
    assert_eq!(me_json(&app, &fresh_by_b).await["role"], "hq");
    let unknown = oidc::forge(&signed_by_b, &["--random-key", "--kid", "key-c"]).await;
    assert_problem(me(&app, &unknown).await, 401).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the readiness cache
    let report = readiness.report().await;
    assert_eq!(report.status, "degraded", "{:?}", report.checks);
}
