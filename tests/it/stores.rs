//! Regions, stores and staff through HTTP: pagination, scopes, closures.

use crate::common;

use std::collections::HashSet;

use common::{TestApp, assert_problem, token};
use serde_json::Value;
use storeops::auth::Role;

async fn json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "{:?}", response.url().clone());
    response.json().await.expect("json")
}

async fn walk(app: &TestApp, token: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/api/v1/stores?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = json(app.get(&path, token).await).await;
        let batch = page["items"].as_array().expect("items");
        assert!(batch.len() <= limit as usize);
        items.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("pagination did not terminate");
}

#[tokio::test]
async fn walking_all_pages_returns_every_store_once() {
    let app = TestApp::spawn(237).await;
    let hq = token(Role::Hq, None, None);
    for limit in [1, 7, 50, 200] {
        let items = walk(&app, &hq, "", limit).await;
        assert_eq!(items.len(), 237, "limit {limit}");
        let codes: Vec<&str> = items
            .iter()
            .map(|s| s["code"].as_str().expect("code"))
            .collect();
        let unique: HashSet<&&str> = codes.iter().collect();
        assert_eq!(unique.len(), 237, "limit {limit}: duplicates");
        assert!(
            codes.windows(2).all(|w| w[0] < w[1]),
            "limit {limit}: not in code order"
        );
        assert!(items.iter().all(|s| s["id"].is_string()));
    }
    // The region filter pages too, and only returns that region.
    let moscow = walk(&app, &hq, "&region=moscow", 10).await;
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stores s JOIN regions r ON r.id = s.region_id WHERE r.code = 'moscow'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(moscow.len() as i64, expected);
    assert!(moscow.iter().all(|s| s["region"] == "moscow"));
}

#[tokio::test]
async fn scopes_decide_what_each_role_sees() {
    let app = TestApp::spawn(40).await;
    let stores = app.stores().await;
    let home = &stores[0];
    let neighbour = stores
        .iter()
        .find(|s| s.region == home.region && s.id != home.id)
        .expect("a second store in the region");
    let far = stores
        .iter()
        .find(|s| s.region != home.region)
        .expect("another region");

    // Associates and store managers: their own store only.
    for role in [Role::Associate, Role::StoreManager] {
        let t = token(role, Some(home.id), None);
        let page = json(app.get("/api/v1/stores", &t).await).await;
        let ids: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| s["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, vec![home.id.to_string()], "{role:?}");
        json(app.get(&format!("/api/v1/stores/{}", home.id), &t).await).await;
        let staff = json(
            app.get(&format!("/api/v1/stores/{}/staff", home.id), &t)
                .await,
        )
        .await;
        assert_eq!(staff["items"].as_array().expect("items").len(), 25);
        assert_problem(
            app.get(&format!("/api/v1/stores/{}", neighbour.id), &t)
                .await,
            403,
        )
        .await;
        let me = json(app.get("/api/v1/me", &t).await).await;
        assert_eq!(me["store_id"], home.id.to_string());
    }

    // Regional managers: their region, nothing else.
    let regional = token(Role::RegionalManager, None, Some(&home.region));
    let page = json(app.get("/api/v1/stores?limit=200", &regional).await).await;
    let items = page["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(items.iter().all(|s| s["region"] == home.region.as_str()));
    json(
        app.get(&format!("/api/v1/stores/{}", neighbour.id), &regional)
            .await,
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/stores/{}", far.id), &regional)
            .await,
        403,
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/stores?region={}", far.region), &regional)
            .await,
        403,
    )
    .await;

    // HQ: everything; regions list counts stores.
    let hq = token(Role::Hq, None, None);
    let regions = json(app.get("/api/v1/regions", &hq).await).await;
    let total: i64 = regions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["store_count"].as_i64().expect("count"))
        .sum();
    assert_eq!(total, 40);
    assert!(regions["next_cursor"].is_null());

    // A regional manager's token naming a region that does not exist sees no stores.
    let ghost = token(Role::RegionalManager, None, Some("atlantis"));
    assert_problem(app.get("/api/v1/stores", &ghost).await, 422).await;
}

#[tokio::test]
async fn staff_pages_and_closures_round_trip() {
    let app = TestApp::spawn(3).await;
    let store = &app.stores().await[1];
    let manager = token(Role::StoreManager, Some(store.id), None);
    let associate = token(Role::Associate, Some(store.id), None);

    let first = json(
        app.get(
            &format!("/api/v1/stores/{}/staff?limit=10", store.id),
            &manager,
        )
        .await,
    )
    .await;
    let cursor = first["next_cursor"].as_str().expect("more staff");
    let second = json(
        app.get(
            &format!("/api/v1/stores/{}/staff?limit=20&cursor={cursor}", store.id),
            &manager,
        )
        .await,
    )
    .await;
    assert_eq!(
        first["items"].as_array().expect("items").len()
            + second["items"].as_array().expect("items").len(),
        25
    );
    assert!(second["next_cursor"].is_null());

    let closures = app.url(&format!("/api/v1/stores/{}/closures", store.id));
    // A day well ahead in every time zone, whatever today is.
    let day = (chrono::Utc::now().date_naive() + chrono::Duration::days(400)).to_string();
    let add = |t: String, reason: &'static str| {
        app.client
            .post(&closures)
            .bearer_auth(t)
            .json(&serde_json::json!({"date": day, "reason": reason}))
            .send()
    };
    assert_problem(
        add(associate.clone(), "Victory Day").await.expect("send"),
        403,
    )
    .await;
    let created = add(manager.clone(), "Victory Day").await.expect("send");
    assert_eq!(created.status(), 201);
    let again = add(manager.clone(), "Holiday").await.expect("send");
    assert_eq!(again.status(), 200);
    let detail = json(
        app.get(&format!("/api/v1/stores/{}", store.id), &manager)
            .await,
    )
    .await;
    assert!(
        detail["closure_dates"]
            .as_array()
            .expect("dates")
            .iter()
            .any(|d| d == day.as_str()),
        "{detail}"
    );

    let delete = |t: String| {
        app.client
            .delete(format!("{closures}/{day}"))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(delete(manager.clone()).await.expect("send").status(), 204);
    assert_problem(delete(manager).await.expect("send"), 404).await;
}

#[tokio::test]
async fn hot_store_queries_use_their_indexes() {
    let app = TestApp::spawn(300).await;
    sqlx::query("ANALYZE")
        .execute(&app.db)
        .await
        .expect("analyze");
    let store = &app.stores().await[5];
    let plans = [
        (
            "EXPLAIN SELECT s.id FROM stores s JOIN regions r ON r.id = s.region_id
              WHERE r.code = 'moscow' AND s.code > 'S00010' ORDER BY s.code LIMIT 51"
                .to_owned(),
            "stores_",
        ),
        (
            format!(
                "EXPLAIN SELECT id FROM staff WHERE store_id = '{}' ORDER BY id LIMIT 51",
                store.id
            ),
            "staff_store_id_idx",
        ),
        (
            // Sign-in through an identity provider, on every store staff request.
            "EXPLAIN SELECT id, store_id FROM staff WHERE external_subject = 'oid-1' AND active"
                .to_owned(),
            "staff_external_subject_key",
        ),
        (
            format!(
                "EXPLAIN SELECT id FROM tasks WHERE store_id = '{}' AND status = ANY('{{open,in_progress}}')
                  ORDER BY due_at, id LIMIT 51",
                store.id
            ),
            "tasks_store_",
        ),
        (
            format!(
                "EXPLAIN SELECT id, occurred_at FROM task_events WHERE task_id = '{}' ORDER BY occurred_at LIMIT 51",
                store.id
            ),
            "task_events_",
        ),
    ];
    for (sql, index) in plans {
        // Small tables may tempt the planner into a scan; ask it what it would do with
        // the index available and sequential scans discouraged.
        let mut tx = app.db.begin().await.expect("begin");
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await
            .expect("set");
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await
            .expect("explain");
        let plan = lines.join("\n");
        assert!(plan.contains(index), "expected {index} in:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}

#[tokio::test]
async fn seeding_history_is_deterministic_and_idempotent() {
    let (_, db) = common::fresh_database().await;
    let first = storeops::seed::seed_chain(&db, 6, 2).await.expect("seed");
    assert_eq!((first.stores, first.staff, first.templates), (6, 150, 5));
    assert_eq!(first.history_tasks, 6 * 10 * 2);
    let again = storeops::seed::seed_chain(&db, 6, 2)
        .await
        .expect("seed again");
    assert_eq!(
        (
            again.stores,
            again.staff,
            again.templates,
            again.history_tasks
        ),
        (0, 0, 0, 0)
    );
    let (tasks, events, done_without_completion): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tasks),
                (SELECT count(*) FROM task_events),
                (SELECT count(*) FROM tasks WHERE status = 'done' AND completed_at IS NULL)",
    )
    .fetch_one(&db)
    .await
    .expect("counts");
    assert_eq!(tasks, 120);
    assert!(events > tasks, "created plus completion events");
    assert_eq!(done_without_completion, 0);
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT get_byte(uuid_send(id), 6) >> 4 FROM tasks")
            .fetch_all(&db)
            .await
            .expect("versions");
    assert_eq!(versions, vec![7], "history ids are UUID v7");
}
