//! The leader's job: publish the occurrences that have come due since the last run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::{PgPool, types::Json};

use super::{ScheduleDue, metrics};
use crate::{
    events::outbox,
    ids::{StoreId, TemplateId},
    scheduler::{Job, JobError},
    stores::Target,
    templates::Recurrence,
};

/// Stores per `schedule.due` message.
const STORES_PER_MESSAGE: usize = 500;

pub struct Planner {
    pub db: PgPool,
    pub tick: Duration,
    pub catch_up: Duration,
}

#[derive(sqlx::FromRow)]
struct Scheduled {
    template_id: TemplateId,
    version: i32,
    recurrence: Json<Recurrence>,
}

impl Planner {
    async fn plan(&self, template: &Scheduled, now: DateTime<Utc>) -> Result<(), JobError> {
        let mut tx = crate::db::begin(&self.db).await?;
        // Row lock: a second planner (a leader in its last fenced moments) waits here.
        let planned_until: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO schedule_progress (template_id, planned_until) VALUES ($1, $2)
             ON CONFLICT (template_id) DO UPDATE SET planned_until = schedule_progress.planned_until
             RETURNING planned_until",
        )
        .bind(template.template_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(planned_until) = planned_until.filter(|p| *p < now) else {
            tx.commit().await?;
            return Ok(());
        };
        let oldest =
            now - chrono::Duration::from_std(self.catch_up).unwrap_or(chrono::Duration::hours(6));
        let from = planned_until.max(oldest);
        let rule = &template.recurrence.0;
        let target = rule.target.clone().unwrap_or_else(Target::everywhere);
        for (zone, stores) in target.stores_by_time_zone(&mut tx).await? {
            let Ok(tz) = zone.parse::<chrono_tz::Tz>() else {
                tracing::warn!(zone, "stores with an unknown time zone are not scheduled");
                continue;
            };
            if planned_until < oldest {
                let missed = rule.occurrences(tz, planned_until, oldest).len() * stores.len();
                metrics::SKIPPED
                    .with_label_values(&["outside_catch_up"])
                    .inc_by(missed as u64);
            }
            for (local_date, occurrence_at) in rule.occurrences(tz, from, now) {
                let due: Vec<ScheduleDue> = stores
                    .chunks(STORES_PER_MESSAGE)
                    .map(|chunk: &[StoreId]| ScheduleDue {
                        template_id: template.template_id,
                        version: template.version,
                        occurrence_at,
                        local_date,
                        store_ids: chunk.to_vec(),
                    })
                    .collect();
                outbox::enqueue_many(&mut tx, &due).await?;
                metrics::PUBLISHED.inc_by(stores.len() as u64);
            }
        }
        sqlx::query("UPDATE schedule_progress SET planned_until = $2 WHERE template_id = $1")
            .bind(template.template_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Job for Planner {
    fn name(&self) -> &'static str {
        "schedules"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let scheduled: Vec<Scheduled> = sqlx::query_as(
                "SELECT v.template_id, v.version, v.recurrence
                   FROM task_templates t
                   JOIN task_template_versions v ON v.template_id = t.id AND v.version = t.current_version
                  WHERE v.recurrence IS NOT NULL",
            )
            .fetch_all(&self.db)
            .await?;
            let now = Utc::now();
            for template in &scheduled {
                self.plan(template, now).await?;
            }
            Ok(())
        })
    }
}
