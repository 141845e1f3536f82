//! Reporting for managers and analysts (SPEC §7, §9): compliance from the daily
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

/// Reporting reads (SPEC §7, §9): replica pools, lag limits, statistics refresh.
#[derive(Debug, Clone)]
pub struct ReportingConfig {
    /// Metric label per replica, in DATABASE_REPLICA_URLS order.
    pub replica_names: Vec<String>,
    /// A replica further behind than this is skipped.
    pub max_lag: std::time::Duration,
    pub lag_check_interval: std::time::Duration,
    /// Connections per reporting pool (each replica, and the primary as fallback).
    pub pool_max: usize,
    pub statement_timeout: std::time::Duration,
    /// How often the scheduler folds task changes into the daily statistics.
    pub stats_interval: std::time::Duration,
}
