//! Model syncs (reverse ETL; spec `polytomic-api.md` §4) into Salesforce:
//!
//! - `GET/POST /api/syncs`, `GET/PUT/DELETE /api/syncs/{id}`, `GET /api/syncs/schedules`
//! - `POST /api/syncs/{id}/activate`, `POST /api/syncs/{id}/executions` (start),
//!   `POST /api/syncs/{id}/cancel`, `GET /api/syncs/{id}/status`
//! - `GET /api/syncs/{id}/executions`, `GET/POST .../executions/{execution_id}[/cancel]`
//! - record logs: `GET .../executions/{execution_id}/{type}` answers `{urls, expires}`;
//!   each URL is `GET .../executions/{execution_id}/{type}/{file}` on this server (same API
//!   key), serving JSON lines, at most [`LOG_FILE_LINES`] per file.
//!
//! Target discovery (`.../modelsync/targetobjects`, `.../modelsync/target/fields`) is in
//! [`targets`]; scheduled runs in [`scheduler`] (scheduled frequencies are accepted only
//! while a scheduler loop runs in the process).
//!
//! A `SyncRequest` is validated completely before it is stored: required keys, the mode,
//! the schedule, every model field it names (one model per sync), the target configuration
//! per target kind (§3a/3b/3c: published examples accepted verbatim, `""` = default), and
//! — through the connection's Salesforce client — the target object and every target field
//! (writable in the mode; the identity must be `Id`, an external id or an idLookup field).
//! Options Ferry cannot honour yet answer 422 "not supported yet" naming the field.
//!
//! Starting an execution enqueues a job ([`crate::jobs`]); a worker — in this process or a
//! `ferry worker` — claims and runs it. At most one unfinished execution per sync (409
//! otherwise). Cancel sets the execution to `canceling`, which the worker running it polls
//! at batch boundaries; a job nobody claimed yet is canceled on the spot. An unfinished
//! execution without a live job is marked `interrupted` when it is next looked at.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_engine::spec::{
    LEAD_OR_CONTACT, ModelFieldRef, ModelInfo, SCHEDULED_FREQUENCIES, SourceRef, SyncDocument,
    TargetFieldInfo, check_target_fields, compile,
};
use ferry_engine::{CancellationToken, CompiledSync, RunContext, RunOptions};
use ferry_store::{
    Execution, ExecutionPage, JobStatus, ModelSync, StoreError, SyncFilter, SyncWrite,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::pagination::{EXECUTION_PAGE, EXECUTION_PAGE_MAX, Page};
use crate::routes::{ApiRoutes, Operation};

pub mod scheduler;
pub mod targets;

/// Lines per downloadable record-log file.
pub const LOG_FILE_LINES: i64 = 10_000;

/// Default and largest page of `GET /api/syncs`.
pub const SYNC_PAGE: i64 = 50;

/// How long a delete waits for a running execution to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long log URLs are said to stay valid.
const LOG_URL_TTL: chrono::Duration = chrono::Duration::hours(1);

const LOG_TYPES: [&str; 6] = [
    "records", "errors", "warnings", "inserts", "updates", "deletes",
];

/// Every route of this module.
pub fn routes() -> ApiRoutes {
    targets::routes()
        .add(
            Operation::new("get", "/api/syncs", "model sync", "List model syncs")
                .query("active", "only active (true) or paused (false) syncs")
                .query("mode", "only this mode")
                .query("target_connection_id", "only syncs into this connection")
                .query(
                    "page_token",
                    "from a previous page's pagination.next_page_token",
                )
                .query("limit", "page size, at most 50"),
            get(list),
        )
        .add(
            Operation::new("post", "/api/syncs", "model sync", "Create a model sync")
                .request::<SyncDocument>(),
            post(create),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/schedules",
                "model sync",
                "Schedule options",
            ),
            get(schedules),
        )
        .add(
            Operation::new("get", "/api/syncs/{id}", "model sync", "Get a model sync"),
            get(fetch),
        )
        .add(
            Operation::new(
                "put",
                "/api/syncs/{id}",
                "model sync",
                "Replace a model sync",
            ),
            axum::routing::put(update),
        )
        .add(
            Operation::new(
                "delete",
                "/api/syncs/{id}",
                "model sync",
                "Delete a model sync (a running execution is canceled first)",
            )
            .status(204),
            axum::routing::delete(remove),
        )
        .add(
            Operation::new(
                "post",
                "/api/syncs/{id}/activate",
                "model sync",
                "Pause or resume a sync",
            ),
            post(activate),
        )
        .add(
            Operation::new(
                "post",
                "/api/syncs/{id}/executions",
                "model sync",
                "Start an execution (resync, test, identities); 409 while one runs",
            ),
            post(start),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/{id}/executions",
                "model sync",
                "List executions, newest first",
            )
            .query("page_token", "from a previous page")
            .query("limit", "page size (default 50, at most 100)")
            .query("only_completed", "only completed executions")
            .query("ascending", "oldest first"),
            get(list_executions),
        )
        .add(
            Operation::new(
                "post",
                "/api/syncs/{id}/cancel",
                "model sync",
                "Cancel the running execution",
            ),
            post(cancel_sync),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/{id}/status",
                "model sync",
                "Current and last execution",
            ),
            get(status),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/{id}/executions/{execution_id}",
                "model sync",
                "Get an execution",
            ),
            get(fetch_execution),
        )
        .add(
            Operation::new(
                "post",
                "/api/syncs/{id}/executions/{execution_id}/cancel",
                "model sync",
                "Cancel an execution",
            ),
            post(cancel_execution),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/{id}/executions/{execution_id}/{log_type}",
                "model sync",
                "URLs of an execution's record log (records, errors, warnings, inserts, \
                 updates, deletes)",
            ),
            get(log_urls),
        )
        .add(
            Operation::new(
                "get",
                "/api/syncs/{id}/executions/{execution_id}/{log_type}/{file}",
                "model sync",
                "One record-log file (JSON lines)",
            ),
            get(log_file),
        )
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// A validated sync: the document, its compiled form and the store write.
struct Prepared {
    write: SyncWrite,
}

fn field_error(error: FieldError) -> ApiError {
    ApiError::field(error)
}

/// Parses the body: required keys first (422 naming each), then shapes.
fn parse_document(body: Value) -> ApiResult<SyncDocument> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    for key in ["name", "mode", "target", "fields", "schedule"] {
        if object.get(key).is_none_or(Value::is_null) {
            return Err(field_error(FieldError::new(key, "is required")));
        }
    }
    if object
        .get("target")
        .and_then(|t| t.get("connection_id"))
        .is_none_or(Value::is_null)
    {
        return Err(field_error(FieldError::new(
            "target.connection_id",
            "is required",
        )));
    }
    serde_json::from_value(body).map_err(|error| {
        ApiError::unprocessable(format!("invalid sync: {error}"))
            .with_metadata("reason", "invalid_body")
    })
}

/// Every model a document references.
fn referenced_models(document: &SyncDocument) -> Vec<(String, Uuid)> {
    let mut refs: Vec<(String, &SourceRef)> = Vec::new();
    if let Some(identity) = &document.identity {
        refs.push(("identity.source.model_id".into(), &identity.source));
    }
    for (group, fields) in [
        ("fields", Some(&document.fields)),
        ("override_fields", document.override_fields.as_ref()),
    ] {
        for (index, field) in fields.into_iter().flatten().enumerate() {
            if let Some(source) = &field.source {
                refs.push((format!("{group}[{index}].source.model_id"), source));
            }
        }
    }
    for (index, filter) in document.filters.iter().flatten().enumerate() {
        if let Some(field) = &filter.field {
            refs.push((format!("filters[{index}].field.model_id"), field));
        }
    }
    for (index, item) in document.overrides.iter().flatten().enumerate() {
        if let Some(field) = &item.field {
            refs.push((format!("overrides[{index}].field.model_id"), field));
        }
    }
    let mut seen = HashSet::new();
    refs.into_iter()
        .filter(|(_, r)| seen.insert(r.model_id))
        .map(|(path, r)| (path, r.model_id))
        .collect()
}

fn model_info(model: &ferry_store::Model) -> ModelInfo {
    let fields = model
        .fields
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("enabled").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|f| {
            let name = f.get("name").and_then(Value::as_str)?;
            let id = f.get("id").and_then(Value::as_str).unwrap_or(name);
            Some(ModelFieldRef {
                id: id.to_string(),
                name: name.to_string(),
            })
        })
        .collect();
    ModelInfo {
        id: model.id,
        fields,
        identifier: model.identifier.clone(),
    }
}

/// The model a sync reads, or 422 naming where it is referenced.
async fn load_model(
    state: &AppState,
    organization_id: Uuid,
    document: &SyncDocument,
) -> ApiResult<ferry_store::Model> {
    let models = referenced_models(document);
    let Some((path, model_id)) = models.first() else {
        return Err(field_error(FieldError::new(
            "fields",
            "map at least one model field (a source or an identity)",
        )));
    };
    if let Some((path, _)) = models.get(1) {
        return Err(field_error(FieldError::new(
            path.clone(),
            "every mapping must read the same model (several models are not supported yet)",
        )));
    }
    match state.store().model(organization_id, *model_id).await {
        Ok(model) => Ok(model),
        Err(StoreError::NotFound { .. }) => Err(field_error(FieldError::new(
            path.clone(),
            format!("model {model_id} not found"),
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Compiles a document against its model (no Salesforce calls).
async fn compile_document(
    state: &AppState,
    organization_id: Uuid,
    document: &SyncDocument,
) -> ApiResult<(CompiledSync, ferry_store::Model)> {
    let model = load_model(state, organization_id, document).await?;
    let compiled = compile(document, &model_info(&model)).map_err(field_error)?;
    Ok((compiled, model))
}

/// The schedule of a document: valid, `runafter` dependencies exist, and scheduled
/// frequencies only while a scheduler runs.
async fn check_schedule(
    state: &AppState,
    caller: &Caller,
    document: &SyncDocument,
) -> ApiResult<()> {
    let schedule = ferry_engine::spec::schedule_of(document).map_err(field_error)?;
    for (index, dependency) in ferry_engine::spec::run_after_syncs(&schedule)
        .map_err(field_error)?
        .into_iter()
        .enumerate()
    {
        match state.store().sync(caller.organization_id, dependency).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(field_error(FieldError::new(
                    format!("schedule.run_after.sync_ids[{index}]"),
                    format!("sync {dependency} not found"),
                )));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let frequency = document.schedule.frequency.as_str();
    if SCHEDULED_FREQUENCIES.contains(&frequency) && !state.sync_runner().scheduler_running() {
        return Err(field_error(FieldError::new(
            "schedule.frequency",
            format!(
                "'{frequency}' needs the scheduler, which does not run in this process \
                 (`ferry serve` runs it); use manual and start runs with \
                 POST /api/syncs/{{id}}/executions"
            ),
        )));
    }
    Ok(())
}

async fn prepare(state: &AppState, caller: &Caller, body: Value) -> ApiResult<Prepared> {
    let document = parse_document(body)?;
    crate::extract::no_policies(document.policies.clone())?;
    let connection_id = document.target.connection_id;
    match state
        .store()
        .connection(caller.organization_id, connection_id)
        .await
    {
        Ok(connection) if connection.type_id == "salesforce" => {}
        Ok(connection)
            if ferry_engine::spec::DATABASE_TARGET_TYPES.contains(&connection.type_id.as_str()) =>
        {
            // Tables of PostgreSQL, MySQL and SQLite: see `targets`.
            let write = targets::prepare_database(state, caller, document, connection).await?;
            return Ok(Prepared { write });
        }
        Ok(connection) => {
            return Err(field_error(FieldError::new(
                "target.connection_id",
                format!(
                    "model syncs write to Salesforce, PostgreSQL, MySQL and SQLite \
                     connections; this is a '{}' connection",
                    connection.type_id
                ),
            )));
        }
        Err(StoreError::NotFound { .. }) => {
            return Err(field_error(FieldError::new(
                "target.connection_id",
                format!("connection {connection_id} not found"),
            )));
        }
        Err(error) => return Err(error.into()),
    }
    let (compiled, model) = compile_document(state, caller.organization_id, &document).await?;
    check_schedule(state, caller, &document).await?;

    // The target object and its fields, from Salesforce.
    let (_, _, client) =
        crate::salesforce_clients::client_for(state, caller.organization_id, connection_id).await?;
    let objects: Vec<&str> = if compiled.object == LEAD_OR_CONTACT {
        vec!["Contact", "Lead"]
    } else {
        vec![compiled.object.as_str()]
    };
    let mut fields: Vec<TargetFieldInfo> = Vec::new();
    let mut object_name = compiled.object.clone();
    for (index, object) in objects.iter().enumerate() {
        let describe = match client.describe(object).await {
            Ok(describe) => describe,
            Err(error)
                if error.status() == Some(404) || error.error_code() == Some("NOT_FOUND") =>
            {
                return Err(field_error(FieldError::new(
                    "target.object",
                    format!("'{object}' is not an object of this Salesforce org"),
                )));
            }
            Err(ferry_salesforce::SalesforceError::InvalidInput(message)) => {
                return Err(field_error(FieldError::new("target.object", message)));
            }
            Err(error) => {
                return Err(ApiError::unprocessable(format!(
                    "could not describe {object} in Salesforce: {error}"
                ))
                .with_metadata("reason", "salesforce"));
            }
        };
        if objects.len() == 1 {
            object_name = describe.name.clone();
        }
        for f in &describe.fields {
            let info = TargetFieldInfo {
                name: f.name.clone(),
                createable: f.createable,
                updateable: f.updateable,
                identity: f.name == "Id" || f.external_id || f.id_lookup,
                reference: f.field_type == "reference",
                filterable: f.filterable,
                relationship: f.relationship_name.clone(),
            };
            // Lead or Contact: a field may exist on either object; an identity must
            // identify records of both.
            match fields
                .iter_mut()
                .find(|e| e.name.eq_ignore_ascii_case(&f.name))
            {
                Some(existing) => {
                    existing.createable |= info.createable;
                    existing.updateable |= info.updateable;
                    existing.identity &= info.identity;
                    existing.filterable &= info.filterable;
                }
                None if index == 0 => fields.push(info),
                None => fields.push(TargetFieldInfo {
                    identity: false,
                    ..info
                }),
            }
        }
        if index > 0 {
            let names: HashSet<String> = describe
                .fields
                .iter()
                .map(|f| f.name.to_ascii_lowercase())
                .collect();
            for field in &mut fields {
                if !names.contains(&field.name.to_ascii_lowercase()) {
                    field.identity = false;
                }
            }
        }
    }
    check_target_fields(&document, &compiled, &fields).map_err(field_error)?;

    let mut stored = document.clone();
    stored.target.object = Some(object_name.clone());
    let write = SyncWrite {
        name: document.name.trim().to_string(),
        mode: compiled.mode.as_str().to_string(),
        target_connection_id: connection_id,
        target_object: Some(object_name),
        model_ids: vec![model.id],
        active: document.active.unwrap_or(false),
        document: serde_json::to_value(&stored).map_err(ApiError::internal)?,
        actor: Some(caller.api_key_id.to_string()),
    };
    Ok(Prepared { write })
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

fn actor(id: &Option<String>) -> Value {
    match id {
        Some(id) => json!({"id": id, "name": "API key", "type": "organization"}),
        None => Value::Null,
    }
}

fn sync_body(sync: &ModelSync) -> Value {
    let mut body = match &sync.document {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for key in [
        "identity",
        "override_fields",
        "filters",
        "filter_logic",
        "overrides",
        "policies",
    ] {
        body.entry(key.to_string()).or_insert(Value::Null);
    }
    for key in ["override_fields", "filters", "overrides", "policies"] {
        if body.get(key).is_some_and(Value::is_null) {
            body.insert(key.to_string(), json!([]));
        }
    }
    for key in [
        "sync_all_records",
        "skip_initial_backfill",
        "only_enrich_updates",
    ] {
        if body.get(key).is_none_or(Value::is_null) {
            body.insert(key.to_string(), Value::Bool(false));
        }
    }
    body.insert("id".into(), json!(sync.id));
    body.insert("name".into(), json!(sync.name));
    body.insert("active".into(), json!(sync.active));
    body.insert("model_ids".into(), json!(sync.model_ids));
    body.insert("organization_id".into(), json!(sync.organization_id));
    body.insert("created_at".into(), json!(rfc3339(sync.created_at)));
    body.insert("created_by".into(), actor(&sync.created_by));
    body.insert("updated_at".into(), json!(rfc3339(sync.updated_at)));
    body.insert("updated_by".into(), actor(&sync.updated_by));
    Value::Object(body)
}

fn list_item(sync: &ModelSync) -> Value {
    json!({
        "id": sync.id,
        "name": sync.name,
        "active": sync.active,
        "mode": sync.mode,
        "model_ids": sync.model_ids,
        "organization_id": sync.organization_id,
        "schedule": sync.document.get("schedule").cloned().unwrap_or(Value::Null),
        "skip_initial_backfill": sync.document.get("skip_initial_backfill").and_then(Value::as_bool).unwrap_or(false),
        "sync_all_records": sync.document.get("sync_all_records").and_then(Value::as_bool).unwrap_or(false),
        "only_enrich_updates": sync.document.get("only_enrich_updates").and_then(Value::as_bool).unwrap_or(false),
        "target_connection_id": sync.target_connection_id,
        "target_object": sync.target_object,
        "created_at": rfc3339(sync.created_at),
        "created_by": actor(&sync.created_by),
        "updated_at": rfc3339(sync.updated_at),
        "updated_by": actor(&sync.updated_by),
    })
}

fn execution_body(execution: &Execution) -> Value {
    json!({
        "id": execution.id,
        "status": execution.status,
        "type": execution.execution_type,
        "created_at": rfc3339(execution.created_at),
        "started_at": execution.started_at.map(rfc3339),
        "completed_at": execution.completed_at.map(rfc3339),
        "counts": {
            "total": execution.counts.total,
            "insert": execution.counts.insert,
            "update": execution.counts.update,
            "upserts": execution.counts.upserts,
            "delete": execution.counts.delete,
            "error": execution.counts.error,
            "warnings": execution.counts.warnings,
        },
        "errors": execution.errors,
    })
}

// ---------------------------------------------------------------------------------------
// Sync handlers
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ListQuery {
    active: Option<bool>,
    mode: Option<String>,
    target_connection_id: Option<Uuid>,
    page_token: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page::from_query(
        query.page_token.as_deref(),
        query.limit,
        SYNC_PAGE,
        SYNC_PAGE,
    )?;
    let filter = SyncFilter {
        active: query.active,
        mode: query.mode.filter(|m| !m.is_empty()),
        target_connection_id: query.target_connection_id,
    };
    let syncs = state
        .store()
        .list_syncs(caller.organization_id, &filter, page.offset, page.limit)
        .await?;
    let data: Vec<Value> = syncs.iter().map(list_item).collect();
    Ok(Json(json!({
        "data": data,
        "pagination": {"next_page_token": page.next_token(syncs.len())},
    })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let prepared = prepare(&state, &caller, body).await?;
    let sync = state
        .store()
        .create_sync(caller.organization_id, prepared.write)
        .await?;
    tracing::info!(sync_id = %sync.id, "model sync created");
    Ok(Json(json!({ "data": sync_body(&sync) })))
}

async fn schedules(State(state): State<AppState>) -> Json<Value> {
    let mut options = vec![json!({
        "frequency": "manual",
        "label": "Manual",
        "description": "Runs only when started (POST /api/syncs/{id}/executions)",
        "configuration": {},
    })];
    // Scheduled frequencies are offered only where a scheduler runs them.
    if state.sync_runner().scheduler_running() {
        for (frequency, label, description, configuration) in [
            (
                "continuous",
                "Continuous",
                "Runs again as soon as the previous run ends",
                json!({}),
            ),
            (
                "hourly",
                "Hourly",
                "Every hour at `minute` (UTC)",
                json!({"minute": {"type": "string"}}),
            ),
            (
                "daily",
                "Daily",
                "Every day at `hour`:`minute` (UTC)",
                json!({"hour": {"type": "string"}, "minute": {"type": "string"}}),
            ),
            (
                "weekly",
                "Weekly",
                "Every week on `day_of_week` at `hour`:`minute` (UTC)",
                json!({"day_of_week": {"type": "string"}, "hour": {"type": "string"}, "minute": {"type": "string"}}),
            ),
            (
                "custom",
                "Custom",
                "A cron expression: `minute`, `hour`, `day_of_month`, `month`, `day_of_week` (UTC)",
                json!({"minute": {"type": "string"}, "hour": {"type": "string"}, "day_of_month": {"type": "string"}, "month": {"type": "string"}, "day_of_week": {"type": "string"}}),
            ),
            (
                "runafter",
                "Run after",
                "After one of `run_after.sync_ids` finishes (only successful runs with `run_after_success_only`)",
                json!({"run_after": {"type": "object"}, "run_after_success_only": {"type": "boolean"}}),
            ),
        ] {
            options.push(json!({"frequency": frequency, "label": label,
                                "description": description, "configuration": configuration}));
        }
    }
    Json(json!({"data": {"schedule_options": options}}))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    Ok(Json(json!({ "data": sync_body(&sync) })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    state.store().sync(caller.organization_id, id).await?;
    let prepared = prepare(&state, &caller, body).await?;
    let sync = state
        .store()
        .update_sync(caller.organization_id, id, prepared.write)
        .await?;
    Ok(Json(json!({ "data": sync_body(&sync) })))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    if let Some(execution) = settle_orphan(&state, sync.id).await? {
        cancel_running(&state, sync.id, &execution).await?;
        if !crate::jobs::wait_until_stopped(&state, sync.id, STOP_TIMEOUT).await? {
            return Err(ApiError::conflict(
                "the sync's execution is still stopping; retry shortly",
            ));
        }
    }
    state
        .store()
        .delete_sync(caller.organization_id, id)
        .await?;
    tracing::info!(sync_id = %id, "model sync deleted");
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
        .set_sync_active(caller.organization_id, id, body.active)
        .await?;
    Ok(Json(json!({"data": {"id": id, "active": body.active}})))
}

// ---------------------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct StartBody {
    #[serde(default)]
    resync: Option<bool>,
    #[serde(default)]
    test: Option<bool>,
    #[serde(default)]
    identities: Option<Vec<String>>,
}

/// Marks an execution the store lists as unfinished but no job carries (a process stopped
/// between writing it and finishing it, or its job ended without settling it) as
/// `interrupted`; returns the execution that is really unfinished, if any.
pub(crate) async fn settle_orphan(state: &AppState, sync_id: Uuid) -> ApiResult<Option<Execution>> {
    let Some(active) = state.store().active_execution(sync_id).await? else {
        return Ok(None);
    };
    if state.sync_runner().running_execution(sync_id) == Some(active.id) {
        return Ok(Some(active));
    }
    if let Some(job) = state.store().job_for_execution(active.id).await?
        && job.status != JobStatus::Done
    {
        return Ok(Some(active));
    }
    state
        .store()
        .transition_execution(
            active.id,
            &ferry_store::syncs::ACTIVE_STATUSES,
            "interrupted",
        )
        .await?;
    tracing::warn!(execution_id = %active.id, "execution without a job marked interrupted");
    Ok(None)
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: bytes::Bytes,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    // The SDK sends `{}` (or nothing) when no option is given.
    let body: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        match crate::extract::parse_json::<Value>(&body)? {
            Value::Null => StartBody::default(),
            value => serde_json::from_value(value).map_err(|error| {
                ApiError::bad_request(format!("invalid start request: {error}"))
            })?,
        }
    };
    if settle_orphan(&state, sync.id).await?.is_some() {
        return Err(ApiError::conflict("an execution of this sync is running"));
    }
    let identities = match body.identities {
        Some(list) if list.is_empty() => {
            return Err(ApiError::field(FieldError::new(
                "identities",
                "give at least one identity value, or omit the key",
            )));
        }
        Some(list) => Some(list.into_iter().map(|v| v.trim().to_string()).collect()),
        None => None,
    };
    let options = RunOptions {
        resync: body.resync.unwrap_or(false),
        test: body.test.unwrap_or(false),
        identities,
    };
    let execution_type = if options.test {
        "test"
    } else if options.identities.is_some() {
        "identities"
    } else if options.resync {
        "resync"
    } else {
        "manual"
    };

    let execution = start_execution(
        &state,
        caller.organization_id,
        &sync,
        options,
        execution_type,
    )
    .await?;
    Ok(Json(json!({"data": {
        "id": execution.id,
        "status": execution.status,
        "created_at": rfc3339(execution.created_at),
    }})))
}

/// Starts an execution of a sync (the API's start and the scheduler): checks what can fail
/// before the run starts (so the request answers it), then records the execution and its
/// job in one transaction; a worker (in this process or a `ferry worker`) runs it. 409
/// while one runs.
pub(crate) async fn start_execution(
    state: &AppState,
    organization_id: Uuid,
    sync: &ModelSync,
    options: RunOptions,
    execution_type: &str,
) -> ApiResult<Execution> {
    crate::jobs::enqueue_model_sync(state, organization_id, sync, options, execution_type).await
}

/// What an execution of a sync needs besides its ids and options, built from stored rows:
/// the compiled document, the target's (budgeted) client and the model. The API builds it
/// to refuse a start that cannot run; the worker that claims the job builds it again and
/// turns it into the engine's [`RunContext`].
pub struct PreparedModelSync {
    compiled: CompiledSync,
    target: ferry_engine::RunTarget,
    model: ferry_store::Model,
    organization_id: Uuid,
    first_run: bool,
}

/// Builds a [`PreparedModelSync`] from the stored sync, its model and its connections.
pub async fn prepare_model_sync(
    state: &AppState,
    organization_id: Uuid,
    sync: &ModelSync,
) -> ApiResult<PreparedModelSync> {
    let document: SyncDocument = serde_json::from_value(sync.document.clone())
        .map_err(|error| ApiError::internal(format!("stored sync document: {error}")))?;
    let (compiled, model, target) =
        targets::run_target(state, organization_id, sync.target_connection_id, &document).await?;
    let first_run = state
        .store()
        .list_executions(
            sync.id,
            ExecutionPage {
                ascending: false,
                only_completed: true,
                offset: 0,
                limit: 1,
            },
        )
        .await?
        .is_empty();
    Ok(PreparedModelSync {
        compiled,
        target,
        model,
        organization_id,
        first_run,
    })
}

impl PreparedModelSync {
    /// The engine's context for one execution (opens the model's row stream).
    pub async fn into_context(
        self,
        state: &AppState,
        sync_id: Uuid,
        execution_id: Uuid,
        options: RunOptions,
        cancel: CancellationToken,
    ) -> ApiResult<RunContext> {
        let (skips, question) = ferry_connectors::skip_channel();
        let rows = crate::models::model_rows(
            state,
            self.organization_id,
            &self.model,
            ferry_engine::run::window_rows(&self.compiled),
            question,
        )
        .await?;
        Ok(RunContext {
            sync_id,
            execution_id,
            sync: self.compiled,
            options,
            first_run: self.first_run,
            store: state.store().clone(),
            target: self.target,
            rows,
            skips: Some(skips),
            cancel,
        })
    }
}

async fn cancel_running(
    state: &AppState,
    sync_id: Uuid,
    execution: &Execution,
) -> ApiResult<String> {
    if ferry_store::syncs::is_terminal(&execution.status) {
        return Ok(format!(
            "execution {} already ended ({})",
            execution.id, execution.status
        ));
    }
    // The flag every worker polls at batch boundaries, whichever process runs it.
    state
        .store()
        .transition_execution(execution.id, &["created", "queued", "running"], "canceling")
        .await?;
    let job = state.store().job_for_execution(execution.id).await?;
    let unowned = match &job {
        None => true,
        Some(job) if job.status == JobStatus::Done => true,
        // Not claimed yet: it never runs.
        Some(job) if job.status == JobStatus::Queued => {
            state.store().cancel_queued_job(job.id).await?
        }
        Some(_) => {
            // Running here: stop it now rather than at the worker's next poll.
            state.sync_runner().cancel(sync_id);
            false
        }
    };
    if unowned {
        state
            .store()
            .transition_execution(
                execution.id,
                &ferry_store::syncs::ACTIVE_STATUSES,
                "canceled",
            )
            .await?;
    }
    Ok(format!(
        "cancellation of execution {} requested",
        execution.id
    ))
}

async fn cancel_sync(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    let message = match state.store().active_execution(sync.id).await? {
        Some(execution) => cancel_running(&state, sync.id, &execution).await?,
        None => "no execution is running".to_string(),
    };
    Ok(Json(json!({"data": {"message": message}})))
}

async fn cancel_execution(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    let execution = state.store().execution(sync.id, execution_id).await?;
    let message = cancel_running(&state, sync.id, &execution).await?;
    Ok(Json(json!({"data": {"message": message}})))
}

async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    let current = settle_orphan(&state, sync.id).await?;
    let last = state.store().last_finished_execution(sync.id).await?;
    let last_started = match (&current, &last) {
        (Some(current), _) => Some(current.created_at),
        (None, Some(last)) => Some(last.created_at),
        (None, None) => None,
    };
    let next = scheduler::next_run(&sync, last_started).map(rfc3339);
    Ok(Json(json!({"data": {
        "current_execution": current.as_ref().map(execution_body),
        "last_execution": last.as_ref().map(execution_body),
        "next_execution_time": next,
    }})))
}

#[derive(Debug, Deserialize)]
struct ExecutionsQuery {
    page_token: Option<String>,
    limit: Option<i64>,
    only_completed: Option<bool>,
    ascending: Option<bool>,
}

async fn list_executions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    let page = Page::from_query(
        query.page_token.as_deref(),
        query.limit,
        EXECUTION_PAGE,
        EXECUTION_PAGE_MAX,
    )?;
    let executions = state
        .store()
        .list_executions(
            sync.id,
            ExecutionPage {
                ascending: query.ascending.unwrap_or(false),
                only_completed: query.only_completed.unwrap_or(false),
                offset: page.offset,
                limit: page.limit,
            },
        )
        .await?;
    let data: Vec<Value> = executions.iter().map(execution_body).collect();
    Ok(Json(json!({
        "data": data,
        "pagination": {"next_page_token": page.next_token(executions.len())},
    })))
}

async fn fetch_execution(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().sync(caller.organization_id, id).await?;
    let execution = state.store().execution(sync.id, execution_id).await?;
    Ok(Json(json!({"data": execution_body(&execution)})))
}

fn check_log_type(log_type: &str) -> ApiResult<()> {
    if LOG_TYPES.contains(&log_type) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "'{log_type}' is not an execution log type (accepted: {})",
            LOG_TYPES.join(", ")
        )))
    }
}

async fn log_urls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id, log_type)): ApiPath<(Uuid, Uuid, String)>,
) -> ApiResult<Json<Value>> {
    check_log_type(&log_type)?;
    let sync = state.store().sync(caller.organization_id, id).await?;
    let execution = state.store().execution(sync.id, execution_id).await?;
    let lines = state
        .store()
        .count_execution_records(execution.id, &log_type)
        .await?;
    let files = (lines + LOG_FILE_LINES - 1) / LOG_FILE_LINES;
    let base = state.settings().public_base_url.trim_end_matches('/');
    let urls: Vec<String> = (1..=files)
        .map(|n| {
            format!(
                "{base}/api/syncs/{}/executions/{}/{log_type}/{log_type}-{n:04}.jsonl",
                sync.id, execution.id
            )
        })
        .collect();
    Ok(Json(json!({"data": {
        "urls": urls,
        "expires": rfc3339(Utc::now() + LOG_URL_TTL),
    }})))
}

async fn log_file(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id, log_type, file)): ApiPath<(Uuid, Uuid, String, String)>,
) -> ApiResult<Response> {
    check_log_type(&log_type)?;
    let number = file
        .strip_prefix(&format!("{log_type}-"))
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::not_found("log file"))?;
    let sync = state.store().sync(caller.organization_id, id).await?;
    let execution = state.store().execution(sync.id, execution_id).await?;
    let lines = state
        .store()
        .execution_records(
            execution.id,
            &log_type,
            (number - 1) * LOG_FILE_LINES,
            LOG_FILE_LINES,
        )
        .await?;
    if lines.is_empty() {
        return Err(ApiError::not_found("log file"));
    }
    let mut body = String::new();
    for line in lines {
        body.push_str(&line.line);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
