//! Outbound webhooks (SPEC §5): HQ subscribes URLs to event types; every matching event
//! becomes one delivery, POSTed as JSON with an HMAC-SHA256 signature, retried through
//! the delay queues and dead-lettered after the last attempt.
//!
//! Two consumer groups: `webhooks` fans each public event out into deliveries (one
//! outbox message per webhook, so one slow receiver never re-sends to the others), and
//! `webhook-deliveries` performs the POSTs.

mod delivery;
mod repo;
mod routes;
pub mod signature;
pub mod target;

use std::sync::Arc;

use sqlx::PgPool;

pub use routes::router;

use crate::{config::WebhookConfig, events::consumer::Registry};

crate::uuid_id!(WebhookId);

/// Event types a webhook may subscribe to: the public events of SPEC §5.
pub const PUBLIC_EVENT_TYPES: [&str; 9] = [
    "task.created",
    "task.started",
    "task.submitted",
    "task.completed",
    "task.cancelled",
    "task.expired",
    "task.overdue",
    "campaign.created",
    "ingest.received",
];

/// The routing key of one delivery message.
pub const DELIVER_ROUTING_KEY: &str = "webhook.deliver";

pub fn register_handlers(
    registry: &mut Registry,
    config: &WebhookConfig,
    db: PgPool,
) -> anyhow::Result<()> {
    let fan_out = Arc::new(delivery::FanOut);
    for event_type in PUBLIC_EVENT_TYPES {
        registry.subscribe("webhooks", event_type, fan_out.clone());
    }
    let sender = delivery::Sender::new(config, db)?;
    registry.subscribe("webhook-deliveries", DELIVER_ROUTING_KEY, Arc::new(sender));
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
