//! The Connection Proxy's request contract (spec §2.7), as pure functions.
//!
//! A proxied call may only reach the connection's own instance, under `/services/`: no
//! absolute URLs, no scheme or host change, no `..` escapes, no overriding the headers Ferry
//! adds (authorization), a method allow-list and size caps. Everything here is checked before
//! a single byte leaves Ferry.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Methods a proxied call may use.
pub const ALLOWED_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Request headers a caller may not set (Ferry owns them, or they would break framing).
pub const BLOCKED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "x-sfdc-session",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "proxy-authorization",
];
/// Response headers never passed back.
pub const BLOCKED_RESPONSE_HEADERS: &[&str] = &["set-cookie", "connection", "transfer-encoding"];
/// Largest request body forwarded.
pub const MAX_REQUEST_BODY_BYTES: usize = 256 * 1024;
/// Largest response body returned; more is truncated and flagged.
pub const MAX_RESPONSE_BODY_BYTES: usize = 1024 * 1024;
/// Upstream timeout.
pub const TIMEOUT_MS: u64 = 30_000;
/// Proxied calls per connection per minute.
pub const RATE_LIMIT_PER_MINUTE: u32 = 120;

/// `ConnectionProxyCall` as the SDK sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyCall {
    /// HTTP method.
    pub method: String,
    /// Relative path starting with `/services/`.
    pub path: String,
    /// Structured query parameters.
    #[serde(default)]
    pub query: Option<Map<String, Value>>,
    /// Raw query string (no leading `?`).
    #[serde(default, rename = "rawQuery")]
    pub raw_query: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Option<Map<String, Value>>,
    /// Body: a string, a JSON value, or null.
    #[serde(default)]
    pub body: Option<Value>,
}

/// A call that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCall {
    /// Upper-case method.
    pub method: String,
    /// Normalised path (`/services/...`).
    pub path: String,
    /// Encoded query string without `?` (may be empty).
    pub query: String,
    /// Headers to forward.
    pub headers: Vec<(String, String)>,
    /// Body bytes and their content type.
    pub body: Option<(Vec<u8>, String)>,
}

/// Why a call was refused; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProxyRuleError {
    /// `request.path`, `request.method`, ...
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> ProxyRuleError {
    ProxyRuleError {
        field,
        message: message.into(),
    }
}

/// Applies the contract to a call.
pub fn check_call(call: &ProxyCall) -> Result<CheckedCall, ProxyRuleError> {
    let method = call.method.trim().to_ascii_uppercase();
    if !ALLOWED_METHODS.contains(&method.as_str()) {
        return Err(refuse(
            "request.method",
            format!(
                "'{}' is not allowed; accepted: {}",
                call.method,
                ALLOWED_METHODS.join(", ")
            ),
        ));
    }
    let path = check_path(&call.path)?;
    if call.query.is_some() && call.raw_query.is_some() {
        return Err(refuse(
            "request.query",
            "query and rawQuery are mutually exclusive",
        ));
    }
    let query = match (&call.query, &call.raw_query) {
        (Some(query), _) => encode_query(query)?,
        (None, Some(raw)) => {
            if raw.contains('#') || raw.starts_with('?') || raw.chars().any(char::is_whitespace) {
                return Err(refuse(
                    "request.rawQuery",
                    "must be an encoded query string without a leading '?', spaces or '#'",
                ));
            }
            raw.clone()
        }
        (None, None) => String::new(),
    };
    let mut headers = Vec::new();
    if let Some(map) = &call.headers {
        for (name, value) in map {
            let lower = name.to_ascii_lowercase();
            if BLOCKED_REQUEST_HEADERS.contains(&lower.as_str()) {
                return Err(refuse(
                    "request.headers",
                    format!(
                        "header '{name}' cannot be set: Ferry sets it (blocked: {})",
                        BLOCKED_REQUEST_HEADERS.join(", ")
                    ),
                ));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(refuse(
                    "request.headers",
                    format!("'{name}' is not a valid header name"),
                ));
            }
            let Some(text) = value.as_str() else {
                return Err(refuse(
                    "request.headers",
                    format!("header '{name}' must be a string"),
                ));
            };
            if text.contains('\r') || text.contains('\n') {
                return Err(refuse(
                    "request.headers",
                    format!("header '{name}' contains a line break"),
                ));
            }
            headers.push((name.clone(), text.to_string()));
        }
    }
    let body = match &call.body {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some((text.as_bytes().to_vec(), "text/plain".to_string())),
        Some(value) => Some((
            value.to_string().into_bytes(),
            "application/json".to_string(),
        )),
    };
    if let Some((bytes, _)) = &body {
        if bytes.len() > MAX_REQUEST_BODY_BYTES {
            return Err(refuse(
                "request.body",
                format!(
                    "is {} bytes; at most {MAX_REQUEST_BODY_BYTES} bytes are forwarded",
                    bytes.len()
                ),
            ));
        }
        if method == "GET" || method == "DELETE" {
            return Err(refuse(
                "request.body",
                format!("{method} requests carry no body"),
            ));
        }
    }
    // A caller-provided content type wins for string bodies (e.g. text/csv).
    let body = body.map(|(bytes, default_type)| {
        let explicit = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.clone());
        (bytes, explicit.unwrap_or(default_type))
    });
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    Ok(CheckedCall {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn check_path(path: &str) -> Result<String, ProxyRuleError> {
    if path.contains("://") || path.starts_with("//") {
        return Err(refuse(
            "request.path",
            "must be a path relative to the connection's instance, not a URL",
        ));
    }
    if !path.starts_with('/') {
        return Err(refuse(
            "request.path",
            "must start with '/' (e.g. /services/data/v59.0/limits)",
        ));
    }
    if path.contains('?') || path.contains('#') {
        return Err(refuse(
            "request.path",
            "must not contain a query string; use query or rawQuery",
        ));
    }
    if path.contains('\\') || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse(
            "request.path",
            "contains characters that are not allowed",
        ));
    }
    let lowered = path.to_ascii_lowercase();
    if lowered.contains("%2e") || lowered.contains("%2f") || lowered.contains("%5c") {
        return Err(refuse(
            "request.path",
            "encoded dots or slashes are not allowed",
        ));
    }
    let mut segments = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(refuse(
                "request.path",
                "'.' and '..' segments are not allowed",
            ));
        }
        segments.push(segment);
    }
    if segments.first() != Some(&"services") {
        return Err(refuse(
            "request.path",
            "only paths under /services/ may be proxied",
        ));
    }
    Ok(format!("/{}", segments.join("/")))
}

fn encode_query(query: &Map<String, Value>) -> Result<String, ProxyRuleError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in query {
        match value {
            Value::Array(items) => {
                for item in items {
                    pairs.push((key.clone(), scalar(key, item)?));
                }
            }
            other => pairs.push((key.clone(), scalar(key, other)?)),
        }
    }
    serde_urlencoded::to_string(&pairs).map_err(|error| refuse("request.query", error.to_string()))
}

fn scalar(key: &str, value: &Value) -> Result<String, ProxyRuleError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(refuse(
            "request.query",
            format!("value of '{key}' must be a string, number, boolean or a list of them"),
        )),
    }
}

/// The `requestContract` object of `/proxy/info`.
pub fn request_contract() -> Value {
    json!({
        "allowedMethods": ALLOWED_METHODS,
        "blockedRequestHeaders": BLOCKED_REQUEST_HEADERS,
        "blockedResponseHeaders": BLOCKED_RESPONSE_HEADERS,
        "bodyTypes": ["string", "object", "null"],
        "maxRequestBodyBytes": MAX_REQUEST_BODY_BYTES,
        "maxResponseBodyBytes": MAX_RESPONSE_BODY_BYTES,
        "pathRule": "relative path under /services/ on the connection's instance; no '..', no URLs",
        "queryModes": ["query", "rawQuery"],
        "queryValueTypes": ["string", "number", "boolean", "array"],
        "rateLimitPerMinute": RATE_LIMIT_PER_MINUTE,
        "rawQueryRule": "encoded, without a leading '?'",
        "timeoutMs": TIMEOUT_MS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(value: Value) -> ProxyCall {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_plain_get_passes() {
        let checked = check_call(&call(json!({
            "method": "get", "path": "/services/data/v59.0/query",
            "query": {"q": "SELECT Id FROM Account"}
        })))
        .unwrap();
        assert_eq!(checked.method, "GET");
        assert_eq!(checked.path, "/services/data/v59.0/query");
        assert_eq!(checked.query, "q=SELECT+Id+FROM+Account");
        assert!(checked.body.is_none());
    }

    #[test]
    fn escapes_and_other_hosts_are_refused() {
        for path in [
            "https://evil.example.com/services/data",
            "//evil.example.com/services/data",
            "/services/../../etc/passwd",
            "/services/data/%2e%2e/x",
            "/other/path",
            "services/data",
            "/services/data?x=1",
        ] {
            let error = check_call(&call(json!({"method": "GET", "path": path}))).unwrap_err();
            assert_eq!(error.field, "request.path", "{path}");
        }
    }

    #[test]
    fn auth_headers_cannot_be_overridden() {
        let error = check_call(&call(json!({
            "method": "GET", "path": "/services/data", "headers": {"Authorization": "Bearer x"}
        })))
        .unwrap_err();
        assert_eq!(error.field, "request.headers");
        assert!(error.message.contains("Authorization"));
    }

    #[test]
    fn methods_and_sizes_are_capped() {
        assert_eq!(
            check_call(&call(json!({"method": "TRACE", "path": "/services/data"})))
                .unwrap_err()
                .field,
            "request.method"
        );
        let big = "x".repeat(MAX_REQUEST_BODY_BYTES + 1);
        assert_eq!(
            check_call(&call(
                json!({"method": "POST", "path": "/services/data", "body": big})
            ))
            .unwrap_err()
            .field,
            "request.body"
        );
        assert!(
            check_call(&call(
                json!({"method": "POST", "path": "/services/data", "query": {}, "rawQuery": "a=b"})
            ))
            .is_err()
        );
    }

    #[test]
    fn json_bodies_are_forwarded_as_json() {
        let checked = check_call(&call(json!({
            "method": "PATCH", "path": "/services/data/v59.0/sobjects/Account/001",
            "body": {"Name": "Acme"}
        })))
        .unwrap();
        let (bytes, content_type) = checked.body.unwrap();
        assert_eq!(content_type, "application/json");
        assert_eq!(bytes, br#"{"Name":"Acme"}"#);
    }
}
