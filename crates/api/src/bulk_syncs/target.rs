//! The bulk-sync destination: `GET /api/connections/{id}/bulksync/target` and the
//! validation of a sync's `destination_configuration`.
//!
//! One typed struct, [`DestinationConfiguration`], is both the JSON Schema the endpoint
//! serves and the parser that validates requests (unknown keys rejected), so the two cannot
//! disagree. Destinations are PostgreSQL, MySQL and SQLite connections.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use ferry_core::FieldError;
use ferry_engine::bulk::{DeleteHandling, DestinationMode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// Connection types a bulk sync can write to.
pub const DESTINATION_TYPES: [&str; 3] = ["postgresql", "mysql", "sqlite"];

/// Resync modes Ferry performs (`rebuild`, which drops tables, is not offered: Ferry merges
/// rows and never drops a destination table).
pub const RESYNC_MODES: [&str; 2] = ["refetch", "resync"];

/// Where and how a bulk sync writes (`destination_configuration`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfiguration {
    /// PostgreSQL schema or MySQL database the tables are written to (default: `public` /
    /// the connection's database). Not available for SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Prepended to every destination table name (letters, digits and `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// `replicate` (tables mirror the source) or `snapshot` (also a `<table>_snapshots`
    /// history table with every row as of each run). Default: the sync's `mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// How records deleted in Salesforce land: `hard` (the row is deleted, the default) or
    /// `soft` (the row stays and `_ferry_deleted_at` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<String>,
    /// Polytomic compatibility: mirror source schemas (database sources only; must be
    /// false for Salesforce sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_schemas: Option<bool>,
    /// Polytomic compatibility: advanced options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<AdvancedConfiguration>,
}

/// `destination_configuration.advanced`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvancedConfiguration {
    /// Same as the top-level `table_prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// Truncate existing tables before the first load (not supported: Ferry merges rows
    /// and never truncates a destination table; only `false` is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_existing: Option<bool>,
}

/// A validated destination configuration, as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Schema / database.
    pub schema: Option<String>,
    /// Table prefix.
    pub table_prefix: Option<String>,
    /// Mode.
    pub mode: DestinationMode,
    /// Delete handling.
    pub deletes: DeleteHandling,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Parses a sync mode (`replicate` / `snapshot`); errors name `field`.
pub fn parse_mode(field: &str, mode: &str) -> Result<DestinationMode, FieldError> {
    match mode {
        "replicate" => Ok(DestinationMode::Replicate),
        "snapshot" => Ok(DestinationMode::Snapshot),
        other => Err(FieldError::new(
            field,
            format!("'{other}' is not a bulk sync mode; accepted: replicate, snapshot"),
        )),
    }
}

/// Validates `destination_configuration` for a destination of type `type_id`. `mode` is the
/// sync's top-level `mode`, if given. Returns the normalized document and its typed form.
/// Errors name the field (`destination_configuration.table_prefix`, ...).
pub fn validate(
    type_id: &str,
    configuration: &Value,
    mode: Option<&str>,
) -> Result<(DestinationConfiguration, Destination), FieldError> {
    const FIELD: &str = "destination_configuration";
    let parsed: DestinationConfiguration = match configuration {
        Value::Null => DestinationConfiguration::default(),
        Value::Object(_) => serde_json::from_value(configuration.clone())
            .map_err(|error| FieldError::new(FIELD, error.to_string()))?,
        _ => return Err(FieldError::new(FIELD, "must be an object")),
    };
    let schema = non_empty(&parsed.schema);
    if let Some(schema) = &schema {
        if type_id == "sqlite" {
            return Err(FieldError::new(
                format!("{FIELD}.schema"),
                "SQLite destinations have no schemas; omit the key",
            ));
        }
        if schema.len() > 63 || schema.contains('\0') {
            return Err(FieldError::new(
                format!("{FIELD}.schema"),
                "must be at most 63 characters, without NUL",
            ));
        }
    }
    let advanced = parsed.advanced.clone().unwrap_or_default();
    let top_prefix = non_empty(&parsed.table_prefix);
    let advanced_prefix = non_empty(&advanced.table_prefix);
    let table_prefix = match (top_prefix, advanced_prefix) {
        (Some(top), Some(nested)) if top != nested => {
            return Err(FieldError::new(
                format!("{FIELD}.advanced.table_prefix"),
                "differs from table_prefix; give one of them",
            ));
        }
        (Some(prefix), _) | (None, Some(prefix)) => Some(prefix),
        (None, None) => None,
    };
    if let Some(prefix) = &table_prefix
        && (prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(FieldError::new(
            format!("{FIELD}.table_prefix"),
            "may hold at most 32 letters, digits and underscores",
        ));
    }
    if advanced.truncate_existing == Some(true) {
        return Err(FieldError::new(
            format!("{FIELD}.advanced.truncate_existing"),
            "is not supported: Ferry merges rows by Id and never truncates a destination table",
        ));
    }
    if parsed.mirror_schemas == Some(true) {
        return Err(FieldError::new(
            format!("{FIELD}.mirror_schemas"),
            "applies to database sources only; a Salesforce source has no schemas to mirror",
        ));
    }
    let config_mode = non_empty(&parsed.mode);
    let mode_text = match (mode.map(str::trim).filter(|m| !m.is_empty()), config_mode) {
        (Some(top), Some(nested)) if top != nested => {
            return Err(FieldError::new(
                format!("{FIELD}.mode"),
                format!("'{nested}' differs from the sync's mode '{top}'"),
            ));
        }
        (Some(top), _) => top.to_string(),
        (None, Some(nested)) => nested,
        (None, None) => "replicate".to_string(),
    };
    let destination_mode = parse_mode(
        if parsed.mode.is_some() {
            "destination_configuration.mode"
        } else {
            "mode"
        },
        &mode_text,
    )?;
    let deletes = match non_empty(&parsed.deletes).as_deref() {
        None | Some("hard") => DeleteHandling::Hard,
        Some("soft") => DeleteHandling::SoftColumn,
        Some(other) => {
            return Err(FieldError::new(
                format!("{FIELD}.deletes"),
                format!("'{other}' is not accepted; accepted: hard, soft"),
            ));
        }
    };
    let normalized = DestinationConfiguration {
        schema: schema.clone(),
        table_prefix: table_prefix.clone(),
        mode: Some(mode_text),
        deletes: Some(
            match deletes {
                DeleteHandling::Hard => "hard",
                DeleteHandling::SoftColumn => "soft",
            }
            .to_string(),
        ),
        mirror_schemas: None,
        advanced: None,
    };
    Ok((
        normalized,
        Destination {
            schema,
            table_prefix,
            mode: destination_mode,
            deletes,
        },
    ))
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new().add(
        Operation::new(
            "get",
            "/api/connections/{id}/bulksync/target",
            "bulk syncs",
            "The destination configuration schema, modes and resync modes of a connection",
        ),
        get(target),
    )
}

/// The modes every destination supports.
fn modes() -> Value {
    json!([
        {
            "id": "replicate",
            "label": "Replicate",
            "description": "Tables mirror the source objects: one row per record, merged on Id",
            "requires_identity": false,
            "supports_field_sync_mode": false,
            "supports_target_filters": false,
        },
        {
            "id": "snapshot",
            "label": "Snapshot",
            "description": "Replicate, plus a <table>_snapshots history table holding every \
                            row as of each run",
            "requires_identity": false,
            "supports_field_sync_mode": false,
            "supports_target_filters": false,
        },
    ])
}

async fn target(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let connection = state.store().connection(caller.organization_id, id).await?;
    if !DESTINATION_TYPES.contains(&connection.type_id.as_str()) {
        return Err(ApiError::bad_request(format!(
            "connections of type '{}' cannot be bulk sync destinations; accepted: {}",
            connection.type_id,
            DESTINATION_TYPES.join(", ")
        )));
    }
    let mut configuration =
        ferry_connectors::json_schema_for::<DestinationConfiguration>("bulk_destination");
    if connection.type_id == "sqlite"
        && let Some(properties) = configuration
            .get_mut("properties")
            .and_then(Value::as_object_mut)
    {
        properties.remove("schema");
    }
    Ok(Json(json!({"data": {
        "configuration": configuration,
        "modes": modes(),
        "supported_resync_modes": RESYNC_MODES,
    }})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_replicate_with_hard_deletes() {
        let (normalized, destination) = validate("postgresql", &json!({}), None).unwrap();
        assert_eq!(destination.mode, DestinationMode::Replicate);
        assert_eq!(destination.deletes, DeleteHandling::Hard);
        assert_eq!(normalized.mode.as_deref(), Some("replicate"));
    }

    #[test]
    fn polytomic_shape_is_accepted() {
        let (_, destination) = validate(
            "postgresql",
            &json!({"schema": "sf", "mirror_schemas": false,
                    "advanced": {"table_prefix": "raw_", "truncate_existing": false}}),
            Some("snapshot"),
        )
        .unwrap();
        assert_eq!(destination.schema.as_deref(), Some("sf"));
        assert_eq!(destination.table_prefix.as_deref(), Some("raw_"));
        assert_eq!(destination.mode, DestinationMode::Snapshot);
    }

    #[test]
    fn errors_name_the_field() {
        let field =
            |config: Value, type_id: &str| validate(type_id, &config, None).unwrap_err().field;
        assert_eq!(
            field(json!({"table_prefix": "a-b"}), "postgresql"),
            "destination_configuration.table_prefix"
        );
        assert_eq!(
            field(json!({"deletes": "maybe"}), "mysql"),
            "destination_configuration.deletes"
        );
        assert_eq!(
            field(json!({"schema": "x"}), "sqlite"),
            "destination_configuration.schema"
        );
        assert_eq!(
            field(json!({"mode": "mirror"}), "sqlite"),
            "destination_configuration.mode"
        );
        assert_eq!(
            field(json!({"unknown": 1}), "postgresql"),
            "destination_configuration"
        );
        assert_eq!(
            validate(
                "postgresql",
                &json!({"mode": "snapshot"}),
                Some("replicate")
            )
            .unwrap_err()
            .field,
            "destination_configuration.mode"
        );
    }
}
