//! Events and webhooks (spec §6).
//!
//! - [`publish`] records an event (kept 48 hours, listed by `GET /api/events`) and, when
//!   the organization has an enabled webhook, delivers it: `POST` of
//!   `{"type": <type>, "event": <payload>}` with `Polytomic-Signature: <hex HMAC-SHA256 of
//!   the body, keyed with the webhook secret>`. A non-2xx answer or a transport failure is
//!   retried up to [`DELIVERY_RETRIES`] times with exponential backoff; an event raised
//!   while the webhook is disabled is dropped, not queued.
//! - Routes: `GET /api/events`, `GET /api/events_types`, `GET/POST /api/webhooks`,
//!   `GET/PUT/DELETE /api/webhooks/{id}`, `POST /api/webhooks/{id}/disable|enable`.
//!
//! Deliveries run on the state's task tracker, so shutdown can wait for them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ferry_core::time::rfc3339;
use ferry_store::{Event, EventFilter, Webhook};
use hmac::{Hmac, Mac as _};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// The event types Ferry emits.
pub const EVENT_TYPES: &[&str] = &[
    "sync.running",
    "sync.completed",
    "sync.completed_with_errors",
    "sync.failed",
    "sync.canceled",
    "bulk_sync.running",
    "bulk_sync.completed",
    "bulk_sync.completed_with_error",
    "bulk_sync.failed",
    "bulk_sync.canceled",
];

/// Retries after the first delivery attempt.
pub const DELIVERY_RETRIES: u32 = 5;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Polytomic-Signature";

/// `POST/PUT /api/webhooks` body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WebhookRequest {
    /// Where events are POSTed (http or https URL).
    pub endpoint: String,
    /// Secret keying the `Polytomic-Signature` HMAC.
    pub secret: String,
    /// Partner callers only; ignored for organization keys.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    starting_after: Option<DateTime<Utc>>,
    #[serde(default)]
    ending_before: Option<DateTime<Utc>>,
    #[serde(default)]
    limit: Option<i64>,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/api/events",
                "events",
                "Recent events (48 hours), newest first",
            )
            .query("type", "only this event type")
            .query("starting_after", "RFC 3339 time")
            .query("ending_before", "RFC 3339 time")
            .query("limit", "1 to 100, default 10"),
            get(list_events),
        )
        .add(
            Operation::new(
                "get",
                "/api/events_types",
                "events",
                "The event types Ferry emits",
            ),
            get(event_types),
        )
        .add(
            Operation::new("get", "/api/webhooks", "events", "List webhooks"),
            get(list_webhooks),
        )
        .add(
            Operation::new(
                "post",
                "/api/webhooks",
                "events",
                "Create the organization's webhook",
            )
            .request::<WebhookRequest>(),
            post(create_webhook),
        )
        .add(
            Operation::new("get", "/api/webhooks/{id}", "events", "Get a webhook"),
            get(get_webhook),
        )
        .add(
            Operation::new("put", "/api/webhooks/{id}", "events", "Replace a webhook")
                .request::<WebhookRequest>(),
            axum::routing::put(update_webhook),
        )
        .add(
            Operation::new("delete", "/api/webhooks/{id}", "events", "Delete a webhook")
                .status(204),
            axum::routing::delete(delete_webhook),
        )
        .add(
            Operation::new(
                "post",
                "/api/webhooks/{id}/disable",
                "events",
                "Pause deliveries (events are dropped)",
            ),
            post(disable_webhook),
        )
        .add(
            Operation::new(
                "post",
                "/api/webhooks/{id}/enable",
                "events",
                "Resume deliveries",
            ),
            post(enable_webhook),
        )
}

/// The signature of `body` under `secret`, hex encoded.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC accepts keys of any length; this branch is unreachable in practice.
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Records an event and delivers it to the organization's webhook, if enabled.
pub async fn publish(
    state: &AppState,
    organization_id: Uuid,
    event_type: &str,
    payload: Value,
) -> ApiResult<Event> {
    let event = Event {
        id: Uuid::new_v4(),
        organization_id,
        event_type: event_type.to_string(),
        payload,
        created_at: ferry_core::time::now_millis(),
    };
    state.store().insert_event(&event).await?;
    for webhook in state.store().list_webhooks(organization_id).await? {
        if webhook.disabled {
            tracing::info!(event_type, webhook_id = %webhook.id, "webhook disabled: event dropped");
            continue;
        }
        let secret = state
            .cipher()
            .decrypt(&webhook.secret)
            .map_err(ApiError::internal)?;
        let body = json!({"type": event.event_type, "event": event.payload}).to_string();
        let delivery = deliver(state.clone(), webhook, secret, body);
        state.background().spawn(delivery);
    }
    Ok(event)
}

async fn deliver(state: AppState, webhook: Webhook, secret: Vec<u8>, body: String) {
    let signature = sign(&secret, body.as_bytes());
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client");
            return;
        }
    };
    let base = state.settings().webhook_retry_base;
    for attempt in 0..=DELIVERY_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(base * 2u32.saturating_pow(attempt - 1)).await;
            // Deliveries stop when the webhook is disabled or deleted meanwhile.
            match state
                .store()
                .webhook(webhook.organization_id, webhook.id)
                .await
            {
                Ok(current) if !current.disabled => {}
                _ => return,
            }
        }
        let outcome = client
            .post(&webhook.endpoint)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::info!(webhook_id = %webhook.id, attempt, "webhook delivered");
                return;
            }
            Ok(response) => {
                tracing::warn!(webhook_id = %webhook.id, attempt, status = response.status().as_u16(), "webhook delivery refused");
            }
            Err(error) => {
                tracing::warn!(webhook_id = %webhook.id, attempt, %error, "webhook delivery failed");
            }
        }
    }
    tracing::error!(webhook_id = %webhook.id, "webhook delivery abandoned after retries");
}

fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "organization_id": webhook.organization_id,
        "endpoint": webhook.endpoint,
        "secret": crate::connections::MASK,
        "disabled": webhook.disabled,
        "created_at": rfc3339(webhook.created_at),
    })
}

fn check_request(request: &WebhookRequest) -> ApiResult<()> {
    let url = reqwest::Url::parse(request.endpoint.trim()).map_err(|error| {
        ApiError::unprocessable(format!(
            "endpoint: '{}' is not a URL ({error})",
            request.endpoint
        ))
        .with_metadata("field", "endpoint")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(
            ApiError::unprocessable("endpoint: must be an http or https URL with a host")
                .with_metadata("field", "endpoint"),
        );
    }
    if request.secret.is_empty() {
        return Err(
            ApiError::unprocessable("secret: must not be empty").with_metadata("field", "secret")
        );
    }
    Ok(())
}

async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(
            ApiError::unprocessable(format!("limit: must be 1 to 100, got {limit}"))
                .with_metadata("field", "limit"),
        );
    }
    if let Some(event_type) = &query.event_type
        && !EVENT_TYPES.contains(&event_type.as_str())
    {
        return Err(ApiError::unprocessable(format!(
            "type: unknown event type '{event_type}'; accepted: {}",
            EVENT_TYPES.join(", ")
        ))
        .with_metadata("field", "type"));
    }
    let events = state
        .store()
        .list_events(
            caller.organization_id,
            &EventFilter {
                event_type: query.event_type,
                starting_after: query.starting_after,
                ending_before: query.ending_before,
                limit,
            },
        )
        .await?;
    let data: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "id": event.id,
                "organization_id": event.organization_id,
                "type": event.event_type,
                "created_at": rfc3339(event.created_at),
                "event": event.payload,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn event_types() -> Json<Value> {
    Json(json!({ "data": EVENT_TYPES }))
}

async fn list_webhooks(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let webhooks = state.store().list_webhooks(caller.organization_id).await?;
    Ok(Json(
        json!({"data": webhooks.iter().map(webhook_json).collect::<Vec<_>>()}),
    ))
}

async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<WebhookRequest>,
) -> ApiResult<Json<Value>> {
    check_request(&request)?;
    let webhook = Webhook {
        id: Uuid::new_v4(),
        organization_id: caller.organization_id,
        endpoint: request.endpoint.trim().to_string(),
        secret: state
            .cipher()
            .encrypt(request.secret.as_bytes())
            .map_err(ApiError::internal)?,
        disabled: false,
        created_at: ferry_core::time::now_millis(),
    };
    state.store().create_webhook(&webhook).await.map_err(|error| match error {
        ferry_store::StoreError::AlreadyExists { .. } => ApiError::conflict(
            "the organization already has a webhook (one per organization); update or delete it",
        ),
        other => other.into(),
    })?;
    Ok(Json(json!({ "data": webhook_json(&webhook) })))
}

async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let webhook = state.store().webhook(caller.organization_id, id).await?;
    Ok(Json(json!({ "data": webhook_json(&webhook) })))
}

async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<WebhookRequest>,
) -> ApiResult<Json<Value>> {
    let mut webhook = state.store().webhook(caller.organization_id, id).await?;
    check_request(&request)?;
    webhook.endpoint = request.endpoint.trim().to_string();
    if request.secret != crate::connections::MASK {
        webhook.secret = state
            .cipher()
            .encrypt(request.secret.as_bytes())
            .map_err(ApiError::internal)?;
    }
    state.store().update_webhook(&webhook).await?;
    Ok(Json(json!({ "data": webhook_json(&webhook) })))
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    disabled: bool,
) -> ApiResult<Json<Value>> {
    let mut webhook = state.store().webhook(caller.organization_id, id).await?;
    webhook.disabled = disabled;
    state.store().update_webhook(&webhook).await?;
    Ok(Json(json!({ "data": webhook_json(&webhook) })))
}

async fn disable_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    set_disabled(&state, &caller, id, true).await
}

async fn enable_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    set_disabled(&state, &caller, id, false).await
}

async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    state
        .store()
        .delete_webhook(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes the events of one model-sync execution: `sync.running` now, then — once the
/// execution reaches a terminal status — `sync.completed`, `sync.completed_with_errors`,
/// `sync.failed` or `sync.canceled`, with the payloads of spec §6. Runs on the background
/// tracker and follows the execution through the store.
pub fn watch_sync_execution(
    state: &AppState,
    sync: &ferry_store::ModelSync,
    execution_id: Uuid,
    trigger: &str,
) {
    let state_for_task = state.clone();
    let organization_id = sync.organization_id;
    let sync_id = sync.id;
    let base = json!({
        "sync_id": sync.id,
        "sync_name": sync.name,
        "execution_id": execution_id,
        "organization_id": sync.organization_id,
        "target_connection_id": sync.target_connection_id,
    });
    let trigger = trigger.to_string();
    state.background().spawn(async move {
        let state = state_for_task;
        if let Err(error) = publish(&state, organization_id, "sync.running", base.clone()).await {
            tracing::warn!(error = %error.message, "could not publish sync.running");
        }
        let execution = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match state.store().execution(sync_id, execution_id).await {
                Ok(execution) if ferry_store::syncs::is_terminal(&execution.status) => {
                    break execution;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "stopped following an execution for its events");
                    return;
                }
            }
        };
        let mut payload = base;
        let counts = &execution.counts;
        let event_type = match execution.status.as_str() {
            "completed" if counts.error > 0 => "sync.completed_with_errors",
            "completed" => "sync.completed",
            "canceled" => "sync.canceled",
            _ => "sync.failed",
        };
        if let Some(object) = payload.as_object_mut() {
            match event_type {
                "sync.completed" | "sync.completed_with_errors" => {
                    object.insert("status".into(), json!(execution.status));
                    object.insert("trigger".into(), json!(trigger));
                    object.insert("record_count".into(), json!(counts.total));
                    object.insert("inserted_count".into(), json!(counts.insert));
                    object.insert("updated_count".into(), json!(counts.update));
                    object.insert("upserted_count".into(), json!(counts.upserts));
                    object.insert("error_count".into(), json!(counts.error));
                    object.insert("warning_count".into(), json!(counts.warnings));
                    if event_type == "sync.completed_with_errors" {
                        object.insert("error".into(), json!(execution.errors.join("; ")));
                        object.insert("number_of_errors".into(), json!(counts.error));
                        object.insert("number_of_warnings".into(), json!(counts.warnings));
                    }
                }
                "sync.canceled" => {
                    object.insert("status".into(), json!(execution.status));
                }
                _ => {
                    object.insert("error".into(), json!(execution.errors.join("; ")));
                }
            }
        }
        if let Err(error) = publish(&state, organization_id, event_type, payload).await {
            tracing::warn!(error = %error.message, event_type, "could not publish a sync event");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
