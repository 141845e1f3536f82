//! Deliveries and stock alerts: one item, one task, applied in the consumer's
//! transaction. Revisions apply in the order they were received (ingest ids are time
//! ordered): an older revision processed late changes nothing.

use serde::de::DeserializeOwned;
use sqlx::{Postgres, Transaction};

use super::{
    ItemError, Source, handler, metrics,
    payload::{Delivery, DeliveryStatus, StockAlert},
    repo::{self, Counts, ReceivedIngest},
};
use crate::{
    events::consumer::HandlerError,
    ids::StoreId,
    tasks::{
        Priority,
        write::{self, ReceivingTask, RestockTask, Upserted},
    },
};

const DESCRIPTION_LIMIT: usize = 4_000;

/// The stored request and the store it names; `None` when the ingest was finished as
/// failed instead (unreadable body, unknown store: reported in its status).
async fn read<T: DeserializeOwned>(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
    source: Source,
    store_code: fn(&T) -> &str,
) -> Result<Option<(T, StoreId)>, HandlerError> {
    let request: T = match serde_json::from_reader(ingest.body()) {
        Ok(request) => request,
        Err(e) => {
            handler::fail_unreadable(tx, ingest, source, &e).await?;
            return Ok(None);
        }
    };
    let code = store_code(&request);
    let Some(store) = repo::store_by_code(tx, code).await? else {
        let error = ItemError {
            item: None,
            field: "store_code".to_owned(),
            message: format!("unknown store {code}"),
        };
        handler::fail(tx, ingest.id, source, error).await?;
        return Ok(None);
    };
    Ok(Some((request, store)))
}

/// Finishes the ingest with the counts of the task it created or updated.
async fn finish(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
    source: Source,
    written: Option<Upserted>,
    unchanged: &str,
) -> Result<(), HandlerError> {
    let mut counts = Counts::default();
    let mut errors = Vec::new();
    match written {
        Some(task) if task.inserted => counts.tasks_created = 1,
        Some(_) => counts.tasks_updated = 1,
        None => errors.push(ItemError {
            item: None,
            field: "body".to_owned(),
            message: unchanged.to_owned(),
        }),
    }
    record(tx, ingest, source, &counts, &errors).await
}

/// Finishes a one-item ingest: `applied` when it changed a task, `rejected` when it
/// was reported as an item error instead (a stale revision, nothing to cancel).
async fn record(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
    source: Source,
    counts: &Counts,
    errors: &[ItemError],
) -> Result<(), HandlerError> {
    repo::record_progress(tx, ingest.id, counts, errors, false, false).await?;
    let outcome = if errors.is_empty() {
        "applied"
    } else {
        "rejected"
    };
    metrics::count(source, outcome, 1);
    Ok(())
}

/// Text of a receiving task: its lines, cut to the description's limit.
fn delivery_text(delivery: &Delivery) -> (String, String) {
    let title: String = format!(
        "Receive delivery {} from {}",
        delivery.delivery_id, delivery.supplier
    )
    .chars()
    .take(200)
    .collect();
    let mut description = format!("{} lines:", delivery.lines.len());
    for (i, line) in delivery.lines.iter().enumerate() {
        let next = format!(" {} × {};", line.sku, line.qty);
        if description.len() + next.len() > DESCRIPTION_LIMIT - 40 {
            description.push_str(&format!(" … and {} more", delivery.lines.len() - i));
            break;
        }
        description.push_str(&next);
    }
    (title, description)
}

pub async fn delivery(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
) -> Result<(), HandlerError> {
    let source = Source::Delivery;
    let Some((delivery, store_id)) =
        read::<Delivery>(tx, ingest, source, |d| &d.store_code).await?
    else {
        return Ok(());
    };
    if delivery.status == Some(DeliveryStatus::Cancelled) {
        return cancel_delivery(tx, ingest, &delivery.delivery_id).await;
    }
    let (title, description) = delivery_text(&delivery);
    let written = write::upsert_receiving(
        tx,
        &ReceivingTask {
            ingest: ingest.id,
            store_id,
            delivery_id: &delivery.delivery_id,
            title: &title,
            description: &description,
            expected_at: delivery.expected_at,
            created_by: &ingest.received_by,
        },
    )
    .await?;
    finish(
        tx,
        ingest,
        source,
        written,
        "the delivery's receiving task is closed or a newer revision was applied; nothing changed",
    )
    .await
}

async fn cancel_delivery(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
    delivery_id: &str,
) -> Result<(), HandlerError> {
    let mut counts = Counts::default();
    let mut errors = Vec::new();
    match write::open_receiving_task(tx, ingest.id, &ingest.received_by, delivery_id).await? {
        Some(task) => {
            write::cancel_by_system(
                tx,
                task,
                Some(ingest.id),
                &ingest.received_by,
                serde_json::json!({"reason": "delivery cancelled", "ingest_id": ingest.id}),
            )
            .await?;
            counts.tasks_cancelled = 1;
        }
        None => errors.push(ItemError {
            item: None,
            field: "delivery_id".to_owned(),
            message: format!(
                "no open receiving task for delivery {delivery_id}; nothing to cancel"
            ),
        }),
    }
    record(tx, ingest, Source::Delivery, &counts, &errors).await
}

pub async fn stock_alert(
    tx: &mut Transaction<'static, Postgres>,
    ingest: &ReceivedIngest,
) -> Result<(), HandlerError> {
    let source = Source::StockAlert;
    let Some((alert, store_id)) = read::<StockAlert>(tx, ingest, source, |a| &a.store_code).await?
    else {
        return Ok(());
    };
    let written = write::upsert_restock(
        tx,
        &RestockTask {
            ingest: ingest.id,
            store_id,
            sku: &alert.sku,
            title: &format!("Restock {}", alert.sku),
            description: &format!("On hand: {} (alert {}).", alert.on_hand, alert.alert_id),
            priority: if alert.on_hand <= 0 {
                Priority::High
            } else {
                Priority::Normal
            },
            created_by: &ingest.received_by,
        },
    )
    .await?;
    finish(
        tx,
        ingest,
        source,
        written,
        "a newer alert already updated the open restock task; nothing changed",
    )
    .await
}
