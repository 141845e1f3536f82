//! Hostile input never yields a 5xx or a silently lost message (issue: NUL characters,
//! dates outside PostgreSQL's range, forged cursors, unbounded dates, loose
//! Idempotency-Keys): each gets a precise 4xx naming the field, and a message its
//! handler can never apply fails the ingest visibly instead of vanishing.

use std::time::Duration;

use crate::common::{self, RunningWorker, TestApp, eventually, teardown, test_topology, token};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};
use storeops::auth::Role;

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: &str) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if !body.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a 422 whose first field error names `field`.
async fn refused(app: &TestApp, method: Method, path: &str, token: &str, body: &str, field: &str) {
    let (status, problem) = send(app, method.clone(), path, token, body).await;
    assert_eq!(status, 422, "{method} {path} {body}: {problem}");
    assert_eq!(
        problem["errors"][0]["field"], field,
        "{method} {path} {body}: {problem}"
    );
}

#[tokio::test]
async fn a_nul_character_in_any_text_is_a_422_naming_the_field() {
    let app = TestApp::spawn(2).await;
    let stores = app.stores().await;
    let store = &stores[0];
    let hq = token(Role::Hq, None, None);
    let tasks = format!("/api/v1/stores/{}/tasks", store.id);
    refused(
        &app,
        Method::POST,
        &tasks,
        &hq,
        r#"{"title": "Fix\u0000it"}"#,
        "title",
    )
    .await;
    refused(
        &app,
        Method::POST,
        &tasks,
        &hq,
        r#"{"title": "ok", "description": "a\u0000"}"#,
        "description",
    )
    .await;

    let (status, task) = send(
        &app,
        Method::POST,
        &tasks,
        &hq,
        r#"{"title": "Count the till"}"#,
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let task = task["id"].as_str().expect("id").to_owned();
    let comments = format!("/api/v1/tasks/{task}/comments");
    refused(
        &app,
        Method::POST,
        &comments,
        &hq,
        r#"{"body": "\u0000"}"#,
        "body",
    )
    .await;
    // An escaped backslash before u0000 is plain text, not a NUL.
    let (status, _) = send(
        &app,
        Method::POST,
        &comments,
        &hq,
        r#"{"body": "path C:\\u0000"}"#,
    )
    .await;
    assert_eq!(status, 201);
    refused(
        &app,
        Method::POST,
        &format!("/api/v1/tasks/{task}/complete"),
        &hq,
        r#"{"note": "done\u0000"}"#,
        "note",
    )
    .await;
    refused(
        &app,
        Method::POST,
        &format!("/api/v1/tasks/{task}/complete"),
        &hq,
        r#"{"evidence": [{"url": "https://cdn.example.com/a.jpg", "item_key": "k\u0000"}]}"#,
        "evidence[0].item_key",
    )
    .await;
    refused(
        &app,
        Method::POST,
        &format!("/api/v1/tasks/{task}/cancel"),
        &hq,
        r#"{"reason": "\u0000"}"#,
        "reason",
    )
    .await;

    refused(
        &app,
        Method::POST,
        "/api/v1/task-templates",
        &hq,
        r#"{"title": "T\u0000", "checklist": []}"#,
        "title",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/task-templates",
        &hq,
        r#"{"title": "T", "checklist": [{"key": "a", "label": "L\u0000", "type": "check"}]}"#,
        "checklist[0].label",
    )
    .await;
    refused(&app, Method::POST, "/api/v1/webhooks", &hq,
        r#"{"url": "https://hooks.example.com/x", "event_types": ["task.created"], "description": "\u0000"}"#, "description").await;
    refused(&app, Method::POST, "/api/v1/webhooks", &hq,
        r#"{"url": "https://hooks.example.com/x", "event_types": ["task.created"], "secret": "0123456789abcdef0123456789\u0000"}"#, "secret").await;
    refused(
        &app,
        Method::POST,
        &format!("/api/v1/stores/{}/closures", store.id),
        &hq,
        &format!(
            r#"{{"date": "{}", "reason": "\u0000"}}"#,
            chrono::Utc::now().date_naive() + chrono::Duration::days(30)
        ),
        "reason",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        &hq,
        r#"{"title": "\u0000", "target": {"all": true}, "due_at": "2030-01-01T10:00:00Z"}"#,
        "title",
    )
    .await;
    refused(&app, Method::POST, "/api/v1/campaigns", &hq,
        r#"{"title": "c", "target": {"store_codes": ["S\u0000"]}, "due_at": "2030-01-01T10:00:00Z"}"#, "target.store_codes[0]").await;
    refused(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        &hq,
        r#"{"title": "c", "target": {"regions": ["\u0000"]}, "due_at": "2030-01-01T10:00:00Z"}"#,
        "target.regions[0]",
    )
    .await;

    // A cursor that decodes to a NUL is not a cursor this API issued.
    let cursor = URL_SAFE_NO_PAD.encode(br#""S\u0000""#);
    let (status, problem) = send(
        &app,
        Method::GET,
        &format!("/api/v1/stores?cursor={cursor}"),
        &hq,
        "",
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "cursor");
}

#[tokio::test]
async fn dates_outside_the_business_calendar_are_4xx_never_5xx() {
    let app = TestApp::spawn(1).await;
    let store = app.stores().await[0].id;
    let hq = token(Role::Hq, None, None);
    let tasks = format!("/api/v1/stores/{store}/tasks");
    for due in [
        "-262143-01-01T00:00:00Z",
        "+200000-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
    ] {
        refused(
            &app,
            Method::POST,
            &tasks,
            &hq,
            &format!(r#"{{"title": "t", "due_at": "{due}"}}"#),
            "due_at",
        )
        .await;
        refused(
            &app,
            Method::POST,
            &tasks,
            &hq,
            &format!(r#"{{"title": "t", "expires_at": "{due}"}}"#),
            "expires_at",
        )
        .await;
    }
    // Inside the calendar but further than the business plans.
    let far = (chrono::Utc::now() + chrono::Duration::days(800)).to_rfc3339();
    refused(
        &app,
        Method::POST,
        &tasks,
        &hq,
        &format!(r#"{{"title": "t", "due_at": "{far}"}}"#),
        "due_at",
    )
    .await;
    refused(
        &app,
        Method::POST,
        &tasks,
        &hq,
        &format!(r#"{{"title": "t", "expires_at": "{far}"}}"#),
        "expires_at",
    )
    .await;

    let (status, task) = send(&app, Method::POST, &tasks, &hq, r#"{"title": "t"}"#).await;
    assert_eq!(status, 201);
    let patch = app
        .client
        .patch(app.url(&format!(
            "/api/v1/tasks/{}",
            task["id"].as_str().expect("id")
        )))
        .bearer_auth(&hq)
        .header("if-match", "*")
        .json(&json!({"due_at": "+200000-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("send");
    assert_eq!(patch.status(), 422);

    for query in [
        "due_before=-262143-01-01T00:00:00Z",
        "due_before=%2B200000-01-01T00:00:00Z",
    ] {
        let (status, problem) = send(&app, Method::GET, &format!("{tasks}?{query}"), &hq, "").await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
    // A cursor holds what a task may be due at: a delivery expected at
    // 2000-01-01T00:00:00+03:00 is due in 1999 in UTC, and its page's cursor says so.
    for (key, expected) in [
        ("+200000-01-01T00:00:00Z", 422),
        ("1998-12-31T23:59:59Z", 422),
        ("1999-12-31T21:00:00Z", 200),
        ("2100-01-01T01:00:00Z", 200),
    ] {
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"["{key}","{}"]"#, uuid::Uuid::nil()));
        let (status, problem) = send(
            &app,
            Method::GET,
            &format!("{tasks}?cursor={forged}"),
            &hq,
            "",
        )
        .await;
        assert_eq!(status, expected, "{key}: {problem}");
    }

    for query in [
        "to=-262143-01-01",
        "from=-262143-01-01",
        "to=%2B200000-01-01",
        "from=0000-01-01&to=0000-12-31",
    ] {
        for report in ["compliance", "tasks.csv"] {
            let (status, problem) = send(
                &app,
                Method::GET,
                &format!("/api/v1/reports/{report}?{query}"),
                &hq,
                "",
            )
            .await;
            assert_eq!(status, 400, "{report}?{query}: {problem}");
        }
    }
    let closures = format!("/api/v1/stores/{store}/closures");
    refused(
        &app,
        Method::POST,
        &closures,
        &hq,
        r#"{"date": "+200000-01-01"}"#,
        "date",
    )
    .await;
    let far_day = chrono::Utc::now().date_naive() + chrono::Duration::days(1000);
    refused(
        &app,
        Method::POST,
        &closures,
        &hq,
        &format!(r#"{{"date": "{far_day}"}}"#),
        "date",
    )
    .await;
    let (status, _) = send(
        &app,
        Method::DELETE,
        &format!("{closures}/+200000-01-01"),
        &hq,
        "",
    )
    .await;
    assert_eq!(status, 400);

    refused(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        &hq,
        r#"{"title": "c", "target": {"all": true}, "due_at": "-262143-01-01T00:00:00Z"}"#,
        "due_at",
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/campaigns",
        &hq,
        r#"{"title": "c", "target": {"all": true}, "due_local": "+200000-01-01T10:00:00"}"#,
        "due_local",
    )
    .await;

    let integration = token(Role::Integration, None, None);
    refused(&app, Method::POST, "/api/v1/integrations/price-changes", &integration,
        r#"{"batch_id": "b", "effective_at": "+200000-01-01T06:00:00Z", "items": [{"sku": "A", "name": "a", "new_price": 1, "currency": "EUR"}]}"#,
        "effective_at").await;
    refused(&app, Method::POST, "/api/v1/integrations/deliveries", &integration,
        r#"{"delivery_id": "D1", "store_code": "S00001", "supplier": "s", "expected_at": "-262143-01-01T00:00:00Z", "lines": [{"sku": "A", "qty": 1}]}"#,
        "expected_at").await;
}

#[tokio::test]
async fn an_idempotency_key_is_visible_ascii_only() {
    let app = TestApp::spawn(1).await;
    let store = app.stores().await[0].id;
    let hq = token(Role::Hq, None, None);
    for key in ["with space", "tab\there"] {
        let response = app
            .client
            .post(app.url(&format!("/api/v1/stores/{store}/tasks")))
            .bearer_auth(&hq)
            .header("idempotency-key", key)
            .json(&json!({"title": "t"}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{key:?}");
    }
}

#[tokio::test]
async fn an_ingest_whose_message_can_never_apply_fails_visibly() {
    common::init_logs();
    let app = TestApp::spawn(1).await;
    let store = &app.stores().await[0];
    let topology = test_topology(&[100]);
    let worker = RunningWorker::groups(&app.db, &topology, &["ingest"], 2, &[]);
    worker.wait_connected().await;

    // What an older (or broken) API could have stored: a delivery whose supplier holds a
    // NUL, which PostgreSQL refuses when the task is written. No retry can help.
    let raw = format!(
        r#"{{"delivery_id": "D-NUL", "store_code": "{}", "supplier": "Acme\u0000", "expected_at": "2030-01-01T08:00:00Z", "lines": [{{"sku": "A", "qty": 1}}]}}"#,
        store.code
    );
    let id = storeops::ids::IngestId::generate();
    let mut tx = app.db.begin().await.expect("begin");
    storeops::ingest::repo::insert(
        &mut tx,
        &storeops::ingest::repo::NewIngest {
            id,
            source: storeops::ingest::Source::Delivery,
            external_id: "D-NUL",
            body_sha256: "0",
            // The integration token's sender: only it may read the ingest.
            received_by: "test-integration",
            raw: raw.as_bytes(),
            raw_encoding: storeops::ingest::body::Encoding::Identity,
            item_count: 1,
            effective_at: None,
            effective_local: None,
        },
    )
    .await
    .expect("ingest");
    storeops::events::outbox::enqueue(
        &mut tx,
        &storeops::ingest::IngestReceived {
            ingest_id: id,
            source: storeops::ingest::Source::Delivery,
            external_id: "D-NUL".to_owned(),
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");

    let integration = token(Role::Integration, None, None);
    let path = format!("/api/v1/integrations/ingests/{id}");
    eventually(
        Duration::from_secs(20),
        "the ingest failed visibly",
        || async {
            let (_, status) = send(&app, Method::GET, &path, &integration, "").await;
            status["status"] == "failed"
        },
    )
    .await;
    let (_, status) = send(&app, Method::GET, &path, &integration, "").await;
    assert_eq!(status["error_count"], 1, "{status}");
    let message = status["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be processed"), "{status}");
    let (connection, _) = common::broker_channel().await;
    eventually(Duration::from_secs(10), "dead-lettered once", || async {
        common::queue_depth(&connection, &topology.dead_queue("ingest")).await == 1
    })
    .await;
    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["ingest"]).await;
}

/// What the OpenAPI document states but derived schemas could not: objects are objects
/// (never arrays), the rules between fields, and URL shapes, each enforced by the server.
#[tokio::test]
async fn objects_field_rules_and_url_shapes_are_enforced_as_documented() {
    let app = TestApp::spawn(2).await;
    let store = &app.stores().await[0];
    let hq = token(Role::Hq, None, None);
    let integration = token(Role::Integration, None, None);
    let tasks = format!("/api/v1/stores/{}/tasks", store.id);
    let closures = format!("/api/v1/stores/{}/closures", store.id);
    let (_, task) = send(&app, Method::POST, &tasks, &hq, r#"{"title": "t"}"#).await;
    let complete = format!(
        "/api/v1/tasks/{}/complete",
        task["id"].as_str().expect("id")
    );
    let (campaigns, templates) = ("/api/v1/campaigns", "/api/v1/task-templates");
    let (deliveries, prices) = (
        "/api/v1/integrations/deliveries",
        "/api/v1/integrations/price-changes",
    );
    let due = "2030-01-01T10:00:00Z";
    let campaign = |target: &str, rest: &str| {
        format!(r#"{{"title": "c", "target": {target}, "due_at": "{due}"{rest}}}"#)
    };
    let schedule = |recurrence: &str| {
        format!(
            r#"{{"title": "t", "checklist": [], "recurrence": {{"at": "08:00", {recurrence}}}}}"#
        )
    };
    let delivery = |lines: &str, status: &str| {
        format!(
            r#"{{"delivery_id": "D{}", "store_code": "{}", "supplier": "s", "expected_at": "{due}", "lines": {lines}, "status": {status}}}"#,
            status.len(),
            store.code
        )
    };
    let webhook = |url: &str| json!({"url": url, "event_types": ["task.created"]}).to_string();
    let mut refusals = vec![
        // serde reads a struct from a JSON array of its fields; the document says object.
        (campaigns, &hq, campaign("[true]", ""), "target"),
        (templates, &hq, schedule(r#""frequency": "daily", "target": [null, null]"#), "recurrence.target"),
        (templates, &hq, r#"{"title": "t", "checklist": [["a", "A", "check"]]}"#.to_owned(), "checklist[0]"),
        (&tasks, &hq, r#"["t"]"#.to_owned(), "body"),
        (deliveries, &integration, delivery(r#"[["A", 1]]"#, "null"), "lines[0]"),
        (prices, &integration,
            r#"{"batch_id": "b", "effective_at": "2030-01-01T06:00:00Z", "items": [["A", "a", 1, "EUR"]]}"#.to_owned(),
            "items[0]"),
        // due_at xor due_local; a title unless a template gives one.
        (campaigns, &hq, campaign(r#"{"all": true}"#, r#", "due_local": "2030-01-01T10:00:00""#), "due_at"),
        (campaigns, &hq, r#"{"title": "c", "target": {"all": true}, "due_at": null}"#.to_owned(), "due_at"),
        (campaigns, &hq, campaign(r#"{"all": true}"#, r#", "title": null"#).replacen(r#""title": "c", "#, "", 1), "title"),
        // A weekly schedule names a day; a delivery has lines unless cancelled.
        (templates, &hq, schedule(r#""frequency": "weekly""#), "recurrence.weekdays"),
        (deliveries, &integration, delivery("[]", "null"), "lines"),
        // Lengths are of the text as sent (it is kept trimmed); local times are real.
        ("/api/v1/webhooks", &hq,
            json!({"url": "https://h.example/", "event_types": ["task.created"], "description": format!(" {} ", "d".repeat(499))}).to_string(),
            "description"),
        (campaigns, &hq, campaign(r#"{"all": true}"#, r#", "due_at": null, "due_local": "2026-02-29T10:00:00""#).replacen(&format!(r#""due_at": "{due}""#), r#""kind": "adhoc""#, 1), "due_local"),
        (prices, &integration,
            r#"{"batch_id": "b", "effective_at": "2030-01-01T06:00:00Z", "items": [{"sku": "A", "name": "a", "new_price": "10000000000", "currency": "EUR"}]}"#.to_owned(),
            "items[0].new_price"),
        // Evidence and webhook URLs have the documented shape.
        (&complete, &hq, r#"{"evidence": [{"url": "https://a_b.example/p.jpg"}]}"#.to_owned(), "evidence[0].url"),
        // The one rule no pattern states (and the document's description does).
        (&complete, &hq, r#"{"evidence": [{"url": "https://xn--a.example/p.jpg"}]}"#.to_owned(), "evidence[0].url"),
        // Blank is what trim removes, U+0085 included (the pattern spells the set out).
        (&tasks, &hq, r#"{"title": " \u0085\u3000"}"#.to_owned(), "title"),
        (templates, &hq, r#"{"title": "t", "checklist": [{"key": "a", "label": "\u2028", "type": "check"}]}"#.to_owned(), "checklist[0].label"),
        // Instants and days as `format: date-time` and `format: date` spell them.
        (&tasks, &hq, r#"{"title": "t", "due_at": "2030-01-01 10:00:00Z"}"#.to_owned(), "due_at"),
        (&tasks, &hq, r#"{"title": "t", "due_at": "2030-1-1T10:00:00Z"}"#.to_owned(), "due_at"),
        (campaigns, &hq, campaign(r#"{"all": true}"#, "").replace(due, "2030-01-01T10:00:00UTC"), "due_at"),
        (&closures, &hq, r#"{"date": "2030-1-01"}"#.to_owned(), "date"),
    ];
    // Exactly one way of naming stores, in a campaign and in a schedule alike.
    for target in [
        r#"{}"#,
        r#"{"all": false}"#,
        r#"{"all": true, "regions": ["north"]}"#,
        r#"{"regions": [], "formats": []}"#,
    ] {
        refusals.push((campaigns, &hq, campaign(target, ""), "target"));
        refusals.push((
            templates,
            &hq,
            schedule(&format!(r#""frequency": "daily", "target": {target}"#)),
            "recurrence.target",
        ));
    }
    for url in [
        "https://[1::2:3:4:5:6:7:8]/",
        "https://[::g]/",
        "https://a_b.example/",
        "https://01.2.3.4/",
        "https://h.example/#x",
        "https://xn--a.example/",
    ] {
        refusals.push(("/api/v1/webhooks", &hq, webhook(url), "url"));
    }
    for (path, token, body, field) in &refusals {
        refused(&app, Method::POST, path, token, body, field).await;
    }

    // An unknown template is the one error: the title it would have given is not also missing.
    let unknown_template = r#"{"template_id": "00000000-0000-7000-8000-000000000000"}"#;
    for path in [campaigns, tasks.as_str()] {
        let body = if path == campaigns {
            campaign(r#"{"all": true}"#, "").replacen(
                r#""title": "c", "#,
                r#""template_id": "00000000-0000-7000-8000-000000000000", "#,
                1,
            )
        } else {
            unknown_template.to_owned()
        };
        let (status, problem) = send(&app, Method::POST, path, &hq, &body).await;
        assert_eq!(status, 422, "{path}: {problem}");
        assert_eq!(
            problem["errors"].as_array().map(Vec::len),
            Some(1),
            "{path}: {problem}"
        );
        assert_eq!(
            problem["errors"][0]["field"], "template_id",
            "{path}: {problem}"
        );
    }

    let accepted = [
        // Unset ways of naming stores may be spelled null, false or empty.
        (
            templates,
            &hq,
            schedule(
                r#""frequency": "daily", "target": {"all": true, "regions": [], "formats": null}"#,
            ),
        ),
        (deliveries, &integration, delivery("[]", r#""cancelled""#)),
        // The year as written: 1999 in UTC.
        (prices, &integration,
            r#"{"batch_id": "b", "effective_at": "2000-01-01T00:00:00+03:00", "items": [{"sku": "A", "name": "a", "new_price": "1.5", "currency": "EUR"}]}"#.to_owned()),
        (
            campaigns,
            &hq,
            campaign(
                r#"{"all": true}"#,
                r#", "due_at": null, "due_local": "2028-02-29T10:00:00.5""#,
            )
            .replacen(&format!(r#""due_at": "{due}""#), r#""kind": "adhoc""#, 1),
        ),
        // Percent-encoding makes it longer than 2,048 characters; it is kept as sent.
        (
            "/api/v1/webhooks",
            &hq,
            webhook(&format!(
                "https://[2606:4700:4700::1111]/{}",
                "\"".repeat(1_900)
            )),
        ),
    ];
    for (path, token, body) in &accepted {
        let (status, answer) = send(&app, Method::POST, path, token, body).await;
        assert!(status == 201 || status == 202, "{path} {body}: {answer}");
        if path.ends_with("webhooks") {
            assert_eq!(
                answer["url"],
                serde_json::from_str::<Value>(body).expect("json")["url"]
            );
        }
    }

    // Ids as `format: uuid` spells them: not the simple, braced or URN forms.
    let task_id = task["id"].as_str().expect("id");
    let (status, _) = send(
        &app,
        Method::GET,
        &format!("/api/v1/tasks/{task_id}"),
        &hq,
        "",
    )
    .await;
    assert_eq!(status, 200);
    for other in [
        task_id.replace('-', ""),
        format!("{{{task_id}}}"),
        format!("urn:uuid:{task_id}"),
    ] {
        let (status, problem) = send(
            &app,
            Method::GET,
            &format!("/api/v1/tasks/{other}"),
            &hq,
            "",
        )
        .await;
        assert_eq!(status, 400, "{other}: {problem}");
        let (status, problem) = send(
            &app,
            Method::GET,
            &format!("{tasks}?assignee={other}"),
            &hq,
            "",
        )
        .await;
        assert_eq!(status, 400, "{other}: {problem}");
    }

    // A title of U+FEFF is not blank to trim, nor to the documented pattern.
    let (status, answer) = send(&app, Method::POST, &tasks, &hq, r#"{"title": "\ufeff"}"#).await;
    assert_eq!(status, 201, "{answer}");

    // A template stored under looser rules still takes a change of something else;
    // what the change sends is checked.
    let (status, template) = send(
        &app,
        Method::POST,
        templates,
        &hq,
        &schedule(r#""frequency": "daily", "target": {"all": true}"#),
    )
    .await;
    assert_eq!(status, 201, "{template}");
    let template_id = template["id"].as_str().expect("id");
    sqlx::query(
        r#"UPDATE task_template_versions
           SET recurrence = jsonb_set(recurrence, '{target}', '{}'),
               checklist = '[{"key": "a", "label": " ", "type": "check"}]'
           WHERE template_id = $1::uuid"#,
    )
    .bind(template_id)
    .execute(&app.db)
    .await
    .expect("loosen the stored version");
    let template = format!("{templates}/{template_id}");
    let (status, answer) = send(
        &app,
        Method::PATCH,
        &template,
        &hq,
        r#"{"title": "renamed"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["title"], "renamed");
    refused(
        &app,
        Method::PATCH,
        &template,
        &hq,
        r#"{"recurrence": {"at": "08:00", "frequency": "daily", "target": {}}}"#,
        "recurrence.target",
    )
    .await;

    // The document states the rules between fields.
    let (_, document) = send(&app, Method::GET, "/openapi.json", &hq, "").await;
    let schemas = &document["components"]["schemas"];
    let rules = |name: &str| schemas[name]["allOf"].as_array().map(Vec::len);
    assert_eq!(
        schemas["Target"]["allOf"][0]["oneOf"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(rules("NewCampaign"), Some(2));
    for name in ["NewTaskBody", "Recurrence", "Delivery"] {
        assert_eq!(rules(name), Some(1), "{name}");
    }
}
