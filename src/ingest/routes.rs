//! `POST /integrations/price-changes | /deliveries | /stock-alerts` (202) and
//! `GET /integrations/ingests/{ingest_id}`. Integration tokens only: the router's layer
//! refuses everyone else before a byte of the (large) body is read.

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    IngestId, IngestReceived, IngestStatus, ItemError, Source, metrics,
    payload::{Delivery, Effective, PriceBatch, StockAlert},
    repo::{self, NewIngest},
};
use crate::{
    auth::Principal,
    error::{ApiError, FieldError, Problem},
    events::outbox,
    http::{
        AppState,
        extract::{Json, Path},
    },
};

pub fn router(body_limit_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_price_changes))
        .routes(routes!(post_deliveries))
        .routes(routes!(post_stock_alerts))
        .routes(routes!(get_ingest))
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(axum::middleware::from_fn(crate::auth::require_integration))
}

/// The body as sent (it is stored raw), after a JSON content-type check.
pub struct RawJson(Bytes);

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".to_owned(),
            ));
        }
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                    "the batch is larger than the ingest body limit".to_owned(),
                ),
                _ => ApiError::BadRequest(rejection.body_text()),
            })
    }
}

/// Parses the body; only when that fails is it parsed again, tracking the path, to name
/// the field (the fast path stays fast for a million lines).
fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let error = match serde_json::from_slice(body) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    if !error.is_data() {
        return Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {error}"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let field = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) if e.path().to_string() != "." => e.path().to_string(),
        _ => "body".to_owned(),
    };
    Err(ApiError::Validation(vec![FieldError::new(
        field,
        error.to_string(),
    )]))
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

/// Bodies above this are parsed and hashed on blocking threads.
const OFF_RUNTIME_BYTES: usize = 256 * 1024;

fn sha256_hex(body: &[u8]) -> String {
    format!("{:x}", Sha256::digest(body))
}

/// Parses, validates and hashes the body. A large price batch takes a second or more of
/// CPU for each: they run side by side on blocking threads, so the runtime keeps serving
/// other requests and the POST answers sooner.
async fn check_and_hash(
    body: &Bytes,
    check: fn(&[u8]) -> Result<Checked, ApiError>,
) -> Result<(Checked, String), ApiError> {
    if body.len() < OFF_RUNTIME_BYTES {
        return Ok((check(body)?, sha256_hex(body)));
    }
    let hashing = tokio::task::spawn_blocking({
        let body = body.clone();
        move || sha256_hex(&body)
    });
    let checking = tokio::task::spawn_blocking({
        let body = body.clone();
        move || check(&body)
    });
    let (digest, checked) = tokio::join!(hashing, checking);
    let blocking_failed = |e: tokio::task::JoinError| {
        ApiError::Internal(anyhow::Error::new(e).context("checking an ingest body"))
    };
    Ok((
        checked.map_err(blocking_failed)??,
        digest.map_err(blocking_failed)?,
    ))
}

fn check_price_batch(body: &[u8]) -> Result<Checked, ApiError> {
    let batch: PriceBatch = decode(body)?;
    let effective = batch.validate().map_err(ApiError::Validation)?;
    Ok(Checked {
        external_id: batch.batch_id.into_owned(),
        item_count: batch.items.len(),
        effective: Some(effective),
    })
}

fn check_delivery(body: &[u8]) -> Result<Checked, ApiError> {
    let delivery: Delivery = decode(body)?;
    delivery.validate().map_err(ApiError::Validation)?;
    Ok(Checked {
        external_id: delivery.delivery_id,
        item_count: 1,
        effective: None,
    })
}

fn check_stock_alert(body: &[u8]) -> Result<Checked, ApiError> {
    let alert: StockAlert = decode(body)?;
    alert.validate().map_err(ApiError::Validation)?;
    Ok(Checked {
        external_id: alert.alert_id,
        item_count: 1,
        effective: None,
    })
}

/// Stores the request once per sender id and enqueues its processing; a re-post of the
/// same request answers the same ingest.
async fn accept(
    db: &PgPool,
    principal: &Principal,
    source: Source,
    body: RawJson,
    check: fn(&[u8]) -> Result<Checked, ApiError>,
) -> Result<Response, ApiError> {
    let (
        Checked {
            external_id,
            item_count,
            effective,
        },
        body_sha256,
    ) = check_and_hash(&body.0, check).await?;
    let external_id = external_id.as_str();
    let raw: &[u8] = &body.0;
    let new = NewIngest {
        id: IngestId::generate(),
        source,
        external_id,
        body_sha256: &body_sha256,
        received_by: &principal.subject,
        raw,
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
        let Some((id, status)) = repo::find_revision(db, source, external_id, &body_sha256).await?
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

/// A price batch: one relabel task per affected store, its SKUs as task items.
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
    body: RawJson,
) -> Result<Response, ApiError> {
    accept(
        &db,
        &principal,
        Source::PriceChange,
        body,
        check_price_batch,
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
    body: RawJson,
) -> Result<Response, ApiError> {
    accept(&db, &principal, Source::Delivery, body, check_delivery).await
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
    body: RawJson,
) -> Result<Response, ApiError> {
    accept(&db, &principal, Source::StockAlert, body, check_stock_alert).await
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
    State(db): State<PgPool>,
    Path(id): Path<IngestId>,
) -> Result<Json<IngestDto>, ApiError> {
    let row = repo::find(&db, id)
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
