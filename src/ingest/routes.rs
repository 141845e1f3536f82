//! `POST /integrations/price-changes | /deliveries | /stock-alerts` (202) and
//! `GET /integrations/ingests/{ingest_id}`. Integration tokens only: the router's layer
//! refuses everyone else before a byte of the (large) body is read.

use axum::{
    Extension,
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    Source,
    body::{self, Checker, IngestBody},
    dto::{IngestAccepted, IngestDto},
    payload::{Delivery, PriceBatch, StockAlert},
    service,
};
use crate::{
    auth::Principal,
    error::{ApiError, Problem},
    http::extract::{Json, Path},
    ids::IngestId,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>(body_limit_bytes: usize) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(post_price_changes))
        .routes(routes!(post_deliveries))
        .routes(routes!(post_stock_alerts))
        .routes(routes!(get_ingest))
        .layer(Extension(Limits {
            price_batch: body_limit_bytes,
            single_item: body_limit_bytes.min(SINGLE_ITEM_LIMIT_BYTES),
        }))
        .layer(axum::middleware::from_fn(crate::auth::require_integration))
}

/// The decoded size of a delivery or stock alert (validation bounds them far below it).
const SINGLE_ITEM_LIMIT_BYTES: usize = 1 << 20;

/// The body limits of the integration routes.
#[derive(Debug, Clone, Copy)]
struct Limits {
    price_batch: usize,
    single_item: usize,
}

/// A price batch: one relabel task per affected store, its SKUs as task items. The body
/// may be sent with `Content-Encoding: gzip` (any integration request may); the body
/// limit applies to the decoded JSON too (413), another encoding is 415.
#[utoipa::path(
    post, path = "/integrations/price-changes", tag = "integrations",
    request_body = PriceBatch,
    security(("bearer" = [])),
    responses(
        (status = 202, body = IngestAccepted, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_price_changes(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: service::check_price_batch,
        failing_path: service::price_batch_path,
    };
    let received = body::receive(body, limits.price_batch, checker).await?;
    accepted(service::accept(&db, &principal, Source::PriceChange, received).await?)
}

/// A delivery: a receiving task due at `expected_at`; a re-sent delivery with changes
/// updates it, `status: cancelled` cancels it.
#[utoipa::path(
    post, path = "/integrations/deliveries", tag = "integrations",
    request_body = Delivery,
    security(("bearer" = [])),
    responses(
        (status = 202, body = IngestAccepted, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_deliveries(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: service::check_delivery,
        failing_path: service::single_path::<Delivery>,
    };
    let received = body::receive(body, limits.single_item, checker).await?;
    accepted(service::accept(&db, &principal, Source::Delivery, received).await?)
}

/// A stock alert: the one open restock task of the store and SKU, created or updated.
#[utoipa::path(
    post, path = "/integrations/stock-alerts", tag = "integrations",
    request_body = StockAlert,
    security(("bearer" = [])),
    responses(
        (status = 202, body = IngestAccepted, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_stock_alerts(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: service::check_stock_alert,
        failing_path: service::single_path::<StockAlert>,
    };
    let received = body::receive(body, limits.single_item, checker).await?;
    accepted(service::accept(&db, &principal, Source::StockAlert, received).await?)
}

/// An ingest's status: received, processing, done or failed; counts; per-item errors.
#[utoipa::path(
    get, path = "/integrations/ingests/{ingest_id}", tag = "integrations",
    params(("ingest_id" = IngestId, Path, description = "The ingest's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IngestDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_ingest(
    principal: Principal,
    State(db): State<PgPool>,
    Path(id): Path<IngestId>,
) -> Result<Json<IngestDto>, ApiError> {
    Ok(Json(service::get(&db, &principal, id).await?))
}

/// 202 with the status URL in `Location` and the body.
fn accepted(accepted: IngestAccepted) -> Result<Response, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, accepted.status_url.clone())],
        Json(accepted),
    )
        .into_response())
}
