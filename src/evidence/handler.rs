//! The `evidence` consumer group: `evidence.attached` → a thumbnail, the photo's
//! dimensions and capture time. A photo that cannot be decoded is recorded as `failed`
//! with the reason (the reviewer sees the original still); the object store being away
//! is retried.

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};

use super::{
    ContentType, Evidence, EvidenceAttached, EvidenceState, image, metrics,
    repo::{self, ProcessedFields},
};
use crate::{
    events::{
        EventHandler,
        consumer::{HandlerError, Message},
    },
    stores::StoreDirectory,
};

pub struct Thumbnail {
    pub evidence: Evidence,
    pub stores: StoreDirectory,
    /// Decoding a photo takes ~4 bytes a pixel: one at a time per process bounds it.
    pub decoding: Arc<tokio::sync::Semaphore>,
}

impl EventHandler<EvidenceAttached> for Thumbnail {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: EvidenceAttached,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            // Gone (pruned with its task) or done already (a redelivery): nothing to do.
            let Some(row) = repo::find(tx, event.evidence_id).await? else {
                return Ok(());
            };
            if row.state != EvidenceState::Attached {
                return Ok(());
            }
            let store = self
                .evidence
                .store()
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let _decoding = self
                .decoding
                .acquire()
                .await
                .map_err(|e| HandlerError::Retryable(e.to_string()))?;
            let bytes = store
                .read(&row.object_key, u64::try_from(row.size_bytes).unwrap_or(0))
                .await
                .map_err(|e| HandlerError::Retryable(e.to_string()))?;
            let zone = self
                .stores
                .get(row.store_id)
                .await?
                .and_then(|s| s.time_zone.parse::<chrono_tz::Tz>().ok())
                .unwrap_or(chrono_tz::UTC);
            let (content_type, max_pixels, long_side) = (
                row.content_type,
                self.evidence.config.max_pixels,
                self.evidence.config.thumbnail_px,
            );
            let processed = tokio::task::spawn_blocking(move || {
                image::process(&bytes, content_type, max_pixels, long_side, zone)
            })
            .await
            .map_err(|e| HandlerError::Retryable(format!("thumbnail task: {e}")))?;
            let processed = match processed {
                Ok(processed) => processed,
                Err(error) => {
                    repo::mark_failed(tx, row.id, &error.to_string()).await?;
                    metrics::THUMBNAILS.with_label_values(&["failed"]).inc();
                    tracing::warn!(evidence = %row.id, %error, "no thumbnail for this photo");
                    return Ok(());
                }
            };
            let thumbnail_key = format!("{}.thumb.jpg", row.object_key);
            store
                .write(&thumbnail_key, ContentType::Jpeg, processed.thumbnail)
                .await
                .map_err(|e| HandlerError::Retryable(e.to_string()))?;
            let done = repo::mark_processed(
                tx,
                row.id,
                &ProcessedFields {
                    width: i32::try_from(processed.width).unwrap_or(i32::MAX),
                    height: i32::try_from(processed.height).unwrap_or(i32::MAX),
                    captured_at: processed.captured_at,
                    taken_before_task: processed.captured_at.map(|at| at < row.task_created_at),
                    thumbnail_key: &thumbnail_key,
                },
            )
            .await?;
            if done {
                metrics::THUMBNAILS.with_label_values(&["made"]).inc();
                if let Some(attached) = row.attached_at {
                    let lag = (Utc::now() - attached).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::THUMBNAIL_LAG.observe(lag);
                }
            }
            Ok(())
        })
    }
}
