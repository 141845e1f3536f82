//! Malformed requests get a precise 4xx problem+json, never a 5xx and never axum's
//! plain-text rejections.

use crate::common;

use common::{TestApp, assert_problem, token};
use storeops::auth::Role;

#[tokio::test]
async fn malformed_queries_paths_and_routes_are_problems() {
    let app = TestApp::spawn(5).await;
    let hq = token(Role::Hq, None, None);
    let store = &app.stores().await[0];

    let body = assert_problem(app.get("/api/v1/stores?limit=abc", &hq).await, 400).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{body}"
    );

    for (query, field) in [
        ("limit=500", "limit"),
        ("limit=0", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("region=NOT%20A%20CODE", "region"),
        ("region=atlantis", "region"),
    ] {
        let body =
            assert_problem(app.get(&format!("/api/v1/stores?{query}"), &hq).await, 422).await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }

    assert_problem(app.get("/api/v1/stores/not-a-uuid", &hq).await, 400).await;
    assert_problem(
        app.get("/api/v1/stores/0190f2a0-0000-7000-8000-000000000000", &hq)
            .await,
        404,
    )
    .await;
    assert_problem(app.get("/api/v1/no-such-route", &hq).await, 404).await;
    assert_problem(app.get("/nothing-here", &hq).await, 404).await;

    let response = app
        .client
        .delete(app.url("/api/v1/stores"))
        .bearer_auth(&hq)
        .send()
        .await
        .expect("request");
    assert!(response.headers().contains_key("allow"));
    assert_problem(response, 405).await;

    let closures = app.url(&format!("/api/v1/stores/{}/closures", store.id));
    let post = |body: reqwest::Body, content_type: &'static str| {
        app.client
            .post(&closures)
            .bearer_auth(&hq)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        post("{not json".into(), "application/json")
            .await
            .expect("send"),
        400,
    )
    .await;
    assert_problem(
        post(r#"{"date":"2030-01-01"}"#.into(), "text/plain")
            .await
            .expect("send"),
        415,
    )
    .await;
    let body = assert_problem(
        post(r#"{"date":"tomorrow"}"#.into(), "application/json")
            .await
            .expect("send"),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "date", "{body}");
    let body = assert_problem(
        post(
            r#"{"date":"2030-01-01","colour":"red"}"#.into(),
            "application/json",
        )
        .await
        .expect("send"),
        422,
    )
    .await;
    assert!(body["errors"].is_array(), "{body}");
    let body = assert_problem(
        post(r#"{"date":"2001-01-01"}"#.into(), "application/json")
            .await
            .expect("send"),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "date", "{body}");
    let huge = format!(
        r#"{{"date":"2030-01-01","reason":"{}"}}"#,
        "x".repeat(200 * 1024)
    );
    assert_problem(
        post(huge.into(), "application/json").await.expect("send"),
        413,
    )
    .await;
    let long_reason = format!(r#"{{"date":"2030-01-01","reason":"{}"}}"#, "y".repeat(501));
    let body = assert_problem(
        post(long_reason.into(), "application/json")
            .await
            .expect("send"),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "reason", "{body}");
}

#[tokio::test]
async fn a_database_failure_is_a_bare_503_or_500_without_internals() {
    let app = TestApp::spawn(2).await;
    let hq = token(Role::Hq, None, None);
    // Break the schema underneath the running API: the error must not leak SQL.
    sqlx::query("ALTER TABLE stores RENAME TO stores_gone")
        .execute(&app.db)
        .await
        .expect("rename");
    let response = app.get("/api/v1/stores", &hq).await;
    let status = response.status().as_u16();
    let body = assert_problem(response, status).await;
    assert_eq!(status, 500);
    let text = body.to_string();
    assert!(
        !text.contains("stores") && !text.contains("relation"),
        "{text}"
    );
}
