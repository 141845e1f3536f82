//! The scheduler role: time-driven jobs (SPEC §8). Jobs register here as modules
//! gain them; until then it holds its database pool and shuts down cleanly.

use sqlx::PgPool;

use super::RoleParts;
use crate::{admin::Check, shutdown::Shutdown};

pub fn start(db: PgPool, shutdown: &Shutdown) -> RoleParts {
    let signalled = shutdown.signalled.clone();
    let task = async move {
        signalled.cancelled().await;
        tracing::info!("scheduler stopped");
        Ok(())
    };
    RoleParts {
        checks: vec![Check::database(db)],
        task: Box::pin(task),
    }
}
