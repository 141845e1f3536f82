//! Pruning removes exactly what retention says, in batches, keeps daily statistics of
//! the pruned tasks, drops whole audit-trail partitions, and a dry run only counts.

use crate::common;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use storeops::{
    config::Retention,
    ids::StoreId,
    maintenance::Pruner,
    tasks::{TaskItemState, TaskStatus, fixture::TaskFixture},
};

async fn scalar(db: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test]
async fn pruning_removes_exactly_what_retention_says_and_keeps_statistics() {
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 3, 0).await.expect("seed");
    let setup = [
        // Outbox, by UTC day of the id: a day three days ago wholly published (goes
        // whole: 100 rows); four days ago 20 published and 5 never (the day stays, its
        // published rows go in batches); five days ago one row published only now (the
        // day stays whole); today 10 just published (stay).
        "SELECT outbox_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 6, (now() AT TIME ZONE 'UTC')::date)",
        "INSERT INTO outbox (id, routing_key, payload, created_at, published_at)
         SELECT uuid_v7(now() - interval '3 days'), 'test.old', '{}', now() - interval '3 days', now() - interval '3 days'
           FROM generate_series(1, 100)",
        "INSERT INTO outbox (id, routing_key, payload, created_at, published_at)
         SELECT uuid_v7(now() - interval '4 days'), 'test.old', '{}', now() - interval '4 days', now() - interval '4 days'
           FROM generate_series(1, 20)",
        "INSERT INTO outbox (id, routing_key, payload, created_at)
         SELECT uuid_v7(now() - interval '4 days'), 'test.pending', '{}', now() - interval '4 days' FROM generate_series(1, 5)",
        "INSERT INTO outbox (id, routing_key, payload, created_at, published_at)
         VALUES (uuid_v7(now() - interval '5 days'), 'test.late', '{}', now() - interval '5 days', now())",
        "INSERT INTO outbox (id, routing_key, payload, published_at) SELECT uuid_v7(), 'test.new', '{}', now() FROM generate_series(1, 10)",
        // Six days ago, 3 published rows a crashed prune detached and did not drop.
        "INSERT INTO outbox (id, routing_key, payload, created_at, published_at)
         SELECT uuid_v7(now() - interval '6 days'), 'test.old', '{}', now() - interval '6 days', now() - interval '6 days'
           FROM generate_series(1, 3)",
        // Inbox: 50 ids ten days old (go), 5 recent (stay).
        "INSERT INTO inbox (consumer_group, message_id, processed_at) SELECT 'g', gen_random_uuid(), now() - interval '10 days' FROM generate_series(1, 50)",
        "INSERT INTO inbox (consumer_group, message_id) SELECT 'g', gen_random_uuid() FROM generate_series(1, 5)",
        // Ingests: 6 finished 40 days ago (go), one old but still processing and 2 recent (stay).
        "INSERT INTO ingests (id, source, external_id, body_sha256, received_by, raw, item_count, status, received_at)
         SELECT gen_random_uuid(), 'stock_alert', 'old-' || g, 'h', 'test', '{}', 1,
                CASE WHEN g = 7 THEN 'processing' WHEN g % 2 = 0 THEN 'done' ELSE 'failed' END,
                now() - interval '40 days'
           FROM generate_series(1, 7) g",
        "INSERT INTO ingests (id, source, external_id, body_sha256, received_by, raw, item_count, status)
         SELECT gen_random_uuid(), 'stock_alert', 'new-' || g, 'h', 'test', '{}', 1, 'done' FROM generate_series(1, 2) g",
    ];
    for sql in setup {
        sqlx::query(sql).execute(&db).await.expect(sql);
    }
    let store: StoreId = sqlx::query_scalar("SELECT id FROM stores ORDER BY code LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("store");
    let now = Utc::now();
    let days = |n: i64| ChronoDuration::days(n);
    // 40 closed tasks 500 days old: 20 done on time, 10 done late, 5 expired, 5 cancelled.
    let mut old = Vec::new();
    for g in 1..=40 {
        let status = match g {
            1..=30 => TaskStatus::Done,
            31..=35 => TaskStatus::Expired,
            _ => TaskStatus::Cancelled,
        };
        let completed = match g {
            1..=20 => Some(now - days(500) - ChronoDuration::hours(1)),
            21..=30 => Some(now - days(499)),
            _ => None,
        };
        let id = TaskFixture::new(store, format!("old {g}"))
            .status(status)
            .due_at(now - days(500))
            .created_at(now - days(500) - ChronoDuration::hours(2))
            .updated_at(now - days(500))
            .completed_at(completed)
            .insert(&db)
            .await
            .expect("old task");
        old.push(id);
    }
    // An old task still open, and recent closed ones: kept.
    let open = TaskFixture::new(store, "open")
        .due_at(now - days(500))
        .updated_at(now - days(500))
        .insert(&db)
        .await
        .expect("open task");
    for _ in 0..10 {
        TaskFixture::new(store, "recent")
            .status(TaskStatus::Done)
            .due_at(now)
            .completed_at(Some(now))
            .insert(&db)
            .await
            .expect("recent task");
    }
    // Relabel items of two old done tasks (go with them) and of the open one (stays).
    for (task, sku) in [
        (old[0], "SKU-old 1"),
        (old[1], "SKU-old 2"),
        (open, "SKU-open"),
    ] {
        TaskFixture::insert_item(&db, task, sku, TaskItemState::Closed)
            .await
            .expect("item");
    }
    // Audit events 20 months ago, in a partition that goes whole.
    storeops::tasks::fixture::audit_events(&db, now - ChronoDuration::days(20 * 31), 7)
        .await
        .expect("old audit events");
    let outbox_day = |days_ago: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days_ago))
            .format("outbox_%Y_%m_%d")
            .to_string()
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE outbox DETACH PARTITION {}",
        outbox_day(6)
    )))
    .execute(&db)
    .await
    .expect("detach");
    let pruner = Pruner {
        db: db.clone(),
        retention: Retention {
            tasks: Duration::from_secs(400 * 86_400),
            task_events: Duration::from_secs(400 * 86_400),
            outbox: Duration::from_secs(24 * 3600),
            inbox: Duration::from_secs(7 * 86_400),
            idempotency_keys: Duration::from_secs(48 * 3600),
            task_changes: Duration::from_secs(72 * 3600),
            webhook_deliveries: Duration::from_secs(30 * 86_400),
            ingests: Duration::from_secs(30 * 86_400),
            batch_size: 7,
            pause: Duration::from_millis(1),
            duty_percent: 20,
        },
        evidence: storeops::evidence::Evidence::new(&common::evidence_config(&database))
            .expect("evidence"),
    };
    let expected = vec![
        ("tasks", 40),
        ("outbox", 120),
        ("inbox", 50),
        ("idempotency_keys", 0),
        ("webhook_deliveries", 0),
        ("ingests", 6),
        ("evidence", 0),
        ("evidence_objects", 0),
        ("task_changes", 0),
        ("task_events", 7),
    ];
    let dry = pruner.run_once(true).await.expect("dry run");
    assert_eq!(dry.rows, expected);
    let old_events = dry.dropped_partitions.last().cloned().unwrap_or_default();
    assert!(old_events.starts_with("task_events_"), "{old_events}");
    // Two days ago is empty, and goes too; yesterday has not ended a day ago.
    assert_eq!(
        dry.dropped_partitions,
        [outbox_day(3), outbox_day(2), old_events.clone()]
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM tasks").await,
        51,
        "a dry run deletes nothing"
    );

    let report = pruner.run_once(false).await.expect("prune");
    assert_eq!(report.rows, expected);
    assert_eq!(scalar(&db, "SELECT count(*) FROM tasks").await, 11);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM tasks WHERE title = 'open'").await,
        1
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM task_items WHERE sku = 'SKU-open'"
        )
        .await,
        1,
        "items go with their task, and only with it"
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM task_items").await, 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM outbox").await, 16);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM outbox WHERE published_at IS NULL OR published_at > now() - interval '1 hour'").await,
        16,
        "the unpublished, the late and the new rows stay"
    );
    assert_eq!(
        report.dropped_partitions,
        [outbox_day(6), outbox_day(3), outbox_day(2), old_events],
        "the day a crashed run left detached, the published and the empty day, the old audit month"
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM inbox").await, 5);
    assert_eq!(scalar(&db, "SELECT count(*) FROM ingests").await, 3);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM task_events WHERE occurred_at < now() - interval '19 months'"
        )
        .await,
        0
    );
    for dropped in &report.dropped_partitions {
        let partition: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(dropped)
            .fetch_one(&db)
            .await
            .expect("regclass");
        assert!(partition.is_none(), "{dropped} was dropped whole");
    }
    for kept in [outbox_day(5), outbox_day(4), outbox_day(1), outbox_day(0)] {
        let partition: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&kept)
            .fetch_one(&db)
            .await
            .expect("regclass");
        assert!(partition.is_some(), "{kept} holds rows to keep");
    }

    let stats: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT sum(tasks), sum(done), sum(done_on_time), sum(expired), sum(cancelled)
           FROM daily_store_stats WHERE day < current_date - 400",
    )
    .fetch_one(&db)
    .await
    .expect("stats");
    assert_eq!(
        stats,
        (41, 30, 20, 5, 5),
        "statistics of the pruned days, written first (the open task counts too)"
    );

    let again = pruner.run_once(false).await.expect("prune again");
    assert!(again.rows.iter().all(|(_, n)| *n == 0), "{:?}", again.rows);
    assert!(report.longest_statement > Duration::ZERO);
}

#[tokio::test]
async fn partition_upkeep_makes_outbox_days_ahead_and_events_land_in_them() {
    let (_, db) = common::fresh_database().await;
    // The migration made two weeks; a missing day ahead is made again, once.
    let in_ten_days = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("outbox_%Y_%m_%d")
        .to_string();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {in_ten_days}")))
        .execute(&db)
        .await
        .expect("drop a day ahead");
    let made = storeops::maintenance::ensure_partitions_ahead(&db)
        .await
        .expect("upkeep");
    assert_eq!(made, (0, 1));
    assert_eq!(
        storeops::maintenance::ensure_partitions_ahead(&db)
            .await
            .expect("upkeep again"),
        (0, 0)
    );
    // The application's ids are UUIDv7: each event lands in today's partition.
    let mut conn = db.acquire().await.expect("conn");
    let id = storeops::events::outbox::enqueue(&mut conn, &common::Upkeep(serde_json::json!({})))
        .await
        .expect("enqueue");
    let (partition, day_of_id): (String, String) = sqlx::query_as(
        "SELECT tableoid::regclass::text, uuid_v7_day(id)::text FROM outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .expect("partition");
    assert_eq!(
        partition,
        chrono::Utc::now().format("outbox_%Y_%m_%d").to_string()
    );
    assert_eq!(day_of_id, chrono::Utc::now().format("%Y-%m-%d").to_string());
}
