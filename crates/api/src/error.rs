//! The one error type handlers return, and the one JSON error shape every non-2xx response
//! carries: Polytomic's `ApiError` `{"status", "message", "key", "metadata"}`.
//!
//! 5xx responses get a generic message; the detail is logged (inside the request span) by
//! the middleware that finds it in the response extensions, never returned to the caller.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::{ErrorCode, FieldError, HasErrorCode};
use serde_json::{Map, Value, json};

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Error class; decides the HTTP status.
    pub code: ErrorCode,
    /// Public message.
    pub message: String,
    /// Extra machine-readable detail (e.g. `{"field": "configuration.domain"}`).
    pub metadata: Box<Map<String, Value>>,
    /// Internal detail, logged and never returned.
    pub detail: Option<String>,
    /// Overrides the status derived from `code` (e.g. 405, 415).
    pub status_override: Option<StatusCode>,
}

/// The detail of a 5xx error, left in the response extensions for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalErrorDetail(pub String);

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            metadata: Box::default(),
            detail: None,
            status_override: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// 404 for a resource kind (`connection not found`).
    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 422.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unprocessable, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Conflict, message)
    }

    /// 500 with a logged detail and a generic public message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut error = ApiError::new(ErrorCode::Internal, "internal server error");
        error.detail = Some(detail.to_string());
        error
    }

    /// A validation failure on a field: 422 naming the field.
    pub fn field(error: FieldError) -> Self {
        let mut api = ApiError::unprocessable(error.to_string());
        api.metadata
            .insert("field".to_string(), Value::String(error.field));
        api
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    /// Forces a specific HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status_override = Some(status);
        self
    }

    /// The HTTP status this error maps to — the one place codes become statuses.
    pub fn status(&self) -> StatusCode {
        if let Some(status) = self.status_override {
            return status;
        }
        match self.code {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let status = self.status();
        let key = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => self.code.key(),
        };
        json!({
            "status": status.as_u16(),
            "message": self.message,
            "key": key,
            "metadata": self.metadata,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::CONFLICT || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(detail) = self.detail {
            response
                .extensions_mut()
                .insert(InternalErrorDetail(detail));
        }
        response
    }
}

impl From<ferry_store::StoreError> for ApiError {
    fn from(error: ferry_store::StoreError) -> Self {
        match error.code() {
            ErrorCode::Internal => ApiError::internal(error),
            code => ApiError::new(code, error.to_string()),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::field(error)
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_four_keys() {
        let body = ApiError::not_found("connection").body();
        assert_eq!(
            body,
            json!({"status": 404, "message": "connection not found", "key": "not_found", "metadata": {}})
        );
    }

    #[test]
    fn internal_errors_hide_detail() {
        let error = ApiError::internal("db password is hunter2");
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!error.body().to_string().contains("hunter2"));
    }

    #[test]
    fn field_errors_name_the_field() {
        let error = ApiError::field(FieldError::new("configuration.domain", "is required"));
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.body()["metadata"]["field"], "configuration.domain");
        assert!(error.message.contains("configuration.domain"));
    }
}
