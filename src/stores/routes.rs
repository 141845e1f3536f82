//! `/me`, `/regions`, `/stores`, `/stores/{store_id}`, `/stores/{store_id}/staff`.

use axum::{
    extract::{FromRef, FromRequestParts, State},
    http::StatusCode,
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use std::sync::Arc;

use super::{
    OpeningHours, StaffRole, StoreFormat,
    directory::StoreDirectory,
    repo::{self, StoreRow},
};
use crate::{
    auth::{Access, Principal, Role},
    error::{ApiError, Problem},
    http::{
        extract::{Json, Path, Query},
        pagination::{Page, PageRequest},
    },
    ids::{RegionCode, RegionId, StaffId, StoreId},
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    super::StoreDirectory: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_regions))
        .routes(routes!(list_stores))
        .routes(routes!(get_store))
        .routes(routes!(list_staff))
        .routes(routes!(add_closure))
        .routes(routes!(remove_closure))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeDto {
    pub sub: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_id: Option<StoreId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionCode>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegionDto {
    pub id: RegionId,
    pub code: String,
    pub name: String,
    /// The region's main IANA time zone; each store has its own too.
    pub time_zone: String,
    pub store_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreDto {
    pub id: StoreId,
    /// The ERP store code.
    pub code: String,
    pub name: String,
    /// The region's code.
    pub region: String,
    pub format: StoreFormat,
    /// IANA time zone; all store-local times (due times, schedules) are in it.
    pub time_zone: String,
    pub opening_hours: OpeningHours,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreDetailDto {
    #[serde(flatten)]
    pub store: StoreDto,
    /// Upcoming dates (store-local) on which the store is closed.
    pub closure_dates: Vec<chrono::NaiveDate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffDto {
    pub id: StaffId,
    pub display_name: String,
    pub role: StaffRole,
    pub active: bool,
}

impl TryFrom<StoreRow> for StoreDto {
    type Error = ApiError;

    fn try_from(row: StoreRow) -> Result<Self, ApiError> {
        let format = StoreFormat::parse(&row.format).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "store {} has unknown format {:?}",
                row.id,
                row.format
            ))
        })?;
        Ok(Self {
            id: row.id,
            code: row.code,
            name: row.name,
            region: row.region,
            format,
            time_zone: row.time_zone,
            opening_hours: row.opening_hours.0,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoreListQuery {
    /// Only stores of this region (code).
    #[param(pattern = "^[a-z0-9-]{2,32}$")]
    pub region: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50); larger values are rejected with 422.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50); larger values are rejected with 422.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The caller as the API sees them.
#[utoipa::path(
    get, path = "/me", tag = "stores",
    security(("bearer" = [])),
    responses(
        (status = 200, body = MeDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn me(principal: Principal) -> Result<Json<MeDto>, ApiError> {
    principal.store_scope()?;
    let (store_id, region) = match &principal.access {
        Access::Associate { store_id } | Access::StoreManager { store_id } => {
            (Some(*store_id), None)
        }
        Access::RegionalManager { region } => (None, Some(region.clone())),
        Access::Hq | Access::Integration => (None, None),
    };
    Ok(Json(MeDto {
        role: principal.role(),
        sub: principal.subject,
        store_id,
        region,
    }))
}

/// All regions of the chain.
#[utoipa::path(
    get, path = "/regions", tag = "stores",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<RegionDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_regions(
    principal: Principal,
    State(db): State<PgPool>,
) -> Result<Json<Page<RegionDto>>, ApiError> {
    principal.store_scope()?;
    let items = repo::list_regions(&db)
        .await?
        .into_iter()
        .map(|r| RegionDto {
            id: r.id,
            code: r.code,
            name: r.name,
            time_zone: r.time_zone,
            store_count: r.store_count,
        })
        .collect();
    // About ten regions: one page always holds them all.
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// Stores the caller may see, ordered by code.
#[utoipa::path(
    get, path = "/stores", tag = "stores",
    params(StoreListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<StoreDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_stores(
    principal: Principal,
    State(db): State<PgPool>,
    Query(query): Query<StoreListQuery>,
) -> Result<Json<Page<StoreDto>>, ApiError> {
    let scope = principal.store_scope()?;
    let page = PageRequest::<String>::parse(query.cursor.as_deref(), query.limit)?;
    let requested_region = query
        .region
        .as_deref()
        .map(|r| RegionCode::parse(r).map_err(|m| ApiError::validation("region", m)))
        .transpose()?;
    let filter = scope.narrow(requested_region)?;
    if let Some(region) = &filter.region
        && !repo::region_exists(&db, region).await?
    {
        return Err(ApiError::validation("region", "no such region"));
    }
    let rows = repo::list_stores(&db, &filter, page.after.as_deref(), page.fetch_limit()).await?;
    let page = page.page(rows, |row| row.code.clone());
    let items = page
        .items
        .into_iter()
        .map(StoreDto::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// The store named by a `/stores/{store_id}/...` path, loaded and checked against the
/// caller's scope. As an extractor it runs before any body is parsed, so an
/// out-of-scope caller is refused (403/404) whatever it sends.
pub struct ScopedStore {
    pub principal: Principal,
    pub store: Arc<StoreRow>,
}

#[derive(Deserialize)]
struct StorePathParams {
    store_id: StoreId,
}

impl<S> FromRequestParts<S> for ScopedStore
where
    S: Send + Sync,
    StoreDirectory: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let Path(params) = Path::<StorePathParams>::from_request_parts(parts, state).await?;
        let directory = StoreDirectory::from_ref(state);
        let store = readable_store(&directory, &principal, params.store_id).await?;
        Ok(Self { principal, store })
    }
}

/// Loads a store and checks the caller may read it.
async fn readable_store(
    directory: &StoreDirectory,
    principal: &Principal,
    id: StoreId,
) -> Result<Arc<StoreRow>, ApiError> {
    principal.ensure_may_look_up_store(id)?;
    let store = directory
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("store {id} does not exist")))?;
    let region = RegionCode::parse(&store.region).map_err(|m| {
        ApiError::Internal(anyhow::anyhow!("store {id} has invalid region code: {m}"))
    })?;
    principal.ensure_store_readable(store.id, &region)?;
    Ok(store)
}

/// One store with its upcoming closure dates.
#[utoipa::path(
    get, path = "/stores/{store_id}", tag = "stores",
    params(("store_id" = StoreId, Path, description = "The store's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = StoreDetailDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_store(
    ScopedStore { store, .. }: ScopedStore,
    State(db): State<PgPool>,
) -> Result<Json<StoreDetailDto>, ApiError> {
    let today = local_today(&store.time_zone);
    let closure_dates = repo::upcoming_closures(&db, store.id, today).await?;
    Ok(Json(StoreDetailDto {
        store: StoreRow::clone(&store).try_into()?,
        closure_dates,
    }))
}

fn local_today(time_zone: &str) -> chrono::NaiveDate {
    let now = Utc::now();
    time_zone
        .parse::<chrono_tz::Tz>()
        .map(|tz| now.with_timezone(&tz).date_naive())
        .unwrap_or_else(|_| now.date_naive())
}

/// A store's staff.
#[utoipa::path(
    get, path = "/stores/{store_id}/staff", tag = "stores",
    params(("store_id" = StoreId, Path, description = "The store's id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<StaffDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_staff(
    ScopedStore { store, .. }: ScopedStore,
    State(db): State<PgPool>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<StaffDto>>, ApiError> {
    let page = PageRequest::<StaffId>::parse(query.cursor.as_deref(), query.limit)?;
    let rows = repo::list_staff(&db, store.id, page.after, page.fetch_limit()).await?;
    let page = page.page(rows, |row| row.id);
    let items = page
        .items
        .into_iter()
        .map(|row| {
            let role = match row.role.as_str() {
                "store_manager" => StaffRole::StoreManager,
                _ => StaffRole::Associate,
            };
            StaffDto {
                id: row.id,
                display_name: row.display_name,
                role,
                active: row.active,
            }
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// A day on which a store is closed; recurring tasks skip it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClosure {
    /// Store-local calendar day, `YYYY-MM-DD`.
    #[serde(deserialize_with = "crate::input::day")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub date: chrono::NaiveDate,
    /// Why (holiday, refit).
    #[schema(max_length = 500, pattern = "^[^\\x00]*$")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClosureDto {
    pub store_id: StoreId,
    pub date: chrono::NaiveDate,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClosurePath {
    // Checked by `ScopedStore`; listed so the two-segment path deserialises.
    #[serde(rename = "store_id")]
    _store_id: StoreId,
    #[serde(deserialize_with = "crate::input::day")]
    date: chrono::NaiveDate,
}

/// How far ahead a closure may be planned.
const MAX_CLOSURE_DAYS_AHEAD: i64 = 731;

/// Record a closure day (idempotent: re-posting the same day updates its reason).
#[utoipa::path(
    post, path = "/stores/{store_id}/closures", tag = "stores",
    params(("store_id" = StoreId, Path, description = "The store's id")),
    request_body = NewClosure,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ClosureDto, description = "Recorded"),
        (status = 200, body = ClosureDto, description = "Already recorded; reason updated"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn add_closure(
    ScopedStore { principal, store }: ScopedStore,
    State(db): State<PgPool>,
    Json(body): Json<NewClosure>,
) -> Result<(StatusCode, Json<ClosureDto>), ApiError> {
    principal.ensure_manages_store()?;
    let reason = crate::input::optional_text("reason", body.reason, 500)?;
    let today = local_today(&store.time_zone);
    if body.date < today {
        return Err(ApiError::validation(
            "date",
            "must not be in the past (store-local)",
        ));
    }
    if body.date > today + chrono::Duration::days(MAX_CLOSURE_DAYS_AHEAD) {
        return Err(ApiError::validation(
            "date",
            "must be within two years (closures are planned, not a calendar)",
        ));
    }
    let created = repo::add_closure(&db, store.id, body.date, reason.as_deref()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ClosureDto {
            store_id: store.id,
            date: body.date,
            reason,
        }),
    ))
}

/// Remove a closure day.
#[utoipa::path(
    delete, path = "/stores/{store_id}/closures/{date}", tag = "stores",
    params(
        ("store_id" = StoreId, Path, description = "The store's id"),
        ("date" = String, Path, format = Date, pattern = "^20[0-9]{2}-", description = "The closure day, YYYY-MM-DD, in the years 2000 to 2099"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn remove_closure(
    ScopedStore { principal, store }: ScopedStore,
    State(db): State<PgPool>,
    Path(ClosurePath { date, .. }): Path<ClosurePath>,
) -> Result<StatusCode, ApiError> {
    principal.ensure_manages_store()?;
    if repo::remove_closure(&db, store.id, date).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "store {} has no closure on {date}",
            store.id
        )))
    }
}
