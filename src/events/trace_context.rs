//! W3C trace context across the outbox and the broker: the producer's span context is
//! stored with the event and becomes the parent of the consumer's span.

use std::collections::HashMap;

use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `traceparent`/`tracestate` of the current span (empty without an active trace).
pub fn current() -> HashMap<String, String> {
    of(&tracing::Span::current())
}

/// `traceparent`/`tracestate` of `span`.
pub fn of(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier
}

/// Makes `span` continue the trace described by `carrier`.
pub fn continue_trace(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let _ = span.set_parent(parent);
}
