//! Every routing key the code can emit is deliverable: it reaches the queue of each
//! consumer group that subscribes to it, or, when none does (`task.updated`), the bounded
//! unrouted queue. The broker returns nothing, so the outbox drains to zero instead of
//! retrying events nobody needs (which a backlog alert would page on).

use std::time::Duration;

use crate::common::{
    self, RunningWorker, amqp_url, broker_channel, eventually, queue_depth, teardown,
    test_topology, url_for_database,
};
use storeops::events::topology::topic_matches;

#[tokio::test]
async fn every_emitted_routing_key_is_delivered_or_parked_and_the_outbox_drains() {
    common::init_logs();
    let (database, db) = common::fresh_database().await;
    let topology = test_topology(&[200]);
    let env: std::collections::HashMap<&str, String> = [
        (
            "DATABASE_URL",
            url_for_database(&common::database_url(), &database),
        ),
        ("AMQP_URL", std::env::var("AMQP_URL").expect("AMQP_URL")),
    ]
    .into();
    let config = storeops::config::Config::from_lookup(|k| env.get(k).cloned()).expect("config");
    // The production registry: every group's queue and bindings are declared, but this
    // worker consumes only the webhook senders' group, so the others' messages stay put.
    let registry = storeops::roles::worker::registry(&config, &db)
        .expect("registry")
        .select(&["webhook-deliveries".to_owned()])
        .expect("select");
    let groups: Vec<(&'static str, Vec<String>)> = registry
        .all_groups()
        .map(|g| (g.name, g.routing_keys()))
        .collect();
    let keys = storeops::roles::worker::emitted_routing_keys();
    let unsubscribed: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|key| {
            !groups
                .iter()
                .any(|(_, patterns)| patterns.iter().any(|p| topic_matches(p, key)))
        })
        .collect();
    assert!(
        unsubscribed.contains(&"task.updated"),
        "nobody consumes task.updated today: {unsubscribed:?}"
    );

    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry, true, 2);
    worker.wait_connected().await;
    let mut tx = db.begin().await.expect("begin");
    for key in &keys {
        common::enqueue_raw(&mut tx, key, &serde_json::json!({})).await;
    }
    tx.commit().await.expect("commit");

    eventually(Duration::from_secs(20), "outbox drained", || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL OR returned_at IS NOT NULL",
        )
        .fetch_one(&db)
        .await
        .expect("count");
        pending == 0
    })
    .await;
    let attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM outbox")
        .fetch_one(&db)
        .await
        .expect("attempts");
    assert_eq!(
        attempts, 1,
        "every event was published on its first attempt"
    );

    let (connection, _) = broker_channel().await;
    assert_eq!(
        queue_depth(&connection, &topology.unrouted()).await as usize,
        unsubscribed.len(),
        "each event nobody subscribes to is parked once: {unsubscribed:?}"
    );
    for (group, patterns) in &groups {
        if *group == "webhook-deliveries" {
            continue;
        }
        let expected = keys
            .iter()
            .filter(|key| patterns.iter().any(|p| topic_matches(p, key)))
            .count();
        assert_eq!(
            queue_depth(&connection, &topology.queue(group)).await as usize,
            expected,
            "group {group} holds one message per key it subscribes to"
        );
    }
    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    let names: Vec<&str> = groups.iter().map(|(name, _)| *name).collect();
    teardown(&topology, &names).await;
}

#[tokio::test]
async fn an_events_exchange_without_an_alternate_is_replaced() {
    common::init_logs();
    let (_, db) = common::fresh_database().await;
    let topology = test_topology(&[200]);
    // As an older version declared it: no alternate exchange.
    let (connection, channel) = broker_channel().await;
    channel
        .exchange_declare(
            topology.events_exchange().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("old exchange");
    let _ = connection.close(200, "done".into()).await;

    let mut registry = storeops::events::consumer::Registry::default();
    registry.subscribe_raw("audit", "test.#", std::sync::Arc::new(Nothing));
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry, true, 1);
    worker.wait_connected().await;
    let mut tx = db.begin().await.expect("begin");
    common::enqueue_raw(&mut tx, "nobody.listens", &serde_json::json!({})).await;
    tx.commit().await.expect("commit");
    let (connection, _) = broker_channel().await;
    eventually(Duration::from_secs(20), "parked as unrouted", || async {
        queue_depth(&connection, &topology.unrouted()).await == 1
    })
    .await;
    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}

struct Nothing;

impl storeops::events::consumer::Handler for Nothing {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut sqlx::Transaction<'static, sqlx::Postgres>,
        _message: &'a storeops::events::consumer::Message,
    ) -> futures_util::future::BoxFuture<'a, Result<(), storeops::events::consumer::HandlerError>>
    {
        Box::pin(async { Ok(()) })
    }
}
