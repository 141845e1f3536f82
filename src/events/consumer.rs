//! The worker's consumer runtime (PRODUCT §5): modules register handlers for routing keys
//! in consumer groups; each group is one quorum queue. A message is applied in one
//! database transaction that also records its id in the inbox, and acked only after
//! that commit, so a redelivery is recognised and acked as a duplicate.
//!
//! Failures: a retryable error goes to the group's next delay queue (5 s, 30 s, ...),
//! a permanent one, or a retryable one past the last step, is rejected into
//! `<queue>.dead`. Handlers run under a time limit below the broker's consumer timeout.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, future::BoxFuture};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
        BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    Event, EventHandler,
    broker::{self, BrokerError},
    event::Typed,
    metrics,
    topology::{Topology, topic_matches},
    trace_context,
};

/// Header carrying how many times a message went through a delay queue.
pub const ATTEMPT_HEADER: &str = "x-storeops-attempt";
/// The routing key a message was published with: delay queues and dead-lettering
/// re-route it by queue name, so the original travels in this header.
pub const ROUTING_KEY_HEADER: &str = "x-storeops-routing-key";

/// How long a cancelled consumer waits for the broker before it stops listening.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// A decoded message as handlers see it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Uuid,
    pub routing_key: String,
    pub payload: serde_json::Value,
    /// 0 on first delivery, n after n trips through the delay queues.
    pub attempt: u32,
}

impl Message {
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            HandlerError::Permanent(format!("payload does not match {}: {e}", self.routing_key))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try later (database busy, downstream 5xx, timeout).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never succeed (malformed payload, refused by a rule): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A database error is retried only when another try can succeed (a lost connection,
/// a deadlock, a lock or statement timeout, a full pool). Data the database refuses
/// (out of range, invalid, violating a constraint) and statements it cannot run are
/// refused again on every try: permanent, so the originator hears of it at once.
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        let permanent = match &error {
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // 22: data exception; 23: integrity constraint; 42: syntax or access.
                code.starts_with("22") || code.starts_with("23") || code.starts_with("42")
            }),
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. } => true,
            _ => false,
        };
        if permanent {
            Self::Permanent(format!("database refused the data: {error}"))
        } else {
            Self::Retryable(format!("database: {error}"))
        }
    }
}

/// A message handler. It writes through `tx`; the runtime commits it together with the
/// inbox row.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Called once when a message is dead-lettered (its handler's transaction rolled
    /// back), in a transaction of its own: tell whoever sent it, so no work is lost
    /// silently. Nothing by default.
    fn on_dead<'a>(
        &'a self,
        _tx: &'a mut Transaction<'static, Postgres>,
        _message: &'a Message,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// One queue and the handlers behind it.
pub struct ConsumerGroup {
    pub name: &'static str,
    routes: Vec<(String, Arc<dyn Handler>)>,
    /// Whether this process consumes the group (`--queues`); its queue and bindings
    /// are declared either way.
    consumed: bool,
}

impl ConsumerGroup {
    pub fn routing_keys(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(pattern, _)| pattern.clone())
            .collect()
    }

    fn handler_for(&self, routing_key: &str) -> Option<&Arc<dyn Handler>> {
        self.routes
            .iter()
            .find(|(pattern, _)| topic_matches(pattern, routing_key))
            .map(|(_, handler)| handler)
    }
}

/// Every consumer group, filled by the modules at start-up (producers never know them).
#[derive(Default)]
pub struct Registry {
    groups: BTreeMap<&'static str, ConsumerGroup>,
}

impl Registry {
    /// Subscribes `handler` to event `E` in consumer group `group`.
    pub fn subscribe<E: Event>(&mut self, group: &'static str, handler: Arc<dyn EventHandler<E>>) {
        self.subscribe_raw(group, E::ROUTING_KEY, Arc::new(Typed { handler }));
    }

    /// Subscribes an untyped `handler` to `pattern` (AMQP topic syntax) in consumer
    /// group `group`: for handlers that pass payloads on without reading them (webhooks).
    pub fn subscribe_raw(&mut self, group: &'static str, pattern: &str, handler: Arc<dyn Handler>) {
        self.groups
            .entry(group)
            .or_insert_with(|| ConsumerGroup {
                name: group,
                routes: Vec::new(),
                consumed: true,
            })
            .routes
            .push((pattern.to_owned(), handler));
    }

    /// The groups this process consumes.
    pub fn group_names(&self) -> Vec<&'static str> {
        self.groups().map(|g| g.name).collect()
    }

    /// Consume only the groups named by `--queues` (all when empty); unknown names are
    /// an error. The others stay known, so their queues and bindings are still declared.
    pub fn select(mut self, names: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Ok(self);
        }
        if let Some(unknown) = names
            .iter()
            .find(|name| !self.groups.contains_key(name.as_str()))
        {
            return Err(format!(
                "unknown consumer group {unknown:?}; known: {}",
                self.group_names().join(", ")
            ));
        }
        for group in self.groups.values_mut() {
            group.consumed = names.iter().any(|name| name == group.name);
        }
        Ok(self)
    }

    /// The groups this process consumes.
    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values().filter(|g| g.consumed)
    }

    /// Every known group, consumed here or not: the topology to declare.
    pub fn all_groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values()
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Messages handled at once per group (and the prefetch).
    pub concurrency: usize,
    pub prefetch: u16,
    pub message_timeout: Duration,
}

/// Runs every selected group on one connection until `stop`, then drains.
pub struct Consumers {
    pub db: PgPool,
    pub topology: Arc<Topology>,
    pub registry: Arc<Registry>,
    pub options: ConsumerOptions,
}

enum Outcome {
    Applied,
    Duplicate,
}

impl Consumers {
    /// Declares the whole topology: exchanges and every known group's queues.
    pub async fn declare(
        &self,
        connection: &Connection,
        channel: &Channel,
    ) -> Result<(), BrokerError> {
        self.topology.declare_exchanges(connection).await?;
        for group in self.registry.all_groups() {
            self.topology
                .declare_group(channel, group.name, &group.routing_keys())
                .await?;
        }
        Ok(())
    }

    pub async fn run(
        &self,
        connection: &Connection,
        stop: CancellationToken,
    ) -> Result<(), BrokerError> {
        let mut groups = JoinSet::new();
        for group in self.registry.groups() {
            let consume = connection.create_channel().await?;
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let worker = GroupWorker {
                db: self.db.clone(),
                topology: self.topology.clone(),
                registry: self.registry.clone(),
                group: group.name,
                options: self.options.clone(),
                publish,
            };
            let stop = stop.clone();
            groups.spawn(async move { worker.consume(consume, stop).await });
        }
        while let Some(result) = groups.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(BrokerError::Other(format!("consumer task failed: {e}"))),
            }
        }
        Ok(())
    }
}

struct GroupWorker {
    db: PgPool,
    topology: Arc<Topology>,
    registry: Arc<Registry>,
    group: &'static str,
    options: ConsumerOptions,
    publish: Channel,
}

impl GroupWorker {
    async fn consume(self, channel: Channel, stop: CancellationToken) -> Result<(), BrokerError> {
        let queue = self.topology.queue(self.group);
        channel
            .basic_qos(self.options.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{queue}.{}", Uuid::now_v7().simple());
        let mut deliveries = channel
            .basic_consume(
                queue.clone().into(),
                tag.clone().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.options.concurrency));
        let mut in_flight = JoinSet::new();
        let mut cancelled = false;
        loop {
            let next = tokio::select! {
                () = stop.cancelled(), if !cancelled => {
                    // Stop taking new messages; what the broker already sent us still
                    // comes through the stream and is handled, then the stream ends.
                    cancelled = true;
                    let cancel = channel.basic_cancel(tag.clone().into(), BasicCancelOptions::default());
                    match tokio::time::timeout(DRAIN_QUIET, cancel).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::warn!(%queue, %error, "cancelling the consumer failed");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(%queue, "the broker did not confirm the cancel; draining anyway");
                            break;
                        }
                    }
                    continue;
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(%queue, error = %e, "message task panicked");
                    }
                    continue;
                }
                // After the cancel the stream should end by itself; if it stays quiet,
                // stop waiting: anything left unacked is redelivered to another worker.
                next = async {
                    if cancelled {
                        tokio::time::timeout(DRAIN_QUIET, deliveries.next()).await.ok().flatten()
                    } else {
                        deliveries.next().await
                    }
                } => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let permit = permits
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|e| BrokerError::Other(e.to_string()))?;
                    let worker = this.clone();
                    in_flight.spawn(async move {
                        worker.handle(delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    // The channel or connection died; in-flight acks fail and the broker
                    // redelivers, which the inbox absorbs.
                    while in_flight.join_next().await.is_some() {}
                    return Err(error.into());
                }
                None => break,
            }
        }
        while let Some(done) = in_flight.join_next().await {
            if let Err(e) = done {
                tracing::error!(%queue, error = %e, "message task panicked");
            }
        }
        broker::close_channel(&channel).await;
        broker::close_channel(&this.publish).await;
        Ok(())
    }

    async fn handle(&self, delivery: Delivery) {
        let queue = self.topology.queue(self.group);
        let started = Instant::now();
        let headers = header_strings(&delivery.properties);
        let attempt = headers
            .get(ATTEMPT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0u32);
        let routing_key = headers
            .get(ROUTING_KEY_HEADER)
            .map_or(delivery.routing_key.as_str(), String::as_str);
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {routing_key}"),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            queue = %queue,
            routing_key,
            message_id = tracing::field::Empty,
            attempt,
        );
        trace_context::continue_trace(&span, &headers);
        self.process(&delivery, &headers, attempt, &queue)
            .instrument(span)
            .await;
        metrics::MESSAGE_HANDLING
            .with_label_values(&[queue.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Decode, apply, then settle the delivery: ack, retry later, or dead-letter.
    async fn process(
        &self,
        delivery: &Delivery,
        headers: &HashMap<String, String>,
        attempt: u32,
        queue: &str,
    ) {
        let message = match decode(delivery, headers, attempt) {
            Ok(message) => message,
            Err(reason) => {
                tracing::error!(%reason, "undecodable message; dead-lettering");
                self.settle_dead(delivery, queue).await;
                return;
            }
        };
        tracing::Span::current().record("message_id", tracing::field::display(message.id));
        let outcome = match self.registry_handler(&message.routing_key) {
            None => Err(HandlerError::Permanent(format!(
                "no handler in group {} for {}",
                self.group, message.routing_key
            ))),
            Some(handler) => {
                match tokio::time::timeout(
                    self.options.message_timeout,
                    self.apply(handler, &message),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(HandlerError::Retryable(format!(
                        "handler exceeded {}s",
                        self.options.message_timeout.as_secs()
                    ))),
                }
            }
        };
        match outcome {
            Ok(Outcome::Applied) => self.ack(delivery, "ack").await,
            Ok(Outcome::Duplicate) => self.ack(delivery, "duplicate").await,
            Err(HandlerError::Retryable(reason)) => {
                match self.topology.delay_queue(self.group, attempt as usize) {
                    Some(delay_queue) => {
                        tracing::warn!(%reason, "handler failed; retrying later");
                        self.retry(delivery, &delay_queue, attempt + 1).await;
                    }
                    None => {
                        tracing::error!(%reason, "handler failed on its last attempt; dead-lettering");
                        self.dead(delivery, &message, &reason, queue).await;
                    }
                }
            }
            Err(HandlerError::Permanent(reason)) => {
                tracing::error!(%reason, "handler failed permanently; dead-lettering");
                self.dead(delivery, &message, &reason, queue).await;
            }
        }
    }

    /// Tells the handler's originator (`Handler::on_dead`), then dead-letters. If even
    /// that cannot be recorded (the database is down), the message goes back to the
    /// queue instead, to be tried again, rather than dying unannounced.
    async fn dead(&self, delivery: &Delivery, message: &Message, reason: &str, queue: &str) {
        if let Some(handler) = self.registry_handler(&message.routing_key) {
            let told = async {
                let mut tx = crate::db::begin(&self.db).await?;
                handler.on_dead(&mut tx, message, reason).await?;
                tx.commit().await
            };
            if let Err(error) = told.await {
                tracing::warn!(%error, "cannot record the failure for its sender; requeueing");
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: true })
                    .await;
                count(queue, "requeue");
                return;
            }
        }
        self.settle_dead(delivery, queue).await;
    }

    fn registry_handler(&self, routing_key: &str) -> Option<Arc<dyn Handler>> {
        self.registry
            .groups()
            .find(|g| g.name == self.group)
            .and_then(|g| g.handler_for(routing_key))
            .cloned()
    }

    async fn apply(
        &self,
        handler: Arc<dyn Handler>,
        message: &Message,
    ) -> Result<Outcome, HandlerError> {
        let mut tx = crate::db::begin(&self.db).await?;
        let fresh = sqlx::query(
            "INSERT INTO inbox (consumer_group, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(self.group)
        .bind(message.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(Outcome::Duplicate);
        }
        handler.handle(&mut tx, message).await?;
        tx.commit().await?;
        Ok(Outcome::Applied)
    }

    async fn ack(&self, delivery: &Delivery, outcome: &'static str) {
        let queue = self.topology.queue(self.group);
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => count(&queue, outcome),
            Err(error) => {
                // Applied but not acked: the redelivery will be a duplicate.
                tracing::warn!(%queue, %error, "ack failed; the broker will redeliver");
            }
        }
    }

    /// Sends a copy through the delay queue, then acks the original.
    async fn retry(&self, delivery: &Delivery, delay_queue: &str, attempt: u32) {
        let queue = self.topology.queue(self.group);
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongString(attempt.to_string().into()),
        );
        if !headers.contains_key(ROUTING_KEY_HEADER) {
            headers.insert(
                ROUTING_KEY_HEADER.into(),
                AMQPValue::LongString(delivery.routing_key.as_str().into()),
            );
        }
        let properties = delivery.properties.clone().with_headers(headers);
        let published = self
            .publish
            .basic_publish(
                "".into(),
                delay_queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                properties,
            )
            .await;
        let confirmed = match published {
            Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
            Err(_) => false,
        };
        if confirmed {
            self.ack(delivery, "retry").await;
        } else {
            // Could not park it: hand it back; the delivery limit bounds this loop.
            tracing::warn!(%queue, "retry publish not confirmed; requeueing");
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await;
            count(&queue, "requeue");
        }
    }

    /// Rejects without requeue: the queue's dead-letter exchange routes it to `.dead`.
    async fn settle_dead(&self, delivery: &Delivery, queue: &str) {
        match delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
        {
            Ok(_) => count(queue, "dead"),
            Err(error) => {
                tracing::warn!(%queue, %error, "reject failed; the broker will redeliver")
            }
        }
    }
}

fn count(queue: &str, outcome: &str) {
    metrics::MESSAGES_CONSUMED
        .with_label_values(&[queue, outcome])
        .inc();
}

fn decode(
    delivery: &Delivery,
    headers: &HashMap<String, String>,
    attempt: u32,
) -> Result<Message, String> {
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .ok_or("missing or invalid message_id")?;
    let payload =
        serde_json::from_slice(&delivery.data).map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(Message {
        id,
        routing_key: headers
            .get(ROUTING_KEY_HEADER)
            .cloned()
            .unwrap_or_else(|| delivery.routing_key.to_string()),
        payload,
        attempt,
    })
}

/// String-valued AMQP headers (trace context, attempt counter).
pub fn header_strings(properties: &BasicProperties) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = properties.headers() {
        for (name, value) in headers.inner() {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                AMQPValue::LongInt(i) => i.to_string(),
                AMQPValue::LongLongInt(i) => i.to_string(),
                _ => continue,
            };
            map.insert(name.to_string(), text);
        }
    }
    map
}

/// Processed message ids past the window in which a redelivery can still come.
pub const INBOX_PRUNING: crate::db::PruneRule = crate::db::PruneRule {
    table: "inbox",
    count: "SELECT count(*) FROM inbox WHERE processed_at < $1",
    delete: "WITH gone AS (
                 DELETE FROM inbox WHERE (consumer_group, message_id) IN (
                     SELECT consumer_group, message_id FROM inbox WHERE processed_at < $1 LIMIT $2)
                 RETURNING 1)
                 SELECT count(*) FROM gone",
};
