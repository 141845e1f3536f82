//! Logs and traces: `tracing` with JSON or pretty output on stderr, plus OpenTelemetry
//! OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
//!
//! With traces exported, every span has an OpenTelemetry trace context and every JSON log
//! line inside a span carries `trace_id` and `span_id`: a log line leads to its trace
//! (HTTP request → outbox → publish → consume are one trace).
//!
//! Initialised before the tokio runtime exists: the OTLP exporter uses a blocking HTTP
//! client on the batch processor's own thread, which must not be created or dropped
//! inside an async context. Exporting never blocks start-up or requests.

use std::fmt;

use opentelemetry::{
    KeyValue,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{LevelFilter, Targets},
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
};

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
    // Traces exist when they are exported: a span per request costs a quarter of the
    // store task list's throughput (docs/PERFORMANCE.md), which a deployment without a
    // collector should not pay for ids that lead nowhere.
    let (provider, otel_error) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => match otlp_provider(role) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let (subscriber, trace_ids) = subscriber(format, &log_filter, provider.as_ref());
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("storeops: a tracing subscriber was already installed: {e}");
    }
    trace_ids.attach();
    if let Some(error) = otel_error {
        tracing::warn!(%error, "OpenTelemetry export disabled: exporter could not be built");
    }
    Telemetry { provider }
}

/// Which spans are exported: the same whatever the log filter says, so an on-call
/// engineer turning logs up during an incident never changes the traces. (lapin's
/// `io_loop` lives as long as its connection: a trace of nothing.)
fn trace_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(["h2", "hyper", "reqwest", "tower", "lapin"].map(|t| (t, LevelFilter::OFF)))
}

/// The process's subscriber: logs on stderr filtered by `directives` (RUST_LOG's
/// syntax; `info` if they do not parse), and, with a provider, OpenTelemetry spans
/// filtered by [`trace_filter`] alone. Call [`TraceIds::attach`] once it is the default.
///
/// The trace filter is a `Targets` list, not an `EnvFilter`: with an `EnvFilter` there,
/// `RUST_LOG=info,tower_http=debug` dropped the request's and the relay's spans from
/// the export (the lifecycle test `a_task_created_over_http_is_one_trace_whatever_the_log_filter`
/// fails that way).
pub fn subscriber(
    format: LogFormat,
    directives: &str,
    provider: Option<&SdkTracerProvider>,
) -> (Box<dyn tracing::Subscriber + Send + Sync>, TraceIds) {
    let trace_ids = TraceIds::default();
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(json_lines(&trace_ids))
            .fmt_fields(JsonFields::new())
            .with_writer(std::io::stderr)
            .with_filter(log_filter(directives))
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter(directives))
            .boxed(),
    };
    let otel_layer = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("storeops"))
            .with_filter(trace_filter())
    });
    let subscriber = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer);
    (Box::new(subscriber), trace_ids)
}

fn log_filter(directives: &str) -> EnvFilter {
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // lapin logs every lost connection at ERROR, even one the supervisor recovers from
    // by itself (a broker restart); the supervisor logs each loss once, with its
    // reason. Asked for by name in the directives, lapin's own lines still show.
    match "lapin=off".parse() {
        Ok(quiet) if !directives.contains("lapin") => filter.add_directive(quiet),
        _ => filter,
    }
}

fn resource(role: &str) -> Resource {
    Resource::builder()
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("storeops.role", role.to_owned()),
        ])
        .build()
}

/// A provider without an exporter (tests of the log format).
#[cfg(test)]
fn local_provider(role: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource(role))
        .build()
}

/// One JSON object per line: the event's fields flattened, the current span's fields,
/// and its trace and span ids. Call [`TraceIds::attach`] once the subscriber is
/// the default.
fn json_lines(source: &TraceIds) -> WithTraceIds<Format<Json>> {
    WithTraceIds {
        inner: tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false),
        source: source.clone(),
    }
}

/// Where a log formatter finds the OpenTelemetry context of a span: the subscriber
/// itself, which a formatter cannot ask for while it is handling an event (tracing
/// refuses re-entrant `get_default`), so it is handed over once set up.
#[derive(Clone, Default)]
pub struct TraceIds(std::sync::Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>);

impl TraceIds {
    /// Once the subscriber is the default: the JSON log lines look up their span's ids.
    pub fn attach(&self) {
        tracing::dispatcher::get_default(|dispatch| {
            let _ = self.0.set(dispatch.downgrade());
        });
    }
}

/// The JSON log line of `F` with the current span's `trace_id` and `span_id` added.
struct WithTraceIds<F> {
    inner: F,
    source: TraceIds,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let context = ctx.lookup_current().and_then(|span| {
            let dispatch = self.source.0.get()?.upgrade()?;
            tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        });
        let span = context.as_ref().map(|c| c.span());
        let ids = span.as_ref().map(|s| s.span_context().clone());
        match (line.rfind('}'), ids) {
            (Some(end), Some(ids)) if ids.is_valid() => write!(
                writer,
                "{},\"trace_id\":\"{}\",\"span_id\":\"{}\"{}",
                &line[..end],
                ids.trace_id(),
                ids.span_id(),
                &line[end..]
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// Endpoint, headers, protocol and timeouts come from the standard OTEL_* variables.
fn otlp_provider(role: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(role))
        .build())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_and_span_ids() {
        let lines = Lines::default();
        let writer = lines.clone();
        let trace_ids = TraceIds::default();
        let provider = local_provider("test");
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(json_lines(&trace_ids))
                    .fmt_fields(JsonFields::new())
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            trace_ids.attach();
            tracing::info!("outside any span");
            let span = tracing::info_span!("request", route = "/x");
            let _entered = span.enter();
            tracing::warn!(answer = 42, "inside");
            let context = span.context();
            let ids = context.span().span_context().clone();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{}", parsed[0]);
        assert_eq!(parsed[1]["trace_id"], trace_id.as_str(), "{}", parsed[1]);
        assert_eq!(parsed[1]["span_id"], span_id.as_str());
        assert_eq!(parsed[1]["answer"], 42);
        assert_eq!(parsed[1]["span"]["route"], "/x");
    }
}
