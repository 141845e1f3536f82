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
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    // A loopback OTLP/HTTP collector that counts trace exports.
    let exports = Arc::new(AtomicUsize::new(0));
    let counter = exports.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                if !body.is_empty() {
                    counter.fetch_add(1, Ordering::SeqCst);
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
            while exports.load(Ordering::SeqCst) == 0 {
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
