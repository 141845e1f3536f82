//! The real binary as a process: readiness, configuration errors and graceful shutdown
//! exactly as PRODUCT §6 describes.

use crate::common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{Process, client, token, url_for_database};
use storeops::auth::Role;

#[tokio::test]
async fn sigterm_turns_readiness_off_at_once_finishes_in_flight_and_exits_zero() {
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 5, 0).await.expect("seed");
    let mut api = Process::start(
        &["api"],
        &[
            (
                "DATABASE_URL",
                url_for_database(&common::database_url(), &database),
            ),
            ("SHUTDOWN_DRAIN_SECONDS", "1".to_owned()),
            ("SHUTDOWN_GRACE_SECONDS", "20".to_owned()),
        ],
    );
    let client = client();
    let ready = api.wait_ready(&client, 200).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    let livez = client
        .get(format!("{}/livez", api.admin))
        .send()
        .await
        .expect("livez");
    assert_eq!(livez.status(), 200);

    // Make a real request slow: it waits on a lock this test holds.
    let mut blocker = db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE stores IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let in_flight = {
        let client = client.clone();
        let url = format!("{}/api/v1/stores", api.http);
        let hq = token(Role::Hq, None, None);
        tokio::spawn(async move { client.get(url).bearer_auth(hq).send().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be running"
    );

    api.signal("TERM");
    let signalled = Instant::now();
    let report = api.wait_ready(&client, 503).await;
    assert!(
        signalled.elapsed() < Duration::from_millis(900),
        "readyz took {:?}",
        signalled.elapsed()
    );
    assert_eq!(report["checks"][0]["name"], "shutdown", "{report}");

    // Past the drain the server stops accepting, but the in-flight request survives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        api.child.try_wait().expect("try_wait").is_none(),
        "exited with a request in flight"
    );
    blocker.rollback().await.expect("release the lock");
    let response = in_flight
        .await
        .expect("join")
        .expect("in-flight request completed");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(5));

    let status = api.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test]
async fn api_is_not_ready_on_an_unmigrated_schema() {
    let pool = common::empty_database().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .expect("name");
    let mut api = Process::start(
        &["api"],
        &[(
            "DATABASE_URL",
            url_for_database(&common::database_url(), &database),
        )],
    );
    let client = client();
    let report = api.wait_ready(&client, 503).await;
    let schema = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "schema")
        .cloned()
        .expect("a schema check");
    assert_eq!(schema["ok"], false, "{report}");
    assert!(
        schema["error"]
            .as_str()
            .unwrap_or_default()
            .contains("migrate"),
        "{report}"
    );
    api.signal("INT");
    assert_eq!(api.wait_exit(Duration::from_secs(15)).await.code(), Some(0));
}

#[tokio::test]
async fn worker_readiness_follows_the_broker_and_shutdown_is_clean() {
    let amqp = std::env::var("AMQP_URL").expect("AMQP_URL (run via make test)");
    let (database, _db) = common::fresh_database().await;
    let database_url = url_for_database(&common::database_url(), &database);
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut worker = Process::start(
        &["worker"],
        &[
            ("AMQP_URL", amqp),
            ("DATABASE_URL", database_url.clone()),
            ("AMQP_TOPOLOGY_PREFIX", prefix.clone()),
        ],
    );
    let client = client();
    let report = worker.wait_ready(&client, 200).await;
    assert_eq!(report["checks"][0]["name"], "broker", "{report}");
    worker.signal("TERM");
    assert_eq!(
        worker.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );

    // Nothing listens on port 1: readiness says which check fails, liveness stays up.
    let mut orphan = Process::start(
        &["worker"],
        &[
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
            ("DATABASE_URL", database_url),
            ("AMQP_TOPOLOGY_PREFIX", prefix.clone()),
        ],
    );
    let report = orphan.wait_ready(&client, 503).await;
    assert_eq!(report["checks"][0]["name"], "broker");
    assert_eq!(report["checks"][0]["ok"], false);
    let livez = client
        .get(format!("{}/livez", orphan.admin))
        .send()
        .await
        .expect("livez");
    assert_eq!(livez.status(), 200);
    orphan.signal("TERM");
    assert_eq!(
        orphan.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let topology = storeops::events::topology::Topology {
        prefix,
        retry_delays: [5, 30, 300].map(Duration::from_secs).to_vec(),
        delivery_limit: 20,
    };
    common::teardown(&topology, &["webhooks", "webhook-deliveries"]).await;
}

#[tokio::test]
async fn a_bad_variable_stops_start_up_naming_it_without_secrets() {
    let output = Command::new(env!("CARGO_BIN_EXE_storeops"))
        .arg("api")
        .env_clear()
        .env("DATABASE_URL", "mysql://app:hunter2@db/storeops")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_storeops"))
        .args(["token", "--role", "hq"])
        .env_clear()
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("AUTH_JWT_SECRET"));
}

#[tokio::test]
async fn traces_are_exported_over_otlp_without_ever_blocking_start_up() {
    let (endpoint, spans) = otlp_collector().await;
    let (database, _db) = common::fresh_database().await;
    let database_url = url_for_database(&common::database_url(), &database);
    let client = client();
    for (endpoint, expect_exports) in [(endpoint, true), ("http://127.0.0.1:1".to_owned(), false)] {
        let started = Instant::now();
        let mut api = Process::start(
            &["api"],
            &[
                ("DATABASE_URL", database_url.clone()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ],
        );
        api.wait_ready(&client, 200).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "start-up waited on {endpoint}"
        );
        let response = client
            .get(format!("{}/api/v1/regions", api.http))
            .bearer_auth(token(Role::Hq, None, None))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        if expect_exports {
            let deadline = Instant::now() + Duration::from_secs(15);
            while spans.lock().expect("lock").is_empty() {
                assert!(Instant::now() < deadline, "no trace reached the collector");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        api.signal("TERM");
        assert_eq!(
            api.wait_exit(Duration::from_secs(15)).await.code(),
            Some(0),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn sigterm_with_hundreds_of_messages_in_flight_loses_none_and_repeats_none() {
    use std::sync::{Arc, Mutex};
    // A slow loopback webhook receiver that records every delivery id it accepts.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let id = headers
                    .get("x-storeops-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().expect("lock").push(id);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let (database, db) = common::fresh_database().await;
    sqlx::query(
        "INSERT INTO webhooks (id, url, event_types, secret, created_by)
         VALUES ($1, $2, ARRAY['task.completed'], 'a-secret-of-16-chars-or-more', 'test')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&hook)
    .execute(&db)
    .await
    .expect("webhook");
    let mut tx = db.begin().await.expect("begin");
    // Payloads only the webhook fan-out reads: it passes them on unread.
    for i in 0..300 {
        common::enqueue_raw(
            &mut tx,
            "task.completed",
            &serde_json::json!({ "task_id": i }),
        )
        .await;
    }
    tx.commit().await.expect("commit");

    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("AMQP_URL", std::env::var("AMQP_URL").expect("AMQP_URL")),
        (
            "DATABASE_URL",
            url_for_database(&common::database_url(), &database),
        ),
        ("AMQP_TOPOLOGY_PREFIX", prefix.clone()),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("WORKER_RETRY_DELAYS_MS", "500".to_owned()),
        ("SHUTDOWN_GRACE_SECONDS", "25".to_owned()),
    ];
    let mut first = Process::start(&["worker", "--concurrency", "16"], &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().expect("lock").len() < 60 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.signal("TERM");
    assert_eq!(
        first.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let after_first = received.lock().expect("lock").len();
    assert!(
        after_first < 300,
        "the stop should come mid-stream ({after_first})"
    );

    let mut second = Process::start(&["worker", "--concurrency", "16"], &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'",
        )
        .fetch_one(&db)
        .await
        .expect("count");
        if delivered == 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {delivered} of 300 delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = received.lock().expect("lock").clone();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        300,
        "every delivery exactly once across the restart"
    );
    assert_eq!(unique.len(), 300);
    second.signal("TERM");
    assert_eq!(
        second.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let topology = storeops::events::topology::Topology {
        prefix,
        retry_delays: vec![Duration::from_millis(500)],
        delivery_limit: 20,
    };
    common::teardown(&topology, &["campaigns", "webhooks", "webhook-deliveries"]).await;
}

/// What on-call sets during an incident must not change the traces: under each log
/// filter, a task created over HTTP reaches a real OTLP/HTTP collector as one trace,
/// SERVER → PRODUCER (`publish task.created`) → CONSUMER (`consume task.created`).
#[tokio::test]
async fn a_task_created_over_http_is_one_trace_whatever_the_log_filter() {
    use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};

    let (endpoint, spans) = otlp_collector().await;
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 1, 0).await.expect("seed");
    let store: uuid::Uuid = sqlx::query_scalar("SELECT id FROM stores LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("store");
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let client = client();
    let hq = token(Role::Hq, None, None);
    for filter in ["info", "info,tower_http=debug", "info,storeops=debug"] {
        let mut all = Process::start_logging_to(
            &["all"],
            &[
                (
                    "DATABASE_URL",
                    url_for_database(&common::database_url(), &database),
                ),
                ("AMQP_URL", std::env::var("AMQP_URL").expect("AMQP_URL")),
                ("AMQP_TOPOLOGY_PREFIX", prefix.clone()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
                ("RUST_LOG", filter.to_owned()),
            ],
            std::process::Stdio::null(),
        );
        all.wait_ready(&client, 200).await;
        let created: serde_json::Value = client
            .post(format!("{}/api/v1/stores/{store}/tasks", all.http))
            .bearer_auth(&hq)
            .json(&serde_json::json!({"title": format!("Traced under {filter}")}))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("created");
        assert!(created["id"].is_string(), "{created}");

        // The three spans of this request's trace, once all have arrived.
        let find = |spans: &[Span], kind: SpanKind, name: &str, trace: Option<&[u8]>| {
            spans
                .iter()
                .find(|s| {
                    s.kind == kind as i32 && s.name == name && trace.is_none_or(|t| s.trace_id == t)
                })
                .cloned()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let (server, producer, consumer) = loop {
            let spans = spans.lock().expect("lock").clone();
            // Each run's request is its own trace: the latest server span is this one.
            let server = spans
                .iter()
                .rev()
                .find(|s| {
                    s.kind == SpanKind::Server as i32
                        && s.name == "POST /api/v1/stores/{store_id}/tasks"
                })
                .cloned();
            if let Some(server) = server {
                let trace = Some(server.trace_id.as_slice());
                let producer = find(&spans, SpanKind::Producer, "publish task.created", trace);
                let consumer = find(&spans, SpanKind::Consumer, "consume task.created", trace);
                if let (Some(producer), Some(consumer)) = (producer, consumer) {
                    break (server, producer, consumer);
                }
            }
            if Instant::now() > deadline {
                let seen: Vec<_> = spans
                    .iter()
                    .map(|s| {
                        (
                            s.name.clone(),
                            s.kind,
                            hex(&s.trace_id),
                            hex(&s.parent_span_id),
                        )
                    })
                    .collect();
                panic!(
                    "under RUST_LOG={filter}, no SERVER → PRODUCER → CONSUMER trace in {seen:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(producer.parent_span_id, server.span_id, "RUST_LOG={filter}");
        assert_eq!(
            consumer.parent_span_id, producer.span_id,
            "RUST_LOG={filter}"
        );
        spans.lock().expect("lock").clear();
        all.signal("TERM");
        assert_eq!(all.wait_exit(Duration::from_secs(20)).await.code(), Some(0));
    }
    let config = storeops::config::Config::from_lookup(|name| {
        (name == "AMQP_TOPOLOGY_PREFIX").then(|| prefix.clone())
    })
    .expect("config");
    common::teardown(&storeops::roles::worker::topology(&config), &[]).await;
}

/// A loopback OTLP/HTTP collector: its endpoint, and every span it has received.
async fn otlp_collector() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let spans = std::sync::Arc::<std::sync::Mutex<Vec<_>>>::default();
    let received = spans.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST;
                };
                let mut received = received.lock().expect("lock");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        received.extend(scope.spans);
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, collector).await });
    (endpoint, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
