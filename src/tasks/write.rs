//! The one way tasks change. Every write of `tasks` and `task_events`, and every
//! `task.*` event, goes through these functions (task items: `relabel.rs`; pruning:
//! `retention.rs`); campaigns, schedules, ingest and the scheduler's jobs call them.
//! Each runs in the caller's transaction, and writes the row, its audit event and its
//! outbox event together.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    Action, Priority, TaskSource, TaskStatus,
    events::{AuditKind, TaskEventKind, TaskSnapshot},
    metrics,
    repo::{self, TaskRow},
};
use crate::ids::{CampaignId, IngestId, StaffId, StoreId, TaskId, TaskKind, TemplateId};

/// A task created by hand (`POST /stores/{id}/tasks`).
pub struct NewTask<'a> {
    pub store_id: StoreId,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub template: Option<(TemplateId, i32)>,
    pub priority: Priority,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: &'a str,
}

/// Inserts a task with its `created` audit event and `task.created`.
pub async fn create(conn: &mut PgConnection, task: &NewTask<'_>) -> Result<TaskRow, sqlx::Error> {
    let id = TaskId::generate();
    sqlx::query(
        "INSERT INTO tasks (id, store_id, kind, source, title, description, template_id, template_version,
                            priority, assignee_id, review_required, due_at, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(task.store_id)
    .bind(task.kind.as_str())
    .bind(task.source.as_str())
    .bind(task.title)
    .bind(task.description)
    .bind(task.template.map(|t| t.0))
    .bind(task.template.map(|t| t.1))
    .bind(task.priority.as_str())
    .bind(task.assignee_id)
    .bind(task.review_required)
    .bind(task.due_at)
    .bind(task.expires_at)
    .bind(task.created_by)
    .execute(&mut *conn)
    .await?;
    let data = serde_json::json!({"source": task.source.as_str()});
    announce(conn, id, AuditKind::Created, task.created_by, data).await
}

/// When tasks created for many stores at once are due.
#[derive(Debug, Clone, Copy)]
pub enum Due {
    /// The same instant everywhere.
    At(DateTime<Utc>),
    /// A wall-clock time, in each store's own time zone.
    Local(NaiveDateTime),
}

/// What made tasks for many stores; each origin makes at most one task per store.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    Campaign(CampaignId),
    /// A schedule's occurrence; stores closed on its local date get none.
    Occurrence {
        at: DateTime<Utc>,
        local_date: NaiveDate,
    },
    /// A price batch's relabel tasks.
    PriceBatch(IngestId),
}

/// One task in each of `stores` (campaign fan-out, schedule occurrences, price batches).
pub struct ManyTasks<'a> {
    pub stores: &'a [StoreId],
    pub origin: Origin,
    pub kind: TaskKind,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub template: Option<(TemplateId, i32)>,
    pub priority: Priority,
    pub review_required: bool,
    pub due: Due,
    pub created_by: &'a str,
}

/// A task created in bulk.
#[derive(Debug, sqlx::FromRow)]
pub struct CreatedTask {
    pub id: TaskId,
    pub store_id: StoreId,
    pub region: String,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: String,
    pub campaign_id: Option<CampaignId>,
    pub due_at: DateTime<Utc>,
}

impl From<&CreatedTask> for TaskSnapshot {
    fn from(task: &CreatedTask) -> Self {
        Self {
            task_id: task.id,
            store_id: task.store_id,
            region: task.region.clone(),
            kind: task.kind,
            source: task.source,
            status: TaskStatus::Open,
            title: task.title.clone(),
            assignee_id: None,
            campaign_id: task.campaign_id,
            due_at: task.due_at,
            completed_at: None,
        }
    }
}

/// The set-based insert of [`create_many`]; `$conflict` is the origin's unique key, so
/// a redelivered fan-out or occurrence creates nothing twice.
macro_rules! insert_many {
    ($conflict:literal) => {
        concat!(
            "WITH inserted AS (
                INSERT INTO tasks (id, store_id, kind, source, title, description, template_id, template_version,
                                   priority, review_required, due_at, created_by, campaign_id, occurrence_at, ingest_id)
                SELECT c.id, s.id, $3, $4, $5, $6, $7, $8, $9, $10,
                       COALESCE($11, ($12::timestamp AT TIME ZONE s.time_zone)), $13, $14, $15, $16
                  FROM unnest($1::uuid[], $2::uuid[]) AS c(store_id, id)
                  JOIN stores s ON s.id = c.store_id
                 WHERE $17::date IS NULL
                    OR NOT EXISTS (SELECT 1 FROM store_closures x WHERE x.store_id = s.id AND x.closed_on = $17)
                ON CONFLICT ",
            $conflict,
            " DO NOTHING
                RETURNING id, store_id, kind, source, title, campaign_id, due_at
             )
             SELECT i.id, i.store_id, r.code AS region, i.kind, i.source, i.title, i.campaign_id, i.due_at
               FROM inserted i JOIN stores s ON s.id = i.store_id JOIN regions r ON r.id = s.region_id"
        )
    };
}

/// Creates one task per store (in one statement), with their audit events and
/// `task.created` events; answers the tasks it created (none for a store that already
/// has this origin's task, or is closed on an occurrence's day).
pub async fn create_many(
    conn: &mut PgConnection,
    tasks: &ManyTasks<'_>,
) -> Result<Vec<CreatedTask>, sqlx::Error> {
    if tasks.stores.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, source, campaign, occurrence, ingest, closed_on) = match tasks.origin {
        Origin::Campaign(id) => (
            insert_many!("(campaign_id, store_id) WHERE campaign_id IS NOT NULL"),
            TaskSource::Campaign,
            Some(id),
            None,
            None,
            None,
        ),
        Origin::Occurrence { at, local_date } => (
            insert_many!("(template_id, store_id, occurrence_at) WHERE occurrence_at IS NOT NULL"),
            TaskSource::Schedule,
            None,
            Some(at),
            None,
            Some(local_date),
        ),
        Origin::PriceBatch(id) => (
            insert_many!("(ingest_id, store_id) WHERE kind = 'price_relabel'"),
            TaskSource::PriceChange,
            None,
            None,
            Some(id),
            None,
        ),
    };
    let (due_at, due_local) = match tasks.due {
        Due::At(at) => (Some(at), None),
        Due::Local(local) => (None, Some(local)),
    };
    let ids: Vec<TaskId> = tasks.stores.iter().map(|_| TaskId::generate()).collect();
    let created: Vec<CreatedTask> = sqlx::query_as(sql)
        .bind(tasks.stores)
        .bind(&ids)
        .bind(tasks.kind.as_str())
        .bind(source.as_str())
        .bind(tasks.title)
        .bind(tasks.description)
        .bind(tasks.template.map(|t| t.0))
        .bind(tasks.template.map(|t| t.1))
        .bind(tasks.priority.as_str())
        .bind(tasks.review_required)
        .bind(due_at)
        .bind(due_local)
        .bind(tasks.created_by)
        .bind(campaign)
        .bind(occurrence)
        .bind(ingest)
        .bind(closed_on)
        .fetch_all(&mut *conn)
        .await?;
    if created.is_empty() {
        return Ok(created);
    }
    let task_ids: Vec<TaskId> = created.iter().map(|t| t.id).collect();
    let store_ids: Vec<StoreId> = created.iter().map(|t| t.store_id).collect();
    let data = vec![serde_json::json!({"source": source.as_str()}); created.len()];
    record_many(
        conn,
        &task_ids,
        &store_ids,
        AuditKind::Created,
        tasks.created_by,
        &data,
    )
    .await?;
    let snapshots = created.iter().map(TaskSnapshot::from).collect();
    TaskEventKind::TaskCreated
        .enqueue_many(conn, snapshots)
        .await?;
    count_created(tasks.kind, source, created.len());
    Ok(created)
}

/// What a transition writes besides the status.
#[derive(Debug, Default)]
pub struct TransitionWrite {
    pub answers: Option<Value>,
    pub evidence: Option<Value>,
}

/// Staff's transition of a task (locked by the caller, checked against the transition
/// table): the new status, its audit event and its `task.*` event.
pub async fn transition(
    conn: &mut PgConnection,
    id: TaskId,
    action: Action,
    to: TaskStatus,
    write: &TransitionWrite,
    actor: &str,
    detail: Value,
) -> Result<TaskRow, sqlx::Error> {
    set_status(conn, id, to, write, actor, action.recorded_as(to), detail).await
}

/// Moves a task (locked by the caller) to `to`, stamping the matching timestamp and
/// bumping its ETag; records `recorded` in the audit trail and emits `event`.
async fn set_status(
    conn: &mut PgConnection,
    id: TaskId,
    to: TaskStatus,
    write: &TransitionWrite,
    actor: &str,
    recorded: AuditKind,
    detail: Value,
) -> Result<TaskRow, sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET
            status = $2,
            row_version = row_version + 1,
            updated_at = now(),
            started_at = CASE WHEN $2 = 'in_progress' THEN COALESCE(started_at, now()) ELSE started_at END,
            submitted_at = CASE WHEN $2 = 'submitted' THEN now() ELSE submitted_at END,
            completed_at = CASE WHEN $2 = 'done' THEN now() ELSE completed_at END,
            cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END,
            completed_by = CASE WHEN $2 IN ('done', 'submitted') AND $3::jsonb IS NOT NULL THEN $5 ELSE completed_by END,
            answers = COALESCE($3, answers),
            evidence = COALESCE($4, evidence)
          WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(write.answers.as_ref().map(Json))
    .bind(write.evidence.as_ref().map(Json))
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    let task = announce(conn, id, recorded, actor, detail).await?;
    if to == TaskStatus::Done
        && let Some(completed_at) = task.completed_at
    {
        let on_time = if completed_at <= task.due_at {
            "true"
        } else {
            "false"
        };
        metrics::COMPLETED
            .with_label_values(&[task.kind.as_str(), on_time])
            .inc();
        metrics::COMPLETION_SECONDS
            .with_label_values(&[task.kind.as_str()])
            .observe((completed_at - task.created_at).num_milliseconds() as f64 / 1000.0);
    }
    Ok(task)
}

/// The fields `PATCH /tasks/{id}` may change; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct TaskChanges {
    pub assignee: Option<Option<StaffId>>,
    pub priority: Option<Priority>,
    pub due_at: Option<DateTime<Utc>>,
}

/// Applies a manager's changes to a locked task (`updated`, `task.updated`).
pub async fn update(
    conn: &mut PgConnection,
    id: TaskId,
    changes: &TaskChanges,
    actor: &str,
) -> Result<TaskRow, sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET
            assignee_id = CASE WHEN $2 THEN $3 ELSE assignee_id END,
            priority = COALESCE($4, priority),
            due_at = COALESCE($5, due_at),
            row_version = row_version + 1,
            updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(changes.assignee.is_some())
    .bind(changes.assignee.flatten())
    .bind(changes.priority.map(Priority::as_str))
    .bind(changes.due_at)
    .execute(&mut *conn)
    .await?;
    let data = serde_json::json!({
        "assignee_id": changes.assignee.map(|a| a.map(|s| s.0)),
        "priority": changes.priority,
        "due_at": changes.due_at,
    });
    announce(conn, id, AuditKind::Updated, actor, data).await
}

/// A comment: an audit event only (no outbox event). Answers the event's id.
pub async fn comment(
    conn: &mut PgConnection,
    task: &TaskRow,
    actor: &str,
    data: Value,
) -> Result<Uuid, sqlx::Error> {
    record(conn, task, AuditKind::Commented, actor, data).await
}

/// Cancels a locked task on behalf of a system (a superseded relabel task, a cancelled
/// delivery), with the audit event and `task.cancelled` every cancel has. A revision
/// that cancels stamps its ingest on the task, so older revisions stay older.
pub async fn cancel_by_system(
    conn: &mut PgConnection,
    id: TaskId,
    revision: Option<IngestId>,
    actor: &str,
    data: Value,
) -> Result<(), sqlx::Error> {
    if let Some(ingest) = revision {
        sqlx::query("UPDATE tasks SET ingest_id = $2 WHERE id = $1")
            .bind(id)
            .bind(ingest)
            .execute(&mut *conn)
            .await?;
    }
    set_status(
        conn,
        id,
        TaskStatus::Cancelled,
        &TransitionWrite::default(),
        actor,
        AuditKind::Cancelled,
        data,
    )
    .await
    .map(drop)
}

/// A task an integration wrote, and whether it was created (else updated).
#[derive(Debug, sqlx::FromRow)]
pub struct Upserted {
    pub id: TaskId,
    pub inserted: bool,
}

/// The receiving task of a delivery (the sender's `delivery_id` is its external key).
pub struct ReceivingTask<'a> {
    pub ingest: IngestId,
    pub store_id: StoreId,
    pub delivery_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub expected_at: DateTime<Utc>,
    pub created_by: &'a str,
}

/// Creates a delivery's receiving task, or updates it from a newer revision while it is
/// open; `None` when it is closed or a newer revision got there first.
pub async fn upsert_receiving(
    conn: &mut PgConnection,
    task: &ReceivingTask<'_>,
) -> Result<Option<Upserted>, sqlx::Error> {
    let written: Option<Upserted> = sqlx::query_as(
        concat!("INSERT INTO tasks (id, store_id, kind, source, title, description, ingest_id, external_ref, due_at, created_by)
         VALUES ($1, $2, 'receiving', 'delivery', $3, $4, $5, $6, $7, $8)
         ON CONFLICT (created_by, external_ref) WHERE source = 'delivery' DO UPDATE
            SET store_id = EXCLUDED.store_id, title = EXCLUDED.title, description = EXCLUDED.description,
                due_at = EXCLUDED.due_at, ingest_id = EXCLUDED.ingest_id,
                row_version = tasks.row_version + 1, updated_at = now()
          WHERE tasks.ingest_id < EXCLUDED.ingest_id AND tasks.status IN ", crate::tasks::task_status_sql!(active), "
         RETURNING id, (xmax = 0) AS inserted"),
    )
    .bind(TaskId::generate())
    .bind(task.store_id)
    .bind(task.title)
    .bind(task.description)
    .bind(task.ingest)
    .bind(task.delivery_id)
    .bind(task.expected_at)
    .bind(task.created_by)
    .fetch_optional(&mut *conn)
    .await?;
    announce_upserted(
        conn,
        written,
        TaskSource::Delivery,
        task.ingest,
        task.created_by,
    )
    .await
}

/// The open receiving task of a sender's delivery, locked, unless a newer revision wrote it.
pub async fn open_receiving_task(
    conn: &mut PgConnection,
    ingest: IngestId,
    sender: &str,
    delivery_id: &str,
) -> Result<Option<TaskId>, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "SELECT id FROM tasks
          WHERE source = 'delivery' AND created_by = $3 AND external_ref = $1 AND ingest_id < $2
            AND status IN ",
        crate::tasks::task_status_sql!(unfinished),
        "
          FOR UPDATE"
    ))
    .bind(delivery_id)
    .bind(ingest)
    .bind(sender)
    .fetch_optional(conn)
    .await
}

/// The restock task a stock alert asks for (`sku` is its external key in the store).
pub struct RestockTask<'a> {
    pub ingest: IngestId,
    pub store_id: StoreId,
    pub sku: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub priority: Priority,
    pub created_by: &'a str,
}

/// The one open restock task of a store and SKU: created, or updated by a newer alert.
/// Concurrent alerts meet on `tasks_open_restock_key`: one inserts, the others update.
pub async fn upsert_restock(
    conn: &mut PgConnection,
    task: &RestockTask<'_>,
) -> Result<Option<Upserted>, sqlx::Error> {
    let written: Option<Upserted> = sqlx::query_as(
        concat!("INSERT INTO tasks (id, store_id, kind, source, title, description, priority, ingest_id, external_ref,
                            due_at, created_by)
         VALUES ($1, $2, 'restock', 'stock_alert', $3, $4, $5, $6, $7, now() + interval '4 hours', $8)
         ON CONFLICT (store_id, external_ref) WHERE kind = 'restock' AND status IN ", crate::tasks::task_status_sql!(unfinished), "
         DO UPDATE SET description = EXCLUDED.description, priority = EXCLUDED.priority,
                       ingest_id = EXCLUDED.ingest_id, row_version = tasks.row_version + 1, updated_at = now()
          WHERE tasks.ingest_id < EXCLUDED.ingest_id
         RETURNING id, (xmax = 0) AS inserted"),
    )
    .bind(TaskId::generate())
    .bind(task.store_id)
    .bind(task.title)
    .bind(task.description)
    .bind(task.priority.as_str())
    .bind(task.ingest)
    .bind(task.sku)
    .bind(task.created_by)
    .fetch_optional(&mut *conn)
    .await?;
    announce_upserted(
        conn,
        written,
        TaskSource::StockAlert,
        task.ingest,
        task.created_by,
    )
    .await
}

/// The audit event and `task.created` or `task.updated` of an integration's upsert.
async fn announce_upserted(
    conn: &mut PgConnection,
    written: Option<Upserted>,
    source: TaskSource,
    ingest: IngestId,
    actor: &str,
) -> Result<Option<Upserted>, sqlx::Error> {
    let Some(task) = written else {
        return Ok(None);
    };
    let data = serde_json::json!({"source": source.as_str(), "ingest_id": ingest});
    if task.inserted {
        announce(conn, task.id, AuditKind::Created, actor, data).await?;
    } else {
        announce(conn, task.id, AuditKind::Updated, actor, data).await?;
    }
    Ok(Some(task))
}

/// After a task row was written: its audit event `recorded` and its outbox `event`.
async fn announce(
    conn: &mut PgConnection,
    id: TaskId,
    recorded: AuditKind,
    actor: &str,
    data: Value,
) -> Result<TaskRow, sqlx::Error> {
    let task = repo::find(&mut *conn, id, false)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    record(&mut *conn, &task, recorded, actor, data).await?;
    if let Some(event) = recorded.event() {
        event.enqueue(conn, TaskSnapshot::from(&task)).await?;
    }
    if recorded == AuditKind::Created {
        count_created(task.kind, task.source, 1);
    }
    Ok(task)
}

/// `storeops_tasks_created_total`: every writer's new tasks, counted here and only here.
fn count_created(kind: TaskKind, source: TaskSource, tasks: usize) {
    metrics::CREATED
        .with_label_values(&[kind.as_str(), source.as_str()])
        .inc_by(tasks as u64);
}

/// Appends to the audit trail.
async fn record(
    conn: &mut PgConnection,
    task: &TaskRow,
    kind: AuditKind,
    actor: &str,
    data: Value,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO task_events (id, task_id, store_id, kind, actor, data) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id)
        .bind(task.id)
        .bind(task.store_id)
        .bind(kind)
        .bind(actor)
        .bind(Json(data))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Appends one audit event per task, in one statement.
pub(super) async fn record_many(
    conn: &mut PgConnection,
    tasks: &[TaskId],
    stores: &[StoreId],
    kind: AuditKind,
    actor: &str,
    data: &[Value],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO task_events (id, task_id, store_id, kind, actor, data)
         SELECT e.id, e.task_id, e.store_id, $4, $5, e.data
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $6::jsonb[]) AS e(id, task_id, store_id, data)",
    )
    .bind(ids)
    .bind(tasks)
    .bind(stores)
    .bind(kind)
    .bind(actor)
    .bind(data)
    .execute(conn)
    .await
    .map(drop)
}
