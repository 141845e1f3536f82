//! `Idempotency-Key` for writes an offline mobile client may retry: the first answer to
//! (caller, key) is stored in the same transaction as the write and replayed for the
//! same request; the same key with a different request is refused with 422. The key is
//! read from the request by `http::extract::IdempotencyKey`; the route decides the
//! status, the same for the first answer and its replays.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, types::Json};

use crate::error::ApiError;

/// A fingerprint of what the request asks for (route scope plus canonical body).
pub fn fingerprint(scope: &str, body: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the key says about this request.
pub enum Claim {
    /// First use: do the work, then [`remember`] the answer in the same transaction.
    Fresh,
    /// Seen before with the same request: answer this again.
    Replay(serde_json::Value),
}

/// The remembered answer of a request already made with this key, looked up before
/// any work (a replay does none): `None` when the key is new or its first request is
/// still in flight (`claim` then waits for it). The same key with another request: 422.
pub async fn peek(
    db: &sqlx::PgPool,
    subject: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    let found: Option<(String, Json<serde_json::Value>)> = sqlx::query_as(
        "SELECT request_hash, response FROM idempotency_keys WHERE subject = $1 AND key = $2",
    )
    .bind(subject)
    .bind(key)
    .fetch_optional(db)
    .await?;
    match found {
        Some((hash, _)) if hash != fingerprint => Err(ApiError::validation(
            "Idempotency-Key",
            "was already used for a different request",
        )),
        Some((_, Json(response))) if !response.is_null() => Ok(Some(response)),
        _ => Ok(None),
    }
}

/// Reserves the key inside `conn`'s transaction. A concurrent request with the same
/// key waits on the reservation and then sees the committed answer.
pub async fn claim(
    conn: &mut PgConnection,
    subject: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (subject, key, request_hash, response)
         VALUES ($1, $2, $3, 'null') ON CONFLICT DO NOTHING",
    )
    .bind(subject)
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(Claim::Fresh);
    }
    let (hash, response): (String, Json<serde_json::Value>) = sqlx::query_as(
        "SELECT request_hash, response FROM idempotency_keys WHERE subject = $1 AND key = $2",
    )
    .bind(subject)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    if hash != fingerprint {
        return Err(ApiError::validation(
            "Idempotency-Key",
            "was already used for a different request",
        ));
    }
    Ok(Claim::Replay(response.0))
}

pub async fn remember(
    conn: &mut PgConnection,
    subject: &str,
    key: &str,
    response: &impl Serialize,
) -> Result<(), ApiError> {
    let body = serde_json::to_value(response).map_err(|e| ApiError::Internal(e.into()))?;
    sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE subject = $1 AND key = $2")
        .bind(subject)
        .bind(key)
        .bind(Json(body))
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembered answers past the window in which a client may replay its request.
pub const PRUNING: crate::db::PruneRule = crate::db::PruneRule {
    table: "idempotency_keys",
    count: "SELECT count(*) FROM idempotency_keys WHERE created_at < $1",
    delete: "WITH gone AS (
                 DELETE FROM idempotency_keys WHERE (subject, key) IN (
                     SELECT subject, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)
                 RETURNING 1)
                 SELECT count(*) FROM gone",
};
