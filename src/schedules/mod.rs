//! Recurring tasks (PRODUCT §8): template versions carry a `templates::Recurrence` in store-local
//! time. The scheduler's leader plans due occurrences and publishes `schedule.due` in
//! store batches; workers create the tasks, each occurrence once per store (unique key
//! on template, store and occurrence), skipping stores closed that local day.
//!
//! Catch-up policy: after downtime, occurrences inside `SCHEDULE_CATCH_UP_SECONDS`
//! (default 6 h) are created late, once; older ones are skipped and counted in
//! `storeops_schedule_occurrences_skipped_total`. A new schedule starts from its
//! creation: it never backfills the past.

mod handler;
mod planner;

use std::sync::Arc;

pub use planner::Planner;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    events::{Event, consumer::Registry},
    ids::{StoreId, TemplateId},
};

/// An occurrence of a template version's schedule came due for these stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleDue {
    pub template_id: TemplateId,
    pub version: i32,
    pub occurrence_at: DateTime<Utc>,
    /// The stores' local date of the occurrence (closures are by local date).
    pub local_date: NaiveDate,
    pub store_ids: Vec<StoreId>,
}

impl Event for ScheduleDue {
    const ROUTING_KEY: &'static str = "schedule.due";
}

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[ScheduleDue::ROUTING_KEY];

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe::<ScheduleDue>("schedules", Arc::new(handler::CreateOccurrence));
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::{IntCounter, IntCounterVec, Opts};

    pub static PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounter::new(
                "storeops_schedule_occurrences_published_total",
                "Store occurrences of recurring schedules published as schedule.due",
            )
            .expect("valid metric"),
        )
    });
    pub static SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_schedule_occurrences_skipped_total",
                    "Store occurrences not created: older than the catch-up window, or the store was closed",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        )
    });
}
