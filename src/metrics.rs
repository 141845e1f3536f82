//! The Prometheus registry (the process's one global) and the metrics every role shares.
//! Metric names are a contract with dashboards and alerts (PRODUCT §10); modules declare
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
}

/// The text exposition of everything registered.
pub fn render() -> String {
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// The mobile and web apps whose requests are counted by app and version.
const APPS: [&str; 3] = ["storeops-android", "storeops-ios", "storeops-web"];

/// `storeops-android/3.12.7 (...)` → (`storeops-android`, `3.12`); anything else folds
/// into `other`. The version is still the client's choice: [`client_labels`] bounds it.
fn parse_user_agent(user_agent: Option<&str>) -> Option<(&'static str, Option<String>)> {
    let product = user_agent?.split_whitespace().next().unwrap_or_default();
    let (name, version) = product.split_once('/').unwrap_or((product, ""));
    let app = APPS.iter().find(|a| a.eq_ignore_ascii_case(name))?;
    let mut parts = version.split('.');
    fn small(part: Option<&str>) -> Option<&str> {
        part.filter(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
    }
    let version = match (small(parts.next()), small(parts.next())) {
        (Some(major), Some(minor)) => Some(format!("{major}.{minor}")),
        _ => None,
    };
    Some((app, version))
}

/// Which app versions get a label of their own: a version must be seen
/// `ADMIT_AFTER` times before it is admitted, and each app admits at most
/// `VERSIONS_PER_APP` (the first to become common; in practice the releases in the
/// field). Everything else is `other`, so no client can mint series by inventing
/// version numbers.
pub struct ClientVersions {
    admitted: std::sync::RwLock<Vec<(&'static str, String)>>,
    candidates: std::sync::Mutex<std::collections::BTreeMap<(&'static str, String), u32>>,
}

const ADMIT_AFTER: u32 = 50;
const VERSIONS_PER_APP: usize = 12;
/// Distinct unadmitted versions remembered at once; past this the counts start over.
const MAX_CANDIDATES: usize = 1_000;

impl ClientVersions {
    const fn new() -> Self {
        Self {
            admitted: std::sync::RwLock::new(Vec::new()),
            candidates: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The version label for `version` of `app`: itself once admitted, else `other`.
    fn label(&self, app: &'static str, version: String) -> String {
        let admitted =
            |list: &[(&'static str, String)]| list.iter().any(|(a, v)| *a == app && *v == version);
        if self.admitted.read().is_ok_and(|list| admitted(&list)) {
            return version;
        }
        let seen = match self.candidates.lock() {
            Ok(mut candidates) => {
                if candidates.len() >= MAX_CANDIDATES {
                    candidates.clear();
                }
                let seen = candidates.entry((app, version.clone())).or_insert(0);
                *seen += 1;
                *seen
            }
            Err(_) => 0,
        };
        if seen < ADMIT_AFTER {
            return "other".to_owned();
        }
        let Ok(mut list) = self.admitted.write() else {
            return "other".to_owned();
        };
        if admitted(&list) {
            return version;
        }
        if list.iter().filter(|(a, _)| *a == app).count() >= VERSIONS_PER_APP {
            return "other".to_owned();
        }
        list.push((app, version.clone()));
        if let Ok(mut candidates) = self.candidates.lock() {
            candidates.remove(&(app, version.clone()));
        }
        version
    }
}

static CLIENT_VERSIONS: ClientVersions = ClientVersions::new();

/// The `app` and `version` labels of a request's User-Agent, bounded (see
/// [`ClientVersions`]).
pub fn client_labels(user_agent: Option<&str>) -> (&'static str, String) {
    client_labels_with(&CLIENT_VERSIONS, user_agent)
}

fn client_labels_with(
    versions: &ClientVersions,
    user_agent: Option<&str>,
) -> (&'static str, String) {
    match parse_user_agent(user_agent) {
        Some((app, Some(version))) => (app, versions.label(app, version)),
        Some((app, None)) => (app, "other".to_owned()),
        None => ("other", "other".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_labels_parse_app_and_major_minor() {
        let versions = ClientVersions::new();
        let label = |ua| client_labels_with(&versions, Some(ua));
        for _ in 1..ADMIT_AFTER {
            assert_eq!(
                label("storeops-ios/4.2.19 (iPhone)"),
                ("storeops-ios", "other".into())
            );
        }
        assert_eq!(
            label("storeops-ios/4.2.19 (iPhone)"),
            ("storeops-ios", "4.2".into()),
            "a version seen often enough gets its own label"
        );
        assert_eq!(label("storeops-ios/4.2.1"), ("storeops-ios", "4.2".into()));
        assert_eq!(label("curl/8.0"), ("other", "other".into()));
        assert_eq!(label("storeops-web/abc"), ("storeops-web", "other".into()));
        assert_eq!(
            label("storeops-web/12345.1"),
            ("storeops-web", "other".into())
        );
        assert_eq!(
            client_labels_with(&versions, None),
            ("other", "other".into())
        );
    }

    #[test]
    fn clients_cannot_mint_version_series() {
        let versions = ClientVersions::new();
        let mut labels = std::collections::BTreeSet::new();
        // Every version sent a few times: none becomes common, all stay `other`.
        for major in 0..1000 {
            for _ in 0..3 {
                let ua = format!("storeops-android/{major}.1");
                labels.insert(client_labels_with(&versions, Some(&ua)).1);
            }
        }
        assert_eq!(labels, ["other".to_owned()].into());
        // Even versions each sent often: at most VERSIONS_PER_APP labels per app.
        for major in 0..100 {
            for _ in 0..ADMIT_AFTER {
                let ua = format!("storeops-web/{major}.0");
                labels.insert(client_labels_with(&versions, Some(&ua)).1);
            }
        }
        assert_eq!(labels.len(), VERSIONS_PER_APP + 1, "{labels:?}");
    }
}
