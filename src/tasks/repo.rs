//! SQL for tasks and their audit trail. Every write here runs in the caller's
//! transaction, next to the audit event and the outbox row it implies.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use super::{Priority, TaskId, TaskKind, TaskSource, TaskStatus};
use crate::{
    events::outbox,
    stores::{StaffId, StoreId},
    templates::TemplateId,
};

/// Columns of a task row (`t` = tasks, `r` = regions via stores).
pub const TASK_COLUMNS: &str = "t.id, t.store_id, r.code AS region, t.kind, t.source, t.title, t.description,
    t.template_id, t.template_version, t.campaign_id, t.status, t.priority, t.assignee_id,
    t.review_required, t.due_at, t.expires_at, t.answers, t.evidence, t.created_by, t.completed_by,
    t.created_at, t.updated_at, t.started_at, t.submitted_at, t.completed_at, t.cancelled_at, t.row_version";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: TaskId,
    pub store_id: StoreId,
    pub region: String,
    pub kind: String,
    pub source: String,
    pub title: String,
    pub description: Option<String>,
    pub template_id: Option<TemplateId>,
    pub template_version: Option<i32>,
    pub campaign_id: Option<Uuid>,
    pub status: String,
    pub priority: String,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub answers: Option<Json<Value>>,
    pub evidence: Option<Json<Value>>,
    pub created_by: String,
    pub completed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub row_version: i32,
}

pub struct NewTask<'a> {
    pub store_id: StoreId,
    pub kind: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub template: Option<(TemplateId, i32)>,
    pub priority: &'a str,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: &'a str,
}

/// Inserts a task with its `created` audit event and `task.created` outbox event.
pub async fn insert(conn: &mut PgConnection, task: &NewTask<'_>) -> Result<TaskRow, sqlx::Error> {
    let id = TaskId::generate();
    sqlx::query(
        "INSERT INTO tasks (id, store_id, kind, source, title, description, template_id, template_version,
                            priority, assignee_id, review_required, due_at, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(task.store_id)
    .bind(task.kind)
    .bind(task.source)
    .bind(task.title)
    .bind(task.description)
    .bind(task.template.map(|t| t.0))
    .bind(task.template.map(|t| t.1))
    .bind(task.priority)
    .bind(task.assignee_id)
    .bind(task.review_required)
    .bind(task.due_at)
    .bind(task.expires_at)
    .bind(task.created_by)
    .execute(&mut *conn)
    .await?;
    let row = find(&mut *conn, id, false)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    record(
        &mut *conn,
        &row,
        "created",
        task.created_by,
        serde_json::json!({"source": task.source}),
    )
    .await?;
    outbox::enqueue(&mut *conn, "task.created", &event_payload(&row)).await?;
    Ok(row)
}

/// A task with its region; `lock` takes a row lock for a following update.
pub async fn find(
    conn: &mut PgConnection,
    id: TaskId,
    lock: bool,
) -> Result<Option<TaskRow>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE OF t" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks t
           JOIN stores s ON s.id = t.store_id
           JOIN regions r ON r.id = s.region_id
          WHERE t.id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Filters of the store task list.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub statuses: Option<Vec<String>>,
    pub assignee: Option<StaffId>,
    pub kind: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
}

/// A row of the store task list: what a phone shows in the list, nothing more.
#[derive(Debug, Clone)]
pub struct TaskSummaryRow {
    pub id: TaskId,
    pub store_id: StoreId,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: String,
    pub status: TaskStatus,
    pub priority: Priority,
    pub assignee_id: Option<StaffId>,
    pub review_required: bool,
    pub due_at: DateTime<Utc>,
    pub template_id: Option<TemplateId>,
    pub campaign_id: Option<Uuid>,
    pub completed_at: Option<DateTime<Utc>>,
    pub row_version: i32,
}

/// The columns of [`TaskSummaryRow`], in the order its `FromRow` reads them.
const SUMMARY_COLUMNS: &str = "id, store_id, kind, source, title, status, priority, assignee_id,
    review_required, due_at, template_id, campaign_id, completed_at, row_version";

/// By position, without sqlx's per-value type check: the list decodes up to 200 rows of
/// 14 columns a request, and the name lookups and type checks were a fifth of the
/// handler's time. The types are the table's own (the list tests read every column);
/// decoding still validates each value.
impl sqlx::FromRow<'_, PgRow> for TaskSummaryRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get_unchecked(0)?,
            store_id: row.try_get_unchecked(1)?,
            kind: row.try_get_unchecked(2)?,
            source: row.try_get_unchecked(3)?,
            title: row.try_get_unchecked(4)?,
            status: row.try_get_unchecked(5)?,
            priority: row.try_get_unchecked(6)?,
            assignee_id: row.try_get_unchecked(7)?,
            review_required: row.try_get_unchecked(8)?,
            due_at: timestamptz(row.try_get_unchecked(9)?)?,
            template_id: row.try_get_unchecked(10)?,
            campaign_id: row.try_get_unchecked(11)?,
            completed_at: row
                .try_get_unchecked::<Option<i64>, _>(12)?
                .map(timestamptz)
                .transpose()?,
            row_version: row.try_get_unchecked(13)?,
        })
    }
}

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
/// Read as that integer and converted here, a quarter of what sqlx's chrono decoding
/// costs (two timestamps per row of the list).
fn timestamptz(micros: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    const UNIX_TO_PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
    micros
        .checked_add(UNIX_TO_PG_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("timestamp out of range: {micros}").into()))
}

/// The store task list: one indexed query on `tasks` alone (the store's scope was
/// checked already), keyset on (due_at, id).
pub async fn list_for_store(
    db: &PgPool,
    store: StoreId,
    filter: &ListFilter,
    after: Option<(DateTime<Utc>, TaskId)>,
    limit: i64,
) -> Result<Vec<TaskSummaryRow>, sqlx::Error> {
    // Only the filters given become predicates, so each combination is its own prepared
    // statement whose generic plan is as good as a custom one: PostgreSQL plans it once
    // per connection. One statement with `$n IS NULL OR …` for every filter had no good
    // generic plan and was planned afresh on every request (most of its cost).
    let mut query = QueryBuilder::<Postgres>::new("SELECT ");
    query
        .push(SUMMARY_COLUMNS)
        .push(" FROM tasks WHERE store_id = ");
    query.push_bind(store);
    match filter.statuses.as_deref() {
        // One status reads the (store, status, due_at, id) index in order: no sort.
        Some([status]) => {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        Some(statuses) => {
            query
                .push(" AND status = ANY(")
                .push_bind(statuses)
                .push(")");
        }
        None => {}
    }
    if let Some(assignee) = filter.assignee {
        query.push(" AND assignee_id = ").push_bind(assignee);
    }
    if let Some(kind) = filter.kind.as_deref() {
        query.push(" AND kind = ").push_bind(kind);
    }
    if let Some(due_before) = filter.due_before {
        query.push(" AND due_at < ").push_bind(due_before);
    }
    if let Some((due_at, id)) = after {
        query
            .push(" AND (due_at, id) > (")
            .push_bind(due_at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    query.push(" ORDER BY due_at, id LIMIT ").push_bind(limit);
    query.build_query_as().fetch_all(db).await
}

/// What a transition writes besides the status.
#[derive(Debug, Default)]
pub struct TransitionWrite {
    pub answers: Option<Value>,
    pub evidence: Option<Value>,
    pub actor: String,
}

/// Moves a locked task to `to`, stamping the matching timestamp; bumps the ETag.
pub async fn set_status(
    conn: &mut PgConnection,
    id: TaskId,
    to: TaskStatus,
    write: &TransitionWrite,
) -> Result<(), sqlx::Error> {
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
    .bind(&write.actor)
    .execute(conn)
    .await
    .map(drop)
}

/// The fields `PATCH /tasks/{id}` may change; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct TaskChanges {
    pub assignee: Option<Option<StaffId>>,
    pub priority: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
}

pub async fn update(
    conn: &mut PgConnection,
    id: TaskId,
    changes: &TaskChanges,
) -> Result<(), sqlx::Error> {
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
    .bind(changes.priority.as_deref())
    .bind(changes.due_at)
    .execute(conn)
    .await
    .map(drop)
}

/// Appends to the audit trail.
pub async fn record(
    conn: &mut PgConnection,
    task: &TaskRow,
    kind: &str,
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

/// The payload of `task.*` events: enough for consumers to act without a lookup.
pub fn event_payload(task: &TaskRow) -> Value {
    serde_json::json!({
        "task_id": task.id,
        "store_id": task.store_id,
        "region": task.region,
        "kind": task.kind,
        "source": task.source,
        "status": task.status,
        "title": task.title,
        "assignee_id": task.assignee_id,
        "campaign_id": task.campaign_id,
        "due_at": task.due_at,
        "completed_at": task.completed_at,
    })
}

#[derive(Debug, sqlx::FromRow)]
pub struct TaskEventRow {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub actor: String,
    pub data: Json<Value>,
}

pub async fn history(
    db: &PgPool,
    task: TaskId,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<TaskEventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, occurred_at, kind, actor, data FROM task_events
          WHERE task_id = $1 AND ($2::timestamptz IS NULL OR (occurred_at, id) > ($2, $3))
          ORDER BY occurred_at, id LIMIT $4",
    )
    .bind(task)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Whether `staff` works at `store` (and is active): assignments must stay in the store.
pub async fn staff_in_store(
    conn: &mut PgConnection,
    staff: StaffId,
    store: StoreId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM staff WHERE id = $1 AND store_id = $2 AND active)",
    )
    .bind(staff)
    .bind(store)
    .fetch_one(conn)
    .await
}

/// A task created in bulk (campaign fan-out, schedules).
#[derive(Debug, sqlx::FromRow)]
pub struct CreatedTask {
    pub id: Uuid,
    pub store_id: StoreId,
    pub region: String,
    pub kind: String,
    pub title: String,
    pub due_at: DateTime<Utc>,
}

/// Appends the `created` audit events of tasks created in bulk, in one statement.
pub async fn record_created(
    conn: &mut PgConnection,
    tasks: &[CreatedTask],
    source: TaskSource,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::now_v7()).collect();
    let task_ids: Vec<Uuid> = tasks.iter().map(|t| t.id).collect();
    let store_ids: Vec<StoreId> = tasks.iter().map(|t| t.store_id).collect();
    sqlx::query(
        "INSERT INTO task_events (id, task_id, store_id, kind, actor, data)
         SELECT e.id, e.task_id, e.store_id, 'created', $4, jsonb_build_object('source', $5::text)
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS e(id, task_id, store_id)",
    )
    .bind(ids)
    .bind(task_ids)
    .bind(store_ids)
    .bind(actor)
    .bind(source.as_str())
    .execute(conn)
    .await
    .map(drop)
}

/// Everything that follows tasks created in bulk (fan-outs, schedules, integrations):
/// their `created` audit events, one `task.created` event each, and the counter.
pub async fn announce_created(
    conn: &mut PgConnection,
    tasks: &[CreatedTask],
    source: TaskSource,
    actor: &str,
    campaign_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    record_created(conn, tasks, source, actor).await?;
    let payloads: Vec<Value> = tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "task_id": t.id,
                "store_id": t.store_id,
                "region": t.region,
                "kind": t.kind,
                "source": source.as_str(),
                "status": "open",
                "title": t.title,
                "campaign_id": campaign_id,
                "due_at": t.due_at,
            })
        })
        .collect();
    outbox::enqueue_many(conn, "task.created", &payloads).await?;
    for task in tasks {
        super::metrics::CREATED
            .with_label_values(&[task.kind.as_str(), source.as_str()])
            .inc();
    }
    Ok(())
}

/// After a task was written outside a staff request (integrations): its audit event
/// `kind` and the matching `task.<event>` outbox event.
pub async fn announce_change(
    conn: &mut PgConnection,
    id: TaskId,
    kind: &str,
    routing_key: &str,
    actor: &str,
    data: Value,
) -> Result<TaskRow, sqlx::Error> {
    let row = find(&mut *conn, id, false)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    record(&mut *conn, &row, kind, actor, data).await?;
    outbox::enqueue(&mut *conn, routing_key, &event_payload(&row)).await?;
    Ok(row)
}

/// Cancels a locked task on behalf of the system (a superseded relabel task, a cancelled
/// delivery), with the audit event and `task.cancelled` every cancel has.
pub async fn cancel_by_system(
    conn: &mut PgConnection,
    id: TaskId,
    actor: &str,
    data: Value,
) -> Result<(), sqlx::Error> {
    let write = TransitionWrite {
        actor: actor.to_owned(),
        ..TransitionWrite::default()
    };
    set_status(&mut *conn, id, TaskStatus::Cancelled, &write).await?;
    announce_change(conn, id, "cancelled", "task.cancelled", actor, data)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamptz_counts_from_the_postgres_epoch() {
        let epoch = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").expect("valid");
        assert_eq!(timestamptz(0).expect("in range"), epoch);
        let later = DateTime::parse_from_rfc3339("2026-12-01T06:30:00.123456Z").expect("valid");
        let micros = (later - epoch).num_microseconds().expect("fits");
        assert_eq!(timestamptz(micros).expect("in range"), later);
        assert_eq!(
            timestamptz(-1).expect("in range"),
            epoch - chrono::Duration::microseconds(1)
        );
        // PostgreSQL's 'infinity' is i64::MAX: an error, not a panic.
        assert!(timestamptz(i64::MAX).is_err());
    }
}
