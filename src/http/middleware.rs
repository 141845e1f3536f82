//! Cross-cutting HTTP behaviour: metrics per route template, a trace span per request,
//! and problem+json for every error response, whoever produced it.

use std::time::Instant;

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use opentelemetry::propagation::Extractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    error::{ApiError, PROBLEM_JSON},
    metrics,
};

const UNMATCHED_ROUTE: &str = "unmatched";

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::HTTP_IN_FLIGHT.inc();
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::HTTP_IN_FLIGHT.dec();
    }
}

/// RED metrics labelled by route template (never the raw path: ids would explode labels).
pub async fn track_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let (app, version) = metrics::client_labels(
        request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    let started = Instant::now();
    let _in_flight = InFlight::enter();
    let response = next.run(request).await;
    let status = response.status();
    metrics::HTTP_REQUESTS
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    metrics::HTTP_DURATION
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    let class = format!("{}xx", status.as_u16() / 100);
    metrics::CLIENT_REQUESTS
        .with_label_values(&[app, version.as_str(), class.as_str()])
        .inc();
    tracing::Span::current().record("status", status.as_u16());
    response
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span every request runs in; continues the caller's W3C trace when one is sent.
pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str());
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        method = %request.method(),
        route,
        request_id,
        status = tracing::field::Empty,
        role = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

/// Rewrites any error response that is not already problem+json (axum's 404/405, a
/// layer's 408/413, a caught panic) into one, so clients see a single error format.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no route matches this path",
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method",
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {
            "the request took too long or the service is unavailable; retry shortly"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this route accepts",
        s if s.is_server_error() => "an internal error occurred; it has been logged",
        _ => "the request was rejected",
    };
    let (parts, _) = response.into_parts();
    let mut problem = ApiError::problem_response(status, detail.to_owned(), Vec::new());
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// Turns a panic into a logged 500 (the body is made a problem by the layer above).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    ApiError::problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "an internal error occurred; it has been logged".to_owned(),
        Vec::new(),
    )
}
