//! Public, unauthenticated routes: the OpenAPI document and a liveness probe.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;
use crate::routes::{ApiRoutes, Operation, openapi_document};

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/openapi.json",
                "meta",
                "The OpenAPI 3.1 document of this API",
            )
            .public()
            .bare_response(json!({"type": "object"})),
            get(openapi),
        )
        .add(
            Operation::new("get", "/healthz", "meta", "Liveness and store connectivity")
                .public()
                .bare_response(json!({"type": "object"})),
            get(healthz),
        )
        .merge(crate::salesforce_oauth::routes())
}

async fn openapi() -> Json<Value> {
    Json(openapi_document(&crate::operations()))
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, crate::error::ApiError> {
    state.store().count_organizations().await?;
    Ok(Json(
        json!({"status": "ok", "store": state.store().backend_name()}),
    ))
}
