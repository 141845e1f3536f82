//! The `schedules` consumer group: one `schedule.due` → the occurrence's tasks.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::metrics;
use crate::{
    events::consumer::{Handler, HandlerError, Message},
    stores::StoreId,
    tasks::{
        TaskSource,
        repo::{CreatedTask, announce_created},
    },
    templates::{self, TemplateId},
};

#[derive(Debug, Deserialize)]
struct Due {
    template_id: TemplateId,
    version: i32,
    occurrence_at: DateTime<Utc>,
    local_date: NaiveDate,
    store_ids: Vec<StoreId>,
}

pub struct CreateOccurrence;

impl Handler for CreateOccurrence {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let due: Due = message.decode()?;
            let Some(template) =
                templates::find_version(tx, due.template_id, Some(due.version)).await?
            else {
                return Err(HandlerError::Permanent(format!(
                    "template {} version {} does not exist",
                    due.template_id, due.version
                )));
            };
            let window = template
                .recurrence
                .as_ref()
                .and_then(|r| r.0.due_window_minutes)
                .unwrap_or(template.due_window_minutes);
            let ids: Vec<Uuid> = due.store_ids.iter().map(|_| Uuid::now_v7()).collect();
            let created: Vec<CreatedTask> = sqlx::query_as(
                "WITH inserted AS (
                    INSERT INTO tasks (id, store_id, kind, source, title, description, template_id,
                                       template_version, review_required, due_at, created_by, occurrence_at)
                    SELECT c.id, s.id, $3, 'schedule', $4, $5, $6, $7, $8, $9 + $10 * interval '1 minute',
                           'scheduler', $9
                      FROM unnest($1::uuid[], $2::uuid[]) AS c(store_id, id)
                      JOIN stores s ON s.id = c.store_id
                     WHERE NOT EXISTS (SELECT 1 FROM store_closures x
                                        WHERE x.store_id = s.id AND x.closed_on = $11)
                    ON CONFLICT (template_id, store_id, occurrence_at) WHERE occurrence_at IS NOT NULL DO NOTHING
                    RETURNING id, store_id, kind, title, due_at
                 )
                 SELECT i.id, i.store_id, r.code AS region, i.kind, i.title, i.due_at
                   FROM inserted i JOIN stores s ON s.id = i.store_id JOIN regions r ON r.id = s.region_id",
            )
            .bind(&due.store_ids)
            .bind(&ids)
            .bind(&template.kind)
            .bind(&template.title)
            .bind(&template.description)
            .bind(template.id)
            .bind(template.version)
            .bind(template.review_required)
            .bind(due.occurrence_at)
            .bind(f64::from(window))
            .bind(due.local_date)
            .fetch_all(&mut **tx)
            .await?;
            let closed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM store_closures WHERE store_id = ANY($1) AND closed_on = $2",
            )
            .bind(&due.store_ids)
            .bind(due.local_date)
            .fetch_one(&mut **tx)
            .await?;
            announce_created(tx, &created, TaskSource::Schedule, "scheduler", None).await?;
            if closed > 0 {
                metrics::SKIPPED
                    .with_label_values(&["store_closed"])
                    .inc_by(closed as u64);
            }
            Ok(())
        })
    }
}
