//! `POST /campaigns` (202), `GET /campaigns/{campaign_id}`, `GET /campaigns/{campaign_id}/stores`.

use axum::{
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    dto::{CampaignAccepted, CampaignDto, CampaignStoreDto, CampaignStoresQuery, NewCampaign},
    service,
};
use crate::{
    auth::Principal,
    error::{ApiError, Problem},
    http::{
        extract::{Json, Path, Query},
        pagination::{Page, PageRequest},
    },
    ids::CampaignId,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(create_campaign))
        .routes(routes!(get_campaign))
        .routes(routes!(campaign_stores))
}

/// Send one task to many stores; fanned out by the workers.
#[utoipa::path(
    post, path = "/campaigns", tag = "campaigns",
    request_body = NewCampaign,
    security(("bearer" = [])),
    responses(
        (status = 202, body = CampaignAccepted, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_campaign(
    principal: Principal,
    State(db): State<PgPool>,
    Json(body): Json<NewCampaign>,
) -> Result<Response, ApiError> {
    let accepted = service::create(&db, &principal, body).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, accepted.status_url.clone())],
        Json(accepted),
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
    Ok(Json(service::get(&db, &principal, id).await?))
}

/// The campaign's task in each store, by store code.
#[utoipa::path(
    get, path = "/campaigns/{campaign_id}/stores", tag = "campaigns",
    params(("campaign_id" = CampaignId, Path, description = "The campaign's id"), CampaignStoresQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<CampaignStoreDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn campaign_stores(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<CampaignId>,
    Query(query): Query<CampaignStoresQuery>,
) -> Result<Json<Page<CampaignStoreDto>>, ApiError> {
    let page = PageRequest::<String>::parse(query.cursor.as_deref(), query.limit)?;
    Ok(Json(service::stores(&db, &principal, id, page).await?))
}
