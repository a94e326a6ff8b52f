//! Model-sync target discovery on Salesforce connections (spec §4.6):
//!
//! - `GET /api/connections/{id}/modelsync/targetobjects`: every createable or updateable
//!   object, with the modes Ferry runs on it.
//! - `GET /api/connections/{id}/modelsync/target/fields?target=X[&refresh=true]`: the
//!   object's writable fields plus its identity candidates (`Id`, external ids and idLookup
//!   fields such as Email), with types in Polytomic's vocabulary.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use chrono::Utc;
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_salesforce::FieldDescribe;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use ferry_engine::spec::LEAD_OR_CONTACT;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// The routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/modelsync/targetobjects",
                "model sync",
                "Salesforce objects a model sync can write",
            ),
            get(target_objects),
        )
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/modelsync/target/fields",
                "model sync",
                "Fields of a target object (types, writability, identity candidates)",
            )
            .query("target", "the object, e.g. Contact")
            .query(
                "refresh",
                "describe the object again instead of using the cache",
            ),
            get(target_fields),
        )
}

/// Modes Ferry runs on Salesforce objects: `(id, label, description, requires_identity)`.
const MODES: [(&str, &str, &str, bool); 4] = [
    ("create", "Create", "Insert new records only", false),
    ("update", "Update", "Update matching records only", true),
    (
        "updateOrCreate",
        "Update or create",
        "Update matching records, create the rest",
        true,
    ),
    ("remove", "Remove", "Delete matching records", true),
];

/// A Salesforce field type in Polytomic's vocabulary.
pub fn polytomic_type(salesforce_type: &str) -> &'static str {
    match salesforce_type {
        "double" | "currency" | "percent" | "int" | "long" => "number",
        "boolean" => "boolean",
        "date" | "datetime" => "datetime",
        "address" | "location" => "object",
        "base64" => "binary",
        "string" | "textarea" | "email" | "phone" | "url" | "picklist" | "multipicklist" | "id"
        | "reference" | "combobox" | "time" | "encryptedstring" => "string",
        _ => "unknown",
    }
}

fn is_identity(field: &FieldDescribe) -> bool {
    field.name == "Id" || field.external_id || field.id_lookup
}

async fn target_objects(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let (_, _, client) =
        crate::salesforce_clients::client_for(&state, caller.organization_id, id).await?;
    let global = client.describe_global().await.map_err(|error| {
        ApiError::unprocessable(format!("could not list Salesforce objects: {error}"))
            .with_metadata("reason", "salesforce")
    })?;
    let modes: Vec<Value> = MODES
        .iter()
        .map(|(mode, _, _, requires_identity)| {
            json!({"id": mode, "requires_identity": requires_identity,
                   "supports_target_filters": false, "supports_per_field_mode": true})
        })
        .collect();
    let mut objects: Vec<Value> = global
        .sobjects
        .iter()
        .filter(|o| (o.createable || o.updateable) && !o.deprecated_and_hidden)
        .map(|o| json!({"id": o.name, "name": o.label, "modes": modes}))
        .collect();
    objects.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let lead_or_contact_modes: Vec<Value> = modes
        .iter()
        .filter(|m| m["id"] != "remove")
        .cloned()
        .collect();
    objects.push(json!({"id": LEAD_OR_CONTACT, "name": "Lead or Contact",
                        "modes": lead_or_contact_modes}));
    Ok(Json(json!({
        "data": objects,
        "target_creation": {"supported": false, "properties": []},
    })))
}

#[derive(Debug, Deserialize)]
struct FieldsQuery {
    target: Option<String>,
    refresh: Option<bool>,
}

async fn target_fields(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<FieldsQuery>,
) -> ApiResult<Json<Value>> {
    let Some(target) = query.target.filter(|t| !t.trim().is_empty()) else {
        return Err(ApiError::field(FieldError::new(
            "target",
            "is required (an object such as Contact)",
        )));
    };
    let (_, _, client) =
        crate::salesforce_clients::client_for(&state, caller.organization_id, id).await?;
    let objects: Vec<&str> = if target == LEAD_OR_CONTACT {
        vec!["Contact", "Lead"]
    } else {
        vec![target.as_str()]
    };
    let mut described = Vec::new();
    for object in &objects {
        if query.refresh == Some(true) {
            client.invalidate_describe(Some(object));
        }
        let describe = client.describe(object).await.map_err(|error| {
            if error.status() == Some(404)
                || matches!(error, ferry_salesforce::SalesforceError::InvalidInput(_))
            {
                ApiError::field(FieldError::new(
                    "target",
                    format!("'{target}' is not an object of this Salesforce org"),
                ))
            } else {
                ApiError::unprocessable(format!("could not describe {object}: {error}"))
                    .with_metadata("reason", "salesforce")
            }
        })?;
        described.push(describe);
    }
    // Lead or Contact: every field of either object, identities only where both agree.
    let mut merged: Vec<FieldDescribe> = Vec::new();
    for (index, describe) in described.iter().enumerate() {
        for field in &describe.fields {
            match merged.iter_mut().find(|f| f.name == field.name) {
                Some(existing) => {
                    existing.createable |= field.createable;
                    existing.updateable |= field.updateable;
                }
                None => {
                    let mut field = field.clone();
                    if index > 0 {
                        field.external_id = false;
                        field.id_lookup = false;
                    }
                    merged.push(field);
                }
            }
        }
        if index > 0 {
            for field in &mut merged {
                if !describe.fields.iter().any(|f| f.name == field.name) && field.name != "Id" {
                    field.external_id = false;
                    field.id_lookup = false;
                }
            }
        }
    }
    let (id, name) = if target == LEAD_OR_CONTACT {
        (LEAD_OR_CONTACT.to_string(), "Lead or Contact".to_string())
    } else {
        (described[0].name.clone(), described[0].label.clone())
    };
    let fields: Vec<Value> = merged
        .iter()
        .filter(|f| f.createable || f.updateable || is_identity(f))
        .map(|f| {
            let identity = is_identity(f) && f.filterable;
            json!({
                "id": f.name,
                "name": f.label,
                "type": polytomic_type(&f.field_type),
                "source_type": f.field_type,
                "description": f.inline_help_text.clone().unwrap_or_default(),
                "required": f.required_on_create(),
                "createable": f.createable,
                "updateable": f.updateable,
                "filterable": f.filterable,
                "association": f.field_type == "reference",
                "encryptable": false,
                "supports_identity": identity,
                "identity_functions": if identity { json!([{"id": "Equality", "label": "Equality"}]) } else { json!([]) },
            })
        })
        .collect();
    let modes: Vec<Value> = MODES
        .iter()
        .filter(|(mode, ..)| target != LEAD_OR_CONTACT || *mode != "remove")
        .map(|(mode, label, description, requires_identity)| {
            json!({"mode": mode, "label": label, "description": description,
                   "requires_identity": requires_identity, "supports_target_filters": false,
                   "supports_field_sync_mode": true})
        })
        .collect();
    Ok(Json(json!({"data": {
        "id": id,
        "name": name,
        "refreshed_at": rfc3339(Utc::now()),
        "fields": fields,
        "modes": modes,
        "properties": {
            "supports_field_creation": false,
            "supports_identity_field_creation": false,
            "supports_target_filters": false,
            "supports_field_type_selection": false,
            "supports_field_encryption": false,
            "target_creator": false,
            "requires_configuration": true,
            "mappings_not_required": false,
            "optional_target_mappings": false,
            "does_not_report_operation_counts": false,
            "use_field_names_as_labels": false,
        },
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_polytomic() {
        assert_eq!(polytomic_type("email"), "string");
        assert_eq!(polytomic_type("currency"), "number");
        assert_eq!(polytomic_type("datetime"), "datetime");
        assert_eq!(polytomic_type("boolean"), "boolean");
        assert_eq!(polytomic_type("anyType"), "unknown");
    }
}
