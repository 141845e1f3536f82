//! SQL for campaigns and their fan-out.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{CampaignId, Target};
use crate::{stores::StoreId, templates::TemplateId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub title: String,
    pub description: Option<String>,
    pub kind: String,
    pub template_id: Option<TemplateId>,
    pub template_version: Option<i32>,
    pub target: Json<Target>,
    pub region_scope: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub due_local: Option<NaiveDateTime>,
    pub priority: String,
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
    .bind(&campaign.kind)
    .bind(campaign.template_id)
    .bind(campaign.template_version)
    .bind(&campaign.target)
    .bind(&campaign.region_scope)
    .bind(campaign.due_at)
    .bind(campaign.due_local)
    .bind(&campaign.priority)
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

/// The stores a target names, as (codes that exist, region codes that exist).
pub async fn unknown_names(
    db: &PgPool,
    target: &Target,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let unknown_codes: Vec<String> = match &target.store_codes {
        Some(codes) => sqlx::query_scalar(
            "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM stores s WHERE s.code = c)",
        )
        .bind(codes)
        .fetch_all(db)
        .await?,
        None => Vec::new(),
    };
    let unknown_regions: Vec<String> = match &target.regions {
        Some(regions) => sqlx::query_scalar(
            "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM regions r WHERE r.code = c)",
        )
        .bind(regions)
        .fetch_all(db)
        .await?,
        None => Vec::new(),
    };
    Ok((unknown_codes, unknown_regions))
}

/// Store codes of the list that lie outside `region`.
pub async fn codes_outside_region(
    db: &PgPool,
    codes: &[String],
    region: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.code FROM stores s JOIN regions r ON r.id = s.region_id
          WHERE s.code = ANY($1) AND r.code <> $2 ORDER BY s.code",
    )
    .bind(codes)
    .bind(region)
    .fetch_all(db)
    .await
}

/// Targeted stores grouped by time zone (schedules plan per zone).
pub async fn stores_by_time_zone(
    conn: &mut PgConnection,
    target: &Target,
) -> Result<Vec<(String, Vec<StoreId>)>, sqlx::Error> {
    let formats: Vec<&str> = target
        .formats
        .iter()
        .flatten()
        .map(|f| f.as_str())
        .collect();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.time_zone, array_agg(s.id ORDER BY s.code) FROM stores s JOIN regions r ON r.id = s.region_id
          WHERE {TARGET_FILTER} AND $1::int IS NULL
          GROUP BY s.time_zone ORDER BY s.time_zone"
    )))
    .bind(None::<i32>)
    .bind(target.all.unwrap_or(false))
    .bind(target.regions.as_deref().unwrap_or_default())
    .bind(&formats)
    .bind(target.store_codes.as_deref().unwrap_or_default())
    .bind(None::<String>)
    .fetch_all(conn)
    .await
}

/// The WHERE clause of a target over `stores s JOIN regions r` (parameters $2..$6).
const TARGET_FILTER: &str = "($2 OR r.code = ANY($3) OR s.format = ANY($4) OR s.code = ANY($5))
    AND ($6::text IS NULL OR r.code = $6)";

/// The next chunk of targeted stores (ordered by code, after `after_code`): the
/// chunk's last store code (None when done) and the stores' ids.
pub async fn target_chunk(
    conn: &mut PgConnection,
    campaign: &CampaignRow,
    after_code: Option<&str>,
    chunk: i64,
) -> Result<(Option<String>, Vec<StoreId>), sqlx::Error> {
    let target = &campaign.target.0;
    let formats: Vec<&str> = target
        .formats
        .iter()
        .flatten()
        .map(|f| f.as_str())
        .collect();
    let stores: Vec<(StoreId, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.id, s.code FROM stores s JOIN regions r ON r.id = s.region_id
          WHERE {TARGET_FILTER} AND ($1::text IS NULL OR s.code > $1)
          ORDER BY s.code LIMIT $7"
    )))
    .bind(after_code)
    .bind(target.all.unwrap_or(false))
    .bind(target.regions.as_deref().unwrap_or_default())
    .bind(&formats)
    .bind(target.store_codes.as_deref().unwrap_or_default())
    .bind(&campaign.region_scope)
    .bind(chunk)
    .fetch_all(conn)
    .await?;
    let last = stores.last().map(|(_, code)| code.clone());
    Ok((last, stores.into_iter().map(|(id, _)| id).collect()))
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
pub async fn status_counts(db: &PgPool, id: CampaignId) -> Result<Vec<(String, i64)>, sqlx::Error> {
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
    pub task_id: Uuid,
    pub status: String,
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
