//! Store tasks: what staff must do, its lifecycle, review, audit trail and the events
//! others hear about. All status changes go through one transition table.

mod dto;
pub mod events;
pub mod fixture;
pub mod idempotency;
pub mod jobs;
pub mod relabel;
pub mod repo;
pub mod retention;
mod routes;
pub mod seed;
mod service;
mod summary_json;
pub mod sync;
pub mod write;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use dto::{TaskDto, TaskSummaryDto};
pub use routes::router;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    InProgress,
    /// Completed, waiting for a manager's approve or redo.
    Submitted,
    Done,
    Cancelled,
    Expired,
}

crate::string_enum!(TaskStatus {
    Open => "open",
    InProgress => "in_progress",
    Submitted => "submitted",
    Done => "done",
    Cancelled => "cancelled",
    Expired => "expired",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

crate::string_enum!(Priority {
    Low => "low",
    Normal => "normal",
    High => "high",
    Urgent => "urgent",
});

impl TaskStatus {
    /// Still waiting for a hand: nobody has submitted it yet.
    pub const ACTIVE: &'static [TaskStatus] = &[Self::Open, Self::InProgress];
    /// Not finished: active, or submitted and waiting for review.
    pub const UNFINISHED: &'static [TaskStatus] = &[Self::Open, Self::InProgress, Self::Submitted];
    /// Finished one way or another; pruning removes these after the retention period.
    pub const CLOSED: &'static [TaskStatus] = &[Self::Done, Self::Cancelled, Self::Expired];
}

/// The status sets of [`TaskStatus`] as SQL lists, spliced into statements with
/// `concat!`: partial indexes are defined on these literal lists, and the planner uses
/// such an index only when a query repeats its predicate (a bound array would not).
/// `status_sets_match_their_sql` ties each to its set.
macro_rules! task_status_sql {
    (active) => {
        "('open', 'in_progress')"
    };
    (unfinished) => {
        "('open', 'in_progress', 'submitted')"
    };
    (closed) => {
        "('done', 'cancelled', 'expired')"
    };
}
pub(crate) use task_status_sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskSource {
    Manual,
    Campaign,
    Schedule,
    PriceChange,
    Delivery,
    StockAlert,
}

crate::string_enum!(TaskSource {
    Manual => "manual",
    Campaign => "campaign",
    Schedule => "schedule",
    PriceChange => "price_change",
    Delivery => "delivery",
    StockAlert => "stock_alert",
});

/// A relabel task item's state: `active` is still to relabel; a later price batch for
/// the same store and SKU makes it `superseded` while its task is open, or `closed`
/// when that task was already closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskItemState {
    Active,
    Superseded,
    Closed,
}

crate::string_enum!(TaskItemState {
    Active => "active",
    Superseded => "superseded",
    Closed => "closed",
});

/// What staff do to a task (`POST /tasks/{id}/<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Complete,
    Approve,
    Redo,
    Cancel,
}

/// The transition table: from which statuses an action is legal, and where it leads.
pub fn transition(action: Action, review_required: bool) -> (&'static [TaskStatus], TaskStatus) {
    use TaskStatus::*;
    match action {
        Action::Start => (&[Open], InProgress),
        Action::Complete if review_required => (&[Open, InProgress], Submitted),
        Action::Complete => (&[Open, InProgress], Done),
        Action::Approve => (&[Submitted], Done),
        Action::Redo => (&[Submitted], InProgress),
        Action::Cancel => (&[Open, InProgress, Submitted], Cancelled),
    }
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Complete => "complete",
            Self::Approve => "approve",
            Self::Redo => "redo",
            Self::Cancel => "cancel",
        }
    }

    /// The audit-trail entry of reaching `to` (its event follows from it).
    fn recorded_as(self, to: TaskStatus) -> events::AuditKind {
        use events::AuditKind;
        match (self, to) {
            (Self::Start, _) => AuditKind::Started,
            (Self::Complete, TaskStatus::Submitted) => AuditKind::Submitted,
            (Self::Complete, _) => AuditKind::Completed,
            (Self::Approve, _) => AuditKind::Approved,
            (Self::Redo, _) => AuditKind::SentBack,
            (Self::Cancel, _) => AuditKind::Cancelled,
        }
    }
}

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    crate::input::rules::add_to_document::<dto::NewTaskBody>(document);
}

pub mod metrics {
    //! Business metrics of PRODUCT §10.
    use std::sync::LazyLock;

    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

    use crate::metrics::register;

    pub static CREATED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_tasks_created_total",
                    "Tasks created by kind and source",
                ),
                &["kind", "source"],
            )
            .expect("valid metric"),
        )
    });
    pub static COMPLETED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_tasks_completed_total",
                    "Tasks done, by kind and whether on time",
                ),
                &["kind", "on_time"],
            )
            .expect("valid metric"),
        )
    });
    pub static COMPLETION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
        register(
            HistogramVec::new(
                HistogramOpts::new(
                    "storeops_task_completion_seconds",
                    "Time from creation to done, by kind",
                )
                .buckets(vec![
                    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172_800.0,
                    604_800.0,
                ]),
                &["kind"],
            )
            .expect("valid metric"),
        )
    });

    pub static ESCALATED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_tasks_escalated_total",
                    "Overdue escalations: level 1 to the store manager, level 2 to the regional manager",
                ),
                &["level"],
            )
            .expect("valid metric"),
        )
    });
    pub static OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
        register(
            IntGaugeVec::new(
                Opts::new(
                    "storeops_tasks_open",
                    "Open tasks (open, in progress, submitted) by kind and region; leader only",
                ),
                &["kind", "region"],
            )
            .expect("valid metric"),
        )
    });
    pub static OVERDUE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
        register(
            IntGaugeVec::new(
                Opts::new(
                    "storeops_tasks_overdue",
                    "Open tasks past their due time by region; leader only",
                ),
                &["region"],
            )
            .expect("valid metric"),
        )
    });

    pub fn init() {
        LazyLock::force(&ESCALATED);
        LazyLock::force(&OPEN);
        LazyLock::force(&OVERDUE);
        LazyLock::force(&CREATED);
        LazyLock::force(&COMPLETED);
        LazyLock::force(&COMPLETION_SECONDS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_changes_where_complete_leads() {
        assert_eq!(transition(Action::Complete, false).1, TaskStatus::Done);
        assert_eq!(transition(Action::Complete, true).1, TaskStatus::Submitted);
        assert!(
            !transition(Action::Approve, false)
                .0
                .contains(&TaskStatus::Open)
        );
        assert!(
            !transition(Action::Cancel, false)
                .0
                .contains(&TaskStatus::Done)
        );
    }
}

#[cfg(test)]
mod status_tests {
    use super::TaskStatus;

    fn sql(set: &[TaskStatus]) -> String {
        let items: Vec<String> = set.iter().map(|s| format!("'{}'", s.as_str())).collect();
        format!("({})", items.join(", "))
    }

    #[test]
    fn status_sets_match_their_sql() {
        assert_eq!(
            crate::tasks::task_status_sql!(active),
            sql(TaskStatus::ACTIVE)
        );
        assert_eq!(
            crate::tasks::task_status_sql!(unfinished),
            sql(TaskStatus::UNFINISHED)
        );
        assert_eq!(
            crate::tasks::task_status_sql!(closed),
            sql(TaskStatus::CLOSED)
        );
        let mut all: Vec<_> = TaskStatus::UNFINISHED
            .iter()
            .chain(TaskStatus::CLOSED)
            .collect();
        all.sort_by_key(|s| s.as_str());
        let mut every: Vec<_> = TaskStatus::ALL.iter().collect();
        every.sort_by_key(|s| s.as_str());
        assert_eq!(all, every, "every status is unfinished or closed, once");
    }
}
