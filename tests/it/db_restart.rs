//! A primary restart under traffic (SPEC §6, §8), on a PostgreSQL instance of the
//! test's own (own port and data directory; the shared one is never touched): while it
//! is down the api answers 503 problem+json with Retry-After, never 500 and never a
//! hang; it recovers by itself; and the scheduler's leader keeps its lease across a
//! blip shorter than the lease's TTL.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::common::{self, Process, client, is_leader, token};
use storeops::auth::Role;

/// A throwaway PostgreSQL cluster on a free port.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("storeops-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("data dir");
        // Never the dev services' ports, which another test may have freed a moment
        // (the reporting test stops and restarts the shared replica).
        let port = std::iter::repeat_with(common::free_port)
            .find(|p| !(55432..=55433).contains(p))
            .expect("a free port");
        let pg = Self { dir, port };
        if is_root() {
            // PostgreSQL refuses to run as root (as scripts/dev-env does, run it as `postgres`).
            let status = Command::new("chown")
                .args(["postgres:postgres", &pg.dir.to_string_lossy()])
                .status()
                .expect("chown");
            assert!(status.success());
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let bin = PathBuf::from(std::env::var("STOREOPS_PG_BIN").expect("STOREOPS_PG_BIN"));
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        let output = command
            .args(args)
            .current_dir("/")
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.to_string_lossy()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                action,
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let bin = PathBuf::from(std::env::var("STOREOPS_PG_BIN").unwrap_or_default());
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("pg_ctl"))
                .args(args)
                .output()
        } else {
            Command::new(bin.join("pg_ctl")).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test]
async fn a_primary_restart_is_a_short_503_outage_and_the_leader_keeps_its_lease() {
    common::init_logs();
    let pg = OwnPostgres::start();
    let db = sqlx::PgPool::connect(&pg.url()).await.expect("connect");
    storeops::db::MIGRATOR.run(&db).await.expect("migrate");
    storeops::stores::seed::seed_chain(&db, 2, 0)
        .await
        .expect("seed");
    let store: uuid::Uuid = sqlx::query_scalar("SELECT id FROM stores ORDER BY code LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("store");
    db.close().await;

    let process = Process::start(
        &["all"],
        &[
            ("DATABASE_URL", pg.url()),
            ("AMQP_URL", std::env::var("AMQP_URL").expect("AMQP_URL")),
            (
                "AMQP_TOPOLOGY_PREFIX",
                format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            ),
            ("SCHEDULER_LEASE_TTL_SECONDS", "6".to_owned()),
            ("SCHEDULER_TICK_SECONDS", "1".to_owned()),
            ("DATABASE_POOL_MAX", "4".to_owned()),
        ],
    );
    let client = client();
    process.wait_ready(&client, 200).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while is_leader(&client, &process).await != Some(true) {
        assert!(Instant::now() < deadline, "never became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hq = token(Role::Hq, None, None);
    let url = format!("{}/api/v1/stores/{store}/tasks", process.http);
    // Warm every pooled connection, so the restart leaves the pool full of dead ones.
    for _ in 0..20 {
        let response = client
            .get(&url)
            .bearer_auth(&hq)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }

    let restart = tokio::task::spawn_blocking(move || {
        pg.ctl("restart");
        pg
    });
    let started = Instant::now();
    let (mut ok, mut unavailable, mut lost_leadership) = (0, 0, false);
    let mut recovered_after = None;
    while started.elapsed() < Duration::from_secs(8) {
        let sent = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(&hq)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("the api answers while the database restarts");
        assert!(
            sent.elapsed() < Duration::from_secs(4),
            "a request hung for {:?}",
            sent.elapsed()
        );
        match response.status().as_u16() {
            200 => {
                ok += 1;
                if restart.is_finished() && recovered_after.is_none() {
                    recovered_after = Some(started.elapsed());
                }
            }
            503 => {
                unavailable += 1;
                assert_eq!(
                    response.headers()["retry-after"],
                    "1",
                    "an outage says when to come back"
                );
                let problem = common::assert_problem(response, 503).await;
                assert!(problem["detail"].as_str().is_some(), "{problem}");
            }
            other => panic!(
                "only 200 or 503 while the database restarts, got {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
        if is_leader(&client, &process).await == Some(false) {
            lost_leadership = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pg = restart.await.expect("restart");
    assert!(
        recovered_after.is_some(),
        "the api recovered by itself ({ok} ok, {unavailable} × 503)"
    );
    assert!(
        !lost_leadership,
        "the leader kept its lease through a restart shorter than its TTL"
    );
    drop(process);
    drop(pg);
}
