//! The announcements' business metrics (PRODUCT §10).

use std::sync::LazyLock;

use prometheus::{GaugeVec, IntCounterVec, IntGauge, Opts};

use crate::metrics::register;

pub static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "storeops_announcements_published_total",
                "Announcements published, by priority and whether they require acknowledgement",
            ),
            &["priority", "requires_ack"],
        )
        .expect("valid metric"),
    )
});

pub static RECEIPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "storeops_announcement_receipts_total",
                "Receipts recorded, by kind (read, acknowledged): one per staff member",
            ),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

pub static REMINDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "storeops_announcement_reminders_total",
                "Reminders about unacknowledged required announcements: level 1 the store, level 2 escalated",
            ),
            &["level"],
        )
        .expect("valid metric"),
    )
});

/// Stores reached that acknowledged, over stores reached, of each required
/// announcement in force, by whether it is past its deadline; leader only.
pub static ACK_RATIO: LazyLock<GaugeVec> = LazyLock::new(|| {
    register(
        GaugeVec::new(
            Opts::new(
                "storeops_announcement_ack_ratio",
                "Acknowledged share of the stores reached, per required announcement in force; leader only",
            ),
            &["announcement", "past_deadline"],
        )
        .expect("valid metric"),
    )
});

/// Required announcements in force; leader only.
pub static REQUIRED_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "storeops_announcements_required_active",
            "Required announcements in force; leader only",
        )
        .expect("valid metric"),
    )
});

pub fn init() {
    LazyLock::force(&PUBLISHED);
    LazyLock::force(&RECEIPTS);
    LazyLock::force(&REMINDERS);
    LazyLock::force(&ACK_RATIO);
    LazyLock::force(&REQUIRED_ACTIVE);
}
