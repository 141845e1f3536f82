//! The `ingest` consumer group's entry point: `ingest.received` → plan a price batch,
//! or apply a delivery or stock alert. Runs in the consumer's transaction (with its
//! inbox row), so a redelivered message changes nothing twice.

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};

use super::{IngestReceived, IngestStatus, ItemError, Source, metrics, price, repo, single};
use crate::{
    events::{
        EventHandler,
        consumer::{HandlerError, Message},
    },
    ids::IngestId,
};

pub struct Received {
    pub chunk_stores: usize,
    /// One price batch planned at a time per process: a plan holds its batch's compact
    /// lines in memory, so concurrent plans would multiply the worker's peak.
    pub planning: tokio::sync::Semaphore,
}

impl EventHandler<IngestReceived> for Received {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: IngestReceived,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            // Waited for before any row is locked.
            let _planning = match event.source {
                Source::PriceChange => Some(self.planning.acquire().await.map_err(|e| {
                    HandlerError::Retryable(format!("planning semaphore closed: {e}"))
                })?),
                Source::Delivery | Source::StockAlert => None,
            };
            let Some(ingest) = repo::lock_received(tx, event.ingest_id).await? else {
                return Err(HandlerError::Permanent(format!(
                    "ingest {} does not exist",
                    event.ingest_id
                )));
            };
            // Planned already (the same event published again): nothing to do.
            if IngestStatus::parse(&ingest.status).ok() != Some(IngestStatus::Received) {
                return Ok(());
            }
            let Ok(source) = Source::parse(&ingest.source) else {
                return Err(HandlerError::Permanent(format!(
                    "ingest {} has unknown source {}",
                    ingest.id, ingest.source
                )));
            };
            match source {
                Source::PriceChange => price::plan(tx, ingest, self.chunk_stores).await,
                Source::Delivery => single::delivery(tx, &ingest).await,
                Source::StockAlert => single::stock_alert(tx, &ingest).await,
            }
        })
    }

    fn on_dead<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: Option<IngestReceived>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match event {
                Some(event) => fail_dead(tx, event.ingest_id, None, reason).await,
                None => Ok(()),
            }
        })
    }
}

/// The API validated the body, so this only happens if the stored bytes or the code
/// changed underneath: the ingest fails visibly instead of dead-lettering.
pub async fn fail_unreadable(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &repo::ReceivedIngest,
    source: Source,
    error: &serde_json::Error,
) -> Result<(), HandlerError> {
    tracing::error!(ingest_id = %ingest.id, %error, "stored ingest body does not parse");
    fail(
        tx,
        ingest.id,
        source,
        ItemError {
            item: None,
            field: "body".to_owned(),
            message: format!("the stored body does not parse: {error}"),
        },
    )
    .await
}

/// An ingest whose message was dead-lettered fails visibly: its status says so, with
/// the reason, so the sender learns it from the status URL.
pub async fn fail_dead(
    tx: &mut Transaction<'static, Postgres>,
    id: IngestId,
    chunk: Option<i32>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let message = match chunk {
        Some(no) => format!("chunk {no} could not be applied: {reason}"),
        None => format!("could not be processed: {reason}"),
    };
    let error = ItemError {
        item: None,
        field: "body".to_owned(),
        message,
    };
    repo::fail_unfinished(tx, id, &error).await
}

/// Finishes a single-item ingest as `failed` with one error.
pub async fn fail(
    tx: &mut Transaction<'static, Postgres>,
    id: IngestId,
    source: Source,
    error: ItemError,
) -> Result<(), HandlerError> {
    repo::record_progress(tx, id, &repo::Counts::default(), &[error], false, true).await?;
    metrics::count(source, "rejected", 1);
    Ok(())
}
