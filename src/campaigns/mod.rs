//! Campaigns: one task sent to many stores (all, regions, formats or a store list).
//! The API records the campaign and answers 202; the `campaigns` consumer group fans it
//! out into one task per targeted store, idempotently per (campaign, store).

mod fanout;
pub mod repo;
mod routes;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use routes::router;

use crate::{
    events::{Event, consumer::Registry},
    stores::StoreFormat,
};

crate::uuid_id!(CampaignId);

/// A campaign was recorded; the `campaigns` group fans it out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignCreated {
    pub campaign_id: CampaignId,
}

impl Event for CampaignCreated {
    const ROUTING_KEY: &'static str = "campaign.created";
}

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[CampaignCreated::ROUTING_KEY];

/// Which stores get the task: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Every store (of the caller's region, for a regional manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Region codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<StoreFormat>>,
    /// ERP store codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_codes: Option<Vec<String>>,
}

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe::<CampaignCreated>("campaigns", Arc::new(fanout::FanOut));
}
