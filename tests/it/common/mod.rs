//! Test harness: boots the real router on a random loopback port against a fresh
//! database cloned from a migrated template, on the services `scripts/dev-env` runs.
#![allow(dead_code)] // tests/trace_propagation.rs uses only part of the harness

pub mod oidc;
pub mod own_postgres;

use std::{
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};
use storeops::{
    auth::{Claims, JwtSigner, Role},
    config::{ConnectionUrl, Secret},
    events::{
        broker::{self, BrokerStatus},
        consumer::Registry,
        topology::Topology,
    },
    ids::StoreId,
    roles::worker::WorkerOptions,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The integration endpoints' body limit in tests (413 above it).
pub const INGEST_BODY_LIMIT_BYTES: usize = 4 << 20;

pub const TEST_SECRET: &str = "storeops-test-secret-0123456789abcdef";

/// The primary's URL from `scripts/dev-env env`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `make test` (or eval \"$(scripts/dev-env env)\" first)",
    )
}

/// `url` with its database name replaced.
pub fn url_for_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A migrated template per migration set, made once and shared by all test processes.
async fn template_database() -> String {
    let fingerprint = storeops::db::MIGRATOR
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, m| {
            m.checksum.iter().fold(hash ^ m.version as u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            })
        });
    // Dated: migrations make partitions relative to today (the audit trail's months,
    // the outbox's days), so a template from another day would not match the clock.
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let name = format!("storeops_tmpl_{fingerprint:016x}_{today}");
    let mut admin = PgConnection::connect(&database_url())
        .await
        .expect("connect to the primary");
    // Serialise template creation across test processes.
    sqlx::query("SELECT pg_advisory_lock(727274)")
        .execute(&mut admin)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query pg_database");
    if !exists {
        // Templates of earlier days go (one in use stays); today's of other migration
        // sets stay, as another checkout may be building or cloning one right now.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database
              WHERE datname LIKE 'storeops\\_tmpl\\_%' AND datname NOT LIKE ('%\\_' || $1 || '%')",
        )
        .bind(&today)
        .fetch_all(&mut admin)
        .await
        .expect("list templates");
        for old in stale {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {old}"
                )))
                .await;
        }
        let building = format!("{name}_building");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {building} WITH (FORCE)"
            )))
            .await
            .expect("drop half-built template");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .await
            .expect("create template");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url_for_database(&database_url(), &building))
            .await
            .expect("connect to template");
        storeops::db::MIGRATOR
            .run(&pool)
            .await
            .expect("migrate template");
        pool.close().await;
        // Renamed only when complete, so an interrupted run never leaves a bad template.
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {building} RENAME TO {name}"
            )))
            .await
            .expect("publish template");
    }
    sqlx::query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut admin)
        .await
        .expect("advisory unlock");
    name
}

/// A fresh, migrated, empty database; returns its name and a pool on it.
pub async fn fresh_database() -> (String, PgPool) {
    let template = template_database().await;
    let name = format!("storeops_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&database_url())
        .await
        .expect("connect to the primary");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .await
        .expect("create test database");
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url_for_database(&database_url(), &name))
        .await
        .expect("connect to test database");
    (name, pool)
}

/// An empty database without any migration, for the migration tests.
pub async fn empty_database() -> PgPool {
    let name = format!("storeops_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&database_url())
        .await
        .expect("connect to the primary");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&url_for_database(&database_url(), &name))
        .await
        .expect("connect to test database")
}

pub fn signer() -> JwtSigner {
    JwtSigner::from_secret(&Secret::new(TEST_SECRET))
}

pub fn claims(role: Role, store: Option<StoreId>, region: Option<&str>) -> Claims {
    Claims {
        sub: format!("test-{role:?}").to_lowercase(),
        role,
        store_id: store,
        region: region.map(str::to_owned),
        exp: chrono::Utc::now().timestamp() + 600,
        iat: None,
    }
}

pub fn token(role: Role, store: Option<StoreId>, region: Option<&str>) -> String {
    signer()
        .sign(&claims(role, store, region))
        .expect("sign token")
}

/// A seeded store as the tests need it.
#[derive(Debug, Clone)]
pub struct SeededStore {
    pub id: StoreId,
    pub code: String,
    pub region: String,
}

pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub db: PgPool,
    pub database: String,
    pub client: reqwest::Client,
    /// The reporting pools (replicas as configured, else the primary).
    pub reports: Arc<storeops::reporting::ReadSources>,
    /// The api's token verifier (its identity provider's keys, in OIDC mode).
    pub verifier: Arc<storeops::auth::JwtVerifier>,
    stop: CancellationToken,
}

impl TestApp {
    /// The API on a fresh database seeded with `stores` stores.
    pub async fn spawn(stores: u32) -> Self {
        Self::spawn_with(stores, false).await
    }

    /// As `spawn`, choosing whether webhooks may target private networks (loopback receivers).
    pub async fn spawn_with(stores: u32, allow_private_webhooks: bool) -> Self {
        Self::spawn_configured(stores, allow_private_webhooks, &[]).await
    }

    /// As `spawn`, with reporting settings (`DATABASE_REPLICA_URLS`, ...) as
    /// environment variables; `{db}` in a value is replaced by the test database's name.
    pub async fn spawn_configured(
        stores: u32,
        allow_private_webhooks: bool,
        reporting_env: &[(&str, &str)],
    ) -> Self {
        let (database, db) = fresh_database().await;
        let primary_url = url_for_database(&database_url(), &database);
        Self::spawn_on(
            database,
            db,
            primary_url,
            stores,
            allow_private_webhooks,
            reporting_env,
        )
        .await
    }

    /// As `spawn_configured`, on a migrated database the caller made (`primary_url`).
    pub async fn spawn_on(
        database: String,
        db: PgPool,
        primary_url: String,
        stores: u32,
        allow_private_webhooks: bool,
        reporting_env: &[(&str, &str)],
    ) -> Self {
        let env: std::collections::HashMap<String, String> = reporting_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.replace("{db}", &database)))
            .chain([
                ("DATABASE_URL".to_owned(), primary_url),
                ("AUTH_JWT_SECRET".to_owned(), TEST_SECRET.to_owned()),
                ("HTTP_BODY_LIMIT_BYTES".to_owned(), (64 * 1024).to_string()),
                (
                    "HTTP_INGEST_BODY_LIMIT_BYTES".to_owned(),
                    INGEST_BODY_LIMIT_BYTES.to_string(),
                ),
                (
                    "WEBHOOK_ALLOW_PRIVATE_NETWORKS".to_owned(),
                    allow_private_webhooks.to_string(),
                ),
                ("WEBHOOK_TIMEOUT_SECONDS".to_owned(), "5".to_owned()),
            ])
            .chain(s3_env(&database))
            // A test's own settings win over the defaults above.
            .chain(
                reporting_env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.replace("{db}", &database))),
            )
            .collect();
        let config = storeops::config::Config::from_lookup(|k| env.get(k).cloned())
            .expect("test configuration");
        if stores > 0 {
            storeops::seed::seed_chain(&db, stores, 0)
                .await
                .expect("seed chain");
        }
        // The same composition root as `storeops api`.
        let storeops::roles::api::ApiApp {
            router,
            reports,
            verifier,
        } = storeops::roles::api::build(&config, db.clone()).expect("api");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        tokio::spawn(reports.clone().monitor(stop.clone()));
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .expect("serve");
        });
        Self {
            base: format!("http://{addr}"),
            addr,
            db,
            database,
            client: {
                storeops::tls::install_crypto_provider();
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client")
            },
            reports,
            verifier,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Stores in code order.
    pub async fn stores(&self) -> Vec<SeededStore> {
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT s.id, s.code, r.code FROM stores s JOIN regions r ON r.id = s.region_id ORDER BY s.code",
        )
        .fetch_all(&self.db)
        .await
        .expect("stores");
        rows.into_iter()
            .map(|(id, code, region)| SeededStore {
                id: StoreId(id),
                code,
                region,
            })
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Asserts an RFC 9457 problem with `status`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    assert_eq!(actual, status, "status; body: {body}");
    assert_eq!(
        content_type, "application/problem+json",
        "content type; body: {body}"
    );
    assert_eq!(body["status"], status, "problem status field: {body}");
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

/// The object store of `scripts/dev-env env` (SeaweedFS), under a key prefix of this
/// test's own (`prefix`: its database's name), as environment variables; none when the
/// store is not configured.
pub fn s3_env(prefix: &str) -> Vec<(String, String)> {
    let Ok(bucket) = std::env::var("S3_BUCKET") else {
        return Vec::new();
    };
    let mut env: Vec<(String, String)> = [
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_PATH_STYLE",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_owned(), v)))
    .collect();
    env.push(("S3_BUCKET".to_owned(), bucket));
    env.push(("S3_KEY_PREFIX".to_owned(), format!("tests/{prefix}")));
    env
}

/// The evidence settings a test app with this prefix runs with.
pub fn evidence_config(prefix: &str) -> storeops::config::EvidenceConfig {
    let env: std::collections::HashMap<String, String> = s3_env(prefix).into_iter().collect();
    storeops::config::Config::from_lookup(|k| env.get(k).cloned())
        .expect("evidence configuration")
        .evidence
}

/// The broker URL from `scripts/dev-env env`.
pub fn amqp_url() -> ConnectionUrl {
    let raw =
        std::env::var("AMQP_URL").expect("AMQP_URL is not set: run the tests with `make test`");
    storeops::config::Config::from_lookup(|k| (k == "AMQP_URL").then(|| raw.clone()))
        .expect("valid AMQP_URL")
        .amqp_url()
        .expect("set")
        .clone()
}

/// A topology under a random prefix, so tests never see each other's queues.
pub fn test_topology(retry_delays_ms: &[u64]) -> Topology {
    Topology {
        prefix: format!("t{}", &Uuid::new_v4().simple().to_string()[..12]),
        retry_delays: retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        delivery_limit: 20,
    }
}

/// A worker session (relay and consumers) running in this process.
pub struct RunningWorker {
    pub stop: CancellationToken,
    pub status: BrokerStatus,
    handle: tokio::task::JoinHandle<()>,
}

/// The configuration a test worker runs with: the test's topology (its own prefix and
/// retry delays) and broker, and `extra` settings, as environment variables.
pub fn worker_config(
    url: &ConnectionUrl,
    topology: &Topology,
    relay: bool,
    extra: &[(&str, &str)],
) -> storeops::config::Config {
    let delays = topology
        .retry_delays
        .iter()
        .map(|d| d.as_millis().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let env: std::collections::HashMap<String, String> = [
        ("AMQP_URL", url.expose().to_owned()),
        ("AMQP_TOPOLOGY_PREFIX", topology.prefix.clone()),
        ("WORKER_RETRY_DELAYS_MS", delays),
        ("WORKER_DELIVERY_LIMIT", topology.delivery_limit.to_string()),
        ("WORKER_MESSAGE_TIMEOUT_SECONDS", "20".to_owned()),
        ("WORKER_RUN_RELAY", relay.to_string()),
        ("OUTBOX_BATCH_SIZE", "500".to_owned()),
        ("OUTBOX_POLL_INTERVAL_MS", "200".to_owned()),
        ("WEBHOOK_TIMEOUT_SECONDS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .collect();
    storeops::config::Config::from_lookup(|k| env.get(k).cloned()).expect("worker configuration")
}

impl RunningWorker {
    /// A worker of `registry`'s groups, assembled by `roles::worker::build` as the
    /// worker role does.
    pub fn spawn(
        db: &PgPool,
        url: ConnectionUrl,
        topology: &Topology,
        registry: Registry,
        relay: bool,
        concurrency: usize,
    ) -> Self {
        let config = worker_config(&url, topology, relay, &[]);
        Self::start(db, &config, registry, &[], concurrency)
    }

    /// The production worker (every module's handlers) consuming only `groups`, with
    /// `extra` settings: what `storeops worker --queues …` runs.
    pub fn groups(
        db: &PgPool,
        topology: &Topology,
        groups: &[&str],
        concurrency: usize,
        extra: &[(&str, &str)],
    ) -> Self {
        let config = worker_config(&amqp_url(), topology, true, extra);
        let registry = storeops::roles::worker::registry(&config, db).expect("registry");
        Self::start(db, &config, registry, groups, concurrency)
    }

    fn start(
        db: &PgPool,
        config: &storeops::config::Config,
        registry: Registry,
        groups: &[&str],
        concurrency: usize,
    ) -> Self {
        let worker = storeops::roles::worker::build(
            config,
            db.clone(),
            registry,
            &WorkerOptions {
                queues: groups.iter().map(|g| (*g).to_owned()).collect(),
                concurrency,
            },
        )
        .expect("worker");
        let stop = CancellationToken::new();
        let status = BrokerStatus::default();
        let handle = tokio::spawn(worker.run("storeops-test", status.clone(), stop.clone()));
        Self {
            stop,
            status,
            handle,
        }
    }

    /// Waits (bounded) until the broker session is up.
    pub async fn wait_connected(&self) {
        eventually(Duration::from_secs(20), "worker connected", || async {
            self.status.is_connected()
        })
        .await;
        // Consumers start right after the topology is declared.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Graceful stop, as on SIGTERM; bounded.
    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker drained within 30 s")
            .expect("worker task");
    }
}

/// Inserts an outbox row with any routing key and payload, as a producer of another
/// version (or a broken one) would: for tests of the event backbone itself.
pub async fn enqueue_raw(
    conn: &mut sqlx::PgConnection,
    routing_key: &str,
    payload: &serde_json::Value,
) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO outbox (id, routing_key, payload, headers) VALUES ($1, $2, $3, '{}')")
        .bind(id)
        .bind(routing_key)
        .bind(sqlx::types::Json(payload))
        .execute(conn)
        .await
        .expect("outbox insert");
    id
}

/// Polls `check` until it holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A channel on the test broker, for inspecting and publishing directly.
pub async fn broker_channel() -> (lapin::Connection, lapin::Channel) {
    let connection = broker::connect(&amqp_url(), "storeops-test-probe")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// Messages waiting in `queue` (passive declare).
pub async fn queue_depth(connection: &lapin::Connection, queue: &str) -> u32 {
    // A channel of its own per look: a passive declare of a queue that does not exist
    // yet (the worker declares its topology as it starts) closes the channel it ran on.
    let Ok(channel) = connection.create_channel().await else {
        return u32::MAX;
    };
    let depth = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .map(|q| q.message_count())
        .unwrap_or(u32::MAX);
    let _ = channel.close(200, "done".into()).await;
    depth
}

/// Every consumer group of the production worker (a worker consuming some of them
/// still declares all of them).
pub fn production_groups() -> Vec<&'static str> {
    let config = storeops::config::Config::from_lookup(|_| None).expect("defaults");
    let db = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://unused@127.0.0.1/unused")
        .expect("lazy pool");
    storeops::roles::worker::registry(&config, &db)
        .expect("registry")
        .all_groups()
        .map(|g| g.name)
        .collect()
}

/// Deletes a test topology's queues and exchanges: `groups`' and the production ones.
pub async fn teardown(topology: &Topology, groups: &[&str]) {
    let (connection, channel) = broker_channel().await;
    let mut groups = groups.to_vec();
    groups.extend(production_groups());
    groups.sort_unstable();
    groups.dedup();
    for group in &groups {
        let mut names = vec![topology.queue(group), topology.dead_queue(group)];
        names.extend(
            (0..topology.retry_delays.len()).filter_map(|i| topology.delay_queue(group, i)),
        );
        for name in names {
            let _ = channel.queue_delete(name.into(), Default::default()).await;
        }
    }
    let _ = channel
        .queue_delete(topology.unrouted().into(), Default::default())
        .await;
    for exchange in [
        topology.events_exchange(),
        topology.dead_exchange(),
        topology.unrouted(),
    ] {
        let _ = channel
            .exchange_delete(exchange.into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Shows the code's logs in failing tests' output (RUST_LOG, default warn).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------- the binary as a process

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Process {
    pub child: Child,
    pub http: String,
    pub admin: String,
}

impl Process {
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_logging_to(args, env, Stdio::inherit())
    }

    /// [`Process::start`] with its logs (stderr) sent to `logs`.
    pub fn start_logging_to(args: &[&str], env: &[(&str, String)], logs: Stdio) -> Self {
        let http_port = free_port();
        let admin_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_storeops"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("AUTH_JWT_SECRET", TEST_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(logs);
        for (k, v) in env {
            command.env(k, v);
        }
        Self {
            child: command.spawn().expect("spawn storeops"),
            http: format!("http://127.0.0.1:{http_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/readyz` until it answers `status` (bounded).
    pub async fn wait_ready(&self, client: &reqwest::Client, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.admin)).send().await
                && response.status().as_u16() == status
            {
                return response.json().await.expect("readyz json");
            }
            assert!(Instant::now() < deadline, "/readyz never answered {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Only our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `process` says it is the scheduler's leader (`/metrics`), `None` if it
/// cannot be asked.
pub async fn is_leader(client: &reqwest::Client, process: &Process) -> Option<bool> {
    let text = client
        .get(format!("{}/metrics", process.admin))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("storeops_scheduler_is_leader "))
        .map(|v| v.trim() == "1")
}

pub fn client() -> reqwest::Client {
    storeops::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

macro_rules! test_events {
    ($($name:ident => $key:literal,)+) => {
        $(
            /// An event of the tests' own, with any JSON payload.
            #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
            #[serde(transparent)]
            pub struct $name(pub serde_json::Value);

            impl storeops::events::Event for $name {
                const ROUTING_KEY: &'static str = $key;
            }
        )+
    };
}

test_events! {
    Happened => "test.happened",
    RolledBack => "test.rolled_back",
    Committed => "test.committed",
    Flaky => "test.flaky",
    Invalid => "test.invalid",
    Upkeep => "test.upkeep",
    Streamed => "test.stream",
    Benched => "bench.event",
    Traced => "test.traced",
}

/// A small JPEG (`width` × `height`, one colour), as a phone's photo would be.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let photo = image::DynamicImage::new_rgb8(width, height);
    let mut out = std::io::Cursor::new(Vec::new());
    photo
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode JPEG");
    out.into_inner()
}

/// Asks for an upload grant for `item` of `task` as `token`; answers the grant.
pub async fn grant_photo(
    app: &TestApp,
    task: &serde_json::Value,
    item: &str,
    token: &str,
    content_type: &str,
    size: usize,
) -> serde_json::Value {
    let id = task["id"].as_str().expect("task id");
    let response = app
        .client
        .post(app.url(&format!("/api/v1/tasks/{id}/evidence")))
        .bearer_auth(token)
        .json(&serde_json::json!({"item_key": item, "content_type": content_type, "size_bytes": size}))
        .send()
        .await
        .expect("grant request");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("grant json");
    assert_eq!(status, 201, "grant: {body}");
    body
}

/// PUTs `bytes` to a grant's upload URL with `content_type` (the grant's own headers
/// otherwise); answers the object store's status.
pub async fn put_upload(grant: &serde_json::Value, bytes: Vec<u8>, content_type: &str) -> u16 {
    let url = grant["upload"]["url"].as_str().expect("upload url");
    client()
        .put(url)
        .header("Content-Type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload")
        .status()
        .as_u16()
}

/// Grants and uploads a JPEG for `item` of `task`; answers its evidence id.
pub async fn upload_photo(
    app: &TestApp,
    task: &serde_json::Value,
    item: &str,
    token: &str,
) -> String {
    let photo = jpeg(64, 48);
    let grant = grant_photo(app, task, item, token, "image/jpeg", photo.len()).await;
    assert_eq!(put_upload(&grant, photo, "image/jpeg").await, 200, "upload");
    grant["evidence_id"]
        .as_str()
        .expect("evidence id")
        .to_owned()
}
