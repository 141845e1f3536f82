//! SQL for task templates and their versions.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};

use super::ChecklistItem;
use crate::{
    ids::{TaskKind, TemplateId},
    templates::Recurrence,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateVersionRow {
    pub id: TemplateId,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub kind: TaskKind,
    pub checklist: Json<Vec<ChecklistItem>>,
    pub review_required: bool,
    pub estimated_minutes: Option<i32>,
    pub due_window_minutes: i32,
    pub recurrence: Option<Json<Recurrence>>,
    pub created_at: DateTime<Utc>,
}

/// The fields of one version.
pub struct VersionFields<'a> {
    pub recurrence: Option<&'a Recurrence>,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub kind: TaskKind,
    pub checklist: &'a [ChecklistItem],
    pub review_required: bool,
    pub estimated_minutes: Option<i32>,
    pub due_window_minutes: i32,
}

const SELECT: &str =
    "SELECT v.template_id AS id, v.version, v.title, v.description, v.kind, v.checklist,
        v.review_required, v.estimated_minutes, v.due_window_minutes, v.recurrence, v.created_at
   FROM task_template_versions v";

pub async fn create(
    db: &PgPool,
    fields: &VersionFields<'_>,
    created_by: &str,
) -> Result<TemplateVersionRow, sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
    let id = TemplateId::generate();
    sqlx::query("INSERT INTO task_templates (id, current_version, created_by) VALUES ($1, 1, $2)")
        .bind(id)
        .bind(created_by)
        .execute(&mut *tx)
        .await?;
    let row = insert_version(&mut tx, id, 1, fields, created_by).await?;
    tx.commit().await?;
    Ok(row)
}

async fn insert_version(
    conn: &mut PgConnection,
    id: TemplateId,
    version: i32,
    fields: &VersionFields<'_>,
    created_by: &str,
) -> Result<TemplateVersionRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO task_template_versions
            (template_id, version, title, description, kind, checklist, review_required,
             estimated_minutes, due_window_minutes, created_by, recurrence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING template_id AS id, version, title, description, kind, checklist,
                   review_required, estimated_minutes, due_window_minutes, recurrence, created_at",
    )
    .bind(id)
    .bind(version)
    .bind(fields.title)
    .bind(fields.description)
    .bind(fields.kind)
    .bind(Json(fields.checklist))
    .bind(fields.review_required)
    .bind(fields.estimated_minutes)
    .bind(fields.due_window_minutes)
    .bind(created_by)
    .bind(fields.recurrence.map(Json))
    .fetch_one(conn)
    .await
}

/// Writes the next version; `None` when the template does not exist.
pub async fn new_version(
    db: &PgPool,
    id: TemplateId,
    change: impl FnOnce(&TemplateVersionRow) -> Result<VersionFieldsOwned, crate::error::ApiError>,
    created_by: &str,
) -> Result<Option<TemplateVersionRow>, crate::error::ApiError> {
    let mut tx = crate::db::begin(db).await?;
    // Lock the template so concurrent PATCHes queue up and each gets its own version.
    let current: Option<i32> =
        sqlx::query_scalar("SELECT current_version FROM task_templates WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(current) = current else {
        return Ok(None);
    };
    let Some(latest) = find_version(&mut tx, id, Some(current)).await? else {
        return Ok(None);
    };
    let fields = change(&latest)?;
    let row = insert_version(&mut tx, id, current + 1, &fields.borrowed(), created_by).await?;
    sqlx::query("UPDATE task_templates SET current_version = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(current + 1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// Owned fields, for building a new version from the latest.
pub struct VersionFieldsOwned {
    pub recurrence: Option<Recurrence>,
    pub title: String,
    pub description: Option<String>,
    pub kind: TaskKind,
    pub checklist: Vec<ChecklistItem>,
    pub review_required: bool,
    pub estimated_minutes: Option<i32>,
    pub due_window_minutes: i32,
}

impl VersionFieldsOwned {
    pub fn borrowed(&self) -> VersionFields<'_> {
        VersionFields {
            recurrence: self.recurrence.as_ref(),
            title: &self.title,
            description: self.description.as_deref(),
            kind: self.kind,
            checklist: &self.checklist,
            review_required: self.review_required,
            estimated_minutes: self.estimated_minutes,
            due_window_minutes: self.due_window_minutes,
        }
    }
}

/// A given version, or the current one.
pub async fn find_version(
    conn: &mut PgConnection,
    id: TemplateId,
    version: Option<i32>,
) -> Result<Option<TemplateVersionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} JOIN task_templates t ON t.id = v.template_id
          WHERE v.template_id = $1 AND v.version = COALESCE($2, t.current_version)"
    )))
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await
}

/// Current versions, by id.
pub async fn list_current(
    db: &PgPool,
    after: Option<TemplateId>,
    limit: i64,
) -> Result<Vec<TemplateVersionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} JOIN task_templates t ON t.id = v.template_id AND v.version = t.current_version
          WHERE ($1::uuid IS NULL OR t.id > $1)
          ORDER BY t.id LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
