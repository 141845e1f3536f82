//! SQL for regions, stores and staff. Every query here is served by an index declared
//! in `migrations/` (see the EXPLAIN checks in tests/stores.rs).

use chrono::NaiveDate;
use sqlx::{PgPool, types::Json};

use super::OpeningHours;
use crate::{
    auth::ScopeFilter,
    ids::{RegionCode, RegionId, StaffId, StoreId},
};

#[derive(Debug, sqlx::FromRow)]
pub struct RegionRow {
    pub id: RegionId,
    pub code: String,
    pub name: String,
    pub time_zone: String,
    pub store_count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoreRow {
    pub id: StoreId,
    pub code: String,
    pub name: String,
    pub region: String,
    pub format: String,
    pub time_zone: String,
    pub opening_hours: Json<OpeningHours>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct StaffRow {
    pub id: StaffId,
    pub display_name: String,
    pub role: String,
    pub active: bool,
}

/// Which stores a list may return: both filters apply when set.
pub async fn list_regions(db: &PgPool) -> Result<Vec<RegionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.code, r.name, r.time_zone,
                (SELECT count(*) FROM stores s WHERE s.region_id = r.id) AS store_count
           FROM regions r
          ORDER BY r.code",
    )
    .fetch_all(db)
    .await
}

pub async fn region_exists(db: &PgPool, code: &RegionCode) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM regions WHERE code = $1)")
        .bind(code.as_str())
        .fetch_one(db)
        .await
}

/// Stores ordered by code, after the `after` code.
pub async fn list_stores(
    db: &PgPool,
    filter: &ScopeFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<StoreRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.code, s.name, r.code AS region, s.format, s.time_zone, s.opening_hours
           FROM stores s
           JOIN regions r ON r.id = s.region_id
          WHERE ($1::text IS NULL OR r.code = $1)
            AND ($2::uuid IS NULL OR s.id = $2)
            AND ($3::text IS NULL OR s.code > $3)
          ORDER BY s.code
          LIMIT $4",
    )
    .bind(filter.region.as_ref().map(RegionCode::as_str))
    .bind(filter.store)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn find_store(db: &PgPool, id: StoreId) -> Result<Option<StoreRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.code, s.name, r.code AS region, s.format, s.time_zone, s.opening_hours
           FROM stores s
           JOIN regions r ON r.id = s.region_id
          WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Closure dates from `from` on, in store-local calendar days.
/// How many of `stores` are closed on `day`.
pub async fn count_closed(
    conn: &mut sqlx::PgConnection,
    stores: &[StoreId],
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM store_closures WHERE store_id = ANY($1) AND closed_on = $2",
    )
    .bind(stores)
    .bind(day)
    .fetch_one(conn)
    .await
}

pub async fn upcoming_closures(
    db: &PgPool,
    id: StoreId,
    from: NaiveDate,
) -> Result<Vec<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT closed_on FROM store_closures
          WHERE store_id = $1 AND closed_on >= $2
          ORDER BY closed_on
          LIMIT 366",
    )
    .bind(id)
    .bind(from)
    .fetch_all(db)
    .await
}

/// A store's staff ordered by id (UUID v7, so roughly by hire order).
pub async fn list_staff(
    db: &PgPool,
    store: StoreId,
    after: Option<StaffId>,
    limit: i64,
) -> Result<Vec<StaffRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, display_name, role, active
           FROM staff
          WHERE store_id = $1 AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id
          LIMIT $3",
    )
    .bind(store)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The active staff member an identity provider's user is (served by the unique
/// constraint's index on `external_subject`).
pub async fn staff_by_subject(
    db: &PgPool,
    subject: &str,
) -> Result<Option<(StaffId, StoreId)>, sqlx::Error> {
    sqlx::query_as("SELECT id, store_id FROM staff WHERE external_subject = $1 AND active")
        .bind(subject)
        .fetch_optional(db)
        .await
}

/// Records a closure day; `false` when that day was already recorded.
pub async fn add_closure(
    db: &PgPool,
    store: StoreId,
    day: NaiveDate,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    // xmax = 0 only on a freshly inserted row version, not on one written by the update.
    sqlx::query_scalar(
        "INSERT INTO store_closures (store_id, closed_on, reason) VALUES ($1, $2, $3)
         ON CONFLICT (store_id, closed_on) DO UPDATE SET reason = EXCLUDED.reason
         RETURNING (xmax = 0)",
    )
    .bind(store)
    .bind(day)
    .bind(reason)
    .fetch_one(db)
    .await
}

/// Removes a closure day; `false` when there was none.
pub async fn remove_closure(
    db: &PgPool,
    store: StoreId,
    day: NaiveDate,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM store_closures WHERE store_id = $1 AND closed_on = $2")
        .bind(store)
        .bind(day)
        .execute(db)
        .await?;
    Ok(result.rows_affected() == 1)
}
