//! `storeops seed`: a realistic, deterministic demo chain. The same arguments always
//! produce the same ids and rows, so a re-run inserts nothing new (ON CONFLICT DO
//! NOTHING) and tests can rely on the shape. Each module writes its own tables (stores,
//! templates, tasks); this only sequences them, above all of them. Rows go in as UNNEST
//! batches: a 1,000-store chain with 25,000 staff takes well under a second.

use std::fmt;

use sqlx::PgPool;

use crate::{stores, tasks, templates};

/// What a seed run inserted (zero everywhere on a re-run).
#[derive(Debug, Default)]
pub struct SeedReport {
    pub regions: u64,
    pub stores: u64,
    pub closures: u64,
    pub staff: u64,
    pub templates: u64,
    pub history_tasks: u64,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seeded: {} regions, {} stores, {} closure dates, {} staff, {} templates, {} past tasks \
             (rows already present are kept)",
            self.regions,
            self.stores,
            self.closures,
            self.staff,
            self.templates,
            self.history_tasks
        )
    }
}

pub async fn seed_chain(
    db: &PgPool,
    stores: u32,
    history_days: u32,
) -> Result<SeedReport, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (regions, stores, closures, staff) = stores::seed::chain(&mut tx, stores).await?;
    let mut report = SeedReport {
        regions,
        stores,
        closures,
        staff,
        templates: templates::seed::everyday_routines(&mut tx).await?,
        history_tasks: 0,
    };
    tx.commit().await?;
    // History goes in a transaction per day, so a long history never holds one huge one.
    for days_ago in (1..=history_days).rev() {
        let mut tx = db.begin().await?;
        report.history_tasks += tasks::seed::insert_history_day(&mut tx, days_ago).await?;
        tx.commit().await?;
    }
    Ok(report)
}
