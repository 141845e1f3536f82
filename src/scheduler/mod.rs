//! The scheduler role's machinery (PRODUCT §8): leader election by a lease row, and the
//! runner that executes the modules' jobs on the leader only. Jobs decide what is due
//! and publish it; workers do the heavy work.
//!
//! Timing: the lease lives `ttl`; the leader renews every `ttl / 3`. A renewal that
//! started at `t` and succeeded keeps the leader acting until `t + 2 ttl / 3` at most:
//! if it cannot renew by then, it stops its jobs (fencing; they get `ttl / 6` to finish
//! their step) while the lease is still its own, so two leaders never act at once. A leader that shuts down releases
//! the lease with a NOTIFY, so a standby takes over at once instead of after the TTL.

pub mod lease;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use sqlx::{PgPool, postgres::PgListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// A periodic job run by the leader.
pub trait Job: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn interval(&self) -> Duration;
    fn run(&self) -> BoxFuture<'_, Result<(), JobError>>;
    /// Upper bound of one run when it differs from the scheduler's `job_timeout`.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// Called when this process stops being the leader (e.g. to clear leader-only gauges).
    fn on_step_down(&self) {}
}

/// Runs `batch` (which handles at most `size` rows and says how many it did) until a
/// batch comes back short, at most `max` times, so a backlog never holds one long
/// transaction and the rest waits for the next tick.
pub async fn in_batches<F, Fut>(size: usize, max: usize, batch: F) -> Result<(), JobError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, JobError>>,
{
    for _ in 0..max {
        if batch().await? < size {
            break;
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub lease_ttl: Duration,
    /// This process's name in the lease (host/pid plus a random suffix).
    pub holder: String,
    /// Upper bound of one job run, unless the job sets its own.
    pub job_timeout: Duration,
}

pub struct Scheduler {
    pub db: PgPool,
    pub jobs: Vec<Arc<dyn Job>>,
    pub options: SchedulerOptions,
}

/// One leadership term: its jobs and the token that ends them.
/// A standby's next attempt comes this long after the holder's lease expires (clock
/// readings of one database: only the query's own latency to cover).
const LEASE_EXPIRY_MARGIN: Duration = Duration::from_millis(50);

/// How soon a failed lease attempt is tried again.
const RETRY_RENEWAL_AFTER: Duration = Duration::from_millis(500);

struct Term {
    stop: CancellationToken,
    jobs: JoinSet<()>,
}

impl Scheduler {
    /// Campaigns for the lease and runs the jobs while it holds it, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let ttl = self.options.lease_ttl;
        let renew_every = ttl / 3;
        let holder = self.options.holder.clone();
        let mut listener = self.listen().await;
        let mut term: Option<Term> = None;
        let mut acting_until = Instant::now();
        metrics::IS_LEADER.set(0);
        while !stop.is_cancelled() {
            let attempt = Instant::now();
            let mut renewed = false;
            // A standby tries again when the holder's lease runs out, not a fixed step
            // later: takeover within the TTL even when the leader died just after renewing.
            let mut standby_retry = renew_every;
            // A leader's renewal may not outlast its acting time: one that hung past it
            // (an unreachable database) would keep the leader acting after its lease.
            let budget = if term.is_some() {
                renew_every.min(acting_until.saturating_duration_since(attempt))
            } else {
                renew_every
            };
            match tokio::time::timeout(budget, lease::acquire(&self.db, &holder, ttl)).await {
                Ok(Ok(lease::Attempt::Held)) => {
                    renewed = true;
                    acting_until = attempt + ttl - renew_every;
                    if term.is_none() {
                        tracing::info!(%holder, "became the scheduler leader");
                        term = Some(self.start_term());
                    }
                }
                Ok(Ok(lease::Attempt::HeldByAnother { expires_in })) => {
                    renewed = true;
                    standby_retry = renew_every.min(expires_in + LEASE_EXPIRY_MARGIN);
                    if let Some(t) = term.take() {
                        tracing::warn!(%holder, "lost the scheduler lease to another process");
                        self.end_term(t).await;
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot renew the scheduler lease"),
                Err(_) => tracing::warn!("renewing the scheduler lease timed out"),
            }
            if term.is_some() && Instant::now() >= acting_until {
                tracing::error!(%holder, "could not renew the scheduler lease in time; stepping down");
                if let Some(t) = term.take() {
                    self.end_term(t).await;
                }
            }
            // After a failed renewal a leader tries again soon, not a third of the TTL
            // later: a database blip shorter than the TTL must not cost the lease.
            let next = match (renewed, term.is_some()) {
                (false, _) => RETRY_RENEWAL_AFTER,
                (true, true) => renew_every,
                (true, false) => standby_retry,
            };
            let wait = if term.is_some() {
                next.min(acting_until.saturating_duration_since(Instant::now()))
            } else {
                next
            };
            let released = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
                result = released, if term.is_none() => {
                    if result.is_err() {
                        listener = None;
                    }
                }
            }
        }
        if let Some(t) = term.take() {
            self.end_term(t).await;
            if let Err(error) = lease::release(&self.db, &holder).await {
                tracing::warn!(%error, "could not release the scheduler lease; it expires by itself");
            } else {
                tracing::info!(%holder, "released the scheduler lease");
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.db).await.ok()?;
        listener.listen(lease::RELEASE_CHANNEL).await.ok()?;
        Some(listener)
    }

    fn start_term(&self) -> Term {
        metrics::IS_LEADER.set(1);
        let stop = CancellationToken::new();
        let mut jobs = JoinSet::new();
        for job in &self.jobs {
            let job = job.clone();
            let stop = stop.clone();
            let timeout = self.options.job_timeout;
            jobs.spawn(async move { run_job(job, stop, timeout).await });
        }
        Term { stop, jobs }
    }

    /// Stops the term's jobs after their current step (bounded), then clears state.
    async fn end_term(&self, mut term: Term) {
        metrics::IS_LEADER.set(0);
        term.stop.cancel();
        // Jobs get a sixth of the TTL to finish their step, then are aborted (their
        // transactions roll back): with fencing at two thirds, all acting ends by five
        // sixths of the TTL, before the lease can expire.
        let drained = tokio::time::timeout(self.options.lease_ttl / 6, async {
            while term.jobs.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            term.jobs.abort_all();
        }
        for job in &self.jobs {
            job.on_step_down();
        }
    }
}

/// Runs one job every `interval` until the term ends; never overlaps itself, and a
/// failure is logged once and retried at the next tick.
async fn run_job(job: Arc<dyn Job>, stop: CancellationToken, default_timeout: Duration) {
    let name = job.name();
    let timeout = job.timeout().unwrap_or(default_timeout);
    loop {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, job.run()).await {
            Ok(Ok(())) => "success",
            Ok(Err(error)) => {
                tracing::warn!(job = name, %error, "scheduler job failed; retrying next tick");
                "failure"
            }
            Err(_) => {
                tracing::warn!(
                    job = name,
                    timeout_s = timeout.as_secs(),
                    "scheduler job timed out"
                );
                "timeout"
            }
        };
        metrics::JOB_RUNS.with_label_values(&[name, outcome]).inc();
        metrics::JOB_DURATION
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        if outcome == "success" {
            metrics::JOB_LAST_SUCCESS
                .with_label_values(&[name])
                .set(chrono::Utc::now().timestamp() as f64);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(job.interval().saturating_sub(started.elapsed())) => {}
        }
    }
}

pub mod metrics {
    //! Scheduler metrics of PRODUCT §10.
    use std::sync::LazyLock;

    use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

    use crate::metrics::register;

    pub static IS_LEADER: LazyLock<IntGauge> = LazyLock::new(|| {
        register(
            IntGauge::new(
                "storeops_scheduler_is_leader",
                "1 while this process holds the scheduler lease",
            )
            .expect("valid metric"),
        )
    });
    pub static JOB_RUNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_scheduler_job_runs_total",
                    "Scheduler job runs by outcome (success, failure, timeout)",
                ),
                &["name", "outcome"],
            )
            .expect("valid metric"),
        )
    });
    pub static JOB_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
        register(
            HistogramVec::new(
                HistogramOpts::new(
                    "storeops_scheduler_job_duration_seconds",
                    "Scheduler job run time",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]),
                &["name"],
            )
            .expect("valid metric"),
        )
    });
    pub static JOB_LAST_SUCCESS: LazyLock<GaugeVec> = LazyLock::new(|| {
        register(
            GaugeVec::new(
                Opts::new(
                    "storeops_scheduler_job_last_success_timestamp_seconds",
                    "Unix time of each job's last successful run",
                ),
                &["name"],
            )
            .expect("valid metric"),
        )
    });

    pub fn init() {
        LazyLock::force(&IS_LEADER);
        LazyLock::force(&JOB_RUNS);
        LazyLock::force(&JOB_DURATION);
        LazyLock::force(&JOB_LAST_SUCCESS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 ms of work a run, hourly.
    struct SlowJob {
        name: &'static str,
        timeout: Option<Duration>,
    }

    impl Job for SlowJob {
        fn name(&self) -> &'static str {
            self.name
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(3600)
        }
        fn timeout(&self) -> Option<Duration> {
            self.timeout
        }
        fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            })
        }
    }

    /// Successful and timed-out runs in the first second, under a scheduler bound of 30 ms.
    async fn first_run(name: &'static str, timeout: Option<Duration>) -> [u64; 2] {
        let stop = CancellationToken::new();
        let job = Arc::new(SlowJob { name, timeout });
        let runner = tokio::spawn(run_job(job, stop.clone(), Duration::from_millis(30)));
        // Ample time for the one run either way; the runner then waits for its next.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
        ["success", "timeout"]
            .map(|outcome| metrics::JOB_RUNS.with_label_values(&[name, outcome]).get())
    }

    #[tokio::test]
    async fn a_job_is_cut_at_the_scheduler_bound_unless_it_sets_its_own() {
        assert_eq!(first_run("test_cut_job", None).await, [0, 1]);
        assert_eq!(
            first_run("test_own_bound_job", Some(Duration::from_secs(5))).await,
            [1, 0]
        );
    }
}
