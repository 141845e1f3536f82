//! Webhooks through HTTP and the worker: management rules, SSRF refusal, signed
//! deliveries to a loopback receiver, retries and dead-lettering.

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use common::{
    RunningWorker, TestApp, assert_problem, broker_channel, eventually, queue_depth, teardown,
    test_topology, token,
};
use storeops::{auth::Role, webhooks::signature};

#[tokio::test]
async fn only_hq_manages_webhooks_and_private_targets_are_refused() {
    let app = TestApp::spawn(3).await;
    let store = &app.stores().await[0];
    let hq = token(Role::Hq, None, None);
    let url = app.url("/api/v1/webhooks");
    let body = serde_json::json!({"url": "https://hooks.example.com/in", "event_types": ["task.completed"]});
    for other in [
        token(Role::StoreManager, Some(store.id), None),
        token(Role::RegionalManager, None, Some(&store.region)),
        token(Role::Associate, Some(store.id), None),
    ] {
        assert_problem(
            app.client
                .post(&url)
                .bearer_auth(&other)
                .json(&body)
                .send()
                .await
                .expect("send"),
            403,
        )
        .await;
        assert_problem(app.get("/api/v1/webhooks", &other).await, 403).await;
    }

    for (bad, field) in [
        (
            serde_json::json!({"url": "http://127.0.0.1:9/x", "event_types": ["task.completed"]}),
            "url",
        ),
        (
            serde_json::json!({"url": "http://169.254.169.254/latest", "event_types": ["task.completed"]}),
            "url",
        ),
        (
            serde_json::json!({"url": "http://[::1]/x", "event_types": ["task.completed"]}),
            "url",
        ),
        (
            serde_json::json!({"url": "ftp://hooks.example.com", "event_types": ["task.completed"]}),
            "url",
        ),
        // Hosts in ASCII only, as documented (punycode for international names).
        (
            serde_json::json!({"url": "https://bücher.example/hook", "event_types": ["task.completed"]}),
            "url",
        ),
        (
            serde_json::json!({"url": "https://hooks.example.com", "event_types": ["task.exploded"]}),
            "event_types[0]",
        ),
        (
            serde_json::json!({"url": "https://hooks.example.com", "event_types": []}),
            "event_types",
        ),
        (
            serde_json::json!({"url": "https://hooks.example.com", "event_types": ["task.created"], "secret": "short"}),
            "secret",
        ),
    ] {
        let response = app
            .client
            .post(&url)
            .bearer_auth(&hq)
            .json(&bad)
            .send()
            .await
            .expect("send");
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{bad}: {problem}");
    }

    let created = app
        .client
        .post(&url)
        .bearer_auth(&hq)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    assert!(
        created["secret"].as_str().is_some_and(|s| s.len() >= 32),
        "{created}"
    );
    let listed: serde_json::Value = app
        .get("/api/v1/webhooks", &hq)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is shown only at creation"
    );

    let one = format!("{url}/{}", created["id"].as_str().expect("id"));
    assert_eq!(
        app.client
            .delete(&one)
            .bearer_auth(&hq)
            .send()
            .await
            .expect("send")
            .status(),
        204
    );
    assert_problem(
        app.client
            .delete(&one)
            .bearer_auth(&hq)
            .send()
            .await
            .expect("send"),
        404,
    )
    .await;
}

/// A loopback receiver that checks signatures and answers from a script of statuses.
#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    script: Arc<Mutex<Vec<StatusCode>>>,
    received: Arc<Mutex<Vec<(bool, serde_json::Value)>>>,
}

impl Receiver {
    async fn start(script: Vec<StatusCode>) -> (Self, String) {
        let receiver = Self {
            secret: Arc::default(),
            script: Arc::new(Mutex::new(script)),
            received: Arc::default(),
        };
        let state = receiver.clone();
        let router = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let header = headers
                        .get(signature::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let secret = state.secret.lock().expect("lock").clone();
                    let valid = signature::verify(
                        &secret,
                        &header,
                        &body,
                        chrono::Utc::now().timestamp(),
                        300,
                    );
                    let json = serde_json::from_slice(&body).unwrap_or_default();
                    state.received.lock().expect("lock").push((valid, json));
                    let mut script = state.script.lock().expect("lock");
                    if script.is_empty() {
                        StatusCode::NO_CONTENT
                    } else {
                        script.remove(0)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        (receiver, format!("http://{addr}/hook"))
    }
}

async fn setup_delivery(
    script: Vec<StatusCode>,
) -> (
    TestApp,
    Receiver,
    storeops::events::topology::Topology,
    RunningWorker,
) {
    common::init_logs();
    let app = TestApp::spawn_with(0, true).await;
    let (receiver, hook_url) = Receiver::start(script).await;
    let hq = token(Role::Hq, None, None);
    let created: serde_json::Value = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(&hq)
        .json(&serde_json::json!({"url": hook_url, "event_types": ["task.completed"], "description": "test"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    *receiver.secret.lock().expect("lock") = created["secret"].as_str().expect("secret").to_owned();

    let topology = test_topology(&[200, 400]);
    let worker = RunningWorker::groups(
        &app.db,
        &topology,
        &["webhooks", "webhook-deliveries"],
        4,
        &[("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")],
    );
    worker.wait_connected().await;

    let mut tx = app.db.begin().await.expect("begin");
    // Payloads the fan-out passes on unread.
    common::enqueue_raw(
        &mut tx,
        "task.completed",
        &serde_json::json!({"task_id": "t-1", "store": "S00001"}),
    )
    .await;
    // An event nobody subscribed to: fanned out to no delivery.
    common::enqueue_raw(
        &mut tx,
        "task.started",
        &serde_json::json!({"task_id": "t-1"}),
    )
    .await;
    tx.commit().await.expect("commit");
    (app, receiver, topology, worker)
}

#[tokio::test]
async fn signed_deliveries_are_retried_until_the_receiver_accepts() {
    let (app, receiver, topology, worker) = setup_delivery(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ])
    .await;
    eventually(
        Duration::from_secs(20),
        "the third attempt is accepted",
        || async { receiver.received.lock().expect("lock").len() >= 3 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received.lock().expect("lock").clone();
    assert_eq!(
        received.len(),
        3,
        "delivered once after two failures: {received:?}"
    );
    assert!(
        received.iter().all(|(valid, _)| *valid),
        "every delivery carries a valid signature"
    );
    let body = &received[2].1;
    assert_eq!(body["type"], "task.completed");
    assert_eq!(body["data"]["task_id"], "t-1");
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM webhook_deliveries")
            .fetch_one(&app.db)
            .await
            .expect("delivery row");
    assert_eq!((status.as_str(), attempts), ("delivered", 3));

    worker.shutdown().await;
    teardown(&topology, &["webhooks", "webhook-deliveries"]).await;
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_ends_in_the_dead_letter_queue() {
    let (app, receiver, topology, worker) = setup_delivery(vec![StatusCode::BAD_GATEWAY; 10]).await;
    let (connection, _) = broker_channel().await;
    let dead = topology.dead_queue("webhook-deliveries");
    eventually(
        Duration::from_secs(20),
        "the delivery is dead-lettered",
        || async { queue_depth(&connection, &dead).await == 1 },
    )
    .await;
    assert_eq!(
        receiver.received.lock().expect("lock").len(),
        3,
        "first try plus two retries"
    );
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM webhook_deliveries")
            .fetch_one(&app.db)
            .await
            .expect("delivery row");
    assert_eq!((status.as_str(), attempts), ("pending", 3));
    let _ = connection.close(200, "done".into()).await;
    worker.shutdown().await;
    teardown(&topology, &["webhooks", "webhook-deliveries"]).await;
}
