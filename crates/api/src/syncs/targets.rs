//! Model-sync targets (spec §4.6): discovery on Salesforce and database connections, and
//! what a sync into a database table needs before it is stored or run.
//!
//! - `GET /api/connections/{id}/modelsync/targetobjects`: Salesforce: every createable or
//!   updateable object, with the modes Ferry runs on it. PostgreSQL, MySQL, SQLite: every
//!   table (`schema.table`, `database.table`, `table`) with the database modes, and
//!   `target_creation` (new tables: `table`, plus `schema` / `database`).
//! - `GET /api/connections/{id}/modelsync/target/fields?target=X[&refresh=true]`: the
//!   object's writable fields plus its identity candidates (Salesforce: `Id`, external ids
//!   and idLookup fields such as Email; databases: columns with a single-column unique
//!   index or primary key), with types in Polytomic's vocabulary.
//! - `GET /api/connections/{id}/modelsync/targetobjects/properties/{property}`: the values
//!   of a target-creation property (`schema` on PostgreSQL, `database` on MySQL).
//!
//! A sync into a database names an existing table in `target.object`, or a new one in
//! `target.create` (`{"table": "accounts", "schema": "public"}`) or `target.new_name`
//! (`public.accounts`). A new table is created when the sync is saved, with one column per
//! mapped field typed from the model field (plus the identity column, with a unique
//! index); the stored sync then names it in `target.object`. An existing table must have
//! every mapped column, and for `update`/`updateOrCreate` a unique index on the identity
//! column (422 naming `identity.target` otherwise).

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

use ferry_engine::db_target::{
    self, ColumnClass, DatabaseTarget, Dialect, NewColumn, TableInfo, TargetConnection,
};
use ferry_engine::spec::{
    DATABASE_TARGET_TYPES, DatabaseMode, LEAD_OR_CONTACT, Mode, SyncDocument, TableName,
    compile_database,
};
use ferry_engine::{CompiledSync, RunTarget};
use ferry_store::{Connection, SyncWrite};

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
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/modelsync/targetobjects/properties/{property}",
                "model sync",
                "Values of a target-creation property (database schemas)",
            ),
            get(target_property),
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

/// Whether a sync of `object` in `mode` takes target filters (the engine's rule).
fn target_filters(mode: &str, object: &str) -> bool {
    Mode::parse(mode).is_ok_and(|mode| mode.supports_target_filters(object))
}

fn is_identity(field: &FieldDescribe) -> bool {
    field.name == "Id" || field.external_id || field.id_lookup
}

async fn target_objects(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    if let Some((connection, dialect)) =
        database_connection(&state, caller.organization_id, id).await?
    {
        return database_objects(&state, &connection, dialect).await;
    }
    let (_, _, client) =
        crate::salesforce_clients::client_for(&state, caller.organization_id, id).await?;
    let global = client.describe_global().await.map_err(|error| {
        ApiError::unprocessable(format!("could not list Salesforce objects: {error}"))
            .with_metadata("reason", "salesforce")
    })?;
    let modes_of = |object: &str| -> Vec<Value> {
        MODES
            .iter()
            .filter(|(mode, ..)| object != LEAD_OR_CONTACT || *mode != "remove")
            .map(|(mode, _, _, requires_identity)| {
                json!({"id": mode, "requires_identity": requires_identity,
                       "supports_target_filters": target_filters(mode, object),
                       "supports_per_field_mode": true})
            })
            .collect()
    };
    // Every object but Lead or Contact takes the same modes.
    let modes = modes_of("Contact");
    let mut objects: Vec<Value> = global
        .sobjects
        .iter()
        .filter(|o| (o.createable || o.updateable) && !o.deprecated_and_hidden)
        .map(|o| json!({"id": o.name, "name": o.label, "modes": modes}))
        .collect();
    objects.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    objects.push(json!({"id": LEAD_OR_CONTACT, "name": "Lead or Contact",
                        "modes": modes_of(LEAD_OR_CONTACT)}));
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
    if let Some((connection, dialect)) =
        database_connection(&state, caller.organization_id, id).await?
    {
        return database_fields(&state, &connection, dialect, &target).await;
    }
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
                   "requires_identity": requires_identity,
                   "supports_target_filters": target_filters(mode, &target),
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
            "supports_target_filters": target != LEAD_OR_CONTACT,
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

// ---------------------------------------------------------------------------------------
// Database targets
// ---------------------------------------------------------------------------------------

/// The connection when it is a database a sync can write tables of.
async fn database_connection(
    state: &AppState,
    organization_id: Uuid,
    id: Uuid,
) -> ApiResult<Option<(Connection, Dialect)>> {
    let connection = state.store().connection(organization_id, id).await?;
    Ok(Dialect::of(&connection.type_id).map(|dialect| (connection, dialect)))
}

fn target_error(error: db_target::DbTargetError, field: &str) -> ApiError {
    match error {
        db_target::DbTargetError::UnknownTable(message) => {
            ApiError::field(FieldError::new(field, message))
        }
        other => ApiError::unprocessable(other.to_string()).with_metadata("reason", "target"),
    }
}

async fn open_database(
    state: &AppState,
    connection: &Connection,
    dialect: Dialect,
) -> ApiResult<(TargetConnection, Value)> {
    let configuration = Value::Object(crate::connections::stored_configuration(state, connection)?);
    let opened = tokio::time::timeout(
        crate::models::DESCRIBE_TIMEOUT,
        TargetConnection::open(dialect, &configuration),
    )
    .await
    .map_err(|_| ApiError::unprocessable("connecting to the target database timed out"))?
    .map_err(|error| target_error(error, "target.connection_id"))?;
    Ok((opened, configuration))
}

/// The Polytomic type of a column.
fn column_type_name(data_type: &str) -> &'static str {
    match ColumnClass::of(data_type) {
        ColumnClass::Integer | ColumnClass::Decimal => "number",
        ColumnClass::Boolean => "boolean",
        ColumnClass::Date | ColumnClass::Timestamp => "datetime",
        ColumnClass::Json => "object",
        ColumnClass::Binary => "binary",
        ColumnClass::Text => "string",
    }
}

/// The property naming a new table's schema: `schema` (PostgreSQL), `database` (MySQL).
fn schema_property(dialect: Dialect) -> Option<(&'static str, &'static str)> {
    match dialect {
        Dialect::Postgresql => Some(("schema", "Schema")),
        Dialect::Mysql => Some(("database", "Database")),
        Dialect::Sqlite => None,
    }
}

fn database_modes_brief() -> Vec<Value> {
    DatabaseMode::ALL
        .iter()
        .map(|mode| {
            json!({"id": mode.as_str(), "requires_identity": mode.requires_identity(),
                   "supports_target_filters": mode.supports_target_filters(),
                   "supports_per_field_mode": mode.supports_field_sync_mode()})
        })
        .collect()
}

async fn database_objects(
    state: &AppState,
    connection: &Connection,
    dialect: Dialect,
) -> ApiResult<Json<Value>> {
    let (mut opened, _) = open_database(state, connection, dialect).await?;
    let tables = db_target::list_tables(&mut opened).await;
    opened.close().await;
    let tables = tables.map_err(|error| target_error(error, "id"))?;
    let modes = database_modes_brief();
    let objects: Vec<Value> = tables
        .iter()
        .map(|table| json!({"id": table.to_string(), "name": table.to_string(), "modes": modes}))
        .collect();
    let mut properties = Vec::new();
    if let Some((id, title)) = schema_property(dialect) {
        properties.push(json!({"id": id, "title": title, "enum": true}));
    }
    properties.push(json!({"id": "table", "title": "Table name", "enum": false}));
    Ok(Json(json!({
        "data": objects,
        "target_creation": {"supported": true, "properties": properties},
    })))
}

async fn database_fields(
    state: &AppState,
    connection: &Connection,
    dialect: Dialect,
    target: &str,
) -> ApiResult<Json<Value>> {
    let (mut opened, _) = open_database(state, connection, dialect).await?;
    let wanted = TableName::parse(target, dialect != Dialect::Sqlite);
    let described = async {
        match db_target::resolve_table(&mut opened, &wanted).await? {
            Some(name) => db_target::describe_table(&mut opened, &name)
                .await
                .map(Some),
            None => Ok(None),
        }
    }
    .await;
    opened.close().await;
    let Some(table) = described.map_err(|error| target_error(error, "target"))? else {
        return Err(ApiError::field(FieldError::new(
            "target",
            format!("table '{target}' does not exist or is not visible to the connection"),
        )));
    };
    let fields: Vec<Value> = table
        .columns
        .iter()
        .map(|column| {
            json!({
                "id": column.name,
                "name": column.name,
                "type": column_type_name(&column.data_type),
                "source_type": column.data_type,
                "description": "",
                "required": column.required,
                "createable": true,
                "updateable": true,
                "filterable": true,
                "association": false,
                "encryptable": false,
                "supports_identity": column.unique,
                "identity_functions": if column.unique { json!([{"id": "Equality", "label": "Equality"}]) } else { json!([]) },
            })
        })
        .collect();
    let modes: Vec<Value> = DatabaseMode::ALL
        .iter()
        .map(|mode| {
            json!({"mode": mode.as_str(), "label": mode.as_str(),
                   "description": mode.description(),
                   "requires_identity": mode.requires_identity(),
                   "supports_target_filters": mode.supports_target_filters(),
                   "supports_field_sync_mode": mode.supports_field_sync_mode()})
        })
        .collect();
    Ok(Json(json!({"data": {
        "id": table.name.to_string(),
        "name": table.name.to_string(),
        "refreshed_at": rfc3339(Utc::now()),
        "fields": fields,
        "modes": modes,
        "properties": {
            "supports_field_creation": false,
            "supports_identity_field_creation": false,
            "supports_target_filters": true,
            "supports_field_type_selection": false,
            "supports_field_encryption": false,
            "target_creator": true,
            "requires_configuration": false,
            "mappings_not_required": false,
            "optional_target_mappings": false,
            "does_not_report_operation_counts": false,
            "use_field_names_as_labels": true,
            "new_target_label": "New table",
            "primary_metadata_object": "",
        },
    }})))
}

async fn target_property(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, property)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<Value>> {
    let Some((connection, dialect)) =
        database_connection(&state, caller.organization_id, id).await?
    else {
        return Err(ApiError::not_found("target creation on this connection"));
    };
    let Some((name, title)) = schema_property(dialect).filter(|(name, _)| *name == property) else {
        return Err(ApiError::not_found(&format!(
            "target-creation property '{property}' of this connection"
        )));
    };
    let (mut opened, _) = open_database(&state, &connection, dialect).await?;
    let tables = db_target::list_tables(&mut opened).await;
    opened.close().await;
    let mut schemas: Vec<String> = tables
        .map_err(|error| target_error(error, "id"))?
        .into_iter()
        .filter_map(|t| t.schema)
        .collect();
    schemas.sort();
    schemas.dedup();
    let values: Vec<Value> = schemas
        .iter()
        .map(|s| json!({"label": s, "value": s}))
        .collect();
    Ok(Json(
        json!({"data": {"id": name, "title": title, "enum": true, "values": values}}),
    ))
}

/// The model field documents by name (`type`, `remote_type`).
fn model_field_types(
    model: &ferry_store::Model,
) -> std::collections::HashMap<String, (String, String)> {
    model
        .fields
        .as_array()
        .into_iter()
        .flatten()
        .chain(model.additional_fields.as_array().into_iter().flatten())
        .filter_map(|field| {
            let name = field.get("name")?.as_str()?;
            let field_type = field
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string");
            let remote = field
                .get("remote_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((
                name.to_string(),
                (field_type.to_string(), remote.to_string()),
            ))
        })
        .collect()
}

/// The columns of a new table: one per mapping (typed from its model field; constants are
/// text), plus the identity column when no mapping writes it.
fn new_columns(
    document: &SyncDocument,
    sync: &CompiledSync,
    model: &ferry_store::Model,
) -> Vec<NewColumn> {
    let types = model_field_types(model);
    let column = |name: &str, source: Option<&str>| {
        let (field_type, remote_type) = source
            .and_then(|s| types.get(s).cloned())
            .unwrap_or_else(|| ("string".to_string(), String::new()));
        NewColumn {
            name: name.to_string(),
            field_type,
            remote_type,
        }
    };
    let mut columns: Vec<NewColumn> = document
        .fields
        .iter()
        .chain(document.override_fields.iter().flatten())
        .map(|doc| {
            let source = match (&doc.override_value, &doc.source) {
                (None, Some(source)) => Some(source.field.as_str()),
                _ => None,
            };
            column(&doc.target, source)
        })
        .collect();
    if let (Some(target), Some(identity)) = (&sync.identity_target, &document.identity)
        && !columns.iter().any(|c| c.name.eq_ignore_ascii_case(target))
    {
        columns.insert(0, column(target, Some(identity.source.field.as_str())));
    }
    columns
}

/// Validates a sync into a database table, creating the table when the document asks for
/// a new one, and returns what to store (`target.object` then names the table).
pub(crate) async fn prepare_database(
    state: &AppState,
    caller: &Caller,
    document: SyncDocument,
    connection: Connection,
) -> ApiResult<SyncWrite> {
    let Some(dialect) = Dialect::of(&connection.type_id) else {
        return Err(ApiError::internal("not a database connection"));
    };
    let model = super::load_model(state, caller.organization_id, &document).await?;
    let (compiled, database) =
        compile_database(&document, &super::model_info(&model), &connection.type_id)
            .map_err(ApiError::field)?;
    super::check_schedule(state, caller, &document).await?;
    let (mut opened, _) = open_database(state, &connection, dialect).await?;
    let result = async {
        let object_field = if database.create {
            "target.create.table"
        } else {
            "target.object"
        };
        let resolved = db_target::resolve_table(&mut opened, &database.table)
            .await
            .map_err(|error| target_error(error, object_field))?;
        let table: TableInfo = match (resolved, database.create) {
            (Some(name), _) => db_target::describe_table(&mut opened, &name)
                .await
                .map_err(|error| target_error(error, object_field))?,
            (None, false) => {
                let known = db_target::list_tables(&mut opened)
                    .await
                    .map_err(|error| target_error(error, object_field))?;
                let listed: Vec<String> = known.iter().take(10).map(ToString::to_string).collect();
                return Err(ApiError::field(FieldError::new(
                    "target.object",
                    format!(
                        "table '{}' does not exist or is not visible to the connection \
                         (tables: {}); to create it, use target.create or target.new_name",
                        database.table,
                        if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
                    ),
                )));
            }
            (None, true) => {
                let columns = new_columns(&document, &compiled, &model);
                // Snapshots repeat identities run after run: no unique index for them.
                let unique = match database.mode {
                    DatabaseMode::Snapshot => None,
                    _ => compiled.identity_target.as_deref(),
                };
                let mut table =
                    db_target::create_table(&mut opened, &database.table, &columns, unique)
                        .await
                        .map_err(|error| target_error(error, object_field))?;
                if database.mode == DatabaseMode::Snapshot {
                    table = db_target::ensure_snapshot_column(&mut opened, table)
                        .await
                        .map_err(|error| target_error(error, object_field))?;
                }
                tracing::info!(table = %table.name, columns = columns.len(), "target table created");
                table
            }
        };
        db_target::check_table(&document, &compiled, &database, &table)
            .map_err(ApiError::field)?;
        Ok(table)
    }
    .await;
    opened.close().await;
    let table = result?;

    let mut stored = document.clone();
    stored.target.object = Some(table.name.to_string());
    stored.target.create = None;
    stored.target.new_name = None;
    Ok(SyncWrite {
        name: document.name.trim().to_string(),
        mode: database.mode.as_str().to_string(),
        target_connection_id: connection.id,
        target_object: Some(table.name.to_string()),
        model_ids: vec![model.id],
        active: document.active.unwrap_or(false),
        document: serde_json::to_value(&stored).map_err(ApiError::internal)?,
        actor: Some(caller.api_key_id.to_string()),
    })
}

/// What an execution writes to, with the compiled sync and its model: the Salesforce
/// connection's client, or the database table (checked again when the run starts).
pub(crate) async fn run_target(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
    document: &SyncDocument,
) -> ApiResult<(CompiledSync, ferry_store::Model, RunTarget)> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    if let Some(dialect) = Dialect::of(&connection.type_id)
        && DATABASE_TARGET_TYPES.contains(&connection.type_id.as_str())
    {
        let model = super::load_model(state, organization_id, document).await?;
        let (compiled, database) =
            compile_database(document, &super::model_info(&model), &connection.type_id)
                .map_err(ApiError::field)?;
        let configuration = Value::Object(crate::connections::stored_configuration(
            state,
            &connection,
        )?);
        let target = RunTarget::Database(DatabaseTarget {
            dialect,
            connection: configuration,
            sync: database,
        });
        return Ok((compiled, model, target));
    }
    let (compiled, model) = super::compile_document(state, organization_id, document).await?;
    let (_, _, client) =
        crate::salesforce_clients::client_for(state, organization_id, connection_id).await?;
    Ok((compiled, model, RunTarget::Salesforce(client)))
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
