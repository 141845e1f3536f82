//! `Idempotency-Key` for writes an offline mobile client may retry: the first answer to
//! (caller, key) is stored in the same transaction as the write and replayed for the
//! same request; the same key with a different request is refused with 422.

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, types::Json};

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";

/// The key from the request, validated.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1-200 visible ASCII characters".to_owned(),
            )
        })?;
    Ok(Some(key.to_owned()))
}

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
    Replay(StatusCode, serde_json::Value),
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
        "INSERT INTO idempotency_keys (subject, key, request_hash, status, response)
         VALUES ($1, $2, $3, 0, 'null') ON CONFLICT DO NOTHING",
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
    let (hash, status, response): (String, i32, Json<serde_json::Value>) = sqlx::query_as(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE subject = $1 AND key = $2",
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
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "stored idempotent status {status} is invalid"
            ))
        })?;
    Ok(Claim::Replay(status, response.0))
}

pub async fn remember(
    conn: &mut PgConnection,
    subject: &str,
    key: &str,
    status: StatusCode,
    response: &impl Serialize,
) -> Result<(), ApiError> {
    let body = serde_json::to_value(response).map_err(|e| ApiError::Internal(e.into()))?;
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4 WHERE subject = $1 AND key = $2",
    )
    .bind(subject)
    .bind(key)
    .bind(i32::from(status.as_u16()))
    .bind(Json(body))
    .execute(conn)
    .await?;
    Ok(())
}
