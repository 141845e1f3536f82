//! SQL for ingests: the raw requests, the planned chunks of price batches, and the
//! bulk writes that turn them into tasks and task items.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{IngestId, ItemError, Source};
use crate::{
    stores::StoreId,
    tasks::{TaskId, repo::CreatedTask},
};

/// A request as the API stores it.
pub struct NewIngest<'a> {
    pub id: IngestId,
    pub source: Source,
    pub external_id: &'a str,
    pub body_sha256: &'a str,
    pub received_by: &'a str,
    pub raw: &'a [u8],
    pub item_count: i32,
    pub effective_at: Option<DateTime<Utc>>,
    pub effective_local: Option<NaiveDateTime>,
}

/// Stores the request; false when the sender's id (or this revision) is already known.
pub async fn insert(conn: &mut PgConnection, new: &NewIngest<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO ingests (id, source, external_id, body_sha256, received_by, raw, item_count,
                              effective_at, effective_local)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The ingest that already holds this exact request, with its status.
pub async fn find_revision(
    db: &PgPool,
    source: Source,
    external_id: &str,
    body_sha256: &str,
) -> Result<Option<(IngestId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, status FROM ingests WHERE source = $1 AND external_id = $2 AND body_sha256 = $3",
    )
    .bind(source.as_str())
    .bind(external_id)
    .bind(body_sha256)
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

pub async fn find(db: &PgPool, id: IngestId) -> Result<Option<IngestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, external_id, status, item_count, chunks_total, chunks_remaining,
                tasks_created, tasks_updated, tasks_superseded, tasks_cancelled, items_created,
                items_superseded, errors, error_count, received_at, started_at, finished_at
           FROM ingests WHERE id = $1",
    )
    .bind(id)
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
}

/// Locks the ingest for planning; the raw body only while it is still `received`.
pub async fn lock_received(
    conn: &mut PgConnection,
    id: IngestId,
) -> Result<Option<ReceivedIngest>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, source, status, received_by,
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
    pub prices: Vec<f64>,
    pub currencies: Vec<&'a str>,
}

pub async fn insert_chunk(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
    chunk: &ChunkArrays<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ingest_chunks (ingest_id, chunk_no, store_ids, item_store, skus, names, prices, currencies)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ingest_id)
    .bind(chunk_no)
    .bind(&chunk.store_ids)
    .bind(&chunk.item_store)
    .bind(&chunk.skus)
    .bind(&chunk.names)
    .bind(&chunk.prices)
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
            status = CASE WHEN chunks_remaining - $9 > 0 THEN 'processing'
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

/// Serialises price work per store across batches (in one global order: no deadlocks),
/// so an older batch never supersedes a newer one's item half-way.
pub async fn lock_stores(conn: &mut PgConnection, stores: &[StoreId]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(727301, h)
           FROM (SELECT DISTINCT hashtext(s::text) AS h FROM unnest($1::uuid[]) AS s ORDER BY 1) q",
    )
    .bind(stores)
    .execute(conn)
    .await
    .map(drop)
}

/// The batch's relabel task in each store of the chunk (none twice per store and batch).
#[allow(clippy::too_many_arguments)]
pub async fn insert_relabel_tasks(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    stores: &[StoreId],
    ids: &[Uuid],
    title: &str,
    description: &str,
    effective_at: Option<DateTime<Utc>>,
    effective_local: Option<NaiveDateTime>,
    created_by: &str,
) -> Result<Vec<CreatedTask>, sqlx::Error> {
    sqlx::query_as(
        "WITH inserted AS (
            INSERT INTO tasks (id, store_id, kind, source, title, description, ingest_id, due_at, created_by)
            SELECT c.id, s.id, 'price_relabel', 'price_change', $3, $4, $5,
                   COALESCE($6, ($7::timestamp AT TIME ZONE s.time_zone)), $8
              FROM unnest($1::uuid[], $2::uuid[]) AS c(store_id, id)
              JOIN stores s ON s.id = c.store_id
            ON CONFLICT (ingest_id, store_id) WHERE kind = 'price_relabel' DO NOTHING
            RETURNING id, store_id, kind, title, due_at
         )
         SELECT i.id, i.store_id, r.code AS region, i.kind, i.title, i.due_at
           FROM inserted i JOIN stores s ON s.id = i.store_id JOIN regions r ON r.id = s.region_id",
    )
    .bind(stores)
    .bind(ids)
    .bind(title)
    .bind(description)
    .bind(ingest_id)
    .bind(effective_at)
    .bind(effective_local)
    .bind(created_by)
    .fetch_all(conn)
    .await
}

/// The chunk's (store, SKU) pairs as a relation (`n`).
const CHUNK_ITEMS: &str = "ingest_chunks c
    CROSS JOIN LATERAL unnest(c.item_store, c.skus, c.names, c.prices, c.currencies)
        AS n(store_no, sku, name, price, currency)";

/// Active items of older batches for the chunk's (store, SKU) pairs: `superseded` where
/// their task is still open or in progress, `closed` where it is not (done, submitted
/// for review, cancelled). Returns each task that lost items to `superseded`, with how
/// many (counted here, not item by item in the worker: a chunk can supersede 40,000).
pub async fn supersede_items(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
) -> Result<Vec<(TaskId, i64)>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH changed AS (
            UPDATE task_items o
               SET state = CASE WHEN t.status IN ('open', 'in_progress') THEN 'superseded' ELSE 'closed' END,
                   superseded_by = $1
              FROM {CHUNK_ITEMS}, tasks t
             WHERE c.ingest_id = $1 AND c.chunk_no = $2
               AND o.store_id = c.store_ids[n.store_no] AND o.sku = n.sku
               AND o.state = 'active' AND o.ingest_id < $1 AND t.id = o.task_id
            RETURNING o.task_id, o.state
         )
         SELECT task_id, count(*) FROM changed WHERE state = 'superseded' GROUP BY task_id"
    )))
    .bind(ingest_id)
    .bind(chunk_no)
    .fetch_all(conn)
    .await
}

/// The chunk's items, in one statement. With `may_conflict`, an item a newer batch
/// already holds is skipped here (see [`insert_items_already_superseded`]); without it
/// (the usual case, checked under the stores' locks) the plain insert avoids the
/// per-row speculative insertion of `ON CONFLICT`. Returns the items written.
/// `tasks` holds each store's relabel task, aligned with the chunk's `store_ids`.
pub async fn insert_items(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
    tasks: &[TaskId],
    may_conflict: bool,
) -> Result<u64, sqlx::Error> {
    let on_conflict = if may_conflict {
        "ON CONFLICT (store_id, sku) WHERE state = 'active' DO NOTHING"
    } else {
        ""
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_items (task_id, sku, store_id, ingest_id, name, new_price, currency)
         SELECT ($3::uuid[])[n.store_no], n.sku, c.store_ids[n.store_no], $1, n.name,
                n.price::numeric(14, 4), n.currency
           FROM {CHUNK_ITEMS}
          WHERE c.ingest_id = $1 AND c.chunk_no = $2
         {on_conflict}"
    )))
    .bind(ingest_id)
    .bind(chunk_no)
    .bind(tasks)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// Items that a newer batch got to first (applied out of order): kept, as superseded.
pub async fn insert_items_already_superseded(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    chunk_no: i32,
    tasks: &[TaskId],
) -> Result<u64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_items (task_id, sku, store_id, ingest_id, name, new_price, currency, state, superseded_by)
         SELECT ($3::uuid[])[n.store_no], n.sku, a.store_id, $1, n.name, n.price::numeric(14, 4), n.currency,
                'superseded', a.ingest_id
           FROM {CHUNK_ITEMS}
           JOIN task_items a ON a.store_id = c.store_ids[n.store_no] AND a.sku = n.sku AND a.state = 'active'
                            AND a.ingest_id > $1
          WHERE c.ingest_id = $1 AND c.chunk_no = $2
         ON CONFLICT DO NOTHING"
    )))
    .bind(ingest_id)
    .bind(chunk_no)
    .bind(tasks)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// This batch's relabel task in each of `stores`, in that order.
pub async fn relabel_tasks(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    stores: &[StoreId],
) -> Result<Vec<TaskId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT t.id FROM unnest($2::uuid[]) WITH ORDINALITY AS s(store_id, n)
           JOIN tasks t ON t.ingest_id = $1 AND t.kind = 'price_relabel' AND t.store_id = s.store_id
          ORDER BY s.n",
    )
    .bind(ingest_id)
    .bind(stores)
    .fetch_all(conn)
    .await
}

/// Whether the chunk's stores hold active items of older batches (to supersede) and of
/// this or newer ones (applied first, out of order, or by hand). Each false skips that
/// per-item work.
#[derive(Debug, sqlx::FromRow)]
pub struct ActiveBeside {
    pub older: bool,
    pub not_older: bool,
}

pub async fn active_items_beside(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    stores: &[StoreId],
) -> Result<ActiveBeside, sqlx::Error> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM task_items
                         WHERE store_id = ANY($2) AND state = 'active' AND ingest_id < $1) AS older,
                EXISTS (SELECT 1 FROM task_items
                         WHERE store_id = ANY($2) AND state = 'active' AND ingest_id >= $1) AS not_older",
    )
    .bind(ingest_id)
    .bind(stores)
    .fetch_one(conn)
    .await
}

/// Open relabel tasks among `tasks` left without an active item: locked, for cancelling.
pub async fn emptied_open_tasks(
    conn: &mut PgConnection,
    tasks: &[TaskId],
) -> Result<Vec<TaskId>, sqlx::Error> {
    if tasks.is_empty() {
        // Most chunks supersede nothing: no round trip for them.
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "SELECT t.id FROM tasks t
          WHERE t.id = ANY($1) AND t.status IN ('open', 'in_progress')
            AND NOT EXISTS (SELECT 1 FROM task_items i WHERE i.task_id = t.id AND i.state = 'active')
          ORDER BY t.id FOR UPDATE",
    )
    .bind(tasks)
    .fetch_all(conn)
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
                prices = NULL, currencies = NULL
          WHERE ingest_id = $1 AND chunk_no = $2",
    )
    .bind(ingest_id)
    .bind(chunk_no)
    .execute(conn)
    .await
    .map(drop)
}

/// A task an ingest wrote, and whether it was created (else updated).
#[derive(Debug, sqlx::FromRow)]
pub struct Upserted {
    pub id: TaskId,
    pub inserted: bool,
}

/// The receiving task of a delivery: created, or updated by a newer revision while open.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_receiving_task(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    store_id: StoreId,
    delivery_id: &str,
    title: &str,
    description: &str,
    expected_at: DateTime<Utc>,
    created_by: &str,
) -> Result<Option<Upserted>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO tasks (id, store_id, kind, source, title, description, ingest_id, external_ref, due_at, created_by)
         VALUES ($1, $2, 'receiving', 'delivery', $3, $4, $5, $6, $7, $8)
         ON CONFLICT (external_ref) WHERE source = 'delivery' DO UPDATE
            SET store_id = EXCLUDED.store_id, title = EXCLUDED.title, description = EXCLUDED.description,
                due_at = EXCLUDED.due_at, ingest_id = EXCLUDED.ingest_id,
                row_version = tasks.row_version + 1, updated_at = now()
          WHERE tasks.ingest_id < EXCLUDED.ingest_id AND tasks.status IN ('open', 'in_progress')
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(Uuid::now_v7())
    .bind(store_id)
    .bind(title)
    .bind(description)
    .bind(ingest_id)
    .bind(delivery_id)
    .bind(expected_at)
    .bind(created_by)
    .fetch_optional(conn)
    .await
}

/// The open receiving task of a delivery, locked, unless a newer revision wrote it.
pub async fn open_receiving_task(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    delivery_id: &str,
) -> Result<Option<TaskId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM tasks
          WHERE source = 'delivery' AND external_ref = $1 AND ingest_id < $2
            AND status IN ('open', 'in_progress', 'submitted')
          FOR UPDATE",
    )
    .bind(delivery_id)
    .bind(ingest_id)
    .fetch_optional(conn)
    .await
}

/// Stamps the ingest that changed a task (so older revisions stay older).
pub async fn set_task_ingest(
    conn: &mut PgConnection,
    task: TaskId,
    ingest_id: IngestId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tasks SET ingest_id = $2 WHERE id = $1")
        .bind(task)
        .bind(ingest_id)
        .execute(conn)
        .await
        .map(drop)
}

/// The one open restock task of a store and SKU: created, or updated by a newer alert.
/// Concurrent alerts meet on `tasks_open_restock_key`: one inserts, the others update.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_restock_task(
    conn: &mut PgConnection,
    ingest_id: IngestId,
    store_id: StoreId,
    sku: &str,
    title: &str,
    description: &str,
    priority: &str,
    created_by: &str,
) -> Result<Option<Upserted>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO tasks (id, store_id, kind, source, title, description, priority, ingest_id, external_ref,
                            due_at, created_by)
         VALUES ($1, $2, 'restock', 'stock_alert', $3, $4, $5, $6, $7, now() + interval '4 hours', $8)
         ON CONFLICT (store_id, external_ref) WHERE kind = 'restock' AND status IN ('open', 'in_progress', 'submitted')
         DO UPDATE SET description = EXCLUDED.description, priority = EXCLUDED.priority,
                       ingest_id = EXCLUDED.ingest_id, row_version = tasks.row_version + 1, updated_at = now()
          WHERE tasks.ingest_id < EXCLUDED.ingest_id
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(Uuid::now_v7())
    .bind(store_id)
    .bind(title)
    .bind(description)
    .bind(priority)
    .bind(ingest_id)
    .bind(sku)
    .bind(created_by)
    .fetch_optional(conn)
    .await
}
