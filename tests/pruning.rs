//! Pruning removes exactly what retention says, in batches, keeps daily statistics of
//! the pruned tasks, drops whole audit-trail partitions, and a dry run only counts.

mod common;

use std::time::Duration;

use storeops::maintenance::{Pruner, Retention};

async fn scalar(db: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test]
async fn pruning_removes_exactly_what_retention_says_and_keeps_statistics() {
    let (_, db) = common::fresh_database().await;
    storeops::stores::seed::seed_chain(&db, 3, 0)
        .await
        .expect("seed");
    let setup = [
        // 40 closed tasks 500 days old: 20 done on time, 10 done late, 5 expired, 5 cancelled.
        "INSERT INTO tasks (id, store_id, kind, source, title, status, due_at, created_at, updated_at, completed_at, created_by)
         SELECT gen_random_uuid(), (SELECT id FROM stores ORDER BY code LIMIT 1), 'adhoc', 'manual', 'old ' || g,
                CASE WHEN g <= 30 THEN 'done' WHEN g <= 35 THEN 'expired' ELSE 'cancelled' END,
                now() - interval '500 days', now() - interval '500 days 2 hours', now() - interval '500 days',
                CASE WHEN g <= 20 THEN now() - interval '500 days 1 hour'
                     WHEN g <= 30 THEN now() - interval '499 days' END,
                'test'
           FROM generate_series(1, 40) g",
        // An old task still open, and recent closed ones: kept.
        "INSERT INTO tasks (id, store_id, kind, source, title, status, due_at, updated_at, created_by)
         SELECT gen_random_uuid(), (SELECT id FROM stores ORDER BY code LIMIT 1), 'adhoc', 'manual', 'open',
                'open', now() - interval '500 days', now() - interval '500 days', 'test'",
        "INSERT INTO tasks (id, store_id, kind, source, title, status, due_at, completed_at, created_by)
         SELECT gen_random_uuid(), (SELECT id FROM stores ORDER BY code LIMIT 1), 'adhoc', 'manual', 'recent',
                'done', now(), now(), 'test' FROM generate_series(1, 10)",
        // Relabel items of two old done tasks (go with them) and of the open one (stays).
        "INSERT INTO task_items (task_id, sku, store_id, ingest_id, name, new_price, currency, state)
         SELECT t.id, 'SKU-' || t.title, t.store_id, gen_random_uuid(), 'item', 1, 'EUR', 'closed'
           FROM tasks t WHERE t.title IN ('old 1', 'old 2', 'open')",
        // Outbox: 100 published two days ago (go), 10 just published and 5 never published (stay).
        "INSERT INTO outbox (id, routing_key, payload, created_at, published_at)
         SELECT gen_random_uuid(), 'test.old', '{}', now() - interval '2 days', now() - interval '2 days' FROM generate_series(1, 100)",
        "INSERT INTO outbox (id, routing_key, payload, published_at) SELECT gen_random_uuid(), 'test.new', '{}', now() FROM generate_series(1, 10)",
        "INSERT INTO outbox (id, routing_key, payload, created_at) SELECT gen_random_uuid(), 'test.pending', '{}', now() - interval '3 days' FROM generate_series(1, 5)",
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
        // Audit events 20 months ago, in a partition that goes whole.
        "SELECT task_events_ensure_partitions((now() - interval '20 months')::date, (now() - interval '20 months')::date)",
        "INSERT INTO task_events (id, task_id, store_id, occurred_at, kind, actor)
         SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), date_trunc('month', now() - interval '20 months') + interval '1 day', 'created', 'test'
           FROM generate_series(1, 7)",
    ];
    for sql in setup {
        sqlx::query(sql).execute(&db).await.expect(sql);
    }
    let pruner = Pruner {
        db: db.clone(),
        retention: Retention {
            tasks: Duration::from_secs(400 * 86_400),
            task_events: Duration::from_secs(400 * 86_400),
            outbox: Duration::from_secs(24 * 3600),
            inbox: Duration::from_secs(7 * 86_400),
            idempotency_keys: Duration::from_secs(48 * 3600),
            webhook_deliveries: Duration::from_secs(30 * 86_400),
            ingests: Duration::from_secs(30 * 86_400),
            batch_size: 7,
            pause: Duration::from_millis(1),
            duty_percent: 20,
        },
    };
    let expected = vec![
        ("tasks", 40),
        ("outbox", 100),
        ("inbox", 50),
        ("idempotency_keys", 0),
        ("webhook_deliveries", 0),
        ("ingests", 6),
        ("task_events", 7),
    ];
    let dry = pruner.run_once(true).await.expect("dry run");
    assert_eq!(dry.rows, expected);
    assert_eq!(dry.dropped_partitions.len(), 1);
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
    assert_eq!(scalar(&db, "SELECT count(*) FROM outbox").await, 15);
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
    let partition: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&report.dropped_partitions[0])
        .fetch_one(&db)
        .await
        .expect("regclass");
    assert!(partition.is_none(), "the old partition was dropped whole");

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
