//! The announcements' scheduler jobs: publishing when the first store may see one,
//! delivering to stores opened since, reminders and escalation for required ones that
//! a store has not acknowledged, and the acknowledgement gauges. Each change is one
//! transaction with its events, guarded by the row it changes, so a leader change
//! repeats nothing.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use super::{AnnouncementPublished, AnnouncementReminder, AnnouncementScheduled, metrics, repo};
use crate::{
    events::outbox,
    ids::{AnnouncementId, RegionCode, StoreId},
    scheduler::{Job, JobError, in_batches},
};

/// Rows per transaction, so a backlog never holds one long transaction.
const BATCH: i64 = 500;
/// Batches per run; the rest waits for the next tick.
const MAX_BATCHES: usize = 40;

pub struct AnnouncementJobsConfig {
    pub tick: Duration,
    /// From a store seeing a required announcement to its reminder.
    pub reminder_delay: Duration,
    /// From a store seeing it to the escalation to its manager and regional manager.
    pub escalation_delay: Duration,
}

pub fn jobs(db: &PgPool, config: &AnnouncementJobsConfig) -> Vec<Arc<dyn Job>> {
    vec![
        Arc::new(Publisher {
            db: db.clone(),
            tick: config.tick,
        }),
        Arc::new(Reminders {
            db: db.clone(),
            tick: config.tick,
            reminder_delay: config.reminder_delay,
            escalation_delay: config.escalation_delay,
        }),
        Arc::new(AckGauges {
            db: db.clone(),
            tick: config.tick.max(Duration::from_secs(5)),
            deadline: config.escalation_delay,
        }),
    ]
}

/// Publishes the due announcements (`only`: that one) with their events; returns how
/// many. Counted here: the fan-out's transaction commits in the consumer runtime.
pub async fn publish(
    conn: &mut PgConnection,
    only: Option<AnnouncementId>,
) -> Result<usize, sqlx::Error> {
    let published = repo::publish_due(conn, only, BATCH).await?;
    let events: Vec<AnnouncementPublished> = published
        .iter()
        .map(|a| AnnouncementPublished {
            announcement_id: a.id,
            title: a.title.clone(),
            priority: a.priority,
            audience: a.audience,
            requires_ack: a.requires_ack,
            region_scope: a.region_scope.clone(),
            supersedes: a.supersedes,
            target_count: a.target_count,
        })
        .collect();
    outbox::enqueue_many(conn, &events).await?;
    for a in &published {
        metrics::PUBLISHED
            .with_label_values(&[a.priority.as_str(), &a.requires_ack.to_string()])
            .inc();
    }
    Ok(published.len())
}

/// Publishes scheduled announcements whose time has come in some store, and sends the
/// ones in force to the workers again when stores opened after their delivery.
pub struct Publisher {
    db: PgPool,
    tick: Duration,
}

impl Publisher {
    async fn batch(&self) -> Result<usize, JobError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let published = publish(&mut tx, None).await?;
        let stale = repo::redeliver_for_new_stores(&mut tx, BATCH).await?;
        let events: Vec<AnnouncementScheduled> = stale
            .iter()
            .map(|&announcement_id| AnnouncementScheduled { announcement_id })
            .collect();
        outbox::enqueue_many(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(published.max(stale.len()))
    }
}

impl Job for Publisher {
    fn name(&self) -> &'static str {
        "announcement_publisher"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(in_batches(BATCH as usize, MAX_BATCHES, || self.batch()))
    }
}

#[derive(sqlx::FromRow)]
struct Reminded {
    announcement_id: AnnouncementId,
    store_id: StoreId,
    store_code: String,
    region: RegionCode,
    reminder_level: i16,
}

/// `announcement.reminder` once after the reminder delay (level 1: the store) and once
/// more after the escalation delay (level 2: its manager and regional manager), for
/// each store that has not acknowledged a required announcement in force that no
/// correction replaced.
pub struct Reminders {
    db: PgPool,
    tick: Duration,
    reminder_delay: Duration,
    escalation_delay: Duration,
}

impl Reminders {
    async fn batch(&self) -> Result<usize, JobError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let reminded: Vec<Reminded> = sqlx::query_as(
            "WITH due AS (
                SELECT d.announcement_id, d.store_id FROM announcement_deliveries d
                  JOIN announcements a ON a.id = d.announcement_id
                 WHERE d.reminder_level < 2
                   AND ((d.reminder_level = 0 AND d.visible_at <= now() - $1 * interval '1 second')
                     OR (d.reminder_level = 1 AND d.visible_at <= now() - $2 * interval '1 second'))
                   AND a.requires_ack AND a.status = 'published'
                   AND (a.expires_at IS NULL OR a.expires_at > now())
                   AND NOT EXISTS (SELECT 1 FROM announcements n
                                    WHERE n.supersedes = a.id AND n.status = 'published')
                   AND NOT EXISTS (SELECT 1 FROM announcement_receipts c
                                    WHERE c.announcement_id = d.announcement_id
                                      AND c.store_id = d.store_id AND c.acknowledged_at IS NOT NULL)
                 ORDER BY d.visible_at LIMIT $3
                 FOR UPDATE OF d SKIP LOCKED
             ), reminded AS (
                UPDATE announcement_deliveries d SET reminder_level = d.reminder_level + 1
                  FROM due WHERE d.announcement_id = due.announcement_id AND d.store_id = due.store_id
                RETURNING d.announcement_id, d.store_id, d.reminder_level
             )
             SELECT m.announcement_id, m.store_id, s.code AS store_code, r.code AS region,
                    m.reminder_level
               FROM reminded m JOIN stores s ON s.id = m.store_id JOIN regions r ON r.id = s.region_id",
        )
        .bind(self.reminder_delay.as_secs_f64())
        .bind(self.escalation_delay.as_secs_f64())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<AnnouncementReminder> = reminded
            .iter()
            .map(|r| AnnouncementReminder {
                announcement_id: r.announcement_id,
                store_id: r.store_id,
                store_code: r.store_code.clone(),
                region: r.region.clone(),
                level: r.reminder_level,
            })
            .collect();
        outbox::enqueue_many(&mut tx, &events).await?;
        tx.commit().await?;
        for r in &reminded {
            metrics::REMINDERS
                .with_label_values(&[&r.reminder_level.to_string()])
                .inc();
        }
        Ok(reminded.len())
    }
}

impl Job for Reminders {
    fn name(&self) -> &'static str {
        "announcement_reminders"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(in_batches(BATCH as usize, MAX_BATCHES, || self.batch()))
    }
}

/// `storeops_announcement_ack_ratio` of each required announcement in force, and
/// whether its deadline (the escalation delay after publishing) has passed; leader only
/// (a standby clears them).
pub struct AckGauges {
    db: PgPool,
    tick: Duration,
    deadline: Duration,
}

impl Job for AckGauges {
    fn name(&self) -> &'static str {
        "announcement_gauges"
    }

    fn interval(&self) -> Duration {
        self.tick
    }

    fn run(&self) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move {
            let rows: Vec<(AnnouncementId, bool, i64, i64)> = sqlx::query_as(
                "SELECT a.id, a.published_at <= now() - $1 * interval '1 second',
                        count(*) FILTER (WHERE d.visible_at <= now()),
                        count(*) FILTER (WHERE d.visible_at <= now() AND EXISTS (
                            SELECT 1 FROM announcement_receipts c
                             WHERE c.announcement_id = d.announcement_id AND c.store_id = d.store_id
                               AND c.acknowledged_at IS NOT NULL))
                   FROM announcements a JOIN announcement_deliveries d ON d.announcement_id = a.id
                  WHERE a.requires_ack AND a.status = 'published'
                    AND (a.expires_at IS NULL OR a.expires_at > now())
                    AND NOT EXISTS (SELECT 1 FROM announcements n
                                     WHERE n.supersedes = a.id AND n.status = 'published')
                  GROUP BY a.id, a.published_at",
            )
            .bind(self.deadline.as_secs_f64())
            .fetch_all(&self.db)
            .await?;
            metrics::ACK_RATIO.reset();
            metrics::REQUIRED_ACTIVE.set(i64::try_from(rows.len()).unwrap_or(i64::MAX));
            for (id, past, reached, acknowledged) in rows {
                let ratio = if reached == 0 {
                    0.0
                } else {
                    acknowledged as f64 / reached as f64
                };
                metrics::ACK_RATIO
                    .with_label_values(&[&id.to_string(), &past.to_string()])
                    .set(ratio);
            }
            Ok(())
        })
    }

    fn on_step_down(&self) {
        metrics::ACK_RATIO.reset();
        metrics::REQUIRED_ACTIVE.set(0);
    }
}
