//! The transactional outbox (PRODUCT §5): `enqueue` inside the caller's transaction, so an
//! event exists exactly when the change that caused it committed.

use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{Event, trace_context};

/// Inserts one event; returns its message id.
pub async fn enqueue<E: Event>(conn: &mut PgConnection, event: &E) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let routing_key = E::ROUTING_KEY;
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (id, routing_key, payload, headers) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(routing_key)
        .bind(Json(payload))
        .bind(Json(trace_context::current()))
        .execute(conn)
        .await?;
    Ok(id)
}

/// Inserts many events with one statement (fan-outs); returns their message ids.
pub async fn enqueue_many<E: Event>(
    conn: &mut PgConnection,
    events: &[E],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let routing_key = E::ROUTING_KEY;
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let values = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let headers = serde_json::to_value(trace_context::current()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO outbox (id, routing_key, payload, headers)
         SELECT id, $2, payload, $4 FROM unnest($1::uuid[], $3::jsonb[]) AS t(id, payload)",
    )
    .bind(&ids)
    .bind(routing_key)
    .bind(values)
    .bind(Json(headers))
    .execute(conn)
    .await?;
    Ok(ids)
}

/// One claimed, unpublished event.
#[derive(Debug, sqlx::FromRow)]
pub struct PendingEvent {
    pub id: Uuid,
    pub routing_key: String,
    pub payload: Json<serde_json::Value>,
    pub headers: Json<std::collections::HashMap<String, String>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: i32,
}

/// Claims up to `limit` unpublished events for this transaction. Concurrent relays
/// skip each other's rows; no cursor is kept because ids do not commit in order.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<PendingEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, routing_key, payload, headers, created_at, attempts FROM outbox
          WHERE published_at IS NULL AND next_attempt_at <= clock_timestamp()
          ORDER BY created_at
          LIMIT $1
          FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Runs a mark: `sql` sets columns `WHERE id = ANY($1) AND id BETWEEN $2 AND $3`, with
/// `$4` = `error` when given. The outbox is partitioned by id range (UUIDv7, by day)
/// and PostgreSQL cannot prune partitions from `id = ANY($1)` in a generic plan, so
/// the batch's first and last id bound it to one or two days' partitions.
async fn mark(
    conn: &mut PgConnection,
    sql: &'static str,
    ids: &[Uuid],
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok(());
    };
    let mut query = sqlx::query(sql).bind(ids).bind(first).bind(last);
    if let Some(error) = error {
        query = query.bind(error);
    }
    query.execute(conn).await.map(drop)
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    mark(
        conn,
        "UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1
          WHERE id = ANY($1) AND id BETWEEN $2 AND $3",
        ids,
        None,
    )
    .await
}

/// The broker returned these as unroutable: kept, marked, never retried blindly.
pub async fn mark_returned(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    mark(
        conn,
        "UPDATE outbox SET published_at = clock_timestamp(), returned_at = clock_timestamp(),
                attempts = attempts + 1, last_error = 'unroutable: no queue is bound to this routing key'
          WHERE id = ANY($1) AND id BETWEEN $2 AND $3",
        ids,
        None,
    )
    .await
}

/// The broker refused these (nack) or the publish failed: try again after a backoff.
pub async fn mark_failed(
    conn: &mut PgConnection,
    ids: &[Uuid],
    error: &str,
) -> Result<(), sqlx::Error> {
    mark(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, last_error = $4,
                next_attempt_at = clock_timestamp() + least(interval '1 second' * power(2, attempts), interval '5 minutes')
          WHERE id = ANY($1) AND id BETWEEN $2 AND $3",
        ids,
        Some(error),
    )
    .await
}

/// Pending count and the age of the oldest pending event, for the gauges.
pub async fn backlog(db: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8, 0)
           FROM outbox WHERE published_at IS NULL",
    )
    .fetch_one(db)
    .await
}

/// Published rows of outbox days that could not go whole (a row in them is still
/// unpublished); newer days wait to be dropped whole. The bound prunes partitions.
pub const OUTBOX_PRUNING: crate::db::PruneRule = crate::db::PruneRule {
    table: "outbox",
    count: "SELECT count(*) FROM outbox WHERE published_at < $1
                   AND id < uuid_v7_floor(($1 AT TIME ZONE 'UTC')::date)",
    delete: "WITH gone AS (
                 DELETE FROM outbox WHERE id IN (
                     SELECT id FROM outbox WHERE published_at < $1
                        AND id < uuid_v7_floor(($1 AT TIME ZONE 'UTC')::date)
                      LIMIT $2)
                 RETURNING 1)
                 SELECT count(*) FROM gone",
};
