//! Benchmark (not a timed test; `make bench` runs it in release mode with --ignored):
//! events through outbox → relay → RabbitMQ → worker → inbox on this machine, against
//! the raw broker (publish with confirms → consume → ack, no database) in the same run.
//! Writes target/bench/events.md for docs/PERFORMANCE.md.

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{RunningWorker, amqp_url, broker_channel, eventually, teardown, test_topology};
use futures_util::{StreamExt, future::BoxFuture};
use lapin::{
    BasicProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use sqlx::{PgPool, Postgres, Transaction};
use storeops::events::{
    consumer::{Handler, HandlerError, Message, Registry},
    outbox,
};

/// Applies nothing but the inbox row the runtime writes; records latency from the
/// producer's timestamp in the payload.
#[derive(Clone, Default)]
struct Sink {
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Handler for Sink {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if let Some(sent) = message.payload["sent_us"].as_i64() {
                let now = chrono::Utc::now().timestamp_micros();
                self.latencies
                    .lock()
                    .expect("lock")
                    .push(Duration::from_micros(
                        u64::try_from(now - sent).unwrap_or(0),
                    ));
            }
            Ok(())
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn inbox_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(db)
        .await
        .unwrap_or(0)
}

async fn enqueue_batch(db: &PgPool, n: usize) {
    let mut tx = db.begin().await.expect("begin");
    let now = chrono::Utc::now().timestamp_micros();
    let payloads: Vec<common::Benched> = (0..n)
        .map(|i| common::Benched(serde_json::json!({"sent_us": now, "i": i})))
        .collect();
    outbox::enqueue_many(&mut tx, &payloads)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
}

/// Raw broker: publish `n` persistent messages with confirms into a quorum queue while
/// a consumer acks them; events/s from first publish to last ack.
async fn raw_broker_rate(n: usize) -> f64 {
    let (connection, channel) = broker_channel().await;
    let queue = format!("bench-raw-{}", uuid::Uuid::new_v4().simple());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare");
    let consumer_channel = connection.create_channel().await.expect("channel");
    consumer_channel
        .basic_qos(256, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consumer_channel
        .basic_consume(
            queue.clone().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut seen = 0;
        while seen < n {
            let Some(Ok(delivery)) = consumer.next().await else {
                break;
            };
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            seen += 1;
        }
    });
    for chunk in 0..n / 500 {
        let mut confirms = Vec::new();
        for i in 0..500 {
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        queue.clone().into(),
                        BasicPublishOptions::default(),
                        format!(r#"{{"i":{}}}"#, chunk * 500 + i).as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .expect("publish"),
            );
        }
        for confirm in confirms {
            confirm.await.expect("confirm");
        }
    }
    tokio::time::timeout(Duration::from_secs(120), consume)
        .await
        .expect("raw consume finished")
        .expect("join");
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by `make bench`"]
async fn bench_outbox_to_inbox() {
    let (_, db) = common::fresh_database().await;
    let topology = test_topology(&[1000]);
    let sink = Sink::default();
    let mut registry = Registry::default();
    registry.subscribe_raw("bench", "bench.#", Arc::new(sink.clone()));
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry, true, 64);
    worker.wait_connected().await;

    // Throughput: a backlog of N events pushed as fast as producers can commit them.
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let started = Instant::now();
    for _ in 0..n / 1_000 {
        enqueue_batch(&db, 1_000).await;
    }
    let inserted = started.elapsed();
    eventually(Duration::from_secs(300), "every event handled", || async {
        inbox_count(&db).await >= n as i64
    })
    .await;
    let elapsed = started.elapsed();
    let throughput = n as f64 / elapsed.as_secs_f64();

    // Latency at a steady 1,000 events/s: 10 events every 10 ms for 10 s.
    sink.latencies.lock().expect("lock").clear();
    let steady = 10_000usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let steady_started = Instant::now();
    for _ in 0..steady / 10 {
        ticker.tick().await;
        enqueue_batch(&db, 10).await;
    }
    let offered = steady as f64 / steady_started.elapsed().as_secs_f64();
    eventually(
        Duration::from_secs(120),
        "steady events handled",
        || async { inbox_count(&db).await >= (n + steady) as i64 },
    )
    .await;
    let mut latencies = sink.latencies.lock().expect("lock").clone();
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );

    worker.shutdown().await;
    teardown(&topology, &["bench"]).await;
    let raw = raw_broker_rate(n).await;

    let report = format!(
        "### Events: outbox → RabbitMQ → worker → inbox\n\n\
         | measure | value |\n|---|---|\n\
         | throughput, {n} events (backlog inserted in {:.1} s, drained in {:.1} s) | **{throughput:.0} events/s** |\n\
         | raw broker in the same run (publish+confirm → consume+ack, no database) | {raw:.0} msgs/s |\n\
         | ratio pipeline / raw broker | {:.2} |\n\
         | latency at {offered:.0} events/s offered ({} events): p50 / p99 / max | {:.1} ms / {:.1} ms / {:.1} ms |\n\n\
         Worker: 1 relay (batches of 500), consumer concurrency 64, handler = inbox insert only.\n",
        inserted.as_secs_f64(),
        elapsed.as_secs_f64(),
        throughput / raw,
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
    );
    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(dir.join("events.md"), report).expect("write report");
}
