//! The worker role: consumes RabbitMQ queues. Today it keeps a supervised broker
//! connection with the topology declared; consumer groups register here as modules
//! gain message handlers.

use super::RoleParts;
use crate::{
    admin::Check,
    config::Config,
    events::broker::{self, BrokerStatus},
    shutdown::Shutdown,
};

/// `storeops worker --queues ... --concurrency N`.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Consumer groups to run; empty means all.
    pub queues: Vec<String>,
    pub concurrency: usize,
}

pub fn start(
    config: &Config,
    options: &WorkerOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<RoleParts> {
    let url = config.amqp_url()?.clone();
    let status = BrokerStatus::default();
    tracing::info!(queues = ?options.queues, concurrency = options.concurrency, "worker starting");
    let stop = shutdown.signalled.clone();
    let task = {
        let status = status.clone();
        async move {
            broker::supervise(url, "storeops-worker".to_owned(), status, stop).await;
            Ok(())
        }
    };
    Ok(RoleParts {
        checks: vec![Check::new("broker", move || {
            let connected = status.is_connected();
            async move {
                if connected {
                    Ok(())
                } else {
                    Err("not connected to the broker".to_owned())
                }
            }
        })],
        task: Box::pin(task),
    })
}
