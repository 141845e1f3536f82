//! Logs and traces: `tracing` with JSON or pretty output on stderr, plus OpenTelemetry
//! OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
//!
//! Initialised before the tokio runtime exists: the OTLP exporter uses a blocking HTTP
//! client on the batch processor's own thread, which must not be created or dropped
//! inside an async context. Exporting never blocks start-up or requests.

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Flushes pending spans on drop of the process (call [`Telemetry::shutdown`]).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Call after the runtime has stopped.
    pub fn shutdown(self) {
        // Bounded: an unreachable collector must not hold the exit past the grace period.
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(3))
        {
            eprintln!("storeops: flushing traces failed: {e}");
        }
    }
}

pub fn init(format: LogFormat, role: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // RUST_LOG filters the logs only: traces keep their own level, so quiet logs
    // never silence tracing.
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (provider, otel_error) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => match otlp_provider(role) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("storeops"))
            .with_filter(EnvFilter::new(
                "info,h2=off,hyper=off,reqwest=off,tower=off",
            ))
    });
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .init();
    if let Some(error) = otel_error {
        tracing::warn!(%error, "OpenTelemetry export disabled: exporter could not be built");
    }
    Telemetry { provider }
}

/// Endpoint, headers, protocol and timeouts come from the standard OTEL_* variables.
fn otlp_provider(role: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let resource = Resource::builder()
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("storeops.role", role.to_owned()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
