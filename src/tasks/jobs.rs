//! The tasks module's scheduler jobs: overdue detection and escalation, expiry, the
//! open/overdue state gauges.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use super::{
    events::{AuditKind, TaskEventKind, TaskOverdue, TaskSnapshot},
    repo::{TASK_COLUMNS, TaskRow},
    write,
};
use crate::{
    events::outbox,
    ids::{StoreId, TaskId},
    scheduler::{Job, JobError, in_batches},
};

/// Rows per transaction, so a backlog never holds one long transaction.
const BATCH: i64 = 500;
/// Batches per run; the rest waits for the next tick.
const MAX_BATCHES: usize = 40;

pub struct TaskJobsConfig {
    pub tick: Duration,
    pub escalation_delay: Duration,
}

pub fn jobs(db: &PgPool, config: &TaskJobsConfig) -> Vec<Arc<dyn Job>> {
    vec![
        Arc::new(Overdue {
            db: db.clone(),
            tick: config.tick,
            escalation_delay: config.escalation_delay,
        }),
        Arc::new(Expiry {
            db: db.clone(),
            tick: config.tick,
        }),
        Arc::new(StateGauges {
            db: db.clone(),
            tick: config.tick.max(Duration::from_secs(5)),
        }),
    ]
}

/// Bulk audit events (one statement) for the tasks a job changed.
async fn record_all(
    conn: &mut PgConnection,
    tasks: &[TaskRow],
    kind: AuditKind,
    data: &[serde_json::Value],
) -> Result<(), sqlx::Error> {
    let task_ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let store_ids: Vec<StoreId> = tasks.iter().map(|t| t.store_id).collect();
    write::record_many(conn, &task_ids, &store_ids, kind, "scheduler", data).await
}

#[derive(sqlx::FromRow)]
struct Escalated {
    #[sqlx(flatten)]
    task: TaskRow,
    overdue_level: i16,
}

/// `task.overdue` once at the due time (level 1: the store manager) and once more
/// after the escalation delay (level 2: the regional manager).
pub struct Overdue {
    db: PgPool,
    tick: Duration,
    escalation_delay: Duration,
}

impl Overdue {
    async fn batch(&self) -> Result<usize, JobError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let escalated: Vec<Escalated> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            concat!(
                "WITH due AS (
                SELECT id FROM tasks
                 WHERE status IN ",
                crate::tasks::task_status_sql!(active),
                " AND overdue_level < 2
                   AND ((overdue_level = 0 AND due_at <= now())
                     OR (overdue_level = 1 AND due_at <= now() - $1 * interval '1 second'))
                 ORDER BY due_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), escalated AS (
                UPDATE tasks t SET overdue_level = t.overdue_level + 1 FROM due WHERE t.id = due.id
                RETURNING t.*
             )
             SELECT {TASK_COLUMNS}, t.overdue_level FROM escalated t
               JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id"
            ),
            TASK_COLUMNS = TASK_COLUMNS
        )))
        .bind(self.escalation_delay.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if escalated.is_empty() {
            return Ok(0);
        }
        let levels: Vec<i16> = escalated.iter().map(|e| e.overdue_level).collect();
        let tasks: Vec<TaskRow> = escalated.into_iter().map(|e| e.task).collect();
        let data: Vec<serde_json::Value> = levels
            .iter()
            .map(|level| serde_json::json!({ "level": level }))
            .collect();
        record_all(&mut tx, &tasks, AuditKind::Overdue, &data).await?;
        let notices: Vec<TaskOverdue> = tasks
            .iter()
            .zip(&levels)
            .map(|(task, level)| TaskOverdue::new(TaskSnapshot::from(task), *level))
            .collect();
        outbox::enqueue_many(&mut tx, &notices).await?;
        tx.commit().await?;
        for level in &levels {
            super::metrics::ESCALATED
                .with_label_values(&[&level.to_string()])
                .inc();
        }
        Ok(tasks.len())
    }
}

impl Job for Overdue {
    fn name(&self) -> &'static str {
        "overdue"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(in_batches(BATCH as usize, MAX_BATCHES, || self.batch()))
    }
}

/// Tasks past their expiry time become `expired` (`task.expired`).
pub struct Expiry {
    db: PgPool,
    tick: Duration,
}

impl Expiry {
    async fn batch(&self) -> Result<usize, JobError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let tasks: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            concat!("WITH due AS (
                SELECT id FROM tasks
                 WHERE status IN ", crate::tasks::task_status_sql!(unfinished), " AND expires_at <= now()
                 ORDER BY expires_at LIMIT $1
                 FOR UPDATE SKIP LOCKED
             ), expired AS (
                UPDATE tasks t SET status = 'expired', row_version = t.row_version + 1, updated_at = now()
                  FROM due WHERE t.id = due.id
                RETURNING t.*
             )
             SELECT {TASK_COLUMNS} FROM expired t
               JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id"), TASK_COLUMNS = TASK_COLUMNS
        )))
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if tasks.is_empty() {
            return Ok(0);
        }
        let data = vec![serde_json::json!({}); tasks.len()];
        record_all(&mut tx, &tasks, AuditKind::Expired, &data).await?;
        let snapshots = tasks.iter().map(TaskSnapshot::from).collect();
        TaskEventKind::TaskExpired
            .enqueue_many(&mut tx, snapshots)
            .await?;
        tx.commit().await?;
        Ok(tasks.len())
    }
}

impl Job for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(in_batches(BATCH as usize, MAX_BATCHES, || self.batch()))
    }
}

/// `storeops_tasks_open{kind,region}` and `storeops_tasks_overdue{region}`, exported by
/// the leader only (a standby clears them, so sums over instances stay right).
pub struct StateGauges {
    db: PgPool,
    tick: Duration,
}

impl Job for StateGauges {
    fn name(&self) -> &'static str {
        "state_gauges"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                concat!("SELECT r.code, t.kind, count(*), count(*) FILTER (WHERE t.due_at < now())
                   FROM tasks t JOIN stores s ON s.id = t.store_id JOIN regions r ON r.id = s.region_id
                  WHERE t.status IN ", crate::tasks::task_status_sql!(unfinished), "
                  GROUP BY 1, 2"),
            )
            .fetch_all(&self.db)
            .await?;
            super::metrics::OPEN.reset();
            super::metrics::OVERDUE.reset();
            for (region, kind, open, overdue) in rows {
                super::metrics::OPEN
                    .with_label_values(&[&kind, &region])
                    .set(open);
                super::metrics::OVERDUE
                    .with_label_values(&[&region])
                    .add(overdue);
            }
            Ok(())
        })
    }

    fn on_step_down(&self) {
        super::metrics::OPEN.reset();
        super::metrics::OVERDUE.reset();
    }
}
