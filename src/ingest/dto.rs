//! The integration API's answers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{IngestStatus, ItemError, Source};
use crate::ids::IngestId;

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
