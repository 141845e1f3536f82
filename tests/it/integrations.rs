//! Integrations through HTTP and the worker: validation, idempotent re-posts, price
//! batches into one relabel task per store (supersede, chunks applied exactly once even
//! when the worker is killed half-way), deliveries updated and cancelled, concurrent
//! stock alerts meeting on one open restock task.

use crate::common;

use std::time::Duration;

use common::{
    Process, RunningWorker, TestApp, assert_problem, eventually, teardown, test_topology, token,
    url_for_database,
};
use serde_json::{Value, json};
use storeops::{
    auth::Role,
    events::{outbox, topology::Topology},
};

/// The consumer groups these tests run (also `task_items.rs`).
pub(crate) const GROUPS: &[&str] = &["ingest"];

pub(crate) fn integration() -> String {
    token(Role::Integration, None, None)
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/integrations/{path}")))
        .bearer_auth(integration())
        .json(body)
        .send()
        .await
        .expect("send")
}

/// Posts and expects 202; returns the ingest id.
pub(crate) async fn accepted(app: &TestApp, path: &str, body: &Value) -> String {
    let response = post(app, path, body).await;
    assert_eq!(response.status(), 202, "{path}: {body}");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("Location");
    let answer: Value = response.json().await.expect("json");
    let id = answer["id"].as_str().expect("id").to_owned();
    assert_eq!(answer["status_url"], location);
    assert_eq!(location, format!("/api/v1/integrations/ingests/{id}"));
    id
}

async fn status(app: &TestApp, id: &str) -> Value {
    let response = app
        .get(
            &format!("/api/v1/integrations/ingests/{id}"),
            &integration(),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// Waits until the ingest is done or failed; returns its status.
pub(crate) async fn finished(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(60), "ingest finished", || async {
        matches!(
            status(app, id).await["status"].as_str(),
            Some("done" | "failed")
        )
    })
    .await;
    status(app, id).await
}

/// The `ingest` consumer group with the relay, as `storeops worker` runs it.
pub(crate) fn worker(
    app: &TestApp,
    topology: &Topology,
    chunk_stores: usize,
    concurrency: usize,
) -> RunningWorker {
    let chunk_stores = chunk_stores.to_string();
    RunningWorker::groups(
        &app.db,
        topology,
        &["ingest"],
        concurrency,
        &[("INGEST_CHUNK_STORES", &chunk_stores)],
    )
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db)
        .await
        .expect(sql)
}

/// Completes a task as HQ would.
async fn complete(app: &TestApp, task_id: &str) {
    let completed = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{task_id}/complete")))
        .bearer_auth(token(Role::Hq, None, None))
        .send()
        .await
        .expect("send");
    assert_eq!(completed.status(), 200);
}

pub(crate) fn line(sku: &str, price: f64) -> Value {
    json!({"sku": sku, "name": format!("Item {sku}"), "new_price": price, "currency": "EUR"})
}

#[tokio::test]
async fn price_batches_are_validated_idempotent_and_reported_per_item() {
    common::init_logs();
    let app = TestApp::spawn(30).await;
    let stores = app.stores().await;
    let region = stores[0].region.clone();
    let in_region = stores.iter().filter(|s| s.region == region).count() as i64;

    // Staff tokens are refused before the body is read; integration tokens elsewhere too.
    let hq = token(Role::Hq, None, None);
    let refused = app
        .client
        .post(app.url("/api/v1/integrations/price-changes"))
        .bearer_auth(&hq)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_problem(refused, 403).await;
    assert_problem(app.get("/api/v1/stores", &integration()).await, 403).await;

    // Malformed batches: 422 naming the field.
    for (body, field) in [
        (
            json!({"batch_id": "b", "effective_at": "2030-01-01T06:00:00", "items": [line("A", 1.0), {"name": "x", "new_price": 1, "currency": "EUR"}]}),
            "items[1]",
        ),
        (
            json!({"batch_id": "b", "effective_at": "2030-01-01T06:00:00", "items": [line("A", 1.0), line("B", 2.0), {"sku": "C", "name": "c", "new_price": "cheap", "currency": "EUR"}]}),
            "items[2].new_price",
        ),
        (
            json!({"batch_id": "b", "effective_at": "2030-01-01T06:00:00", "items": [{"sku": "A", "name": "a", "new_price": 1, "currency": "euro"}]}),
            "items[0].currency",
        ),
        (
            json!({"batch_id": "b", "effective_at": "2030-01-01T06:00:00", "items": [{"sku": "A", "name": "a", "new_price": -3, "currency": "EUR", "store_codes": []}]}),
            "items[0].new_price",
        ),
        (
            json!({"batch_id": "b", "effective_at": "soon", "items": [line("A", 1.0)]}),
            "effective_at",
        ),
        (
            json!({"batch_id": "", "effective_at": "2030-01-01T06:00:00", "items": []}),
            "batch_id",
        ),
    ] {
        let problem = assert_problem(post(&app, "price-changes", &body).await, 422).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{field} in {problem}");
    }
    // Above the ingest body limit: 413; not JSON: 415.
    let huge = json!({"batch_id": "big", "effective_at": "2030-01-01T06:00:00",
                      "items": vec![line("SKU-0000001", 1.0); common::INGEST_BODY_LIMIT_BYTES / 60]});
    assert_problem(post(&app, "price-changes", &huge).await, 413).await;
    let not_json = app
        .client
        .post(app.url("/api/v1/integrations/price-changes"))
        .bearer_auth(integration())
        .body("batch_id=b")
        .send()
        .await
        .expect("send");
    assert_problem(not_json, 415).await;
    // Larger than the staff body limit but inside the ingest one, and large enough to be
    // parsed off the runtime (over 256 KiB): read, validated, the field still named.
    let mut large: Vec<Value> = (0..5_000).map(|i| line(&format!("L{i:05}"), 1.0)).collect();
    large.push(json!({"sku": "Z", "name": "z", "new_price": 1, "currency": "x"}));
    let large = json!({"batch_id": "large", "effective_at": "2030-01-01T06:00:00", "items": large});
    assert!(serde_json::to_vec(&large).expect("json").len() > 256 * 1024);
    let problem = assert_problem(post(&app, "price-changes", &large).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "items[5000].currency");

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 4, 4);
    worker.wait_connected().await;

    let batch = json!({
        "batch_id": "ERP-1",
        "effective_at": "2030-03-01T06:00:00",
        "items": [
            line("A", 1.99),
            {"sku": "B", "name": "Item B", "new_price": 2.5, "currency": "EUR",
             "store_codes": [stores[0].code, stores[1].code, "S99999"]},
            {"sku": "C", "name": "Item C", "new_price": 3.0, "currency": "EUR",
             "regions": [region, "XX"]},
        ]
    });
    let id = accepted(&app, "price-changes", &batch).await;
    // The same batch again, even while it is being processed: the same ingest.
    assert_eq!(accepted(&app, "price-changes", &batch).await, id);
    let done = finished(&app, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["source"], "price_change");
    assert_eq!(done["external_id"], "ERP-1");
    assert_eq!(done["items"], 3);
    assert_eq!(done["counts"]["tasks_created"], 30);
    assert_eq!(done["counts"]["items_created"], 30 + 2 + in_region);
    assert_eq!(done["chunks_total"], 8);
    assert_eq!(done["chunks_done"], 8);
    assert_eq!(done["error_count"], 2, "{done}");
    let fields: Vec<&str> = done["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["items[1].store_codes[2]", "items[2].regions[1]"]);
    assert_eq!(done["errors"][0]["item"], 1);

    // After it finished, a re-post is still the same ingest and changes nothing.
    assert_eq!(accepted(&app, "price-changes", &batch).await, id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(scalar(&app, "SELECT count(*) FROM ingests").await, 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM tasks").await, 30);
    // The same batch id with another body is refused.
    let changed = json!({"batch_id": "ERP-1", "effective_at": "2030-03-01T06:00:00", "items": [line("A", 9.0)]});
    assert_problem(post(&app, "price-changes", &changed).await, 409).await;

    // One relabel task per store, due at 06:00 in each store's own zone, with its items.
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM (SELECT store_id FROM tasks WHERE kind = 'price_relabel' AND source = 'price_change' GROUP BY store_id HAVING count(*) = 1) x").await,
        30
    );
    assert_eq!(
        scalar(&app, "SELECT count(DISTINCT EXTRACT(HOUR FROM t.due_at AT TIME ZONE s.time_zone)) FROM tasks t JOIN stores s ON s.id = t.store_id").await,
        1
    );
    assert_eq!(
        scalar(&app, "SELECT min(EXTRACT(HOUR FROM t.due_at AT TIME ZONE s.time_zone))::int8 FROM tasks t JOIN stores s ON s.id = t.store_id").await,
        6
    );
    let price: String = sqlx::query_scalar(
        "SELECT i.new_price::text FROM task_items i JOIN stores s ON s.id = i.store_id WHERE s.code = $1 AND i.sku = 'B'",
    )
    .bind(&stores[1].code)
    .fetch_one(&app.db)
    .await
    .expect("item");
    assert_eq!(price, "2.5000");
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM task_events WHERE kind = 'created'"
        )
        .await,
        30
    );

    let exported = storeops::metrics::render();
    for outcome in ["accepted", "duplicate", "applied", "rejected"] {
        assert!(
            exported.contains(&format!(
                "storeops_ingest_items_total{{outcome=\"{outcome}\",source=\"price_change\"}}"
            )),
            "{outcome} counted"
        );
    }

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}

#[tokio::test]
async fn a_later_batch_supersedes_open_items_instead_of_adding_a_second() {
    common::init_logs();
    let app = TestApp::spawn(5).await;
    let stores = app.stores().await;
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 2, 2);
    worker.wait_connected().await;

    let first = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "B1", "effective_at": "2030-03-01T06:00:00Z", "items": [line("A", 1.0), line("B", 2.0)]}),
    )
    .await;
    assert_eq!(finished(&app, &first).await["counts"]["items_created"], 10);

    // Batch 2 changes A: the open items of batch 1 are superseded, B stays.
    let second = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "B2", "effective_at": "2030-03-02T06:00:00Z", "items": [line("A", 1.5)]}),
    )
    .await;
    let done = finished(&app, &second).await;
    assert_eq!(done["counts"]["tasks_created"], 5, "{done}");
    assert_eq!(done["counts"]["items_superseded"], 5, "{done}");
    assert_eq!(done["counts"]["tasks_updated"], 5, "{done}");
    assert_eq!(done["counts"]["tasks_superseded"], 0, "{done}");
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM task_items WHERE state = 'active' AND sku = 'A'"
        )
        .await,
        5,
        "one active item per store and SKU"
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM task_items WHERE state = 'active' AND sku = 'A' AND new_price = 1.5").await,
        5
    );

    // A store finishes its batch-2 task; batch 3 changes A and B again.
    let done_task: String = sqlx::query_scalar(
        "SELECT t.id::text FROM tasks t JOIN ingests i ON i.id = t.ingest_id JOIN stores s ON s.id = t.store_id
          WHERE i.external_id = 'B2' AND s.code = $1",
    )
    .bind(&stores[0].code)
    .fetch_one(&app.db)
    .await
    .expect("task");
    complete(&app, &done_task).await;
    let third = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "B3", "effective_at": "2030-03-03T06:00:00Z", "items": [line("A", 1.75), line("B", 2.25)]}),
    )
    .await;
    let done = finished(&app, &third).await;
    // Batch 1's tasks lose their last item (B) and are cancelled as superseded; batch
    // 2's open tasks lose A; the completed one's item is closed, not superseded.
    assert_eq!(done["counts"]["tasks_superseded"], 9, "{done}");
    assert_eq!(done["counts"]["items_superseded"], 9, "{done}");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM tasks t JOIN ingests i ON i.id = t.ingest_id WHERE i.external_id IN ('B1', 'B2') AND t.status = 'cancelled'").await,
        9
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM task_items WHERE state = 'closed'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM task_items WHERE state = 'active'"
        )
        .await,
        10
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM (SELECT store_id, sku FROM task_items WHERE state = 'active' GROUP BY 1, 2 HAVING count(*) > 1) x").await,
        0
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM task_events WHERE kind = 'cancelled'"
        )
        .await,
        9
    );

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}

#[tokio::test]
async fn a_worker_killed_half_way_through_the_chunks_leaves_one_task_per_store_and_every_item_once()
{
    common::init_logs();
    let stores = 120;
    let skus = 50;
    let app = TestApp::spawn(stores).await;
    let items: Vec<Value> = (0..skus)
        .map(|i| line(&format!("K{i:03}"), 1.0 + f64::from(i)))
        .collect();
    let id = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "KILL-1", "effective_at": "2030-03-01T06:00:00", "items": items}),
    )
    .await;

    // A real worker process, one store per chunk, one message at a time...
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut process = Process::start(
        &["worker", "--queues", "ingest", "--concurrency", "1"],
        &[
            ("AMQP_URL", std::env::var("AMQP_URL").expect("AMQP_URL")),
            (
                "DATABASE_URL",
                url_for_database(&common::database_url(), &app.database),
            ),
            ("AMQP_TOPOLOGY_PREFIX", prefix.clone()),
            ("INGEST_CHUNK_STORES", "1".to_owned()),
        ],
    );
    // ...killed (SIGKILL) once half the chunks have committed.
    let half = i64::from(stores / 2);
    eventually(
        Duration::from_secs(60),
        "half the chunks applied",
        || async {
            scalar(
                &app,
                "SELECT count(*) FROM ingest_chunks WHERE applied_at IS NOT NULL",
            )
            .await
                >= half
        },
    )
    .await;
    process.signal("KILL");
    process.wait_exit(Duration::from_secs(10)).await;
    let applied = scalar(
        &app,
        "SELECT count(*) FROM ingest_chunks WHERE applied_at IS NOT NULL",
    )
    .await;
    assert!(
        applied < i64::from(stores),
        "killed before the end ({applied} chunks applied)"
    );
    assert_eq!(status(&app, &id).await["status"], "processing");

    // Every chunk is delivered again (new message ids: the inbox cannot help, the chunk's
    // own applied mark must), and the unacked ones come back from the broker.
    let mut tx = app.db.begin().await.expect("begin");
    let chunks: Vec<storeops::ingest::IngestChunk> = (0..stores)
        .map(|no| storeops::ingest::IngestChunk {
            ingest_id: id.parse().expect("ingest id"),
            chunk_no: i32::try_from(no).expect("small"),
        })
        .collect();
    outbox::enqueue_many(&mut tx, &chunks)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let topology = Topology {
        prefix,
        ..test_topology(&[200])
    };
    let worker = worker(&app, &topology, 1, 4);
    worker.wait_connected().await;
    let done = finished(&app, &id).await;
    eventually(Duration::from_secs(60), "duplicates handled", || async {
        scalar(
            &app,
            "SELECT count(*) FROM inbox WHERE consumer_group = 'ingest'",
        )
        .await
            > 2 * i64::from(stores)
    })
    .await;

    assert_eq!(done["status"], "done");
    assert_eq!(done["chunks_done"], stores);
    assert_eq!(done["counts"]["tasks_created"], stores);
    assert_eq!(done["counts"]["items_created"], stores * skus);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM tasks").await,
        i64::from(stores)
    );
    assert_eq!(
        scalar(&app, "SELECT count(DISTINCT store_id) FROM tasks").await,
        i64::from(stores)
    );
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM task_items").await,
        i64::from(stores * skus)
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM (SELECT DISTINCT store_id, sku FROM task_items) x"
        )
        .await,
        i64::from(stores * skus)
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM outbox WHERE routing_key = 'task.created'"
        )
        .await,
        i64::from(stores)
    );

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}

#[tokio::test]
async fn deliveries_become_receiving_tasks_that_revisions_update_and_cancel() {
    common::init_logs();
    let app = TestApp::spawn(3).await;
    let stores = app.stores().await;
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 40, 2);
    worker.wait_connected().await;

    let delivery = json!({
        "delivery_id": "DLV-1", "store_code": stores[0].code, "supplier": "Fresh Farms",
        "expected_at": "2030-03-01T08:00:00Z", "lines": [{"sku": "A", "qty": 12}, {"sku": "B", "qty": 4}]
    });
    let first = accepted(&app, "deliveries", &delivery).await;
    assert_eq!(
        accepted(&app, "deliveries", &delivery).await,
        first,
        "re-post"
    );
    let done = finished(&app, &first).await;
    assert_eq!(done["counts"]["tasks_created"], 1, "{done}");
    let (task_id, due, kind, description): (String, String, String, String) = sqlx::query_as(
        "SELECT id::text, to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), kind, description
           FROM tasks WHERE source = 'delivery'",
    )
    .fetch_one(&app.db)
    .await
    .expect("task");
    assert_eq!(
        (due.as_str(), kind.as_str()),
        ("2030-03-01 08:00", "receiving")
    );
    assert!(description.contains("A × 12"), "{description}");

    // A re-sent delivery with changes updates the same task.
    let mut changed = delivery.clone();
    changed["expected_at"] = json!("2030-03-01T10:30:00Z");
    changed["lines"] = json!([{"sku": "A", "qty": 20}]);
    let second = accepted(&app, "deliveries", &changed).await;
    assert_ne!(second, first);
    let done = finished(&app, &second).await;
    assert_eq!(done["counts"]["tasks_updated"], 1, "{done}");
    let hq = token(Role::Hq, None, None);
    let task: Value = app
        .get(&format!("/api/v1/tasks/{task_id}"), &hq)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(task["due_at"], "2030-03-01T10:30:00Z");
    assert_eq!(scalar(&app, "SELECT count(*) FROM tasks").await, 1);

    // status: cancelled cancels it.
    let mut cancelled = changed.clone();
    cancelled["status"] = json!("cancelled");
    let third = accepted(&app, "deliveries", &cancelled).await;
    let done = finished(&app, &third).await;
    assert_eq!(done["counts"]["tasks_cancelled"], 1, "{done}");
    let task: Value = app
        .get(&format!("/api/v1/tasks/{task_id}"), &hq)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(task["status"], "cancelled");
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM outbox WHERE routing_key IN ('task.created', 'task.updated', 'task.cancelled')").await,
        3
    );

    // An unknown store fails that ingest, reported per item.
    let unknown = json!({"delivery_id": "DLV-2", "store_code": "S99999", "supplier": "x",
                         "expected_at": "2030-03-01T08:00:00Z", "lines": [{"sku": "A", "qty": 1}]});
    let failed = finished(&app, &accepted(&app, "deliveries", &unknown).await).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"][0]["field"], "store_code");
    // Validation: field paths inside lines.
    let mut bad = delivery.clone();
    bad["lines"] = json!([{"sku": "A", "qty": 0}]);
    let problem = assert_problem(post(&app, "deliveries", &bad).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "lines[0].qty");

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}

#[tokio::test]
async fn concurrent_stock_alerts_for_one_sku_leave_one_open_restock_task() {
    common::init_logs();
    let app = TestApp::spawn(2).await;
    let stores = app.stores().await;
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 40, 8);
    worker.wait_connected().await;

    let posts = (0..20).map(|i| {
        let body = json!({"alert_id": format!("AL-{i}"), "store_code": stores[0].code, "sku": "MILK-1", "on_hand": i});
        let app = &app;
        async move { accepted(app, "stock-alerts", &body).await }
    });
    let ids = futures_util::future::join_all(posts).await;
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "done");
    }
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM tasks WHERE kind = 'restock' AND status = 'open'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM tasks").await, 1);
    let created = scalar(&app, "SELECT sum(tasks_created) FROM ingests").await;
    assert_eq!(created, 1);

    // The same SKU elsewhere is another task; after the open one is done, a new alert
    // opens a new one.
    finished(
        &app,
        &accepted(
            &app,
            "stock-alerts",
            &json!({"alert_id": "AL-X", "store_code": stores[1].code, "sku": "MILK-1", "on_hand": 0}),
        )
        .await,
    )
    .await;
    let task_id: String = sqlx::query_scalar(
        "SELECT t.id::text FROM tasks t JOIN stores s ON s.id = t.store_id WHERE s.code = $1",
    )
    .bind(&stores[0].code)
    .fetch_one(&app.db)
    .await
    .expect("task");
    complete(&app, &task_id).await;
    finished(
        &app,
        &accepted(
            &app,
            "stock-alerts",
            &json!({"alert_id": "AL-21", "store_code": stores[0].code, "sku": "MILK-1", "on_hand": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM tasks WHERE kind = 'restock' AND status = 'open'"
        )
        .await,
        2
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM tasks").await, 3);

    // Re-posting an alert is the same ingest; its id with another body is refused.
    let repost =
        json!({"alert_id": "AL-21", "store_code": stores[0].code, "sku": "MILK-1", "on_hand": 1});
    accepted(&app, "stock-alerts", &repost).await;
    let mut other = repost.clone();
    other["on_hand"] = json!(7);
    assert_problem(post(&app, "stock-alerts", &other).await, 409).await;

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}

/// An integration token of its own sender (`sub`).
fn sender(sub: &str) -> String {
    let mut claims = common::claims(Role::Integration, None, None);
    claims.sub = sub.to_owned();
    common::signer().sign(&claims).expect("sign")
}

/// Posts raw bytes with the given headers; returns the response.
async fn post_bytes(
    app: &TestApp,
    path: &str,
    bearer: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/integrations/{path}")))
        .bearer_auth(bearer)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).send().await.expect("send")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test]
async fn prices_are_exact_and_gzip_bodies_are_decoded_within_the_limit() {
    common::init_logs();
    let app = TestApp::spawn(1).await;
    let erp = integration();
    // Numbers as written on the wire (exponents, many digits) and decimal strings.
    let batch = r#"{"batch_id": "EXACT-1", "effective_at": "2030-03-01T06:00:00", "items": [
            {"sku": "P1", "name": "a", "new_price": 0.1, "currency": "EUR"},
            {"sku": "P2", "name": "b", "new_price": "9.99", "currency": "EUR"},
            {"sku": "P3", "name": "c", "new_price": 1e2, "currency": "JPY"},
            {"sku": "P4", "name": "d", "new_price": "1234567890.1234", "currency": "EUR"},
            {"sku": "P5", "name": "e", "new_price": 15e-4, "currency": "CHF"},
            {"sku": "P6", "name": "f", "new_price": 2.50000, "currency": "EUR"},
            {"sku": "P7", "name": "g", "new_price": 9999999999.9999, "currency": "EUR"}
        ]}"#
    .to_owned();
    // The same batch, gzip on the wire: accepted, and the same ingest as the plain post.
    let zipped = post_bytes(
        &app,
        "price-changes",
        &erp,
        &[("content-encoding", "gzip")],
        gzip(batch.as_bytes()),
    )
    .await;
    assert_eq!(
        zipped.status(),
        202,
        "{}",
        zipped.text().await.unwrap_or_default()
    );
    let id = zipped.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let plain = post_bytes(&app, "price-changes", &erp, &[], batch.clone().into_bytes()).await;
    assert_eq!(plain.status(), 202);
    assert_eq!(plain.json::<Value>().await.expect("json")["id"], id);

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 40, 2);
    worker.wait_connected().await;
    let done = finished(&app, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    let prices: Vec<(String, String, String)> =
        sqlx::query_as("SELECT sku, new_price::text, currency FROM task_items ORDER BY sku")
            .fetch_all(&app.db)
            .await
            .expect("items");
    let prices: Vec<(&str, &str, &str)> = prices
        .iter()
        .map(|(s, p, c)| (s.as_str(), p.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        prices,
        [
            ("P1", "0.1000", "EUR"),
            ("P2", "9.9900", "EUR"),
            ("P3", "100.0000", "JPY"),
            ("P4", "1234567890.1234", "EUR"),
            ("P5", "0.0015", "CHF"),
            ("P6", "2.5000", "EUR"),
            ("P7", "9999999999.9999", "EUR"),
        ]
    );
    worker.shutdown().await;
    teardown(&topology, GROUPS).await;

    // Anything else is a 422 naming the price or the currency.
    for (price, currency, field) in [
        ("1.23456", "\"EUR\"", "items[0].new_price"),
        ("1e-5", "\"EUR\"", "items[0].new_price"),
        ("-0.01", "\"EUR\"", "items[0].new_price"),
        ("\"-1\"", "\"EUR\"", "items[0].new_price"),
        ("10000000000", "\"EUR\"", "items[0].new_price"),
        ("1e400", "\"EUR\"", "items[0].new_price"),
        ("\"1e2\"", "\"EUR\"", "items[0].new_price"),
        ("\"9,99\"", "\"EUR\"", "items[0].new_price"),
        ("\" 9.99\"", "\"EUR\"", "items[0].new_price"),
        ("\"9.99999\"", "\"EUR\"", "items[0].new_price"),
        ("null", "\"EUR\"", "items[0].new_price"),
        ("true", "\"EUR\"", "items[0].new_price"),
        ("1.5", "\"ABC\"", "items[0].currency"),
        ("1.5", "\"XXX\"", "items[0].currency"),
        ("1.5", "\"eur\"", "items[0].currency"),
    ] {
        let body = format!(
            r#"{{"batch_id": "BAD", "effective_at": "2030-03-01T06:00:00", "items": [{{"sku": "A", "name": "a", "new_price": {price}, "currency": {currency}}}]}}"#
        );
        let problem = assert_problem(
            post_bytes(&app, "price-changes", &erp, &[], body.into_bytes()).await,
            422,
        )
        .await;
        assert_eq!(
            problem["errors"][0]["field"], field,
            "{price} {currency}: {problem}"
        );
    }

    // A gzip bomb: 64 KiB on the wire that decodes past the limit is 413, and nothing
    // was stored.
    let mut inflated =
        br#"{"batch_id": "BOMB", "effective_at": "2030-03-01T06:00:00", "items": ["#.to_vec();
    inflated.resize(4 * common::INGEST_BODY_LIMIT_BYTES, b' ');
    let bomb = gzip(&inflated);
    assert!(bomb.len() < common::INGEST_BODY_LIMIT_BYTES / 16);
    // Then: not gzip at all, an encoding the server does not speak, a gzip stream cut short.
    let mut cut = gzip(batch.as_bytes());
    cut.truncate(cut.len() / 2);
    for (encoding, body, status) in [
        ("gzip", bomb, 413),
        ("gzip", batch.clone().into_bytes(), 400),
        ("br", batch.clone().into_bytes(), 415),
        ("gzip", cut, 400),
    ] {
        let headers = [("content-encoding", encoding)];
        let response = post_bytes(&app, "price-changes", &erp, &headers, body).await;
        assert_problem(response, status).await;
    }
    // A field error inside a gzip body still names the field.
    let bad = batch.replace(r#""new_price": "9.99""#, r#""new_price": "9.999999""#);
    let problem = assert_problem(
        post_bytes(
            &app,
            "price-changes",
            &erp,
            &[("content-encoding", "gzip")],
            gzip(bad.as_bytes()),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        problem["errors"][0]["field"], "items[1].new_price",
        "{problem}"
    );
    assert_eq!(scalar(&app, "SELECT count(*) FROM ingests").await, 1);
}

#[tokio::test]
async fn a_sender_reads_only_its_own_ingests_and_its_ids_are_its_own() {
    common::init_logs();
    let app = TestApp::spawn(2).await;
    let stores = app.stores().await;
    let (erp_a, erp_b) = (sender("erp-a"), sender("wms-b"));
    let delivery = |store: &str, qty: u32| {
        json!({"delivery_id": "DLV-7", "store_code": store, "supplier": "Acme",
               "expected_at": "2030-03-01T08:00:00Z", "lines": [{"sku": "A", "qty": qty}]})
        .to_string()
        .into_bytes()
    };
    let id_of = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let a = id_of(
        post_bytes(
            &app,
            "deliveries",
            &erp_a,
            &[],
            delivery(&stores[0].code, 1),
        )
        .await,
    )
    .await;
    // The same delivery id from another sender is another delivery, not a revision.
    let b = id_of(
        post_bytes(
            &app,
            "deliveries",
            &erp_b,
            &[],
            delivery(&stores[1].code, 2),
        )
        .await,
    )
    .await;
    assert_ne!(a, b);
    // The same batch id with different bodies from two senders: both accepted.
    let batch = |price: &str| {
        format!(r#"{{"batch_id": "B-1", "effective_at": "2030-03-01T06:00:00", "items": [{{"sku": "A", "name": "a", "new_price": {price}, "currency": "EUR"}}]}}"#)
            .into_bytes()
    };
    let batch_a = id_of(post_bytes(&app, "price-changes", &erp_a, &[], batch("1.5")).await).await;
    let batch_b = id_of(post_bytes(&app, "price-changes", &erp_b, &[], batch("2.5")).await).await;
    assert_ne!(batch_a, batch_b);
    // Within one sender the id still means one batch.
    assert_problem(
        post_bytes(&app, "price-changes", &erp_a, &[], batch("3.5")).await,
        409,
    )
    .await;

    for (token, own, other) in [
        (&erp_a, &a, &b),
        (&erp_b, &b, &a),
        (&erp_a, &batch_a, &batch_b),
    ] {
        let path = |id: &str| format!("/api/v1/integrations/ingests/{id}");
        assert_eq!(app.get(&path(own), token).await.status(), 200);
        assert_problem(app.get(&path(other), token).await, 404).await;
    }

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 40, 2);
    worker.wait_connected().await;
    for (id, token) in [(&a, &erp_a), (&b, &erp_b)] {
        eventually(Duration::from_secs(30), "delivery done", || async {
            let status: Value = app
                .get(&format!("/api/v1/integrations/ingests/{id}"), token)
                .await
                .json()
                .await
                .expect("json");
            status["status"] == "done"
        })
        .await;
    }
    assert_eq!(
        scalar(&app, "SELECT count(DISTINCT created_by) FROM tasks WHERE source = 'delivery' AND external_ref = 'DLV-7'").await,
        2
    );
    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}
