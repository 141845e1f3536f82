//! The admin server every long-running role serves on ADMIN_ADDR: `/metrics`, `/livez`,
//! `/readyz` (PRODUCT §6). Separate from the public port so it can stay inside the cluster.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::Mutex};

use crate::{metrics, shutdown::Shutdown};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named readiness check.
#[derive(Clone)]
pub struct Check {
    pub name: &'static str,
    /// Its failure degrades the process (`/readyz` says so, still 200) rather than
    /// taking it out of service: it can still serve, with less.
    advisory: bool,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl Check {
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            advisory: false,
            run: Arc::new(move || Box::pin(run())),
        }
    }

    /// A check whose failure only degrades readiness.
    pub fn advisory<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            advisory: true,
            ..Self::new(name, run)
        }
    }

    /// The database answers.
    pub fn database(db: PgPool) -> Self {
        Self::new("database", move || {
            let db = db.clone();
            async move { crate::db::ping(&db).await }
        })
    }

    /// The schema is at the migration this build expects.
    pub fn schema(db: PgPool) -> Self {
        Self::new("schema", move || {
            let db = db.clone();
            async move { crate::db::check_schema(&db).await }
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip)]
    pub advisory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    pub status: &'static str,
    pub checks: Vec<CheckResult>,
}

/// Runs the checks, at most once per [`CACHE_TTL`], each bounded by [`CHECK_TIMEOUT`],
/// so a probe storm or a hung dependency never makes a probe hang.
pub struct Readiness {
    checks: Vec<Check>,
    shutdown: Shutdown,
    cache: Mutex<Option<(Instant, ReadinessReport)>>,
}

const CACHE_TTL: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    pub fn new(mut checks: Vec<Check>, shutdown: Shutdown) -> Self {
        // Roles sharing a process may contribute the same check (`all`): run it once.
        let mut seen = std::collections::HashSet::new();
        checks.retain(|check| seen.insert(check.name));
        Self {
            checks,
            shutdown,
            cache: Mutex::new(None),
        }
    }

    pub async fn report(&self) -> ReadinessReport {
        if self.shutdown.signalled.is_cancelled() {
            return ReadinessReport {
                status: "unavailable",
                checks: vec![CheckResult {
                    name: "shutdown",
                    ok: false,
                    advisory: false,
                    error: Some("shutting down".to_owned()),
                }],
            };
        }
        let mut cache = self.cache.lock().await;
        if let Some((at, report)) = cache.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return report.clone();
        }
        let results = futures_util::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (check.run)()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            };
            CheckResult {
                name: check.name,
                ok: outcome.is_ok(),
                advisory: check.advisory,
                error: outcome.err(),
            }
        }))
        .await;
        let status = if results.iter().all(|r| r.ok) {
            "ok"
        } else if results.iter().all(|r| r.ok || r.advisory) {
            "degraded"
        } else {
            "unavailable"
        };
        let report = ReadinessReport {
            status,
            checks: results,
        };
        *cache = Some((Instant::now(), report.clone()));
        report
    }
}

/// One pool's connection counts.
pub struct PoolSample {
    pub name: String,
    pub idle: i64,
    pub in_use: i64,
    pub max: i64,
}

type Sampler = Arc<dyn Fn() -> Vec<PoolSample> + Send + Sync>;

/// Pools whose connection counts `/metrics` reports: the primary's sqlx pool and any
/// other pool a role adds (the reporting pools).
#[derive(Clone, Default)]
pub struct PoolGauges(Vec<Sampler>);

impl PoolGauges {
    pub fn add(&mut self, name: &'static str, pool: PgPool) {
        self.0.push(Arc::new(move || {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
            vec![PoolSample {
                name: name.to_owned(),
                idle,
                in_use: size - idle,
                max: i64::from(pool.options().get_max_connections()),
            }]
        }));
    }

    pub fn extend(&mut self, other: &PoolGauges) {
        self.0.extend(other.0.iter().cloned());
    }

    pub fn add_sampler(&mut self, sampler: impl Fn() -> Vec<PoolSample> + Send + Sync + 'static) {
        self.0.push(Arc::new(sampler));
    }

    fn refresh(&self) {
        let gauge = &metrics::DB_POOL_CONNECTIONS;
        for sample in self.0.iter().flat_map(|sampler| sampler()) {
            gauge
                .with_label_values(&[&sample.name, "idle"])
                .set(sample.idle);
            gauge
                .with_label_values(&[&sample.name, "in_use"])
                .set(sample.in_use);
            gauge
                .with_label_values(&[&sample.name, "max"])
                .set(sample.max);
        }
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    pools: PoolGauges,
}

pub fn router(readiness: Arc<Readiness>, pools: PoolGauges) -> Router {
    Router::new()
        .route("/livez", get(|| async { (StatusCode::OK, "ok") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, pools })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.status != "unavailable" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    state.pools.refresh();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

/// Serves the admin router until `stop` resolves; it outlives the public server so
/// probes see 503 during the drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, ok: bool, advisory: bool) -> Check {
        let run = move || async move {
            if ok {
                Ok(())
            } else {
                Err(format!("{name} failed"))
            }
        };
        if advisory {
            Check::advisory(name, run)
        } else {
            Check::new(name, run)
        }
    }

    #[tokio::test]
    async fn an_advisory_check_degrades_and_a_hard_one_takes_the_process_out() {
        let shutdown = || Shutdown::new(Duration::ZERO, Duration::from_secs(1));
        let status =
            |checks| async move { Readiness::new(checks, shutdown()).report().await.status };
        assert_eq!(
            status(vec![check("a", true, false), check("b", true, true)]).await,
            "ok"
        );
        assert_eq!(
            status(vec![check("a", true, false), check("b", false, true)]).await,
            "degraded"
        );
        assert_eq!(
            status(vec![check("a", false, false), check("b", false, true)]).await,
            "unavailable"
        );
    }
}
