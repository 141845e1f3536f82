//! SQL for ingests: the raw requests, the planned chunks of price batches, and the
//! bulk writes that turn them into tasks and task items.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};

use super::{ItemError, Source, body::Encoding};
use crate::ids::{IngestId, StoreId};

/// A request as the API stores it.
pub struct NewIngest<'a> {
    pub id: IngestId,
    pub source: Source,
    pub external_id: &'a str,
    pub body_sha256: &'a str,
    pub received_by: &'a str,
    pub raw: &'a [u8],
    pub raw_encoding: Encoding,
    pub item_count: i32,
    pub effective_at: Option<DateTime<Utc>>,
    pub effective_local: Option<NaiveDateTime>,
}

/// Stores the request; false when the sender's id (or this revision) is already known.
pub async fn insert(conn: &mut PgConnection, new: &NewIngest<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO ingests (id, source, external_id, body_sha256, received_by, raw, raw_encoding,
                              item_count, effective_at, effective_local)
         VALUES ($1, $2, $3, $4, $5, $6, $10, $7, $8, $9)
         ON CONFLICT DO NOTHING",
    )
    .bind(new.id)
    .bind(new.source.as_str())
    .bind(new.external_id)
    .bind(new.body_sha256)
    .bind(new.received_by)
    .bind(new.raw)
    .bind(new.item_count)
    .bind(new.effective_at)
    .bind(new.effective_local)
    .bind(new.raw_encoding.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The sender's ingest that already holds this exact request, with its status.
pub async fn find_revision(
    db: &PgPool,
    sender: &str,
    source: Source,
    external_id: &str,
    body_sha256: &str,
) -> Result<Option<(IngestId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, status FROM ingests
          WHERE received_by = $4 AND source = $1 AND external_id = $2 AND body_sha256 = $3",
    )
    .bind(source.as_str())
    .bind(external_id)
    .bind(body_sha256)
    .bind(sender)
    .fetch_optional(db)
    .await
}

/// An ingest's status as `GET /integrations/ingests/{id}` shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct IngestRow {
    pub id: IngestId,
    pub source: String,
    pub external_id: String,
    pub status: String,
    pub item_count: i32,
    pub chunks_total: i32,
    pub chunks_remaining: i32,
    pub tasks_created: i32,
    pub tasks_updated: i32,
    pub tasks_superseded: i32,
    pub tasks_cancelled: i32,
    pub items_created: i32,
    pub items_superseded: i32,
    pub errors: Json<Vec<ItemError>>,
    pub error_count: i32,
    pub received_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The ingest, if `sender` sent it.
pub async fn find(
    db: &PgPool,
    id: IngestId,
    sender: &str,
) -> Result<Option<IngestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, external_id, status, item_count, chunks_total, chunks_remaining,
                tasks_created, tasks_updated, tasks_superseded, tasks_cancelled, items_created,
                items_superseded, errors, error_count, received_at, started_at, finished_at
           FROM ingests WHERE id = $1 AND received_by = $2",
    )
    .bind(id)
    .bind(sender)
    .fetch_optional(db)
    .await
}

/// What a worker needs to process a received ingest.
#[derive(Debug, sqlx::FromRow)]
pub struct ReceivedIngest {
    pub id: IngestId,
    pub source: String,
    pub status: String,
    pub received_by: String,
    pub raw: Vec<u8>,
    pub raw_encoding: String,
    /// Items the api counted in the body.
    pub item_count: i32,
}

impl ReceivedIngest {
    /// The stored body as the JSON that was sent, decoded as it is read.
    pub fn body(&self) -> Box<dyn std::io::Read + Send + '_> {
        match Encoding::parse(&self.raw_encoding) {
            Ok(encoding) => super::body::decoded(&self.raw, encoding),
            Err(_) => Box::new(super::body::UnknownEncoding),
        }
    }
}

/// Locks the ingest for planning; the raw body only while it is still `received`.
pub async fn lock_received(
    conn: &mut PgConnection,
    id: IngestId,
) -> Result<Option<ReceivedIngest>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, status, received_by, raw_encoding, item_count,
                CASE WHEN status = 'received' THEN raw ELSE ''::bytea END AS raw
           FROM ingests WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A store as price batches name it.
#[derive(Debug, sqlx::FromRow)]
pub struct StoreRef {
    pub id: StoreId,
    pub code: String,
    pub region: String,
}

/// Every store in code order (about a thousand rows: one read per batch).
pub async fn stores(conn: &mut PgConnection) -> Result<Vec<StoreRef>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.code, r.code AS region FROM stores s JOIN regions r ON r.id = s.region_id
          ORDER BY s.code",
    )
    .fetch_all(conn)
    .await
}

pub async fn store_by_code(
    conn: &mut PgConnection,
    code: &str,
) -> Result<Option<StoreId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM stores WHERE code = $1")
        .bind(code)
        .fetch_optional(conn)
        .await
}

/// One planned chunk: its stores and its items as column arrays.
#[derive(Debug, Default)]
pub struct ChunkArrays<'a> {
    pub store_ids: Vec<StoreId>,
    /// 1-based position of each item's store in `store_ids`.
    pub item_store: Vec<i32>,
    pub skus: Vec<&'a str>,
    pub names: Vec<&'a str>,
    /// Exact prices in ten-thousandths.
    pub price_units: Vec<i64>,
    pub currencies: Vec<&'a str>,
}

impl ChunkArrays<'_> {
    /// Empties the arrays, keeping their capacity for the next chunk.
    pub fn clear(&mut self) {
        self.store_ids.clear();
        self.item_store.clear();
        self.skus.clear();
        self.names.clear();
        self.price_units.clear();
        self.currencies.clear();
    }
}

pub async fn insert_chunk(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
    chunk: &ChunkArrays<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ingest_chunks (ingest_id, chunk_no, store_ids, item_store, skus, names, price_units, currencies)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ingest_id)
    .bind(chunk_no)
    .bind(&chunk.store_ids)
    .bind(&chunk.item_store)
    .bind(&chunk.skus)
    .bind(&chunk.names)
    .bind(&chunk.price_units)
    .bind(&chunk.currencies)
    .execute(conn)
    .await
    .map(drop)
}

/// A planned batch: `processing` with its chunks to go, or `failed` when it has none.
pub async fn mark_planned(
    conn: &mut PgConnection,
    id: IngestId,
    chunks: i32,
    errors: &[ItemError],
    error_count: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ingests SET status = CASE WHEN $2 = 0 THEN 'failed' ELSE 'processing' END,
                chunks_total = $2, chunks_remaining = $2, errors = $3, error_count = $4,
                started_at = now(), finished_at = CASE WHEN $2 = 0 THEN now() END
          WHERE id = $1",
    )
    .bind(id)
    .bind(chunks)
    .bind(Json(errors))
    .bind(error_count)
    .execute(conn)
    .await
    .map(drop)
}

/// What one unit of work changed, added to the ingest's counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub tasks_created: i32,
    pub tasks_updated: i32,
    pub tasks_superseded: i32,
    pub tasks_cancelled: i32,
    pub items_created: i32,
    pub items_superseded: i32,
}

/// Adds counts and errors; `chunk_done` counts one chunk off. The ingest is finished
/// when no chunk remains: `failed` if `failed`, else `done`.
pub async fn record_progress(
    conn: &mut PgConnection,
    id: IngestId,
    counts: &Counts,
    errors: &[ItemError],
    chunk_done: bool,
    failed: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ingests SET
            tasks_created = tasks_created + $2, tasks_updated = tasks_updated + $3,
            tasks_superseded = tasks_superseded + $4, tasks_cancelled = tasks_cancelled + $5,
            items_created = items_created + $6, items_superseded = items_superseded + $7,
            errors = errors || $8, error_count = error_count + jsonb_array_length($8),
            chunks_remaining = chunks_remaining - $9,
            status = CASE WHEN status = 'failed' THEN 'failed'
                          WHEN chunks_remaining - $9 > 0 THEN 'processing'
                          WHEN $10 THEN 'failed' ELSE 'done' END,
            started_at = COALESCE(started_at, now()),
            finished_at = CASE WHEN chunks_remaining - $9 > 0 THEN NULL ELSE now() END
          WHERE id = $1",
    )
    .bind(id)
    .bind(counts.tasks_created)
    .bind(counts.tasks_updated)
    .bind(counts.tasks_superseded)
    .bind(counts.tasks_cancelled)
    .bind(counts.items_created)
    .bind(counts.items_superseded)
    .bind(Json(errors))
    .bind(i32::from(chunk_done))
    .bind(failed)
    .execute(conn)
    .await
    .map(drop)
}

/// The ingest's message could not be handled (dead-lettered): it fails, with `error`,
/// unless it already finished. Chunks applied before stay applied.
pub async fn fail_unfinished(
    conn: &mut PgConnection,
    id: IngestId,
    error: &ItemError,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ingests SET status = 'failed', errors = errors || $2, error_count = error_count + 1,
                started_at = COALESCE(started_at, now()), finished_at = now()
          WHERE id = $1 AND status IN ('received', 'processing')",
    )
    .bind(id)
    .bind(Json([error]))
    .execute(conn)
    .await
    .map(drop)
}

/// A chunk to apply, with what its tasks need from the batch.
#[derive(Debug, sqlx::FromRow)]
pub struct ChunkToApply {
    pub store_ids: Vec<StoreId>,
    pub item_count: i32,
    pub applied: bool,
    pub batch_id: String,
    pub received_by: String,
    pub effective_at: Option<DateTime<Utc>>,
    pub effective_local: Option<NaiveDateTime>,
}

/// Locks the chunk: a duplicate of it (under another message id) waits, then sees it applied.
pub async fn lock_chunk(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
) -> Result<Option<ChunkToApply>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.store_ids, COALESCE(cardinality(c.skus), 0) AS item_count,
                c.applied_at IS NOT NULL AS applied, i.external_id AS batch_id, i.received_by,
                i.effective_at, i.effective_local
           FROM ingest_chunks c JOIN ingests i ON i.id = c.ingest_id
          WHERE c.ingest_id = $1 AND c.chunk_no = $2
          FOR UPDATE OF c",
    )
    .bind(ingest_id)
    .bind(chunk_no)
    .fetch_optional(conn)
    .await
}

/// Marks the chunk applied and drops its arrays (the raw batch remains).
pub async fn mark_chunk_applied(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ingest_chunks SET applied_at = now(), item_store = NULL, skus = NULL, names = NULL,
                price_units = NULL, currencies = NULL
          WHERE ingest_id = $1 AND chunk_no = $2",
    )
    .bind(ingest_id)
    .bind(chunk_no)
    .execute(conn)
    .await
    .map(drop)
}

/// Finished raw integration requests past retention (their tasks stay).
pub const INGEST_PRUNING: crate::db::PruneRule = crate::db::PruneRule {
    table: "ingests",
    count: "SELECT count(*) FROM ingests WHERE received_at < $1 AND status IN ('done', 'failed')",
    delete: "WITH gone AS (
                 DELETE FROM ingests WHERE id IN (
                     SELECT id FROM ingests WHERE received_at < $1 AND status IN ('done', 'failed')
                      LIMIT $2)
                 RETURNING 1)
                 SELECT count(*) FROM gone",
};
