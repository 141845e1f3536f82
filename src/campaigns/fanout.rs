//! The `campaigns` consumer group: `campaign.created` → one task per targeted store.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use sqlx::{Postgres, Transaction};

use super::{CampaignId, repo};
use crate::{
    events::consumer::{Handler, HandlerError, Message},
    tasks::TaskSource,
    templates,
};

/// Stores per INSERT: bounds each statement while the whole fan-out stays one
/// transaction (with its inbox row), so a redelivery finds it done or not at all.
const CHUNK: i64 = 1_000;

#[derive(Debug, Deserialize)]
struct CampaignCreated {
    campaign_id: CampaignId,
}

pub struct FanOut;

impl Handler for FanOut {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event: CampaignCreated = message.decode()?;
            let Some(campaign) = repo::find(tx, event.campaign_id, true).await? else {
                return Err(HandlerError::Permanent(format!(
                    "campaign {} does not exist",
                    event.campaign_id
                )));
            };
            let review_required = match (campaign.template_id, campaign.template_version) {
                (Some(id), Some(version)) => templates::find_version(tx, id, Some(version))
                    .await?
                    .is_some_and(|t| t.review_required),
                _ => false,
            };
            let mut after: Option<String> = None;
            let mut created_total = 0usize;
            loop {
                let (last, created) =
                    repo::fan_out_chunk(tx, &campaign, review_required, after.as_deref(), CHUNK)
                        .await?;
                crate::tasks::repo::announce_created(
                    tx,
                    &created,
                    TaskSource::Campaign,
                    &campaign.created_by,
                    Some(campaign.id.0),
                )
                .await?;
                created_total += created.len();
                match last {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
            repo::mark_active(tx, campaign.id).await?;
            tracing::info!(campaign_id = %campaign.id, tasks = created_total, "campaign fanned out");
            Ok(())
        })
    }
}
