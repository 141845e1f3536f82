//! The `schedules` consumer group: one `schedule.due` → the occurrence's tasks.

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};

use super::{ScheduleDue, metrics};
use crate::{
    events::{
        EventHandler,
        consumer::{HandlerError, Message},
    },
    stores,
    tasks::{
        Priority,
        write::{self, Due, ManyTasks, Origin},
    },
    templates,
};

pub struct CreateOccurrence;

impl EventHandler<ScheduleDue> for CreateOccurrence {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        due: ScheduleDue,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some(template) =
                templates::find_version(tx, due.template_id, Some(due.version)).await?
            else {
                return Err(HandlerError::Permanent(format!(
                    "template {} version {} does not exist",
                    due.template_id, due.version
                )));
            };
            let kind = template.kind;
            let window = template
                .recurrence
                .as_ref()
                .and_then(|r| r.0.due_window_minutes)
                .unwrap_or(template.due_window_minutes);
            write::create_many(
                tx,
                &ManyTasks {
                    stores: &due.store_ids,
                    origin: Origin::Occurrence {
                        at: due.occurrence_at,
                        local_date: due.local_date,
                    },
                    kind,
                    title: &template.title,
                    description: template.description.as_deref(),
                    template: Some((template.id, template.version)),
                    priority: Priority::Normal,
                    review_required: template.review_required,
                    due: Due::At(due.occurrence_at + chrono::Duration::minutes(i64::from(window))),
                    created_by: "scheduler",
                },
            )
            .await?;
            let closed = stores::count_closed(tx, &due.store_ids, due.local_date).await?;
            if closed > 0 {
                metrics::SKIPPED
                    .with_label_values(&["store_closed"])
                    .inc_by(closed as u64);
            }
            Ok(())
        })
    }
}
