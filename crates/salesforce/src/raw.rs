//! Raw requests with the connection's credentials, for the Connection Proxy.
//!
//! [`SalesforceClient::send_raw`] sends a caller-described request to a path on the
//! connection's own instance and returns whatever Salesforce answered (any status), with
//! the body capped. It goes through the same budget, org-usage floor and token refresh as
//! every other call (one refresh and replay on 401; no other retries, so the caller sees
//! Salesforce's answer). The client sets the credentials itself: caller headers that carry
//! credentials or control the connection are dropped.
//!
//! [`validate_proxy_path`] is the path policy: an absolute path under `/services/`, with no
//! scheme, host, backslash, empty or dot segments (also percent-encoded), control
//! characters or fragment, and never an OAuth endpoint other than `userinfo`.

use bytes::{Bytes, BytesMut};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::client::{AuthStyle, Call, SalesforceClient};
use crate::error::{Result, SalesforceError};

/// A request to pass through.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// HTTP method.
    pub method: Method,
    /// Absolute path on the instance, optionally with a query string (`/services/data/v62.0/limits`).
    pub path: String,
    /// Extra headers (credential and connection headers are dropped).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body and its content type.
    pub body: Option<(Bytes, HeaderValue)>,
}

/// What Salesforce answered.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body, at most the requested number of bytes.
    pub body: Bytes,
    /// Whether the body was cut at the cap.
    pub truncated: bool,
}

/// Headers a caller may not set: the client owns credentials and the connection.
const DROPPED_HEADERS: &[&str] = &[
    "authorization",
    "x-sfdc-session",
    "cookie",
    "proxy-authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "accept-encoding",
];

/// Whether a caller header is dropped by [`SalesforceClient::send_raw`].
pub fn is_dropped_header(name: &HeaderName) -> bool {
    DROPPED_HEADERS.contains(&name.as_str())
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = segment.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a proxy path (see the module docs).
pub fn validate_proxy_path(path: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(SalesforceError::InvalidInput(format!(
            "proxy path {path:?} refused: {why}"
        )))
    };
    let (path_part, _query) = path.split_once('?').unwrap_or((path, ""));
    if !path_part.starts_with("/services/") {
        return refuse("only paths under /services/ on the connection's instance are allowed");
    }
    if path.contains("://") || path.contains('\\') || path.contains('#') {
        return refuse("absolute URLs, backslashes and fragments are not allowed");
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return refuse("control characters and spaces are not allowed");
    }
    let segments: Vec<&str> = path_part.trim_start_matches('/').split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        let Some(decoded) = percent_decode(segment) else {
            return refuse("bad percent-encoding");
        };
        if decoded == "." || decoded == ".." {
            return refuse("dot segments are not allowed");
        }
        if decoded.contains('/') || decoded.contains('\\') {
            return refuse("encoded slashes are not allowed");
        }
        if segment.is_empty() && index + 1 != segments.len() {
            return refuse("empty segments are not allowed");
        }
    }
    let lowered = path_part.to_ascii_lowercase();
    if lowered.starts_with("/services/oauth2/")
        && lowered.trim_end_matches('/') != "/services/oauth2/userinfo"
    {
        return refuse("OAuth endpoints other than userinfo are not allowed");
    }
    Ok(())
}

impl SalesforceClient {
    /// Sends `request` with the connection's credentials and returns Salesforce's answer,
    /// reading at most `max_response_bytes` of the body.
    pub async fn send_raw(
        &self,
        request: RawRequest,
        max_response_bytes: usize,
    ) -> Result<RawResponse> {
        validate_proxy_path(&request.path)?;
        let mut call = Call::new(request.method.clone(), request.path.clone(), "proxy")
            .auth(AuthStyle::Bearer);
        call.headers = request
            .headers
            .into_iter()
            .filter(|(name, _)| !is_dropped_header(name))
            .collect();
        call.body = request.body;
        let mut refreshed = false;
        loop {
            self.org_guard().check()?;
            self.config().budget.try_acquire(1).await?;
            let session = self.session();
            let mut response = self.attempt_raw(&call, &session).await?;
            if response.status().as_u16() == 401 && !refreshed {
                refreshed = true;
                self.refresh(session.generation).await?;
                continue;
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let url = response.url().clone();
            let mut body = BytesMut::new();
            let mut truncated = false;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| SalesforceError::transport(&url, e))?
            {
                let room = max_response_bytes.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(RawResponse {
                status,
                headers,
                body: body.freeze(),
                truncated,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths() {
        for ok in [
            "/services/data/v62.0/limits",
            "/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
            "/services/data/",
            "/services/oauth2/userinfo",
            "/services/data/v62.0/sobjects/Account/Ext__c/a%20b",
        ] {
            assert!(validate_proxy_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/services/data",
            "//evil.example/services/data",
            "/services/../id/x",
            "/services/data/%2e%2e/%2E%2E/x",
            "/services/data/./x",
            "/services/data//x",
            "/services/data/a%2Fb",
            "/services\\data",
            "/other/path",
            "services/data",
            "/services/data/v62.0/limits#frag",
            "/services/oauth2/token",
            "/services/OAuth2/revoke",
            "/services/data/\u{0}x",
            "/services/data/a%zz",
        ] {
            assert!(validate_proxy_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_headers_are_dropped() {
        assert!(is_dropped_header(&HeaderName::from_static("authorization")));
        assert!(is_dropped_header(&HeaderName::from_static(
            "x-sfdc-session"
        )));
        assert!(!is_dropped_header(&HeaderName::from_static(
            "sforce-query-options"
        )));
    }
}
