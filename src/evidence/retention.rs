//! Pruning of photo evidence: a pruned task's photos and grants never attached go, row
//! and objects. Rows leave in the transaction that decides it, their object keys
//! queued in `evidence_deletions`; the objects are then deleted from the store a batch
//! at a time (deleting an object twice is harmless, so an interrupted run just repeats
//! its last batch).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::ObjectStore;
use crate::ids::TaskId;

/// Removes the evidence of deleted tasks, queueing their objects (original and
/// thumbnail) for deletion. Called by `tasks::retention` in its delete's transaction.
pub async fn release_tasks(conn: &mut PgConnection, tasks: &[TaskId]) -> Result<u64, sqlx::Error> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let released: i64 = sqlx::query_scalar(
        "WITH gone AS (
            DELETE FROM evidence WHERE task_id = ANY($1) RETURNING object_key, thumbnail_key
         ), queued AS (
            INSERT INTO evidence_deletions (object_key)
            SELECT k FROM gone, LATERAL (VALUES (object_key), (thumbnail_key)) AS keys(k)
             WHERE k IS NOT NULL
            ON CONFLICT DO NOTHING
         )
         SELECT count(*) FROM gone",
    )
    .bind(tasks)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(released).unwrap_or(0))
}

/// Grants never attached whose attach window ended before `before`: up to `limit` go,
/// their objects (uploaded or not) queued for deletion. Answers how many.
pub async fn release_unattached(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let released: i64 = sqlx::query_scalar(
        "WITH gone AS (
            DELETE FROM evidence WHERE id IN (
                SELECT id FROM evidence WHERE state = 'granted' AND expires_at < $1
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING object_key
         ), queued AS (
            INSERT INTO evidence_deletions (object_key) SELECT object_key FROM gone
            ON CONFLICT DO NOTHING
         )
         SELECT count(*) FROM gone",
    )
    .bind(before)
    .bind(limit)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(released).unwrap_or(0))
}

/// Grants never attached that a run would release (a dry run's count).
pub async fn count_unattached(db: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM evidence WHERE state = 'granted' AND expires_at < $1",
    )
    .bind(before)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Deletes up to `limit` queued objects from the store, then their queue rows;
/// answers how many. An object the store cannot delete now stays queued.
pub async fn delete_queued_objects(
    db: &PgPool,
    store: &ObjectStore,
    limit: i64,
) -> Result<u64, RetentionError> {
    let mut tx = db.begin().await?;
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT object_key FROM evidence_deletions ORDER BY queued_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    for key in &keys {
        store.delete(key).await?;
    }
    sqlx::query("DELETE FROM evidence_deletions WHERE object_key = ANY($1)")
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(u64::try_from(keys.len()).unwrap_or(0))
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}
