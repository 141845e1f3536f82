//! One trace from producer to consumer: the W3C `traceparent` of the span that wrote
//! the outbox row travels through RabbitMQ, and the handler runs in the same trace:
//! HTTP request (SERVER) → publish (PRODUCER) → consume (CONSUMER).
//! (Its own test binary: it installs a global OpenTelemetry-backed subscriber.)

#[path = "it/common/mod.rs"]
mod common;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use common::{RunningWorker, amqp_url, eventually, teardown, test_topology};
use futures_util::future::BoxFuture;
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use sqlx::{Postgres, Transaction};
use storeops::events::{
    consumer::{Handler, HandlerError, Message, Registry},
    outbox,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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

/// Every finished span, as an exporter would send them.
#[derive(Debug, Clone, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().expect("lock").extend(batch);
        std::future::ready(Ok(()))
    }
}

/// The process-wide subscriber both tests share: the one `storeops` itself installs
/// (`telemetry::subscriber`), its spans exported here. (That the log filter changes no
/// span is the lifecycle test's, against the binary and a real OTLP endpoint.)
fn tracing_installed() -> &'static (SdkTracerProvider, Collected) {
    static INSTALLED: OnceLock<(SdkTracerProvider, Collected)> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let collected = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(collected.clone())
            .build();
        let (subscriber, trace_ids) = storeops::telemetry::subscriber(
            storeops::config::LogFormat::Pretty,
            "warn",
            Some(&provider),
        );
        tracing::subscriber::set_global_default(subscriber).expect("subscriber");
        trace_ids.attach();
        (provider, collected)
    })
}

#[tokio::test]
async fn the_consumer_continues_the_producers_trace() {
    tracing_installed();
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

#[tokio::test]
async fn an_http_request_its_publish_and_its_consume_are_one_trace() {
    let (provider, collected) = tracing_installed();
    let app = common::TestApp::spawn(1).await;
    let store = app.stores().await[0].id;
    let topology = test_topology(&[100]);
    let capture = TraceCapture::default();
    let mut registry = Registry::default();
    registry.subscribe_raw("audit", "task.created", Arc::new(capture.clone()));
    let worker = RunningWorker::spawn(&app.db, amqp_url(), &topology, registry, true, 2);
    worker.wait_connected().await;

    let hq = common::token(storeops::auth::Role::Hq, None, None);
    let created = app
        .client
        .post(app.url(&format!("/api/v1/stores/{store}/tasks")))
        .bearer_auth(&hq)
        .json(&serde_json::json!({"title": "Check the cold room"}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    eventually(Duration::from_secs(10), "task.created consumed", || async {
        !capture.0.lock().expect("lock").is_empty()
    })
    .await;
    worker.shutdown().await;
    provider.force_flush().expect("flush");

    let spans = collected.0.lock().expect("lock").clone();
    let find = |kind: SpanKind, name: &str| {
        spans
            .iter()
            .rev()
            .find(|s| s.span_kind == kind && s.name == name)
            .unwrap_or_else(|| {
                let seen: Vec<_> = spans.iter().map(|s| (&s.name, &s.span_kind)).collect();
                panic!("no {kind:?} span {name:?} among {seen:?}")
            })
            .clone()
    };
    let server = find(SpanKind::Server, "POST /api/v1/stores/{store_id}/tasks");
    let producer = find(SpanKind::Producer, "publish task.created");
    let consumer = find(SpanKind::Consumer, "consume task.created");
    let trace = server.span_context.trace_id();
    assert_eq!(
        producer.span_context.trace_id(),
        trace,
        "publish in the request's trace"
    );
    assert_eq!(producer.parent_span_id, server.span_context.span_id());
    assert_eq!(
        consumer.span_context.trace_id(),
        trace,
        "consume in the request's trace"
    );
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert_eq!(capture.0.lock().expect("lock")[0], trace);
    teardown(&topology, &["audit"]).await;
}
