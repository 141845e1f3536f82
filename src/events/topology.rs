//! Names and declarations of everything the broker holds for us (SPEC §5). Declared
//! idempotently on every (re)connect, so a broker that lost its state is rebuilt.
//!
//! Per consumer group `G` (all names under a configurable prefix, `storeops` by default):
//! - quorum queue `storeops.G`, bound to `storeops.events` with the group's routing
//!   keys, with a delivery limit and `storeops.dead` as its dead-letter exchange;
//! - one delay queue per retry step, `storeops.G.retry.<ms>ms`, whose message TTL sends
//!   the message back to `storeops.G` when it expires;
//! - `storeops.G.dead`, where permanently failed or exhausted messages wait for
//!   `storeops dlq replay`.

use std::time::Duration;

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
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

    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                durable,
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
