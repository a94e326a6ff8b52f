//! `GET /api/connections/{id}/bulksync/source`: the objects a connection offers as bulk
//! sync schemas (Salesforce: queryable objects, plus Tooling API objects — marked
//! `tooling:` — when the connection's `enable_tooling` is true).

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use ferry_connectors::salesforce::describe_error;
use ferry_connectors::salesforce_catalog::{CatalogObject, list_objects};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};
use crate::salesforce_clients::client_for;

#[derive(Debug, Deserialize)]
struct SourceQuery {
    #[serde(default)]
    include_fields: Option<bool>,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new().add(
        Operation::new(
            "get",
            "/api/connections/{id}/bulksync/source",
            "bulk syncs",
            "Objects the connection offers as bulk sync schemas",
        )
        .query(
            "include_fields",
            "include each schema's fields (one describe call per object)",
        ),
        get(source),
    )
}

fn schema_json(object: &CatalogObject) -> Value {
    let mut schema = json!({"id": object.id, "name": object.name, "tooling": object.tooling});
    if let Some(fields) = &object.fields {
        schema["fields"] = fields
            .iter()
            .map(|field| {
                let association = (!field.reference_to.is_empty()).then(|| {
                    json!({
                        "id": field.name,
                        "name": field.relationship_name,
                        "reference_to": field.reference_to,
                        "referenced_field": "Id",
                    })
                });
                json!({
                    "id": field.name,
                    "name": field.label,
                    "type": field.field_type,
                    "remote_type": field.remote_type,
                    "is_primary_key": field.is_primary_key,
                    "values": field.values.iter().map(|(label, value)| json!({"label": label, "value": value})).collect::<Vec<_>>(),
                    "association": association,
                })
            })
            .collect();
    }
    schema
}

async fn source(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<SourceQuery>,
) -> ApiResult<Json<Value>> {
    let (_, config, client) = client_for(&state, caller.organization_id, id).await?;
    let objects = list_objects(&client, &config, query.include_fields.unwrap_or(false))
        .await
        .map_err(|error| {
            ApiError::unprocessable(format!(
                "could not list Salesforce objects: {}",
                describe_error(&config, &error)
            ))
        })?;
    Ok(Json(json!({"data": {
        "schemas": objects.iter().map(schema_json).collect::<Vec<_>>(),
        "capabilities": {"supports_tracking_fields": true},
        "configuration": {},
    }})))
}
