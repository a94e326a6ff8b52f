//! The Connection Proxy (spec §2.7): `POST /api/connections/{id}/proxy` passes one request
//! to the connection's own Salesforce instance with the stored credentials, and
//! `GET /api/connections/{id}/proxy/info` describes the contract.
//!
//! The rules of [`crate::proxy_rules`] are checked before anything is sent; every proxied
//! call counts against the connection's daily budget (refused with 429 when spent); a
//! per-connection rate limit applies (429); responses over the size cap are truncated and
//! flagged. The rate limit (a window per clock minute) and the 24-hour statistics live in
//! the store, so every Ferry process sharing it counts the same calls.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::Utc;
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
    let admission = state
        .store()
        .admit_proxy_call(
            connection.id,
            Utc::now(),
            i64::from(proxy_rules::RATE_LIMIT_PER_MINUTE),
        )
        .await?;
    let Some(admission) = admission else {
        return Err(ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "proxy rate limit: at most {} calls per minute per connection",
                proxy_rules::RATE_LIMIT_PER_MINUTE
            ),
        ));
    };
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
    state
        .store()
        .record_proxy_status(connection.id, admission, response.status)
        .await?;
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
    let proxy = state
        .store()
        .proxy_stats(connection.id, Utc::now() - chrono::Duration::hours(24))
        .await?;
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
            "lastProxyCallAt": proxy.last_at.map(ferry_core::time::rfc3339),
            "proxyCallsLast24h": proxy.calls,
            "proxy2xxLast24h": proxy.ok,
            "proxy4xxLast24h": proxy.client_errors,
            "proxy5xxLast24h": proxy.server_errors,
        },
    }})))
}
