//! SQL for webhooks and their deliveries.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ids::WebhookId;

#[derive(Debug, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: WebhookId,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub event_types: &'a [String],
    pub secret: &'a str,
    pub description: Option<&'a str>,
    pub created_by: &'a str,
}

pub async fn insert(db: &PgPool, webhook: &NewWebhook<'_>) -> Result<WebhookRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO webhooks (id, url, event_types, secret, description, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, url, event_types, description, created_at",
    )
    .bind(WebhookId::generate())
    .bind(webhook.url)
    .bind(webhook.event_types)
    .bind(webhook.secret)
    .bind(webhook.description)
    .bind(webhook.created_by)
    .fetch_one(db)
    .await
}

pub async fn list(
    db: &PgPool,
    after: Option<WebhookId>,
    limit: i64,
) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, url, event_types, description, created_at FROM webhooks
          WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1)
          ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Soft delete: deliveries already queued see it gone and stop.
pub async fn delete(db: &PgPool, id: WebhookId) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("UPDATE webhooks SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(db)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Live webhooks subscribed to `event_type`.
pub async fn subscribers(
    conn: &mut PgConnection,
    event_type: &str,
) -> Result<Vec<WebhookId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM webhooks WHERE deleted_at IS NULL AND event_types @> ARRAY[$1]::text[] ORDER BY id",
    )
    .bind(event_type)
    .fetch_all(conn)
    .await
}

/// One delivery row per (event, webhook); returns the ids of rows created now.
pub async fn create_deliveries(
    conn: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    webhooks: &[WebhookId],
) -> Result<Vec<(Uuid, WebhookId)>, sqlx::Error> {
    let ids: Vec<Uuid> = webhooks.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query_as(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type)
         SELECT d.id, d.webhook_id, $3, $4 FROM unnest($1::uuid[], $2::uuid[]) AS d(id, webhook_id)
         ON CONFLICT (event_id, webhook_id) DO NOTHING
         RETURNING id, webhook_id",
    )
    .bind(ids)
    .bind(webhooks)
    .bind(event_id)
    .bind(event_type)
    .fetch_all(conn)
    .await
}

/// The target of a delivery; `None` once the webhook is deleted.
pub async fn target(
    conn: &mut PgConnection,
    webhook: WebhookId,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT url, secret FROM webhooks WHERE id = $1 AND deleted_at IS NULL")
        .bind(webhook)
        .fetch_optional(conn)
        .await
}

pub async fn record_attempt(
    conn: &mut PgConnection,
    delivery: Uuid,
    status: &str,
    status_code: Option<i32>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries
            SET attempts = attempts + 1, status = $2, last_status_code = $3, last_error = $4,
                delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END
          WHERE id = $1",
    )
    .bind(delivery)
    .bind(status)
    .bind(status_code)
    .bind(error)
    .execute(conn)
    .await
    .map(drop)
}

/// Delivery records past their retention.
pub const DELIVERY_PRUNING: crate::db::PruneRule = crate::db::PruneRule {
    table: "webhook_deliveries",
    count: "SELECT count(*) FROM webhook_deliveries WHERE created_at < $1",
    delete: "WITH gone AS (
                 DELETE FROM webhook_deliveries WHERE id IN (
                     SELECT id FROM webhook_deliveries WHERE created_at < $1 LIMIT $2)
                 RETURNING 1)
                 SELECT count(*) FROM gone",
};
