//! The scheduler role as real processes: one leader among many, takeover after SIGTERM
//! (release + NOTIFY) and after SIGKILL (lease expiry), self-fencing when cut off from
//! the database, and the overdue, escalation and expiry jobs.

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Process, client, is_leader, url_for_database};
use storeops::{ids::StoreId, tasks::fixture::TaskFixture};
use tokio::{io::copy_bidirectional, net::TcpListener, task::JoinHandle};

async fn leaders(client: &reqwest::Client, processes: &[&Process]) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, p) in processes.iter().enumerate() {
        if is_leader(client, p).await == Some(true) {
            found.push(i);
        }
    }
    found
}

fn scheduler(database_url: &str, ttl: u64) -> Process {
    Process::start(
        &["scheduler"],
        &[
            ("DATABASE_URL", database_url.to_owned()),
            ("SCHEDULER_LEASE_TTL_SECONDS", ttl.to_string()),
            ("SCHEDULER_TICK_SECONDS", "1".to_owned()),
            ("SCHEDULER_ESCALATION_DELAY_SECONDS", "2".to_owned()),
        ],
    )
}

/// Waits (bounded) until exactly one of `processes` leads; returns its index and when.
async fn one_leader(
    client: &reqwest::Client,
    processes: &[&Process],
    within: Duration,
) -> (usize, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let found = leaders(client, processes).await;
        assert!(found.len() <= 1, "two leaders at once: {found:?}");
        if let [one] = found.as_slice() {
            return (*one, Instant::now());
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exactly_one_leader_and_takeover_after_sigterm_and_sigkill() {
    let (database, _db) = common::fresh_database().await;
    let url = url_for_database(&common::database_url(), &database);
    let client = client();
    let ttl = 4;
    let mut processes: Vec<Process> = (0..3).map(|_| scheduler(&url, ttl)).collect();
    for p in &processes {
        p.wait_ready(&client, 200).await;
    }
    let refs: Vec<&Process> = processes.iter().collect();
    let (first, _) = one_leader(&client, &refs, Duration::from_secs(10)).await;
    // Stable: still exactly one, the same one, over a few renewals.
    for _ in 0..20 {
        assert_eq!(leaders(&client, &refs).await, vec![first]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // SIGTERM: the leader releases the lease and a standby takes over within ~2 s.
    processes[first].signal("TERM");
    let stopped = Instant::now();
    assert_eq!(
        processes[first]
            .wait_exit(Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
    let rest: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let refs: Vec<&Process> = rest.iter().map(|i| &processes[*i]).collect();
    let (second, at) = one_leader(&client, &refs, Duration::from_secs(10)).await;
    assert!(
        at - stopped < Duration::from_millis(2500),
        "takeover after SIGTERM took {:?}",
        at - stopped
    );
    let second = rest[second];

    // SIGKILL: no release; the last standby takes over once the lease expires.
    processes[second].signal("KILL");
    let killed = Instant::now();
    let _ = processes[second].wait_exit(Duration::from_secs(5)).await;
    let last = rest
        .iter()
        .copied()
        .find(|i| *i != second)
        .expect("a standby");
    let (_, at) = one_leader(&client, &[&processes[last]], Duration::from_secs(15)).await;
    let took = at - killed;
    assert!(
        took < Duration::from_secs(ttl + 2),
        "takeover after SIGKILL took {took:?}"
    );
    processes[last].signal("TERM");
    assert_eq!(
        processes[last]
            .wait_exit(Duration::from_secs(15))
            .await
            .code(),
        Some(0)
    );
}

/// A loopback TCP proxy to PostgreSQL that the test can cut.
struct CuttableProxy {
    port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().expect("lock").push(handle);
            }
        });
        Self {
            port,
            connections,
            acceptor,
        }
    }

    /// Every connection dies and no new one is accepted (a network partition).
    fn cut(&self) {
        self.acceptor.abort();
        for handle in self.connections.lock().expect("lock").drain(..) {
            handle.abort();
        }
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_database_stops_before_its_lease_expires() {
    let (database, db) = common::fresh_database().await;
    let direct = url_for_database(&common::database_url(), &database);
    let upstream = direct
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port")
        .to_owned();
    let proxy = CuttableProxy::start(upstream.clone()).await;
    let proxied = direct.replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let client = client();
    let ttl = 6;
    let mut leader = scheduler(&proxied, ttl);
    leader.wait_ready(&client, 200).await;
    one_leader(&client, &[&leader], Duration::from_secs(10)).await;

    proxy.cut();
    let cut = Instant::now();
    let expires_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM scheduler_leases")
            .fetch_one(&db)
            .await
            .expect("lease");
    let deadline = Instant::now() + Duration::from_secs(ttl + 5);
    loop {
        if is_leader(&client, &leader).await == Some(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stepped_down = chrono::Utc::now();
    assert!(
        stepped_down < expires_at,
        "stepped down at {stepped_down}, after its lease expired at {expires_at}"
    );
    assert!(
        cut.elapsed() < Duration::from_secs(ttl),
        "fencing took {:?}",
        cut.elapsed()
    );
    leader.signal("KILL");
    let _ = leader.wait_exit(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn overdue_work_escalates_twice_and_expired_work_expires() {
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 2, 0).await.expect("seed");
    let store: uuid::Uuid = sqlx::query_scalar("SELECT id FROM stores LIMIT 1")
        .fetch_one(&db)
        .await
        .expect("store");
    let insert = |title: &'static str, due: chrono::Duration, expires: Option<chrono::Duration>| {
        let db = db.clone();
        async move {
            let now = chrono::Utc::now();
            let mut task = TaskFixture::new(StoreId(store), title).due_at(now + due);
            if let Some(expires) = expires {
                task = task.expires_at(now + expires);
            }
            task.insert(&db).await.expect("task").0
        }
    };
    let late = insert("late", -chrono::Duration::minutes(1), None).await;
    let future = insert("future", chrono::Duration::hours(1), None).await;
    let expiring = insert(
        "expiring",
        -chrono::Duration::hours(2),
        Some(-chrono::Duration::minutes(1)),
    )
    .await;

    let client = client();
    let mut leader = scheduler(&url_for_database(&common::database_url(), &database), 6);
    leader.wait_ready(&client, 200).await;
    let events = |task: uuid::Uuid, kind: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM task_events WHERE task_id = $1 AND kind = $2",
            )
            .bind(task)
            .bind(kind)
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while events(late, "overdue").await < 2 || events(expiring, "expired").await < 1 {
        assert!(Instant::now() < deadline, "jobs did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events(late, "overdue").await,
        2,
        "level 1 then level 2, once each"
    );
    assert_eq!(events(future, "overdue").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM tasks WHERE id = $1")
        .bind(expiring)
        .fetch_one(&db)
        .await
        .expect("status");
    assert_eq!(status, "expired");
    let keys: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT routing_key, (payload->>'level')::bigint FROM outbox WHERE payload->>'task_id' = $1::text ORDER BY created_at",
    )
    .bind(late)
    .fetch_all(&db)
    .await
    .expect("outbox");
    assert_eq!(
        keys,
        vec![
            ("task.overdue".to_owned(), Some(1)),
            ("task.overdue".to_owned(), Some(2))
        ]
    );
    let metrics = client
        .get(format!("{}/metrics", leader.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("storeops_tasks_escalated_total{level=\"2\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("storeops_tasks_open{"),
        "leader exports the state gauges"
    );
    assert!(
        metrics.contains("storeops_scheduler_job_runs_total{name=\"overdue\",outcome=\"success\"}")
    );
    leader.signal("TERM");
    assert_eq!(
        leader.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
}
