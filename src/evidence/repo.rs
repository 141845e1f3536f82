//! SQL of the `evidence` table.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{ContentType, EvidenceState};
use crate::ids::{EvidenceId, StoreId, TaskId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvidenceRow {
    pub id: EvidenceId,
    pub task_id: TaskId,
    pub store_id: StoreId,
    pub item_key: String,
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub object_key: String,
    pub granted_by: String,
    pub expires_at: DateTime<Utc>,
    pub task_created_at: DateTime<Utc>,
    pub state: EvidenceState,
    pub attached_at: Option<DateTime<Utc>>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub captured_at: Option<DateTime<Utc>>,
    pub taken_before_task: Option<bool>,
    pub thumbnail_key: Option<String>,
    pub failure: Option<String>,
}

const COLUMNS: &str = "id, task_id, store_id, item_key, content_type, size_bytes, object_key,
    granted_by, expires_at, task_created_at, state, attached_at, width, height, captured_at,
    taken_before_task, thumbnail_key, failure";

pub struct NewGrant<'a> {
    pub id: EvidenceId,
    pub task_id: TaskId,
    pub store_id: StoreId,
    pub item_key: &'a str,
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub object_key: &'a str,
    pub granted_by: &'a str,
    pub expires_at: DateTime<Utc>,
    pub task_created_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut PgConnection, grant: &NewGrant<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO evidence (id, task_id, store_id, item_key, content_type, size_bytes, object_key,
                               granted_by, expires_at, task_created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(grant.id)
    .bind(grant.task_id)
    .bind(grant.store_id)
    .bind(grant.item_key)
    .bind(grant.content_type)
    .bind(grant.size_bytes)
    .bind(grant.object_key)
    .bind(grant.granted_by)
    .bind(grant.expires_at)
    .bind(grant.task_created_at)
    .execute(conn)
    .await
    .map(drop)
}

pub async fn find(
    conn: &mut PgConnection,
    id: EvidenceId,
) -> Result<Option<EvidenceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM evidence WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn find_many(db: &PgPool, ids: &[EvidenceId]) -> Result<Vec<EvidenceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM evidence WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// `granted` → `attached`, for the task it was granted for; `None` when it was not
/// (any more) a grant of this task.
pub async fn attach(
    conn: &mut PgConnection,
    id: EvidenceId,
    task: TaskId,
) -> Result<Option<EvidenceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE evidence SET state = 'attached', attached_at = now()
          WHERE id = $1 AND task_id = $2 AND state = 'granted'
          RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(task)
    .fetch_optional(conn)
    .await
}

/// The attached photos of a task, by id.
pub async fn attached_of(
    db: &PgPool,
    task: TaskId,
    after: Option<EvidenceId>,
    limit: i64,
) -> Result<Vec<EvidenceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM evidence
          WHERE task_id = $1 AND state <> 'granted' AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id LIMIT $3"
    )))
    .bind(task)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What the thumbnail worker learned.
pub struct ProcessedFields<'a> {
    pub width: i32,
    pub height: i32,
    pub captured_at: Option<DateTime<Utc>>,
    pub taken_before_task: Option<bool>,
    pub thumbnail_key: &'a str,
}

/// `attached` → `processed`; false when it was not attached (any more).
pub async fn mark_processed(
    conn: &mut PgConnection,
    id: EvidenceId,
    fields: &ProcessedFields<'_>,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE evidence SET state = 'processed', processed_at = now(), width = $2, height = $3,
                captured_at = $4, taken_before_task = $5, thumbnail_key = $6
          WHERE id = $1 AND state = 'attached'",
    )
    .bind(id)
    .bind(fields.width)
    .bind(fields.height)
    .bind(fields.captured_at)
    .bind(fields.taken_before_task)
    .bind(fields.thumbnail_key)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// `attached` → `failed`, with the reason.
pub async fn mark_failed(
    conn: &mut PgConnection,
    id: EvidenceId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE evidence SET state = 'failed', processed_at = now(), failure = left($2, 500)
          WHERE id = $1 AND state = 'attached'",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await
    .map(drop)
}
