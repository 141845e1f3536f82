//! Typed events: one Rust type per routing key, used by the producer
//! ([`super::outbox::enqueue`]) and by the consumer ([`super::consumer::Registry::subscribe`]),
//! so a payload change is a compile error on both sides.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Postgres, Transaction};

use super::consumer::{Handler, HandlerError, Message};

/// A message on `storeops.events`. The type is the payload; the routing key is its name.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    const ROUTING_KEY: &'static str;
}

/// Handles one event type inside the consumer's transaction (which also records the
/// message in the inbox).
pub trait EventHandler<E: Event>: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: E,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// The event is dead-lettered (see `Handler::on_dead`); `event` is `None` when its
    /// payload did not even decode.
    fn on_dead<'a>(
        &'a self,
        _tx: &'a mut Transaction<'static, Postgres>,
        _event: Option<E>,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// Decodes the payload into `E` for an [`EventHandler`]; a payload that does not match
/// the type can never succeed, so it is a permanent error.
pub(super) struct Typed<E: Event> {
    pub handler: Arc<dyn EventHandler<E>>,
}

impl<E: Event> Handler for Typed<E> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event: E = message.decode()?;
            self.handler.handle(tx, event, message).await
        })
    }

    fn on_dead<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        self.handler.on_dead(tx, message.decode().ok(), reason)
    }
}
