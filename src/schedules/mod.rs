//! Recurring tasks (SPEC §8): template versions carry a [`Recurrence`] in store-local
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
mod recurrence;

use std::sync::Arc;

pub use planner::Planner;
pub use recurrence::{Day, Frequency, Recurrence, local_instant};

use crate::events::consumer::Registry;

pub const DUE_ROUTING_KEY: &str = "schedule.due";

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe(
        "schedules",
        DUE_ROUTING_KEY,
        Arc::new(handler::CreateOccurrence),
    );
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
