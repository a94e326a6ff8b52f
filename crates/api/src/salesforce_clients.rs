//! Salesforce clients for saved connections, cached per connection.
//!
//! A client holds an access token; building one costs a token request, so clients are kept
//! per connection and rebuilt when the connection changes (its `updated_at` moves). Every
//! client's calls count against the connection's daily budget.
//!
//! A connected app with refresh-token rotation answers every refresh with a new refresh
//! token and retires the old one; the client keeps using the new one and the callback set
//! here writes it into the connection's encrypted secrets (without touching `updated_at`,
//! so the cached client stays), so a restart or another process does not present a
//! retired token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_connectors::salesforce::{NotAuthorized, SalesforceConfig, describe_error};
use ferry_salesforce::auth::TokenResponse;
use ferry_salesforce::{SalesforceClient, TokenCallback};
use ferry_store::Connection;
use serde_json::Value;
use uuid::Uuid;

use crate::AppState;
use crate::connections::{budget_for, seal, stored_configuration};
use crate::error::{ApiError, ApiResult};

/// Cached clients by connection id, with the `updated_at` they were built for.
#[derive(Debug, Default)]
pub struct ClientCache {
    clients: Mutex<HashMap<Uuid, (i64, SalesforceClient)>>,
}

impl ClientCache {
    fn get(&self, id: Uuid, version: i64) -> Option<SalesforceClient> {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .get(&id)
            .filter(|(built_for, _)| *built_for == version)
            .map(|(_, client)| client.clone())
    }

    fn put(&self, id: Uuid, version: i64, client: SalesforceClient) {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (version, client));
    }
}

/// The connection and a ready client for it.
pub async fn client_for(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
) -> ApiResult<(Connection, SalesforceConfig, SalesforceClient)> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    let connector = state
        .registry()
        .get(&connection.type_id)
        .and_then(|c| c.as_salesforce().cloned())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "connection {connection_id} is a '{}' connection; this operation needs a Salesforce connection",
                connection.type_id
            ))
        })?;
    let stored = stored_configuration(state, &connection)?;
    let config = SalesforceConfig::from_stored(&Value::Object(stored.clone()))
        .map_err(|error| ApiError::internal(format!("stored salesforce configuration: {error}")))?;
    let version = connection.updated_at.timestamp_millis();
    if let Some(client) = state.salesforce_clients().get(connection.id, version) {
        return Ok((connection, config, client));
    }
    let budget = budget_for(state, connection.id, &stored);
    let mut client_config =
        connector
            .client_config(&config, budget)
            .map_err(|NotAuthorized(reason)| {
                ApiError::unprocessable(format!("the connection cannot call Salesforce: {reason}"))
                    .with_metadata("reason", "not_authorized")
            })?;
    client_config.on_token = Some(persist_rotated_tokens(
        state,
        &connection,
        config
            .oauth_refresh_token
            .as_ref()
            .map(|t| t.expose().to_string()),
    ));
    let client = SalesforceClient::connect(client_config)
        .await
        .map_err(|error| {
            ApiError::unprocessable(format!(
                "could not authenticate with Salesforce: {}",
                describe_error(&config, &error)
            ))
            .with_metadata("reason", "authentication_failed")
        })?;
    state
        .salesforce_clients()
        .put(connection.id, version, client.clone());
    Ok((connection, config, client))
}

/// The token callback of a connection's client: when Salesforce answers a refresh token
/// other than the one last stored, store it (on a background task; the callback itself
/// runs inside the client's refresh). The task always writes the newest token seen, so
/// quick successive rotations cannot leave an older one stored.
fn persist_rotated_tokens(
    state: &AppState,
    connection: &Connection,
    stored_token: Option<String>,
) -> TokenCallback {
    let latest = Arc::new(Mutex::new(stored_token));
    let writes = Arc::new(tokio::sync::Mutex::new(()));
    let state = state.clone();
    let (organization_id, connection_id) = (connection.organization_id, connection.id);
    Arc::new(move |token: &TokenResponse| {
        let Some(rotated) = &token.refresh_token else {
            return;
        };
        {
            let mut latest = latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if latest.as_deref() == Some(rotated.expose()) {
                return;
            }
            *latest = Some(rotated.expose().to_string());
        }
        let (state, latest, writes) = (state.clone(), latest.clone(), writes.clone());
        state.clone().background().spawn(async move {
            let _serialized = writes.lock().await;
            let token = latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Some(token) = token else { return };
            match store_refresh_token(&state, organization_id, connection_id, token).await {
                Ok(()) => tracing::info!(%connection_id, "stored the refresh token Salesforce rotated"),
                Err(error) => tracing::error!(%connection_id, %error, "storing a rotated refresh token failed"),
            }
        });
    })
}

async fn store_refresh_token(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
    token: String,
) -> ApiResult<()> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    let connector = state
        .registry()
        .get(&connection.type_id)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("unknown type {}", connection.type_id)))?;
    let mut configuration = stored_configuration(state, &connection)?;
    configuration.insert("oauth_refresh_token".to_string(), Value::String(token));
    let (_, secrets) = seal(state, connector.as_ref(), configuration)?;
    state
        .store()
        .replace_connection_secrets(organization_id, connection_id, secrets)
        .await?;
    Ok(())
}
