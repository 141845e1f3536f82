//! Daily statistics (PRODUCT §8, §9): per store, local day of the due time, kind and
//! template. The scheduler's leader folds task changes into them every
//! REPORT_STATS_INTERVAL_SECONDS, so compliance reports read summaries, and pruning
//! removes only tasks whose changes are already folded in, so reports over pruned
//! periods stay complete.
//!
//! Each run recomputes the (store, day) pairs touched since the last run: tasks whose
//! `updated_at` moved, and open tasks whose due time passed (they became overdue
//! without a write). It walks `updated_at` in windows of at most [`WINDOW_TASKS`]
//! tasks, one short transaction each, recording how far it got, so the first run over
//! years of history and a run cut short both resume where they stopped.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::PgPool;

use crate::scheduler::{Job, JobError};

/// Tasks per window: bounds each statement on a backfill.
const WINDOW_TASKS: i64 = 50_000;
/// Re-reads this much before the last mark: a transaction that stamped `updated_at`
/// before the mark may commit after it (statements are limited to seconds).
const OVERLAP: Duration = Duration::from_secs(300);
/// A run stops opening windows after this long and resumes on the next tick.
const RUN_BUDGET: Duration = Duration::from_secs(20);

/// Recomputes every (store, day) pair with a change in [$1, $2) (see the SQL function
/// `refresh_daily_store_stats`). Days that pruning touched keep their numbers.
const REFRESH_WINDOW: &str = concat!(
    "
    WITH changed AS (
        SELECT store_id, due_at FROM tasks WHERE updated_at >= $1 AND updated_at < $2
        UNION ALL
        SELECT store_id, due_at FROM tasks
         WHERE status IN ",
    crate::tasks::task_status_sql!(active),
    " AND overdue_level < 2 AND due_at >= $1 AND due_at < $2
    ), pairs AS (
        SELECT DISTINCT c.store_id, (c.due_at AT TIME ZONE s.time_zone)::date AS day
          FROM changed c JOIN stores s ON s.id = c.store_id
    )
    SELECT coalesce(refresh_daily_store_stats(array_agg(store_id), array_agg(day), false), 0)
      FROM pairs"
);

/// The scheduler job.
pub struct DailyStats {
    pub db: PgPool,
    pub interval: Duration,
}

/// What one catch-up did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refresh {
    pub windows: u32,
    pub rows: u64,
    /// Whether it reached the present (false: the budget ran out first).
    pub caught_up: bool,
}

/// How far the statistics have caught up with task changes.
pub async fn refreshed_through(db: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT refreshed_through FROM daily_stats_progress")
        .fetch_optional(db)
        .await
}

/// Folds task changes into the statistics until caught up or `budget` has passed.
pub async fn catch_up(db: &PgPool, budget: Duration) -> Result<Refresh, sqlx::Error> {
    let started = Instant::now();
    let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
    let mut from = match refreshed_through(db).await? {
        Some(mark) => mark - overlap,
        None => sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
            "SELECT least(min(updated_at), min(due_at)) FROM tasks",
        )
        .fetch_one(db)
        .await?
        .unwrap_or_else(Utc::now),
    };
    let mut refresh = Refresh::default();
    // Bounded: every window moves `from` forward by at least one task or ends the run.
    while started.elapsed() < budget {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(db).await?;
        let window_end: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT updated_at FROM tasks WHERE updated_at > $1 AND updated_at < $2
              ORDER BY updated_at OFFSET $3 LIMIT 1",
        )
        .bind(from)
        .bind(now)
        .bind(WINDOW_TASKS)
        .fetch_optional(db)
        .await?;
        let to = window_end.unwrap_or(now);
        let mut tx = crate::db::begin(db).await?;
        let rows: i64 = sqlx::query_scalar(REFRESH_WINDOW)
            .bind(from)
            .bind(to)
            .fetch_one(&mut *tx)
            .await?;
        let rows = u64::try_from(rows).unwrap_or_default();
        sqlx::query(
            "INSERT INTO daily_stats_progress (refreshed_through, refreshed_at) VALUES ($1, now())
             ON CONFLICT (singleton) DO UPDATE
                SET refreshed_through = greatest(daily_stats_progress.refreshed_through, EXCLUDED.refreshed_through),
                    refreshed_at = now()",
        )
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        refresh.windows += 1;
        refresh.rows += rows;
        from = to;
        if window_end.is_none() {
            refresh.caught_up = true;
            break;
        }
    }
    metrics::ROWS.inc_by(refresh.rows);
    Ok(refresh)
}

impl Job for DailyStats {
    fn name(&self) -> &'static str {
        "daily_stats"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let refresh = catch_up(&self.db, RUN_BUDGET).await?;
            if !refresh.caught_up {
                tracing::info!(
                    windows = refresh.windows,
                    rows = refresh.rows,
                    "daily statistics still catching up"
                );
            }
            Ok(())
        })
    }
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::IntCounter;

    pub static ROWS: LazyLock<IntCounter> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounter::new(
                "storeops_daily_stats_rows_written_total",
                "Daily statistics rows written or refreshed by the statistics job",
            )
            .expect("valid metric"),
        )
    });
}
