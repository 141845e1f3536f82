//! Integrations (PRODUCT §4): price changes, deliveries and stock alerts sent by HQ systems
//! become store tasks, exactly once. Where a price change becomes a task:
//!
//! 1. `routes.rs` + `body.rs`: the body streams in (gzip decoded, bounded by its decoded
//!    size, hashed, compressed for storage) through a streaming validator (422 with
//!    field paths; prices exact, `money.rs`), never whole in memory; it is stored as an
//!    ingest, idempotent on the sender and its id, and `ingest.received` is enqueued in
//!    the same transaction; the answer is 202 with a status URL only the sender can read.
//! 2. `handler.rs` (consumer group `ingest`): `ingest.received` dispatches by source.
//! 3. `price.rs`: a price batch is planned once (streamed from its stored body into a
//!    compact plan, resolved to stores, grouped by store, cut into chunks of stores
//!    written as column arrays) and each chunk is then
//!    applied by its own `ingest.chunk` message in its own short transaction: one
//!    relabel task per store, its SKUs as task items, older open items superseded.
//! 4. `single.rs`: a delivery upserts its receiving task (or cancels it); a stock alert
//!    upserts the one open restock task of its store and SKU.
//!
//! Bad items inside an accepted request (unknown store or region) are reported in the
//! ingest's status while the rest is processed.

pub mod body;
mod dto;
mod handler;
mod money;
pub mod payload;
mod price;
pub mod repo;
mod routes;
mod service;
mod single;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use routes::router;

use crate::{
    config::IngestOptions,
    events::{Event, consumer::Registry},
    ids::IngestId,
};

/// An integration request was stored (202); the `ingest` group turns it into tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestReceived {
    pub ingest_id: IngestId,
    pub source: Source,
    /// The sender's id (batch, delivery or alert id).
    pub external_id: String,
}

impl Event for IngestReceived {
    const ROUTING_KEY: &'static str = "ingest.received";
}

/// One planned chunk of a price batch, to apply in its own transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestChunk {
    pub ingest_id: IngestId,
    pub chunk_no: i32,
}

impl Event for IngestChunk {
    const ROUTING_KEY: &'static str = "ingest.chunk";
}

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[IngestReceived::ROUTING_KEY, IngestChunk::ROUTING_KEY];
/// The consumer group that turns ingests into tasks.
pub const GROUP: &str = "ingest";
/// Per-item errors kept in an ingest's status (all are counted).
pub const MAX_REPORTED_ERRORS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    PriceChange,
    Delivery,
    StockAlert,
}

crate::string_enum!(Source {
    PriceChange => "price_change",
    Delivery => "delivery",
    StockAlert => "stock_alert",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    /// Stored; no worker has looked at it yet.
    Received,
    /// Planned; chunks are being applied.
    Processing,
    Done,
    /// Nothing in it could be processed (see `errors`).
    Failed,
}

crate::string_enum!(IngestStatus {
    Received => "received",
    Processing => "processing",
    Done => "done",
    Failed => "failed",
});

/// One bad item inside an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemError {
    /// The item's position in `items` (price batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// Path of the offending field, e.g. `items[3].store_codes[0]`.
    pub field: String,
    pub message: String,
}

pub fn register_handlers(registry: &mut Registry, options: &IngestOptions) {
    registry.subscribe::<IngestReceived>(
        GROUP,
        Arc::new(handler::Received {
            chunk_stores: options.chunk_stores.max(1),
            planning: tokio::sync::Semaphore::new(1),
        }),
    );
    registry.subscribe::<IngestChunk>(GROUP, Arc::new(price::ApplyChunk));
}

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    crate::input::rules::add_to_document::<payload::Delivery>(document);
}

pub mod metrics {
    //! `storeops_ingest_items_total{source,outcome}` (PRODUCT §10). Outcomes: `accepted`
    //! (items of a newly stored request), `duplicate` (items of a re-post, ignored),
    //! `applied` (task items written: one per store and SKU for price batches, one per
    //! delivery or alert), `rejected` (items reported as errors in the ingest status).

    use std::sync::LazyLock;

    use prometheus::{IntCounterVec, Opts};

    use crate::metrics::register;

    pub static ITEMS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_ingest_items_total",
                    "Integration items by source and outcome (accepted, duplicate, applied, rejected)",
                ),
                &["source", "outcome"],
            )
            .expect("valid metric"),
        )
    });

    pub fn count(source: super::Source, outcome: &str, n: usize) {
        if n > 0 {
            ITEMS
                .with_label_values(&[source.as_str(), outcome])
                .inc_by(n as u64);
        }
    }

    pub fn init() {
        LazyLock::force(&ITEMS);
    }
}
