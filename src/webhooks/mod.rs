//! Outbound webhooks (PRODUCT §5): HQ subscribes URLs to event types; every matching event
//! becomes one delivery, POSTed as JSON with an HMAC-SHA256 signature, retried through
//! the delay queues and dead-lettered after the last attempt.
//!
//! Two consumer groups: `webhooks` fans each public event out into deliveries (one
//! outbox message per webhook, so one slow receiver never re-sends to the others), and
//! `webhook-deliveries` performs the POSTs.

mod delivery;
pub mod repo;
mod routes;
pub mod signature;
pub mod target;

use std::sync::Arc;

use sqlx::PgPool;

pub use routes::router;

use crate::{
    announcements::{AnnouncementAcknowledged, AnnouncementPublished, AnnouncementReminder},
    campaigns::CampaignCreated,
    config::WebhookConfig,
    events::{Event, consumer::Registry},
    evidence::EvidenceAttached,
    ingest::IngestReceived,
    tasks::events::{
        TaskCancelled, TaskCompleted, TaskCreated, TaskExpired, TaskOverdue, TaskStarted,
        TaskSubmitted,
    },
};

/// Event types a webhook may subscribe to: the public events of PRODUCT §5.
pub const PUBLIC_EVENT_TYPES: [&str; 13] = [
    TaskCreated::ROUTING_KEY,
    TaskStarted::ROUTING_KEY,
    TaskSubmitted::ROUTING_KEY,
    TaskCompleted::ROUTING_KEY,
    TaskCancelled::ROUTING_KEY,
    TaskExpired::ROUTING_KEY,
    TaskOverdue::ROUTING_KEY,
    CampaignCreated::ROUTING_KEY,
    IngestReceived::ROUTING_KEY,
    EvidenceAttached::ROUTING_KEY,
    AnnouncementPublished::ROUTING_KEY,
    AnnouncementAcknowledged::ROUTING_KEY,
    AnnouncementReminder::ROUTING_KEY,
];

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[delivery::DeliveryRequest::ROUTING_KEY];

pub fn register_handlers(
    registry: &mut Registry,
    config: &WebhookConfig,
    db: PgPool,
) -> anyhow::Result<()> {
    let fan_out = Arc::new(delivery::FanOut);
    for event_type in PUBLIC_EVENT_TYPES {
        registry.subscribe_raw("webhooks", event_type, fan_out.clone());
    }
    let sender = delivery::Sender::new(config, db)?;
    registry.subscribe::<delivery::DeliveryRequest>("webhook-deliveries", Arc::new(sender));
    Ok(())
}

pub mod metrics {
    use std::sync::LazyLock;

    use prometheus::{IntCounterVec, Opts};

    pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
        crate::metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_webhook_deliveries_total",
                    "Webhook delivery attempts by outcome (delivered, retry, failed, refused)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        )
    });
}
