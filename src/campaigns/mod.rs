//! Campaigns: one task sent to many stores (all, regions, formats or a store list).
//! The API records the campaign and answers 202; the `campaigns` consumer group fans it
//! out into one task per targeted store, idempotently per (campaign, store).

mod fanout;
pub mod repo;
mod routes;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

pub use routes::router;

use crate::{
    error::FieldError,
    events::{Event, consumer::Registry},
    input::rules::{self, CrossFieldRules},
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
    #[schema(max_items = 100)]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<StoreFormat>>,
    /// ERP store codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100_000)]
    pub store_codes: Option<Vec<String>>,
}

/// The most names a target lists (the schema attributes repeat them).
const MAX_REGIONS: usize = 100;
const MAX_STORE_CODES: usize = 100_000;

impl Target {
    /// The ways of naming stores, and whether this target uses each; it must use
    /// exactly one (a list counts when non-empty).
    fn ways(&self) -> [(&'static str, bool); 4] {
        let listed = |len: Option<usize>| len.is_some_and(|len| len > 0);
        [
            ("all", self.all == Some(true)),
            ("regions", listed(self.regions.as_ref().map(Vec::len))),
            ("formats", listed(self.formats.as_ref().map(Vec::len))),
            (
                "store_codes",
                listed(self.store_codes.as_ref().map(Vec::len)),
            ),
        ]
    }

    pub fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.ways().iter().filter(|(_, used)| *used).count() != 1 {
            errors.push(FieldError::new(
                field,
                "name exactly one of all: true, regions, formats or store_codes (non-empty)",
            ));
        }
        if self.regions.as_ref().is_some_and(|r| r.len() > MAX_REGIONS)
            || self
                .store_codes
                .as_ref()
                .is_some_and(|c| c.len() > MAX_STORE_CODES)
        {
            errors.push(FieldError::new(
                field,
                format!("names at most {MAX_REGIONS} regions or {MAX_STORE_CODES} stores"),
            ));
        }
    }
}

impl CrossFieldRules for Target {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        let ways = Target::default().ways().map(|(way, _)| way);
        // `all` is a flag; the other ways are lists, unnamed when absent, null or empty.
        let named = |way: &str| match way {
            "all" => json!({ "const": true }),
            _ => json!({ "type": "array", "minItems": 1 }),
        };
        let unnamed = |way: &str| match way {
            "all" => json!({ "not": { "const": true } }),
            _ => json!({ "maxItems": 0 }),
        };
        let branches = ways.map(|way| {
            let properties: serde_json::Map<_, _> = ways
                .iter()
                .map(|&other| {
                    let rule = if other == way {
                        named(other)
                    } else {
                        unnamed(other)
                    };
                    (other.to_owned(), rule)
                })
                .collect();
            json!({ "required": [way], "properties": properties })
        });
        vec![json!({ "oneOf": branches })]
    }
}

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    rules::add_to_document::<Target>(document);
    rules::add_to_document::<routes::NewCampaign>(document);
}

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe::<CampaignCreated>("campaigns", Arc::new(fanout::FanOut));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_states_the_target_limits() {
        let document = crate::http::openapi();
        let target = &document["components"]["schemas"]["Target"]["properties"];
        assert_eq!(target["regions"]["maxItems"], MAX_REGIONS);
        assert_eq!(target["store_codes"]["maxItems"], MAX_STORE_CODES);
    }
}
