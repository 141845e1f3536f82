//! `GET|POST /webhooks`, `DELETE /webhooks/{webhook_id}` (HQ only).

use axum::{
    extract::{FromRef, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{PUBLIC_EVENT_TYPES, repo, target};
use crate::{
    auth::HqPrincipal,
    config::WebhookConfig,
    error::{ApiError, FieldError, Problem},
    http::{
        extract::{Json, Path, Query},
        pagination::{Page, PageRequest},
    },
    ids::WebhookId,
};

/// This module's routes, on any state that provides what its handlers take.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
    crate::config::WebhookConfig: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// http(s) URL in ASCII (punycode for international domain names), without
    /// credentials or fragment; private, loopback and link-local targets are refused.
    /// Kept as sent.
    #[schema(schema_with = crate::input::url::webhook_schema)]
    pub url: String,
    /// Event types to receive, e.g. `task.completed`: the public events.
    #[schema(schema_with = event_types_schema)]
    pub event_types: Vec<String>,
    /// Signing secret; generated when omitted.
    #[schema(min_length = 16, max_length = 256, pattern = "^[^\\x00]*$")]
    pub secret: Option<String>,
    #[schema(max_length = 500, pattern = "^[^\\x00]*$")]
    pub description: Option<String>,
}

/// At least one of the public event types.
fn event_types_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(PUBLIC_EVENT_TYPES.iter().copied())),
        )
        .min_items(Some(1))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    pub id: WebhookId,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookDto {
    #[serde(flatten)]
    pub webhook: WebhookDto,
    /// Shown once: verify `X-Storeops-Signature` with it (see docs/WEBHOOKS.md).
    pub secret: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookListQuery {
    pub cursor: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl From<repo::WebhookRow> for WebhookDto {
    fn from(row: repo::WebhookRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            event_types: row.event_types,
            description: row.description,
            created_at: row.created_at,
        }
    }
}

/// Live webhooks.
#[utoipa::path(
    get, path = "/webhooks", tag = "webhooks",
    params(WebhookListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<WebhookDto>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_webhooks(
    _hq: HqPrincipal,
    State(db): State<PgPool>,
    Query(query): Query<WebhookListQuery>,
) -> Result<Json<Page<WebhookDto>>, ApiError> {
    let page = PageRequest::<WebhookId>::parse(query.cursor.as_deref(), query.limit)?;
    let rows = repo::list(&db, page.after, page.fetch_limit()).await?;
    Ok(Json(page.page(rows, |row| row.id).map(WebhookDto::from)))
}

/// Subscribe a URL to event types.
#[utoipa::path(
    post, path = "/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedWebhookDto),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_webhook(
    HqPrincipal(principal): HqPrincipal,
    State(db): State<PgPool>,
    State(config): State<WebhookConfig>,
    Json(body): Json<NewWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhookDto>), ApiError> {
    let mut errors = Vec::new();
    let url = match target::parse(&body.url) {
        Ok(url) => Some(url),
        Err(e) => {
            errors.push(FieldError::new("url", e));
            None
        }
    };
    if let Some(url) = &url
        && let Err(e) = target::check(
            url,
            config.allow_private_networks,
            target::Unresolvable::Accept,
        )
        .await
    {
        errors.push(FieldError::new("url", e));
    }
    let mut event_types = Vec::new();
    if body.event_types.is_empty() {
        errors.push(FieldError::new(
            "event_types",
            "must name at least one event type",
        ));
    }
    for (i, event_type) in body.event_types.iter().enumerate() {
        if !PUBLIC_EVENT_TYPES.contains(&event_type.as_str()) {
            errors.push(FieldError::new(
                format!("event_types[{i}]"),
                format!(
                    "unknown event type; one of {}",
                    PUBLIC_EVENT_TYPES.join(", ")
                ),
            ));
        } else if !event_types.contains(event_type) {
            event_types.push(event_type.clone());
        }
    }
    let secret = match body.secret {
        Some(secret) if !(16..=256).contains(&secret.chars().count()) => {
            errors.push(FieldError::new("secret", "must be 16-256 characters"));
            String::new()
        }
        Some(secret) => secret,
        None => generate_secret(),
    };
    let description = crate::input::optional_text("description", body.description, 500)
        .unwrap_or_else(|error| {
            errors.push(error);
            None
        });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let row = repo::insert(
        &db,
        &repo::NewWebhook {
            url: &body.url,
            event_types: &event_types,
            secret: &secret,
            description: description.as_deref(),
            created_by: &principal.subject,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhookDto {
            webhook: row.into(),
            secret,
        }),
    ))
}

/// 256 bits from the OS CSPRNG (via UUID v4's generator), hex-encoded.
fn generate_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Stop sending to a webhook.
#[utoipa::path(
    delete, path = "/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = WebhookId, Path, description = "The webhook's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_webhook(
    _hq: HqPrincipal,
    State(db): State<PgPool>,
    Path(id): Path<WebhookId>,
) -> Result<StatusCode, ApiError> {
    if repo::delete(&db, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("webhook {id} does not exist")))
    }
}
