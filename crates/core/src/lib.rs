//! Shared vocabulary of Ferry, free of IO.
//!
//! - [`ErrorCode`]: the small set of error classes every library error maps to; the API maps
//!   each code to an HTTP status in exactly one place.
//! - [`SecretString`]: a credential whose `Debug`/`Display` never show the value.
//! - [`FieldError`]: a validation failure that names the offending field and says what is
//!   accepted.
//! - [`time`] — RFC 3339 formatting used on every API boundary.
//! - [`duration`] — Go-style duration strings (`healthcheck_interval`).

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod duration;
pub mod schedule;

/// The class of an error, independent of where it happened.
///
/// Library errors implement [`HasErrorCode`]; the HTTP layer turns the code into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request itself is malformed (bad parameter, unparsable body).
    BadRequest,
    /// The caller did not authenticate.
    Unauthenticated,
    /// The caller is authenticated but not allowed.
    Forbidden,
    /// The resource does not exist (or belongs to another organization).
    NotFound,
    /// The request conflicts with the current state (in-flight idempotency key, running sync).
    Conflict,
    /// The request is well formed but its content is invalid (validation failure).
    Unprocessable,
    /// The body is larger than accepted.
    PayloadTooLarge,
    /// Too many requests.
    TooManyRequests,
    /// A dependency is unavailable.
    Unavailable,
    /// A bug or an unexpected failure; details are logged, never returned.
    Internal,
}

impl ErrorCode {
    /// The stable machine key used in API error bodies (`ApiError.key`).
    pub fn key(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unprocessable => "unprocessable_entity",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal_error",
        }
    }
}

/// Implemented by every library error so the API can map it without guessing.
pub trait HasErrorCode: std::error::Error {
    /// The class of this error.
    fn code(&self) -> ErrorCode;
}

/// A validation failure on one field of a user-supplied document.
///
/// `field` is a dotted path (`configuration.connect_mode`); `message` says what was wrong and
/// what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the offending field.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, nested under `prefix` (`configuration` + `domain` → `configuration.domain`).
    pub fn prefixed(self, prefix: &str) -> Self {
        if self.field.is_empty() {
            return FieldError {
                field: prefix.to_string(),
                message: self.message,
            };
        }
        FieldError {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

/// A credential. `Debug` and `Display` print a fixed mask; only [`SecretString::expose`]
/// gives the value, so secrets cannot leak through logs or error messages by accident.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret value. Call only where the value must leave the process (a request to the
    /// system it authenticates against, or the encrypted store).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(\"********\")")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString(value.to_string())
    }
}

/// Timestamps on API boundaries.
pub mod time {
    use chrono::{DateTime, SecondsFormat, Utc};

    /// Formats a timestamp as RFC 3339 with millisecond precision and a `Z` suffix.
    pub fn rfc3339(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The current time truncated to milliseconds, so what is stored round-trips exactly.
    pub fn now_millis() -> DateTime<Utc> {
        let now = Utc::now();
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_never_prints_its_value() {
        let secret = SecretString::new("hunter2");
        assert_eq!(format!("{secret}"), "********");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn field_error_prefixes_paths() {
        let error = FieldError::new("domain", "is required").prefixed("configuration");
        assert_eq!(error.field, "configuration.domain");
        assert_eq!(error.to_string(), "configuration.domain: is required");
        let bare = FieldError::new("", "must be an object").prefixed("configuration");
        assert_eq!(bare.field, "configuration");
    }

    #[test]
    fn rfc3339_uses_millis_and_z() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00.123456+00:00")
            .expect("valid timestamp")
            .with_timezone(&chrono::Utc);
        assert_eq!(time::rfc3339(at), "2024-01-01T00:00:00.123Z");
    }
}
