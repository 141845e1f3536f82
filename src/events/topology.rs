//! Names and declarations of everything the broker holds for us (PRODUCT §5). Declared
//! idempotently on every (re)connect, so a broker that lost its state is rebuilt.
//!
//! Per consumer group `G` (all names under a configurable prefix, `storeops` by default):
//! - quorum queue `storeops.G`, bound to `storeops.events` with the group's routing
//!   keys, with a delivery limit and `storeops.dead` as its dead-letter exchange;
//! - one delay queue per retry step, `storeops.G.retry.<ms>ms`, whose message TTL sends
//!   the message back to `storeops.G` when it expires;
//! - `storeops.G.dead`, where permanently failed or exhausted messages wait for
//!   `storeops dlq replay`.
//!
//! Every worker declares every group's queue and bindings, whichever groups it consumes
//! (`--queues`), so an event is routed to its group's queue even while no worker of
//! that group runs. An event whose routing key no group subscribes to (`task.updated`
//! today) goes to the events exchange's alternate exchange, `storeops.unrouted`, into a
//! bounded queue of the same name (oldest dropped first): the broker never returns it,
//! so it never lingers in the outbox, and on-call sees the count
//! (`storeops_queue_messages{queue="storeops.unrouted"}`).

use std::time::Duration;

use lapin::{
    Channel, Connection, ErrorKind, ExchangeKind,
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    },
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable},
};

use super::broker::BrokerError;

#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    /// Delay of each retry step; a message fails for good after the last.
    pub retry_delays: Vec<Duration>,
    /// Broker-side redelivery limit (crashes, requeues) before dead-lettering.
    pub delivery_limit: u32,
}

impl Topology {
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The events exchange's alternate exchange, and the queue behind it.
    pub fn unrouted(&self) -> String {
        format!("{}.unrouted", self.prefix)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    pub fn queue(&self, group: &str) -> String {
        format!("{}.{group}", self.prefix)
    }

    pub fn dead_queue(&self, group: &str) -> String {
        format!("{}.dead", self.queue(group))
    }

    pub fn delay_queue(&self, group: &str, step: usize) -> Option<String> {
        // The delay is in the name: changing it declares a new queue rather than
        // clashing with the arguments of the old one.
        self.retry_delays
            .get(step)
            .map(|delay| format!("{}.retry.{}ms", self.queue(group), delay.as_millis()))
    }

    /// Declares the exchanges and the unrouted queue. An events exchange declared by an
    /// older version (without the alternate exchange) is replaced: its bindings go with
    /// it, and the caller declares every group's bindings right after.
    pub async fn declare_exchanges(&self, connection: &Connection) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let channel = connection.create_channel().await?;
        let unrouted = self.unrouted();
        channel
            .exchange_declare(
                unrouted.clone().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        let mut bounded = quorum();
        bounded.insert("x-max-length".into(), AMQPValue::LongInt(UNROUTED_KEPT));
        bounded.insert("x-overflow".into(), string("drop-head"));
        channel
            .queue_declare(
                unrouted.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                bounded,
            )
            .await?;
        channel
            .queue_bind(
                unrouted.clone().into(),
                unrouted.clone().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        let mut events_args = FieldTable::default();
        events_args.insert("alternate-exchange".into(), string(&unrouted));
        let declared = channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                durable,
                events_args.clone(),
            )
            .await;
        match declared {
            Ok(()) => {}
            Err(error) if is_precondition_failed(&error) => {
                // The broker closed that channel; replace the exchange on a new one.
                tracing::warn!(
                    exchange = %self.events_exchange(),
                    "replacing the events exchange to add its alternate exchange"
                );
                let channel = connection.create_channel().await?;
                channel
                    .exchange_delete(
                        self.events_exchange().into(),
                        ExchangeDeleteOptions::default(),
                    )
                    .await?;
                channel
                    .exchange_declare(
                        self.events_exchange().into(),
                        ExchangeKind::Topic,
                        durable,
                        events_args,
                    )
                    .await?;
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Declares a consumer group's queues and bindings.
    pub async fn declare_group(
        &self,
        channel: &Channel,
        group: &str,
        routing_keys: &[String],
    ) -> Result<(), BrokerError> {
        let queue = self.queue(group);
        let dead = self.dead_queue(group);
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };

        let mut args = quorum();
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(self.delivery_limit).unwrap_or(i32::MAX)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            string(&self.dead_exchange()),
        );
        args.insert("x-dead-letter-routing-key".into(), string(&queue));
        channel
            .queue_declare(queue.clone().into(), durable, args)
            .await?;
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.clone().into(),
                    self.events_exchange().into(),
                    key.clone().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }

        channel
            .queue_declare(dead.clone().into(), durable, quorum())
            .await?;
        channel
            .queue_bind(
                dead.into(),
                self.dead_exchange().into(),
                queue.clone().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        for step in 0..self.retry_delays.len() {
            let Some(name) = self.delay_queue(group, step) else {
                continue;
            };
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongInt(
                    i32::try_from(self.retry_delays[step].as_millis()).unwrap_or(i32::MAX),
                ),
            );
            // Expired messages go back to the group's queue through the default exchange.
            args.insert("x-dead-letter-exchange".into(), string(""));
            args.insert("x-dead-letter-routing-key".into(), string(&queue));
            channel.queue_declare(name.into(), durable, args).await?;
        }
        Ok(())
    }
}

/// Ready messages and consumers of a declared queue (a passive declare: it changes
/// nothing, and fails, closing the channel, if the queue does not exist).
pub async fn depth(channel: &Channel, queue: &str) -> Result<(u32, u32), lapin::Error> {
    let queue = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue.message_count(), queue.consumer_count()))
}

/// Unrouted events kept for inspection; older ones are dropped first.
const UNROUTED_KEPT: i32 = 10_000;

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(e)
            if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("quorum"));
    args
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Does an AMQP topic pattern (`task.*`, `task.#`) match a routing key?
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                go(rest, key) || key.split_first().is_some_and(|(_, k)| go(pattern, k))
            }
            (Some((p, prest)), Some((k, krest))) => (*p == "*" || p == k) && go(prest, krest),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("task.*", "task.created"));
        assert!(!topic_matches("task.*", "task.created.late"));
        assert!(topic_matches("task.#", "task.created.late"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("task.#", "task"));
        assert!(!topic_matches("campaign.*", "task.created"));
    }

    #[test]
    fn delay_queue_names_carry_their_delay() {
        let t = Topology {
            prefix: "storeops".into(),
            retry_delays: vec![Duration::from_secs(5), Duration::from_secs(30)],
            delivery_limit: 10,
        };
        assert_eq!(
            t.delay_queue("webhooks", 0).as_deref(),
            Some("storeops.webhooks.retry.5000ms")
        );
        assert_eq!(t.delay_queue("webhooks", 2), None);
        assert_eq!(t.dead_queue("webhooks"), "storeops.webhooks.dead");
    }
}
