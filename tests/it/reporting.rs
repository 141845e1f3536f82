//! Reports through HTTP: compliance from the daily statistics (also over pruned
//! periods), overdue work, the CSV export, scopes and bad input; reads from the real
//! streaming replica, falling back to the primary when the replica is stopped or
//! lagging (replay paused); and the analyst role that reads only `reporting`.

use crate::common;

use std::time::Duration;

use common::{SeededStore, TestApp, eventually, token};
use serde_json::Value;
use sqlx::Connection;
use storeops::{
    auth::Role,
    config::Retention,
    maintenance::Pruner,
    reporting::stats,
    tasks::{TaskStatus, fixture::TaskFixture},
};

/// Inserts one task for `store` due at noon (store-local) `days_ago` days ago.
/// `outcome`: done_on_time | done_late | expired | cancelled | open.
async fn task(app: &TestApp, store: &SeededStore, days_ago: i32, outcome: &str, minutes: i32) {
    let day = local_day(app, store, days_ago).await;
    task_on(app, store, &day, outcome, minutes).await;
}

/// Inserts one task for `store` due at noon of the store-local date `day`. Stores
/// of one test sit in different time zones, so "yesterday" differs between them
/// for part of every UTC day; a report over one date names the date itself.
async fn task_on(app: &TestApp, store: &SeededStore, day: &str, outcome: &str, minutes: i32) {
    let due: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT ($2::date + time '12:00') AT TIME ZONE time_zone FROM stores WHERE id = $1",
    )
    .bind(store.id)
    .bind(day)
    .fetch_one(&app.db)
    .await
    .expect("store-local noon");
    let now = chrono::Utc::now();
    let created = due - chrono::Duration::hours(3);
    let done = outcome.starts_with("done");
    let status = match outcome {
        _ if done => TaskStatus::Done,
        "expired" => TaskStatus::Expired,
        "cancelled" => TaskStatus::Cancelled,
        "open" => TaskStatus::Open,
        other => panic!("no outcome {other}"),
    };
    TaskFixture::new(store.id, "report test")
        .status(status)
        .due_at(due)
        .created_at(created)
        .updated_at(if due < now - chrono::Duration::days(30) {
            due
        } else {
            now
        })
        .completed_at(done.then(|| created + chrono::Duration::minutes(minutes.into())))
        .cancelled_at((outcome == "cancelled").then(|| due - chrono::Duration::hours(1)))
        .insert(&app.db)
        .await
        .expect("insert task");
}

async fn local_day(app: &TestApp, store: &SeededStore, days_ago: i32) -> String {
    sqlx::query_scalar(
        "SELECT ((now() AT TIME ZONE time_zone)::date - $2)::text FROM stores WHERE id = $1",
    )
    .bind(store.id)
    .bind(days_ago)
    .fetch_one(&app.db)
    .await
    .expect("local day")
}

async fn json_ok(response: reqwest::Response) -> (String, Value) {
    assert_eq!(response.status(), 200, "report answered");
    let source = response
        .headers()
        .get("x-data-source")
        .expect("X-Data-Source")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(response.headers().contains_key("x-data-staleness-seconds"));
    (source, response.json().await.expect("json"))
}

fn group<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("group {key} in {report}"))
}

#[tokio::test]
async fn compliance_counts_groups_scopes_and_survives_pruning() {
    let app = TestApp::spawn(3).await;
    let stores = app.stores().await;
    let (a, b) = (&stores[0], &stores[1]);
    // One date for every insert: A's midnight may pass while they run.
    let day = local_day(&app, a, 1).await;
    for (outcome, minutes) in [
        ("done_on_time", 30),
        ("done_on_time", 60),
        ("done_on_time", 90),
        ("done_on_time", 120),
        ("done_late", 240),
        ("expired", 0),
        ("cancelled", 0),
        ("open", 0),
    ] {
        task_on(&app, a, &day, outcome, minutes).await;
    }
    task_on(&app, b, &day, "done_on_time", 10).await;
    task_on(&app, b, &day, "done_on_time", 20).await;
    let refresh = stats::catch_up(&app.db, Duration::from_secs(60))
        .await
        .expect("statistics");
    assert!(refresh.caught_up);
    let hq = token(Role::Hq, None, None);

    let (source, report) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={day}&to={day}&group_by=store"),
            &hq,
        )
        .await,
    )
    .await;
    assert_eq!(source, "primary", "no replica configured");
    let store_a = group(&report, &a.id.to_string());
    assert_eq!(store_a["code"], a.code.as_str());
    assert_eq!(store_a["tasks"], 8);
    assert_eq!(store_a["done"], 5);
    assert_eq!(store_a["done_on_time"], 4);
    assert_eq!(store_a["overdue"], 1);
    assert_eq!(store_a["expired"], 1);
    assert_eq!(store_a["cancelled"], 1);
    assert_eq!(store_a["median_minutes_to_complete"], 90.0);
    let rate = store_a["completion_rate"].as_f64().expect("rate");
    assert!((rate - 5.0 / 7.0).abs() < 1e-9);
    assert_eq!(store_a["on_time_rate"], 0.8);
    assert_eq!(group(&report, &b.id.to_string())["tasks"], 2);
    assert_eq!(report["totals"]["tasks"], 10);

    // By region, narrowed to A's region; by template (none here: one row per kind).
    let (_, by_region) = json_ok(
        app.get(
            &format!(
                "/api/v1/reports/compliance?from={day}&to={day}&region={}",
                a.region
            ),
            &hq,
        )
        .await,
    )
    .await;
    assert_eq!(by_region["groups"].as_array().expect("groups").len(), 1);
    assert!(group(&by_region, &a.region)["tasks"].as_i64().unwrap_or(0) >= 8);
    let (_, by_template) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={day}&to={day}&group_by=template"),
            &hq,
        )
        .await,
    )
    .await;
    assert_eq!(group(&by_template, "kind:adhoc")["tasks"], 10);

    // Scopes: a store manager sees their store, a regional manager their region.
    let manager = token(Role::StoreManager, Some(b.id), None);
    let (_, own) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={day}&to={day}&group_by=store"),
            &manager,
        )
        .await,
    )
    .await;
    assert_eq!(own["groups"].as_array().expect("groups").len(), 1);
    assert_eq!(own["groups"][0]["key"], b.id.to_string());
    let regional = token(Role::RegionalManager, None, Some(&a.region));
    let (_, region_only) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={day}&to={day}&group_by=store"),
            &regional,
        )
        .await,
    )
    .await;
    assert!(
        region_only["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .all(|g| stores
                .iter()
                .any(|s| s.id.to_string() == g["key"] && s.region == a.region))
    );
    let elsewhere = if b.region == a.region {
        "zz-nowhere"
    } else {
        b.region.as_str()
    };
    common::assert_problem(
        app.get(
            &format!("/api/v1/reports/compliance?region={elsewhere}"),
            &regional,
        )
        .await,
        403,
    )
    .await;
    for role in [Role::Associate, Role::Integration] {
        let token = token(role, (role == Role::Associate).then_some(a.id), None);
        for path in [
            "/api/v1/reports/compliance",
            "/api/v1/reports/overdue",
            "/api/v1/reports/tasks.csv",
        ] {
            common::assert_problem(app.get(path, &token).await, 403).await;
        }
    }

    // Bad input: a precise 4xx, never a 5xx.
    for (query, status) in [
        ("from=2026-13-01", 400),
        ("group_by=week", 400),
        ("from=2026-05-02&to=2026-05-01", 422),
        ("from=2024-01-01&to=2026-01-01", 422),
        ("region=NOT%20A%20CODE", 422),
    ] {
        common::assert_problem(
            app.get(&format!("/api/v1/reports/compliance?{query}"), &hq)
                .await,
            status,
        )
        .await;
    }
    common::assert_problem(app.get("/api/v1/reports/overdue?limit=0", &hq).await, 422).await;
    common::assert_problem(
        app.get("/api/v1/reports/tasks.csv?to=yesterday", &hq).await,
        400,
    )
    .await;

    // A period that pruning removes still answers, from the statistics kept first.
    let old_day = local_day(&app, a, 500).await;
    for _ in 0..3 {
        task_on(&app, a, &old_day, "done_on_time", 45).await;
    }
    let pruner = Pruner {
        db: app.db.clone(),
        retention: Retention {
            tasks: Duration::from_secs(400 * 86_400),
            task_events: Duration::from_secs(4000 * 86_400),
            outbox: Duration::from_secs(86_400),
            inbox: Duration::from_secs(86_400),
            idempotency_keys: Duration::from_secs(86_400),
            task_changes: Duration::from_secs(86_400),
            webhook_deliveries: Duration::from_secs(86_400),
            ingests: Duration::from_secs(86_400),
            batch_size: 100,
            pause: Duration::from_millis(1),
            duty_percent: 20,
        },
        evidence: storeops::evidence::Evidence::new(&common::evidence_config(&app.database))
            .expect("evidence"),
    };
    let pruned = pruner.run_once(false).await.expect("prune");
    assert_eq!(pruned.rows[0], ("tasks", 3));
    let (_, old) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={old_day}&to={old_day}&group_by=store"),
            &hq,
        )
        .await,
    )
    .await;
    let old_a = group(&old, &a.id.to_string());
    assert_eq!(
        (old_a["tasks"].clone(), old_a["done"].clone()),
        (3.into(), 3.into())
    );
    // Statistics of pruned days are final: a later refresh does not recount them.
    stats::catch_up(&app.db, Duration::from_secs(60))
        .await
        .expect("refresh");
    let (_, again) = json_ok(
        app.get(
            &format!("/api/v1/reports/compliance?from={old_day}&to={old_day}"),
            &hq,
        )
        .await,
    )
    .await;
    assert_eq!(again["totals"]["tasks"], 3);
}

#[tokio::test]
async fn overdue_ranks_stores_and_csv_streams_scoped_rows() {
    common::init_logs();
    let app = TestApp::spawn(3).await;
    let stores = app.stores().await;
    let (a, b, c) = (&stores[0], &stores[1], &stores[2]);
    for _ in 0..3 {
        task(&app, b, 2, "open", 0).await;
    }
    task(&app, a, 1, "open", 0).await;
    task(&app, a, 1, "done_on_time", 30).await;
    task(&app, c, 3, "done_late", 300).await;
    let hq = token(Role::Hq, None, None);

    let (_, overdue) = json_ok(app.get("/api/v1/reports/overdue", &hq).await).await;
    let items = overdue["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{overdue}");
    assert_eq!(items[0]["store_code"], b.code.as_str());
    assert_eq!(items[0]["overdue"], 3);
    assert_eq!(items[1]["store_code"], a.code.as_str());
    let (_, top) = json_ok(app.get("/api/v1/reports/overdue?limit=1", &hq).await).await;
    assert_eq!(top["items"].as_array().expect("items").len(), 1);
    let manager = token(Role::StoreManager, Some(a.id), None);
    let (_, own) = json_ok(app.get("/api/v1/reports/overdue", &manager).await).await;
    assert_eq!(own["items"].as_array().expect("items").len(), 1);
    assert_eq!(own["items"][0]["store_code"], a.code.as_str());

    let from = local_day(&app, a, 10).await;
    let to = local_day(&app, a, 0).await;
    let response = app
        .get(
            &format!("/api/v1/reports/tasks.csv?from={from}&to={to}"),
            &hq,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(response.headers()["x-data-source"], "primary");
    let body = response.text().await.expect("csv");
    let mut lines = body.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("task_id,store_id,store_code,region_code,kind,source,title"),
        "{header}"
    );
    assert_eq!(lines.count(), 6, "every task of the period, once");

    let own_csv = app
        .get(
            &format!("/api/v1/reports/tasks.csv?from={from}&to={to}"),
            &manager,
        )
        .await
        .text()
        .await
        .expect("csv");
    let rows: Vec<&str> = own_csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.contains(&a.code)));

    // A day outside the range exports nothing but the header.
    let empty = app
        .get(
            "/api/v1/reports/tasks.csv?from=2020-01-01&to=2020-01-02",
            &hq,
        )
        .await
        .text()
        .await
        .expect("csv");
    assert_eq!(empty.lines().count(), 1);
}

async fn source_of(app: &TestApp, token: &str) -> (String, Value) {
    json_ok(app.get("/api/v1/reports/overdue", token).await).await
}

fn overdue_of(report: &Value, store: &SeededStore) -> i64 {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["store_code"] == store.code.as_str())
        .map_or(0, |i| i["overdue"].as_i64().unwrap_or(0))
}

/// A primary and its streaming replica of this test's own: the drill pauses replay and
/// stops the replica, which the shared dev services must never see.
#[tokio::test]
async fn reports_read_the_replica_and_fall_back_when_it_lags_or_stops() {
    let primary = common::own_postgres::OwnPostgres::start();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&primary.url())
        .await
        .expect("connect to the primary");
    storeops::db::MIGRATOR.run(&db).await.expect("migrate");
    let replica = common::own_postgres::OwnPostgres::replica_of(&primary);
    let replica_url = replica.url();
    let replica_sql = |sql: &'static str| {
        let url = replica_url.clone();
        async move {
            let mut connection = sqlx::PgConnection::connect(&url)
                .await
                .expect("connect to the replica");
            sqlx::query(sql).execute(&mut connection).await.expect(sql);
        }
    };
    let app = TestApp::spawn_on(
        "postgres".to_owned(),
        db,
        primary.url(),
        2,
        false,
        &[
            ("DATABASE_REPLICA_URLS", replica.url().as_str()),
            ("DATABASE_REPLICA_NAMES", "own"),
            ("REPLICA_MAX_LAG_SECONDS", "2"),
            ("REPLICA_LAG_CHECK_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let stores = app.stores().await;
    let hq = token(Role::Hq, None, None);

    // The new database reaches the replica, which then serves reports; a write on the
    // primary shows once replicated.
    eventually(
        Duration::from_secs(20),
        "reports from the replica",
        || async { source_of(&app, &hq).await.0 == "replica" },
    )
    .await;
    task(&app, &stores[0], 1, "open", 0).await;
    eventually(Duration::from_secs(10), "the write replicated", || async {
        let (source, report) = source_of(&app, &hq).await;
        source == "replica" && overdue_of(&report, &stores[0]) == 1
    })
    .await;

    // Replay paused past the lag limit: the replica is skipped, the primary answers.
    replica_sql("SELECT pg_wal_replay_pause()").await;
    task(&app, &stores[1], 1, "open", 0).await;
    eventually(
        Duration::from_secs(15),
        "the lagging replica skipped",
        || async {
            let (source, report) = source_of(&app, &hq).await;
            source == "primary" && overdue_of(&report, &stores[1]) == 1
        },
    )
    .await;
    replica_sql("SELECT pg_wal_replay_resume()").await;
    eventually(
        Duration::from_secs(15),
        "the replica back once caught up",
        || async {
            let (source, report) = source_of(&app, &hq).await;
            source == "replica" && overdue_of(&report, &stores[1]) == 1
        },
    )
    .await;

    // Replica stopped: every report still answers, from the primary, and says so.
    let replica = tokio::task::spawn_blocking(move || {
        replica.ctl("stop");
        replica
    })
    .await
    .expect("stop the replica");
    for _ in 0..5 {
        let (source, _) = source_of(&app, &hq).await;
        assert_eq!(source, "primary");
        let csv = app.get("/api/v1/reports/tasks.csv", &hq).await;
        assert_eq!(csv.status(), 200);
        assert_eq!(csv.headers()["x-data-source"], "primary");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Kept until the end: dropping it stops the replica.
    let _replica = tokio::task::spawn_blocking(move || {
        replica.ctl("start");
        replica
    })
    .await
    .expect("start the replica");
    eventually(
        Duration::from_secs(20),
        "the restarted replica used again",
        || async { source_of(&app, &hq).await.0 == "replica" },
    )
    .await;
    let metrics = prometheus::gather();
    assert!(
        metrics
            .iter()
            .any(|family| family.name() == "storeops_replica_lag_seconds"),
        "replica lag is exported"
    );
}

#[tokio::test]
async fn the_analyst_role_reads_reporting_views_and_nothing_else() {
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 2, 1).await.expect("seed");
    let login = format!("analyst_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {login} LOGIN PASSWORD 'analyst-password' IN ROLE storeops_analyst"
    )))
    .execute(&db)
    .await
    .expect("create analyst login");
    let url = common::url_for_database(&common::database_url(), &database);
    let url = url.replacen(
        "storeops:storeops@",
        &format!("{login}:analyst-password@"),
        1,
    );
    let analyst = sqlx::PgPool::connect(&url).await.expect("analyst connects");

    for view in [
        "reporting.regions",
        "reporting.stores",
        "reporting.tasks",
        "reporting.task_events",
        "reporting.task_templates",
        "reporting.campaigns",
        "reporting.daily_store_stats",
        "reporting.task_items",
        "reporting.ingests",
    ] {
        let sql = format!("SELECT count(*) FROM {view}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&analyst)
            .await
            .unwrap_or_else(|e| panic!("analyst reads {view}: {e}"));
        if view == "reporting.tasks" {
            assert!(n > 0, "seeded history is visible");
        }
    }
    for sql in [
        "SELECT count(*) FROM tasks",
        "SELECT count(*) FROM staff",
        "SELECT count(*) FROM webhooks",
        "INSERT INTO regions (id, code, name, time_zone) VALUES (gen_random_uuid(), 'x1', 'x', 'UTC')",
        "DELETE FROM reporting.regions",
        "UPDATE stores SET name = 'x'",
        "SELECT task_events_ensure_partitions(current_date, current_date)",
    ] {
        let error = sqlx::query(sql).execute(&analyst).await.expect_err(sql);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {error}");
    }
    analyst.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {login}")))
        .execute(&db)
        .await
        .expect("drop analyst login");
}
