//! The event backbone against the real broker and database: outbox → relay → RabbitMQ →
//! consumer → inbox, with duplicates, retries, dead letters, replay and draining.

use crate::common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    RunningWorker, amqp_url, broker_channel, eventually, queue_depth, teardown, test_topology,
};
use futures_util::future::BoxFuture;
use lapin::{BasicProperties, options::BasicPublishOptions, options::ConfirmSelectOptions};
use sqlx::{PgPool, Postgres, Transaction};
use storeops::events::{
    consumer::{Handler, HandlerError, Message, Registry},
    dlq, outbox,
    relay::{Relay, RelayOptions},
};
use uuid::Uuid;

const NEVER_FAIL: u8 = 0;
const ALWAYS_RETRYABLE: u8 = 1;
const ALWAYS_PERMANENT: u8 = 2;

/// Records each applied message in `test_effects` (inside the handler's transaction)
/// and each attempt in memory (which survives rollbacks).
#[derive(Clone, Default)]
struct Recorder {
    mode: Arc<AtomicU8>,
    attempts: Arc<Mutex<Vec<(Uuid, u32, Instant)>>>,
    delay: Duration,
}

impl Handler for Recorder {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            self.attempts
                .lock()
                .expect("lock")
                .push((message.id, message.attempt, Instant::now()));
            sqlx::query("INSERT INTO test_effects (message_id, routing_key) VALUES ($1, $2)")
                .bind(message.id)
                .bind(&message.routing_key)
                .execute(&mut **tx)
                .await?;
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            match self.mode.load(Ordering::SeqCst) {
                ALWAYS_RETRYABLE => Err(HandlerError::Retryable("downstream unavailable".into())),
                ALWAYS_PERMANENT => Err(HandlerError::Permanent("never valid".into())),
                _ => Ok(()),
            }
        })
    }
}

async fn setup() -> PgPool {
    common::init_logs();
    let (_, db) = common::fresh_database().await;
    sqlx::query("CREATE TABLE test_effects (message_id uuid NOT NULL, routing_key text NOT NULL)")
        .execute(&db)
        .await
        .expect("effects table");
    db
}

fn registry(recorder: &Recorder) -> Registry {
    let mut registry = Registry::default();
    registry.subscribe_raw("audit", "test.#", Arc::new(recorder.clone()));
    registry
}

async fn effects(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_effects")
        .fetch_one(db)
        .await
        .expect("count")
}

async fn applied_twice(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM (SELECT message_id FROM test_effects GROUP BY 1 HAVING count(*) > 1) d")
        .fetch_one(db)
        .await
        .expect("count")
}

async fn enqueue_committed(db: &PgPool, n: usize) {
    let mut tx = db.begin().await.expect("begin");
    let payloads: Vec<serde_json::Value> = (0..n).map(|i| serde_json::json!({ "n": i })).collect();
    let events: Vec<common::Happened> = payloads.into_iter().map(common::Happened).collect();
    outbox::enqueue_many(&mut tx, &events)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn committed_events_arrive_and_rolled_back_ones_never_exist() {
    let db = setup().await;
    let topology = test_topology(&[100]);
    let recorder = Recorder::default();
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), true, 4);
    worker.wait_connected().await;

    let mut rolled_back = db.begin().await.expect("begin");
    outbox::enqueue(&mut rolled_back, &common::RolledBack(serde_json::json!({})))
        .await
        .expect("enqueue");
    rolled_back.rollback().await.expect("rollback");
    let mut committed = db.begin().await.expect("begin");
    let id = outbox::enqueue(
        &mut committed,
        &common::Committed(serde_json::json!({"x": 1})),
    )
    .await
    .expect("enqueue");
    committed.commit().await.expect("commit");

    eventually(
        Duration::from_secs(10),
        "the committed event is handled",
        || async { effects(&db).await == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT message_id, routing_key FROM test_effects")
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(rows, vec![(id, "test.committed".to_owned())]);
    let outbox_rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT routing_key, published_at IS NOT NULL FROM outbox")
            .fetch_all(&db)
            .await
            .expect("outbox");
    assert_eq!(outbox_rows, vec![("test.committed".to_owned(), true)]);

    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_mark_republishes_and_the_consumer_absorbs_it() {
    let db = setup().await;
    let topology = test_topology(&[100]);
    let recorder = Recorder::default();
    // Consumers only: this test drives the relay by hand.
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), false, 8);
    worker.wait_connected().await;
    enqueue_committed(&db, 40).await;

    let relay = Relay {
        db: db.clone(),
        topology: Arc::new(topology.clone()),
        options: RelayOptions {
            batch_size: 100,
            poll_interval: Duration::from_millis(100),
        },
    };
    let (connection, channel) = broker_channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    {
        // Claim and publish, then "die" before marking: the transaction rolls back.
        let mut tx = db.begin().await.expect("begin");
        let claimed = outbox::claim(&mut tx, 100).await.expect("claim");
        assert_eq!(claimed.len(), 40);
        let confirms = relay.publish(&channel, &claimed).await;
        assert!(
            confirms
                .iter()
                .all(|c| matches!(c, Ok(lapin::Confirmation::Ack(None))))
        );
    }
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&db)
        .await
        .expect("pending");
    assert_eq!(
        pending, 40,
        "nothing may be marked without the relay's commit"
    );

    // The next relay run publishes all 40 again and marks them.
    let outcome = relay.publish_batch(&channel).await.expect("relay");
    assert_eq!(outcome.published, 40);
    eventually(
        Duration::from_secs(15),
        "80 deliveries consumed",
        || async {
            queue_depth(&connection, &topology.queue("audit")).await == 0
                && sqlx::query_scalar::<_, i64>("SELECT count(*) FROM inbox")
                    .fetch_one(&db)
                    .await
                    .unwrap_or(0)
                    == 40
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects(&db).await, 40);
    assert_eq!(applied_twice(&db).await, 0);
    assert_eq!(
        recorder.attempts.lock().expect("lock").len(),
        40,
        "duplicates must not reach the handler"
    );

    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}

#[tokio::test]
async fn a_message_delivered_many_times_takes_effect_once() {
    let db = setup().await;
    let topology = test_topology(&[100]);
    let recorder = Recorder::default();
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), false, 8);
    worker.wait_connected().await;

    let (connection, channel) = broker_channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let id = Uuid::now_v7();
    for _ in 0..6 {
        channel
            .basic_publish(
                topology.events_exchange().into(),
                "test.repeated".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                br#"{"same":true}"#,
                BasicProperties::default().with_message_id(id.to_string().into()),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    eventually(
        Duration::from_secs(10),
        "all six deliveries settled",
        || async {
            queue_depth(&connection, &topology.queue("audit")).await == 0 && effects(&db).await == 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects(&db).await, 1);
    assert_eq!(
        queue_depth(&connection, &topology.dead_queue("audit")).await,
        0
    );

    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}

#[tokio::test]
async fn an_always_failing_handler_backs_off_then_dead_letters_and_replay_redrives_it() {
    let db = setup().await;
    let delays = [300u64, 700];
    let topology = test_topology(&delays);
    let recorder = Recorder::default();
    recorder.mode.store(ALWAYS_RETRYABLE, Ordering::SeqCst);
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), true, 2);
    worker.wait_connected().await;
    let mut tx = db.begin().await.expect("begin");
    let id = outbox::enqueue(&mut tx, &common::Flaky(serde_json::json!({"k": "v"})))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");

    let (connection, channel) = broker_channel().await;
    let dead = topology.dead_queue("audit");
    eventually(
        Duration::from_secs(20),
        "the message reaches .dead",
        || async { queue_depth(&connection, &dead).await == 1 },
    )
    .await;
    {
        let attempts = recorder.attempts.lock().expect("lock").clone();
        assert_eq!(
            attempts.len(),
            3,
            "first try plus one per delay step: {attempts:?}"
        );
        assert!(attempts.iter().all(|(m, _, _)| *m == id));
        assert_eq!(
            attempts.iter().map(|(_, a, _)| *a).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for (step, pair) in attempts.windows(2).enumerate() {
            let gap = pair[1].2 - pair[0].2;
            assert!(
                gap >= Duration::from_millis(delays[step]),
                "step {step} waited only {gap:?}"
            );
        }
    }
    assert_eq!(effects(&db).await, 0, "failed attempts roll back");
    let (total, listed) = dlq::list(&channel, &topology, "audit", 10)
        .await
        .expect("list");
    assert_eq!(total, 1);
    assert_eq!(listed[0].message_id, id.to_string());
    assert_eq!(listed[0].routing_key, "test.flaky");
    eventually(
        Duration::from_secs(5),
        "list put the message back",
        || async { queue_depth(&connection, &dead).await == 1 },
    )
    .await;

    // The downstream recovers; an operator replays the dead letter.
    recorder.mode.store(NEVER_FAIL, Ordering::SeqCst);
    let replay_channel = connection.create_channel().await.expect("channel");
    assert_eq!(
        dlq::replay(&replay_channel, &topology, "audit", 10)
            .await
            .expect("replay"),
        1
    );
    eventually(
        Duration::from_secs(10),
        "the replayed message is applied",
        || async { effects(&db).await == 1 },
    )
    .await;
    assert_eq!(queue_depth(&connection, &dead).await, 0);

    // A permanent failure skips the delays.
    recorder.mode.store(ALWAYS_PERMANENT, Ordering::SeqCst);
    let before = recorder.attempts.lock().expect("lock").len();
    let mut tx = db.begin().await.expect("begin");
    outbox::enqueue(&mut tx, &common::Invalid(serde_json::json!({})))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    eventually(
        Duration::from_secs(10),
        "permanent failure dead-lettered",
        || async { queue_depth(&connection, &dead).await == 1 },
    )
    .await;
    assert_eq!(recorder.attempts.lock().expect("lock").len(), before + 1);
    assert_eq!(
        dlq::purge(&channel, &topology, "audit")
            .await
            .expect("purge"),
        1
    );

    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}

#[tokio::test]
async fn stopping_with_hundreds_in_flight_loses_nothing_and_applies_nothing_twice() {
    let db = setup().await;
    let topology = test_topology(&[200]);
    let recorder = Recorder {
        delay: Duration::from_millis(20),
        ..Recorder::default()
    };
    let first = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), true, 16);
    first.wait_connected().await;
    enqueue_committed(&db, 400).await;
    eventually(Duration::from_secs(20), "work under way", || async {
        effects(&db).await >= 50
    })
    .await;
    // What SIGTERM does: cancel consumers, finish and ack what is in flight.
    first.shutdown().await;
    let after_first = effects(&db).await;
    assert!(
        after_first < 400,
        "the stop should have come mid-stream ({after_first})"
    );

    let second = RunningWorker::spawn(&db, amqp_url(), &topology, registry(&recorder), true, 16);
    eventually(Duration::from_secs(30), "all 400 applied", || async {
        effects(&db).await >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(effects(&db).await, 400);
    assert_eq!(applied_twice(&db).await, 0);
    second.shutdown().await;
    teardown(&topology, &["audit"]).await;
}
