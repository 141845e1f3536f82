//! `storeops dlq list|replay|purge --queue G`: operating a consumer group's dead letters.

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
        ConfirmSelectOptions, QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable},
};

use super::{
    broker::BrokerError,
    consumer::{ATTEMPT_HEADER, ROUTING_KEY_HEADER, header_strings},
    topology::Topology,
};

/// One dead message, as `dlq list` prints it.
#[derive(Debug)]
pub struct DeadMessage {
    pub message_id: String,
    pub routing_key: String,
    pub reason: String,
    pub payload_preview: String,
}

async fn dead_count(channel: &Channel, queue: &str) -> Result<u32, BrokerError> {
    Ok(super::topology::depth(channel, queue).await?.0)
}

/// Reads up to `limit` dead messages without removing them.
pub async fn list(
    channel: &Channel,
    topology: &Topology,
    group: &str,
    limit: usize,
) -> Result<(u32, Vec<DeadMessage>), BrokerError> {
    let queue = topology.dead_queue(group);
    let total = dead_count(channel, &queue).await?;
    let mut seen = Vec::new();
    let mut held = Vec::new();
    while seen.len() < limit {
        let Some(message) = channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let headers = header_strings(&delivery.properties);
        let reason = death_reason(&delivery.properties).unwrap_or_else(|| "unknown".to_owned());
        let text = String::from_utf8_lossy(&delivery.data);
        seen.push(DeadMessage {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            routing_key: routing_key_of(&delivery.properties, &delivery.routing_key.to_string()),
            reason: format!(
                "{reason}; attempts {}",
                headers.get(ATTEMPT_HEADER).map_or("0", String::as_str)
            ),
            payload_preview: text.chars().take(200).collect(),
        });
        held.push(delivery.acker);
    }
    // Put everything back (requeue keeps the messages; order may change).
    for acker in held {
        acker.reject(BasicRejectOptions { requeue: true }).await?;
    }
    Ok((total, seen))
}

/// Moves up to `limit` dead messages back to the group's queue, attempts reset.
pub async fn replay(
    channel: &Channel,
    topology: &Topology,
    group: &str,
    limit: usize,
) -> Result<usize, BrokerError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let dead = topology.dead_queue(group);
    let queue = topology.queue(group);
    let mut replayed = 0;
    while replayed < limit {
        let Some(message) = channel
            .basic_get(dead.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let original_key = routing_key_of(&delivery.properties, &delivery.routing_key.to_string());
        let mut headers = FieldTable::default();
        for (name, value) in header_strings(&delivery.properties) {
            if name != ATTEMPT_HEADER
                && !name.starts_with("x-death")
                && !name.starts_with("x-first-death")
                && !name.starts_with("x-last-death")
            {
                headers.insert(name.into(), AMQPValue::LongString(value.into()));
            }
        }
        headers.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString(original_key.into()),
        );
        let properties = BasicProperties::default()
            .with_message_id(delivery.properties.message_id().clone().unwrap_or_default())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        // Straight to the group's queue (default exchange), so only this group sees it again.
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.clone().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if !matches!(confirm, Confirmation::Ack(None)) {
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await?;
            return Err(BrokerError::Other(format!(
                "the broker did not accept the replay into {queue}"
            )));
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        replayed += 1;
    }
    Ok(replayed)
}

pub async fn purge(
    channel: &Channel,
    topology: &Topology,
    group: &str,
) -> Result<u32, BrokerError> {
    Ok(channel
        .queue_purge(
            topology.dead_queue(group).into(),
            QueuePurgeOptions::default(),
        )
        .await?)
}

/// The routing key the message was first published with: dead-lettering and delay
/// queues rewrite the delivery's own.
pub fn routing_key_of(properties: &BasicProperties, fallback: &str) -> String {
    let headers = header_strings(properties);
    if let Some(key) = headers.get(ROUTING_KEY_HEADER) {
        return key.clone();
    }
    first_death_field(properties, "routing-keys")
        .or_else(|| first_death_field(properties, "routing_key"))
        .unwrap_or_else(|| fallback.to_owned())
}

fn death_reason(properties: &BasicProperties) -> Option<String> {
    first_death_field(properties, "reason")
}

/// A field of the oldest `x-death` entry the broker recorded.
fn first_death_field(properties: &BasicProperties, field: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(oldest) = deaths.as_slice().last()? else {
        return None;
    };
    match oldest.inner().get(field)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::FieldArray(values) => values.as_slice().first().and_then(|v| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        }),
        _ => None,
    }
}
