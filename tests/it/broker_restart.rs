//! A broker restart mid-stream: the worker reconnects by itself, redeclares its
//! topology, and every event is applied exactly once. The test runs its own RabbitMQ
//! node (separate name, port and data directory) so it never disturbs the shared one.

use crate::common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{RunningWorker, eventually, test_topology};
use futures_util::future::BoxFuture;
use sqlx::{PgPool, Postgres, Transaction};
use storeops::{
    config::Config,
    events::{
        consumer::{Handler, HandlerError, Message, Registry},
        outbox,
    },
};

struct Effects;

impl Handler for Effects {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO test_effects (message_id) VALUES ($1)")
                .bind(message.id)
                .execute(&mut **tx)
                .await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        })
    }
}

fn sbin(tool: &str) -> Option<PathBuf> {
    // The plain scripts, not Debian's /usr/sbin wrappers: those switch to the rabbitmq
    // user, whose cookie and permissions differ from the test's.
    [
        "/usr/lib/rabbitmq/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/usr/bin",
    ]
    .iter()
    .map(|dir| PathBuf::from(dir).join(tool))
    .find(|p| p.exists())
}

/// A private RabbitMQ node, stopped and removed on drop.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
}

impl Node {
    fn start() -> Option<Self> {
        let server = sbin("rabbitmq-server")?;
        let name = format!(
            "storeops-test-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let dir =
            std::env::temp_dir().join(format!("storeops-rmq-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("node dir");
        let port = common::free_port();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
        )
        .expect("conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins");
        let node = Self { name, dir, port };

        let mut command = Command::new(server);
        node.env(&mut command);
        let status = command
            .arg("-detached")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(node.dir.join("server.out")).expect("out"))
            .stderr(std::fs::File::create(node.dir.join("server.err")).expect("err"))
            .status()
            .expect("rabbitmq-server");
        assert!(status.success(), "rabbitmq-server -detached failed");
        // -detached returns before the node registers; wait for its listener.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "private RabbitMQ node did not start: {} {}",
                std::fs::read_to_string(node.dir.join("server.out")).unwrap_or_default(),
                std::fs::read_to_string(node.dir.join("server.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        node.ctl(&["await_startup", "--timeout", "60"]);
        Some(node)
    }

    fn env<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", common::free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("node.pid"))
    }

    fn ctl(&self, args: &[&str]) {
        let ctl = sbin("rabbitmqctl").expect("rabbitmqctl");
        let status = Command::new(ctl)
            .args(["-n", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl {args:?} failed");
    }

    fn url(&self) -> storeops::config::ConnectionUrl {
        let raw = format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port);
        Config::from_lookup(|k| (k == "AMQP_URL").then(|| raw.clone()))
            .expect("config")
            .amqp_url()
            .expect("url")
            .clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(ctl) = sbin("rabbitmqctl") {
            let _ = Command::new(ctl)
                .args(["-n", &self.name, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn effects(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_effects")
        .fetch_one(db)
        .await
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_nothing_and_needs_no_manual_step() {
    common::init_logs();
    let Some(node) = Node::start() else {
        eprintln!(
            "SKIPPED: rabbitmq-server is not installed here (scripts/dev-env installs it when it starts the broker)"
        );
        return;
    };
    let (_, db) = common::fresh_database().await;
    sqlx::query("CREATE TABLE test_effects (message_id uuid NOT NULL)")
        .execute(&db)
        .await
        .expect("table");
    let topology = test_topology(&[200, 500]);
    let mut registry = Registry::default();
    registry.subscribe_raw("audit", "test.#", Arc::new(Effects));
    let worker = RunningWorker::spawn(&db, node.url(), &topology, registry, true, 8);
    worker.wait_connected().await;

    // A steady stream: 40 commits of 10 events, 50 ms apart, around a restart.
    let producer = {
        let db = db.clone();
        tokio::spawn(async move {
            for batch in 0..40 {
                let mut tx = db.begin().await.expect("begin");
                let payloads: Vec<common::Streamed> = (0..10)
                    .map(|i| common::Streamed(serde_json::json!({"batch": batch, "i": i})))
                    .collect();
                outbox::enqueue_many(&mut tx, &payloads)
                    .await
                    .expect("enqueue");
                tx.commit().await.expect("commit");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    eventually(
        Duration::from_secs(20),
        "some events applied before the restart",
        || async { effects(&db).await >= 60 },
    )
    .await;
    node.ctl(&["stop_app"]);
    eventually(Duration::from_secs(10), "the worker notices", || async {
        !worker.status.is_connected()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    node.ctl(&["start_app"]);
    producer.await.expect("producer");

    eventually(
        Duration::from_secs(60),
        "all 400 events applied after the restart",
        || async { effects(&db).await >= 400 },
    )
    .await;
    assert!(worker.status.is_connected(), "reconnected by itself");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(effects(&db).await, 400);
    let twice: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT message_id FROM test_effects GROUP BY 1 HAVING count(*) > 1) d")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(twice, 0);
    worker.shutdown().await;
    drop(node);
}
