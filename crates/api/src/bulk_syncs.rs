//! Bulk syncs (ELT; spec `polytomic-api.md` §5): Salesforce objects replicated into
//! PostgreSQL, MySQL or SQLite.
//!
//! - `GET/POST /api/bulk/syncs`, `GET/PUT/DELETE /api/bulk/syncs/{id}`,
//!   `POST /api/bulk/syncs/{id}/activate` — here.
//! - Schemas (`/schemas`, `/schemas/{schema_id}`) — [`schemas`].
//! - Schedules (`/schedules`, camelCase bodies) and the scheduler's pass — [`schedules`].
//! - Executions: start (a job of the queue, run by any worker), cancel (sync, execution,
//!   schema), status (both forms), list/get, logs and console logs — [`runs`].
//! - `GET /api/connections/{id}/bulksync/target` and `destination_configuration` —
//!   [`target`].
//!
//! A `BulkSyncRequest` is validated completely before it is stored: required keys (422
//! naming each), the source (a Salesforce connection) and destination (PostgreSQL, MySQL or
//! SQLite) connections, `destination_configuration` against the schema the target endpoint
//! serves, the schedules (`ferry_core::schedule`), the enums, and every schema and field it
//! names against the source's objects. When `schemas` is omitted on create every object of
//! the source is selected; on `PUT` the listed schemas are upserted and the others kept
//! (schema changes otherwise go through `/schemas`). `PUT` replaces the rest of the document
//! (omitted options reset to their defaults) and the schedules (the default schedule keeps
//! its id). Options Ferry cannot honour answer 422 naming the field instead of being
//! silently ignored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_store::{BulkScheduleWrite, BulkSchema, BulkSync, BulkSyncWrite, StoreError};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

pub mod runs;
pub mod schedules;
pub mod schemas;
pub mod target;

pub use runs::{
    BulkRunEnd, LocalBulkRuns, fail_bulk_execution, finish_bulk_execution, prepare_bulk_run,
    record_bulk_outcome, run_bulk_execution,
};

/// Accepted `automatically_add_new_objects` / `automatically_add_new_fields` values.
pub const DISCOVER_VALUES: [&str; 4] = ["all", "onlyIncremental", "onlyNonIncremental", "none"];

/// Accepted `normalize_names` values.
pub const NORMALIZE_VALUES: [&str; 3] = ["enabled", "disabled", "legacy"];

/// `POST`/`PUT /api/bulk/syncs` body (Polytomic's `CreateBulkSyncRequest`), documented for
/// `/openapi.json`; the handler validates the raw JSON so errors name the field.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BulkSyncRequest {
    /// Display name.
    pub name: String,
    /// The Salesforce connection records are read from.
    pub source_connection_id: Uuid,
    /// The PostgreSQL, MySQL or SQLite connection records are written to.
    pub destination_connection_id: Uuid,
    /// Where and how rows are written (see `GET /api/connections/{id}/bulksync/target`).
    pub destination_configuration: Map<String, Value>,
    /// Source options (none for Salesforce).
    pub source_configuration: Option<Map<String, Value>>,
    /// `{frequency, minute, hour, day_of_week, day_of_month, month}` (UTC, strings).
    pub default_schedule: Value,
    /// More schedules (the default's fields plus `schemas`, `selective_mode`,
    /// `resync_mode`).
    pub additional_schedules: Option<Vec<Value>>,
    /// `replicate` (default) or `snapshot`.
    pub mode: Option<String>,
    /// Runs on its schedules.
    pub active: Option<bool>,
    /// Schema ids or `{id, enabled, fields, data_cutoff_timestamp, ...}`; omitted: every
    /// object of the source.
    pub schemas: Option<Vec<Value>>,
    /// `all`, `onlyIncremental`, `onlyNonIncremental` or `none` (default).
    pub automatically_add_new_objects: Option<String>,
    /// `all` (default), `onlyIncremental`, `onlyNonIncremental` or `none`.
    pub automatically_add_new_fields: Option<String>,
    /// `enabled` (default), `disabled` or `legacy`.
    pub normalize_names: Option<String>,
    /// Records whose `SystemModstamp` is older are skipped (RFC 3339).
    pub data_cutoff_timestamp: Option<String>,
    /// Do not add Ferry's timestamp columns (only `false` is accepted).
    pub disable_record_timestamps: Option<bool>,
    /// Objects run concurrently (Ferry runs one at a time; values ≥ 1 accepted).
    pub concurrency_limit: Option<i64>,
    /// Objects resynced concurrently (as `concurrency_limit`).
    pub resync_concurrency_limit: Option<i64>,
    /// Permission policy ids.
    pub policies: Option<Vec<Uuid>>,
    /// Partner callers only; must be the caller's organization otherwise.
    pub organization_id: Option<Uuid>,
}

/// Every route of this module and its children.
pub fn routes() -> ApiRoutes {
    target::routes()
        .merge(schemas::routes())
        .merge(schedules::routes())
        .merge(runs::routes())
        .add(
            Operation::new("get", "/api/bulk/syncs", "bulk syncs", "List bulk syncs")
                .query("active", "only active (true) or paused (false) syncs"),
            get(list),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs",
                "bulk syncs",
                "Create a bulk sync",
            )
            .request::<BulkSyncRequest>(),
            post(create),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}",
                "bulk syncs",
                "Get a bulk sync",
            )
            .query(
                "refresh_schemas",
                "re-read the source's objects first (new ones are added per \
                     automatically_add_new_objects)",
            ),
            get(fetch),
        )
        .add(
            Operation::new(
                "put",
                "/api/bulk/syncs/{id}",
                "bulk syncs",
                "Replace a bulk sync",
            )
            .request::<BulkSyncRequest>(),
            axum::routing::put(update),
        )
        .add(
            Operation::new(
                "delete",
                "/api/bulk/syncs/{id}",
                "bulk syncs",
                "Delete a bulk sync (cancels its execution; removes schemas, schedules and \
                 history)",
            )
            .query("refresh_schemas", "accepted for compatibility; no effect")
            .status(204),
            axum::routing::delete(remove),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/activate",
                "bulk syncs",
                "Pause (also cancels the running execution) or resume a bulk sync",
            ),
            post(activate),
        )
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn field_error(error: FieldError) -> ApiError {
    ApiError::field(error)
}

/// Parses an optional RFC 3339 timestamp; errors name `field`.
pub(crate) fn parse_time(field: &str, value: Option<&Value>) -> ApiResult<Option<DateTime<Utc>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                field_error(FieldError::new(
                    field,
                    format!("'{text}' is not an RFC 3339 timestamp (2024-01-01T00:00:00Z)"),
                ))
            }),
        Some(_) => Err(field_error(FieldError::new(
            field,
            "must be an RFC 3339 timestamp string",
        ))),
    }
}

/// An optional string member; errors name `field`.
pub(crate) fn opt_string(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
) -> ApiResult<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
        Some(_) => Err(field_error(FieldError::new(field, "must be a string"))),
    }
}

/// An optional boolean member; errors name `field`.
pub(crate) fn opt_bool(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
) -> ApiResult<Option<bool>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(field_error(FieldError::new(field, "must be true or false"))),
    }
}

/// An optional enum member (empty string = default); errors list the accepted values.
fn opt_enum(
    object: &Map<String, Value>,
    key: &str,
    accepted: &[&str],
    default: &str,
) -> ApiResult<String> {
    match opt_string(object, key, key)?.filter(|v| !v.is_empty()) {
        None => Ok(default.to_string()),
        Some(value) if accepted.contains(&value.as_str()) => Ok(value),
        Some(value) => Err(field_error(FieldError::new(
            key,
            format!(
                "'{value}' is not accepted; accepted: {}",
                accepted.join(", ")
            ),
        ))),
    }
}

fn uuid_member(object: &Map<String, Value>, key: &str) -> ApiResult<Uuid> {
    match object.get(key) {
        Some(Value::String(text)) => Uuid::parse_str(text.trim())
            .map_err(|_| field_error(FieldError::new(key, format!("'{text}' is not a UUID")))),
        _ => Err(field_error(FieldError::new(key, "must be a UUID string"))),
    }
}

/// A validated request: the store writes plus what the response needs.
struct Prepared {
    write: BulkSyncWrite,
    schemas: Option<Vec<BulkSchema>>,
    schedules: Vec<BulkScheduleWrite>,
}

/// The source catalog and Salesforce client of a sync's source connection.
pub(crate) struct Source {
    pub(crate) config: ferry_connectors::salesforce::SalesforceConfig,
    pub(crate) client: ferry_salesforce::SalesforceClient,
}

/// The Salesforce client of a source connection; errors name `field`.
pub(crate) async fn load_source(
    state: &AppState,
    organization_id: Uuid,
    connection_id: Uuid,
    field: &str,
) -> ApiResult<Source> {
    match state
        .store()
        .connection(organization_id, connection_id)
        .await
    {
        Ok(connection) if connection.type_id == "salesforce" => {}
        Ok(connection) => {
            return Err(field_error(FieldError::new(
                field,
                format!(
                    "bulk syncs read from Salesforce connections; this is a '{}' connection",
                    connection.type_id
                ),
            )));
        }
        Err(StoreError::NotFound { .. }) => {
            return Err(field_error(FieldError::new(
                field,
                format!("connection {connection_id} not found"),
            )));
        }
        Err(error) => return Err(error.into()),
    }
    let (_, config, client) =
        crate::salesforce_clients::client_for(state, organization_id, connection_id).await?;
    Ok(Source { config, client })
}

async fn prepare(
    state: &AppState,
    caller: &Caller,
    body: Value,
    existing: Option<&BulkSync>,
) -> ApiResult<Prepared> {
    let Value::Object(object) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    for key in [
        "name",
        "source_connection_id",
        "destination_connection_id",
        "destination_configuration",
        "default_schedule",
    ] {
        if object.get(key).is_none_or(Value::is_null) {
            return Err(field_error(FieldError::new(key, "is required")));
        }
    }
    let name = opt_string(&object, "name", "name")?.unwrap_or_default();
    if name.is_empty() {
        return Err(field_error(FieldError::new("name", "must not be empty")));
    }
    if let Some(organization_id) = object.get("organization_id").filter(|v| !v.is_null()) {
        let requested = uuid_member(&object, "organization_id")?;
        if requested != caller.organization_id {
            return Err(field_error(FieldError::new(
                "organization_id",
                format!("{organization_id} is not the caller's organization"),
            )));
        }
    }
    let source_connection_id = uuid_member(&object, "source_connection_id")?;
    let destination_connection_id = uuid_member(&object, "destination_connection_id")?;

    // The destination.
    let destination = match state
        .store()
        .connection(caller.organization_id, destination_connection_id)
        .await
    {
        Ok(connection) => connection,
        Err(StoreError::NotFound { .. }) => {
            return Err(field_error(FieldError::new(
                "destination_connection_id",
                format!("connection {destination_connection_id} not found"),
            )));
        }
        Err(error) => return Err(error.into()),
    };
    if !target::DESTINATION_TYPES.contains(&destination.type_id.as_str()) {
        return Err(field_error(FieldError::new(
            "destination_connection_id",
            format!(
                "bulk syncs write to {} connections; this is a '{}' connection",
                target::DESTINATION_TYPES.join(", "),
                destination.type_id
            ),
        )));
    }
    let mode = opt_string(&object, "mode", "mode")?.filter(|m| !m.is_empty());
    if let Some(mode) = &mode {
        target::parse_mode("mode", mode).map_err(field_error)?;
    }
    let (destination_configuration, destination_spec) = target::validate(
        &destination.type_id,
        object
            .get("destination_configuration")
            .unwrap_or(&Value::Null),
        mode.as_deref(),
    )
    .map_err(field_error)?;
    let mode = match destination_spec.mode {
        ferry_engine::bulk::DestinationMode::Replicate => "replicate",
        ferry_engine::bulk::DestinationMode::Snapshot => "snapshot",
    };

    // Source options: Salesforce takes none.
    match object.get("source_configuration") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if let Some(key) = map.keys().next() {
                return Err(field_error(FieldError::new(
                    format!("source_configuration.{key}"),
                    "Salesforce sources take no source configuration",
                )));
            }
        }
        Some(_) => {
            return Err(field_error(FieldError::new(
                "source_configuration",
                "must be an object",
            )));
        }
    }

    let automatically_add_new_objects = opt_enum(
        &object,
        "automatically_add_new_objects",
        &DISCOVER_VALUES,
        "none",
    )?;
    let automatically_add_new_fields = opt_enum(
        &object,
        "automatically_add_new_fields",
        &DISCOVER_VALUES,
        "all",
    )?;
    let normalize_names = opt_enum(&object, "normalize_names", &NORMALIZE_VALUES, "enabled")?;
    let data_cutoff = parse_time("data_cutoff_timestamp", object.get("data_cutoff_timestamp"))?;
    let disable_record_timestamps = opt_bool(
        &object,
        "disable_record_timestamps",
        "disable_record_timestamps",
    )?
    .unwrap_or(false);
    if disable_record_timestamps {
        return Err(field_error(FieldError::new(
            "disable_record_timestamps",
            "is not supported: every destination row carries Ferry's _ferry_synced_at column",
        )));
    }
    let active = opt_bool(&object, "active", "active")?.unwrap_or(false);
    let mut limits = Map::new();
    for key in ["concurrency_limit", "resync_concurrency_limit"] {
        match object.get(key) {
            None | Some(Value::Null) => {
                limits.insert(key.to_string(), Value::Null);
            }
            Some(value) => match value.as_i64() {
                Some(n) if n >= 1 => {
                    limits.insert(key.to_string(), json!(n));
                }
                _ => {
                    return Err(field_error(FieldError::new(
                        key,
                        "must be an integer of at least 1",
                    )));
                }
            },
        }
    }
    let policies: Vec<Uuid> = match object.get("policies") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| field_error(FieldError::new("policies", "must be a list of UUIDs")))?,
    };
    crate::extract::no_policies(Some(policies.iter().map(Uuid::to_string).collect()))?;

    // The source and its objects.
    let source = load_source(
        state,
        caller.organization_id,
        source_connection_id,
        "source_connection_id",
    )
    .await?;
    let catalog = schemas::Catalog::load(&source).await?;
    let schemas = match object.get("schemas") {
        None | Some(Value::Null) if existing.is_some() => None,
        None | Some(Value::Null) => Some(
            catalog
                .ids()
                .map(|id| schemas::default_schema(id, true))
                .collect(),
        ),
        Some(Value::Array(items)) => {
            let mut parsed: Vec<BulkSchema> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let path = format!("schemas[{index}]");
                let schema = schemas::parse_schema_item(&path, item, None)?;
                if parsed.iter().any(|s| s.schema_id == schema.schema_id) {
                    return Err(field_error(FieldError::new(
                        path,
                        format!("schema '{}' is listed twice", schema.schema_id),
                    )));
                }
                catalog.check(&source, &path, &schema).await?;
                parsed.push(schema);
            }
            Some(parsed)
        }
        Some(_) => {
            return Err(field_error(FieldError::new(
                "schemas",
                "must be a list of schema ids or schema objects",
            )));
        }
    };

    // Schedules.
    let known_schemas: Vec<String> = match (&schemas, existing) {
        (Some(list), _) => list.iter().map(|s| s.schema_id.clone()).collect(),
        (None, Some(sync)) => state
            .store()
            .bulk_schemas(sync.id)
            .await?
            .into_iter()
            .map(|s| s.schema_id)
            .collect(),
        (None, None) => Vec::new(),
    };
    let existing_schedules = match existing {
        Some(sync) => state.store().bulk_schedules(sync.id).await?,
        None => Vec::new(),
    };
    let actor = Some(caller.api_key_id.to_string());
    let mut schedule_writes = Vec::new();
    let default_schedule = schedules::parse_request_schedule(
        state,
        "default_schedule",
        object.get("default_schedule").unwrap_or(&Value::Null),
        true,
        &known_schemas,
    )?;
    let mut default_schedule = BulkScheduleWrite {
        actor: actor.clone(),
        ..default_schedule
    };
    // The default schedule keeps its id across updates.
    if let Some(current) = existing_schedules.iter().find(|s| s.is_default) {
        default_schedule.id = Some(current.id);
    }
    schedule_writes.push(default_schedule);
    match object.get("additional_schedules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let path = format!("additional_schedules[{index}]");
                let mut write =
                    schedules::parse_request_schedule(state, &path, item, false, &known_schemas)?;
                write.actor = actor.clone();
                if let Some(id) = write.id
                    && !existing_schedules
                        .iter()
                        .any(|s| s.id == id && !s.is_default)
                {
                    // An unknown id creates a new schedule rather than touching another's.
                    write.id = None;
                }
                schedule_writes.push(write);
            }
        }
        Some(_) => {
            return Err(field_error(FieldError::new(
                "additional_schedules",
                "must be a list of schedules",
            )));
        }
    }

    let mut document = Map::new();
    document.insert("name".into(), json!(name));
    document.insert(
        "destination_configuration".into(),
        serde_json::to_value(&destination_configuration).map_err(ApiError::internal)?,
    );
    document.insert("source_configuration".into(), json!({}));
    document.insert(
        "automatically_add_new_objects".into(),
        json!(automatically_add_new_objects),
    );
    document.insert(
        "automatically_add_new_fields".into(),
        json!(automatically_add_new_fields),
    );
    document.insert("normalize_names".into(), json!(normalize_names));
    document.insert(
        "data_cutoff_timestamp".into(),
        json!(data_cutoff.map(rfc3339)),
    );
    document.insert(
        "disable_record_timestamps".into(),
        json!(disable_record_timestamps),
    );
    document.extend(limits);
    document.insert("policies".into(), json!(policies));

    Ok(Prepared {
        write: BulkSyncWrite {
            name,
            source_connection_id,
            destination_connection_id,
            mode: mode.to_string(),
            active,
            document: Value::Object(document),
            actor,
        },
        schemas,
        schedules: schedule_writes,
    })
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

/// `created_by`/`updated_by` as an `OutputActor`.
pub(crate) fn actor(id: &Option<String>) -> Value {
    match id {
        Some(id) => json!({"id": id, "name": "API key", "type": "organization"}),
        None => Value::Null,
    }
}

/// The `BulkSyncResponse` of a sync with its schedules.
pub(crate) fn sync_body(sync: &BulkSync, schedules: &[ferry_store::BulkSchedule]) -> Value {
    let mut body = match &sync.document {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let default_schedule = schedules
        .iter()
        .find(|s| s.is_default)
        .map(|s| schedules::response_schedule(s, false))
        .unwrap_or_else(|| json!({"frequency": "manual"}));
    let additional: Vec<Value> = schedules
        .iter()
        .filter(|s| !s.is_default)
        .map(|s| schedules::response_schedule(s, true))
        .collect();
    body.insert("id".into(), json!(sync.id));
    body.insert("name".into(), json!(sync.name));
    body.insert("organization_id".into(), json!(sync.organization_id));
    body.insert("active".into(), json!(sync.active));
    body.insert("mode".into(), json!(sync.mode));
    body.insert(
        "source_connection_id".into(),
        json!(sync.source_connection_id),
    );
    body.insert(
        "destination_connection_id".into(),
        json!(sync.destination_connection_id),
    );
    body.insert("default_schedule".into(), default_schedule);
    body.insert("additional_schedules".into(), json!(additional));
    body.insert("created_at".into(), json!(rfc3339(sync.created_at)));
    body.insert("created_by".into(), actor(&sync.created_by));
    body.insert("updated_at".into(), json!(rfc3339(sync.updated_at)));
    body.insert("updated_by".into(), actor(&sync.updated_by));
    Value::Object(body)
}

async fn full_body(state: &AppState, sync: &BulkSync) -> ApiResult<Value> {
    let schedules = state.store().bulk_schedules(sync.id).await?;
    Ok(sync_body(sync, &schedules))
}

/// A document option as text (`automatically_add_new_objects`, ...).
pub(crate) fn option_text<'a>(sync: &'a BulkSync, key: &str, default: &'a str) -> &'a str {
    sync.document
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ListQuery {
    active: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let syncs = state
        .store()
        .list_bulk_syncs(caller.organization_id, query.active)
        .await?;
    let mut data = Vec::with_capacity(syncs.len());
    for sync in &syncs {
        data.push(full_body(&state, sync).await?);
    }
    Ok(Json(json!({ "data": data })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let prepared = prepare(&state, &caller, body, None).await?;
    let sync = state
        .store()
        .create_bulk_sync(
            caller.organization_id,
            prepared.write,
            prepared.schemas.as_deref().unwrap_or_default(),
            &prepared.schedules,
        )
        .await?;
    tracing::info!(bulk_sync_id = %sync.id, "bulk sync created");
    Ok(Json(json!({ "data": full_body(&state, &sync).await? })))
}

#[derive(Debug, Deserialize)]
struct FetchQuery {
    refresh_schemas: Option<bool>,
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<FetchQuery>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    if query.refresh_schemas.unwrap_or(false) {
        schemas::discover_new_objects(&state, &sync).await?;
    }
    Ok(Json(json!({ "data": full_body(&state, &sync).await? })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let existing = state.store().bulk_sync(caller.organization_id, id).await?;
    let prepared = prepare(&state, &caller, body, Some(&existing)).await?;
    if let Some(schemas) = &prepared.schemas {
        state.store().put_bulk_schemas(id, schemas).await?;
    }
    let sync = state
        .store()
        .update_bulk_sync(
            caller.organization_id,
            id,
            prepared.write,
            &prepared.schedules,
        )
        .await?;
    if !sync.active {
        runs::cancel_active(&state, &sync).await?;
    }
    Ok(Json(json!({ "data": full_body(&state, &sync).await? })))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    if runs::settle_orphan(&state, sync.id).await?.is_some() {
        runs::cancel_active(&state, &sync).await?;
        if !runs::wait_until_stopped(&state, sync.id, runs::STOP_TIMEOUT).await? {
            return Err(ApiError::conflict(
                "the bulk sync's execution is still stopping; retry shortly",
            ));
        }
    }
    state
        .store()
        .delete_bulk_sync(caller.organization_id, id)
        .await?;
    tracing::info!(bulk_sync_id = %id, "bulk sync deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ActivateBody {
    active: bool,
}

async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ActivateBody>,
) -> ApiResult<Json<Value>> {
    state
        .store()
        .set_bulk_sync_active(caller.organization_id, id, body.active)
        .await?;
    if !body.active {
        let sync = state.store().bulk_sync(caller.organization_id, id).await?;
        runs::cancel_active(&state, &sync).await?;
    }
    Ok(Json(json!({"data": {"id": id, "active": body.active}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_name_their_field() {
        assert_eq!(
            parse_time(
                "data_cutoff_timestamp",
                Some(&json!("2024-01-02T03:04:05Z"))
            )
            .unwrap()
            .map(rfc3339)
            .as_deref(),
            Some("2024-01-02T03:04:05.000Z")
        );
        assert!(parse_time("x", Some(&json!(""))).unwrap().is_none());
        let error = parse_time("data_cutoff_timestamp", Some(&json!("yesterday"))).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error.message.contains("data_cutoff_timestamp"),
            "{}",
            error.message
        );
    }

    #[test]
    fn enums_list_accepted_values() {
        let object = json!({"normalize_names": "sometimes"});
        let error = opt_enum(
            object.as_object().unwrap(),
            "normalize_names",
            &NORMALIZE_VALUES,
            "enabled",
        )
        .unwrap_err();
        assert!(
            error.message.contains("enabled, disabled, legacy"),
            "{}",
            error.message
        );
        let empty = json!({"normalize_names": ""});
        assert_eq!(
            opt_enum(
                empty.as_object().unwrap(),
                "normalize_names",
                &NORMALIZE_VALUES,
                "enabled"
            )
            .unwrap(),
            "enabled"
        );
    }
}
