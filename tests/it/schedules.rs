//! Recurring schedules end to end: the leader's planner publishes due occurrences once,
//! workers create each occurrence once per store, closed stores are skipped, and after
//! downtime only occurrences inside the catch-up window are created.

use crate::common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::{RunningWorker, TestApp, eventually, teardown, test_topology, token};
use serde_json::json;
use storeops::{events::outbox, scheduler::Job, schedules::Planner};
use uuid::Uuid;

async fn count(db: &sqlx::PgPool, sql: &'static str, template: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(template)
        .fetch_one(db)
        .await
        .expect("count")
}

#[tokio::test]
async fn occurrences_are_created_once_per_open_store_inside_the_catch_up_window() {
    common::init_logs();
    let app = TestApp::spawn(12).await;
    let stores = app.stores().await;
    // S00002 and S00003 are both in Moscow (seeded shares); S00003 is closed today.
    let (open_store, closed_store) = (&stores[1], &stores[2]);
    let moscow: chrono_tz::Tz = "Europe/Moscow".parse().expect("tz");
    let local_now = Utc::now().with_timezone(&moscow);
    let at_local = local_now - chrono::Duration::minutes(30);
    let at = format!("{:02}:{:02}", at_local.hour(), at_local.minute());
    sqlx::query("INSERT INTO store_closures (store_id, closed_on, reason) VALUES ($1, $2, 'test')")
        .bind(closed_store.id)
        .bind(at_local.date_naive())
        .execute(&app.db)
        .await
        .expect("closure");

    let hq = token(storeops::auth::Role::Hq, None, None);
    let mut templates = Vec::new();
    for title in ["After an hour of downtime", "After three days of downtime"] {
        let response = app
            .client
            .post(app.url("/api/v1/task-templates"))
            .bearer_auth(&hq)
            .json(&json!({
                "title": title,
                "recurrence": {"frequency": "daily", "at": at, "due_window_minutes": 90,
                               "target": {"store_codes": [open_store.code, closed_store.code]}}
            }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["recurrence"]["at"], at.as_str());
        templates.push(Uuid::parse_str(body["id"].as_str().expect("id")).expect("uuid"));
    }
    // Simulate downtime: planned up to an hour ago, and three days ago.
    for (template, since) in templates.iter().zip(["1 hour", "3 days"]) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO schedule_progress (template_id, planned_until) VALUES ($1, now() - interval '{since}')"
        )))
        .bind(template)
        .execute(&app.db)
        .await
        .expect("progress");
    }
    let bad = app
        .client
        .post(app.url("/api/v1/task-templates"))
        .bearer_auth(&hq)
        .json(&json!({"title": "x", "recurrence": {"frequency": "weekly", "at": "25:00"}}))
        .send()
        .await
        .expect("send");
    let problem = common::assert_problem(bad, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("f"))
        .collect();
    assert_eq!(fields, vec!["recurrence.at", "recurrence.weekdays"]);

    let planner = Planner {
        db: app.db.clone(),
        tick: Duration::from_secs(1),
        catch_up: Duration::from_secs(6 * 3600),
    };
    planner.run().await.expect("plan");
    planner.run().await.expect("plan again: nothing new");
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE routing_key = 'schedule.due'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(
        published, 2,
        "one message per template (both stores share a zone), once"
    );

    // Deliver the first message twice more, as a retry storm would.
    let payload: sqlx::types::Json<storeops::schedules::ScheduleDue> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE routing_key = 'schedule.due' LIMIT 1")
            .fetch_one(&app.db)
            .await
            .expect("payload");
    let mut tx = app.db.begin().await.expect("begin");
    outbox::enqueue_many(&mut tx, &[payload.0.clone(), payload.0])
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let topology = test_topology(&[200]);
    let worker = RunningWorker::groups(&app.db, &topology, &["schedules"], 4, &[]);
    eventually(
        Duration::from_secs(20),
        "all four schedule.due messages handled",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM inbox WHERE consumer_group = 'schedules'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap_or(0)
                == 4
        },
    )
    .await;
    for template in &templates {
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM tasks WHERE template_id = $1",
                *template
            )
            .await,
            1,
            "one occurrence, open store only"
        );
        let (store, due_minutes): (Uuid, f64) = sqlx::query_as(
            "SELECT store_id, EXTRACT(EPOCH FROM due_at - occurrence_at)::float8 / 60 FROM tasks WHERE template_id = $1",
        )
        .bind(template)
        .fetch_one(&app.db)
        .await
        .expect("task");
        assert_eq!(store, open_store.id.0);
        assert_eq!(due_minutes, 90.0);
        let local: String = sqlx::query_scalar(
            "SELECT to_char(occurrence_at AT TIME ZONE 'Europe/Moscow', 'HH24:MI') FROM tasks WHERE template_id = $1",
        )
        .bind(template)
        .fetch_one(&app.db)
        .await
        .expect("local");
        assert_eq!(local, at, "in the store's local time");
    }
    worker.shutdown().await;
    teardown(&topology, &["schedules"]).await;
}
