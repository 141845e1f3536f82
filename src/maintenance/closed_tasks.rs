//! Closed tasks past retention, deleted a batch at a time. Their days' statistics must
//! hold them first: each (store, local day) a batch touches gets its statistics written
//! if the statistics job never saw it (say, a backdated load), and marked `final`, so it
//! is never recomputed from the tasks that are left. A run remembers the days it has
//! made final, so once a day's first batch has passed, a batch is one indexed read and
//! one delete: the statistics lookups were most of a batch's time and WAL.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use crate::stores::StoreId;
use crate::tasks::TaskId;

/// (store, local day) pairs whose statistics this run has made final.
#[derive(Default)]
pub(super) struct FinalDays(HashSet<(StoreId, NaiveDate)>);

/// A first run over years of backlog could touch a million store-days; past this many
/// the memory is dropped and days are checked again (marking a final day is a no-op).
const MAX_REMEMBERED: usize = 200_000;

const DOOMED: &str = "
    SELECT t.id, t.store_id, (t.due_at AT TIME ZONE s.time_zone)::date
      FROM tasks t JOIN stores s ON s.id = t.store_id
     WHERE t.status IN ('done', 'cancelled', 'expired') AND t.updated_at < $1
     ORDER BY t.updated_at LIMIT $2";

/// Days without statistics are summarised as final; the others are marked final. The
/// two sets are disjoint, so the insert and the update never meet on a row.
const FINALISE: &str = "
    WITH days AS (
        SELECT * FROM unnest($1::uuid[], $2::date[]) AS d(store_id, day)
    ), unseen AS (
        SELECT refresh_daily_store_stats(array_agg(d.store_id), array_agg(d.day), true) AS rows
          FROM days d
         WHERE NOT EXISTS (SELECT 1 FROM daily_store_stats x WHERE x.store_id = d.store_id AND x.day = d.day)
    ), finalised AS (
        UPDATE daily_store_stats x SET final = true
          FROM days d
         WHERE x.store_id = d.store_id AND x.day = d.day AND NOT x.final
    )
    SELECT rows FROM unseen";

/// No `FOR UPDATE` before (see `Rule`); the predicate is checked again, for a task
/// changed since it was read.
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

/// Deletes up to `limit` closed tasks last changed before `before`, statistics first;
/// answers how many went. Runs inside the caller's transaction: a failure rolls the
/// marks back with the deletes, and ends the run (and with it what `final_days` holds).
pub(super) async fn prune_batch(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
    final_days: &mut FinalDays,
) -> Result<u64, sqlx::Error> {
    let doomed: Vec<(TaskId, StoreId, NaiveDate)> = sqlx::query_as(DOOMED)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut fresh = HashSet::new();
    let (mut stores, mut days) = (Vec::new(), Vec::new());
    for &(_, store, day) in &doomed {
        if !final_days.0.contains(&(store, day)) && fresh.insert((store, day)) {
            stores.push(store);
            days.push(day);
        }
    }
    if !fresh.is_empty() {
        sqlx::query(FINALISE)
            .bind(&stores)
            .bind(&days)
            .execute(&mut *conn)
            .await?;
        if final_days.0.len() + fresh.len() > MAX_REMEMBERED {
            final_days.0.clear();
        }
        final_days.0.extend(fresh);
    }
    let ids: Vec<TaskId> = doomed.iter().map(|&(id, ..)| id).collect();
    let deleted: i64 = sqlx::query_scalar(DELETE)
        .bind(&ids)
        .bind(before)
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
