//! Reporting for managers and analysts (PRODUCT §7, §9): compliance from the daily
//! statistics, overdue work now, and the CSV export, all read through
//! [`sources::ReadSources`] (a replica fresh enough, else the primary), plus the
//! scheduler job that keeps the statistics current. The `reporting` schema of views
//! for analysts is defined in the migrations and documented in docs/ANALYTICS.md.

pub mod repo;
mod routes;
pub mod sources;
pub mod stats;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use routes::router;
pub use sources::ReadSources;

/// How the compliance report groups its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Region,
    Store,
    Template,
}

/// Registers this module's metrics at start-up, so their families exist (and a name
/// clash fails) before the first report is read.
pub fn init_metrics() {
    std::sync::LazyLock::force(&sources::metrics::REPLICA_LAG);
    std::sync::LazyLock::force(&sources::metrics::REPORT_READS);
    std::sync::LazyLock::force(&stats::metrics::ROWS);
}
