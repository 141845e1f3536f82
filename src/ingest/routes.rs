//! `POST /integrations/price-changes | /deliveries | /stock-alerts` (202) and
//! `GET /integrations/ingests/{ingest_id}`. Integration tokens only: the router's layer
//! refuses everyone else before a byte of the (large) body is read.

use std::io::Read;

use axum::{
    Extension,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    IngestId, IngestReceived, IngestStatus, ItemError, Source,
    body::{self, CheckError, Checker, IngestBody, Received},
    metrics,
    payload::{Delivery, Effective, PriceBatch, PriceBatchCheck, StockAlert, read_price_batch},
    repo::{self, NewIngest},
};
use crate::{
    auth::Principal,
    error::{ApiError, Problem},
    events::outbox,
    http::{
        AppState,
        extract::{Json, Path},
    },
    input::objects::{self, ObjectsOnly},
};

pub fn router(body_limit_bytes: usize) -> OpenApiRouter<AppState> {
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

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAccepted {
    /// The ingest id; the same for a re-post of the same request.
    pub id: IngestId,
    pub status: IngestStatus,
    /// Poll this for progress, counts and per-item errors.
    pub status_url: String,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct IngestCounts {
    pub tasks_created: i32,
    /// Open tasks changed: a delivery revision, a repeated alert, or an older relabel
    /// task that lost some items to this batch.
    pub tasks_updated: i32,
    /// Older relabel tasks whose every item this batch superseded (cancelled).
    pub tasks_superseded: i32,
    pub tasks_cancelled: i32,
    pub items_created: i32,
    /// Open relabel items of older batches replaced by this one.
    pub items_superseded: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestDto {
    pub id: IngestId,
    pub source: Source,
    /// The sender's id (batch_id, delivery_id or alert_id).
    pub external_id: String,
    pub status: IngestStatus,
    /// Items in the request (price lines; 1 for a delivery or alert).
    pub items: i32,
    pub chunks_total: i32,
    pub chunks_done: i32,
    pub counts: IngestCounts,
    /// Per-item errors (the first 1,000); the rest was processed.
    pub errors: Vec<ItemError>,
    pub error_count: i32,
    pub received_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What the routes need of a valid request once it is parsed.
struct Checked {
    external_id: String,
    item_count: usize,
    effective: Option<Effective>,
}

/// The decoded size of a delivery or stock alert (validation bounds them far below it).
const SINGLE_ITEM_LIMIT_BYTES: usize = 1 << 20;

/// The body limits of the integration routes.
#[derive(Debug, Clone, Copy)]
struct Limits {
    price_batch: usize,
    single_item: usize,
}

fn check_price_batch(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let mut check = PriceBatchCheck::default();
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let header = read_price_batch(ObjectsOnly(&mut deserializer), |i, line| {
        check.line(i, &line)
    })?;
    deserializer.end()?;
    let effective = check.finish(&header).map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: header.batch_id,
        item_count: header.lines,
        effective: Some(effective),
    })
}

fn price_batch_path(body: &mut dyn Read) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let mut track = serde_path_to_error::Track::new();
    let tracked =
        serde_path_to_error::Deserializer::new(ObjectsOnly(&mut deserializer), &mut track);
    read_price_batch(tracked, |_, _| ()).err()?;
    Some(track.path().to_string()).filter(|path| path != ".")
}

fn single_path<T: DeserializeOwned>(body: &mut dyn Read) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let error = serde_path_to_error::deserialize::<_, T>(ObjectsOnly(&mut deserializer)).err()?;
    Some(error.path().to_string()).filter(|path| path != ".")
}

fn check_delivery(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let delivery: Delivery = objects::from_reader(body)?;
    delivery.validate().map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: delivery.delivery_id,
        item_count: 1,
        effective: None,
    })
}

fn check_stock_alert(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let alert: StockAlert = objects::from_reader(body)?;
    alert.validate().map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: alert.alert_id,
        item_count: 1,
        effective: None,
    })
}

/// Stores the request once per sender and sender's id, and enqueues its processing; a
/// re-post of the same request answers the same ingest.
async fn accept(
    db: &PgPool,
    principal: &Principal,
    source: Source,
    body: IngestBody,
    limit: usize,
    checker: Checker<Checked>,
) -> Result<Response, ApiError> {
    let Received {
        checked:
            Checked {
                external_id,
                item_count,
                effective,
            },
        stored,
        encoding,
        sha256,
    } = body::receive(body, limit, checker).await?;
    let external_id = external_id.as_str();
    let new = NewIngest {
        id: IngestId::generate(),
        source,
        external_id,
        body_sha256: &sha256,
        received_by: &principal.subject,
        raw: &stored,
        raw_encoding: encoding,
        item_count: i32::try_from(item_count).unwrap_or(i32::MAX),
        effective_at: match effective {
            Some(Effective::At(at)) => Some(at),
            _ => None,
        },
        effective_local: match effective {
            Some(Effective::Local(local)) => Some(local),
            _ => None,
        },
    };
    let mut tx = crate::db::begin(db).await?;
    let (id, status) = if repo::insert(&mut tx, &new).await? {
        outbox::enqueue(
            &mut tx,
            &IngestReceived {
                ingest_id: new.id,
                source,
                external_id: external_id.to_owned(),
            },
        )
        .await?;
        tx.commit().await?;
        metrics::count(source, "accepted", item_count);
        (new.id, IngestStatus::Received)
    } else {
        tx.rollback().await?;
        let Some((id, status)) =
            repo::find_revision(db, &principal.subject, source, external_id, &sha256).await?
        else {
            return Err(ApiError::Conflict(format!(
                "{external_id} was already received with a different body"
            )));
        };
        metrics::count(source, "duplicate", item_count);
        (
            id,
            IngestStatus::parse(&status).unwrap_or(IngestStatus::Received),
        )
    };
    let status_url = format!("/api/v1/integrations/ingests/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        Json(IngestAccepted {
            id,
            status,
            status_url,
        }),
    )
        .into_response())
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
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_price_changes(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: check_price_batch,
        failing_path: price_batch_path,
    };
    accept(
        &db,
        &principal,
        Source::PriceChange,
        body,
        limits.price_batch,
        checker,
    )
    .await
}

/// A delivery: a receiving task due at `expected_at`; a re-sent delivery with changes
/// updates it, `status: cancelled` cancels it.
#[utoipa::path(
    post, path = "/integrations/deliveries", tag = "integrations",
    request_body = Delivery,
    security(("bearer" = [])),
    responses(
        (status = 202, body = IngestAccepted, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_deliveries(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: check_delivery,
        failing_path: single_path::<Delivery>,
    };
    accept(
        &db,
        &principal,
        Source::Delivery,
        body,
        limits.single_item,
        checker,
    )
    .await
}

/// A stock alert: the one open restock task of the store and SKU, created or updated.
#[utoipa::path(
    post, path = "/integrations/stock-alerts", tag = "integrations",
    request_body = StockAlert,
    security(("bearer" = [])),
    responses(
        (status = 202, body = IngestAccepted, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn post_stock_alerts(
    principal: Principal,
    State(db): State<PgPool>,
    Extension(limits): Extension<Limits>,
    body: IngestBody,
) -> Result<Response, ApiError> {
    let checker = Checker {
        check: check_stock_alert,
        failing_path: single_path::<StockAlert>,
    };
    accept(
        &db,
        &principal,
        Source::StockAlert,
        body,
        limits.single_item,
        checker,
    )
    .await
}

/// An ingest's status: received, processing, done or failed; counts; per-item errors.
#[utoipa::path(
    get, path = "/integrations/ingests/{ingest_id}", tag = "integrations",
    params(("ingest_id" = IngestId, Path, description = "The ingest's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IngestDto),
        (status = 400, body = Problem, content_type = "application/problem+json"),
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
    // Another sender's ingest does not exist for this one.
    let row = repo::find(&db, id, &principal.subject)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("ingest {id} does not exist")))?;
    Ok(Json(IngestDto {
        id: row.id,
        source: Source::parse(&row.source)?,
        external_id: row.external_id,
        status: IngestStatus::parse(&row.status)?,
        items: row.item_count,
        chunks_total: row.chunks_total,
        chunks_done: row.chunks_total - row.chunks_remaining,
        counts: IngestCounts {
            tasks_created: row.tasks_created,
            tasks_updated: row.tasks_updated,
            tasks_superseded: row.tasks_superseded,
            tasks_cancelled: row.tasks_cancelled,
            items_created: row.items_created,
            items_superseded: row.items_superseded,
        },
        errors: row.errors.0,
        error_count: row.error_count,
        received_at: row.received_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
    }))
}
