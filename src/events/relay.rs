//! The outbox relay: claims unpublished rows (`FOR UPDATE SKIP LOCKED`, so any number
//! of relays can run), publishes them with publisher confirms and `mandatory`, and
//! marks each row only after its confirm. Woken by LISTEN/NOTIFY, with polling as the
//! fallback for a missed notification.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::join_all;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    broker::{self, BrokerError},
    metrics,
    outbox::{self, PendingEvent},
    topology::Topology,
    trace_context,
};

pub const NOTIFY_CHANNEL: &str = "storeops_outbox";

/// Publishes of an unroutable event before it is kept as returned (with the backoff
/// of `outbox::mark_failed`, about 17 minutes in all).
const UNROUTABLE_ATTEMPTS: i32 = 10;

#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub batch_size: i64,
    pub poll_interval: Duration,
}

#[derive(Clone)]
pub struct Relay {
    pub db: PgPool,
    pub topology: Arc<Topology>,
    pub options: RelayOptions,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub published: usize,
    pub returned: usize,
    pub failed: usize,
}

impl Relay {
    /// Runs until `stop`; the batch in flight is finished first.
    pub async fn run(
        &self,
        connection: &Connection,
        stop: CancellationToken,
    ) -> Result<(), BrokerError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let outcome = self.relay(&channel, stop).await;
        if outcome.is_ok() {
            broker::close_channel(&channel).await;
        }
        outcome
    }

    async fn relay(&self, channel: &Channel, stop: CancellationToken) -> Result<(), BrokerError> {
        let mut listener = None;
        let mut last_gauges = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            let outcome = match self.publish_batch(channel).await {
                Ok(outcome) => outcome,
                // The database is the relay's problem, not the broker's: keep the
                // connection and try again after a pause.
                Err(BrokerError::Database(error)) => {
                    tracing::warn!(%error, "outbox relay cannot reach the database; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(self.options.poll_interval.max(Duration::from_secs(1))) => {}
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                self.refresh_gauges().await;
                last_gauges = tokio::time::Instant::now();
            }
            let handled = outcome.published + outcome.returned + outcome.failed;
            if handled as i64 >= self.options.batch_size {
                continue; // a full batch: more is probably waiting
            }
            let woken = async {
                match listener.as_mut() {
                    Some(l) => {
                        match tokio::time::timeout(self.options.poll_interval, l.recv()).await {
                            // PgListener reconnects on the next recv; meanwhile poll.
                            Ok(Err(error)) => Err(error),
                            _ => Ok(()),
                        }
                    }
                    None => {
                        tokio::time::sleep(self.options.poll_interval).await;
                        Ok(())
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                result = woken => if let Err(error) = result {
                    tracing::warn!(%error, "outbox listener lost its connection");
                    listener = None;
                }
            }
        }
    }

    /// LISTEN for outbox inserts; `None` (polling only) while that fails.
    async fn listen(&self) -> Option<PgListener> {
        let connected = async {
            let mut listener = PgListener::connect_with(&self.db).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match connected.await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot LISTEN; polling until it can");
                None
            }
        }
    }

    /// Claims one batch, publishes it and records each row's fate, in one transaction.
    pub async fn publish_batch(&self, channel: &Channel) -> Result<BatchOutcome, BrokerError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let events = outbox::claim(&mut tx, self.options.batch_size).await?;
        if events.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let results = self.publish(channel, &events).await;
        let (mut published, mut returned, mut failed) =
            (Vec::new(), Vec::<Uuid>::new(), Vec::new());
        let mut channel_error = None;
        for (event, result) in events.iter().zip(results) {
            match result {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                    published.push(event.id)
                }
                Ok(Confirmation::Ack(Some(_))) | Ok(Confirmation::Nack(Some(_))) => {
                    tracing::warn!(message_id = %event.id, routing_key = %event.routing_key, "broker returned an unroutable event");
                    metrics::OUTBOX_RETURNED.inc();
                    returned.push(event.id);
                }
                Ok(Confirmation::Nack(None)) => failed.push(event.id),
                Err(e) => {
                    failed.push(event.id);
                    channel_error.get_or_insert(e);
                }
            }
        }
        outbox::mark_published(&mut tx, &published).await?;
        // Unroutable may mean "its consumers are not deployed yet" (rolling deploys,
        // --queues splits): retry with backoff for a while, then keep it as returned.
        let (give_up, retry): (Vec<Uuid>, Vec<Uuid>) = returned.iter().partition(|id| {
            events
                .iter()
                .any(|e| e.id == **id && e.attempts + 1 >= UNROUTABLE_ATTEMPTS)
        });
        outbox::mark_failed(
            &mut tx,
            &retry,
            "unroutable: no queue is bound to this routing key",
        )
        .await?;
        outbox::mark_returned(&mut tx, &give_up).await?;
        outbox::mark_failed(&mut tx, &failed, "broker did not confirm the publish").await?;
        tx.commit().await?;
        metrics::OUTBOX_PUBLISHED.inc_by(published.len() as u64);
        if let Some(error) = channel_error {
            // The channel is gone: the rows stay pending and the session reconnects.
            return Err(error.into());
        }
        Ok(BatchOutcome {
            published: published.len(),
            returned: returned.len(),
            failed: failed.len(),
        })
    }

    /// Publishes claimed events and waits for each confirm (mandatory: unroutable ones
    /// come back as returned). Each publish is a PRODUCER span in its event's trace,
    /// whose context travels in the message's headers to the consumer.
    pub async fn publish(
        &self,
        channel: &Channel,
        events: &[PendingEvent],
    ) -> Vec<Result<Confirmation, lapin::Error>> {
        let exchange = self.topology.events_exchange();
        let mut confirms = Vec::with_capacity(events.len());
        let mut spans = Vec::with_capacity(events.len());
        for event in events {
            let span = tracing::info_span!(
                "publish",
                otel.name = %format!("publish {}", event.routing_key),
                otel.kind = "producer",
                messaging.system = "rabbitmq",
                messaging.destination.name = %exchange,
                messaging.message.id = %event.id,
            );
            trace_context::continue_trace(&span, &event.headers.0);
            let confirm = channel
                .basic_publish(
                    exchange.clone().into(),
                    event.routing_key.clone().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &serde_json::to_vec(&event.payload.0).unwrap_or_default(),
                    properties(event, trace_context::of(&span)),
                )
                .await;
            confirms.push(confirm);
            spans.push(span);
        }
        let confirmed = join_all(confirms.into_iter().map(|confirm| async move {
            match confirm {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            }
        }))
        .await;
        // Each publish span ends with its confirm.
        drop(spans);
        confirmed
    }

    async fn refresh_gauges(&self) {
        match outbox::backlog(&self.db).await {
            Ok((pending, oldest)) => {
                metrics::OUTBOX_PENDING.set(pending);
                metrics::OUTBOX_OLDEST_AGE.set(oldest);
            }
            Err(error) => tracing::warn!(%error, "cannot measure the outbox backlog"),
        }
    }
}

/// The message's properties; `trace` (the publish span's context) replaces the trace
/// context stored with the event.
fn properties(event: &PendingEvent, trace: HashMap<String, String>) -> BasicProperties {
    let mut headers = FieldTable::default();
    let stored = event
        .headers
        .0
        .iter()
        .filter(|(name, _)| !trace.contains_key(*name));
    for (name, value) in stored.chain(trace.iter()) {
        headers.insert(
            name.clone().into(),
            AMQPValue::LongString(value.clone().into()),
        );
    }
    BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2) // persistent
        .with_timestamp(u64::try_from(event.created_at.timestamp()).unwrap_or_default())
        .with_headers(headers)
}
