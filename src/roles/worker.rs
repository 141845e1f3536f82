//! The worker role: the outbox relay and the consumer groups the modules register.
//! `--queues` picks groups, so SREs can run separate deployments per group.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::RoleParts;
use crate::{
    admin::{Check, PoolGauges},
    announcements, campaigns,
    config::{Config, ConnectionUrl},
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
    announcements::register_handlers(&mut registry);
    crate::evidence::register_handlers(
        &mut registry,
        &crate::evidence::Evidence::new(&config.evidence)?,
        crate::stores::StoreDirectory::new(db.clone()),
    );
    ingest::register_handlers(&mut registry, &config.ingest);
    schedules::register_handlers(&mut registry);
    webhooks::register_handlers(&mut registry, &config.webhooks, db.clone())?;
    Ok(registry)
}

/// Every routing key the code can emit, from the event types of each producing module.
pub fn emitted_routing_keys() -> Vec<&'static str> {
    [
        crate::tasks::events::ROUTING_KEYS,
        crate::evidence::ROUTING_KEYS,
        campaigns::ROUTING_KEYS,
        announcements::ROUTING_KEYS,
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

/// A worker ready to run: its session (relay and consumers) and where its broker is.
pub struct Worker {
    pub session: Arc<WorkerSession>,
    pub url: ConnectionUrl,
}

impl Worker {
    /// Runs until `stop`: connects, declares the topology, relays and consumes, and
    /// reconnects after any broker failure.
    pub async fn run(self, name: &str, status: BrokerStatus, stop: CancellationToken) {
        broker::supervise(self.url, name.to_owned(), status, stop, self.session).await;
    }
}

/// Assembles a worker from configuration: the consumer groups `options.queues` names
/// (all when empty) of `registry`, the topology, prefetch, timeouts and relay settings.
/// The one composition root of the worker role: `start` passes [`registry`], the test
/// harness the same (or, for the event backbone's own tests, a registry of test events).
pub fn build(
    config: &Config,
    db: PgPool,
    registry: Registry,
    options: &WorkerOptions,
) -> anyhow::Result<Worker> {
    let url = config.amqp_url()?.clone();
    let registry = registry
        .select(&options.queues)
        .map_err(|e| anyhow::anyhow!("--queues: {e}"))?;
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
        db,
        Arc::new(topology(config)),
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
    Ok(Worker { session, url })
}

pub fn start(
    config: &Config,
    db: PgPool,
    options: &WorkerOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<RoleParts> {
    let worker = build(config, db.clone(), registry(config, &db)?, options)?;
    let status = BrokerStatus::default();
    let stop = shutdown.signalled.clone();
    let task = {
        let status = status.clone();
        async move {
            worker.run("storeops-worker", status, stop).await;
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
