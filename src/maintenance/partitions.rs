//! Partitioned tables: the outbox (daily by the UTC day of its UUIDv7 id) and, through
//! `tasks::retention`, the audit trail (`task_events`, monthly). Upkeep makes partitions
//! ahead; pruning drops old ones whole, which costs the same for a million rows as for
//! one.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::PgPool;

use crate::scheduler::{Job, JobError};

/// How far ahead partitions exist. Outbox days are small and many, so two weeks: an
/// insert with no partition fails, and this is how long the scheduler may be away.
const OUTBOX_DAYS_AHEAD: i32 = 14;

/// Makes the audit trail's partitions three months ahead (`tasks::retention`) and outbox
/// partitions two weeks ahead; returns how many it made of each.
pub async fn ensure_ahead(db: &PgPool) -> Result<(i32, i32), sqlx::Error> {
    let task_events = crate::tasks::retention::ensure_audit_partitions(db).await?;
    let outbox = sqlx::query_scalar(
        "SELECT outbox_ensure_partitions((now() AT TIME ZONE 'UTC')::date,
                                         (now() AT TIME ZONE 'UTC')::date + $1)",
    )
    .bind(OUTBOX_DAYS_AHEAD)
    .fetch_one(db)
    .await?;
    Ok((task_events, outbox))
}

/// The scheduler's partition upkeep, hourly.
pub struct Partitions {
    pub db: PgPool,
}

impl Job for Partitions {
    fn name(&self) -> &'static str {
        "partitions"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let (task_events, outbox) = ensure_ahead(&self.db).await?;
            if task_events + outbox > 0 {
                tracing::info!(task_events, outbox, "made partitions ahead");
            }
            Ok(())
        })
    }
}

/// Rows in a partition about to be dropped. Exact, but a sequential scan: the audit
/// trail's monthly partitions are dropped rarely and counted exactly.
pub async fn count_rows(db: &PgPool, partition: &str) -> Result<u64, sqlx::Error> {
    // The name comes from the catalog, not from input.
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {partition}"
    )))
    // Each name is asked about once: not worth a prepared statement.
    .persistent(false)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Outbox days that can go whole: their range ends before `before` and every row in
/// them was published before it (both answered from the partial indexes). With the
/// planner's row estimate of each (kept by autovacuum; counting a day exactly would
/// scan it, the very work dropping it avoids).
pub async fn droppable_outbox_days(
    db: &PgPool,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let days: Vec<(String, f32)> = sqlx::query_as(
        "SELECT c.relname::text, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'outbox'::regclass AND NOT i.inhdetachpending
            AND c.relname ~ '^outbox_[0-9]{4}_[0-9]{2}_[0-9]{2}$'
            AND (to_date(substr(c.relname, 8), 'YYYY_MM_DD') + 1)::timestamp AT TIME ZONE 'UTC' <= $1
          ORDER BY 1",
    )
    .bind(before)
    .fetch_all(db)
    .await?;
    let mut droppable = Vec::new();
    for (day, estimate) in days {
        if holds_unprunable_rows(db, &day, before).await? {
            continue;
        }
        let rows = if estimate >= 0.0 {
            // Row counts fit f32's range; the estimate is whole-numbered.
            estimate as u64
        } else {
            // Never vacuumed nor analysed: no estimate, so count.
            count_rows(db, &day).await?
        };
        droppable.push((day, rows));
    }
    Ok(droppable)
}

/// Whether an outbox day holds a row that is unpublished or published since `before`.
async fn holds_unprunable_rows(
    db: impl sqlx::PgExecutor<'_>,
    day: &str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    // The name comes from the catalog, not from input.
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {day} WHERE published_at IS NULL)
             OR EXISTS (SELECT 1 FROM {day} WHERE published_at >= $1)"
    )))
    .persistent(false)
    .bind(before)
    .fetch_one(db)
    .await
}

/// Removes an outbox day: detached concurrently (inserts into the outbox never wait
/// for it), checked again once no transaction can still write into it, then dropped.
/// Returns whether it went, and the longest statement it took.
pub async fn drop_outbox_day(
    db: &PgPool,
    day: &str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<(bool, Duration), sqlx::Error> {
    let mut conn = db.acquire().await?;
    // A session setting on a pooled connection: closed afterwards rather than reset.
    conn.close_on_drop();
    sqlx::raw_sql("SET lock_timeout = '1s'")
        .execute(&mut *conn)
        .await?;
    let started = Instant::now();
    // Not in a transaction: CONCURRENTLY commits in two steps of its own.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE outbox DETACH PARTITION {day} CONCURRENTLY"
    )))
    .execute(&mut *conn)
    .await?;
    let detaching = started.elapsed();
    let (dropped, dropping) = drop_detached_day(&mut conn, day, before).await?;
    Ok((dropped, detaching.max(dropping)))
}

/// Drops a detached outbox day, or attaches it again if it holds a row pruning must
/// keep (written after the first check, by a clock far behind).
async fn drop_detached_day(
    conn: &mut sqlx::PgConnection,
    day: &str,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<(bool, Duration), sqlx::Error> {
    if holds_unprunable_rows(&mut *conn, day, before).await? {
        tracing::warn!(
            partition = day,
            "outbox day holds rows to keep; attached again"
        );
        let bounds: (String, String) = sqlx::query_as(
            "SELECT uuid_v7_floor(d)::text, uuid_v7_floor(d + 1)::text
               FROM to_date(substr($1, 8), 'YYYY_MM_DD') d",
        )
        .bind(day)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE outbox ATTACH PARTITION {day} FOR VALUES FROM ('{}') TO ('{}')",
            bounds.0, bounds.1
        )))
        .execute(&mut *conn)
        .await?;
        return Ok((false, Duration::ZERO));
    }
    // A day can hold a gigabyte or more, and a drop waits while the disk frees (and, on
    // a `discard` mount, trims) every file: its indexes go one statement each before the
    // table, so no single statement removes all of it. Names come from the catalog.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT CASE WHEN c.conname IS NULL THEN format('DROP INDEX %s', i.indexrelid::regclass)
                     ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, c.conname) END
           FROM pg_index i
           LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
          WHERE i.indrelid = $1::regclass",
    )
    .bind(day)
    .fetch_all(&mut *conn)
    .await?;
    let mut longest = Duration::ZERO;
    for statement in indexes.into_iter().chain([format!("DROP TABLE {day}")]) {
        let started = Instant::now();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
        longest = longest.max(started.elapsed());
    }
    Ok((true, longest))
}

/// Outbox days an interrupted prune left half-detached (finished) or detached but not
/// dropped: each dropped, or attached again if it holds rows to keep.
pub async fn finish_interrupted(
    db: &PgPool,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let left: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, coalesce(i.inhdetachpending, false)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
          WHERE c.relname ~ '^outbox_[0-9]{4}_[0-9]{2}_[0-9]{2}$' AND c.relkind = 'r'
            AND (i.inhrelid IS NULL OR i.inhdetachpending)
          ORDER BY 1",
    )
    .fetch_all(db)
    .await?;
    let mut dropped = Vec::new();
    if left.is_empty() {
        return Ok(dropped);
    }
    let mut conn = db.acquire().await?;
    for (day, pending) in left {
        if pending {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE outbox DETACH PARTITION {day} FINALIZE"
            )))
            .execute(&mut *conn)
            .await?;
        }
        if drop_detached_day(&mut conn, &day, before).await?.0 {
            dropped.push(day);
        }
    }
    Ok(dropped)
}
