//! Who the caller is: `GET /api/me` and `GET /api/organization`.

use axum::Json;
use axum::routing::get;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// `GET /api/me` payload. Ferry's API keys belong to an organization, not to a user, so
/// `id` and `email` are null and `is_organization` is true.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Identity {
    /// User id (null for organization keys).
    pub id: Option<Uuid>,
    /// User email (null for organization keys).
    pub email: Option<String>,
    /// Caller's organization.
    pub organization_id: Uuid,
    /// Its name.
    pub organization_name: String,
    /// Legacy role.
    pub role: String,
    /// Whether the key belongs to a user.
    pub is_user: bool,
    /// Whether the key belongs to an organization.
    pub is_organization: bool,
    /// Whether the key is a partner key.
    pub is_partner: bool,
    /// Whether the key is a system key.
    pub is_system: bool,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new("get", "/api/me", "identity", "The caller's identity")
                .response::<Identity>(),
            get(me),
        )
        .add(
            Operation::new(
                "get",
                "/api/organization",
                "identity",
                "The caller's organization",
            ),
            get(organization),
        )
}

async fn me(caller: Caller) -> Json<Value> {
    let identity = Identity {
        id: None,
        email: None,
        organization_id: caller.organization_id,
        organization_name: caller.organization_name,
        role: "admin".to_string(),
        is_user: false,
        is_organization: true,
        is_partner: false,
        is_system: false,
    };
    Json(json!({ "data": identity }))
}

async fn organization(caller: Caller) -> Json<Value> {
    Json(json!({"data": {
        "id": caller.organization_id,
        "name": caller.organization_name,
        "issuer": null,
        "sso_domain": null,
        "sso_org_id": null,
    }}))
}
