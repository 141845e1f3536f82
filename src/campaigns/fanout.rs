//! The `campaigns` consumer group: `campaign.created` → one task per targeted store.

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};

use super::{CampaignCreated, repo};
use crate::{
    events::{
        EventHandler,
        consumer::{HandlerError, Message},
    },
    tasks::write::{self, Due, ManyTasks, Origin},
    templates,
};

/// Stores per INSERT: bounds each statement while the whole fan-out stays one
/// transaction (with its inbox row), so a redelivery finds it done or not at all.
const CHUNK: i64 = 1_000;

pub struct FanOut;

impl EventHandler<CampaignCreated> for FanOut {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: CampaignCreated,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
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
            let due = match (campaign.due_at, campaign.due_local) {
                (Some(at), _) => Due::At(at),
                (None, Some(local)) => Due::Local(local),
                (None, None) => {
                    return Err(HandlerError::Permanent(format!(
                        "campaign {} has no due time",
                        campaign.id
                    )));
                }
            };
            let (kind, priority) = (campaign.kind, campaign.priority);
            let mut after: Option<String> = None;
            let mut created_total = 0usize;
            loop {
                let (last, stores) = campaign
                    .target
                    .chunk(tx, campaign.region_scope.as_ref(), after.as_deref(), CHUNK)
                    .await?;
                let created = write::create_many(
                    tx,
                    &ManyTasks {
                        stores: &stores,
                        origin: Origin::Campaign(campaign.id),
                        kind,
                        title: &campaign.title,
                        description: campaign.description.as_deref(),
                        template: campaign.template_id.zip(campaign.template_version),
                        priority,
                        review_required,
                        due,
                        created_by: &campaign.created_by,
                    },
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
