//! Tasks exactly as a test or benchmark states them: any status and any past, written
//! straight to the tables (no audit event, no outbox row). Here because only `tasks`
//! writes its tables; tests that need history (pruning, reports, the scheduler's jobs)
//! build it with this rather than with SQL of their own.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{TaskSource, TaskStatus};
use crate::ids::{StoreId, TaskId, TaskKind};

/// A task to insert; every field defaults to an open ad-hoc task due in an hour.
#[derive(Debug, Clone)]
pub struct TaskFixture {
    pub store_id: StoreId,
    pub title: String,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub status: TaskStatus,
    pub due_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Defaults to now.
    pub created_at: Option<DateTime<Utc>>,
    /// Defaults to now.
    pub updated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl TaskFixture {
    pub fn new(store_id: StoreId, title: impl Into<String>) -> Self {
        Self {
            store_id,
            title: title.into(),
            kind: TaskKind::Adhoc,
            source: TaskSource::Manual,
            status: TaskStatus::Open,
            due_at: Utc::now() + chrono::Duration::hours(1),
            expires_at: None,
            created_at: None,
            updated_at: None,
            completed_at: None,
            cancelled_at: None,
        }
    }

    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = status;
        self
    }

    pub fn due_at(mut self, at: DateTime<Utc>) -> Self {
        self.due_at = at;
        self
    }

    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }

    pub fn created_at(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = Some(at);
        self
    }

    pub fn updated_at(mut self, at: DateTime<Utc>) -> Self {
        self.updated_at = Some(at);
        self
    }

    pub fn completed_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.completed_at = at;
        self
    }

    pub fn cancelled_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.cancelled_at = at;
        self
    }

    pub async fn insert(&self, db: &PgPool) -> Result<TaskId, sqlx::Error> {
        let mut conn = db.acquire().await?;
        self.insert_in(&mut conn).await
    }

    /// As [`insert`](Self::insert), in the caller's connection (or transaction).
    pub async fn insert_in(&self, conn: &mut sqlx::PgConnection) -> Result<TaskId, sqlx::Error> {
        let id = TaskId::generate();
        sqlx::query(
            "INSERT INTO tasks (id, store_id, kind, source, title, status, due_at, expires_at,
                                created_at, updated_at, completed_at, cancelled_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now()), COALESCE($10, now()),
                     $11, $12, 'test')",
        )
        .bind(id)
        .bind(self.store_id)
        .bind(self.kind)
        .bind(self.source)
        .bind(&self.title)
        .bind(self.status)
        .bind(self.due_at)
        .bind(self.expires_at)
        .bind(self.created_at)
        .bind(self.updated_at)
        .bind(self.completed_at)
        .bind(self.cancelled_at)
        .execute(conn)
        .await?;
        Ok(id)
    }

    /// A relabel item of task `id` (any state), as a price batch would have written it.
    pub async fn insert_item(
        db: &PgPool,
        id: TaskId,
        sku: &str,
        state: super::TaskItemState,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO task_items (task_id, sku, store_id, ingest_id, name, new_price, currency, state)
             SELECT t.id, $2, t.store_id, gen_random_uuid(), 'item', 1, 'EUR', $3 FROM tasks t WHERE t.id = $1",
        )
        .bind(id)
        .bind(sku)
        .bind(state)
        .execute(db)
        .await
        .map(drop)
    }
}

/// `n` audit events on the first days of the month of `at` (tasks long gone), in a
/// partition made for them.
pub async fn audit_events(db: &PgPool, at: DateTime<Utc>, n: i32) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT task_events_ensure_partitions($1::date, $1::date)")
        .bind(at)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO task_events (id, task_id, store_id, occurred_at, kind, actor)
         SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
                date_trunc('month', $1::timestamptz) + interval '1 day', 'created', 'test'
           FROM generate_series(1, $2)",
    )
    .bind(at)
    .bind(n)
    .execute(db)
    .await
    .map(drop)
}
