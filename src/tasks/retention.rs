//! Closed tasks past retention: the reads and deletes that pruning
//! (`maintenance/closed_tasks.rs`) runs a batch at a time, after it has kept the days'
//! statistics.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::TaskId;
use crate::stores::StoreId;

/// The batch is limited before the join, so the planner may hash the stores once
/// rather than probe them per task.
macro_rules! doomed {
    ($after:literal) => {
        concat!(
            "WITH doomed AS (
                 SELECT id, store_id, due_at, updated_at FROM tasks
                  WHERE status IN ('done', 'cancelled', 'expired') AND updated_at < $1 ",
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
const DELETE: &str = "
    WITH gone AS (
        DELETE FROM tasks WHERE id = ANY($1)
           AND status IN ('done', 'cancelled', 'expired') AND updated_at < $2
        RETURNING id
    ), items AS (
        -- Relabel items carry no foreign key (bulk writes); they go with their task.
        DELETE FROM task_items WHERE task_id IN (SELECT id FROM gone)
    )
    SELECT count(*) FROM gone";

/// Deletes those of `ids` that are still closed and last changed before `before`, with
/// their items; answers how many tasks went.
pub async fn delete_closed(
    conn: &mut PgConnection,
    ids: &[TaskId],
    before: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(DELETE)
        .bind(ids)
        .bind(before)
        .fetch_one(conn)
        .await
}
