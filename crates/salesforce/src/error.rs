//! Typed errors and tolerant parsing of every error shape Salesforce sends (spec §4, §12).
//!
//! Shapes understood by [`parse_error_response`]:
//! - a JSON array of `{message, errorCode, fields?}` (REST, Tooling, Bulk 2.0);
//! - a single JSON object of the same shape, or with `statusCode` instead of `errorCode`
//!   (collections style);
//! - OAuth `{error, error_description}`;
//! - Bulk 1.0 `{exceptionCode, exceptionMessage}` in JSON or XML;
//! - anything else (HTML, empty, a bare JSON string): the HTTP status is all we know.
//!
//! Every error classifies itself with [`SalesforceError::is_retryable`]; the client's retry
//! loop (see [`crate::retry`]) is the only place that acts on it.

use std::time::Duration;

use ferry_core::{ErrorCode, HasErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::budget::BudgetExceeded;

/// One Salesforce error item: `errorCode` (or `statusCode`), `message` and `fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorItem {
    /// The error code, e.g. `REQUIRED_FIELD_MISSING` (from `errorCode`, `statusCode` or
    /// `exceptionCode`).
    pub error_code: String,
    /// The human-readable message.
    pub message: String,
    /// Fields the error is about (often empty).
    pub fields: Vec<String>,
}

impl ApiErrorItem {
    /// Builds an item.
    pub fn new(
        error_code: impl Into<String>,
        message: impl Into<String>,
        fields: Vec<String>,
    ) -> Self {
        ApiErrorItem {
            error_code: error_code.into(),
            message: message.into(),
            fields,
        }
    }

    /// Reads an item from a JSON object with `errorCode`, `statusCode` or `exceptionCode`.
    pub fn from_json(value: &Json) -> Option<ApiErrorItem> {
        let object = value.as_object()?;
        let code = ["errorCode", "statusCode", "exceptionCode"]
            .iter()
            .find_map(|key| object.get(*key).and_then(Json::as_str))?;
        let message = ["message", "exceptionMessage"]
            .iter()
            .find_map(|key| object.get(*key).and_then(Json::as_str))
            .unwrap_or_default();
        let fields = match object.get("fields") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect(),
            Some(Json::String(single)) if !single.is_empty() => vec![single.clone()],
            _ => Vec::new(),
        };
        Some(ApiErrorItem::new(code, message, fields))
    }

    /// Whether this per-record error is worth retrying (row lock contention).
    pub fn is_retryable(&self) -> bool {
        self.error_code == "UNABLE_TO_LOCK_ROW"
    }
}

impl std::fmt::Display for ApiErrorItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// An error response from a Salesforce API (REST, Tooling, Bulk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: u16,
    /// The first (usually only) error code; `HTTP_<status>` when the body had none.
    pub error_code: String,
    /// The first error's message (or a short excerpt of an unparsable body).
    pub message: String,
    /// The first error's fields.
    pub fields: Vec<String>,
    /// Further errors when Salesforce returned several.
    pub others: Vec<ApiErrorItem>,
    /// `Retry-After`, when the response carried one.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Every error item, the first one included.
    pub fn items(&self) -> Vec<ApiErrorItem> {
        let mut all = vec![ApiErrorItem::new(
            self.error_code.clone(),
            self.message.clone(),
            self.fields.clone(),
        )];
        all.extend(self.others.iter().cloned());
        all
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "salesforce returned HTTP {} {}: {}",
            self.status, self.error_code, self.message
        )?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        if !self.others.is_empty() {
            write!(f, " (+{} more errors)", self.others.len())?;
        }
        Ok(())
    }
}

/// Whether a transport failure happened before or during the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection could not be established (DNS, refused, TLS).
    Connect,
    /// The request or response took longer than the configured timeout.
    Timeout,
    /// The connection failed mid-request or while reading the body.
    Interrupted,
    /// Anything else (a response body that could not be decoded, a bad redirect).
    Other,
}

/// Everything that can go wrong talking to Salesforce.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SalesforceError {
    /// Salesforce answered with an API error.
    #[error("{0}")]
    Api(ApiError),
    /// The OAuth token endpoint (or userinfo) refused the request.
    #[error("salesforce OAuth error {error}: {description} (HTTP {status})")]
    OAuth {
        /// HTTP status.
        status: u16,
        /// OAuth `error`, e.g. `invalid_grant`.
        error: String,
        /// OAuth `error_description`, e.g. `authentication failure`.
        description: String,
    },
    /// The HTTP exchange itself failed.
    #[error("could not reach salesforce at {url} ({kind:?}): {source}")]
    Transport {
        /// What failed.
        kind: TransportKind,
        /// The URL, without its query string.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The daily API call budget (or the org-wide usage floor) refused the call before it
    /// was made.
    #[error(transparent)]
    BudgetExhausted(#[from] BudgetExceeded),
    /// A response could not be understood.
    #[error("unexpected response from salesforce ({context}): {message}")]
    Parse {
        /// Which call.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// The caller passed something the client refuses to send (too many records, an invalid
    /// object name, ...).
    #[error("invalid salesforce request: {0}")]
    InvalidInput(String),
    /// Configuration problem (bad login URL, missing credentials).
    #[error("invalid salesforce configuration: {0}")]
    Config(String),
    /// An upsert or external-id lookup matched several records (HTTP 300).
    #[error("the external id matched {} records", urls.len())]
    MultipleMatches {
        /// The matching records' URLs.
        urls: Vec<String>,
    },
    /// The session expired and this client has no way to obtain a new one.
    #[error("the salesforce session expired and cannot be refreshed (no refresh credentials)")]
    SessionExpired,
    /// A Bulk job ended in `Failed` or `Aborted`.
    #[error("bulk job {job_id} ended in state {state}: {message}")]
    JobFailed {
        /// The job id.
        job_id: String,
        /// Its final state.
        state: String,
        /// Salesforce's `errorMessage` / `stateMessage`.
        message: String,
    },
    /// The caller gave the operation up (for example a Bulk job Ferry could not keep
    /// track of, which it aborted).
    #[error("{0}")]
    Aborted(String),
    /// Waiting for a Bulk job or batch took longer than allowed.
    #[error("timed out after {waited:?} waiting for bulk job {job_id}")]
    JobTimeout {
        /// The job id.
        job_id: String,
        /// How long we waited.
        waited: Duration,
    },
}

impl SalesforceError {
    /// The Salesforce error code, when there is one (`errorCode`, `statusCode`,
    /// `exceptionCode`, or the OAuth `error`).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            SalesforceError::Api(api) => Some(&api.error_code),
            SalesforceError::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The HTTP status of the failed response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SalesforceError::Api(api) => Some(api.status),
            SalesforceError::OAuth { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed: 5xx, 406, 420, 429, timeouts and
    /// connection failures, `UNABLE_TO_LOCK_ROW`, and the concurrent-request form of
    /// `REQUEST_LIMIT_EXCEEDED` (`ConcurrentPerOrgLongTxn`). The daily `TotalRequests` limit,
    /// the call budget, validation errors and auth failures are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            SalesforceError::Api(api) => {
                if api.error_code == "REQUEST_LIMIT_EXCEEDED" {
                    return is_concurrency_limit(&api.message);
                }
                if api
                    .items()
                    .iter()
                    .any(|item| item.error_code == "UNABLE_TO_LOCK_ROW")
                {
                    return true;
                }
                matches!(api.status, 406 | 420 | 429) || api.status >= 500
            }
            SalesforceError::OAuth { status, .. } => *status >= 500,
            SalesforceError::Transport { kind, .. } => matches!(
                kind,
                TransportKind::Connect | TransportKind::Timeout | TransportKind::Interrupted
            ),
            _ => false,
        }
    }

    /// How long the server asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SalesforceError::Api(api) => api.retry_after,
            _ => None,
        }
    }

    /// Whether this is an expired or invalid session (REST 401, Bulk 1.0 `InvalidSessionId`).
    pub fn is_invalid_session(&self) -> bool {
        match self {
            SalesforceError::Api(api) => {
                api.status == 401
                    || api.error_code == "INVALID_SESSION_ID"
                    || api.error_code == "InvalidSessionId"
            }
            SalesforceError::OAuth { status, error, .. } => {
                *status == 401 || error == "invalid_token"
            }
            _ => false,
        }
    }

    /// Whether this is the org's daily `TotalRequests` limit.
    pub fn is_daily_limit(&self) -> bool {
        matches!(self, SalesforceError::Api(api) if api.error_code == "REQUEST_LIMIT_EXCEEDED" && !is_concurrency_limit(&api.message))
    }

    pub(crate) fn parse(context: impl Into<String>, message: impl Into<String>) -> SalesforceError {
        SalesforceError::Parse {
            context: context.into(),
            message: message.into(),
        }
    }

    pub(crate) fn transport(url: &reqwest::Url, source: reqwest::Error) -> SalesforceError {
        let kind = if source.is_timeout() {
            TransportKind::Timeout
        } else if source.is_connect() {
            TransportKind::Connect
        } else if source.is_request() || source.is_body() {
            TransportKind::Interrupted
        } else {
            TransportKind::Other
        };
        let mut bare = url.clone();
        bare.set_query(None);
        SalesforceError::Transport {
            kind,
            url: bare.to_string(),
            source,
        }
    }
}

fn is_concurrency_limit(message: &str) -> bool {
    message.contains("ConcurrentPerOrgLongTxn") || message.contains("Concurrent")
}

impl HasErrorCode for SalesforceError {
    fn code(&self) -> ErrorCode {
        match self {
            SalesforceError::Api(api) if api.error_code == "REQUEST_LIMIT_EXCEEDED" => {
                ErrorCode::TooManyRequests
            }
            SalesforceError::Api(api) if api.status == 404 => ErrorCode::NotFound,
            SalesforceError::Api(api) if api.status >= 500 => ErrorCode::Unavailable,
            SalesforceError::Api(_) => ErrorCode::Unprocessable,
            SalesforceError::OAuth { status, .. } if *status >= 500 => ErrorCode::Unavailable,
            SalesforceError::OAuth { .. }
            | SalesforceError::SessionExpired
            | SalesforceError::JobFailed { .. } => ErrorCode::Unprocessable,
            SalesforceError::Transport { .. }
            | SalesforceError::Parse { .. }
            | SalesforceError::JobTimeout { .. }
            | SalesforceError::Aborted(_) => ErrorCode::Unavailable,
            SalesforceError::BudgetExhausted(_) => ErrorCode::TooManyRequests,
            SalesforceError::InvalidInput(_) | SalesforceError::Config(_) => ErrorCode::BadRequest,
            SalesforceError::MultipleMatches { .. } => ErrorCode::Conflict,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = SalesforceError> = std::result::Result<T, E>;

/// Turns a failed response (status, `Content-Type`, body) into a [`SalesforceError`],
/// whatever shape the body has.
pub fn parse_error_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
) -> SalesforceError {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let api = |items: Vec<ApiErrorItem>| -> SalesforceError {
        let mut items = items.into_iter();
        match items.next() {
            Some(first) => SalesforceError::Api(ApiError {
                status,
                error_code: first.error_code,
                message: first.message,
                fields: first.fields,
                others: items.collect(),
                retry_after,
            }),
            None => status_only(status, trimmed, retry_after),
        }
    };
    let looks_json =
        trimmed.starts_with('[') || trimmed.starts_with('{') || trimmed.starts_with('"');
    if looks_json && let Ok(json) = serde_json::from_str::<Json>(trimmed) {
        match &json {
            Json::Array(list) => {
                let items: Vec<ApiErrorItem> =
                    list.iter().filter_map(ApiErrorItem::from_json).collect();
                return api(items);
            }
            Json::Object(object) => {
                if let Some(item) = ApiErrorItem::from_json(&json) {
                    return api(vec![item]);
                }
                if let Some(error) = object.get("error").and_then(Json::as_str) {
                    let description = object
                        .get("error_description")
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    return SalesforceError::OAuth {
                        status,
                        error: error.to_string(),
                        description: description.to_string(),
                    };
                }
                // Some wrappers nest the list: {"errors":[...]}.
                if let Some(Json::Array(list)) = object.get("errors") {
                    return api(list.iter().filter_map(ApiErrorItem::from_json).collect());
                }
            }
            Json::String(message) => {
                return api(vec![ApiErrorItem::new(
                    format!("HTTP_{status}"),
                    message.clone(),
                    Vec::new(),
                )]);
            }
            _ => {}
        }
    }
    let is_xml = content_type.is_some_and(|ct| ct.contains("xml"))
        || trimmed.starts_with("<?xml")
        || trimmed.starts_with("<error");
    if is_xml && let Some(item) = parse_bulk1_xml_error(trimmed) {
        return api(vec![item]);
    }
    status_only(status, trimmed, retry_after)
}

fn status_only(status: u16, body: &str, retry_after: Option<Duration>) -> SalesforceError {
    let message = if body.is_empty() || body.starts_with('<') {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("unexpected response")
            .to_string()
    } else {
        body.chars().take(300).collect()
    };
    SalesforceError::Api(ApiError {
        status,
        error_code: format!("HTTP_{status}"),
        message,
        fields: Vec::new(),
        others: Vec::new(),
        retry_after,
    })
}

/// Reads `<error><exceptionCode>..</exceptionCode><exceptionMessage>..</exceptionMessage></error>`.
fn parse_bulk1_xml_error(body: &str) -> Option<ApiErrorItem> {
    let root = crate::xml::parse(body).ok()?;
    let code = root.child_text("exceptionCode")?;
    let message = root.child_text("exceptionMessage").unwrap_or_default();
    Some(ApiErrorItem::new(code, message, Vec::new()))
}

/// Parses a Bulk CSV error cell: `STATUS_CODE:message:fields --`
/// (e.g. `REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --`).
pub fn parse_bulk_csv_error(cell: &str) -> ApiErrorItem {
    let cell = cell.trim();
    let Some((code, rest)) = cell.split_once(':') else {
        return ApiErrorItem::new("UNKNOWN_ERROR", cell, Vec::new());
    };
    let code_ok = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !code_ok {
        return ApiErrorItem::new("UNKNOWN_ERROR", cell, Vec::new());
    }
    let (message, fields) = match rest.trim_end().strip_suffix("--") {
        Some(body) => {
            let body = body.trim_end();
            match body.rsplit_once(':') {
                Some((message, fields)) => (message.to_string(), split_fields(fields)),
                None => (body.to_string(), Vec::new()),
            }
        }
        None => (rest.to_string(), Vec::new()),
    };
    ApiErrorItem::new(code, message, fields)
}

fn split_fields(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(error: SalesforceError) -> ApiError {
        match error {
            SalesforceError::Api(api) => api,
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn parses_rest_array() {
        let body = br#"[{"message":"Required fields are missing: [Name]","errorCode":"REQUIRED_FIELD_MISSING","fields":["Name"]}]"#;
        let error = api(parse_error_response(
            400,
            Some("application/json;charset=UTF-8"),
            body,
            None,
        ));
        assert_eq!(error.status, 400);
        assert_eq!(error.error_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(error.fields, vec!["Name"]);
        assert!(error.others.is_empty());
    }

    #[test]
    fn parses_several_errors() {
        let body =
            br#"[{"message":"a","errorCode":"A"},{"message":"b","errorCode":"B","fields":[]}]"#;
        let error = api(parse_error_response(400, None, body, None));
        assert_eq!(error.items().len(), 2);
        assert_eq!(error.others[0].error_code, "B");
    }

    #[test]
    fn parses_single_object_and_status_code_key() {
        let body = br#"{"message":"Json Deserialization failed on token 'null'","errorCode":"INVALID_FIELD"}"#;
        assert_eq!(
            api(parse_error_response(400, None, body, None)).error_code,
            "INVALID_FIELD"
        );
        let body = br#"{"statusCode":"DUPLICATES_DETECTED","message":"Use one of these records?","fields":[]}"#;
        assert_eq!(
            api(parse_error_response(400, None, body, None)).error_code,
            "DUPLICATES_DETECTED"
        );
    }

    #[test]
    fn parses_oauth_shape() {
        let body = br#"{"error":"invalid_grant","error_description":"authentication failure"}"#;
        match parse_error_response(400, Some("application/json"), body, None) {
            SalesforceError::OAuth {
                status,
                error,
                description,
            } => {
                assert_eq!(
                    (status, error.as_str(), description.as_str()),
                    (400, "invalid_grant", "authentication failure")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_bulk1_xml_and_json() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><error xmlns="http://www.force.com/2009/06/asyncapi/dataload"><exceptionCode>InvalidSessionId</exceptionCode><exceptionMessage>Invalid session id</exceptionMessage></error>"#;
        let error = parse_error_response(400, Some("application/xml"), xml, None);
        assert!(error.is_invalid_session());
        assert_eq!(error.error_code(), Some("InvalidSessionId"));
        let json = br#"{"exceptionCode":"InvalidJob","exceptionMessage":"Job not found"}"#;
        let error = api(parse_error_response(
            400,
            Some("application/json"),
            json,
            None,
        ));
        assert_eq!(
            (error.error_code.as_str(), error.message.as_str()),
            ("InvalidJob", "Job not found")
        );
    }

    #[test]
    fn html_and_empty_fall_back_to_status() {
        let error = api(parse_error_response(
            503,
            Some("text/html"),
            b"<html><body>Down</body></html>",
            None,
        ));
        assert_eq!(error.error_code, "HTTP_503");
        assert_eq!(error.message, "Service Unavailable");
        let error = api(parse_error_response(502, None, b"", None));
        assert_eq!(error.error_code, "HTTP_502");
        let error = api(parse_error_response(
            403,
            None,
            br#""Bad_OAuth_Token""#,
            None,
        ));
        assert_eq!(error.message, "Bad_OAuth_Token");
    }

    #[test]
    fn retry_classification() {
        let limit = |message: &str| {
            parse_error_response(
                403,
                None,
                format!(r#"[{{"message":"{message}","errorCode":"REQUEST_LIMIT_EXCEEDED"}}]"#)
                    .as_bytes(),
                None,
            )
        };
        assert!(!limit("TotalRequests Limit exceeded.").is_retryable());
        assert!(limit("TotalRequests Limit exceeded.").is_daily_limit());
        assert!(limit("ConcurrentPerOrgLongTxn Limit exceeded.").is_retryable());
        assert!(!limit("ConcurrentPerOrgLongTxn Limit exceeded.").is_daily_limit());
        let lock = parse_error_response(400, None, br#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]"#, None);
        assert!(lock.is_retryable());
        let validation = parse_error_response(
            400,
            None,
            br#"[{"message":"x","errorCode":"STRING_TOO_LONG"}]"#,
            None,
        );
        assert!(!validation.is_retryable());
        assert!(parse_error_response(503, None, b"", None).is_retryable());
        assert!(
            parse_error_response(
                500,
                None,
                br#"[{"message":"x","errorCode":"UNKNOWN_EXCEPTION"}]"#,
                None
            )
            .is_retryable()
        );
        assert!(parse_error_response(429, None, b"", None).is_retryable());
        assert!(!parse_error_response(404, None, b"", None).is_retryable());
        let oauth = parse_error_response(
            400,
            None,
            br#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
            None,
        );
        assert!(!oauth.is_retryable());
        assert_eq!(oauth.code(), ErrorCode::Unprocessable);
        let session = parse_error_response(
            401,
            None,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
            None,
        );
        assert!(session.is_invalid_session());
        assert!(!session.is_retryable());
    }

    #[test]
    fn parses_bulk_csv_errors() {
        let item = parse_bulk_csv_error(
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
        );
        assert_eq!(item.error_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(item.message, "Required fields are missing: [LastName]");
        assert_eq!(item.fields, vec!["LastName"]);
        let item =
            parse_bulk_csv_error("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--");
        assert_eq!(item.error_code, "INVALID_CROSS_REFERENCE_KEY");
        assert_eq!(item.message, "invalid cross reference id");
        assert!(item.fields.is_empty());
        let item = parse_bulk_csv_error(
            "DUPLICATE_VALUE:duplicate value found: Ext__c duplicates value on record with id: 001:Ext__c,Name --",
        );
        assert_eq!(item.fields, vec!["Ext__c", "Name"]);
        assert_eq!(
            item.message,
            "duplicate value found: Ext__c duplicates value on record with id: 001"
        );
        let item = parse_bulk_csv_error("something odd");
        assert_eq!(item.error_code, "UNKNOWN_ERROR");
        assert_eq!(item.message, "something odd");
        let item = parse_bulk_csv_error(
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record",
        );
        assert!(item.is_retryable());
    }
}
