//! Where reports read from (PRODUCT §7): deadpool-postgres pools over the replicas, each
//! replica's lag measured in the background, and the primary as the fallback when no
//! replica is fresh enough or reachable.
//!
//! Lag is measured against the primary, not from `pg_last_xact_replay_timestamp()`
//! (which grows while the primary is idle): every check samples the primary's WAL
//! position and asks each replica whether it has replayed that far. A replica's lag is
//! the time since it was last seen caught up, an upper bound of how stale it can be,
//! measured on this process's own clock (no clock skew between hosts).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, ConnectionUrl};

/// Which kind of server answered: the `X-Data-Source` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    Replica,
    Primary,
}

impl DataSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DataSource::Replica => "replica",
            DataSource::Primary => "primary",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no reporting database is reachable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

/// Counts a report read by where it was answered (`storeops_report_reads_total`).
fn answered<T>(value: T, lease: Lease) -> (T, Lease) {
    metrics::REPORT_READS
        .with_label_values(&[lease.source.as_str()])
        .inc();
    (value, lease)
}

/// A connection checked out for one report, with where it came from.
pub struct Lease {
    pub client: Object,
    pub source: DataSource,
    /// How far behind the primary the data may be.
    pub staleness: Duration,
    replica: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    reachable: bool,
    /// When the primary position this replica was last seen to have replayed was read.
    caught_up_at: Option<Instant>,
}

struct Replica {
    name: String,
    /// `reports-replica-<name>`: the `pool` label of the pool metrics.
    pool_label: String,
    pool: Pool,
    health: Mutex<Health>,
}

impl Replica {
    fn health(&self) -> Health {
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_health(&self, update: impl FnOnce(&mut Health)) {
        update(
            &mut self
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    fn lag(&self, now: Instant) -> Option<Duration> {
        self.health().caught_up_at.map(|at| now - at)
    }
}

/// The reporting pools of one process.
pub struct ReadSources {
    replicas: Vec<Replica>,
    primary: Pool,
    max_lag: Duration,
    check_interval: Duration,
    next: AtomicUsize,
}

/// A pool that connects lazily; statement timeout and read-only mode are set per session.
fn pool(url: &ConnectionUrl, var: &'static str, config: &Config) -> Result<Pool, ConfigError> {
    let bad = |reason: String| ConfigError {
        var,
        reason: format!("cannot parse: {reason}"),
    };
    let mut pg: tokio_postgres::Config = url.expose().parse().map_err(|e| bad(format!("{e}")))?;
    let timeout_ms = config.reporting.statement_timeout.as_millis();
    pg.application_name("storeops-reports")
        .connect_timeout(Duration::from_secs(3))
        .options(format!(
            "-c statement_timeout={timeout_ms} -c default_transaction_read_only=on -c work_mem=32MB"
        ));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.reporting.pool_max)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| bad(e.to_string()))
}

impl ReadSources {
    pub fn new(config: &Config) -> Result<Arc<Self>, ConfigError> {
        let primary = pool(config.database_url()?, "DATABASE_URL", config)?;
        let replicas = config
            .database_replica_urls
            .iter()
            .zip(&config.reporting.replica_names)
            .map(|(url, name)| {
                Ok(Replica {
                    pool_label: format!("reports-replica-{name}"),
                    name: name.clone(),
                    pool: pool(url, "DATABASE_REPLICA_URLS", config)?,
                    health: Mutex::new(Health {
                        reachable: false,
                        caught_up_at: None,
                    }),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Arc::new(Self {
            replicas,
            primary,
            max_lag: config.reporting.max_lag,
            check_interval: config.reporting.lag_check_interval,
            next: AtomicUsize::new(0),
        }))
    }

    /// A connection to the freshest-enough source: replicas in turn, then the primary.
    pub async fn acquire(&self) -> Result<Lease, SourceError> {
        let now = Instant::now();
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for offset in 0..count {
            let index = (start + offset) % count;
            let replica = &self.replicas[index];
            let health = replica.health();
            let Some(lag) = replica.lag(now) else {
                continue;
            };
            if !health.reachable || lag > self.max_lag {
                continue;
            }
            match timed_get(&replica.pool, &replica.pool_label).await {
                Ok(client) => {
                    return Ok(Lease {
                        client,
                        source: DataSource::Replica,
                        staleness: lag,
                        replica: Some(index),
                    });
                }
                Err(e) => {
                    tracing::warn!(replica = %replica.name, error = %e, "replica unreachable; trying the next source");
                    replica.set_health(|h| h.reachable = false);
                }
            }
        }
        let client = timed_get(&self.primary, PRIMARY_POOL)
            .await
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        Ok(Lease {
            client,
            source: DataSource::Primary,
            staleness: Duration::ZERO,
            replica: None,
        })
    }

    /// Runs `start` on a source and keeps its connection with the answer. If a replica
    /// fails with a broken connection (it went down since the last check), it is
    /// marked down and `start` runs once more elsewhere. A connection whose work failed
    /// is closed, never returned to the pool: it may be broken or mid-transaction.
    pub async fn open<T, F>(&self, start: F) -> Result<(T, Lease), SourceError>
    where
        F: for<'c> Fn(
            &'c tokio_postgres::Client,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let lease = self.acquire().await?;
        let error = match start(&lease.client).await {
            Ok(value) => return Ok(answered(value, lease)),
            Err(e) => e,
        };
        let retry = lease.replica.is_some() && is_connection_error(&error);
        if retry {
            self.mark_down(&lease, &error);
        }
        drop(Object::take(lease.client));
        if !retry {
            return Err(error.into());
        }
        let lease = self.acquire().await?;
        match start(&lease.client).await {
            Ok(value) => Ok(answered(value, lease)),
            Err(e) => {
                drop(Object::take(lease.client));
                Err(e.into())
            }
        }
    }

    /// [`Self::open`] for a read that is done once it answers: the answer, where it
    /// came from and how stale it may be.
    pub async fn read<T, F>(&self, read: F) -> Result<(T, DataSource, Duration), SourceError>
    where
        F: for<'c> Fn(
            &'c tokio_postgres::Client,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let (value, lease) = self.open(read).await?;
        Ok((value, lease.source, lease.staleness))
    }

    /// Marks the lease's replica down after its connection broke mid-request.
    fn mark_down(&self, lease: &Lease, error: &tokio_postgres::Error) {
        if let Some(replica) = lease.replica.and_then(|i| self.replicas.get(i)) {
            tracing::warn!(replica = %replica.name, error = %error, "replica connection broke; using another source");
            replica.set_health(|h| h.reachable = false);
        }
    }

    /// Measures every replica's lag until `stop`; run by the api role.
    pub async fn monitor(self: Arc<Self>, stop: CancellationToken) {
        if self.replicas.is_empty() {
            return;
        }
        let mut ticker = tokio::time::interval(self.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => self.check_once().await,
            }
        }
    }

    /// One round of lag checks, time-boxed so a hung server cannot stall the next.
    pub async fn check_once(&self) {
        let limit = self.check_interval.max(Duration::from_secs(1));
        let sampled_at = Instant::now();
        let primary_position =
            match tokio::time::timeout(limit, primary_wal_position(&self.primary)).await {
                Ok(Ok(position)) => Some(position),
                _ => None,
            };
        let checks = self.replicas.iter().map(|replica| async {
            let outcome =
                tokio::time::timeout(limit, replay_status(&replica.pool, primary_position.as_deref()))
                    .await;
            match outcome {
                Ok(Ok(caught_up)) => replica.set_health(|h| {
                    h.reachable = true;
                    if caught_up {
                        h.caught_up_at = Some(sampled_at);
                    }
                }),
                Ok(Err(e)) => {
                    if replica.health().reachable {
                        tracing::warn!(replica = %replica.name, error = %e, "replica lag check failed");
                    }
                    replica.set_health(|h| h.reachable = false);
                }
                Err(_) => replica.set_health(|h| h.reachable = false),
            }
        });
        futures_util::future::join_all(checks).await;
        let now = Instant::now();
        for replica in &self.replicas {
            let lag = replica.lag(now).map_or(f64::INFINITY, |l| l.as_secs_f64());
            metrics::REPLICA_LAG
                .with_label_values(&[replica.name.as_str()])
                .set(lag);
        }
    }

    /// Connection counts for `storeops_db_pool_connections`.
    pub fn pool_status(&self) -> Vec<(String, deadpool_postgres::Status)> {
        std::iter::once((PRIMARY_POOL.to_owned(), self.primary.status()))
            .chain(
                self.replicas
                    .iter()
                    .map(|r| (r.pool_label.clone(), r.pool.status())),
            )
            .collect()
    }
}

const PRIMARY_POOL: &str = "reports-primary";

/// A pooled connection, its wait recorded in `storeops_db_pool_acquire_seconds`.
async fn timed_get(pool: &Pool, label: &str) -> Result<Object, deadpool_postgres::PoolError> {
    let started = Instant::now();
    let client = pool.get().await;
    crate::metrics::DB_POOL_ACQUIRE
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    client
}

async fn primary_wal_position(primary: &Pool) -> Result<String, SourceError> {
    let client = primary
        .get()
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?;
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    Ok(row.get(0))
}

/// Has the replica replayed up to `primary_position`? Without it (the primary is
/// down, so nothing new is written), a replica that applied all it received is as
/// fresh as it can be. A server that is not in recovery is a primary: always fresh.
async fn replay_status(
    replica: &Pool,
    primary_position: Option<&str>,
) -> Result<bool, SourceError> {
    let client = replica
        .get()
        .await
        .map_err(|e| SourceError::Unavailable(e.to_string()))?;
    let row = client
        .query_one(
            "SELECT NOT pg_is_in_recovery()
                    OR CASE WHEN $1::text IS NOT NULL
                            THEN pg_last_wal_replay_lsn() >= $1::text::pg_lsn
                            ELSE pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() END",
            &[&primary_position],
        )
        .await?;
    Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

/// A broken or closed connection, as opposed to an error in the query itself.
pub fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let class = &code.code()[..2];
            // 08: connection exception; 57P01-03: admin shutdown, crash, cannot connect now.
            class == "08" || code.code().starts_with("57P")
        }
        // No SQLSTATE: an I/O error talking to the server.
        None => true,
    }
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::{GaugeVec, IntCounterVec, Opts};

    pub static REPORT_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_report_reads_total",
                    "Report reads by where they were answered (replica, or primary: none usable or none configured)",
                ),
                &["source"],
            )
            .expect("valid metric"),
        )
    });

    pub static REPLICA_LAG: LazyLock<GaugeVec> = LazyLock::new(|| {
        crate::metrics::register(
            GaugeVec::new(
                Opts::new(
                    "storeops_replica_lag_seconds",
                    "How far each read replica may be behind the primary (time since it was last seen caught up; +Inf before that)",
                ),
                &["replica"],
            )
            .expect("valid metric"),
        )
    });
}
