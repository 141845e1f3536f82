//! The worker role: the outbox relay and the consumer groups the modules register.
//! `--queues` picks groups, so SREs can run separate deployments per group.

use std::sync::Arc;

use sqlx::PgPool;

use super::RoleParts;
use crate::{
    admin::{Check, PoolGauges},
    campaigns,
    config::Config,
    events::{
        WorkerSession,
        broker::{self, BrokerStatus},
        consumer::{ConsumerOptions, Registry},
        relay::RelayOptions,
        topology::Topology,
    },
    ingest, schedules,
    shutdown::Shutdown,
    webhooks,
};

/// `storeops worker --queues ... --concurrency N`.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Consumer groups to run; empty means all.
    pub queues: Vec<String>,
    pub concurrency: usize,
}

/// Every module's handlers; the one place that knows all consumers.
pub fn registry(config: &Config, db: &PgPool) -> anyhow::Result<Registry> {
    let mut registry = Registry::default();
    campaigns::register_handlers(&mut registry);
    ingest::register_handlers(&mut registry, &config.ingest);
    schedules::register_handlers(&mut registry);
    webhooks::register_handlers(&mut registry, &config.webhooks, db.clone())?;
    Ok(registry)
}

/// Every routing key the code can emit, from the event types of each producing module.
pub fn emitted_routing_keys() -> Vec<&'static str> {
    [
        crate::tasks::events::ROUTING_KEYS,
        campaigns::ROUTING_KEYS,
        ingest::ROUTING_KEYS,
        schedules::ROUTING_KEYS,
        webhooks::ROUTING_KEYS,
    ]
    .concat()
}

pub fn topology(config: &Config) -> Topology {
    Topology {
        prefix: config.events.topology_prefix.clone(),
        retry_delays: config.events.retry_delays.clone(),
        delivery_limit: config.events.delivery_limit,
    }
}

pub fn start(
    config: &Config,
    db: PgPool,
    options: &WorkerOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<RoleParts> {
    let url = config.amqp_url()?.clone();
    let registry = registry(config, &db)?
        .select(&options.queues)
        .map_err(|e| anyhow::anyhow!("--queues: {e}"))?;
    let topology = Arc::new(topology(config));
    let concurrency = options.concurrency.max(1);
    let prefetch = match config.events.prefetch {
        0 => u16::try_from(concurrency).unwrap_or(u16::MAX),
        n => n,
    };
    tracing::info!(
        groups = ?registry.group_names(),
        concurrency,
        prefetch,
        relay = config.events.run_relay,
        "worker starting"
    );
    let session = Arc::new(WorkerSession::new(
        db.clone(),
        topology,
        registry,
        ConsumerOptions {
            concurrency,
            prefetch,
            message_timeout: config.events.message_timeout,
        },
        config.events.run_relay.then_some(RelayOptions {
            batch_size: config.events.outbox_batch_size,
            poll_interval: config.events.outbox_poll_interval,
        }),
    ));
    let status = BrokerStatus::default();
    let stop = shutdown.signalled.clone();
    let task = {
        let status = status.clone();
        async move {
            broker::supervise(url, "storeops-worker".to_owned(), status, stop, session).await;
            Ok(())
        }
    };
    Ok(RoleParts {
        pools: PoolGauges::default(),
        checks: vec![
            Check::new("broker", move || {
                let connected = status.is_connected();
                async move {
                    if connected {
                        Ok(())
                    } else {
                        Err("not connected to the broker".to_owned())
                    }
                }
            }),
            Check::schema(db),
        ],
        task: Box::pin(task),
    })
}
