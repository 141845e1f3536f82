//! The `announcements` consumer group: `announcement.scheduled` → one delivery per
//! targeted store, then published at once when some store may already see it.

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};

use super::{AnnouncementScheduled, AnnouncementStatus, jobs, repo};
use crate::events::{
    EventHandler,
    consumer::{HandlerError, Message},
};

/// Stores per INSERT: bounds each statement while the whole fan-out stays one
/// transaction (with its inbox row), so a redelivery finds it done or not at all.
const CHUNK: i64 = 1_000;

pub struct FanOut;

impl EventHandler<AnnouncementScheduled> for FanOut {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: AnnouncementScheduled,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let id = event.announcement_id;
            let Some(row) = repo::find(tx, id, true).await? else {
                return Err(HandlerError::Permanent(format!(
                    "announcement {id} does not exist"
                )));
            };
            if row.status == AnnouncementStatus::Draft {
                return Err(HandlerError::Permanent(format!(
                    "announcement {id} is a draft"
                )));
            }
            let mut after: Option<String> = None;
            let mut delivered = 0u64;
            loop {
                let (last, stores) = row
                    .target
                    .chunk(tx, row.region_scope.as_ref(), after.as_deref(), CHUNK)
                    .await?;
                delivered += repo::deliver(tx, &row, &stores).await?;
                match last {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
            repo::mark_delivered(tx, id).await?;
            // Published now when some store sees it already; else the scheduler's job.
            jobs::publish(tx, Some(id)).await?;
            tracing::info!(announcement_id = %id, stores = delivered, "announcement delivered");
            Ok(())
        })
    }
}
