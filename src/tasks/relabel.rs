//! A price batch's task items: the SKUs of each store's relabel task, superseding older
//! batches' items of the same (store, SKU). Items are written set-based from the column
//! arrays that `ingest` planned into `ingest_chunks` (one row per chunk), never row by
//! row through this process: a chunk holds ~40,000 items.

use sqlx::PgConnection;

use super::write;
use crate::ids::{IngestId, StoreId, TaskId};

/// The chunk's (store, SKU) pairs as a relation (`n`).
const CHUNK_ITEMS: &str = "ingest_chunks c
    CROSS JOIN LATERAL unnest(c.item_store, c.skus, c.names, c.price_units, c.currencies)
        AS n(store_no, sku, name, price, currency)";

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
        concat!(
            "WITH changed AS (
            UPDATE task_items o
               SET state = CASE WHEN t.status IN ",
            crate::tasks::task_status_sql!(active),
            " THEN 'superseded' ELSE 'closed' END,
                   superseded_by = $1
              FROM {CHUNK_ITEMS}, tasks t
             WHERE c.ingest_id = $1 AND c.chunk_no = $2
               AND o.store_id = c.store_ids[n.store_no] AND o.sku = n.sku
               AND o.state = 'active' AND o.ingest_id < $1 AND t.id = o.task_id
            RETURNING o.task_id, o.state
         )
         SELECT task_id, count(*) FROM changed WHERE state = 'superseded' GROUP BY task_id"
        ),
        CHUNK_ITEMS = CHUNK_ITEMS
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
                (n.price::numeric / 10000)::numeric(14, 4), n.currency
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
         SELECT ($3::uuid[])[n.store_no], n.sku, a.store_id, $1, n.name, (n.price::numeric / 10000)::numeric(14, 4), n.currency,
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

/// Cancels the open relabel tasks among `tasks` that a later batch left without an
/// active item (nothing is left to do), as any cancel: audit trail and
/// `task.cancelled`. Answers the tasks it cancelled.
pub async fn cancel_emptied(
    conn: &mut PgConnection,
    tasks: &[TaskId],
    by: IngestId,
) -> Result<Vec<TaskId>, sqlx::Error> {
    if tasks.is_empty() {
        // Most chunks supersede nothing: no round trip for them.
        return Ok(Vec::new());
    }
    let emptied: Vec<TaskId> = sqlx::query_scalar(
        concat!("SELECT t.id FROM tasks t
          WHERE t.id = ANY($1) AND t.status IN ", crate::tasks::task_status_sql!(active), "
            AND NOT EXISTS (SELECT 1 FROM task_items i WHERE i.task_id = t.id AND i.state = 'active')
          ORDER BY t.id FOR UPDATE"),
    )
    .bind(tasks)
    .fetch_all(&mut *conn)
    .await?;
    for task in &emptied {
        write::cancel_by_system(
            conn,
            *task,
            None,
            "integration",
            serde_json::json!({"reason": "superseded", "ingest_id": by}),
        )
        .await?;
    }
    Ok(emptied)
}
