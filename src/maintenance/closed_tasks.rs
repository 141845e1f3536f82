//! Closed tasks past retention, deleted a batch at a time. Their days' statistics must
//! hold them first: each (store, local day) a batch touches gets its statistics written
//! if the statistics job never saw it (say, a backdated load), and marked `final`, so it
//! is never recomputed from the tasks that are left.
//!
//! A run walks the closed tasks in (updated_at, id) order and each batch continues after
//! the last task of the one before: restarting at the index's head would step over every
//! entry deleted so far that is not yet removable, so each batch would cost more than the
//! last. A run also remembers the days it has made final, so once a day's first batch
//! has passed, a batch is one indexed read and one delete.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use crate::{
    ids::{StoreId, TaskId},
    tasks::retention,
};

/// Where a run has got to: the last task it deleted (or skipped) and the (store, local
/// day) pairs whose statistics it has made final.
#[derive(Default)]
pub(super) struct RunProgress {
    after: Option<(DateTime<Utc>, TaskId)>,
    final_days: HashSet<(StoreId, NaiveDate)>,
}

/// A first run over years of backlog could touch a million store-days; past this many
/// the memory is dropped and days are checked again (marking a final day is a no-op).
const MAX_REMEMBERED: usize = 200_000;

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

/// Deletes the next `limit` closed tasks last changed before `before`, statistics
/// first; answers how many it read (fewer than `limit`: the run is done) and how many
/// went. Runs inside the caller's transaction: a failure rolls the marks back with the
/// deletes and ends the run, and with it `progress`.
pub(super) async fn prune_batch(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
    progress: &mut RunProgress,
) -> Result<(u64, u64), sqlx::Error> {
    let doomed = retention::closed_before(&mut *conn, before, limit, progress.after).await?;
    let Some(&(last_id, _, _, last_updated_at)) = doomed.last() else {
        return Ok((0, 0));
    };
    let mut fresh = HashSet::new();
    let (mut stores, mut days) = (Vec::new(), Vec::new());
    for &(_, store, day, _) in &doomed {
        if !progress.final_days.contains(&(store, day)) && fresh.insert((store, day)) {
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
        if progress.final_days.len() + fresh.len() > MAX_REMEMBERED {
            progress.final_days.clear();
        }
        progress.final_days.extend(fresh);
    }
    let ids: Vec<TaskId> = doomed.iter().map(|&(id, ..)| id).collect();
    let deleted = retention::delete_closed(&mut *conn, &ids, before).await?;
    progress.after = Some((last_updated_at, last_id));
    let read = u64::try_from(doomed.len()).unwrap_or(u64::MAX);
    Ok((read, u64::try_from(deleted).unwrap_or(0)))
}
