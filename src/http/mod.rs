//! HTTP for the public API, whatever its routes: the middleware every request passes and
//! their order, extractors with problem+json rejections, keyset pagination, and the
//! OpenAPI document's common parts. The API itself is assembled in `roles::api`.

pub mod extract;
pub mod middleware;
pub mod pagination;

use std::time::Duration;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, StatusCode, header},
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa::{
    Modify,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

/// Limits that shape the router.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    /// The integration endpoints' limit (price batches are large).
    pub ingest_body_limit_bytes: usize,
    pub request_timeout: Duration,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The answers every operation can give whatever it does, added to each so the
/// document lists every status the server can send: 400 for a malformed path, query or
/// body; for operations with a body, 413 (too large), 415 (not JSON) and 422 (invalid);
/// 422 for any other parameter; 503 with Retry-After while the database is away.
struct StandardResponses;

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        crate::error::PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for operation in operations_mut(openapi) {
            let has_body = operation.request_body.is_some();
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut standard = vec![("400", "The path, query or body is malformed")];
            if has_body {
                standard.push(("413", "The body is larger than this route accepts"));
                standard.push(("415", "The body is not application/json"));
            }
            if has_body || has_parameters {
                standard.push(("422", "A field is invalid; `errors` names each"));
            }
            standard.push((
                "503",
                "The database is unavailable; retry after Retry-After",
            ));
            for (code, description) in standard {
                operation
                    .responses
                    .responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(description));
            }
        }
    }
}

/// OpenAPI 3.1 requires a description on every response; where an operation's own
/// attribute gave none, its status's meaning in this API is stated.
struct Described;

impl Modify for Described {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        for operation in operations_mut(openapi) {
            for (code, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.trim().is_empty()
                {
                    response.description = default_description(code).to_owned();
                }
            }
        }
    }
}

/// Every operation of the document.
fn operations_mut(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// What a status means when an operation does not say more.
fn default_description(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted; the work continues in the background",
        "204" => "Done; no content",
        "304" => "Not modified since the ETag sent; no body",
        "401" => "No valid bearer token",
        "403" => "The caller's role or scope does not allow this",
        "404" => "Not found, or outside the caller's scope",
        "409" => "Conflicts with the resource's current state",
        "410" => "No longer available",
        "412" => "The resource changed since the ETag sent in If-Match",
        "428" => "This write needs If-Match",
        _ => "See the operation's description",
    }
}

/// The OpenAPI document of `openapi` once every route is in it: the standard responses
/// added to each, then `rules` (the rules between fields that the derived schemas
/// cannot state) applied to the JSON.
pub fn complete_document(
    mut openapi: utoipa::openapi::OpenApi,
    rules: &[fn(&mut serde_json::Value)],
) -> serde_json::Value {
    BearerAuth.modify(&mut openapi);
    StandardResponses.modify(&mut openapi);
    Described.modify(&mut openapi);
    let mut document =
        serde_json::to_value(&openapi).expect("the OpenAPI document is JSON (start-up)");
    for rule in rules {
        rule(&mut document);
    }
    document
}

/// The public router around an assembled API: `/openapi.json` serving `document`, 404
/// for anything else, and the middleware every request passes.
pub fn with_platform_layers(
    api: Router,
    document: &serde_json::Value,
    limits: HttpLimits,
) -> Router {
    let openapi = axum::body::Bytes::from(document.to_string());
    let request_id = HeaderName::from_static("x-request-id");
    api.route(
        "/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }),
    )
    .fallback(|| async { StatusCode::NOT_FOUND })
    // One layer for the whole stack, listed outermost first: the request id is set
    // before the span is made, and every error, including a timeout or a panic, is
    // turned into problem+json last. (Each `Router::layer` call boxes every route once
    // more, and each boxed level is cloned for every request below it: eight calls cost
    // ~60 clones a request, a tenth of the store task list's CPU.)
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(middleware::request_span)
                    // Errors are logged once where they are handled (`ApiError`), not again here.
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(axum::middleware::from_fn(middleware::track_metrics))
            .layer(axum::middleware::from_fn(
                middleware::problem_for_bare_errors,
            ))
            .layer(CatchPanicLayer::custom(middleware::panic_response))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                limits.request_timeout,
            ))
            .layer(DefaultBodyLimit::max(limits.body_limit_bytes)),
    )
}
