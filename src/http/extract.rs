//! axum's extractors with our rejection: every malformed path, query or body becomes a
//! problem+json naming what was wrong, never axum's plain-text body.

use axum::extract::{
    FromRequest, FromRequestParts,
    rejection::{JsonRejection, PathRejection, QueryRejection},
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, FieldError};

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

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

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Validation(vec![json_field_error(&text)]),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
                "the request body is larger than this route accepts".to_owned(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".to_owned())
            }
            _ => ApiError::BadRequest(text),
        }
    }
}

/// axum reports typed JSON errors as `<prefix>: <path>: <message>` (serde_path_to_error);
/// split the path out so the problem names the field.
fn json_field_error(text: &str) -> FieldError {
    let detail = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest);
    match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => {
            let field = if path == "." { "body" } else { path };
            FieldError::new(field, message)
        }
        _ => FieldError::new("body", detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = json_field_error(
            "Failed to deserialize the JSON body into the target type: items[2].sku: invalid type: integer `3`, expected a string at line 1 column 9",
        );
        assert_eq!(e.field, "items[2].sku");
        let e = json_field_error(
            "Failed to deserialize the JSON body into the target type: missing field `name` at line 1 column 2",
        );
        assert_eq!(e.field, "body");
    }
}
