//! Cross-cutting request handling, outermost first:
//!
//! 1. [`request_context`]: a request id (`X-Request-Id`), a tracing span per request, one log
//!    line per response, and logging of 5xx details left by [`crate::error::ApiError`].
//! 2. [`api_version`]: `X-Polytomic-Version` checked against the supported list and echoed.
//! 3. [`authenticate`] (API routes): `Authorization: Bearer <key>` → [`Caller`].
//! 4. [`idempotency`] (API routes): `Idempotency-Key` semantics, see `ferry_store::idempotency`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_core::ErrorCode;
use ferry_store::{IdempotencyBegin, StoredResponse};
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, InternalErrorDetail};

/// API versions accepted in `X-Polytomic-Version`.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2025-09-18",
    "2024-02-08",
    "2023-04-25",
    "2022-12-12",
    "2021-05-23",
];

/// The version served when the caller names none.
pub const DEFAULT_VERSION: &str = "2025-09-18";

static VERSION_HEADER: HeaderName = HeaderName::from_static("x-polytomic-version");
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
static IDEMPOTENCY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
static REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's organization.
    pub organization_id: Uuid,
    /// Its name.
    pub organization_name: String,
    /// The API key used.
    pub api_key_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthorized)
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "missing or invalid API key: send 'Authorization: Bearer <api key>'",
    )
}

/// Request id, span and access log.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let matched_path = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string());
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = matched_path.as_deref().unwrap_or(request.uri().path()),
        request_id = %request_id,
        organization_id = tracing::field::Empty,
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }
    let started = Instant::now();
    async move {
        let mut response = next.run(request).await;
        let status = response.status();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if let Some(InternalErrorDetail(detail)) = response.extensions_mut().remove() {
            tracing::error!(error = %detail, status = status.as_u16(), elapsed_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request served");
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER.clone(), value);
        }
        response
    }
    .instrument(span)
    .await
}

/// `X-Polytomic-Version`: unknown versions → 400; the served version is echoed.
pub async fn api_version(request: Request, next: Next) -> Response {
    let requested = match request.headers().get(&VERSION_HEADER) {
        None => DEFAULT_VERSION,
        Some(value) => {
            let text = value.to_str().unwrap_or("").trim();
            match SUPPORTED_VERSIONS.iter().find(|v| **v == text) {
                Some(version) => version,
                None => {
                    let mut response = ApiError::bad_request(format!(
                        "unsupported X-Polytomic-Version '{}': accepted versions are {}",
                        text,
                        SUPPORTED_VERSIONS.join(", ")
                    ))
                    .with_metadata("header", "X-Polytomic-Version")
                    .into_response();
                    response.headers_mut().insert(
                        VERSION_HEADER.clone(),
                        HeaderValue::from_static(DEFAULT_VERSION),
                    );
                    return response;
                }
            }
        }
    };
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(VERSION_HEADER.clone(), HeaderValue::from_static(requested));
    response
}

/// Resolves the bearer key to a [`Caller`]; 401 otherwise.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return unauthorized().into_response();
    };
    let key = match state.store().authenticate(&token).await {
        Ok(Some(key)) => key,
        Ok(None) => return unauthorized().into_response(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let organization = match state.store().organization(key.organization_id).await {
        Ok(organization) => organization,
        Err(error) => return ApiError::from(error).into_response(),
    };
    tracing::Span::current().record("organization_id", tracing::field::display(organization.id));
    request.extensions_mut().insert(Caller {
        organization_id: organization.id,
        organization_name: organization.name,
        api_key_id: key.id,
    });
    next.run(request).await
}

/// Checks an `Idempotency-Key` value: `[A-Za-z0-9_-]`, 8 to 255 characters.
pub fn validate_idempotency_key(key: &str) -> Result<(), ApiError> {
    let valid_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !(8..=255).contains(&key.len()) || !valid_chars {
        return Err(ApiError::bad_request(
            "invalid Idempotency-Key: use 8 to 255 characters from A-Z, a-z, 0-9, '_' and '-'",
        )
        .with_metadata("header", "Idempotency-Key"));
    }
    Ok(())
}

/// `Idempotency-Key` handling for mutating methods.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let applies = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(key) = request.headers().get(&IDEMPOTENCY_HEADER).cloned() else {
        return next.run(request).await;
    };
    if !applies {
        return next.run(request).await;
    }
    let key = match key.to_str() {
        Ok(key) => key.to_string(),
        Err(_) => {
            return validate_idempotency_key("\u{0}")
                .unwrap_err()
                .into_response();
        }
    };
    if let Err(error) = validate_idempotency_key(&key) {
        return error.into_response();
    }
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return unauthorized().into_response();
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, state.settings().max_body_bytes).await else {
        return ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .as_bytes(),
    );
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let store = state.store();
    let now = chrono::Utc::now();
    match store
        .begin_idempotent(caller.organization_id, &key, &fingerprint, now)
        .await
    {
        Err(error) => ApiError::from(error).into_response(),
        Ok(IdempotencyBegin::InFlight) => ApiError::conflict(
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .with_metadata("header", "Idempotency-Key")
        .into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::unprocessable(
            "this Idempotency-Key was already used for a different request (method, path or body differ)",
        )
        .with_metadata("header", "Idempotency-Key")
        .into_response(),
        Ok(IdempotencyBegin::Completed(stored)) => replay(stored),
        Ok(IdempotencyBegin::Started) => {
            let request = Request::from_parts(parts, Body::from(bytes));
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let body = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(body) => body,
                Err(error) => {
                    let _ = store.abandon_idempotent(caller.organization_id, &key).await;
                    return ApiError::internal(format!("reading response body: {error}"))
                        .into_response();
                }
            };
            let stored = StoredResponse {
                status: parts.status.as_u16(),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: body.to_vec(),
            };
            if let Err(error) = store
                .complete_idempotent(caller.organization_id, &key, &stored, chrono::Utc::now())
                .await
            {
                tracing::error!(%error, "could not store idempotent outcome");
                let _ = store.abandon_idempotent(caller.organization_id, &key).await;
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() =
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = stored.content_type
        && let Ok(value) = HeaderValue::from_str(&content_type)
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER.clone(), HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(validate_idempotency_key("abcd-1234_XY").is_ok());
        assert!(validate_idempotency_key("short").is_err());
        assert!(validate_idempotency_key("has space in it").is_err());
        assert!(validate_idempotency_key(&"a".repeat(256)).is_err());
        assert!(validate_idempotency_key(&"a".repeat(255)).is_ok());
    }
}
