//! axum's extractors with our rejection: every malformed path, query or body becomes a
//! problem+json naming what was wrong, never axum's plain-text body.

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ApiError, FieldError};

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A JSON body: `Content-Type: application/json` (or `+json`), within the body limit,
/// no NUL in any string (422 naming the field), then the type's own rules.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                        "the request body is larger than this route accepts".to_owned(),
                    ),
                    _ => ApiError::BadRequest(rejection.body_text()),
                })?;
        parse_json(&body).map(Json)
    }
}

/// 415 unless the request says its body is JSON (`application/json` or `+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(is_json_content_type)
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".to_owned(),
        ))
    }
}

fn is_json_content_type(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Parses a JSON body: a NUL in any string is refused first (PostgreSQL cannot store
/// it), naming the field; then the type's own rules, naming the field that broke them.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if crate::input::json_has_nul(body)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(field) = crate::input::nul_path(&value)
    {
        return Err(ApiError::validation(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    crate::input::objects::from_slice(body).map_err(|error| {
        let field = match error.path().to_string() {
            path if path == "." => "body".to_owned(),
            path => path,
        };
        if error.inner().is_data() {
            ApiError::Validation(vec![FieldError::new(field, error.inner().to_string())])
        } else {
            ApiError::BadRequest(format!("the body is not JSON: {}", error.inner()))
        }
    })
}

/// A JSON body that may be empty (transitions): empty, or `null`, means `T::default()`.
pub fn parse_optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(T::default());
    }
    require_json(headers)?;
    parse_json(body)
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A body already encoded as JSON (a hot list writes its own; see `tasks::summary_json`).
pub struct JsonBytes(pub Vec<u8>);

impl IntoResponse for JsonBytes {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// The `Idempotency-Key` header of a write an offline client may retry: absent, or 1-200
/// visible ASCII characters (else 400).
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    pub const HEADER: &str = "idempotency-key";
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(Self::HEADER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .map(|key| Self(Some(key.to_owned())))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Idempotency-Key must be 1-200 visible ASCII characters".to_owned(),
                )
            })
    }
}

/// The entity tags of `If-None-Match` (RFC 9110 §13.1.2): `*`, or a list of tags, weak
/// or strong; compared weakly (a `W/` prefix is ignored), as the RFC asks for GET.
#[derive(Debug, Default)]
pub struct IfNoneMatch {
    any: bool,
    tags: Vec<String>,
}

impl IfNoneMatch {
    /// Whether the request sent no `If-None-Match` at all.
    pub fn is_absent(&self) -> bool {
        !self.any && self.tags.is_empty()
    }

    /// Whether a representation tagged `etag` (`"…"`) is one the client has.
    pub fn matches(&self, etag: &str) -> bool {
        self.any
            || self
                .tags
                .iter()
                .any(|tag| tag == etag.trim_start_matches("W/"))
    }
}

/// Documented on the operations that read it, so that a generated client can send it
/// (a header the document does not name is one a client generator gives no way to set).
impl utoipa::IntoParams for IfNoneMatch {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{
            ObjectBuilder, Required, Type,
            path::{ParameterBuilder, ParameterIn},
        };
        vec![
            ParameterBuilder::new()
                .name("If-None-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The ETag of the copy the client has: 304 without a body if it is still current",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let mut found = Self::default();
        for value in parts.headers.get_all(header::IF_NONE_MATCH) {
            // A header that is not a tag list matches nothing: answer in full.
            let Ok(text) = value.to_str() else { continue };
            for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    found.any = true;
                } else {
                    found.tags.push(tag.trim_start_matches("W/").to_owned());
                }
            }
        }
        Ok(found)
    }
}

/// Lists and resources that change under every kind of write: a cache may keep them
/// but must ask (If-None-Match) before each use.
const REVALIDATE: &str = "private, no-cache";

/// `body` with its ETag and the revalidation rule.
pub fn tagged(etag: &str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    response
}

/// 304 with the tag the client already has, no body.
pub fn not_modified(etag: &str) -> Response {
    tagged(etag, StatusCode::NOT_MODIFIED)
}
