//! The long-running roles and the process that hosts them. A role is only wiring:
//! it takes modules' routers, handlers and jobs and runs them under one admin server
//! and one shutdown sequence (PRODUCT §2, §6).

pub mod api;
pub mod scheduler;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;

use crate::{
    admin::{self, Check, PoolGauges, Readiness},
    config::Config,
    metrics,
    shutdown::Shutdown,
};

/// What one role contributes to a process.
pub struct RoleParts {
    pub checks: Vec<Check>,
    /// Runs until the role has finished its shutdown; an error ends the process.
    pub task: BoxFuture<'static, anyhow::Result<()>>,
    /// Pools besides the primary's whose connections `/metrics` reports.
    pub pools: PoolGauges,
}

/// Which roles a process hosts (`storeops all` hosts all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSet {
    pub api: bool,
    pub worker: bool,
    pub scheduler: bool,
}

impl RoleSet {
    pub fn label(self) -> &'static str {
        match (self.api, self.worker, self.scheduler) {
            (true, false, false) => "api",
            (false, true, false) => "worker",
            (false, false, true) => "scheduler",
            _ => "all",
        }
    }
}

/// Runs the roles until SIGTERM/SIGINT, then shuts them down within the grace period.
pub async fn run(
    config: Config,
    roles: RoleSet,
    worker: worker::WorkerOptions,
) -> anyhow::Result<()> {
    let label = roles.label();
    metrics::init(label);
    let shutdown = Shutdown::new(config.shutdown_drain, config.shutdown_grace);
    shutdown
        .listen_for_signals()
        .context("installing signal handlers")?;

    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding ADMIN_ADDR {}", config.admin_addr))?;
    let db = crate::db::connect(&config, label)?;
    crate::events::metrics::init();
    crate::tasks::metrics::init();
    crate::announcements::metrics::init();
    crate::ingest::metrics::init();
    crate::reporting::init_metrics();
    crate::evidence::metrics::init();
    let mut parts = Vec::new();
    if roles.api {
        parts.push(api::start(&config, db.clone(), &shutdown).await?);
    }
    if roles.worker {
        parts.push(worker::start(&config, db.clone(), &worker, &shutdown)?);
    }
    if roles.scheduler {
        parts.push(scheduler::start(&config, db.clone(), &shutdown)?);
    }

    let mut pools = PoolGauges::default();
    pools.add("primary", db.clone());
    for part in &parts {
        pools.extend(&part.pools);
    }
    let readiness = Arc::new(Readiness::new(
        parts.iter().flat_map(|p| p.checks.clone()).collect(),
        shutdown.clone(),
    ));
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin::router(readiness, pools),
        admin_stop.clone().cancelled_owned(),
    ));
    tracing::info!(role = label, admin = %config.admin_addr, "started");

    let roles_done = futures_util::future::try_join_all(parts.into_iter().map(|p| p.task));
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.signalled.cancelled().await;
            tokio::time::sleep(shutdown.drain + shutdown.grace).await;
        }
    };
    let outcome = tokio::select! {
        result = roles_done => result.map(drop),
        () = deadline => Err(anyhow::anyhow!(
            "in-flight work did not finish within SHUTDOWN_GRACE_SECONDS ({}s)",
            config.shutdown_grace.as_secs()
        )),
    };
    // A role that failed on its own takes the others down with it.
    shutdown.signalled.cancel();
    admin_stop.cancel();
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    db.close().await;
    outcome?;
    tracing::info!(role = label, "stopped cleanly");
    Ok(())
}
