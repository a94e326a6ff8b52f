//! Salesforce clients for saved connections, cached per connection.
//!
//! A client holds an access token; building one costs a token request, so clients are kept
//! per connection and rebuilt when the connection changes (its `updated_at` moves). Every
//! client's calls count against the connection's daily budget.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_connectors::salesforce::{NotAuthorized, SalesforceConfig, describe_error};
use ferry_salesforce::SalesforceClient;
use ferry_store::Connection;
use serde_json::Value;
use uuid::Uuid;

use crate::AppState;
use crate::connections::{budget_for, stored_configuration};
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
    let client_config =
        connector
            .client_config(&config, budget)
            .map_err(|NotAuthorized(reason)| {
                ApiError::unprocessable(format!("the connection cannot call Salesforce: {reason}"))
                    .with_metadata("reason", "not_authorized")
            })?;
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
