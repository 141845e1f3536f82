//! The rules of receiving an integration request: checking each kind while it streams
//! in (the checks `body::receive` runs), storing it once per sender and sender's id
//! with its `ingest.received` event, and what a sender may see of its ingests.

use std::io::Read;

use serde::de::DeserializeOwned;
use sqlx::PgPool;

use super::{
    IngestReceived, IngestStatus, Source,
    body::{CheckError, Received},
    dto::{IngestAccepted, IngestCounts, IngestDto},
    metrics,
    payload::{Delivery, Effective, PriceBatchCheck, StockAlert, read_price_batch},
    repo::{self, NewIngest},
};
use crate::{
    auth::Principal,
    error::ApiError,
    events::outbox,
    ids::IngestId,
    input::objects::{self, ObjectsOnly},
};

/// What accepting needs of a valid request once it is parsed.
pub struct Checked {
    external_id: String,
    item_count: usize,
    effective: Option<Effective>,
}

pub fn check_price_batch(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let mut check = PriceBatchCheck::default();
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let header = read_price_batch(ObjectsOnly(&mut deserializer), |i, line| {
        check.line(i, &line)
    })?;
    deserializer.end()?;
    let effective = check.finish(&header).map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: header.batch_id,
        item_count: header.lines,
        effective: Some(effective),
    })
}

pub fn price_batch_path(body: &mut dyn Read) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let mut track = serde_path_to_error::Track::new();
    let tracked =
        serde_path_to_error::Deserializer::new(ObjectsOnly(&mut deserializer), &mut track);
    read_price_batch(tracked, |_, _| ()).err()?;
    Some(track.path().to_string()).filter(|path| path != ".")
}

pub fn single_path<T: DeserializeOwned>(body: &mut dyn Read) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    let error = serde_path_to_error::deserialize::<_, T>(ObjectsOnly(&mut deserializer)).err()?;
    Some(error.path().to_string()).filter(|path| path != ".")
}

pub fn check_delivery(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let delivery: Delivery = objects::from_reader(body)?;
    delivery.validate().map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: delivery.delivery_id,
        item_count: 1,
        effective: None,
    })
}

pub fn check_stock_alert(body: &mut dyn Read) -> Result<Checked, CheckError> {
    let alert: StockAlert = objects::from_reader(body)?;
    alert.validate().map_err(CheckError::Invalid)?;
    Ok(Checked {
        external_id: alert.alert_id,
        item_count: 1,
        effective: None,
    })
}

/// Stores the request once per sender and sender's id, and enqueues its processing; a
/// re-post of the same request answers the same ingest.
pub async fn accept(
    db: &PgPool,
    principal: &Principal,
    source: Source,
    received: Received<Checked>,
) -> Result<IngestAccepted, ApiError> {
    let Received {
        checked:
            Checked {
                external_id,
                item_count,
                effective,
            },
        stored,
        encoding,
        sha256,
    } = received;
    let external_id = external_id.as_str();
    let new = NewIngest {
        id: IngestId::generate(),
        source,
        external_id,
        body_sha256: &sha256,
        received_by: &principal.subject,
        raw: &stored,
        raw_encoding: encoding,
        item_count: i32::try_from(item_count).unwrap_or(i32::MAX),
        effective_at: match effective {
            Some(Effective::At(at)) => Some(at),
            _ => None,
        },
        effective_local: match effective {
            Some(Effective::Local(local)) => Some(local),
            _ => None,
        },
    };
    let mut tx = crate::db::begin(db).await?;
    let (id, status) = if repo::insert(&mut tx, &new).await? {
        outbox::enqueue(
            &mut tx,
            &IngestReceived {
                ingest_id: new.id,
                source,
                external_id: external_id.to_owned(),
            },
        )
        .await?;
        tx.commit().await?;
        metrics::count(source, "accepted", item_count);
        (new.id, IngestStatus::Received)
    } else {
        tx.rollback().await?;
        let Some((id, status)) =
            repo::find_revision(db, &principal.subject, source, external_id, &sha256).await?
        else {
            return Err(ApiError::Conflict(format!(
                "{external_id} was already received with a different body"
            )));
        };
        metrics::count(source, "duplicate", item_count);
        (
            id,
            IngestStatus::parse(&status).unwrap_or(IngestStatus::Received),
        )
    };
    Ok(IngestAccepted {
        id,
        status,
        status_url: format!("/api/v1/integrations/ingests/{id}"),
    })
}

/// An ingest of the caller's; another sender's does not exist for them.
pub async fn get(db: &PgPool, principal: &Principal, id: IngestId) -> Result<IngestDto, ApiError> {
    let row = repo::find(db, id, &principal.subject)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("ingest {id} does not exist")))?;
    Ok(IngestDto {
        id: row.id,
        source: Source::parse(&row.source)?,
        external_id: row.external_id,
        status: IngestStatus::parse(&row.status)?,
        items: row.item_count,
        chunks_total: row.chunks_total,
        chunks_done: row.chunks_total - row.chunks_remaining,
        counts: IngestCounts {
            tasks_created: row.tasks_created,
            tasks_updated: row.tasks_updated,
            tasks_superseded: row.tasks_superseded,
            tasks_cancelled: row.tasks_cancelled,
            items_created: row.items_created,
            items_superseded: row.items_superseded,
        },
        errors: row.errors.0,
        error_count: row.error_count,
        received_at: row.received_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
    })
}
