//! The primary's connection pool and the schema migrations (`storeops migrate`).
//! Serving roles never migrate: they only check that the schema is at the version
//! this build expects (readiness).

use std::time::Duration;

use sqlx::{
    Connection, PgPool, Postgres, Transaction,
    migrate::{MigrateError, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::{Config, ConfigError};

pub static MIGRATOR: Migrator = sqlx::migrate!();

/// A pooled connection idle this long is pinged before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// A lazily connecting pool: start-up never blocks on the database, readiness reports it.
pub fn connect(config: &Config, application: &str) -> Result<PgPool, ConfigError> {
    let url = config.database_url()?;
    let options: PgConnectOptions = url.expose().parse().map_err(|e| ConfigError {
        var: "DATABASE_URL",
        reason: format!("cannot parse: {e}"),
    })?;
    let statement_timeout = format!("{}ms", config.db_statement_timeout.as_millis());
    let options = options
        .application_name(&format!("storeops-{application}"))
        .options([("statement_timeout", statement_timeout.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(config.db_pool_max)
        .min_connections(config.db_pool_min)
        .acquire_timeout(config.db_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        // sqlx pings every connection it hands out by default: a second round trip for
        // every one-statement request (the store task list). Only a connection that sat
        // idle long enough to have been cut is checked; a busy one proves itself.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// Whether `error` means the connection or the server is gone (a restart, a failover, a
/// network cut), as opposed to something wrong with the statement: worth a retry on
/// another connection, and an outage (503) to a client rather than a fault (500).
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01/02/03: admin or crash shutdown, starting up.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Whether `error` means the database cannot serve now: a lost connection, or no
/// connection free in time.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut) || is_connection_error(error)
}

/// Begins a transaction. When its connection turns out to be dead before any statement
/// ran (the server restarted under the pool's idle connections), the pool is swept
/// and the transaction begun once more on a live connection.
pub async fn begin(db: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    match db.begin().await {
        Err(error) if is_connection_error(&error) => {
            tracing::warn!(%error, "database connection lost; retrying on a fresh one");
            evict_dead(db).await;
            db.begin().await
        }
        result => result,
    }
}

/// Pings every idle connection once and closes the dead ones, so that after a server
/// restart the next requests get live connections rather than each finding a dead one.
pub async fn evict_dead(db: &PgPool) {
    let mut checked = Vec::new();
    while let Some(mut conn) = db.try_acquire() {
        if conn.ping().await.is_err() {
            conn.close_on_drop();
        }
        // Held until the sweep ends, so `try_acquire` hands out each idle one once.
        checked.push(conn);
    }
}

/// The version of the newest migration compiled into this binary.
pub fn expected_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// `Ok` when every migration this build knows is applied and none failed half-way.
pub async fn check_schema(db: &PgPool) -> Result<(), String> {
    let applied: Option<(Option<i64>, bool)> =
        sqlx::query_as("SELECT max(version), bool_and(success) FROM _sqlx_migrations")
            .fetch_optional(db)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                    "schema not migrated (run `storeops migrate up`)".to_owned()
                }
                other => format!("cannot read schema version: {other}"),
            })?;
    let expected = expected_schema_version();
    match applied {
        Some((_, false)) => {
            Err("a migration failed part-way; see `storeops migrate status`".to_owned())
        }
        Some((Some(version), true)) if version == expected => Ok(()),
        Some((Some(version), true)) if version > expected => Err(format!(
            "schema is at {version}, newer than this build's {expected}"
        )),
        Some((version, _)) => Err(format!(
            "schema is at {}, this build needs {expected} (run `storeops migrate up`)",
            version.unwrap_or(0)
        )),
        None => Err("schema not migrated (run `storeops migrate up`)".to_owned()),
    }
}

/// Readiness: the database answers. A lost connection sweeps the pool, so the role is
/// ready again as soon as the server is.
pub async fn ping(db: &PgPool) -> Result<(), String> {
    match sqlx::query("SELECT 1").execute(db).await {
        Ok(_) => Ok(()),
        Err(error) => {
            if is_connection_error(&error) {
                evict_dead(db).await;
            }
            Err(format!("database unreachable: {error}"))
        }
    }
}

/// One line per migration this build knows, with whether it is applied.
pub async fn migration_status(db: &PgPool) -> Result<Vec<(i64, String, bool)>, MigrateError> {
    let applied = applied_versions(db).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            (
                m.version,
                m.description.to_string(),
                applied.contains(&m.version),
            )
        })
        .collect())
}

/// Reverts the newest `steps` applied migrations.
pub async fn migrate_down(db: &PgPool, steps: usize) -> Result<Vec<i64>, MigrateError> {
    let mut applied = applied_versions(db).await?;
    applied.reverse();
    let reverted: Vec<i64> = applied.iter().take(steps).copied().collect();
    let target = applied.get(steps).copied().unwrap_or(0);
    MIGRATOR.undo(db, target).await?;
    Ok(reverted)
}

/// Applied migration versions, oldest first; none when the table does not exist yet.
async fn applied_versions(db: &PgPool) -> Result<Vec<i64>, MigrateError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(db)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(db)
            .await?,
    )
}

/// How pruning removes a table's rows past retention, written by the table's owner:
/// `count` answers how many rows older than $1 there are; `delete` removes up to $2 of
/// them and answers how many. The rows past retention are ones nothing writes any
/// more, so the delete takes their locks itself: `FOR UPDATE` first would double the
/// heap writes and the WAL that replicas replay, and a concurrent prune just waits for
/// the batch and skips its rows.
#[derive(Debug, Clone, Copy)]
pub struct PruneRule {
    pub table: &'static str,
    pub count: &'static str,
    pub delete: &'static str,
}
