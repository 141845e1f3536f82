//! `POST /campaigns` (202), `GET /campaigns/{campaign_id}`, `GET /campaigns/{campaign_id}/stores`.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, types::Json as SqlJson};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{CampaignCreated, CampaignId, Target, repo};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError, Problem},
    events::outbox,
    http::{
        AppState,
        extract::{Json, Path, Query},
        pagination::{Page, PageRequest},
    },
    input::rules::{self, CrossFieldRules},
    stores::StoreId,
    tasks::{Priority, TaskKind, TaskStatus},
    templates::{self, TemplateId},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_campaign))
        .routes(routes!(get_campaign))
        .routes(routes!(campaign_stores))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Required unless `template_id` gives one.
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub title: Option<String>,
    #[schema(pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
    pub template_id: Option<TemplateId>,
    pub kind: Option<TaskKind>,
    pub priority: Option<Priority>,
    pub target: Target,
    /// One instant for every store (RFC 3339)...
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub due_at: Option<DateTime<Utc>>,
    /// ...or a wall-clock time applied in each store's own time zone.
    #[serde(default, deserialize_with = "crate::input::optional_local")]
    #[schema(schema_with = crate::input::local_schema)]
    pub due_local: Option<NaiveDateTime>,
}

impl CrossFieldRules for NewCampaign {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        vec![
            rules::any_given(&["title", "template_id"]),
            rules::one_given(&["due_at", "due_local"]),
        ]
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAccepted {
    pub id: CampaignId,
    pub status: String,
    /// Poll this for progress.
    pub status_url: String,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct TaskCounts {
    pub total: i64,
    pub open: i64,
    pub in_progress: i64,
    pub submitted: i64,
    pub done: i64,
    pub cancelled: i64,
    pub expired: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignDto {
    pub id: CampaignId,
    pub title: String,
    pub kind: TaskKind,
    pub target: Target,
    /// Set for a regional manager's campaign.
    pub region_scope: Option<String>,
    /// `pending` until the worker has fanned it out, then `active`.
    pub status: String,
    pub target_count: Option<i32>,
    pub tasks: TaskCounts,
    /// Done tasks over all tasks (0 when there are none yet).
    pub completion_rate: f64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub fanned_out_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignStoreDto {
    pub store_id: StoreId,
    pub store_code: String,
    pub store_name: String,
    pub task_id: Uuid,
    pub status: TaskStatus,
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampaignStoresQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A campaign the caller may see; others do not exist for them.
async fn visible_campaign(
    db: &PgPool,
    principal: &Principal,
    id: CampaignId,
) -> Result<repo::CampaignRow, ApiError> {
    let scope = principal.campaign_scope()?.map(|r| r.as_str().to_owned());
    let mut conn = db.acquire().await?;
    let campaign = repo::find(&mut conn, id, false)
        .await?
        .filter(|c| scope.is_none() || c.region_scope == scope)
        .ok_or_else(|| ApiError::NotFound(format!("campaign {id} does not exist")))?;
    Ok(campaign)
}

/// Send one task to many stores; fanned out by the workers.
#[utoipa::path(
    post, path = "/campaigns", tag = "campaigns",
    request_body = NewCampaign,
    security(("bearer" = [])),
    responses(
        (status = 202, body = CampaignAccepted, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_campaign(
    principal: Principal,
    State(db): State<PgPool>,
    Json(body): Json<NewCampaign>,
) -> Result<Response, ApiError> {
    let scope = principal.campaign_scope()?.map(|r| r.as_str().to_owned());
    let mut errors = Vec::new();
    let target = body.target;
    target.validate("target", &mut errors);
    if body.due_at.is_some() == body.due_local.is_some() {
        errors.push(FieldError::new(
            "due_at",
            "give exactly one of due_at or due_local",
        ));
    }
    let mut tx = crate::db::begin(&db).await?;
    let (template, title) = templates::template_and_title(
        &mut tx,
        body.template_id,
        body.title.as_deref(),
        &mut errors,
    )
    .await?;
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (unknown_codes, unknown_regions) = repo::unknown_names(&db, &target).await?;
    for code in unknown_codes.iter().take(20) {
        errors.push(FieldError::new(
            "target.store_codes",
            format!("unknown store {code}"),
        ));
    }
    for region in &unknown_regions {
        errors.push(FieldError::new(
            "target.regions",
            format!("unknown region {region}"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(own) = &scope {
        let foreign_region = target.regions.iter().flatten().any(|r| r != own);
        let foreign_stores = match &target.store_codes {
            Some(codes) => !repo::codes_outside_region(&db, codes, own)
                .await?
                .is_empty(),
            None => false,
        };
        if foreign_region || foreign_stores {
            return Err(ApiError::Forbidden(
                "a regional manager's campaign stays in their region".to_owned(),
            ));
        }
    }
    let kind = match (body.kind, &template) {
        (Some(kind), _) => kind,
        (None, Some(t)) => TaskKind::parse(&t.kind)?,
        (None, None) => TaskKind::Adhoc,
    };
    let campaign = repo::CampaignRow {
        id: CampaignId::generate(),
        title,
        description: body
            .description
            .or_else(|| template.as_ref().and_then(|t| t.description.clone())),
        kind: kind.as_str().to_owned(),
        template_id: template.as_ref().map(|t| t.id),
        template_version: template.as_ref().map(|t| t.version),
        target: SqlJson(target),
        region_scope: scope,
        due_at: body.due_at,
        due_local: body.due_local,
        priority: body
            .priority
            .unwrap_or(Priority::Normal)
            .as_str()
            .to_owned(),
        status: "pending".to_owned(),
        target_count: None,
        created_by: principal.subject.clone(),
        created_at: Utc::now(),
        fanned_out_at: None,
    };
    repo::insert(&mut tx, &campaign).await?;
    outbox::enqueue(
        &mut tx,
        &CampaignCreated {
            campaign_id: campaign.id,
        },
    )
    .await?;
    tx.commit().await?;
    let status_url = format!("/api/v1/campaigns/{}", campaign.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        Json(CampaignAccepted {
            id: campaign.id,
            status: "pending".to_owned(),
            status_url,
        }),
    )
        .into_response())
}

/// Progress of a campaign: task counts by status and completion rate.
#[utoipa::path(
    get, path = "/campaigns/{campaign_id}", tag = "campaigns",
    params(("campaign_id" = CampaignId, Path, description = "The campaign's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CampaignDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_campaign(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<CampaignId>,
) -> Result<Json<CampaignDto>, ApiError> {
    let campaign = visible_campaign(&db, &principal, id).await?;
    let mut tasks = TaskCounts::default();
    for (status, count) in repo::status_counts(&db, id).await? {
        tasks.total += count;
        match TaskStatus::parse(&status)? {
            TaskStatus::Open => tasks.open = count,
            TaskStatus::InProgress => tasks.in_progress = count,
            TaskStatus::Submitted => tasks.submitted = count,
            TaskStatus::Done => tasks.done = count,
            TaskStatus::Cancelled => tasks.cancelled = count,
            TaskStatus::Expired => tasks.expired = count,
        }
    }
    let completion_rate = if tasks.total == 0 {
        0.0
    } else {
        tasks.done as f64 / tasks.total as f64
    };
    Ok(Json(CampaignDto {
        kind: TaskKind::parse(&campaign.kind)?,
        id: campaign.id,
        title: campaign.title,
        target: campaign.target.0,
        region_scope: campaign.region_scope,
        status: campaign.status,
        target_count: campaign.target_count,
        tasks,
        completion_rate,
        created_by: campaign.created_by,
        created_at: campaign.created_at,
        fanned_out_at: campaign.fanned_out_at,
    }))
}

/// The campaign's task in each store, by store code.
#[utoipa::path(
    get, path = "/campaigns/{campaign_id}/stores", tag = "campaigns",
    params(("campaign_id" = CampaignId, Path, description = "The campaign's id"), CampaignStoresQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<CampaignStoreDto>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn campaign_stores(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<CampaignId>,
    Query(query): Query<CampaignStoresQuery>,
) -> Result<Json<Page<CampaignStoreDto>>, ApiError> {
    let page = PageRequest::<String>::parse(query.cursor.as_deref(), query.limit)?;
    visible_campaign(&db, &principal, id).await?;
    let rows = repo::stores(&db, id, page.after.as_deref(), page.fetch_limit()).await?;
    let page = page.page(rows, |row| row.store_code.clone());
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|row| {
                Ok(CampaignStoreDto {
                    status: TaskStatus::parse(&row.status)?,
                    store_id: row.store_id,
                    store_code: row.store_code,
                    store_name: row.store_name,
                    task_id: row.task_id,
                    due_at: row.due_at,
                    completed_at: row.completed_at,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        next_cursor: page.next_cursor,
    }))
}
