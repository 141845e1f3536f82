//! Campaigns: one task sent to many stores (all, regions, formats or a store list).
//! The API records the campaign and answers 202; the `campaigns` consumer group fans it
//! out into one task per targeted store, idempotently per (campaign, store).

mod dto;
mod fanout;
mod repo;
mod routes;
mod service;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use routes::router;

use crate::{
    events::{Event, consumer::Registry},
    ids::CampaignId,
    input::rules,
};

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

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    rules::add_to_document::<dto::NewCampaign>(document);
}

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe::<CampaignCreated>("campaigns", Arc::new(fanout::FanOut));
}
