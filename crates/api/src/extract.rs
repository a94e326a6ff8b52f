//! Extractors whose rejections use Ferry's error shape.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use ferry_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Malformed JSON → 400 saying where; a wrong content type → 415; a body over
/// the limit → 413; a body of the wrong shape → 400 naming the field.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if let Some(content_type) = content_type {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::bad_request(format!(
                    "unsupported content type '{essence}': send the body as application/json"
                ))
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
        } else if !bytes.is_empty() {
            return Err(ApiError::bad_request(
                "missing Content-Type: send the body as application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T` with errors that say where and what.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: a JSON object is expected",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::bad_request(format!(
            "malformed JSON at line {} column {}: {}",
            error.line(),
            error.column(),
            strip_position(&error.to_string())
        ))
    })?;
    serde_json::from_value(value).map_err(|error| {
        ApiError::bad_request(format!(
            "invalid request body: {}",
            strip_position(&error.to_string())
        ))
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
    } else {
        ApiError::bad_request(format!(
            "could not read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Path parameters; a malformed id → 400 naming the value.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::bad_request(format!("invalid path parameter: {}", rejection.body_text()))
            })
    }
}

/// Query parameters; errors → 400 naming the parameter. Accepts both `?key=v` and the SDK's
/// bracketed `?params[key]=v` forms (the caller's struct decides which keys it reads).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}

/// A request's `policies`: Ferry has no permission system (every API key of an organization
/// may do everything), so a policy id would be a setting that does nothing. An empty list
/// or no field is accepted; anything else is refused naming the field.
pub fn no_policies(policies: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    match policies {
        Some(policies) if !policies.is_empty() => Err(ApiError::unprocessable(format!(
            "policies: permission policies are not available on this server (every API key of \
             the organization has full access); omit the field or send [] (got {} id(s))",
            policies.len()
        ))
        .with_metadata("field", "policies")),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    #[test]
    fn malformed_json_says_where() {
        let error = parse_json::<Body>(b"{\"name\": ").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert!(error.message.contains("line 1 column"), "{}", error.message);
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let error = parse_json::<Body>(b"{}").unwrap_err();
        assert!(
            error.message.contains("missing field `name`"),
            "{}",
            error.message
        );
        let error = parse_json::<Body>(b"{\"name\": 5}").unwrap_err();
        assert!(error.message.contains("invalid type"), "{}", error.message);
    }

    #[test]
    fn empty_body_is_rejected() {
        assert!(
            parse_json::<Body>(b"  ")
                .unwrap_err()
                .message
                .contains("empty")
        );
    }
}
