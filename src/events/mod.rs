//! Events between modules and to the outside (PRODUCT §5): the transactional outbox, its
//! relay to RabbitMQ, the consumer runtime with its inbox, retries and dead letters,
//! and `storeops dlq`.
//!
//! Every message is an [`Event`]: one Rust type per routing key, owned by the module
//! that produces it. Producers call [`outbox::enqueue`] inside their transaction;
//! consumers subscribe an [`EventHandler`] for the type with the [`consumer::Registry`].
//! Neither knows the other.

pub mod broker;
pub mod consumer;
pub mod dlq;
mod event;
pub mod outbox;
mod queue_gauges;
pub mod relay;
pub mod topology;
pub mod trace_context;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use lapin::Connection;
use tokio_util::sync::CancellationToken;

pub use self::event::{Event, EventHandler};
use self::{
    broker::{BrokerError, Session},
    consumer::Consumers,
    relay::Relay,
};

/// The worker's work on one broker connection: the outbox relay, the consumers and the
/// queue gauges.
pub struct WorkerSession {
    pub relay: Option<Relay>,
    pub consumers: Consumers,
    gauges: queue_gauges::QueueGauges,
}

impl WorkerSession {
    /// Consumers for `registry`, plus a relay when `relay` options are given.
    pub fn new(
        db: sqlx::PgPool,
        topology: Arc<topology::Topology>,
        registry: consumer::Registry,
        consumer: consumer::ConsumerOptions,
        relay: Option<relay::RelayOptions>,
    ) -> Self {
        let gauges = queue_gauges::QueueGauges {
            topology: topology.clone(),
            groups: registry.all_groups().map(|g| g.name).collect(),
        };
        Self {
            gauges,
            relay: relay.map(|options| Relay {
                db: db.clone(),
                topology: topology.clone(),
                options,
            }),
            consumers: Consumers {
                db,
                topology,
                registry: Arc::new(registry),
                options: consumer,
            },
        }
    }
}

impl Session for WorkerSession {
    fn run(
        &self,
        connection: Arc<Connection>,
        stop: CancellationToken,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            // Queues first: events the relay publishes before their queues are bound
            // would come back unroutable. The channel stays open for the session
            // (closing it while consumers start makes lapin log spurious errors).
            let setup = connection.create_channel().await?;
            self.consumers.declare(&connection, &setup).await?;
            let relay = async {
                match &self.relay {
                    Some(relay) => relay.run(&connection, stop.clone()).await,
                    None => Ok(()),
                }
            };
            let consumers = self.consumers.run(&connection, stop.clone());
            let gauges = self.gauges.run(&connection, stop.clone());
            futures_util::future::try_join3(relay, consumers, gauges).await?;
            broker::close_channel(&setup).await;
            Ok(())
        })
    }
}

pub mod metrics {
    //! Workflow metrics of PRODUCT §10.
    use std::sync::LazyLock;

    use prometheus::{
        Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    };

    use crate::metrics::register;

    pub static OUTBOX_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
        register(
            IntGauge::new("storeops_outbox_pending", "Outbox events not yet published")
                .expect("valid metric"),
        )
    });
    pub static OUTBOX_OLDEST_AGE: LazyLock<Gauge> = LazyLock::new(|| {
        register(
            Gauge::new(
                "storeops_outbox_oldest_age_seconds",
                "Age of the oldest unpublished outbox event",
            )
            .expect("valid metric"),
        )
    });
    pub static OUTBOX_PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
        register(
            IntCounter::new(
                "storeops_outbox_published_total",
                "Outbox events published and confirmed by the broker",
            )
            .expect("valid metric"),
        )
    });
    pub static OUTBOX_RETURNED: LazyLock<IntCounter> = LazyLock::new(|| {
        register(
            IntCounter::new(
                "storeops_outbox_returned_total",
                "Outbox events the broker returned as unroutable (no queue bound)",
            )
            .expect("valid metric"),
        )
    });
    pub static MESSAGES_CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_messages_consumed_total",
                    "Messages consumed by queue and outcome (ack, retry, dead, duplicate, requeue)",
                ),
                &["queue", "outcome"],
            )
            .expect("valid metric"),
        )
    });
    pub static MESSAGE_HANDLING: LazyLock<HistogramVec> = LazyLock::new(|| {
        register(
            HistogramVec::new(
                HistogramOpts::new(
                    "storeops_message_handling_seconds",
                    "Time to handle one message",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["queue"],
            )
            .expect("valid metric"),
        )
    });

    pub static QUEUE_MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
        register(
            IntGaugeVec::new(
                Opts::new(
                    "storeops_queue_messages",
                    "Messages in a consumer group's queues by state (ready, retrying in delay queues, dead), and in the unrouted queue; sampled by every worker",
                ),
                &["queue", "state"],
            )
            .expect("valid metric"),
        )
    });
    pub static QUEUE_CONSUMERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
        register(
            IntGaugeVec::new(
                Opts::new(
                    "storeops_queue_consumers",
                    "Consumers attached to a consumer group's queue, as the broker counts them",
                ),
                &["queue"],
            )
            .expect("valid metric"),
        )
    });

    pub fn init() {
        LazyLock::force(&QUEUE_MESSAGES);
        LazyLock::force(&QUEUE_CONSUMERS);
        LazyLock::force(&OUTBOX_PENDING);
        LazyLock::force(&OUTBOX_OLDEST_AGE);
        LazyLock::force(&OUTBOX_PUBLISHED);
        LazyLock::force(&OUTBOX_RETURNED);
        LazyLock::force(&MESSAGES_CONSUMED);
        LazyLock::force(&MESSAGE_HANDLING);
    }
}
