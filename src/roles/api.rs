//! The api role: the public API assembled from the modules' routers, and its server.

use std::sync::Arc;

use anyhow::Context;
use axum::{Router, extract::FromRef};
use sqlx::PgPool;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::RoleParts;
use crate::{
    admin::{Check, PoolGauges, PoolSample},
    announcements,
    auth::{self, JwtVerifier},
    campaigns,
    config::{Config, WebhookConfig},
    evidence::Evidence,
    http::{self, HttpLimits},
    ingest,
    reporting::{self, ReadSources},
    shutdown::Shutdown,
    stores::{self, StaffBySubject, StoreDirectory},
    tasks, templates, webhooks,
};

/// What handlers can reach; each handler takes only the parts it needs (`FromRef`), and
/// each module's router says which parts those are.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: PgPool,
    pub verifier: Arc<JwtVerifier>,
    pub webhooks: WebhookConfig,
    pub stores: StoreDirectory,
    /// Reporting reads: replicas when fresh enough, else the primary.
    pub reports: Arc<ReadSources>,
    pub evidence: Evidence,
}

#[derive(OpenApi)]
#[openapi(
    // Named only from a hand-written schema (the answers map), so listed here.
    components(schemas(crate::templates::PhotoAnswer)),
    info(
        title = "storeops",
        description = "Daily operations of a retail chain: store tasks, their sources, and compliance.",
    ),
    tags(
        (name = "stores", description = "Regions, stores and staff"),
        (name = "templates", description = "Versioned task templates and checklists"),
        (name = "tasks", description = "Store tasks: list, lifecycle, review, history"),
        (name = "campaigns", description = "One task to many stores"),
        (name = "announcements", description = "Notices to many stores, with read and acknowledgement receipts"),
        (name = "webhooks", description = "Outbound event notifications (HQ)"),
        (name = "reports", description = "Compliance, overdue work and CSV export, read from replicas"),
        (name = "integrations", description = "Price changes, deliveries and stock alerts from HQ systems (integration tokens)"),
    ),
)]
struct ApiDoc;

/// Every `/api/v1` route, with its OpenAPI description: staff routes (integration
/// tokens are refused before anything else runs) and the integration routes.
fn api_routes(ingest_body_limit_bytes: usize) -> OpenApiRouter<AppState> {
    let staff = stores::router()
        .merge(templates::router())
        .merge(tasks::router())
        .merge(campaigns::router())
        .merge(announcements::router())
        .merge(webhooks::router())
        .merge(reporting::router())
        .layer(axum::middleware::from_fn(auth::require_staff));
    let integrations = ingest::router(ingest_body_limit_bytes);
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", staff.merge(integrations))
}

/// Each module's rules between request fields, added to the document.
const SCHEMA_RULES: &[fn(&mut serde_json::Value)] = &[
    stores::schema_rules,
    tasks::schema_rules,
    campaigns::schema_rules,
    announcements::schema_rules,
    templates::schema_rules,
    ingest::schema_rules,
];

/// The OpenAPI 3.1 document, generated from the same route table that serves requests.
pub fn openapi() -> serde_json::Value {
    // The body limit shapes requests, not the document.
    http::complete_document(api_routes(usize::MAX).into_openapi(), SCHEMA_RULES)
}

/// The document a server with this configuration serves.
pub fn openapi_for(config: &Config) -> serde_json::Value {
    let mut document = openapi();
    configured_limits(&mut document, &config.evidence);
    document
}

/// The limits this server's configuration sets, stated in the document it serves.
fn configured_limits(document: &mut serde_json::Value, evidence: &crate::config::EvidenceConfig) {
    document["components"]["schemas"]["NewEvidence"]["properties"]["size_bytes"]["maximum"] =
        serde_json::json!(evidence.max_bytes);
}

/// The whole public router.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let (api, openapi) = api_routes(limits.ingest_body_limit_bytes)
        .layer(axum::middleware::from_fn_with_state(
            state.verifier.clone(),
            auth::authenticate,
        ))
        .split_for_parts();
    let mut document = http::complete_document(openapi, SCHEMA_RULES);
    configured_limits(&mut document, &state.evidence.config);
    http::with_platform_layers(api.with_state(state), &document, limits)
}

/// The public API as one unit: its router, the reporting pools whose lag it watches, and
/// its token verifier (whose identity provider readiness reports on).
pub struct ApiApp {
    pub router: Router,
    pub reports: Arc<ReadSources>,
    pub verifier: Arc<JwtVerifier>,
}

/// Builds the api's router and state from configuration: the one composition root that
/// production (`start`) and the test harness both call.
pub fn build(config: &Config, db: PgPool) -> anyhow::Result<ApiApp> {
    let verifier = Arc::new(
        JwtVerifier::new(config.jwt()?, Some(Arc::new(StaffBySubject(db.clone()))))
            .context("loading the JWT key")?,
    );
    let reports = ReadSources::new(config)?;
    let router = router(
        AppState {
            db: db.clone(),
            verifier: verifier.clone(),
            webhooks: config.webhooks.clone(),
            stores: StoreDirectory::new(db),
            reports: reports.clone(),
            evidence: Evidence::new(&config.evidence).context("the evidence object store")?,
        },
        HttpLimits {
            body_limit_bytes: config.body_limit_bytes,
            ingest_body_limit_bytes: config.ingest_body_limit_bytes,
            request_timeout: config.request_timeout,
        },
    );
    Ok(ApiApp {
        router,
        reports,
        verifier,
    })
}

/// Readiness of sign-in through an identity provider: no keys at all fails (no token can
/// be verified); keys that could not be refreshed only degrade, since the cached ones
/// still verify.
pub fn identity_checks(verifier: &Arc<JwtVerifier>) -> Vec<Check> {
    if verifier.key_status().is_none() {
        return Vec::new();
    }
    let keys = verifier.clone();
    let refresh = verifier.clone();
    vec![
        Check::new("identity_provider_keys", move || {
            let has_keys = keys.key_status().is_some_and(|s| s.has_keys);
            async move {
                if has_keys {
                    Ok(())
                } else {
                    Err("no signing keys from the identity provider yet".to_owned())
                }
            }
        }),
        Check::advisory("identity_provider", move || {
            let error = refresh.key_status().and_then(|s| s.refresh_error);
            async move { error.map_or(Ok(()), Err) }
        }),
    ]
}

pub async fn start(config: &Config, db: PgPool, shutdown: &Shutdown) -> anyhow::Result<RoleParts> {
    let ApiApp {
        router,
        reports,
        verifier,
    } = build(config, db.clone())?;
    tokio::spawn(reports.clone().monitor(shutdown.signalled.clone()));
    let mut pools = PoolGauges::default();
    {
        let reports = reports.clone();
        pools.add_sampler(move || {
            reports
                .pool_status()
                .into_iter()
                .map(|(name, status)| PoolSample {
                    name,
                    idle: i64::try_from(status.available).unwrap_or(0),
                    in_use: i64::try_from(status.size.saturating_sub(status.available))
                        .unwrap_or(0),
                    max: i64::try_from(status.max_size).unwrap_or(0),
                })
                .collect()
        });
    }
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP_ADDR {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, "api listening");
    let shutdown = shutdown.clone();
    let task = async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.stop_accepting().await;
                tracing::info!("api: no longer accepting; finishing in-flight requests");
            })
            .await
            .context("api server")
    };
    Ok(RoleParts {
        pools,
        checks: [Check::database(db.clone()), Check::schema(db)]
            .into_iter()
            .chain(identity_checks(&verifier))
            .collect(),
        task: Box::pin(task),
    })
}
