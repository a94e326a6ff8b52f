//! The Connection Proxy (spec §2.7): `POST /api/connections/{id}/proxy` passes one request
//! to the connection's own Salesforce instance with the stored credentials, and
//! `GET /api/connections/{id}/proxy/info` describes the contract.
//!
//! The rules of [`crate::proxy_rules`] are checked before anything is sent; every proxied
//! call counts against the connection's daily budget (refused with 429 when spent); a
//! per-connection rate limit applies (429); responses over the size cap are truncated and
//! flagged. Call statistics are kept in memory by each Ferry process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ferry_core::ErrorCode;
use ferry_salesforce::SalesforceError;
use ferry_salesforce::raw::{RawRequest, RawResponse};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::Caller;
use crate::proxy_rules::{self, CheckedCall, ProxyCall};
use crate::routes::{ApiRoutes, Operation};
use crate::salesforce_clients::client_for;

/// In-memory proxy bookkeeping: rate-limit windows and 24-hour statistics.
#[derive(Debug, Default)]
pub struct ProxyState {
    inner: Mutex<HashMap<Uuid, ConnectionProxyStats>>,
}

#[derive(Debug, Default)]
struct ConnectionProxyStats {
    window_start: Option<Instant>,
    window_calls: u32,
    /// (when, status class) of calls in the last 24 hours.
    recent: Vec<(DateTime<Utc>, u16)>,
}

impl ProxyState {
    /// Counts a call against the per-minute rate limit; false when over it.
    fn admit(&self, connection_id: Uuid, now: Instant) -> bool {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = inner.entry(connection_id).or_default();
        match stats.window_start {
            Some(start) if now.duration_since(start) < Duration::from_secs(60) => {}
            _ => {
                stats.window_start = Some(now);
                stats.window_calls = 0;
            }
        }
        if stats.window_calls >= proxy_rules::RATE_LIMIT_PER_MINUTE {
            return false;
        }
        stats.window_calls += 1;
        true
    }

    fn record(&self, connection_id: Uuid, status: u16) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = inner.entry(connection_id).or_default();
        let now = Utc::now();
        stats
            .recent
            .retain(|(at, _)| now - *at < chrono::Duration::hours(24));
        stats.recent.push((now, status));
    }

    fn summary(&self, connection_id: Uuid) -> (usize, [usize; 3], Option<DateTime<Utc>>) {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(stats) = inner.get(&connection_id) else {
            return (0, [0; 3], None);
        };
        let now = Utc::now();
        let recent: Vec<_> = stats
            .recent
            .iter()
            .filter(|(at, _)| now - *at < chrono::Duration::hours(24))
            .collect();
        let class = |hundreds: u16| recent.iter().filter(|(_, s)| s / 100 == hundreds).count();
        (
            recent.len(),
            [class(2), class(4), class(5)],
            recent.last().map(|(at, _)| *at),
        )
    }
}

#[derive(Debug, Deserialize)]
struct ExecuteProxyRequest {
    request: ProxyCall,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "post",
                "/api/connections/{id}/proxy",
                "connections",
                "Send a request to the connection's Salesforce instance with its stored credentials",
            ),
            post(execute),
        )
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/proxy/info",
                "connections",
                "The proxy's request contract and call statistics for a connection",
            ),
            get(info),
        )
}

fn upstream_error(error: SalesforceError) -> ApiError {
    match &error {
        SalesforceError::BudgetExhausted(budget) => {
            ApiError::new(ErrorCode::TooManyRequests, budget.to_string())
                .with_metadata("reason", "api_budget_exhausted")
        }
        SalesforceError::Transport { kind, .. } => {
            let status = if matches!(kind, ferry_salesforce::TransportKind::Timeout) {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            ApiError::new(
                ErrorCode::Unavailable,
                format!("the Salesforce instance could not be reached: {error}"),
            )
            .with_status(status)
        }
        _ => ApiError::new(
            ErrorCode::Unavailable,
            format!("the proxied call failed: {error}"),
        )
        .with_status(StatusCode::BAD_GATEWAY),
    }
}

async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ExecuteProxyRequest>,
) -> ApiResult<Json<Value>> {
    let checked: CheckedCall = proxy_rules::check_call(&body.request).map_err(|error| {
        ApiError::bad_request(error.to_string()).with_metadata("field", error.field)
    })?;
    let (connection, _, client) = client_for(&state, caller.organization_id, id).await?;
    if !state.proxy().admit(connection.id, Instant::now()) {
        return Err(ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "proxy rate limit: at most {} calls per minute per connection",
                proxy_rules::RATE_LIMIT_PER_MINUTE
            ),
        ));
    }
    let started = Instant::now();
    let request = raw_request(&checked)?;
    let response: RawResponse = tokio::time::timeout(
        Duration::from_millis(proxy_rules::TIMEOUT_MS),
        client.send_raw(request, proxy_rules::MAX_RESPONSE_BODY_BYTES),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "Salesforce did not answer within {} ms",
                proxy_rules::TIMEOUT_MS
            ),
        )
        .with_status(StatusCode::GATEWAY_TIMEOUT)
    })?
    .map_err(upstream_error)?;
    state.proxy().record(connection.id, response.status);
    let headers: serde_json::Map<String, Value> = response
        .headers
        .iter()
        .filter(|(name, _)| !proxy_rules::BLOCKED_RESPONSE_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_string(), Value::String(v.to_string())))
        })
        .collect();
    let content_type = response
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Ok(Json(json!({"data": {
        "status": response.status,
        "headers": headers,
        "body": String::from_utf8_lossy(&response.body),
        "contentType": content_type,
        "latencyMs": started.elapsed().as_millis() as u64,
        "proxyCallId": Uuid::new_v4(),
        "truncated": response.truncated,
    }})))
}

fn raw_request(checked: &CheckedCall) -> ApiResult<RawRequest> {
    let invalid = |what: String| ApiError::bad_request(what).with_metadata("field", "request");
    let method = http::Method::from_bytes(checked.method.as_bytes())
        .map_err(|_| invalid(format!("invalid method {}", checked.method)))?;
    let path = if checked.query.is_empty() {
        checked.path.clone()
    } else {
        format!("{}?{}", checked.path, checked.query)
    };
    let mut headers = Vec::with_capacity(checked.headers.len());
    for (name, value) in &checked.headers {
        let name = http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name}")))?;
        let value = http::header::HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("invalid value for header {name}")))?;
        headers.push((name, value));
    }
    let body = match &checked.body {
        Some((bytes, content_type)) => Some((
            bytes::Bytes::from(bytes.clone()),
            http::header::HeaderValue::from_str(content_type)
                .map_err(|_| invalid(format!("invalid content type {content_type}")))?,
        )),
        None => None,
    };
    Ok(RawRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn info(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let (connection, _, client) = client_for(&state, caller.organization_id, id).await?;
    let calls = state
        .store()
        .api_calls_since(connection.id, Utc::now() - chrono::Duration::hours(24))
        .await?;
    let (proxy_calls, [ok, client_errors, server_errors], last) =
        state.proxy().summary(connection.id);
    Ok(Json(json!({"data": {
        "connectionId": connection.id,
        "backendType": connection.type_id,
        "inheritedBase": {
            "baseUrl": client.instance_url().as_str().trim_end_matches('/'),
            "lockedHeaders": [{"name": "Authorization", "value": "Bearer ********", "redacted": true}],
            "lockedQuery": {},
        },
        "mergeRules": {
            "headers": "caller headers are added; Authorization and other blocked headers cannot be set",
            "query": "query or rawQuery is appended; nothing is inherited",
        },
        "requestContract": proxy_rules::request_contract(),
        "stats": {
            "callsLast24h": calls,
            "lastProxyCallAt": last.map(ferry_core::time::rfc3339),
            "proxyCallsLast24h": proxy_calls,
            "proxy2xxLast24h": ok,
            "proxy4xxLast24h": client_errors,
            "proxy5xxLast24h": server_errors,
        },
    }})))
}
