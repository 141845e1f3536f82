//! Walks every operation of the OpenAPI document (generated from the router itself) and
//! proves that each one refuses bad tokens with 401 and out-of-scope tokens with 403/404.
//! A new route is covered the moment it is added.

use crate::common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{TestApp, assert_problem, claims, token};
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

#[tokio::test]
async fn every_route_refuses_bad_tokens_and_out_of_scope_callers() {
    let app = TestApp::spawn(30).await;
    let stores = app.stores().await;
    let home = &stores[0];
    let elsewhere = stores
        .iter()
        .find(|s| s.region != home.region)
        .expect("a store in another region");

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
    let bad: Vec<(&str, Option<String>)> = vec![
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
    ];

    let integration = token(Role::Integration, None, None);
    let hq = token(Role::Hq, None, None);
    let other_associate = token(Role::Associate, Some(elsewhere.id), None);
    let other_manager = token(Role::StoreManager, Some(elsewhere.id), None);
    let other_regional = token(Role::RegionalManager, None, Some(&elsewhere.region));

    for op in &ops {
        let path = concrete(&op.template, &home.id.to_string());
        for (label, authorization) in &bad {
            let response = call(&app, op, &path, authorization.as_deref()).await;
            let body = assert_problem(response, 401).await;
            assert!(
                !body.to_string().contains(common::TEST_SECRET),
                "{} {path} ({label}) leaks the secret",
                op.method
            );
        }

        let is_integration = op.template.starts_with("/api/v1/integrations");
        let wrong_kind = if is_integration { &hq } else { &integration };
        let response = call(&app, op, &path, Some(&format!("Bearer {wrong_kind}"))).await;
        assert_problem(response, 403).await;

        if op.template.contains("{store_id}") {
            for (label, other) in [
                ("associate of another store", &other_associate),
                ("manager of another store", &other_manager),
                ("regional manager of another region", &other_regional),
            ] {
                let response = call(&app, op, &path, Some(&format!("Bearer {other}"))).await;
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
