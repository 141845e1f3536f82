//! The scheduler's lease: a row in PostgreSQL with a holder and an expiry. The holder
//! renews it; a standby takes it once it has expired, or at once when the holder
//! releases it (NOTIFY). The holder fences itself: it stops acting before its lease
//! could expire if it cannot renew.

use std::time::Duration;

use sqlx::PgPool;

pub const LEASE_NAME: &str = "scheduler";
pub const RELEASE_CHANNEL: &str = "storeops_scheduler_lease";

/// Takes or renews the lease for `holder`; `true` when `holder` holds it afterwards.
/// Who holds the lease after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Held,
    /// Another process holds it, for this long at most unless it renews.
    HeldByAnother {
        expires_in: Duration,
    },
}

/// Takes or renews the lease for `holder`. A lost connection (the server restarted
/// under the pool) is swept and the attempt made once more: the statement is idempotent
/// for its holder.
pub async fn acquire(db: &PgPool, holder: &str, ttl: Duration) -> Result<Attempt, sqlx::Error> {
    match attempt(db, holder, ttl).await {
        Err(error) if crate::db::is_connection_error(&error) => {
            crate::db::evict_dead(db).await;
            attempt(db, holder, ttl).await
        }
        result => result,
    }
}

async fn attempt(db: &PgPool, holder: &str, ttl: Duration) -> Result<Attempt, sqlx::Error> {
    // The outer select sees the lease as it was before the insert: when another holds
    // it, its expiry tells a standby when to try next.
    let (held, expires_in_ms): (bool, Option<f64>) = sqlx::query_as(
        "WITH taken AS (
            INSERT INTO scheduler_leases (name, holder, expires_at, acquired_at, renewed_at)
            VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond', clock_timestamp(), clock_timestamp())
            ON CONFLICT (name) DO UPDATE
               SET holder = EXCLUDED.holder,
                   expires_at = EXCLUDED.expires_at,
                   renewed_at = EXCLUDED.renewed_at,
                   acquired_at = CASE WHEN scheduler_leases.holder = EXCLUDED.holder
                                      THEN scheduler_leases.acquired_at ELSE EXCLUDED.acquired_at END
             WHERE scheduler_leases.holder = EXCLUDED.holder
                OR scheduler_leases.expires_at < clock_timestamp()
            RETURNING holder
         )
         SELECT EXISTS (SELECT 1 FROM taken),
                (SELECT EXTRACT(EPOCH FROM expires_at - clock_timestamp())::float8 * 1000
                   FROM scheduler_leases WHERE name = $1)",
    )
    .bind(LEASE_NAME)
    .bind(holder)
    .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
    .fetch_one(db)
    .await?;
    if held {
        return Ok(Attempt::Held);
    }
    let expires_in = Duration::from_millis(expires_in_ms.unwrap_or(0.0).max(0.0) as u64);
    Ok(Attempt::HeldByAnother { expires_in })
}

/// Gives the lease up and wakes the standbys.
pub async fn release(db: &PgPool, holder: &str) -> Result<(), sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
    sqlx::query("DELETE FROM scheduler_leases WHERE name = $1 AND holder = $2")
        .bind(LEASE_NAME)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RELEASE_CHANNEL)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The current holder, if the lease is live.
pub async fn holder(db: &PgPool) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT holder FROM scheduler_leases WHERE name = $1 AND expires_at > clock_timestamp()",
    )
    .bind(LEASE_NAME)
    .fetch_optional(db)
    .await
}
