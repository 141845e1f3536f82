//! A primary restart under traffic (PRODUCT §6, §8), on a PostgreSQL instance of the
//! test's own (own port and data directory; the shared one is never touched): while it
//! is down the api answers 503 problem+json with Retry-After, never 500 and never a
//! hang; it recovers by itself; and the scheduler's leader keeps its lease across a
//! blip shorter than the lease's TTL.

use std::time::{Duration, Instant};

use crate::common::{self, Process, client, is_leader, token};
use common::own_postgres::OwnPostgres;
use storeops::auth::Role;

#[tokio::test]
async fn a_primary_restart_is_a_short_503_outage_and_the_leader_keeps_its_lease() {
    common::init_logs();
    let pg = OwnPostgres::start();
    let db = sqlx::PgPool::connect(&pg.url()).await.expect("connect");
    storeops::db::MIGRATOR.run(&db).await.expect("migrate");
    storeops::seed::seed_chain(&db, 2, 0).await.expect("seed");
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
