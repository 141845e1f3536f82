//! Retention of the tasks module's tables, which pruning (`maintenance`) schedules:
//! closed tasks past retention, read and deleted a batch at a time after pruning has
//! kept the days' statistics (`maintenance/closed_tasks.rs`), and the audit trail's
//! monthly partitions, made ahead and dropped whole.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use crate::ids::{StoreId, TaskId};

/// The batch is limited before the join, so the planner may hash the stores once
/// rather than probe them per task.
macro_rules! doomed {
    ($after:literal) => {
        concat!(
            concat!(
                "WITH doomed AS (
                 SELECT id, store_id, due_at, updated_at FROM tasks
                  WHERE status IN ",
                crate::tasks::task_status_sql!(closed),
                " AND updated_at < $1 "
            ),
            $after,
            " ORDER BY updated_at, id LIMIT $2
             )
             SELECT d.id, d.store_id, (d.due_at AT TIME ZONE s.time_zone)::date, d.updated_at
               FROM doomed d JOIN stores s ON s.id = d.store_id
              ORDER BY d.updated_at, d.id"
        )
    };
}
const DOOMED_FIRST: &str = doomed!("");
const DOOMED_AFTER: &str = doomed!("AND (updated_at, id) > ($3, $4)");

/// The next `limit` closed tasks last changed before `before`, after `after` in
/// (updated_at, id) order, each with its store and its local due day.
pub async fn closed_before(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
    after: Option<(DateTime<Utc>, TaskId)>,
) -> Result<Vec<(TaskId, StoreId, NaiveDate, DateTime<Utc>)>, sqlx::Error> {
    let sql = if after.is_some() {
        DOOMED_AFTER
    } else {
        DOOMED_FIRST
    };
    let mut query = sqlx::query_as(sql).bind(before).bind(limit);
    if let Some((updated_at, id)) = after {
        query = query.bind(updated_at).bind(id);
    }
    query.fetch_all(conn).await
}

/// No `FOR UPDATE` first (the delete locks its own rows); the predicate is checked
/// again, for a task changed since it was read.
const DELETE: &str = concat!(
    "
    WITH gone AS (
        DELETE FROM tasks WHERE id = ANY($1)
           AND status IN ",
    crate::tasks::task_status_sql!(closed),
    " AND updated_at < $2
        RETURNING id
    ), items AS (
        -- Relabel items carry no foreign key (bulk writes); they go with their task.
        DELETE FROM task_items WHERE task_id IN (SELECT id FROM gone)
    )
    SELECT id FROM gone"
);

/// Deletes those of `ids` that are still closed and last changed before `before`, with
/// their items and their photo evidence (whose objects `evidence` deletes after);
/// answers how many tasks went.
pub async fn delete_closed(
    conn: &mut PgConnection,
    ids: &[TaskId],
    before: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let gone: Vec<TaskId> = sqlx::query_scalar(DELETE)
        .bind(ids)
        .bind(before)
        .fetch_all(&mut *conn)
        .await?;
    crate::evidence::retention::release_tasks(conn, &gone).await?;
    Ok(i64::try_from(gone.len()).unwrap_or(i64::MAX))
}

/// Closed tasks last changed before `before` (what a dry run reports).
pub async fn count_closed(db: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(concat!(
        "SELECT count(*) FROM tasks WHERE status IN ",
        crate::tasks::task_status_sql!(closed),
        " AND updated_at < $1"
    ))
    .bind(before)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Makes the audit trail's monthly partitions three months ahead; answers how many.
pub async fn ensure_audit_partitions(db: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT task_events_ensure_partitions(current_date, (current_date + interval '3 months')::date)",
    )
    .fetch_one(db)
    .await
}

/// The audit trail's monthly partitions whose whole range is older than `before`.
pub async fn old_audit_partitions(
    db: &PgPool,
    before: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'task_events'::regclass
            AND c.relname ~ '^task_events_[0-9]{4}_[0-9]{2}$'
            AND (to_date(substr(c.relname, 13), 'YYYY_MM') + interval '1 month') <= $1
          ORDER BY 1",
    )
    .bind(before)
    .fetch_all(db)
    .await
}

/// Drops one of [`old_audit_partitions`] (or, `dry_run`, only counts it); answers its
/// rows. Counting is exact but a sequential scan: these go rarely, a month at a time.
pub async fn drop_audit_partition(
    db: &PgPool,
    partition: &str,
    dry_run: bool,
) -> Result<u64, sqlx::Error> {
    // The name comes from the catalog (`old_audit_partitions`), not from input.
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {partition}"
    )))
    // Each name is asked about once: not worth a prepared statement.
    .persistent(false)
    .fetch_one(db)
    .await?;
    if !dry_run {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {partition}"
        )))
        .execute(db)
        .await?;
    }
    Ok(u64::try_from(rows).unwrap_or(0))
}
