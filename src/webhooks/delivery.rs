//! The two webhook handlers: fan-out (event → deliveries) and sender (delivery → POST).

use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{metrics, repo, signature, target};
use crate::{
    events::{
        Event, EventHandler,
        consumer::{Handler, HandlerError, Message},
        outbox,
    },
    ids::WebhookId,
};

/// The message that asks for one POST.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct DeliveryRequest {
    delivery_id: Uuid,
    webhook_id: WebhookId,
    event_id: Uuid,
    event_type: String,
    data: serde_json::Value,
}

impl Event for DeliveryRequest {
    const ROUTING_KEY: &'static str = "webhook.deliver";
}

/// What receivers get.
#[derive(Debug, Serialize)]
struct DeliveryBody<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    delivery_id: Uuid,
    data: &'a serde_json::Value,
}

pub struct FanOut;

impl Handler for FanOut {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let webhooks = repo::subscribers(tx, &message.routing_key).await?;
            if webhooks.is_empty() {
                return Ok(());
            }
            let created =
                repo::create_deliveries(tx, message.id, &message.routing_key, &webhooks).await?;
            let requests: Vec<DeliveryRequest> = created
                .into_iter()
                .map(|(delivery_id, webhook_id)| DeliveryRequest {
                    delivery_id,
                    webhook_id,
                    event_id: message.id,
                    event_type: message.routing_key.clone(),
                    data: message.payload.clone(),
                })
                .collect();
            outbox::enqueue_many(tx, &requests).await?;
            Ok(())
        })
    }
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    /// For recording failed attempts outside the handler's (rolled back) transaction.
    db: PgPool,
}

/// Why a POST did not succeed.
struct PostFailure {
    status_code: Option<i32>,
    error: HandlerError,
    /// The target address is not allowed (private network).
    refused: bool,
}

impl PostFailure {
    fn new(status_code: Option<i32>, error: HandlerError) -> Self {
        Self {
            status_code,
            error,
            refused: false,
        }
    }
}

impl Sender {
    pub fn new(config: &crate::config::WebhookConfig, db: PgPool) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            // A redirect could lead anywhere, including private ranges: do not follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("storeops-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private: config.allow_private_networks,
            db,
        })
    }

    /// POSTs one delivery; the error says whether another try can help.
    async fn post(
        &self,
        request: &DeliveryRequest,
        url: &str,
        secret: &str,
    ) -> Result<i32, PostFailure> {
        // Not the shape check: a target stored under an earlier, looser one still
        // delivers; the address check below is what guards the network.
        let url = reqwest::Url::parse(url).map_err(|e| {
            PostFailure::new(
                None,
                HandlerError::Permanent(format!("target is not a URL: {e}")),
            )
        })?;
        if let Err(reason) =
            target::check(&url, self.allow_private, target::Unresolvable::Refuse).await
        {
            return Err(PostFailure {
                status_code: None,
                error: HandlerError::Permanent(format!("target refused: {reason}")),
                refused: true,
            });
        }
        let body = serde_json::to_vec(&DeliveryBody {
            id: request.event_id,
            event_type: &request.event_type,
            delivery_id: request.delivery_id,
            data: &request.data,
        })
        .map_err(|e| PostFailure::new(None, HandlerError::Permanent(e.to_string())))?;
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-storeops-event", &request.event_type)
            .header("x-storeops-delivery", request.delivery_id.to_string())
            .header(
                signature::SIGNATURE_HEADER,
                signature::sign(secret, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                PostFailure::new(None, HandlerError::Retryable(format!("POST failed: {e}")))
            })?;
        let status = response.status();
        let code = Some(i32::from(status.as_u16()));
        let reason = format!("receiver answered {status}");
        if status.is_success() {
            Ok(i32::from(status.as_u16()))
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(PostFailure::new(code, HandlerError::Retryable(reason)))
        } else {
            Err(PostFailure::new(code, HandlerError::Permanent(reason)))
        }
    }
}

impl EventHandler<DeliveryRequest> for Sender {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        request: DeliveryRequest,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some((url, secret)) = repo::target(tx, request.webhook_id).await? else {
                // Deleted since the event: nothing to send.
                return Ok(());
            };
            match self.post(&request, &url, &secret).await {
                Ok(code) => {
                    metrics::DELIVERIES.with_label_values(&["delivered"]).inc();
                    repo::record_attempt(tx, request.delivery_id, "delivered", Some(code), None)
                        .await?;
                    Ok(())
                }
                Err(failure) => {
                    let permanent = matches!(failure.error, HandlerError::Permanent(_));
                    let label = match (failure.refused, permanent) {
                        (true, _) => "refused",
                        (false, true) => "failed",
                        (false, false) => "retry",
                    };
                    metrics::DELIVERIES.with_label_values(&[label]).inc();
                    let status = if permanent { "failed" } else { "pending" };
                    let mut conn = self.db.acquire().await?;
                    repo::record_attempt(
                        &mut conn,
                        request.delivery_id,
                        status,
                        failure.status_code,
                        Some(&failure.error.to_string()),
                    )
                    .await?;
                    Err(failure.error)
                }
            }
        })
    }
}
