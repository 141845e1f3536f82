//! Reads of tasks, their audit trail and relabel items (writes: `write.rs`, `relabel.rs`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use super::{Priority, TaskItemState, TaskSource, TaskStatus};
use crate::ids::{CampaignId, IngestId, StaffId, StoreId, TaskId, TaskKind, TemplateId};

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
    pub kind: TaskKind,
    pub source: TaskSource,
    pub title: String,
    pub description: Option<String>,
    pub template_id: Option<TemplateId>,
    pub template_version: Option<i32>,
    pub campaign_id: Option<CampaignId>,
    pub status: TaskStatus,
    pub priority: Priority,
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
    pub campaign_id: Option<CampaignId>,
    pub completed_at: Option<DateTime<Utc>>,
    pub row_version: i32,
}

/// The columns of [`TaskSummaryRow`], in the order its `FromRow` reads them.
const SUMMARY_COLUMNS: &str = "id, store_id, kind, source, title, status, priority, assignee_id,
    review_required, due_at, template_id, campaign_id, completed_at, row_version";
const SUMMARY_COLUMN_COUNT: usize = 14;

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

/// The store task list: one indexed query on `tasks` (the store's scope was checked
/// already), keyset on (due_at, id), with the store's list version read in the same
/// statement: one round trip, and the version is exactly that of the rows (one
/// snapshot), so a tag never names content older than itself.
pub async fn list_for_store(
    db: &PgPool,
    store: StoreId,
    filter: &ListFilter,
    after: Option<(DateTime<Utc>, TaskId)>,
    limit: i64,
) -> Result<(i64, Vec<TaskSummaryRow>), sqlx::Error> {
    // Only the filters given become predicates, so each combination is its own prepared
    // statement whose generic plan is as good as a custom one: PostgreSQL plans it once
    // per connection. One statement with `$n IS NULL OR …` for every filter had no good
    // generic plan and was planned afresh on every request (most of its cost).
    // The version's one-row side joins the page, so an empty page still brings it (a
    // row of NULL task columns); the task columns come first, as `FromRow` reads them.
    // The store is the first value bound, so the version's `$1` is the store too.
    let mut query = QueryBuilder::<Postgres>::new("SELECT t.*, v.version FROM (SELECT COALESCE((");
    query
        .push(super::sync::STORE_VERSION)
        .push("), 0) AS version) v LEFT JOIN LATERAL (SELECT ")
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
    query
        .push(" ORDER BY due_at, id LIMIT ")
        .push_bind(limit)
        .push(") t ON true ORDER BY t.due_at, t.id");
    let rows = query.build().fetch_all(db).await?;
    let version = rows
        .first()
        .ok_or(sqlx::Error::RowNotFound)?
        .try_get::<i64, _>(SUMMARY_COLUMN_COUNT)?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        // The one row of an empty page has no task.
        if row.try_get::<Option<TaskId>, _>(0)?.is_some() {
            tasks.push(<TaskSummaryRow as sqlx::FromRow<PgRow>>::from_row(row)?);
        }
    }
    Ok((version, tasks))
}

/// The synced view of a store (its unfinished work; with an assignee, theirs and the
/// unassigned), by id after `after`: the pages of a first sync.
pub async fn in_view_after(
    conn: &mut sqlx::PgConnection,
    store: StoreId,
    after: Option<TaskId>,
    assignee: Option<StaffId>,
    limit: i64,
) -> Result<Vec<TaskSummaryRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        concat!(
            "SELECT {SUMMARY_COLUMNS} FROM tasks
              WHERE store_id = $1 AND status IN ",
            crate::tasks::task_status_sql!(unfinished),
            " AND ($2::uuid IS NULL OR id > $2)
                AND ($3::uuid IS NULL OR assignee_id IS NULL OR assignee_id = $3)
              ORDER BY id LIMIT $4"
        ),
        SUMMARY_COLUMNS = SUMMARY_COLUMNS
    )))
    .bind(store)
    .bind(after)
    .bind(assignee)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The current summaries of `ids` in `store` (a task not found is gone).
pub async fn summaries(
    conn: &mut sqlx::PgConnection,
    store: StoreId,
    ids: &[TaskId],
) -> Result<Vec<TaskSummaryRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE store_id = $1 AND id = ANY($2)"
    )))
    .bind(store)
    .bind(ids)
    .fetch_all(conn)
    .await
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

/// An item (SKU) of a relabel task. `new_price` is the stored decimal as PostgreSQL
/// writes it (`trim_scale(new_price)::text`): exact, never through a binary float.
#[derive(Debug, sqlx::FromRow)]
pub struct TaskItemRow {
    pub sku: String,
    pub name: String,
    pub new_price: String,
    pub currency: String,
    pub state: TaskItemState,
    pub superseded_by: Option<IngestId>,
}

/// A task's items by SKU, keyset on the SKU, on the primary key (task_id, sku). Two
/// statements rather than `$2 IS NULL OR sku > $2`, so a later page starts in the
/// index at its SKU instead of filtering every earlier one.
pub async fn items(
    db: &PgPool,
    task: TaskId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TaskItemRow>, sqlx::Error> {
    match after {
        Some(sku) => {
            sqlx::query_as(
                "SELECT sku, name, trim_scale(new_price)::text AS new_price, currency, state, superseded_by
                   FROM task_items
                  WHERE task_id = $1 AND sku > $2
                  ORDER BY sku LIMIT $3",
            )
            .bind(task)
            .bind(sku)
            .bind(limit)
            .fetch_all(db)
            .await
        }
        None => {
            sqlx::query_as(
                "SELECT sku, name, trim_scale(new_price)::text AS new_price, currency, state, superseded_by
                   FROM task_items
                  WHERE task_id = $1
                  ORDER BY sku LIMIT $2",
            )
            .bind(task)
            .bind(limit)
            .fetch_all(db)
            .await
        }
    }
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
