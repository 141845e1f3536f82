//! `GET /tasks/{id}/items`: a price batch posted through HTTP as an integration and
//! applied by the worker becomes a relabel task whose items page by SKU, prices as exact
//! decimal strings; a later batch's supersede shows on the item; scope, cursors and
//! limits as on every list.

use crate::common;
use crate::integrations::{GROUPS, accepted, finished, integration, line, worker};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{TestApp, assert_problem, teardown, test_topology, token};
use serde_json::{Value, json};
use storeops::auth::Role;

/// A GET that must answer 200; its JSON body.
async fn ok(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

/// A cursor as this API encodes one (base64url of the key's JSON), for forging.
fn b64(key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// Every item of the task, following `next_cursor` with `limit=2` until it is null;
/// returns the items and how many pages it took.
async fn all_items(app: &TestApp, task: &str, token: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/tasks/{task}/items?limit=2");
        if let Some(c) = &cursor {
            // base64url: nothing to escape in a query.
            path.push_str(&format!("&cursor={c}"));
        }
        let page = ok(app, &path, token).await;
        pages += 1;
        let batch = page["items"].as_array().expect("items");
        assert!(batch.len() <= 2, "limit=2 gave {page}");
        items.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert!(!batch.is_empty(), "a page with a next cursor has items");
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                break;
            }
        }
        assert!(pages < 20, "paging never ends");
    }
    (items, pages)
}

#[tokio::test]
async fn a_relabel_task_pages_its_items_by_sku_with_exact_prices() {
    common::init_logs();
    let app = TestApp::spawn(10).await;
    let stores = app.stores().await;
    let home = &stores[0];
    let elsewhere = stores
        .iter()
        .find(|s| s.region != home.region)
        .expect("a store in another region");

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology, 2, 2);
    worker.wait_connected().await;

    // Five SKUs for the home store only, sent out of SKU order, prices as JSON numbers;
    // the SKUs sort the same in any collation.
    let prices = [
        ("SKU-05", 0.1, "0.1"),
        ("SKU-01", 9.99, "9.99"),
        ("SKU-03", 3.0, "3"),
        ("SKU-02", 1234.5678, "1234.5678"),
        ("SKU-04", 12.5, "12.5"),
    ];
    let for_home = |sku: &str, price: f64| {
        let mut item = line(sku, price);
        item["store_codes"] = json!([home.code]);
        item
    };
    let items: Vec<Value> = prices
        .iter()
        .map(|&(sku, price, _)| for_home(sku, price))
        .collect();
    let first = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "ITEMS-1", "effective_at": "2030-03-01T06:00:00", "items": items}),
    )
    .await;
    let done = finished(&app, &first).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["counts"]["tasks_created"], 1, "{done}");
    assert_eq!(done["counts"]["items_created"], 5, "{done}");

    // The batch's relabel task in the home store, found as integrations.rs does.
    let task: String = sqlx::query_scalar(
        "SELECT t.id::text FROM tasks t JOIN ingests i ON i.id = t.ingest_id JOIN stores s ON s.id = t.store_id
          WHERE i.external_id = 'ITEMS-1' AND s.code = $1 AND t.kind = 'price_relabel'",
    )
    .bind(&home.code)
    .fetch_one(&app.db)
    .await
    .expect("relabel task");

    // Paged two at a time: every SKU once, in SKU order, prices exact.
    let associate = token(Role::Associate, Some(home.id), None);
    let (items, pages) = all_items(&app, &task, &associate).await;
    assert_eq!(pages, 3);
    let skus: Vec<&str> = items
        .iter()
        .map(|i| i["sku"].as_str().expect("sku"))
        .collect();
    let mut expected: Vec<&str> = prices.iter().map(|(sku, ..)| *sku).collect();
    expected.sort_unstable();
    assert_eq!(skus, expected, "every SKU once, in SKU order");
    for (sku, _, exact) in prices {
        let item = items.iter().find(|i| i["sku"] == sku).expect("item");
        assert_eq!(item["new_price"], exact, "{item}");
        assert_eq!(item["name"], format!("Item {sku}"), "{item}");
        assert_eq!(item["currency"], "EUR", "{item}");
        assert_eq!(item["state"], "active", "{item}");
        assert!(item["superseded_by"].is_null(), "{item}");
    }
    // One page of everything says the same, with no next page.
    let whole = ok(
        &app,
        &format!("/api/v1/tasks/{task}/items?limit=200"),
        &associate,
    )
    .await;
    assert_eq!(whole["items"].as_array().expect("items"), &items);
    assert!(whole["next_cursor"].is_null(), "{whole}");

    // A later batch changes one SKU: the item stays on this (open) task, superseded.
    let second = accepted(
        &app,
        "price-changes",
        &json!({"batch_id": "ITEMS-2", "effective_at": "2030-03-02T06:00:00",
                "items": [for_home("SKU-03", 2.75)]}),
    )
    .await;
    let done = finished(&app, &second).await;
    assert_eq!(done["status"], "done", "{done}");
    let (items, _) = all_items(&app, &task, &associate).await;
    assert_eq!(items.len(), 5, "a superseded item stays on its task");
    let superseded = items.iter().find(|i| i["sku"] == "SKU-03").expect("SKU-03");
    assert_eq!(superseded["state"], "superseded", "{superseded}");
    assert_eq!(superseded["superseded_by"], second.as_str(), "{superseded}");
    assert_eq!(superseded["new_price"], "3", "{superseded}");

    // Who sees the items: whoever sees the task; outside scope the task does not exist,
    // answered exactly as GET /tasks/{id} answers it.
    let path = format!("/api/v1/tasks/{task}/items");
    for (label, caller, status) in [
        ("the store's associate", associate.clone(), 200),
        (
            "the store's manager",
            token(Role::StoreManager, Some(home.id), None),
            200,
        ),
        (
            "the region's manager",
            token(Role::RegionalManager, None, Some(&home.region)),
            200,
        ),
        ("HQ", token(Role::Hq, None, None), 200),
        (
            "an associate of another store",
            token(Role::Associate, Some(elsewhere.id), None),
            404,
        ),
        (
            "a manager of another store",
            token(Role::StoreManager, Some(elsewhere.id), None),
            404,
        ),
        (
            "a regional manager of another region",
            token(Role::RegionalManager, None, Some(&elsewhere.region)),
            404,
        ),
        ("an integration", integration(), 403),
    ] {
        let response = app.get(&path, &caller).await;
        if status == 200 {
            assert_eq!(response.status(), 200, "{label}");
            continue;
        }
        let problem = assert_problem(response, status).await;
        let task_problem = assert_problem(
            app.get(&format!("/api/v1/tasks/{task}"), &caller).await,
            status,
        )
        .await;
        assert_eq!(problem["detail"], task_problem["detail"], "{label}");
    }
    let hq = token(Role::Hq, None, None);
    assert_problem(
        app.get(
            "/api/v1/tasks/0190f2a0-0000-7000-8000-000000000000/items",
            &hq,
        )
        .await,
        404,
    )
    .await;
    assert_problem(app.get("/api/v1/tasks/not-a-uuid/items", &hq).await, 400).await;

    // A task of another kind has no items: an empty page.
    let created = app
        .client
        .post(app.url(&format!("/api/v1/stores/{}/tasks", home.id)))
        .bearer_auth(&hq)
        .json(&json!({"title": "Face the shelves"}))
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    let adhoc: Value = created.json().await.expect("json");
    let adhoc = adhoc["id"].as_str().expect("id");
    let empty = ok(&app, &format!("/api/v1/tasks/{adhoc}/items"), &associate).await;
    assert_eq!(empty, json!({"items": [], "next_cursor": null}));

    // Limits and cursors as on every list: 422 naming the field (400 when not a number).
    for (query, field) in [
        ("limit=0".to_owned(), "limit"),
        ("limit=201".to_owned(), "limit"),
        ("cursor=not-a-cursor".to_owned(), "cursor"),
        (format!("cursor={}", b64(b"[1, 2]")), "cursor"),
        (format!("cursor={}", b64(br#""""#)), "cursor"),
        (format!("cursor={}", b64(br#""SKU\u0007""#)), "cursor"),
        (format!("cursor={}", b64(br#""SKU\u0000""#)), "cursor"),
    ] {
        let problem = assert_problem(app.get(&format!("{path}?{query}"), &hq).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    assert_problem(app.get(&format!("{path}?limit=abc"), &hq).await, 400).await;
    // A well-formed SKU past the last one: an empty last page, not an error.
    let past = ok(&app, &format!("{path}?cursor={}", b64(br#""ZZZ""#)), &hq).await;
    assert_eq!(past, json!({"items": [], "next_cursor": null}));

    worker.shutdown().await;
    teardown(&topology, GROUPS).await;
}
