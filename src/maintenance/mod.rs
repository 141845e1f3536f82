//! Pruning (PRODUCT §8): keeps the database small as years pass, without blocking staff
//! traffic. Deletes go in small batches (each its own short transaction, under a
//! statement timeout) with pauses between them, so they can stop and resume anywhere;
//! the audit trail is pruned by dropping whole monthly partitions; daily statistics
//! hold every task before it is deleted; published outbox days are dropped whole.
//! `storeops prune [--dry-run]` runs it once; the scheduler's leader runs it hourly.

mod closed_tasks;
mod partitions;

use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::PgPool;

pub use self::partitions::{Partitions, ensure_ahead as ensure_partitions_ahead};
use crate::{
    config::Retention,
    db::PruneRule,
    scheduler::{Job, JobError},
};

/// What pruning removed (or, dry, would remove), per table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub rows: Vec<(&'static str, u64)>,
    pub dropped_partitions: Vec<String>,
    /// The slowest single statement (a batch or a partition drop).
    pub longest_statement: Duration,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, rows) in &self.rows {
            writeln!(f, "{table:20} {rows}")?;
        }
        for partition in &self.dropped_partitions {
            writeln!(f, "partition {partition}")?;
        }
        writeln!(
            f,
            "longest statement: {} ms",
            self.longest_statement.as_millis()
        )
    }
}

/// A table's retention setting.
type Age = fn(&Retention) -> Duration;

/// Each owner's batched delete, with its retention setting.
const RULES: [(PruneRule, Age); 5] = [
    (crate::events::outbox::OUTBOX_PRUNING, |r| r.outbox),
    (crate::events::consumer::INBOX_PRUNING, |r| r.inbox),
    (crate::tasks::idempotency::PRUNING, |r| r.idempotency_keys),
    (crate::webhooks::repo::DELIVERY_PRUNING, |r| {
        r.webhook_deliveries
    }),
    (crate::ingest::repo::INGEST_PRUNING, |r| r.ingests),
];

/// What one batch of a table does.
enum Batch<'a> {
    /// A rule's statement: binds the cutoff and the batch size, answers the rows gone.
    Sql(&'static str),
    /// Closed tasks, statistics first; the run's position and the days it made final
    /// carry from batch to batch.
    ClosedTasks(&'a mut closed_tasks::RunProgress),
    /// Photo grants never attached (their objects are queued for deletion).
    UnattachedEvidence,
    /// The store changes feed's log.
    TaskChanges,
}

/// How long pruning waits for the statistics to catch up before it deletes tasks.
const STATS_BUDGET: Duration = Duration::from_secs(120);

/// The scheduler runs pruning this often, each run bounded a little below it.
const RUN_EVERY: Duration = Duration::from_secs(3600);

pub struct Pruner {
    pub db: PgPool,
    pub retention: Retention,
    /// Photo evidence: grants never attached go after their attach window, and the
    /// objects of pruned evidence are deleted from the store (when one is configured).
    pub evidence: crate::evidence::Evidence,
}

/// How long to rest after a batch that took `busy` to stay within `duty_percent`.
fn rest_after(busy: Duration, duty_percent: u32) -> Duration {
    let duty = duty_percent.clamp(1, 100);
    busy * (100 - duty) / duty
}

fn cutoff(age: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

impl Pruner {
    /// Runs every rule to completion (or, with `dry_run`, counts what would go).
    pub async fn run_once(&self, dry_run: bool) -> Result<PruneReport, JobError> {
        let mut report = PruneReport::default();
        let tasks_cutoff = cutoff(self.retention.tasks);
        let removed = if dry_run {
            crate::tasks::retention::count_closed(&self.db, tasks_cutoff).await?
        } else {
            // Statistics first, so the batches rarely have a day to summarise.
            crate::reporting::stats::catch_up(&self.db, STATS_BUDGET).await?;
            self.batched(
                "tasks",
                Batch::ClosedTasks(&mut closed_tasks::RunProgress::default()),
                tasks_cutoff,
                &mut report.longest_statement,
            )
            .await?
        };
        report.rows.push(("tasks", removed));
        let outbox_days = self.outbox_days(dry_run, &mut report).await?;
        for (rule, age) in &RULES {
            let age = age(&self.retention);
            let removed = if dry_run {
                count(&self.db, rule.count, cutoff(age)).await?
            } else {
                self.batched(
                    rule.table,
                    Batch::Sql(rule.delete),
                    cutoff(age),
                    &mut report.longest_statement,
                )
                .await?
            };
            // A dry run's count includes the days that would go whole.
            let whole = if rule.table == "outbox" && !dry_run {
                outbox_days
            } else {
                0
            };
            report.rows.push((rule.table, removed + whole));
        }
        self.evidence(dry_run, &mut report).await?;
        let changes_cutoff = cutoff(self.retention.task_changes);
        let removed = if dry_run {
            crate::tasks::sync::count_changes(&self.db, changes_cutoff).await?
        } else {
            self.batched(
                "task_changes",
                Batch::TaskChanges,
                changes_cutoff,
                &mut report.longest_statement,
            )
            .await?
        };
        report.rows.push(("task_changes", removed));
        let partitions = crate::tasks::retention::old_audit_partitions(
            &self.db,
            cutoff(self.retention.task_events),
        )
        .await?;
        let mut rows = 0;
        for partition in &partitions {
            rows +=
                crate::tasks::retention::drop_audit_partition(&self.db, partition, dry_run).await?;
        }
        if !dry_run {
            metrics::PRUNED
                .with_label_values(&["task_events"])
                .inc_by(rows);
        }
        report.rows.push(("task_events", rows));
        report.dropped_partitions.extend(partitions);
        Ok(report)
    }

    /// Drops the outbox days that can go whole (finishing any an interrupted run left
    /// detached); returns their rows (estimated). A dry run only lists them.
    async fn outbox_days(&self, dry_run: bool, report: &mut PruneReport) -> Result<u64, JobError> {
        let before = cutoff(self.retention.outbox);
        if !dry_run {
            report
                .dropped_partitions
                .extend(partitions::finish_interrupted(&self.db, before).await?);
        }
        let mut rows = 0;
        for (day, estimate) in partitions::droppable_outbox_days(&self.db, before).await? {
            if dry_run {
                report.dropped_partitions.push(day);
                continue;
            }
            let (dropped, took) = partitions::drop_outbox_day(&self.db, &day, before).await?;
            report.longest_statement = report.longest_statement.max(took);
            if dropped {
                rows += estimate;
                report.dropped_partitions.push(day);
            }
        }
        metrics::PRUNED.with_label_values(&["outbox"]).inc_by(rows);
        Ok(rows)
    }

    /// Grants never attached, past their attach window; then the objects of every
    /// evidence row pruned (these and the photos of pruned tasks).
    async fn evidence(&self, dry_run: bool, report: &mut PruneReport) -> Result<(), JobError> {
        let attach_window = self.evidence.config.attach_window;
        let before = cutoff(attach_window);
        let released = if dry_run {
            crate::evidence::retention::count_unattached(&self.db, before).await?
        } else {
            self.batched(
                "evidence",
                Batch::UnattachedEvidence,
                before,
                &mut report.longest_statement,
            )
            .await?
        };
        report.rows.push(("evidence", released));
        let mut objects = 0;
        if let (Some(store), false) = (&self.evidence.store, dry_run) {
            loop {
                let deleted = crate::evidence::retention::delete_queued_objects(
                    &self.db,
                    store,
                    self.retention.batch_size,
                )
                .await
                .map_err(|e| JobError::Other(e.to_string()))?;
                objects += deleted;
                metrics::PRUNED
                    .with_label_values(&["evidence_objects"])
                    .inc_by(deleted);
                if deleted < u64::try_from(self.retention.batch_size).unwrap_or(u64::MAX) {
                    break;
                }
                tokio::time::sleep(self.retention.pause).await;
            }
        }
        report.rows.push(("evidence_objects", objects));
        Ok(())
    }

    /// Deletes in batches, each its own short transaction, pausing in between.
    async fn batched(
        &self,
        table: &'static str,
        mut batch: Batch<'_>,
        before: chrono::DateTime<chrono::Utc>,
        longest: &mut Duration,
    ) -> Result<u64, JobError> {
        let mut total = 0;
        loop {
            let mut tx = crate::db::begin(&self.db).await?;
            // A batch that cannot finish quickly is cut short rather than block others.
            sqlx::raw_sql("SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '1s'")
                .execute(&mut *tx)
                .await?;
            let started = std::time::Instant::now();
            // Rows the batch took up and rows it deleted: a rule deletes what it reads;
            // a closed task changed meanwhile is read but stays.
            let (read, deleted) = match &mut batch {
                Batch::Sql(sql) => {
                    let deleted: i64 = sqlx::query_scalar(*sql)
                        .bind(before)
                        .bind(self.retention.batch_size)
                        .fetch_one(&mut *tx)
                        .await?;
                    let deleted = u64::try_from(deleted).unwrap_or(0);
                    (deleted, deleted)
                }
                Batch::ClosedTasks(progress) => {
                    closed_tasks::prune_batch(&mut tx, before, self.retention.batch_size, progress)
                        .await?
                }
                Batch::TaskChanges => {
                    let pruned = crate::tasks::sync::prune_changes(
                        &mut tx,
                        before,
                        self.retention.batch_size,
                    )
                    .await?;
                    (pruned, pruned)
                }
                Batch::UnattachedEvidence => {
                    let released = crate::evidence::retention::release_unattached(
                        &mut tx,
                        before,
                        self.retention.batch_size,
                    )
                    .await?;
                    (released, released)
                }
            };
            *longest = (*longest).max(started.elapsed());
            tx.commit().await?;
            total += deleted;
            metrics::PRUNED.with_label_values(&[table]).inc_by(deleted);
            if read < u64::try_from(self.retention.batch_size).unwrap_or(u64::MAX) {
                return Ok(total);
            }
            // Throttle to the duty cycle: rest long enough after each batch that pruning
            // yields most of the database to staff traffic.
            tokio::time::sleep(
                self.retention
                    .pause
                    .max(rest_after(started.elapsed(), self.retention.duty_percent)),
            )
            .await;
        }
    }
}

async fn count(
    db: &PgPool,
    sql: &'static str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, JobError> {
    let n: i64 = sqlx::query_scalar(sql).bind(before).fetch_one(db).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Job for Pruner {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn interval(&self) -> Duration {
        RUN_EVERY
    }

    /// A run with a backlog rests most of its time (the duty cycle), so it may take most
    /// of its interval rather than the scheduler's usual bound, which would cut it, and
    /// every rule after the first, short each hour. A leader that steps down still stops
    /// it within the fencing window: each batch is its own transaction.
    fn timeout(&self) -> Option<Duration> {
        Some(RUN_EVERY - Duration::from_secs(5 * 60))
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let report = self.run_once(false).await?;
            tracing::info!(removed = ?report.rows, partitions = ?report.dropped_partitions, "pruned");
            Ok(())
        })
    }
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::{IntCounterVec, Opts};

    pub static PRUNED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_pruned_rows_total",
                    "Rows removed by pruning, by table",
                ),
                &["table"],
            )
            .expect("valid metric"),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rests_to_stay_within_the_duty_cycle() {
        let batch = Duration::from_millis(100);
        assert_eq!(rest_after(batch, 20), Duration::from_millis(400));
        assert_eq!(rest_after(batch, 10), Duration::from_millis(900));
        assert_eq!(rest_after(batch, 100), Duration::ZERO);
        // Out of range is clamped rather than dividing by zero.
        assert_eq!(rest_after(batch, 0), Duration::from_millis(9900));
    }
}
