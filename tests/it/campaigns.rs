//! Campaigns through HTTP and the worker: targeting, scope, fan-out exactly one task
//! per store even when the fan-out message arrives twice, and progress reporting.

use crate::common;

use std::time::Duration;

use common::{RunningWorker, TestApp, assert_problem, eventually, teardown, test_topology, token};
use serde_json::{Value, json};
use storeops::{auth::Role, events::outbox};

async fn post(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("send")
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

fn worker(app: &TestApp, topology: &storeops::events::topology::Topology) -> RunningWorker {
    RunningWorker::groups(&app.db, topology, &["campaigns"], 4, &[])
}

async fn wait_active(app: &TestApp, token: &str, id: &str) -> Value {
    let path = format!("/api/v1/campaigns/{id}");
    eventually(Duration::from_secs(60), "campaign fanned out", || async {
        get(app, token, &path).await["status"] == "active"
    })
    .await;
    get(app, token, &path).await
}

#[tokio::test]
async fn a_chain_wide_campaign_gives_every_store_one_task_even_if_fanned_out_twice() {
    common::init_logs();
    let app = TestApp::spawn(1000).await;
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology);
    worker.wait_connected().await;
    let hq = token(Role::Hq, None, None);

    let accepted = post(&app, &hq, json!({"title": "Christmas display", "target": {"all": true}, "due_local": "2030-12-20T10:00:00", "priority": "high"})).await;
    assert_eq!(accepted.status(), 202);
    assert!(accepted.headers().contains_key("location"));
    let accepted: Value = accepted.json().await.expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let campaign = wait_active(&app, &hq, &id).await;
    assert_eq!(campaign["tasks"]["total"], 1000);
    assert_eq!(campaign["tasks"]["open"], 1000);
    assert_eq!(campaign["target_count"], 1000);

    // The same fan-out requested again under a new message id: nothing doubles.
    let mut tx = app.db.begin().await.expect("begin");
    outbox::enqueue(
        &mut tx,
        &storeops::campaigns::CampaignCreated {
            campaign_id: id.parse().expect("campaign id"),
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    eventually(
        Duration::from_secs(30),
        "second fan-out handled",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM inbox WHERE consumer_group = 'campaigns'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(0)
                == 2
        },
    )
    .await;
    let per_store: Vec<(i64,)> =
        sqlx::query_as("SELECT count(*) FROM tasks GROUP BY store_id HAVING count(*) <> 1")
            .fetch_all(&app.db)
            .await
            .expect("count");
    assert!(per_store.is_empty(), "every store has exactly one task");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(total, 1000);

    // Local due time: 10:00 in each store's own zone.
    let spread: (i64,) = sqlx::query_as("SELECT count(DISTINCT due_at) FROM tasks")
        .fetch_one(&app.db)
        .await
        .expect("spread");
    assert!(
        spread.0 >= 8,
        "due times follow the stores' time zones ({})",
        spread.0
    );
    let local_hours: Vec<f64> = sqlx::query_scalar(
        "SELECT DISTINCT EXTRACT(HOUR FROM t.due_at AT TIME ZONE s.time_zone)::float8 FROM tasks t JOIN stores s ON s.id = t.store_id",
    )
    .fetch_all(&app.db)
    .await
    .expect("hours");
    assert_eq!(local_hours, vec![10.0]);

    // Per-store progress pages through every store once; completing one moves the rate.
    let mut codes = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let page = get(
            &app,
            &hq,
            &format!("/api/v1/campaigns/{id}/stores?limit=200{cursor}"),
        )
        .await;
        codes.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["store_code"].as_str().expect("code").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(codes.len(), 1000);
    let first = get(&app, &hq, &format!("/api/v1/campaigns/{id}/stores?limit=1")).await;
    let task_id = first["items"][0]["task_id"]
        .as_str()
        .expect("task")
        .to_owned();
    let done = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{task_id}/complete")))
        .bearer_auth(&hq)
        .send()
        .await
        .expect("send");
    assert_eq!(done.status(), 200);
    let campaign = get(&app, &hq, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(campaign["tasks"]["done"], 1);
    assert!((campaign["completion_rate"].as_f64().expect("rate") - 0.001).abs() < 1e-9);

    worker.shutdown().await;
    teardown(&topology, &["campaigns"]).await;
}

#[tokio::test]
async fn regional_managers_campaign_inside_their_region_only() {
    let app = TestApp::spawn(60).await;
    let stores = app.stores().await;
    let region = stores[0].region.clone();
    let foreign = stores
        .iter()
        .find(|s| s.region != region)
        .expect("another region")
        .clone();
    let regional = token(Role::RegionalManager, None, Some(&region));
    let hq = token(Role::Hq, None, None);

    assert_problem(post(&app, &regional, json!({"title": "t", "target": {"regions": [foreign.region]}, "due_at": "2030-01-01T10:00:00Z"})).await, 403).await;
    assert_problem(post(&app, &regional, json!({"title": "t", "target": {"store_codes": [foreign.code]}, "due_at": "2030-01-01T10:00:00Z"})).await, 403).await;
    assert_problem(
        post(
            &app,
            &token(Role::StoreManager, Some(stores[0].id), None),
            json!({"title": "t", "target": {"all": true}, "due_at": "2030-01-01T10:00:00Z"}),
        )
        .await,
        403,
    )
    .await;
    for (body, field) in [
        (
            json!({"title": "t", "target": {"all": true, "formats": ["express"]}, "due_at": "2030-01-01T10:00:00Z"}),
            "target",
        ),
        (
            json!({"title": "t", "target": {}, "due_at": "2030-01-01T10:00:00Z"}),
            "target",
        ),
        (json!({"title": "t", "target": {"all": true}}), "due_at"),
        (
            json!({"title": "t", "target": {"store_codes": ["S99999"]}, "due_at": "2030-01-01T10:00:00Z"}),
            "target.store_codes",
        ),
        (
            json!({"target": {"all": true}, "due_at": "2030-01-01T10:00:00Z"}),
            "title",
        ),
    ] {
        let problem = assert_problem(post(&app, &hq, body.clone()).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology);
    worker.wait_connected().await;
    let accepted: Value = post(&app, &regional, json!({"title": "Regional audit", "target": {"all": true}, "due_at": "2030-01-01T10:00:00Z"}))
        .await
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let campaign = wait_active(&app, &regional, &id).await;
    let in_region = stores.iter().filter(|s| s.region == region).count() as i64;
    assert_eq!(campaign["tasks"]["total"], in_region);
    assert_eq!(campaign["region_scope"], region.as_str());

    // Another region's manager does not see it; HQ does.
    let other = token(Role::RegionalManager, None, Some(&foreign.region));
    assert_problem(
        app.get(&format!("/api/v1/campaigns/{id}"), &other).await,
        404,
    )
    .await;
    get(&app, &hq, &format!("/api/v1/campaigns/{id}")).await;

    worker.shutdown().await;
    teardown(&topology, &["campaigns"]).await;
}
