//! The `task.*` events. Only this module emits them (their constructors are private to
//! `tasks`); every one carries the same [`TaskSnapshot`], so consumers can act without a
//! lookup and every producer writes the same shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{TaskSource, TaskStatus, repo::TaskRow};
use crate::{
    events::{Event, outbox},
    ids::{CampaignId, StaffId, StoreId, TaskId, TaskKind},
};

/// What an entry of a task's audit trail records (`task_events.kind`, the history's
/// `kind`). A change others hear about names its event here, so the trail and the
/// events cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Created,
    Started,
    /// Completed, waiting for review.
    Submitted,
    Completed,
    Approved,
    /// Sent back for redo by a manager.
    SentBack,
    Cancelled,
    Expired,
    /// Assignee, priority or due time changed.
    Updated,
    /// Escalated as overdue (to the store manager, then the regional manager).
    Overdue,
    Commented,
}

crate::string_enum!(AuditKind {
    Created => "created",
    Started => "started",
    Submitted => "submitted",
    Completed => "completed",
    Approved => "approved",
    SentBack => "sent_back",
    Cancelled => "cancelled",
    Expired => "expired",
    Updated => "updated",
    Overdue => "overdue",
    Commented => "commented",
});

impl AuditKind {
    /// The lifecycle event of this change; `None` for what only the trail records (a
    /// comment) or what has an event of its own shape (`task.overdue`).
    pub(super) fn event(self) -> Option<TaskEventKind> {
        match self {
            Self::Created => Some(TaskEventKind::TaskCreated),
            Self::Started => Some(TaskEventKind::TaskStarted),
            Self::Submitted => Some(TaskEventKind::TaskSubmitted),
            Self::Completed | Self::Approved => Some(TaskEventKind::TaskCompleted),
            Self::SentBack => Some(TaskEventKind::TaskReopened),
            Self::Cancelled => Some(TaskEventKind::TaskCancelled),
            Self::Expired => Some(TaskEventKind::TaskExpired),
            Self::Updated => Some(TaskEventKind::TaskUpdated),
            Self::Overdue | Self::Commented => None,
        }
    }
}

/// A task as its events describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub task_id: TaskId,
    pub store_id: StoreId,
    pub region: String,
    pub kind: TaskKind,
    pub source: TaskSource,
    pub status: TaskStatus,
    pub title: String,
    pub assignee_id: Option<StaffId>,
    pub campaign_id: Option<CampaignId>,
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<&TaskRow> for TaskSnapshot {
    fn from(task: &TaskRow) -> Self {
        Self {
            task_id: task.id,
            store_id: task.store_id,
            region: task.region.clone(),
            kind: task.kind,
            source: task.source,
            status: task.status,
            title: task.title.clone(),
            assignee_id: task.assignee_id,
            campaign_id: task.campaign_id,
            due_at: task.due_at,
            completed_at: task.completed_at,
        }
    }
}

macro_rules! task_events {
    ($($(#[$meta:meta])* $name:ident => $key:literal,)+) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            #[serde(transparent)]
            pub struct $name(TaskSnapshot);

            impl $name {
                pub fn task(&self) -> &TaskSnapshot {
                    &self.0
                }
            }

            impl Event for $name {
                const ROUTING_KEY: &'static str = $key;
            }
        )+

        /// Every routing key this module emits.
        pub const ROUTING_KEYS: &[&str] = &[$($name::ROUTING_KEY,)+ TaskOverdue::ROUTING_KEY];

        /// A task's lifecycle event, for writers that pick one at run time; each
        /// variant is named after the event type it makes.
        #[allow(clippy::enum_variant_names)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum TaskEventKind {
            $($name,)+
        }

        impl TaskEventKind {
            pub(super) async fn enqueue(
                self,
                conn: &mut PgConnection,
                task: TaskSnapshot,
            ) -> Result<Uuid, sqlx::Error> {
                match self {
                    $(Self::$name => outbox::enqueue(conn, &$name(task)).await,)+
                }
            }

            pub(super) async fn enqueue_many(
                self,
                conn: &mut PgConnection,
                tasks: Vec<TaskSnapshot>,
            ) -> Result<Vec<Uuid>, sqlx::Error> {
                match self {
                    $(Self::$name => {
                        let events: Vec<$name> = tasks.into_iter().map($name).collect();
                        outbox::enqueue_many(conn, &events).await
                    })+
                }
            }
        }
    };
}

task_events! {
    TaskCreated => "task.created",
    TaskStarted => "task.started",
    /// Completed, waiting for review.
    TaskSubmitted => "task.submitted",
    TaskCompleted => "task.completed",
    /// Sent back by a manager (redo).
    TaskReopened => "task.reopened",
    TaskCancelled => "task.cancelled",
    TaskExpired => "task.expired",
    /// Assignee, priority or due time changed (PATCH, or a newer integration revision).
    TaskUpdated => "task.updated",
}

/// Who an overdue notice goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notify {
    StoreManager,
    RegionalManager,
}

/// A task past its due time: level 1 at the due time (the store manager), level 2 after
/// the escalation delay (the regional manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOverdue {
    #[serde(flatten)]
    task: TaskSnapshot,
    pub level: i16,
    pub notify: Notify,
}

impl TaskOverdue {
    pub(super) fn new(task: TaskSnapshot, level: i16) -> Self {
        let notify = if level >= 2 {
            Notify::RegionalManager
        } else {
            Notify::StoreManager
        };
        Self {
            task,
            level,
            notify,
        }
    }

    pub fn task(&self) -> &TaskSnapshot {
        &self.task
    }
}

impl Event for TaskOverdue {
    const ROUTING_KEY: &'static str = "task.overdue";
}
