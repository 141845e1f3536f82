//! SQL for campaigns and their fan-out.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};

use crate::{
    ids::{CampaignId, RegionCode, StoreId, TaskId, TaskKind, TemplateId},
    stores::Target,
    tasks::{Priority, TaskStatus},
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub title: String,
    pub description: Option<String>,
    pub kind: TaskKind,
    pub template_id: Option<TemplateId>,
    pub template_version: Option<i32>,
    pub target: Json<Target>,
    pub region_scope: Option<RegionCode>,
    pub due_at: Option<DateTime<Utc>>,
    pub due_local: Option<NaiveDateTime>,
    pub priority: Priority,
    pub status: String,
    pub target_count: Option<i32>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub fanned_out_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, title, description, kind, template_id, template_version, target, region_scope,
    due_at, due_local, priority, status, target_count, created_by, created_at, fanned_out_at";

pub async fn insert(conn: &mut PgConnection, campaign: &CampaignRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO campaigns (id, title, description, kind, template_id, template_version, target,
                                region_scope, due_at, due_local, priority, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(campaign.id)
    .bind(&campaign.title)
    .bind(&campaign.description)
    .bind(campaign.kind)
    .bind(campaign.template_id)
    .bind(campaign.template_version)
    .bind(&campaign.target)
    .bind(&campaign.region_scope)
    .bind(campaign.due_at)
    .bind(campaign.due_local)
    .bind(campaign.priority)
    .bind(&campaign.created_by)
    .execute(conn)
    .await
    .map(drop)
}

pub async fn find(
    conn: &mut PgConnection,
    id: CampaignId,
    lock: bool,
) -> Result<Option<CampaignRow>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM campaigns WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn mark_active(conn: &mut PgConnection, id: CampaignId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE campaigns SET status = 'active', fanned_out_at = COALESCE(fanned_out_at, now()),
                target_count = (SELECT count(*) FROM tasks WHERE campaign_id = $1)
          WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Task counts by status.
pub async fn status_counts(
    db: &PgPool,
    id: CampaignId,
) -> Result<Vec<(TaskStatus, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM tasks WHERE campaign_id = $1 GROUP BY status")
        .bind(id)
        .fetch_all(db)
        .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct CampaignStoreRow {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub async fn stores(
    db: &PgPool,
    id: CampaignId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<CampaignStoreRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id AS store_id, s.code AS store_code, s.name AS store_name, t.id AS task_id, t.status,
                t.due_at, t.completed_at
           FROM tasks t JOIN stores s ON s.id = t.store_id
          WHERE t.campaign_id = $1 AND ($2::text IS NULL OR s.code > $2)
          ORDER BY s.code LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
