//! `/reports/compliance`, `/reports/overdue`, `/reports/tasks.csv`. Every answer says
//! where it was read (`X-Data-Source: replica|primary`) and how stale it may be
//! (`X-Data-Staleness-Seconds`).

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{FromRef, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Object;
use futures_util::{StreamExt, future::FutureExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    GroupBy,
    repo::{self, ComplianceQuery, ComplianceRow, ExportQuery, ReportScope},
    sources::{DataSource, ReadSources, SourceError},
};
use crate::{
    auth::Principal,
    error::{ApiError, Problem},
    http::extract::{Json, Query},
    ids::{RegionCode, StoreId},
};

/// Longest period one report or export covers.
const MAX_DAYS: i64 = 366;
/// Default period: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    std::sync::Arc<ReadSources>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(compliance))
        .routes(routes!(overdue))
        .routes(routes!(tasks_csv))
}

static DATA_SOURCE: HeaderName = HeaderName::from_static("x-data-source");
static STALENESS: HeaderName = HeaderName::from_static("x-data-staleness-seconds");

impl From<SourceError> for ApiError {
    fn from(error: SourceError) -> Self {
        match error {
            SourceError::Unavailable(reason) => {
                tracing::error!(%reason, "no reporting database reachable");
                ApiError::ServiceUnavailable("reports are unavailable right now".to_owned())
            }
            SourceError::Query(e) => ApiError::Internal(e.into()),
        }
    }
}

fn provenance(source: DataSource, staleness: Duration) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        DATA_SOURCE.clone(),
        HeaderValue::from_static(source.as_str()),
    );
    headers.insert(
        STALENESS.clone(),
        HeaderValue::from(staleness.as_secs_f64().ceil() as u64),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

/// Which stores the caller's report covers (`Principal::report_scope`), narrowed to the
/// requested region.
fn report_scope(principal: &Principal, region: Option<&str>) -> Result<ReportScope, ApiError> {
    let requested = region
        .map(|r| RegionCode::parse(r).map_err(|m| ApiError::validation("region", m)))
        .transpose()?;
    let filter = principal.report_scope()?.narrow(requested)?;
    Ok(ReportScope {
        region: filter.region.map(String::from),
        store: filter.store.map(|s| s.0),
    })
}

/// `[from, to]` in store-local days; defaults to the last 30 days.
fn period(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = to.unwrap_or_else(|| Utc::now().date_naive());
    let from = match from {
        Some(from) => from,
        None => to
            .checked_sub_signed(chrono::Duration::days(DEFAULT_DAYS - 1))
            .ok_or_else(|| ApiError::validation("to", "is too early"))?,
    };
    if from > to {
        return Err(ApiError::validation("from", "must not be after `to`"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::validation(
            "to",
            format!("a period covers at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComplianceParams {
    /// First store-local day (YYYY-MM-DD); default: 29 days before `to`.
    #[serde(default, deserialize_with = "crate::input::optional_day")]
    #[param(pattern = "^20[0-9]{2}-")]
    pub from: Option<NaiveDate>,
    /// Last store-local day, inclusive (YYYY-MM-DD); default: today (UTC). At most 366 days after `from`.
    #[serde(default, deserialize_with = "crate::input::optional_day")]
    #[param(pattern = "^20[0-9]{2}-")]
    pub to: Option<NaiveDate>,
    /// `region` (default), `store` or `template`.
    pub group_by: Option<GroupBy>,
    /// Only this region (code).
    #[param(pattern = "^[a-z0-9-]{2,32}$")]
    pub region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceGroupDto {
    /// Region code, store id, or template id (`kind:<kind>` for tasks without one).
    pub key: String,
    /// The store code when grouped by store, the region code when grouped by region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub name: String,
    /// Tasks due in the period (cancelled ones included).
    pub tasks: i64,
    pub done: i64,
    pub done_on_time: i64,
    /// Still open past their due time when the statistics were computed.
    pub overdue: i64,
    pub expired: i64,
    pub cancelled: i64,
    /// done / (tasks − cancelled); null when there is nothing to do.
    pub completion_rate: Option<f64>,
    /// done_on_time / done; null when nothing is done.
    pub on_time_rate: Option<f64>,
    /// From creation to completion, in minutes: the median of the per-store-day (and
    /// kind, template) medians.
    pub median_minutes_to_complete: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceReportDto {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group_by: GroupBy,
    /// Task changes up to this instant are in the figures (the statistics refresh every minute).
    pub statistics_refreshed_through: Option<DateTime<Utc>>,
    pub groups: Vec<ComplianceGroupDto>,
    /// All groups together (no median).
    pub totals: ComplianceGroupDto,
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl From<ComplianceRow> for ComplianceGroupDto {
    fn from(row: ComplianceRow) -> Self {
        Self {
            completion_rate: ratio(row.done, row.tasks - row.cancelled),
            on_time_rate: ratio(row.done_on_time, row.done),
            key: row.key,
            code: row.code,
            name: row.name,
            tasks: row.tasks,
            done: row.done,
            done_on_time: row.done_on_time,
            overdue: row.overdue,
            expired: row.expired,
            cancelled: row.cancelled,
            median_minutes_to_complete: row.median_minutes,
        }
    }
}

fn totals(groups: &[ComplianceGroupDto]) -> ComplianceGroupDto {
    let sum = |f: fn(&ComplianceGroupDto) -> i64| groups.iter().map(f).sum::<i64>();
    let (tasks, done, on_time, cancelled) = (
        sum(|g| g.tasks),
        sum(|g| g.done),
        sum(|g| g.done_on_time),
        sum(|g| g.cancelled),
    );
    ComplianceGroupDto {
        key: "total".to_owned(),
        code: None,
        name: "Total".to_owned(),
        tasks,
        done,
        done_on_time: on_time,
        overdue: sum(|g| g.overdue),
        expired: sum(|g| g.expired),
        cancelled,
        completion_rate: ratio(done, tasks - cancelled),
        on_time_rate: ratio(on_time, done),
        median_minutes_to_complete: None,
    }
}

/// Compliance over store-local days, grouped by region, store or template. Read from
/// the daily statistics, so periods already pruned still answer.
#[utoipa::path(
    get, path = "/reports/compliance", tag = "reports",
    params(ComplianceParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ComplianceReportDto,
         headers(("X-Data-Source" = String, description = "replica or primary"),
                 ("X-Data-Staleness-Seconds" = u64, description = "how far behind the primary's latest changes the figures may be"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn compliance(
    principal: Principal,
    State(sources): State<Arc<ReadSources>>,
    Query(params): Query<ComplianceParams>,
) -> Result<Response, ApiError> {
    let scope = report_scope(&principal, params.region.as_deref())?;
    let (from, to) = period(params.from, params.to)?;
    let query = ComplianceQuery {
        from,
        to,
        group_by: params.group_by.unwrap_or_default(),
        scope,
    };
    let ((rows, refreshed), source, lag) = sources
        .read(move |client| {
            let query = query.clone();
            async move {
                let rows = repo::compliance(client, &query).await?;
                let refreshed = repo::statistics_refreshed_at(client).await?;
                Ok((rows, refreshed))
            }
            .boxed()
        })
        .await?;
    // The figures are as old as the replica's lag plus the statistics' age.
    let statistics_age = refreshed
        .and_then(|at| (Utc::now() - at).to_std().ok())
        .unwrap_or_default();
    let groups: Vec<ComplianceGroupDto> = rows.into_iter().map(Into::into).collect();
    let report = ComplianceReportDto {
        from,
        to,
        group_by: params.group_by.unwrap_or_default(),
        statistics_refreshed_through: refreshed,
        totals: totals(&groups),
        groups,
    };
    Ok((provenance(source, lag + statistics_age), Json(report)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverdueParams {
    /// Only this region (code).
    #[param(pattern = "^[a-z0-9-]{2,32}$")]
    pub region: Option<String>,
    /// How many stores, 1..=200 (default 50): the worst first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverdueStoreDto {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub region: String,
    /// Tasks open or in progress past their due time.
    pub overdue: i64,
    /// Of those, escalated to the regional manager.
    pub escalated: i64,
    pub oldest_due_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverdueReportDto {
    pub generated_at: DateTime<Utc>,
    /// Stores with overdue work, most overdue first.
    pub items: Vec<OverdueStoreDto>,
}

/// Stores ranked by overdue work now.
#[utoipa::path(
    get, path = "/reports/overdue", tag = "reports",
    params(OverdueParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = OverdueReportDto,
         headers(("X-Data-Source" = String, description = "replica or primary"),
                 ("X-Data-Staleness-Seconds" = u64, description = "how far behind the primary the data may be"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn overdue(
    principal: Principal,
    State(sources): State<Arc<ReadSources>>,
    Query(params): Query<OverdueParams>,
) -> Result<Response, ApiError> {
    let scope = report_scope(&principal, params.region.as_deref())?;
    let limit = match params.limit {
        None => 50,
        Some(n @ 1..=200) => i64::from(n),
        Some(_) => return Err(ApiError::validation("limit", "must be between 1 and 200")),
    };
    let (rows, source, lag) = sources
        .read(move |client| {
            let scope = scope.clone();
            async move { repo::overdue(client, &scope, limit).await }.boxed()
        })
        .await?;
    let report = OverdueReportDto {
        generated_at: Utc::now(),
        items: rows
            .into_iter()
            .map(|r| OverdueStoreDto {
                store_id: StoreId(r.store_id),
                store_code: r.store_code,
                store_name: r.store_name,
                region: r.region,
                overdue: r.overdue,
                escalated: r.escalated,
                oldest_due_at: r.oldest_due_at,
            })
            .collect(),
    };
    Ok((provenance(source, lag), Json(report)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// First store-local day (YYYY-MM-DD); default: 29 days before `to`.
    #[serde(default, deserialize_with = "crate::input::optional_day")]
    #[param(pattern = "^20[0-9]{2}-")]
    pub from: Option<NaiveDate>,
    /// Last store-local day, inclusive; default: today (UTC). At most 366 days after `from`.
    #[serde(default, deserialize_with = "crate::input::optional_day")]
    #[param(pattern = "^20[0-9]{2}-")]
    pub to: Option<NaiveDate>,
    /// Only this region (code).
    #[param(pattern = "^[a-z0-9-]{2,32}$")]
    pub region: Option<String>,
}

/// Holds the export's connection; if the response is dropped before the COPY ends
/// (the client went away), the connection is closed instead of going back to the
/// pool, which makes the server stop sending.
struct ExportConnection {
    client: Option<Object>,
}

impl Drop for ExportConnection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// Tasks due in the period, one CSV row each (the columns of `reporting.tasks`),
/// streamed from COPY TO STDOUT in constant memory whatever the size. Rows come in no
/// particular order.
#[utoipa::path(
    get, path = "/reports/tasks.csv", tag = "reports",
    params(ExportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/csv",
         headers(("X-Data-Source" = String, description = "replica or primary"),
                 ("X-Data-Staleness-Seconds" = u64, description = "how far behind the primary the data may be"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn tasks_csv(
    principal: Principal,
    State(sources): State<Arc<ReadSources>>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let scope = report_scope(&principal, params.region.as_deref())?;
    let (from, to) = period(params.from, params.to)?;
    let query = ExportQuery { from, to, scope };
    let (copy, lease) = sources
        .open(move |client| {
            let query = query.clone();
            async move { repo::start_export(client, &query).await }.boxed()
        })
        .await?;
    let headers = provenance(lease.source, lease.staleness);
    let connection = ExportConnection {
        client: Some(lease.client),
    };
    let body = futures_util::stream::unfold(
        (connection, Box::pin(copy), false),
        |(mut connection, mut copy, done)| async move {
            if done {
                return None;
            }
            match copy.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), (connection, copy, false))),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "task export failed mid-stream");
                    Some((
                        Err(std::io::Error::other("export failed")),
                        (connection, copy, true),
                    ))
                }
                None => {
                    // The snapshot's transaction ends; the connection can be reused.
                    let committed = match connection.client.as_ref() {
                        Some(client) => client.batch_execute("COMMIT").await.is_ok(),
                        None => false,
                    };
                    if committed {
                        drop(connection.client.take());
                    }
                    None
                }
            }
        },
    );
    let filename = format!("attachment; filename=\"tasks-{from}-{to}.csv\"");
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().extend(headers);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
