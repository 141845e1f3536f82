//! The Prometheus registry (the process's one global) and the metrics every role shares.
//! Metric names are a contract with dashboards and alerts (SPEC §10); modules declare
//! their own business metrics next to the code that moves them.
//!
//! Registration happens in [`init`], at start-up, so a name clash fails there and not
//! on the first request.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};

/// Registers a metric in the default registry; panics only on a duplicate name, which
/// [`init`] surfaces at start-up.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    prometheus::default_registry()
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "storeops_build_info",
                "Build and role of this process (always 1)",
            ),
            &["version", "role"],
        )
        .expect("valid metric"),
    )
});

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "storeops_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric"),
    )
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "storeops_http_request_duration_seconds",
                "HTTP request latency by route template and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric"),
    )
});

pub static HTTP_IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "storeops_http_requests_in_flight",
            "HTTP requests being served now",
        )
        .expect("valid metric"),
    )
});

pub static CLIENT_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "storeops_client_requests_total",
                "Requests by client app and major.minor version (from User-Agent)",
            ),
            &["app", "version", "status_class"],
        )
        .expect("valid metric"),
    )
});

pub static DB_POOL_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "storeops_db_pool_connections",
                "Database pool connections by state (idle, in_use, max)",
            ),
            &["pool", "state"],
        )
        .expect("valid metric"),
    )
});

pub static DB_POOL_ACQUIRE: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "storeops_db_pool_acquire_seconds",
                "Time spent waiting for a pooled database connection",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["pool"],
        )
        .expect("valid metric"),
    )
});

/// Registers the shared metrics and sets `storeops_build_info`.
pub fn init(role: &str) {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION"), role])
        .set(1);
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    LazyLock::force(&HTTP_IN_FLIGHT);
    LazyLock::force(&CLIENT_REQUESTS);
    LazyLock::force(&DB_POOL_CONNECTIONS);
    LazyLock::force(&DB_POOL_ACQUIRE);
    LazyLock::force(&crate::reporting::sources::metrics::REPLICA_LAG);
}

/// The text exposition of everything registered.
pub fn render() -> String {
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// `storeops-android/3.12.7 (...)` → (`storeops-android`, `3.12`); anything else folds
/// into `other` so labels stay bounded.
pub fn client_labels(user_agent: Option<&str>) -> (&'static str, String) {
    const APPS: [&str; 3] = ["storeops-android", "storeops-ios", "storeops-web"];
    let Some(ua) = user_agent else {
        return ("other", "other".to_owned());
    };
    let product = ua.split_whitespace().next().unwrap_or_default();
    let (name, version) = product.split_once('/').unwrap_or((product, ""));
    let Some(app) = APPS.iter().find(|a| a.eq_ignore_ascii_case(name)) else {
        return ("other", "other".to_owned());
    };
    let mut parts = version.split('.');
    let small = |p: Option<&str>| {
        p.filter(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
    };
    match (small(parts.next()), small(parts.next())) {
        (Some(major), Some(minor)) => (app, format!("{major}.{minor}")),
        _ => (app, "other".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_labels_are_bounded() {
        assert_eq!(
            client_labels(Some("storeops-ios/4.2.19 (iPhone)")),
            ("storeops-ios", "4.2".into())
        );
        assert_eq!(client_labels(Some("curl/8.0")), ("other", "other".into()));
        assert_eq!(
            client_labels(Some("storeops-web/abc")),
            ("storeops-web", "other".into())
        );
        assert_eq!(
            client_labels(Some("storeops-web/12345.1")),
            ("storeops-web", "other".into())
        );
        assert_eq!(client_labels(None), ("other", "other".into()));
    }
}
