//! A supervised RabbitMQ connection: connect, declare topology, watch for errors,
//! reconnect with backoff. lapin's own recovery is connection-level only, so the
//! supervisor owns the whole cycle and reports it to readiness.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind, options::ExchangeDeclareOptions,
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::EVENTS_EXCHANGE;
use crate::config::ConnectionUrl;

/// Whether the broker connection is up and its topology declared.
#[derive(Clone, Default)]
pub struct BrokerStatus(Arc<AtomicBool>);

impl BrokerStatus {
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Release);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Declares what every role relies on; idempotent, so it runs on every (re)connect.
pub async fn declare_topology(channel: &Channel) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keeps a connection up until `stop` is cancelled; `status` follows it.
pub async fn supervise(
    url: ConnectionUrl,
    name: String,
    status: BrokerStatus,
    stop: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    while !stop.is_cancelled() {
        match connect(&url, &name).await {
            Ok((connection, _channel)) => {
                status.set(true);
                backoff = MIN_BACKOFF;
                tracing::info!(broker = %url, "broker connected");
                let mut events = connection.events_listener();
                let reason = tokio::select! {
                    () = stop.cancelled() => None,
                    event = async {
                        loop {
                            match events.next().await {
                                Some(lapin::Event::Error(e)) => break e.to_string(),
                                Some(_) => {}
                                None => break "connection closed".to_owned(),
                            }
                        }
                    } => Some(event),
                };
                status.set(false);
                match reason {
                    None => {
                        let _ = connection.close(200, "shutting down".into()).await;
                        return;
                    }
                    Some(reason) => {
                        tracing::warn!(broker = %url, %reason, "broker connection lost; reconnecting")
                    }
                }
            }
            Err(error) => {
                tracing::warn!(broker = %url, %error, retry_in_ms = backoff.as_millis() as u64, "broker connect failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(url: &ConnectionUrl, name: &str) -> Result<(Connection, Channel), BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let connection = Connection::connect(url.expose(), properties).await?;
    let channel = connection.create_channel().await?;
    declare_topology(&channel).await?;
    Ok((connection, channel))
}
