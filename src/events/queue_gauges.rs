//! Broker-side figures the worker exports itself (PRODUCT §10): each consumer group's queue
//! depth, retrying and dead messages and consumers, and the unrouted queue, read with
//! passive declares. On-call's dashboard and the autoscaler (KEDA's RabbitMQ scaler)
//! look at the same queues, so they see the same numbers. Every worker exports them;
//! dashboards take the `max` across instances.

use std::{sync::Arc, time::Duration};

use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

use super::{
    broker::{self, BrokerError},
    metrics,
    topology::{Topology, depth},
};

/// How often the queues are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

pub struct QueueGauges {
    pub topology: Arc<Topology>,
    /// Every known consumer group (not only those this process consumes).
    pub groups: Vec<&'static str>,
}

impl QueueGauges {
    /// Samples until `stop`; a failed sample is retried on a fresh channel.
    pub async fn run(
        &self,
        connection: &Connection,
        stop: CancellationToken,
    ) -> Result<(), BrokerError> {
        let mut channel = connection.create_channel().await?;
        loop {
            if let Err(error) = self.sample(&channel).await {
                tracing::warn!(%error, "cannot sample queue depths; retrying");
                // A failed passive declare closes its channel.
                channel = connection.create_channel().await?;
            }
            tokio::select! {
                () = stop.cancelled() => {
                    broker::close_channel(&channel).await;
                    return Ok(());
                }
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }

    async fn sample(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for group in &self.groups {
            let queue = self.topology.queue(group);
            let (ready, consumers) = depth(channel, &queue).await?;
            let (dead, _) = depth(channel, &self.topology.dead_queue(group)).await?;
            let mut retrying = 0;
            for step in 0..self.topology.retry_delays.len() {
                if let Some(delay) = self.topology.delay_queue(group, step) {
                    retrying += depth(channel, &delay).await?.0;
                }
            }
            set(&queue, "ready", ready);
            set(&queue, "retrying", retrying);
            set(&queue, "dead", dead);
            metrics::QUEUE_CONSUMERS
                .with_label_values(&[queue.as_str()])
                .set(i64::from(consumers));
        }
        let unrouted = self.topology.unrouted();
        set(&unrouted, "ready", depth(channel, &unrouted).await?.0);
        Ok(())
    }
}

fn set(queue: &str, state: &str, messages: u32) {
    metrics::QUEUE_MESSAGES
        .with_label_values(&[queue, state])
        .set(i64::from(messages));
}
