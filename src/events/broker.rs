//! A supervised RabbitMQ connection: connect, run a session on it, notice when it dies,
//! reconnect with backoff. lapin's own recovery is connection-level only, so the
//! supervisor owns the whole cycle (channels, topology, consumers) and reports it to
//! readiness.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::config::ConnectionUrl;

/// Whether the broker connection is up and its session running.
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
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// Work that runs on one live connection: declare topology, publish, consume. It
/// returns `Ok` only after a graceful stop; an error means "reconnect and run again".
pub trait Session: Send + Sync + 'static {
    fn run(
        &self,
        connection: Arc<Connection>,
        stop: CancellationToken,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;
}

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Closes a channel whose work is done, before the connection closes. A channel only
/// dropped is closed by lapin in the background, which races the connection's close and
/// then logs a connection error on a clean shutdown.
pub async fn close_channel(channel: &lapin::Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
    }
}

pub async fn connect(url: &ConnectionUrl, name: &str) -> Result<Connection, BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url.expose(), properties).await?)
}

/// Keeps a connection and its session up until `stop` is cancelled and the session has
/// finished its graceful stop.
pub async fn supervise(
    url: ConnectionUrl,
    name: String,
    status: BrokerStatus,
    stop: CancellationToken,
    session: Arc<dyn Session>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let connection = match connect(&url, &name).await {
            Ok(connection) => Arc::new(connection),
            Err(error) => {
                tracing::warn!(broker = %url, %error, retry_in_ms = backoff.as_millis() as u64, "broker connect failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(broker = %url, "broker connected");
        status.set(true);
        let mut events = connection.events_listener();
        let lost = async {
            loop {
                match events.next().await {
                    // A channel-level (soft) error closes only its channel; whoever
                    // owns that channel sees the error and handles it.
                    Some(lapin::Event::Error(e)) if e.is_amqp_soft_error() => {}
                    Some(lapin::Event::Error(e)) => break e.to_string(),
                    Some(_) => {}
                    None => break "connection closed".to_owned(),
                }
            }
        };
        let outcome = tokio::select! {
            result = session.run(connection.clone(), stop.clone()) => result.map_err(|e| e.to_string()),
            reason = lost => Err(reason),
        };
        status.set(false);
        match outcome {
            Ok(()) => {
                let _ = connection.close(200, "shutting down".into()).await;
                return;
            }
            Err(reason) => {
                tracing::warn!(broker = %url, %reason, "broker session ended; reconnecting");
                let _ = connection.close(320, "reconnecting".into()).await;
                // A session that ran a while earns a fresh backoff.
                backoff = MIN_BACKOFF;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}
