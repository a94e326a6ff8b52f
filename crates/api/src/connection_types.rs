//! `GET /api/connection_types` and `GET /api/connection_types/{id}` (a bare JSON Schema).

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use ferry_connectors::{ConnectionTypeInfo, Connector};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::routes::{ApiRoutes, Operation};

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/api/connection_types",
                "connections",
                "List connection types",
            ),
            get(list),
        )
        .add(
            Operation::new(
                "get",
                "/api/connection_types/{id}",
                "connections",
                "The JSON Schema of a connection type's configuration (no envelope)",
            )
            .bare_response(json!({"type": "object"})),
            get(schema),
        )
}

/// The `type` object embedded in connection responses (`ConnectionTypeSchema`).
pub fn type_summary(info: &ConnectionTypeInfo) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "logo_url": logo_url(info.id),
        "operations": info.operations,
    })
}

/// Ferry ships no logo assets; the key is present (as null) for clients that read it.
fn logo_url(_id: &str) -> Value {
    Value::Null
}

fn describe(connector: &dyn Connector) -> Value {
    let info = connector.info();
    json!({
        "id": info.id,
        "name": info.name,
        "logo_url": logo_url(info.id),
        "use_oauth": info.use_oauth,
        "capabilities": {
            "source": info.capabilities.source,
            "destination": info.capabilities.destination,
            "enrichment": info.capabilities.enrichment,
            "orchestration": info.capabilities.orchestration,
        },
        "configurationForm": {"jsonschema": connector.config_schema(), "uischema": {}},
        "envConfig": {},
        "initialConfiguration": {},
        "operations": info.operations,
    })
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    let types: Vec<Value> = state
        .registry()
        .all()
        .map(|c| describe(c.as_ref()))
        .collect();
    Json(json!({ "data": types }))
}

async fn schema(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let connector = state.registry().get(&id).ok_or_else(|| {
        ApiError::not_found("connection type").with_metadata("accepted", state.registry().ids())
    })?;
    Ok(Json(connector.config_schema()))
}
