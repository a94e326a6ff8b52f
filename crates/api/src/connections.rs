//! Connections: `GET/POST /api/connections`, `GET/PUT/DELETE /api/connections/{id}`,
//! `POST /api/connections/test`.
//!
//! Secrets: the connector's schema names the sensitive keys. Their values are split from the
//! configuration, encrypted with the server's key and stored apart; responses show
//! [`MASK`] in their place. A PUT or test that sends the mask back keeps the stored secret.
//! Read-only keys (e.g. Salesforce `username`) are set by Ferry only: a caller's values are
//! dropped by validation and the stored values are kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use ferry_connectors::salesforce::SalesforceConfig;
use ferry_connectors::{ConnectionHealth, ConnectionStatus, Connector};
use ferry_core::time::rfc3339;
use ferry_salesforce::CallBudget;
use ferry_store::{Connection, ConnectionWrite};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::budget::ConnectionBudget;
use crate::connection_types::type_summary;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, no_policies};
use crate::health;
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};
use crate::salesforce_oauth::{self, PendingAuthorization};

/// What responses show in place of a secret value.
pub const MASK: &str = "********";

/// `POST /api/connections` body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateConnectionRequest {
    /// Display name.
    pub name: String,
    /// Connection type id, e.g. `postgresql`.
    #[serde(rename = "type")]
    pub type_id: String,
    /// Type-specific configuration (see `GET /api/connection_types/{id}`).
    pub configuration: Value,
    /// Partner callers only; ignored for organization keys.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    /// Permission policy ids.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Where to send the browser after OAuth completes.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Test the configuration against the upstream before saving (default true).
    #[serde(default)]
    pub validate: Option<bool>,
    /// Health-check interval override.
    #[serde(default)]
    pub healthcheck_interval: Option<String>,
}

/// `PUT /api/connections/{id}` body (full replacement).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateConnectionRequest {
    /// Display name.
    pub name: String,
    /// Type-specific configuration; omitted keys are cleared, masked secrets are kept.
    pub configuration: Value,
    /// Must equal the connection's type when given.
    #[serde(rename = "type", default)]
    pub type_id: Option<String>,
    /// Partner callers only; ignored for organization keys.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    /// Permission policy ids.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Test the configuration before saving (default true).
    #[serde(default)]
    pub validate: Option<bool>,
    /// Health-check interval override.
    #[serde(default)]
    pub healthcheck_interval: Option<String>,
    /// Force re-authorization (OAuth types).
    #[serde(default)]
    pub reconnect: Option<bool>,
}

/// `POST /api/connections/test` body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TestConnectionRequest {
    /// Connection type id.
    #[serde(rename = "type")]
    pub type_id: String,
    /// Configuration to test; merged over the stored one when `connection_id` is given.
    pub configuration: Value,
    /// A saved connection whose configuration is the base.
    #[serde(default)]
    pub connection_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new("get", "/api/connections", "connections", "List connections"),
            get(list),
        )
        .add(
            Operation::new(
                "post",
                "/api/connections",
                "connections",
                "Create a connection",
            )
            .request::<CreateConnectionRequest>(),
            post(create),
        )
        .add(
            Operation::new(
                "post",
                "/api/connections/test",
                "connections",
                "Test a configuration without saving it",
            )
            .request::<TestConnectionRequest>(),
            post(test),
        )
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}",
                "connections",
                "Get a connection",
            ),
            get(fetch),
        )
        .add(
            Operation::new(
                "put",
                "/api/connections/{id}",
                "connections",
                "Replace a connection",
            )
            .request::<UpdateConnectionRequest>(),
            axum::routing::put(update),
        )
        .add(
            Operation::new(
                "delete",
                "/api/connections/{id}",
                "connections",
                "Delete a connection",
            )
            .query(
                "force",
                "delete even when models or syncs use the connection",
            )
            .status(204),
            axum::routing::delete(remove),
        )
}

fn connector_for(state: &AppState, type_id: &str) -> ApiResult<Arc<dyn Connector>> {
    state.registry().get(type_id).cloned().ok_or_else(|| {
        ApiError::unprocessable(format!(
            "type: unknown connection type '{type_id}'; accepted: {}",
            state.registry().ids().join(", ")
        ))
        .with_metadata("field", "type")
    })
}

fn require_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(
            ApiError::unprocessable("name: must not be empty").with_metadata("field", "name")
        );
    }
    Ok(())
}

fn require_object(configuration: &Value) -> ApiResult<&Map<String, Value>> {
    configuration.as_object().ok_or_else(|| {
        ApiError::unprocessable("configuration: must be a JSON object")
            .with_metadata("field", "configuration")
    })
}

/// The full configuration of a stored connection, secrets decrypted.
pub(crate) fn stored_configuration(
    state: &AppState,
    connection: &Connection,
) -> ApiResult<Map<String, Value>> {
    let mut configuration = connection
        .configuration
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(sealed) = &connection.secrets {
        let plaintext = state.cipher().decrypt(sealed).map_err(ApiError::internal)?;
        let secrets: Map<String, Value> =
            serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
        configuration.extend(secrets);
    }
    Ok(configuration)
}

/// Replaces masked secrets in `incoming` by the stored values.
fn unmask(incoming: &mut Map<String, Value>, stored: &Map<String, Value>, sensitive: &[String]) {
    for key in sensitive {
        if incoming.get(key).and_then(Value::as_str) == Some(MASK) {
            match stored.get(key) {
                Some(value) => {
                    incoming.insert(key.clone(), value.clone());
                }
                None => {
                    incoming.remove(key);
                }
            }
        }
    }
}

/// Splits a full configuration into (public part, encrypted secrets).
pub(crate) fn seal(
    state: &AppState,
    connector: &dyn Connector,
    mut configuration: Map<String, Value>,
) -> ApiResult<(Value, Option<Vec<u8>>)> {
    let mut secrets = Map::new();
    for key in connector.sensitive_keys() {
        if let Some(value) = configuration.remove(&key)
            && !value.is_null()
            && value.as_str() != Some("")
        {
            secrets.insert(key, value);
        }
    }
    let sealed = if secrets.is_empty() {
        None
    } else {
        let plaintext = serde_json::to_vec(&secrets).map_err(ApiError::internal)?;
        Some(
            state
                .cipher()
                .encrypt(&plaintext)
                .map_err(ApiError::internal)?,
        )
    };
    Ok((Value::Object(configuration), sealed))
}

/// The configuration as callers see it: each stored secret replaced by [`MASK`].
fn masked_configuration(state: &AppState, connection: &Connection) -> ApiResult<Value> {
    let mut configuration = connection
        .configuration
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(sealed) = &connection.secrets {
        let plaintext = state.cipher().decrypt(sealed).map_err(ApiError::internal)?;
        let secrets: Map<String, Value> =
            serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
        for key in secrets.keys() {
            configuration.insert(key.clone(), Value::String(MASK.to_string()));
        }
    }
    Ok(Value::Object(configuration))
}

fn actor(id: &Option<String>) -> Value {
    match id {
        Some(id) => json!({"id": id, "name": "API key", "type": "organization"}),
        None => Value::Null,
    }
}

fn connection_body(state: &AppState, connection: &Connection, api_calls: i64) -> ApiResult<Value> {
    let type_value = state
        .registry()
        .get(&connection.type_id)
        .map(|c| type_summary(&c.info()))
        .unwrap_or_else(|| json!({"id": connection.type_id, "name": connection.type_id}));
    Ok(json!({
        "id": connection.id,
        "name": connection.name,
        "organization_id": connection.organization_id,
        "type": type_value,
        "configuration": masked_configuration(state, connection)?,
        "policies": connection.policies,
        "status": connection.status,
        "status_error": connection.status_error.clone().unwrap_or_default(),
        "saved": true,
        "healthcheck_interval": connection.healthcheck_interval.clone().unwrap_or_default(),
        "created_at": rfc3339(connection.created_at),
        "created_by": actor(&connection.created_by),
        "updated_at": rfc3339(connection.updated_at),
        "updated_by": actor(&connection.updated_by),
        "parent_connection_id": null,
        "api_calls_last_24_hours": api_calls,
    }))
}

async fn api_calls_last_day(state: &AppState, id: Uuid) -> ApiResult<i64> {
    Ok(state
        .store()
        .api_calls_since(id, Utc::now() - chrono::Duration::hours(24))
        .await?)
}

/// Validates (pure) and, when asked, checks (IO) a configuration. Returns the normalized
/// configuration with learned read-only values merged, and the resulting health.
async fn validate_and_check(
    connector: &dyn Connector,
    configuration: &Map<String, Value>,
    check: bool,
    budget: Option<Arc<dyn CallBudget>>,
) -> ApiResult<(Map<String, Value>, ConnectionHealth)> {
    let normalized = connector
        .validate(&Value::Object(configuration.clone()))
        .map_err(|error| ApiError::field(error.prefixed("configuration")))?;
    let mut normalized = normalized.as_object().cloned().unwrap_or_default();
    let health = if check {
        let config = Value::Object(normalized.clone());
        let outcome = match budget {
            Some(budget) => connector.check_with_budget(&config, budget).await,
            None => connector.check(&config).await,
        };
        outcome.map_err(|error| {
            ApiError::unprocessable(format!("connection test failed: {}", error.message))
                .with_metadata("reason", "connection_test_failed")
        })?
    } else if connector.info().use_oauth {
        // Never contacted, so never claimed authorized.
        ConnectionHealth {
            status: ConnectionStatus::Unauthorized,
            message: Some(
                "saved without validation: not yet authenticated with the provider".to_string(),
            ),
            learned: BTreeMap::new(),
        }
    } else {
        ConnectionHealth {
            status: ConnectionStatus::Healthy,
            message: Some("saved without validation".to_string()),
            learned: BTreeMap::new(),
        }
    };
    for (key, value) in &health.learned {
        normalized.insert(key.clone(), value.clone());
    }
    Ok((normalized, health))
}

fn status_of(health: &ConnectionHealth, validated: bool) -> (String, Option<String>) {
    match health.status {
        ConnectionStatus::Healthy if !validated => ("untested".to_string(), health.message.clone()),
        status => (status.as_str().to_string(), health.message.clone()),
    }
}

fn created_response(
    state: &AppState,
    connection: &Connection,
    pending: &PendingAuthorization,
) -> ApiResult<Response> {
    let mut body = connection_body(state, connection, 0)?;
    if let Some(object) = body.as_object_mut() {
        object.remove("api_calls_last_24_hours");
        if let Some(url) = &pending.auth_url {
            object.insert("auth_url".to_string(), Value::String(url.clone()));
        }
        if let Some(code) = &pending.auth_code {
            object.insert("auth_code".to_string(), Value::String(code.clone()));
        }
    }
    Ok(Json(json!({ "data": body })).into_response())
}

/// The budget of a saved connection (`daily_api_calls` when `enforce_api_limits`).
pub(crate) fn budget_for(
    state: &AppState,
    connection_id: Uuid,
    configuration: &Map<String, Value>,
) -> Arc<dyn CallBudget> {
    ConnectionBudget::new(
        state.store().clone(),
        connection_id,
        ConnectionBudget::cap_from_config(configuration),
    )
}

/// For Salesforce `browser`/`code` connections still awaiting authorization (or asked to
/// reconnect): records the pending authorization and updates the status message.
async fn pending_authorization(
    state: &AppState,
    connector: &dyn Connector,
    connection: Connection,
    normalized: &Map<String, Value>,
    health: &ConnectionHealth,
    redirect_url: Option<String>,
    reconnect: bool,
) -> ApiResult<(Connection, PendingAuthorization)> {
    let Some(salesforce) = connector.as_salesforce() else {
        return Ok((connection, PendingAuthorization::default()));
    };
    if health.status == ConnectionStatus::Healthy && !reconnect {
        return Ok((connection, PendingAuthorization::default()));
    }
    let Ok(config) = SalesforceConfig::from_stored(&Value::Object(normalized.clone())) else {
        return Ok((connection, PendingAuthorization::default()));
    };
    match salesforce_oauth::begin_authorization(
        state,
        salesforce,
        connection.organization_id,
        connection.id,
        &config,
        redirect_url,
    )
    .await?
    {
        Ok(pending) => Ok((connection, pending)),
        Err(reason) => {
            let updated = set_status(state, &connection, "unauthorized", Some(reason)).await?;
            Ok((updated, PendingAuthorization::default()))
        }
    }
}

async fn set_status(
    state: &AppState,
    connection: &Connection,
    status: &str,
    status_error: Option<String>,
) -> ApiResult<Connection> {
    Ok(state
        .store()
        .update_connection(
            connection.organization_id,
            connection.id,
            ConnectionWrite {
                name: connection.name.clone(),
                type_id: connection.type_id.clone(),
                configuration: connection.configuration.clone(),
                secrets: connection.secrets.clone(),
                status: status.to_string(),
                status_error,
                healthcheck_interval: connection.healthcheck_interval.clone(),
                policies: connection.policies.clone(),
                actor: connection.updated_by.clone(),
            },
        )
        .await?)
}

/// Stores the outcome of a completed OAuth authorization: the refresh token (encrypted),
/// the username, and a healthy status.
pub(crate) async fn record_authorization(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
    refresh_token: &str,
    username: &str,
) -> ApiResult<()> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    let connector = connector_for(state, &connection.type_id)?;
    let mut configuration = stored_configuration(state, &connection)?;
    configuration.insert(
        "oauth_refresh_token".to_string(),
        Value::String(refresh_token.to_string()),
    );
    if !username.is_empty() {
        configuration.insert("username".to_string(), Value::String(username.to_string()));
    }
    let (public, secrets) = seal(state, connector.as_ref(), configuration)?;
    state
        .store()
        .update_connection(
            organization_id,
            connection_id,
            ConnectionWrite {
                name: connection.name.clone(),
                type_id: connection.type_id.clone(),
                configuration: public,
                secrets,
                status: ConnectionStatus::Healthy.as_str().to_string(),
                status_error: None,
                healthcheck_interval: connection.healthcheck_interval.clone(),
                policies: connection.policies.clone(),
                actor: connection.updated_by.clone(),
            },
        )
        .await?;
    Ok(())
}

/// Records why an authorization failed (the connection stays unauthorized).
pub(crate) async fn record_authorization_failure(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
    reason: &str,
) -> ApiResult<()> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    set_status(state, &connection, "unauthorized", Some(reason.to_string())).await?;
    Ok(())
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let connections = state
        .store()
        .list_connections(caller.organization_id)
        .await?;
    let mut data = Vec::with_capacity(connections.len());
    for connection in &connections {
        let calls = api_calls_last_day(&state, connection.id).await?;
        data.push(connection_body(&state, connection, calls)?);
    }
    Ok(Json(json!({ "data": data })))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let connection = state.store().connection(caller.organization_id, id).await?;
    let calls = api_calls_last_day(&state, connection.id).await?;
    Ok(Json(
        json!({ "data": connection_body(&state, &connection, calls)? }),
    ))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateConnectionRequest>,
) -> ApiResult<Response> {
    require_name(&request.name)?;
    let connector = connector_for(&state, &request.type_id)?;
    let configuration = require_object(&request.configuration)?.clone();
    let healthcheck_interval = health::normalize_interval(request.healthcheck_interval)?;
    let policies = no_policies(request.policies)?;
    let validate = request.validate.unwrap_or(true);
    let (normalized, health) =
        validate_and_check(connector.as_ref(), &configuration, validate, None).await?;
    let (status, status_error) = status_of(&health, validate);
    let (public, secrets) = seal(&state, connector.as_ref(), normalized.clone())?;
    let connection = state
        .store()
        .create_connection(
            caller.organization_id,
            ConnectionWrite {
                name: request.name,
                type_id: request.type_id,
                configuration: public,
                secrets,
                status,
                status_error,
                healthcheck_interval,
                policies,
                actor: Some(caller.api_key_id.to_string()),
            },
        )
        .await?;
    tracing::info!(connection_id = %connection.id, type_id = %connection.type_id, "connection created");
    let (connection, pending) = pending_authorization(
        &state,
        connector.as_ref(),
        connection,
        &normalized,
        &health,
        request.redirect_url,
        false,
    )
    .await?;
    created_response(&state, &connection, &pending)
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<UpdateConnectionRequest>,
) -> ApiResult<Response> {
    let existing = state.store().connection(caller.organization_id, id).await?;
    require_name(&request.name)?;
    if let Some(type_id) = &request.type_id
        && !type_id.is_empty()
        && *type_id != existing.type_id
    {
        return Err(ApiError::unprocessable(format!(
            "type: a connection's type cannot change (it is '{}'); create a new connection instead",
            existing.type_id
        ))
        .with_metadata("field", "type"));
    }
    let connector = connector_for(&state, &existing.type_id)?;
    let stored = stored_configuration(&state, &existing)?;
    let mut configuration = require_object(&request.configuration)?.clone();
    let healthcheck_interval = health::normalize_interval(request.healthcheck_interval)?;
    let policies = no_policies(request.policies)?;
    unmask(&mut configuration, &stored, &connector.sensitive_keys());
    let reconnect = request.reconnect.unwrap_or(false);
    keep_authorization(connector.as_ref(), &mut configuration, &stored, reconnect);
    let validate = request.validate.unwrap_or(true);
    let budget = budget_for(&state, existing.id, &configuration);
    let (mut normalized, health) =
        validate_and_check(connector.as_ref(), &configuration, validate, Some(budget)).await?;
    // Read-only values are Ferry's: keep what was stored unless the check learned anew.
    for key in connector.read_only_keys() {
        if !health.learned.contains_key(&key)
            && let Some(value) = stored.get(&key)
        {
            normalized.insert(key, value.clone());
        }
    }
    let (status, status_error) = status_of(&health, validate);
    let (public, secrets) = seal(&state, connector.as_ref(), normalized.clone())?;
    let connection = state
        .store()
        .update_connection(
            caller.organization_id,
            id,
            ConnectionWrite {
                name: request.name,
                type_id: existing.type_id.clone(),
                configuration: public,
                secrets,
                status,
                status_error,
                healthcheck_interval,
                policies,
                actor: Some(caller.api_key_id.to_string()),
            },
        )
        .await?;
    let (connection, pending) = pending_authorization(
        &state,
        connector.as_ref(),
        connection,
        &normalized,
        &health,
        None,
        reconnect,
    )
    .await?;
    created_response(&state, &connection, &pending)
}

/// A Salesforce `browser`/`code` connection's refresh token was obtained by Ferry, not sent
/// by the caller: a PUT that leaves it out keeps it, unless `reconnect` asks to start over.
fn keep_authorization(
    connector: &dyn Connector,
    configuration: &mut Map<String, Value>,
    stored: &Map<String, Value>,
    reconnect: bool,
) {
    if connector.as_salesforce().is_none() {
        return;
    }
    let delegated = matches!(
        configuration.get("connect_mode").and_then(Value::as_str),
        None | Some("") | Some("browser") | Some("code")
    );
    if reconnect {
        if delegated {
            configuration.remove("oauth_refresh_token");
        }
        return;
    }
    if delegated
        && !configuration.contains_key("oauth_refresh_token")
        && let Some(token) = stored.get("oauth_refresh_token")
    {
        configuration.insert("oauth_refresh_token".to_string(), token.clone());
    }
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    state.store().connection(caller.organization_id, id).await?;
    let dependents = state.store().connection_dependents(id).await?;
    if !dependents.is_empty() && !query.force.unwrap_or(false) {
        let names: Vec<String> = dependents
            .iter()
            .map(|d| format!("{} '{}' ({})", d.kind.replace('_', " "), d.name, d.id))
            .collect();
        return Err(ApiError::unprocessable(format!(
            "connection in use by {}; delete those first or pass force=true",
            names.join(", ")
        ))
        .with_metadata("reason", "connection_in_use")
        .with_metadata("dependents", names));
    }
    state
        .store()
        .delete_connection(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<TestConnectionRequest>,
) -> ApiResult<Json<Value>> {
    let connector = connector_for(&state, &request.type_id)?;
    let mut configuration = require_object(&request.configuration)?.clone();
    let mut budget = None;
    if let Some(connection_id) = request.connection_id {
        let existing = state
            .store()
            .connection(caller.organization_id, connection_id)
            .await?;
        if existing.type_id != request.type_id {
            return Err(ApiError::unprocessable(format!(
                "type: connection {connection_id} is of type '{}', not '{}'",
                existing.type_id, request.type_id
            ))
            .with_metadata("field", "type"));
        }
        let stored = stored_configuration(&state, &existing)?;
        unmask(&mut configuration, &stored, &connector.sensitive_keys());
        let mut merged = stored;
        merged.extend(configuration);
        configuration = merged;
        budget = Some(budget_for(&state, existing.id, &configuration));
    }
    let (_, health) = validate_and_check(connector.as_ref(), &configuration, true, budget).await?;
    Ok(Json(json!({"data": {
        "success": health.status == ConnectionStatus::Healthy,
        "status": health.status.as_str(),
        "message": health.message,
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmask_restores_stored_secrets_only_for_masked_values() {
        let stored: Map<String, Value> =
            serde_json::from_value(json!({"password": "hunter2", "client_key": "pem"})).unwrap();
        let mut incoming: Map<String, Value> = serde_json::from_value(
            json!({"password": MASK, "client_key": "new-pem", "ca_cert": MASK, "hostname": MASK}),
        )
        .unwrap();
        let sensitive = vec![
            "password".to_string(),
            "client_key".to_string(),
            "ca_cert".to_string(),
        ];
        unmask(&mut incoming, &stored, &sensitive);
        assert_eq!(incoming["password"], "hunter2");
        assert_eq!(incoming["client_key"], "new-pem");
        assert!(!incoming.contains_key("ca_cert"));
        // Non-sensitive keys are never touched.
        assert_eq!(incoming["hostname"], MASK);
    }
}
