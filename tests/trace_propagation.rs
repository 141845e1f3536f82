//! One trace from producer to consumer: the W3C `traceparent` of the span that wrote
//! the outbox row travels through RabbitMQ, and the handler runs in the same trace.
//! (Its own test binary: it installs a global OpenTelemetry-backed subscriber.)

#[path = "it/common/mod.rs"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{RunningWorker, amqp_url, eventually, teardown, test_topology};
use futures_util::future::BoxFuture;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use sqlx::{Postgres, Transaction};
use storeops::events::{
    consumer::{Handler, HandlerError, Message, Registry},
    outbox,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct TraceCapture(Arc<Mutex<Vec<TraceId>>>);

impl Handler for TraceCapture {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut Transaction<'static, Postgres>,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let trace_id = tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id();
            self.0.lock().expect("lock").push(trace_id);
            Ok(())
        })
    }
}

#[tokio::test]
async fn the_consumer_continues_the_producers_trace() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let (_, db) = common::fresh_database().await;
    let topology = test_topology(&[100]);
    let capture = TraceCapture::default();
    let mut registry = Registry::default();
    registry.subscribe_raw("audit", "test.#", Arc::new(capture.clone()));
    let worker = RunningWorker::spawn(&db, amqp_url(), &topology, registry, true, 2);
    worker.wait_connected().await;

    let producer = tracing::info_span!("producer request");
    let trace_id = producer.context().span().span_context().trace_id();
    assert_ne!(trace_id, TraceId::INVALID);
    async {
        let mut tx = db.begin().await.expect("begin");
        outbox::enqueue(&mut tx, &common::Traced(serde_json::json!({})))
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
    .instrument(producer)
    .await;

    let traceparent: String = sqlx::query_scalar("SELECT headers->>'traceparent' FROM outbox")
        .fetch_one(&db)
        .await
        .expect("outbox headers");
    assert!(
        traceparent.contains(&trace_id.to_string()),
        "{traceparent} lacks {trace_id}"
    );
    eventually(Duration::from_secs(10), "the event is handled", || async {
        !capture.0.lock().expect("lock").is_empty()
    })
    .await;
    assert_eq!(capture.0.lock().expect("lock")[0], trace_id);

    worker.shutdown().await;
    teardown(&topology, &["audit"]).await;
}
