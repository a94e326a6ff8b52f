//! Models (spec `polytomic-api.md` §3) and model-source discovery (§4.6):
//!
//! - `GET/POST /api/models`, `GET/PUT/DELETE /api/models/{id}`
//! - `GET /api/models/{id}/sample`, `POST /api/model-preview`
//! - `GET /api/connections/{id}/modelsync/source` and `.../source/fields`
//!
//! A model selects rows of a source connection (PostgreSQL, MySQL, SQLite) with exactly one
//! of `configuration.table`, `configuration.view` or `configuration.query`; a Salesforce
//! model (`ferry_connectors::salesforce_source`) reads an object (`table`) or a SOQL
//! `query` (which wins when both are given, as in the published example), with
//! `include_deleted`, and its `identifier` defaults to `Id`. Creating,
//! replacing or previewing a model describes the selection through the connector's
//! [`ModelSource`] (the query is prepared, never run in full) and one sample row gives each
//! field its `example`; a query the database rejects answers 422 with the database's own
//! message, naming the configuration key. Stored fields keep an `enabled` flag (all are
//! enabled unless `fields` names a subset); responses list the enabled ones plus the
//! `additional_fields` (`user_added: true`). Field ids stay stable across updates by name.
//!
//! `async=true` is answered with 400: every operation here is synchronous and bounded
//! (describe 30 s, sample 10 s), and there is no job endpoint to poll yet.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use chrono::Utc;
use ferry_connectors::salesforce_source::{SalesforceModelSource, parse_model_config};
use ferry_connectors::{
    ModelSource, RelationKind, RowBatch, Selection, SkipQuestion, SourceError, SourceField,
};
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_store::{Connection, Model, ModelWrite};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// How long describing a selection (or listing tables) may take.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a synchronous sample may take (spec §3: within 10 s).
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows in a model sample.
pub const SAMPLE_ROWS: usize = 10;

/// The configuration keys that select what a model reads, in the order they are reported.
const SELECTION_KEYS: [&str; 3] = ["query", "table", "view"];

/// The keys that select what a Salesforce model reads.
const SALESFORCE_SELECTION_KEYS: [&str; 2] = ["query", "table"];

/// `POST /api/models`, `POST /api/model-preview` and `PUT /api/models/{id}` body
/// (Polytomic's `CreateModelRequest` / `UpdateModelRequest`).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ModelRequest {
    /// The source connection (PostgreSQL, MySQL, SQLite or Salesforce).
    pub connection_id: Uuid,
    /// Display name.
    pub name: String,
    /// Databases: exactly one of `{"table": "schema.table"}`, `{"view": "schema.view"}` or
    /// `{"query": "SELECT ..."}`. Salesforce: `{"table": "Contact"}` or
    /// `{"query": "SELECT Id FROM Contact"}` (the query wins when both are given), plus
    /// `include_deleted`.
    pub configuration: Value,
    /// Names of the fields to enable (default: all).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// User-defined extra fields.
    #[serde(default)]
    pub additional_fields: Option<Vec<AdditionalField>>,
    /// The model's unique-key field; must be one of its fields.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Change-tracking columns; each must be one of the model's fields.
    #[serde(default)]
    pub tracking_columns: Option<Vec<String>>,
    /// Label ids.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Joins to other models.
    #[serde(default)]
    pub relations: Option<Vec<ModelRelation>>,
    /// Enrichment (not supported: must be absent or null).
    #[serde(default)]
    pub enricher: Option<Value>,
    /// Permission policy ids.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Partner callers only; ignored for organization keys.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    /// PUT only: re-discover the fields (Ferry always does).
    #[serde(default)]
    pub refresh: Option<bool>,
}

/// A user-defined field (`ModelModelFieldRequest`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct AdditionalField {
    /// Field name.
    pub name: String,
    /// Display label.
    pub label: String,
    /// Polytomic type (`string`, `number`, ...).
    #[serde(rename = "type")]
    pub field_type: String,
    /// An example value.
    #[serde(default)]
    pub example: Option<Value>,
}

/// A join to another model (`ModelRelation`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ModelRelation {
    /// A field of this model.
    pub from: String,
    /// The other model's field.
    pub to: ModelRelationTo,
}

/// The far side of a relation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ModelRelationTo {
    /// The other model.
    pub model_id: Uuid,
    /// A field of the other model.
    pub field: String,
}

#[derive(Debug, Deserialize)]
struct AsyncQuery {
    #[serde(default, rename = "async")]
    run_async: Option<bool>,
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new("get", "/api/models", "models", "List models"),
            get(list),
        )
        .add(
            Operation::new("post", "/api/models", "models", "Create a model")
                .request::<ModelRequest>()
                .query(
                    "async",
                    "must be false or absent (models are created synchronously)",
                ),
            post(create),
        )
        .add(
            Operation::new("get", "/api/models/{id}", "models", "Get a model")
                .query("async", "must be false or absent"),
            get(fetch),
        )
        .add(
            Operation::new("put", "/api/models/{id}", "models", "Replace a model")
                .request::<ModelRequest>()
                .query("async", "must be false or absent"),
            put(update),
        )
        .add(
            Operation::new("delete", "/api/models/{id}", "models", "Delete a model")
                .query("async", "must be false or absent")
                .status(204),
            delete(remove),
        )
        .add(
            Operation::new(
                "get",
                "/api/models/{id}/sample",
                "models",
                "Sample a model's records (at most 10)",
            )
            .query("async", "must be false or absent"),
            get(sample),
        )
        .add(
            Operation::new(
                "post",
                "/api/model-preview",
                "models",
                "Describe a model without saving it",
            )
            .request::<ModelRequest>()
            .query("async", "must be false or absent"),
            post(preview),
        )
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/modelsync/source",
                "model sync",
                "What a model on this connection can select (tables, views, query)",
            )
            .query(
                "params[table]",
                "drill down: a table (also `table`, `params[view]`, `params[query]`)",
            ),
            get(source_meta),
        )
        .add(
            Operation::new(
                "get",
                "/api/connections/{id}/modelsync/source/fields",
                "model sync",
                "The fields of a table, view or query, without saving a model",
            )
            .query(
                "params[table]",
                "the selection: `params[table]`, `params[view]` or `params[query]` (or the \
                 plain `table`, `view`, `query`)",
            ),
            get(source_fields),
        )
}

// ---------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------

/// A connection usable as a model source, with its full (decrypted) configuration.
pub(crate) struct SourceConnection {
    /// The stored connection.
    pub connection: Connection,
    /// Configuration including secrets.
    pub configuration: Value,
}

/// Loads a connection of the caller's organization and decrypts its configuration.
pub(crate) async fn load_source(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
) -> ApiResult<SourceConnection> {
    let connection = state
        .store()
        .connection(organization_id, connection_id)
        .await?;
    let configuration = crate::connections::stored_configuration(state, &connection)?;
    Ok(SourceConnection {
        connection,
        configuration: Value::Object(configuration),
    })
}

/// A model source ready to use: a database type's shared one, or a Salesforce source built
/// around the connection's cached (budgeted) client.
pub(crate) enum SourceHandle<'s> {
    /// PostgreSQL, MySQL, SQLite.
    Shared(&'s dyn ModelSource),
    /// A Salesforce connection (`include_deleted` decided per model).
    Salesforce(SalesforceModelSource),
}

impl SourceHandle<'_> {
    /// The source.
    pub(crate) fn get(&self) -> &dyn ModelSource {
        match self {
            SourceHandle::Shared(source) => *source,
            SourceHandle::Salesforce(source) => source,
        }
    }
}

/// The model source of a connection, or 422 naming `field`. Salesforce connections get
/// their client from the state's cache; `include_deleted` selects `queryAll`.
pub(crate) async fn model_source<'s>(
    state: &'s AppState,
    source: &SourceConnection,
    include_deleted: bool,
    field: &str,
) -> ApiResult<SourceHandle<'s>> {
    let connection = &source.connection;
    if connection.type_id == ferry_connectors::salesforce::TYPE_ID {
        let (_, _, client) =
            crate::salesforce_clients::client_for(state, connection.organization_id, connection.id)
                .await?;
        return Ok(SourceHandle::Salesforce(SalesforceModelSource::new(
            client,
            include_deleted,
        )));
    }
    state
        .registry()
        .get(&connection.type_id)
        .and_then(|connector| connector.model_source())
        .map(SourceHandle::Shared)
        .ok_or_else(|| {
            ApiError::field(FieldError::new(
                field,
                format!(
                    "connections of type '{}' cannot be model sources yet (supported: \
                     postgresql, mysql, sqlite, salesforce)",
                    connection.type_id
                ),
            ))
        })
}

/// The selection of a model configuration for a connection type, the configuration to
/// store and `include_deleted` (Salesforce only).
fn model_selection(
    type_id: &str,
    configuration: &Value,
) -> Result<(Selection, Value, bool), FieldError> {
    if type_id == ferry_connectors::salesforce::TYPE_ID {
        let parsed = parse_model_config(configuration)?;
        return Ok((parsed.selection, parsed.normalized, parsed.include_deleted));
    }
    let (selection, normalized) = parse_configuration(configuration)?;
    Ok((selection, normalized, false))
}

/// The row stream of a stored model (what a sync execution reads), in batches of
/// `batch_size` rows; the source leaves unbuilt the batches `question`'s answer skips
/// ([`ModelSource::read_skipping`]).
pub(crate) async fn model_rows(
    state: &AppState,
    organization_id: Uuid,
    model: &Model,
    batch_size: usize,
    question: SkipQuestion,
) -> ApiResult<futures_util::stream::BoxStream<'static, Result<RowBatch, SourceError>>> {
    let source = load_source(state, organization_id, model.connection_id).await?;
    let (selection, _, include_deleted) =
        model_selection(&source.connection.type_id, &model.configuration).map_err(|error| {
            ApiError::unprocessable(format!(
                "model {} has a bad configuration: {error}",
                model.id
            ))
        })?;
    let handle = model_source(state, &source, include_deleted, "connection_id").await?;
    Ok(handle
        .get()
        .read_skipping(&source.configuration, &selection, batch_size, question))
}

/// Turns a source failure into an API error; `field` names what the caller chose (e.g.
/// `configuration.query`) for failures caused by that choice.
fn source_error(error: SourceError, field: &str) -> ApiError {
    match error {
        SourceError::Query(message)
        | SourceError::UnknownRelation(message)
        | SourceError::Unsupported(message) => {
            ApiError::field(FieldError::new(field, message)).with_metadata("reason", "source")
        }
        SourceError::Connect(message) => {
            ApiError::unprocessable(format!("could not connect to the source: {message}"))
                .with_metadata("reason", "source_unreachable")
        }
        SourceError::Configuration(message) => ApiError::unprocessable(format!(
            "the source connection's configuration is invalid: {message}"
        ))
        .with_metadata("reason", "source_configuration"),
        other => ApiError::unprocessable(other.to_string()).with_metadata("reason", "source"),
    }
}

fn timed_out(what: &str, limit: Duration) -> ApiError {
    ApiError::unprocessable(format!(
        "{what} took longer than {} s; simplify the query or add an index",
        limit.as_secs()
    ))
    .with_metadata("reason", "timeout")
}

async fn describe(
    source: &dyn ModelSource,
    configuration: &Value,
    selection: &Selection,
    field: &str,
) -> ApiResult<Vec<SourceField>> {
    match tokio::time::timeout(DESCRIBE_TIMEOUT, source.describe(configuration, selection)).await {
        Ok(Ok(fields)) => Ok(fields),
        Ok(Err(error)) => Err(source_error(error, field)),
        Err(_) => Err(timed_out("describing the model", DESCRIBE_TIMEOUT)),
    }
}

async fn read_sample(
    source: &dyn ModelSource,
    configuration: &Value,
    selection: &Selection,
    rows: usize,
    field: &str,
) -> ApiResult<RowBatch> {
    let sampled = ferry_connectors::source::sample(source, configuration, selection, rows);
    match tokio::time::timeout(SAMPLE_TIMEOUT, sampled).await {
        Ok(Ok(batch)) => Ok(batch),
        Ok(Err(error)) => Err(source_error(error, field)),
        Err(_) => Err(timed_out("sampling the model", SAMPLE_TIMEOUT)),
    }
}

/// The selection of a model configuration: exactly one of `table`, `view`, `query`, each a
/// non-empty string. Returns the selection and the normalized configuration.
fn parse_configuration(configuration: &Value) -> Result<(Selection, Value), FieldError> {
    let Some(object) = configuration.as_object() else {
        return Err(FieldError::new(
            "configuration",
            "must be a JSON object such as {\"table\": \"public.users\"} or {\"query\": \
             \"SELECT ...\"}",
        ));
    };
    let mut chosen: Vec<(&str, &str)> = Vec::new();
    for (key, value) in object {
        if !SELECTION_KEYS.contains(&key.as_str()) {
            return Err(FieldError::new(
                format!("configuration.{key}"),
                "unknown key; accepted keys: table, view, query (exactly one)",
            ));
        }
        match value {
            Value::Null => {}
            Value::String(text) if text.trim().is_empty() => {}
            Value::String(text) => chosen.push((key.as_str(), text.as_str())),
            other => {
                return Err(FieldError::new(
                    format!("configuration.{key}"),
                    format!(
                        "expected a string, got {}",
                        match other {
                            Value::Bool(_) => "a boolean",
                            Value::Number(_) => "a number",
                            Value::Array(_) => "an array",
                            _ => "an object",
                        }
                    ),
                ));
            }
        }
    }
    match chosen.as_slice() {
        [] => Err(FieldError::new(
            "configuration",
            "one of table, view or query is required (e.g. {\"table\": \"public.users\"})",
        )),
        [(key, value)] => {
            let selection = match *key {
                "table" => Selection::Table(value.trim().to_string()),
                "view" => Selection::View(value.trim().to_string()),
                _ => Selection::Query((*value).to_string()),
            };
            let normalized = json!({ selection.key(): selection.value() });
            Ok((selection, normalized))
        }
        several => {
            let keys: Vec<&str> = several.iter().map(|(key, _)| *key).collect();
            Err(FieldError::new(
                "configuration",
                format!(
                    "exactly one of table, view or query may be set; got {}",
                    keys.join(" and ")
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------

fn actor(id: &Option<String>) -> Value {
    match id {
        Some(id) => json!({"id": id, "name": "API key", "type": "organization"}),
        None => Value::Null,
    }
}

/// A `ModelField` document for a discovered field (stored with `enabled` and `created_at`).
fn field_document(
    field: &SourceField,
    id: &str,
    enabled: bool,
    example: Value,
    created_at: &str,
) -> Value {
    json!({
        "id": id,
        "name": field.name,
        "label": field.name,
        "type": field.field_type.as_str(),
        "remote_type": field.remote_type,
        "description": "",
        "example": example,
        "unique": false,
        "user_added": false,
        "enabled": enabled,
        "created_at": created_at,
    })
}

fn additional_document(field: &AdditionalField, id: &str, created_at: &str) -> Value {
    json!({
        "id": id,
        "name": field.name,
        "label": field.label,
        "type": field.field_type,
        "remote_type": "",
        "description": "",
        "example": field.example.clone().unwrap_or(Value::Null),
        "unique": false,
        "user_added": true,
        "created_at": created_at,
    })
}

/// `id` and `created_at` of previously stored fields, by name.
fn previous_fields(model: Option<&Model>) -> HashMap<String, (String, String)> {
    let mut previous = HashMap::new();
    let documents = model
        .into_iter()
        .flat_map(|m| {
            m.fields
                .as_array()
                .into_iter()
                .flatten()
                .chain(m.additional_fields.as_array().into_iter().flatten())
        })
        .filter_map(Value::as_object);
    for document in documents {
        if let (Some(name), Some(id)) = (
            document.get("name").and_then(Value::as_str),
            document.get("id").and_then(Value::as_str),
        ) {
            let created = document
                .get("created_at")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            previous.insert(name.to_string(), (id.to_string(), created));
        }
    }
    previous
}

/// The `fields` of a response: enabled discovered fields, then additional ones.
fn response_fields(
    fields: &Value,
    additional: &Value,
    identifier: Option<&str>,
    actor_value: &Value,
    updated_at: &Value,
) -> Vec<Value> {
    let discovered = fields
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("enabled").and_then(Value::as_bool).unwrap_or(true));
    let extra = additional.as_array().into_iter().flatten();
    discovered
        .chain(extra)
        .filter_map(Value::as_object)
        .map(|document| {
            let mut document = document.clone();
            document.remove("enabled");
            let name = document.get("name").and_then(Value::as_str);
            let unique = identifier.is_some() && name == identifier;
            document.insert("unique".to_string(), Value::Bool(unique));
            if document.get("created_at").is_some_and(|v| v == "") {
                document.insert("created_at".to_string(), Value::Null);
            }
            document.insert("created_by".to_string(), actor_value.clone());
            document.insert("updated_at".to_string(), updated_at.clone());
            Value::Object(document)
        })
        .collect()
}

fn model_body(model: &Model, type_id: &str) -> Value {
    let created_by = actor(&model.created_by);
    let updated_at = Value::String(rfc3339(model.updated_at));
    json!({
        "id": model.id,
        "name": model.name,
        "type": type_id,
        "version": model.version,
        "organization_id": model.organization_id,
        "connection_id": model.connection_id,
        "configuration": model.configuration,
        "fields": response_fields(
            &model.fields,
            &model.additional_fields,
            model.identifier.as_deref(),
            &created_by,
            &updated_at,
        ),
        "identifier": model.identifier,
        "tracking_columns": model.tracking_columns,
        "labels": labels_body(&model.labels),
        "relations": model.relations,
        "enricher": null,
        "policies": model.policies,
        "created_at": rfc3339(model.created_at),
        "created_by": created_by,
        "updated_at": updated_at,
        "updated_by": actor(&model.updated_by),
    })
}

/// Labels as the SDK expects them: objects, never bare strings.
fn labels_body(labels: &[String]) -> Vec<Value> {
    labels
        .iter()
        .map(|label| json!({ "name": label }))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Validation and discovery of a model request
// ---------------------------------------------------------------------------------------

/// A validated, discovered model, ready to store or preview.
struct Prepared {
    write: ModelWrite,
    type_id: String,
}

fn reject_async(query: &AsyncQuery) -> ApiResult<()> {
    if query.run_async.unwrap_or(false) {
        return Err(ApiError::bad_request(
            "async=true is not supported: model operations answer synchronously (describe \
             within 30 s, sample within 10 s); call again without async",
        )
        .with_metadata("field", "async"));
    }
    Ok(())
}

fn unknown_field(field: &str, name: &str, available: &[&str]) -> ApiError {
    let mut listed: Vec<&str> = available.iter().take(20).copied().collect();
    if available.len() > listed.len() {
        listed.push("...");
    }
    ApiError::field(FieldError::new(
        field,
        format!(
            "'{name}' is not a field of this model; fields: {}",
            listed.join(", ")
        ),
    ))
}

/// Validates a request, describes its selection and builds what to store.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    request: ModelRequest,
    existing: Option<&Model>,
) -> ApiResult<Prepared> {
    if request.name.trim().is_empty() {
        return Err(ApiError::field(FieldError::new(
            "name",
            "must not be empty",
        )));
    }
    if request.enricher.as_ref().is_some_and(|e| !e.is_null()) {
        return Err(ApiError::field(FieldError::new(
            "enricher",
            "enrichment is not supported; leave enricher out",
        )));
    }
    let source = load_source(state, caller.organization_id, request.connection_id).await?;
    let (selection, configuration, include_deleted) =
        model_selection(&source.connection.type_id, &request.configuration)?;
    let selection_field = format!("configuration.{}", selection.key());
    let handle = model_source(state, &source, include_deleted, "connection_id").await?;
    let model_source = handle.get();
    let discovered = describe(
        model_source,
        &source.configuration,
        &selection,
        &selection_field,
    )
    .await?;
    let names: Vec<&str> = discovered.iter().map(|f| f.name.as_str()).collect();

    // Enabled fields.
    let enabled: HashSet<&str> = match &request.fields {
        None => names.iter().copied().collect(),
        Some(list) if list.is_empty() => names.iter().copied().collect(),
        Some(list) => {
            let mut enabled = HashSet::new();
            for (index, name) in list.iter().enumerate() {
                if !names.contains(&name.as_str()) {
                    return Err(unknown_field(&format!("fields[{index}]"), name, &names));
                }
                enabled.insert(name.as_str());
            }
            enabled
        }
    };

    // Additional fields: named, unique, not clashing with discovered ones.
    let additional = request.additional_fields.clone().unwrap_or_default();
    let mut additional_names = HashSet::new();
    for (index, field) in additional.iter().enumerate() {
        let path = format!("additional_fields[{index}].name");
        if field.name.trim().is_empty() {
            return Err(ApiError::field(FieldError::new(path, "must not be empty")));
        }
        if names.contains(&field.name.as_str()) || !additional_names.insert(field.name.as_str()) {
            return Err(ApiError::field(FieldError::new(
                path,
                format!("a field named '{}' already exists", field.name),
            )));
        }
    }
    let mut available: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| enabled.contains(n))
        .collect();
    available.extend(additional.iter().map(|f| f.name.as_str()));

    let identifier = request
        .identifier
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .or_else(|| {
            // Salesforce records are identified by their Id unless the caller says otherwise.
            (matches!(handle, SourceHandle::Salesforce(_)) && available.contains(&"Id"))
                .then_some("Id")
        });
    if let Some(identifier) = identifier
        && !available.contains(&identifier)
    {
        return Err(unknown_field("identifier", identifier, &available));
    }
    let tracking_columns = request.tracking_columns.clone().unwrap_or_default();
    for (index, column) in tracking_columns.iter().enumerate() {
        if !names.contains(&column.as_str()) {
            return Err(unknown_field(
                &format!("tracking_columns[{index}]"),
                column,
                &names,
            ));
        }
    }

    // Relations: from one of this model's fields to a field of another model of the
    // organization.
    let mut relations = Vec::new();
    for (index, relation) in request
        .relations
        .clone()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !available.contains(&relation.from.as_str()) {
            return Err(unknown_field(
                &format!("relations[{index}].from"),
                &relation.from,
                &available,
            ));
        }
        let other = match state
            .store()
            .model(caller.organization_id, relation.to.model_id)
            .await
        {
            Ok(other) => other,
            Err(ferry_store::StoreError::NotFound { .. }) => {
                return Err(ApiError::field(FieldError::new(
                    format!("relations[{index}].to.model_id"),
                    format!("model {} not found", relation.to.model_id),
                )));
            }
            Err(error) => return Err(error.into()),
        };
        let other_fields = previous_fields(Some(&other));
        if !other_fields.contains_key(&relation.to.field) {
            return Err(ApiError::field(FieldError::new(
                format!("relations[{index}].to.field"),
                format!(
                    "'{}' is not a field of model '{}'",
                    relation.to.field, other.name
                ),
            )));
        }
        relations.push(json!({
            "from": relation.from,
            "to": {"model_id": relation.to.model_id, "field": relation.to.field},
        }));
    }

    // One sample row gives each field an example; failing to sample is not fatal (the
    // selection was described fine).
    let examples: Vec<Value> =
        match read_sample(model_source, &source.configuration, &selection, 1, "").await {
            Ok(batch) if batch.fields.len() == discovered.len() => {
                batch.rows.into_iter().next().unwrap_or_default()
            }
            _ => Vec::new(),
        };

    let previous = previous_fields(existing);
    let now = rfc3339(Utc::now());
    let identity = |name: &str| {
        previous
            .get(name)
            .cloned()
            .unwrap_or_else(|| (Uuid::new_v4().to_string(), now.clone()))
    };
    let fields: Vec<Value> = discovered
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let (id, created) = identity(&field.name);
            field_document(
                field,
                &id,
                enabled.contains(field.name.as_str()),
                examples.get(index).cloned().unwrap_or(Value::Null),
                &created,
            )
        })
        .collect();
    let additional: Vec<Value> = additional
        .iter()
        .map(|field| {
            let (id, created) = identity(&field.name);
            additional_document(field, &id, &created)
        })
        .collect();

    Ok(Prepared {
        write: ModelWrite {
            connection_id: request.connection_id,
            name: request.name.trim().to_string(),
            configuration,
            fields: Value::Array(fields),
            identifier: identifier.map(str::to_string),
            tracking_columns,
            labels: request.labels.unwrap_or_default(),
            additional_fields: Value::Array(additional),
            relations: Value::Array(relations),
            policies: crate::extract::no_policies(request.policies)?,
            actor: Some(caller.api_key_id.to_string()),
        },
        type_id: source.connection.type_id,
    })
}

async fn type_of(state: &AppState, caller: &Caller, model: &Model) -> ApiResult<String> {
    match state
        .store()
        .connection(caller.organization_id, model.connection_id)
        .await
    {
        Ok(connection) => Ok(connection.type_id),
        Err(ferry_store::StoreError::NotFound { .. }) => Ok(String::new()),
        Err(error) => Err(error.into()),
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let models = state.store().list_models(caller.organization_id).await?;
    let connections = state
        .store()
        .list_connections(caller.organization_id)
        .await?;
    let types: HashMap<Uuid, &str> = connections
        .iter()
        .map(|c| (c.id, c.type_id.as_str()))
        .collect();
    let data: Vec<Value> = models
        .iter()
        .map(|model| {
            let type_id = types.get(&model.connection_id).copied().unwrap_or_default();
            model_body(model, type_id)
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AsyncQuery>,
    ApiJson(request): ApiJson<ModelRequest>,
) -> ApiResult<Json<Value>> {
    reject_async(&query)?;
    let prepared = prepare(&state, &caller, request, None).await?;
    let model = state
        .store()
        .create_model(caller.organization_id, prepared.write)
        .await?;
    tracing::info!(model_id = %model.id, connection_id = %model.connection_id, "model created");
    Ok(Json(
        json!({ "data": model_body(&model, &prepared.type_id) }),
    ))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AsyncQuery>,
) -> ApiResult<Json<Value>> {
    reject_async(&query)?;
    let model = state.store().model(caller.organization_id, id).await?;
    let type_id = type_of(&state, &caller, &model).await?;
    Ok(Json(json!({ "data": model_body(&model, &type_id) })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AsyncQuery>,
    ApiJson(request): ApiJson<ModelRequest>,
) -> ApiResult<Json<Value>> {
    reject_async(&query)?;
    let existing = state.store().model(caller.organization_id, id).await?;
    let prepared = prepare(&state, &caller, request, Some(&existing)).await?;
    let model = state
        .store()
        .update_model(caller.organization_id, id, prepared.write)
        .await?;
    Ok(Json(
        json!({ "data": model_body(&model, &prepared.type_id) }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AsyncQuery>,
) -> ApiResult<StatusCode> {
    reject_async(&query)?;
    state
        .store()
        .delete_model(caller.organization_id, id)
        .await?;
    tracing::info!(model_id = %id, "model deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AsyncQuery>,
    ApiJson(request): ApiJson<ModelRequest>,
) -> ApiResult<Json<Value>> {
    reject_async(&query)?;
    let prepared = prepare(&state, &caller, request, None).await?;
    let write = prepared.write;
    let now = Utc::now();
    let model = Model {
        id: Uuid::nil(),
        organization_id: caller.organization_id,
        connection_id: write.connection_id,
        name: write.name,
        configuration: write.configuration,
        fields: write.fields,
        identifier: write.identifier,
        tracking_columns: write.tracking_columns,
        labels: write.labels,
        additional_fields: write.additional_fields,
        relations: write.relations,
        policies: write.policies,
        version: 0,
        created_at: now,
        created_by: write.actor.clone(),
        updated_at: now,
        updated_by: write.actor,
    };
    let mut body = model_body(&model, &prepared.type_id);
    // Not saved: no id, version or timestamps.
    if let Some(object) = body.as_object_mut() {
        for key in ["id", "created_at", "updated_at", "created_by", "updated_by"] {
            object.insert(key.to_string(), Value::Null);
        }
    }
    Ok(Json(json!({ "data": body })))
}

async fn sample(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AsyncQuery>,
) -> ApiResult<Json<Value>> {
    reject_async(&query)?;
    let model = state.store().model(caller.organization_id, id).await?;
    let source = load_source(&state, caller.organization_id, model.connection_id).await?;
    let (selection, _, include_deleted) =
        model_selection(&source.connection.type_id, &model.configuration).map_err(|error| {
            ApiError::internal(format!(
                "stored model {id} has a bad configuration: {error}"
            ))
        })?;
    let selection_field = format!("configuration.{}", selection.key());
    let handle = model_source(&state, &source, include_deleted, "connection_id").await?;
    let model_source = handle.get();
    let batch = read_sample(
        model_source,
        &source.configuration,
        &selection,
        SAMPLE_ROWS,
        &selection_field,
    )
    .await?;

    let enabled: Vec<&str> = model
        .fields
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("enabled").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|f| f.get("name").and_then(Value::as_str))
        .collect();
    let positions: HashMap<&str, usize> = batch
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| (field.name.as_str(), index))
        .collect();
    let mut warnings = Vec::new();
    for name in &enabled {
        if !positions.contains_key(name) {
            warnings.push(Value::String(format!(
                "field '{name}' is no longer in the source; update the model to refresh its \
                 fields"
            )));
        }
    }
    let model_key = model.id.to_string();
    let records: Vec<Value> = batch
        .rows
        .iter()
        .map(|row| {
            let mut values = Map::new();
            for name in &enabled {
                if let Some(index) = positions.get(name) {
                    values.insert(
                        (*name).to_string(),
                        row.get(*index).cloned().unwrap_or(Value::Null),
                    );
                }
            }
            let mut record = Map::new();
            record.insert(model_key.clone(), Value::Object(values));
            Value::Object(record)
        })
        .collect();
    Ok(Json(
        json!({"data": {"records": records, "warnings": warnings}}),
    ))
}

// ---------------------------------------------------------------------------------------
// Source discovery
// ---------------------------------------------------------------------------------------

/// The selection named by discovery query parameters (`params[table]=x` or `table=x`);
/// `None` when none is given. Several at once → 422.
fn selection_from_params(params: &HashMap<String, String>) -> ApiResult<Option<Selection>> {
    let mut chosen = Vec::new();
    for key in SELECTION_KEYS {
        let value = params
            .get(&format!("params[{key}]"))
            .or_else(|| params.get(key))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        if let Some(value) = value {
            chosen.push(match key {
                "table" => Selection::Table(value.to_string()),
                "view" => Selection::View(value.to_string()),
                _ => Selection::Query(value.to_string()),
            });
        }
    }
    if chosen.len() > 1 {
        let keys: Vec<&str> = chosen.iter().map(Selection::key).collect();
        return Err(ApiError::field(FieldError::new(
            "params",
            format!(
                "give exactly one of params[table], params[view] or params[query]; got {}",
                keys.join(" and ")
            ),
        )));
    }
    Ok(chosen.pop())
}

fn source_item(items: Vec<Value>, requires_one_of: Option<&[&str]>) -> Value {
    json!({
        "has_items": !items.is_empty(),
        "items": items,
        "requires_one_of": requires_one_of,
    })
}

async fn source_meta(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let selection = selection_from_params(&params)?;
    let source = load_source(&state, caller.organization_id, id).await?;
    let handle = model_source(&state, &source, false, "id").await?;
    let model_source = handle.get();
    let salesforce = matches!(handle, SourceHandle::Salesforce(_));
    let listed = tokio::time::timeout(
        DESCRIBE_TIMEOUT,
        model_source.list_relations(&source.configuration),
    )
    .await
    .map_err(|_| timed_out("listing tables", DESCRIBE_TIMEOUT))?
    .map_err(|error| source_error(error, "params"))?;
    let of_kind = |kind: RelationKind| -> Vec<Value> {
        listed
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| Value::String(r.name.clone()))
            .collect()
    };
    let columns: Vec<Value> = match &selection {
        Some(selection) => {
            let field = format!("params[{}]", selection.key());
            describe(model_source, &source.configuration, selection, &field)
                .await?
                .into_iter()
                .map(|f| Value::String(f.name))
                .collect()
        }
        None => Vec::new(),
    };
    if salesforce {
        // Salesforce (spec §4.6): objects under `table`, a SOQL `query`, `include_deleted`.
        return Ok(Json(json!({"data": {
            "items": {
                "include_deleted": source_item(Vec::new(), None),
                "query": source_item(Vec::new(), None),
                "table": source_item(of_kind(RelationKind::Table), None),
                "tracking_columns": source_item(columns, Some(&SALESFORCE_SELECTION_KEYS)),
            },
            "requires_one_of": SALESFORCE_SELECTION_KEYS,
            "configuration": {
                "include_deleted": {"type": "boolean", "items": []},
                "query": {"type": "string", "items": []},
                "table": {"type": "string", "items": []},
            },
        }})));
    }
    Ok(Json(json!({"data": {
        "items": {
            "query": source_item(Vec::new(), None),
            "table": source_item(of_kind(RelationKind::Table), None),
            "tracking_columns": source_item(columns, Some(&SELECTION_KEYS)),
            "view": source_item(of_kind(RelationKind::View), None),
        },
        "requires_one_of": SELECTION_KEYS,
    }})))
}

async fn source_fields(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let Some(selection) = selection_from_params(&params)? else {
        return Err(ApiError::field(FieldError::new(
            "params",
            "one of params[table], params[view] or params[query] is required",
        )));
    };
    let source = load_source(&state, caller.organization_id, id).await?;
    let include_deleted = params
        .get("params[include_deleted]")
        .or_else(|| params.get("include_deleted"))
        .is_some_and(|v| v == "true");
    let handle = model_source(&state, &source, include_deleted, "id").await?;
    let model_source = handle.get();
    let field = format!("params[{}]", selection.key());
    let fields = describe(model_source, &source.configuration, &selection, &field).await?;
    let data: Vec<Value> = fields
        .iter()
        .map(|field| {
            json!({
                "name": field.name,
                "label": field.name,
                "type": field.field_type.as_str(),
                "remote_type": field.remote_type,
                "description": "",
                "example": null,
                "unique": false,
                "user_added": false,
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}
