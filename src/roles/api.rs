//! The api role: the public HTTP server.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use super::RoleParts;
use crate::{
    admin::{Check, PoolGauges, PoolSample},
    auth::JwtVerifier,
    config::Config,
    http::{self, AppState, HttpLimits},
    reporting::ReadSources,
    shutdown::Shutdown,
};

/// The public API as one unit: its router and the reporting pools whose lag it watches.
pub struct ApiApp {
    pub router: Router,
    pub reports: Arc<ReadSources>,
}

/// Builds the api's router and state from configuration: the one composition root that
/// production (`start`) and the test harness both call.
pub fn build(config: &Config, db: PgPool) -> anyhow::Result<ApiApp> {
    let verifier = Arc::new(JwtVerifier::new(config.jwt()?).context("loading the JWT key")?);
    let reports = ReadSources::new(config)?;
    let router = http::router(
        AppState {
            db: db.clone(),
            verifier,
            webhooks: config.webhooks.clone(),
            stores: crate::stores::StoreDirectory::new(db),
            reports: reports.clone(),
        },
        HttpLimits {
            body_limit_bytes: config.body_limit_bytes,
            ingest_body_limit_bytes: config.ingest_body_limit_bytes,
            request_timeout: config.request_timeout,
        },
    );
    Ok(ApiApp { router, reports })
}

pub async fn start(config: &Config, db: PgPool, shutdown: &Shutdown) -> anyhow::Result<RoleParts> {
    let ApiApp { router, reports } = build(config, db.clone())?;
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
        checks: vec![Check::database(db.clone()), Check::schema(db)],
        task: Box::pin(task),
    })
}
