//! Walks every operation of the OpenAPI document (generated from the router itself) and
//! proves that each one refuses bad tokens with 401 and out-of-scope tokens with 403/404.
//! A new route is covered the moment it is added.

use crate::common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    SeededStore, TestApp, assert_problem, claims,
    oidc::{self, OwnProvider},
    token,
};
use reqwest::Method;
use storeops::{
    auth::{JwtSigner, Role},
    config::Secret,
};

struct Operation {
    method: Method,
    template: String,
}

fn operations(doc: &serde_json::Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            assert!(
                operation["security"].is_array(),
                "{method} {template} does not declare its bearer security"
            );
            ops.push(Operation {
                method,
                template: template.clone(),
            });
        }
    }
    ops
}

fn concrete(template: &str, store_id: &str) -> String {
    let mut path = String::new();
    for segment in template.split('/') {
        if !path.is_empty() || !segment.is_empty() {
            path.push('/');
        }
        path.push_str(match segment {
            "{store_id}" => store_id,
            "{date}" => "2030-01-01",
            s if s.starts_with('{') => "0190f2a0-0000-7000-8000-000000000000",
            s => s,
        });
    }
    path
}

async fn call(
    app: &TestApp,
    op: &Operation,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(op.method.clone(), app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if matches!(op.method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.json(&serde_json::json!({}));
    }
    request.send().await.expect("request")
}

fn alg_none_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(Role::Hq, None, None)).expect("claims"));
    format!("{header}.{body}.")
}

/// The tokens the matrix calls every operation with.
struct Tokens {
    /// Each must get 401 everywhere.
    bad: Vec<(&'static str, Option<String>)>,
    /// Valid tokens that map to no usable principal: 403 everywhere (OIDC mode).
    unmappable: Vec<(&'static str, String)>,
    integration: String,
    hq: String,
    other_associate: String,
    other_manager: String,
    other_regional: String,
}

/// The seeded chain's first store, a store in another region, and the document's operations.
async fn home_and_elsewhere(app: &TestApp) -> (SeededStore, SeededStore, Vec<Operation>) {
    let stores = app.stores().await;
    let home = stores[0].clone();
    let elsewhere = stores
        .iter()
        .find(|s| s.region != home.region)
        .expect("a store in another region")
        .clone();
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi json");
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(
        ops.len() >= 7,
        "the document lists only {} operations",
        ops.len()
    );
    (home, elsewhere, ops)
}

#[tokio::test]
async fn every_route_refuses_bad_tokens_and_out_of_scope_callers() {
    let app = TestApp::spawn(30).await;
    let (home, elsewhere, ops) = home_and_elsewhere(&app).await;

    let expired = {
        let mut c = claims(Role::Hq, None, None);
        c.exp = chrono::Utc::now().timestamp() - 3600;
        common::signer().sign(&c).expect("sign")
    };
    let wrongly_signed = JwtSigner::from_secret(&Secret::new("another-secret-another-secret-1234"))
        .sign(&claims(Role::Hq, None, None))
        .expect("sign");
    let associate_without_store = common::signer()
        .sign(&claims(Role::Associate, None, None))
        .expect("sign");
    let tokens = Tokens {
        bad: vec![
            ("missing", None),
            ("garbage", Some("Bearer not-a-jwt".to_owned())),
            ("expired", Some(format!("Bearer {expired}"))),
            ("wrongly signed", Some(format!("Bearer {wrongly_signed}"))),
            ("alg none", Some(format!("Bearer {}", alg_none_token()))),
            ("basic scheme", Some("Basic dXNlcjpwYXNz".to_owned())),
            (
                "role without its claim",
                Some(format!("Bearer {associate_without_store}")),
            ),
        ],
        unmappable: Vec::new(),
        integration: token(Role::Integration, None, None),
        hq: token(Role::Hq, None, None),
        other_associate: token(Role::Associate, Some(elsewhere.id), None),
        other_manager: token(Role::StoreManager, Some(elsewhere.id), None),
        other_regional: token(Role::RegionalManager, None, Some(&elsewhere.region)),
    };
    assert_matrix(&app, &home, &ops, &tokens).await;
}

/// The same matrix with the api as an OIDC resource server: every token comes from a
/// real provider (an instance of the test's own, whose users carry storeops claims for
/// the seeded stores) or is forged from one of its tokens.
#[tokio::test]
async fn every_route_refuses_bad_tokens_and_out_of_scope_callers_with_an_identity_provider() {
    let dir = OwnProvider::dir();
    OwnProvider::generate(&dir, "RS256", "matrix-key", "keys.json").await;
    OwnProvider::generate(&dir, "RS256", "matrix-key", "impostor.json").await;
    // The provider's users need the stores and the api needs the provider's issuer: a
    // first app seeds the chain, the api under test then serves the same database.
    let seed_app = TestApp::spawn(30).await;
    let (home, elsewhere, _) = home_and_elsewhere(&seed_app).await;
    let users = serde_json::json!([
        {"username": "hq", "sub": "m-hq", "role": "hq"},
        {"username": "assoc", "sub": "m-assoc", "role": "associate", "store_id": elsewhere.id.to_string()},
        {"username": "manager", "sub": "m-manager", "role": "store_manager", "store_id": elsewhere.id.to_string()},
        {"username": "regional", "sub": "m-regional", "role": "regional_manager", "region": elsewhere.region},
        {"username": "nostore", "sub": "m-nostore", "role": "associate"},
        {"username": "norole", "sub": "m-norole", "groups": ["contractors"]},
    ]);
    let provider = OwnProvider::start(dir, "keys.json", &users).await;
    let app = oidc::spawn_on_database(seed_app, &provider.issuer, &[]).await;
    let (home_again, _, ops) = home_and_elsewhere(&app).await;
    assert_eq!(home_again.id, home.id, "the same database");

    let issuer = provider.issuer.as_str();
    let hq = oidc::user_token(issuer, "hq", &[]).await;
    let impostor = provider.path("impostor.json");
    let keys = provider.path("keys.json");
    let jwks = format!("{issuer}/jwks");
    let bearer = |t: String| Some(format!("Bearer {t}"));
    let tokens = Tokens {
        bad: vec![
            ("missing", None),
            ("garbage", Some("Bearer not-a-jwt".to_owned())),
            (
                "expired",
                bearer(oidc::resign(&hq, &keys, &["--exp-in=-3600"]).await),
            ),
            (
                "wrongly signed",
                bearer(oidc::forge(&hq, &["--keys", &impostor]).await),
            ),
            (
                "alg none",
                bearer(oidc::forge(&hq, &["--alg", "none"]).await),
            ),
            (
                "HS256 keyed with the public key",
                bearer(oidc::forge(&hq, &["--alg", "HS256", "--jwks", &jwks]).await),
            ),
            (
                "wrong issuer",
                bearer(oidc::resign(&hq, &keys, &["--set", "iss=https://elsewhere.example"]).await),
            ),
            (
                "wrong audience",
                bearer(oidc::resign(&hq, &keys, &["--set", "aud=other-api"]).await),
            ),
            ("basic scheme", Some("Basic dXNlcjpwYXNz".to_owned())),
        ],
        unmappable: vec![
            (
                "associate without a store",
                oidc::user_token(issuer, "nostore", &[]).await,
            ),
            ("no role", oidc::user_token(issuer, "norole", &[]).await),
        ],
        integration: oidc::client_token(issuer).await,
        other_associate: oidc::user_token(issuer, "assoc", &[]).await,
        other_manager: oidc::user_token(issuer, "manager", &[]).await,
        other_regional: oidc::user_token(issuer, "regional", &[]).await,
        hq,
    };
    assert_matrix(&app, &home, &ops, &tokens).await;
}

async fn assert_matrix(app: &TestApp, home: &SeededStore, ops: &[Operation], tokens: &Tokens) {
    for op in ops {
        let path = concrete(&op.template, &home.id.to_string());
        for (label, authorization) in &tokens.bad {
            let response = call(app, op, &path, authorization.as_deref()).await;
            let body = assert_problem(response, 401).await;
            assert!(
                !body.to_string().contains(common::TEST_SECRET),
                "{} {path} ({label}) leaks the secret",
                op.method
            );
        }
        for (label, unmappable) in &tokens.unmappable {
            let response = call(app, op, &path, Some(&format!("Bearer {unmappable}"))).await;
            let body = assert_problem(response, 403).await;
            assert!(
                body["detail"].as_str().is_some_and(|d| d.contains("no ")),
                "{} {path} ({label}): the detail says what is missing: {body}",
                op.method
            );
        }

        let is_integration = op.template.starts_with("/api/v1/integrations");
        let wrong_kind = if is_integration {
            &tokens.hq
        } else {
            &tokens.integration
        };
        let response = call(app, op, &path, Some(&format!("Bearer {wrong_kind}"))).await;
        assert_problem(response, 403).await;

        if op.template.contains("{store_id}") {
            for (label, other) in [
                ("associate of another store", &tokens.other_associate),
                ("manager of another store", &tokens.other_manager),
                ("regional manager of another region", &tokens.other_regional),
            ] {
                let response = call(app, op, &path, Some(&format!("Bearer {other}"))).await;
                let status = response.status().as_u16();
                assert!(
                    status == 403 || status == 404,
                    "{} {path} as {label}: expected 403/404, got {status}",
                    op.method
                );
                assert_problem(response, status).await;
            }
        }
    }
}

/// Every announcement operation as every role: HQ everywhere, a regional manager in their
/// region, store staff only their store's announcements and their own receipts,
/// integrations nowhere.
#[tokio::test]
async fn announcement_operations_as_every_role() {
    let app = TestApp::spawn(30).await;
    let stores = app.stores().await;
    let home = &stores[0];
    let elsewhere = stores
        .iter()
        .find(|s| s.region != home.region)
        .expect("a store in another region");
    let topology = common::test_topology(&[200]);
    let worker = common::RunningWorker::groups(
        &app.db,
        &topology,
        &[storeops::announcements::GROUP],
        2,
        &[],
    );
    worker.wait_connected().await;
    let hq = token(Role::Hq, None, None);
    let regional = token(Role::RegionalManager, None, Some(&home.region));
    let other_regional = token(Role::RegionalManager, None, Some(&elsewhere.region));
    let manager = token(Role::StoreManager, Some(home.id), None);
    let associate = token(Role::Associate, Some(home.id), None);
    let other_associate = token(Role::Associate, Some(elsewhere.id), None);
    let integration = token(Role::Integration, None, None);
    let send = |method: Method, path: String, token: String, body: Option<serde_json::Value>| {
        let app = &app;
        async move {
            let mut request = app
                .client
                .request(method, app.url(&format!("/api/v1{path}")))
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            request.send().await.expect("send")
        }
    };
    let body = serde_json::json!({"title": "Matrix", "body": "For every role.", "target": {"all": true}, "requires_ack": true});
    let created: serde_json::Value = send(
        Method::POST,
        "/announcements".into(),
        regional.clone(),
        Some(body.clone()),
    )
    .await
    .json()
    .await
    .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    common::eventually(std::time::Duration::from_secs(30), "published", || async {
        send(
            Method::GET,
            format!("/announcements/{id}"),
            hq.clone(),
            None,
        )
        .await
        .json::<serde_json::Value>()
        .await
        .is_ok_and(|a| a["status"] == "published")
    })
    .await;
    let mut draft = body.clone();
    draft["draft"] = serde_json::json!(true);
    let draft: serde_json::Value = send(
        Method::POST,
        "/announcements".into(),
        regional.clone(),
        Some(draft),
    )
    .await
    .json()
    .await
    .expect("json");
    let draft = draft["id"].as_str().expect("id").to_owned();

    // (method, path, body, [(role, token, expected status)]) in the order they run.
    let follow = |path: String| {
        (
            Method::GET,
            path,
            None,
            vec![
                ("hq", hq.clone(), 200),
                ("regional manager", regional.clone(), 200),
                ("another region's manager", other_regional.clone(), 404),
                ("store manager", manager.clone(), 403),
                ("associate", associate.clone(), 403),
                ("integration", integration.clone(), 403),
            ],
        )
    };
    let receipt = |path: String| {
        (
            Method::POST,
            path,
            None,
            vec![
                ("associate", associate.clone(), 200),
                ("store manager", manager.clone(), 200),
                // Another region's store never had it delivered.
                ("another store's associate", other_associate.clone(), 404),
                ("regional manager", regional.clone(), 403),
                ("hq", hq.clone(), 403),
                ("integration", integration.clone(), 403),
            ],
        )
    };
    let cases = vec![
        (
            Method::POST,
            "/announcements".to_owned(),
            Some(body.clone()),
            vec![
                ("hq", hq.clone(), 201),
                ("regional manager", regional.clone(), 201),
                ("store manager", manager.clone(), 403),
                ("associate", associate.clone(), 403),
                ("integration", integration.clone(), 403),
            ],
        ),
        follow(format!("/announcements/{id}")),
        follow(format!("/announcements/{id}/stores")),
        follow(format!("/announcements/{id}/receipts.csv")),
        (
            Method::POST,
            format!("/announcements/{draft}/publish"),
            None,
            vec![
                ("store manager", manager.clone(), 403),
                ("associate", associate.clone(), 403),
                ("integration", integration.clone(), 403),
                ("another region's manager", other_regional.clone(), 404),
                ("regional manager", regional.clone(), 200),
                ("hq, once published", hq.clone(), 409),
            ],
        ),
        (
            Method::GET,
            "/me/announcements".to_owned(),
            None,
            vec![
                ("associate", associate.clone(), 200),
                ("store manager", manager.clone(), 200),
                ("regional manager", regional.clone(), 403),
                ("hq", hq.clone(), 403),
                ("integration", integration.clone(), 403),
            ],
        ),
        receipt(format!("/announcements/{id}/read")),
        receipt(format!("/announcements/{id}/acknowledge")),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, rows) in cases {
        for (role, token, expected) in rows {
            let response = send(method.clone(), path.clone(), token, body.clone()).await;
            let status = response.status().as_u16();
            if status != expected {
                wrong.push(format!(
                    "{method} {path} as {role}: {status}, expected {expected}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    worker.shutdown().await;
    common::teardown(&topology, &[storeops::announcements::GROUP]).await;
}
