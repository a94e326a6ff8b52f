//! Bulk-sync executions (spec §5.4, §5.6): start, cancel, status, history, logs.
//!
//! Every execution is a job of the queue (`crate::jobs`, kind `bulk_sync`): a start (the
//! API's or the scheduler's) writes the execution and its job in one transaction
//! ([`start_execution`], 409 while one is unfinished), and a worker — in process (`ferry
//! serve --workers N`) or a `ferry worker` — claims the job and runs it in three steps:
//!
//! 1. [`prepare_bulk_run`] turns the stored rows (sync, schemas, the execution's schema
//!    list, both connections) into a [`BulkRunRequest`] for `ferry_engine::bulk`;
//! 2. [`run_bulk_execution`] runs each object through the engine ([`run_bulk_sync`]), one
//!    object per call so a single schema can be canceled (`/schemas/{schema_id}/cancel`)
//!    without stopping the others, storing every outcome the engine reports
//!    ([`record_bulk_outcome`]);
//! 3. [`finish_bulk_execution`] settles the execution and raises its `bulk_sync.*` event.
//!
//! Cancellation goes through the store, so it reaches the execution whichever process runs
//! it: the execution becomes `canceling` (the worker reads it at its next poll) and a
//! schema cancel is recorded on the job ([`ferry_store::JobStore::request_part_cancel`]);
//! when the worker runs in this process, [`LocalBulkRuns`] also stops it at once. A job
//! that was never claimed is settled `canceled` on the spot.
//!
//! Statuses: an execution goes `created → running → completed | failed | canceled`
//! (`canceling` while a cancellation is pending; `interrupted` when its worker stopped — the
//! job then continues as a new execution with the same options, see `crate::jobs`). A
//! schema that fails fails its schema execution with the engine's message and the
//! execution ends `failed`, naming the failed schemas — never `completed` with data
//! missing. Record-level errors stay visible in `error_count` (and raise
//! `bulk_sync.completed_with_error`).
//!
//! Test executions (`test: true`) write nothing: they check that every object can be
//! described with the selected fields and that the destination accepts a connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ferry_core::FieldError;
use ferry_core::time::rfc3339;
use ferry_engine::CancellationToken;
use ferry_engine::bulk::{
    BulkObject, BulkOptions, BulkRunRequest, DestinationSpec, FetchMode, ObjectOutcome,
    ObjectStatus, run_bulk_sync,
};
use ferry_store::{
    BulkExecution, BulkExecutionPage, BulkSchemaProgress, BulkSync, DynStore, JobStatus,
    NewBulkExecution, StoreError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::schemas::{auto_add_fields, describe_fields, field_configs, output_name};
use super::{load_source, option_text, target};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::middleware::Caller;
use crate::pagination::{EXECUTION_PAGE, EXECUTION_PAGE_MAX, Page};
use crate::routes::{ApiRoutes, Operation};

/// How long a delete waits for a running execution to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest console-log page.
pub const CONSOLE_PAGE_MAX: i64 = 50;

/// How long log URLs are said to stay valid.
const LOG_URL_TTL: chrono::Duration = chrono::Duration::hours(1);

/// Lines per downloadable log file.
pub const LOG_FILE_LINES: i64 = 10_000;

/// Accepted `fetch_mode` values.
const FETCH_MODES: [&str; 3] = ["none", "incremental", "full"];

// ---------------------------------------------------------------------------------------
// Bulk executions running in this process
// ---------------------------------------------------------------------------------------

struct LocalRun {
    execution_id: Uuid,
    cancel: CancellationToken,
    schemas: HashMap<String, CancellationToken>,
}

/// The bulk executions this process's workers are running, by sync id, so the API's cancel
/// stops them at once instead of at the worker's next poll of the store.
#[derive(Clone, Default)]
pub struct LocalBulkRuns {
    running: Arc<Mutex<HashMap<Uuid, LocalRun>>>,
}

impl std::fmt::Debug for LocalBulkRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBulkRuns")
            .field("running", &self.lock().len())
            .finish()
    }
}

/// Keeps a run registered in [`LocalBulkRuns`] while it lives.
pub struct LocalRunGuard {
    runs: LocalBulkRuns,
    sync_id: Uuid,
    execution_id: Uuid,
}

impl Drop for LocalRunGuard {
    fn drop(&mut self) {
        let mut map = self.runs.lock();
        if map
            .get(&self.sync_id)
            .is_some_and(|r| r.execution_id == self.execution_id)
        {
            map.remove(&self.sync_id);
        }
    }
}

impl LocalBulkRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, LocalRun>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a run until the guard is dropped: `cancel` stops the whole execution,
    /// `schemas` one object each.
    pub fn register(
        &self,
        sync_id: Uuid,
        execution_id: Uuid,
        cancel: CancellationToken,
        schemas: HashMap<String, CancellationToken>,
    ) -> LocalRunGuard {
        self.lock().insert(
            sync_id,
            LocalRun {
                execution_id,
                cancel,
                schemas,
            },
        );
        LocalRunGuard {
            runs: self.clone(),
            sync_id,
            execution_id,
        }
    }

    /// The execution of the sync running in this process, if any.
    pub fn running_execution(&self, sync_id: Uuid) -> Option<Uuid> {
        self.lock().get(&sync_id).map(|r| r.execution_id)
    }

    /// Stops the execution if it runs here; returns whether it does.
    pub fn cancel(&self, sync_id: Uuid, execution_id: Uuid) -> bool {
        match self.lock().get(&sync_id) {
            Some(run) if run.execution_id == execution_id => {
                run.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Stops one schema of the execution if it runs here; returns whether it does.
    pub fn cancel_schema(&self, sync_id: Uuid, execution_id: Uuid, schema_id: &str) -> bool {
        match self.lock().get(&sync_id) {
            Some(run) if run.execution_id == execution_id => match run.schemas.get(schema_id) {
                Some(token) => {
                    token.cancel();
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// Waits until the sync has no unfinished execution (any process); `false` on timeout.
pub async fn wait_until_stopped(
    state: &AppState,
    sync_id: Uuid,
    timeout: Duration,
) -> ApiResult<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if settle_orphan(state, sync_id).await?.is_none() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Building, running and recording an execution
// ---------------------------------------------------------------------------------------

/// Options of a start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `manual`, `scheduled`, `test`, `resync`.
    pub execution_type: String,
    /// `none`, `incremental`, `full`.
    pub fetch_mode: Option<String>,
    /// `refetch` or `resync`.
    pub resync_mode: Option<String>,
    /// Schemas to run (empty: every enabled schema).
    pub schemas: Vec<String>,
    /// A test execution.
    pub test: bool,
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error)
}

/// The destination of a sync: its connection's type and decrypted configuration and the
/// stored `destination_configuration`.
async fn destination_spec(state: &AppState, sync: &BulkSync) -> ApiResult<DestinationSpec> {
    let connection = state
        .store()
        .connection(sync.organization_id, sync.destination_connection_id)
        .await?;
    let (_, destination) = target::validate(
        &connection.type_id,
        sync.document
            .get("destination_configuration")
            .unwrap_or(&Value::Null),
        Some(&sync.mode),
    )
    .map_err(|error| internal(format!("stored destination configuration: {error}")))?;
    let connection_config = crate::connections::stored_configuration(state, &connection)?;
    Ok(DestinationSpec {
        connection_type: connection.type_id.clone(),
        connection: Value::Object(connection_config),
        schema: destination.schema,
        table_prefix: destination.table_prefix,
        mode: destination.mode,
        deletes: destination.deletes,
    })
}

/// What a start checks before it queues the execution, so the request answers it: the
/// source is a usable Salesforce connection and the destination's stored configuration
/// holds. (Objects are described by the worker, once, when it prepares the run.)
async fn check_bulk_run(state: &AppState, sync: &BulkSync) -> ApiResult<()> {
    load_source(
        state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    destination_spec(state, sync).await?;
    Ok(())
}

/// Builds the engine request of an execution from the stored rows: the sync, its schemas,
/// the execution's schema list and options, the source's Salesforce client and the
/// destination's decrypted configuration. A schema whose field selection must be frozen
/// (`automatically_add_new_fields: none` with every field selected) gets its current field
/// list stored, so fields added later stay out.
pub async fn prepare_bulk_run(
    state: &AppState,
    organization_id: Uuid,
    sync_id: Uuid,
    execution_id: Uuid,
) -> ApiResult<BulkRunRequest> {
    let sync = state.store().bulk_sync(organization_id, sync_id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let source = load_source(
        state,
        organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await?;
    let destination = destination_spec(state, &sync).await?;

    let global_cutoff = sync
        .document
        .get("data_cutoff_timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let auto_fields = auto_add_fields(&sync);
    let stored = state.store().bulk_schemas(sync.id).await?;
    let mut objects = Vec::with_capacity(execution.schemas.len());
    for schema_execution in &execution.schemas {
        let Some(schema) = stored
            .iter()
            .find(|s| s.schema_id == schema_execution.schema_id)
        else {
            return Err(ApiError::unprocessable(format!(
                "schema '{}' is no longer part of the sync",
                schema_execution.schema_id
            )));
        };
        let listed = field_configs(&schema.fields);
        let fields = if listed.is_empty() && auto_fields {
            None
        } else {
            // Fresh: fields created since the last describe must be seen.
            let api_name = schema
                .schema_id
                .strip_prefix(ferry_connectors::salesforce_catalog::TOOLING_PREFIX)
                .unwrap_or(&schema.schema_id);
            source.client.invalidate_describe(Some(api_name));
            let described = describe_fields(&source, &schema.schema_id).await?;
            if listed.is_empty() {
                // Freeze today's fields: later ones stay out.
                let frozen: Vec<Value> = described
                    .iter()
                    .map(|name| json!({"id": name, "enabled": true}))
                    .collect();
                let mut updated = schema.clone();
                updated.fields = Value::Array(frozen);
                state
                    .store()
                    .put_bulk_schemas(sync.id, std::slice::from_ref(&updated))
                    .await?;
                Some(described)
            } else {
                let mut selected: Vec<String> = described
                    .iter()
                    .filter(|name| {
                        listed
                            .iter()
                            .find(|(id, _)| id == *name)
                            .map_or(auto_fields, |(_, enabled)| *enabled)
                    })
                    .cloned()
                    .collect();
                if !selected.iter().any(|f| f == "Id") {
                    selected.insert(0, "Id".to_string());
                }
                Some(selected)
            }
        };
        let data_cutoff = if schema.disable_data_cutoff {
            None
        } else {
            schema.data_cutoff_timestamp.or(global_cutoff)
        };
        objects.push(BulkObject {
            object: schema.schema_id.clone(),
            output_name: output_name(schema),
            fields,
            data_cutoff,
        });
    }

    Ok(BulkRunRequest {
        sync_id: sync.id,
        execution_id: execution.id,
        client: source.client,
        objects,
        fetch_mode: if execution.fetch_mode == "full" {
            FetchMode::Full
        } else {
            FetchMode::Incremental
        },
        resync: execution.is_resync,
        destination,
        normalize_names: option_text(&sync, "normalize_names", "enabled") != "disabled",
        enable_multicurrency_lookup: source.config.enable_multicurrency_lookup,
        cancel: CancellationToken::new(),
        options: BulkOptions::default(),
    })
}

fn object_status(status: ObjectStatus) -> &'static str {
    match status {
        ObjectStatus::Running => "running",
        ObjectStatus::Completed => "completed",
        ObjectStatus::Failed => "failed",
        ObjectStatus::Canceled => "canceled",
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One console/log line.
fn log_line(level: &str, schema: Option<&str>, message: &str, payload: Value) -> String {
    json!({
        "timestamp": rfc3339(ferry_core::time::now_millis()),
        "level": level,
        "schema": schema,
        "message": message,
        "payload": payload,
    })
    .to_string()
}

/// Stores one outcome the engine reported for `schema_id`: its schema execution's status,
/// message and counts (the execution's totals follow), and — once the object ended — a log
/// line.
pub async fn record_bulk_outcome(
    store: &DynStore,
    execution_id: Uuid,
    schema_id: &str,
    outcome: &ObjectOutcome,
) -> Result<(), StoreError> {
    let status = object_status(outcome.status);
    let message = outcome.error.clone().unwrap_or_default();
    store
        .record_bulk_schema_progress(
            execution_id,
            &BulkSchemaProgress {
                schema_id: schema_id.to_string(),
                status: status.to_string(),
                status_message: message.clone(),
                record_count: count(outcome.records),
                delete_count: count(outcome.deletes),
                error_count: count(outcome.errors),
                warning_count: 0,
                started_at: Some(outcome.started_at),
                completed_at: outcome.completed_at,
            },
        )
        .await?;
    if outcome.status != ObjectStatus::Running {
        let (level, text) = match outcome.status {
            ObjectStatus::Failed => ("error", format!("{schema_id} failed: {message}")),
            ObjectStatus::Canceled => ("warning", format!("{schema_id} canceled")),
            _ => ("info", format!("{schema_id} completed")),
        };
        let line = log_line(
            level,
            Some(schema_id),
            &text,
            json!({"output_name": outcome.output_name, "records": outcome.records,
                   "deletes": outcome.deletes, "errors": outcome.errors}),
        );
        store
            .append_bulk_execution_logs(execution_id, &[line])
            .await?;
    }
    Ok(())
}

/// The latest outcome of the object running now, handed from the engine's synchronous
/// progress callback to the task that stores it. Only the newest outcome matters, so the
/// slot holds one (memory stays flat however often the engine reports).
#[derive(Default)]
struct ProgressSlot {
    latest: Mutex<Option<ObjectOutcome>>,
    notify: tokio::sync::Notify,
}

impl ProgressSlot {
    fn put(&self, outcome: &ObjectOutcome) {
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome.clone());
        self.notify.notify_one();
    }

    fn take(&self) -> Option<ObjectOutcome> {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

fn canceled_outcome(object: &BulkObject) -> ObjectOutcome {
    let now = ferry_core::time::now_millis();
    ObjectOutcome {
        object: object.object.clone(),
        output_name: object.output_name.clone(),
        status: ObjectStatus::Canceled,
        records: 0,
        deletes: 0,
        errors: 0,
        error: None,
        started_at: now,
        completed_at: Some(now),
    }
}

fn failed_outcome(object: &BulkObject, error: String, started_at: DateTime<Utc>) -> ObjectOutcome {
    ObjectOutcome {
        object: object.object.clone(),
        output_name: object.output_name.clone(),
        status: ObjectStatus::Failed,
        records: 0,
        deletes: 0,
        errors: 1,
        error: Some(error),
        started_at,
        completed_at: Some(ferry_core::time::now_millis()),
    }
}

/// Runs one object through the engine, storing its progress as it is reported.
async fn run_object(
    store: &DynStore,
    request: &BulkRunRequest,
    object: &BulkObject,
    cancel: CancellationToken,
) -> ObjectOutcome {
    let single = BulkRunRequest {
        objects: vec![object.clone()],
        cancel,
        ..request.clone()
    };
    let slot = Arc::new(ProgressSlot::default());
    let callback_slot = slot.clone();
    let started = ferry_core::time::now_millis();
    // The engine's future is driven on a blocking-pool thread of the same runtime: its
    // database destinations hold sqlx connections across awaits in a way the compiler
    // cannot prove `Send` for (higher-ranked `Executor` bounds), so it cannot be
    // `tokio::spawn`ed. The future never leaves that thread; its IO still runs on the
    // runtime's drivers.
    let runtime = tokio::runtime::Handle::current();
    let mut engine = tokio::task::spawn_blocking(move || {
        let callback = move |outcome: &ObjectOutcome| callback_slot.put(outcome);
        runtime.block_on(run_bulk_sync(single, &callback))
    });
    let outcomes = loop {
        tokio::select! {
            joined = &mut engine => break joined.unwrap_or_else(|error| {
                vec![failed_outcome(object, format!("the bulk engine stopped: {error}"), started)]
            }),
            () = slot.notify.notified() => {
                if let Some(outcome) = slot.take()
                    && outcome.status == ObjectStatus::Running
                    && let Err(error) =
                        record_bulk_outcome(store, request.execution_id, &object.object, &outcome).await
                {
                    tracing::warn!(%error, "could not record bulk progress");
                }
            }
        }
    };
    outcomes.into_iter().next().unwrap_or_else(|| {
        failed_outcome(
            object,
            "the engine reported no outcome".to_string(),
            started,
        )
    })
}

/// A test execution of one object: describe it with the selected fields and connect to the
/// destination; nothing is written.
async fn test_object(
    state: &AppState,
    sync: &BulkSync,
    request: &BulkRunRequest,
    object: &BulkObject,
) -> ObjectOutcome {
    let started = ferry_core::time::now_millis();
    let source = match load_source(
        state,
        sync.organization_id,
        sync.source_connection_id,
        "source_connection_id",
    )
    .await
    {
        Ok(source) => source,
        Err(error) => return failed_outcome(object, error.message, started),
    };
    let described = match describe_fields(&source, &object.object).await {
        Ok(described) => described,
        Err(error) => return failed_outcome(object, error.message, started),
    };
    if let Some(missing) = object
        .fields
        .iter()
        .flatten()
        .find(|f| !described.contains(f))
    {
        return failed_outcome(
            object,
            format!("field '{missing}' no longer exists on {}", object.object),
            started,
        );
    }
    let Some(connector) = state.registry().get(&request.destination.connection_type) else {
        return failed_outcome(object, "unknown destination type".to_string(), started);
    };
    if let Err(error) = connector.check(&request.destination.connection).await {
        return failed_outcome(
            object,
            format!("the destination refused a connection: {}", error.message),
            started,
        );
    }
    ObjectOutcome {
        object: object.object.clone(),
        output_name: object.output_name.clone(),
        status: ObjectStatus::Completed,
        records: 0,
        deletes: 0,
        errors: 0,
        error: None,
        started_at: started,
        completed_at: Some(ferry_core::time::now_millis()),
    }
}

/// How [`run_bulk_execution`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkRunEnd {
    /// Settled with this status (`completed`, `failed`, `canceled`).
    Finished(String),
    /// Stopped by `interrupt` (the worker is stopping or lost its lease) before every
    /// object ran: nothing was settled; the caller marks the attempt `interrupted`.
    Interrupted,
}

/// Runs a prepared execution to its end: `running`, every object in turn (each with its
/// own cancellation token from `schemas`, children of `request.cancel`; objects without one
/// get a fresh child), then [`finish_bulk_execution`]. `test` checks instead of writing.
///
/// `interrupt` means "stop, but this is not a cancel": the caller cancels it together with
/// `request.cancel`, the object running stops at the engine's next check (its cursor only
/// moves with a committed destination transaction), and the run returns
/// [`BulkRunEnd::Interrupted`] without settling anything — no `canceled` status or event.
pub async fn run_bulk_execution(
    state: &AppState,
    sync: &BulkSync,
    request: BulkRunRequest,
    schemas: HashMap<String, CancellationToken>,
    test: bool,
    interrupt: &CancellationToken,
) -> BulkRunEnd {
    let store = state.store().clone();
    let execution_id = request.execution_id;
    match store
        .transition_bulk_execution(execution_id, &["created"], "running", None)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // Canceled before it started.
            return match finish_bulk_execution(state, sync, execution_id, &[], true).await {
                Ok(status) => BulkRunEnd::Finished(status),
                Err(_) => BulkRunEnd::Finished("canceled".to_string()),
            };
        }
        Err(error) => {
            tracing::warn!(%error, %execution_id, "could not start a bulk execution");
            return BulkRunEnd::Interrupted;
        }
    }
    publish(state, sync, execution_id, "bulk_sync.running", None).await;
    let _ = store
        .append_bulk_execution_logs(
            execution_id,
            &[log_line(
                "info",
                None,
                &format!("execution started ({} objects)", request.objects.len()),
                json!({"fetch_mode": request.fetch_mode, "resync": request.resync, "test": test}),
            )],
        )
        .await;
    let mut outcomes = Vec::with_capacity(request.objects.len());
    for object in &request.objects {
        if interrupt.is_cancelled() {
            return BulkRunEnd::Interrupted;
        }
        let token = schemas
            .get(&object.object)
            .cloned()
            .unwrap_or_else(|| request.cancel.child_token());
        let outcome = if token.is_cancelled() {
            canceled_outcome(object)
        } else {
            let started = ObjectOutcome {
                status: ObjectStatus::Running,
                ..canceled_outcome(object)
            };
            if let Err(error) =
                record_bulk_outcome(&store, execution_id, &object.object, &started).await
            {
                tracing::warn!(%error, "could not record bulk progress");
            }
            if test {
                test_object(state, sync, &request, object).await
            } else {
                run_object(&store, &request, object, token.clone()).await
            }
        };
        if outcome.status == ObjectStatus::Canceled && interrupt.is_cancelled() {
            // Not canceled by anyone: the next attempt runs this object again.
            return BulkRunEnd::Interrupted;
        }
        if let Err(error) =
            record_bulk_outcome(&store, execution_id, &object.object, &outcome).await
        {
            tracing::warn!(%error, "could not record a bulk outcome");
        }
        outcomes.push(outcome);
    }
    let canceled = request.cancel.is_cancelled() && !interrupt.is_cancelled();
    match finish_bulk_execution(state, sync, execution_id, &outcomes, canceled).await {
        Ok(status) => BulkRunEnd::Finished(status),
        Err(error) => {
            tracing::warn!(error = %error.message, %execution_id, "could not finish a bulk execution");
            BulkRunEnd::Finished("failed".to_string())
        }
    }
}

/// Marks an execution that could not start (its run could not be prepared) `failed` with
/// the reason, logged.
pub async fn fail_bulk_execution(state: &AppState, execution_id: Uuid, message: &str) {
    let store = state.store();
    if let Err(error) = store
        .transition_bulk_execution(
            execution_id,
            &ferry_store::bulk_syncs::ACTIVE_STATUSES,
            "failed",
            Some(message),
        )
        .await
    {
        tracing::warn!(%error, %execution_id, "could not mark a bulk execution failed");
    }
    let _ = store
        .append_bulk_execution_logs(
            execution_id,
            &[log_line(
                "error",
                None,
                "execution failed",
                json!({"message": message}),
            )],
        )
        .await;
}

/// Settles an execution after its objects ran: `canceled` when the whole execution was
/// canceled, `failed` (naming the failed schemas) when any object failed, else
/// `completed`. Logs the end and raises the matching `bulk_sync.*` event. Returns the
/// final status.
pub async fn finish_bulk_execution(
    state: &AppState,
    sync: &BulkSync,
    execution_id: Uuid,
    outcomes: &[ObjectOutcome],
    canceled: bool,
) -> ApiResult<String> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == ObjectStatus::Failed)
        .map(|o| format!("{}: {}", o.object, o.error.as_deref().unwrap_or("failed")))
        .collect();
    let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
    let (status, message) = if !failed.is_empty() {
        (
            "failed",
            format!(
                "{} of {} schemas failed — {}",
                failed.len(),
                outcomes.len(),
                failed.join("; ")
            ),
        )
    } else if canceled {
        ("canceled", "canceled".to_string())
    } else if errors > 0 {
        (
            "completed",
            format!("completed with {errors} record errors"),
        )
    } else {
        ("completed", String::new())
    };
    state
        .store()
        .transition_bulk_execution(
            execution_id,
            &ferry_store::bulk_syncs::ACTIVE_STATUSES,
            status,
            Some(&message),
        )
        .await?;
    let level = if status == "completed" {
        "info"
    } else {
        "error"
    };
    state
        .store()
        .append_bulk_execution_logs(
            execution_id,
            &[log_line(
                level,
                None,
                &format!("execution {status}"),
                json!({"message": message}),
            )],
        )
        .await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let event = match status {
        "failed" => "bulk_sync.failed",
        "canceled" => "bulk_sync.canceled",
        _ if execution.error_count > 0 => "bulk_sync.completed_with_error",
        _ => "bulk_sync.completed",
    };
    let extra = json!({
        "trigger_source": execution.execution_type,
        "error": (status == "failed" || execution.error_count > 0).then_some(message.clone()),
        "record_count": execution.record_count,
        "error_count": execution.error_count,
    });
    publish(state, sync, execution_id, event, Some(extra)).await;
    tracing::info!(bulk_sync_id = %sync.id, %execution_id, status, records = execution.record_count, "bulk execution ended");
    Ok(status.to_string())
}

async fn publish(
    state: &AppState,
    sync: &BulkSync,
    execution_id: Uuid,
    event_type: &str,
    extra: Option<Value>,
) {
    let mut payload = json!({
        "sync_id": sync.id,
        "sync_name": sync.name,
        "execution_id": execution_id,
        "organization_id": sync.organization_id,
        "source_connection_id": sync.source_connection_id,
        "destination_connection_id": sync.destination_connection_id,
    });
    if let (Some(object), Some(Value::Object(extra))) = (payload.as_object_mut(), extra) {
        for (key, value) in extra {
            if !value.is_null() {
                object.insert(key, value);
            }
        }
    }
    if let Err(error) =
        crate::events::publish(state, sync.organization_id, event_type, payload).await
    {
        tracing::warn!(error = %error.message, event_type, "could not publish a bulk sync event");
    }
}

/// Marks an execution the store lists as unfinished but no job carries (a process stopped
/// between writing it and queueing it, its job ended without settling it, or it was
/// started by a version of Ferry that ran bulk syncs outside the queue) as `interrupted`;
/// returns the execution that is really unfinished, if any.
pub(crate) async fn settle_orphan(
    state: &AppState,
    sync_id: Uuid,
) -> ApiResult<Option<BulkExecution>> {
    let Some(active) = state.store().active_bulk_execution(sync_id).await? else {
        return Ok(None);
    };
    if state.bulk_runs().running_execution(sync_id) == Some(active.id) {
        return Ok(Some(active));
    }
    if let Some(job) = state.store().job_for_execution(active.id).await?
        && job.status != JobStatus::Done
    {
        return Ok(Some(active));
    }
    state
        .store()
        .transition_bulk_execution(
            active.id,
            &ferry_store::bulk_syncs::ACTIVE_STATUSES,
            "interrupted",
            Some("the execution has no job left to run it"),
        )
        .await?;
    tracing::warn!(execution_id = %active.id, "bulk execution without a job marked interrupted");
    Ok(None)
}

/// Starts an execution (the API's start and the scheduler): checks what can fail before
/// the run ([`check_bulk_run`]), then writes the execution with its schema list and its job
/// in one transaction; a worker (in this process or a `ferry worker`) runs it. 409 while
/// one is unfinished.
pub(crate) async fn start_execution(
    state: &AppState,
    sync: &BulkSync,
    options: StartOptions,
) -> ApiResult<BulkExecution> {
    // Objects the source gained since the last run join per automatically_add_new_objects.
    super::schemas::discover_new_objects(state, sync).await?;
    let stored = state.store().bulk_schemas(sync.id).await?;
    let enabled: Vec<&ferry_store::BulkSchema> = stored.iter().filter(|s| s.enabled).collect();
    let mut selected = Vec::new();
    for (index, id) in options.schemas.iter().enumerate() {
        match stored.iter().find(|s| &s.schema_id == id) {
            Some(schema) if schema.enabled => {
                if !selected
                    .iter()
                    .any(|s: &&ferry_store::BulkSchema| &s.schema_id == id)
                {
                    selected.push(schema);
                }
            }
            Some(_) => {
                return Err(ApiError::field(FieldError::new(
                    format!("schemas[{index}]"),
                    format!("schema '{id}' is disabled; enable it first"),
                ))
                .with_status(axum::http::StatusCode::BAD_REQUEST));
            }
            None => {
                return Err(ApiError::field(FieldError::new(
                    format!("schemas[{index}]"),
                    format!("'{id}' is not a schema of this sync"),
                ))
                .with_status(axum::http::StatusCode::BAD_REQUEST));
            }
        }
    }
    let is_partial = !selected.is_empty() && selected.len() < enabled.len();
    if selected.is_empty() {
        selected = enabled;
    }
    if selected.is_empty() {
        return Err(ApiError::bad_request(
            "the sync has no enabled schemas; enable some with PATCH /api/bulk/syncs/{id}/schemas",
        ));
    }
    if settle_orphan(state, sync.id).await?.is_some() {
        return Err(ApiError::conflict(
            "an execution of this bulk sync is running",
        ));
    }
    let fetch_mode = options
        .fetch_mode
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "incremental".to_string());
    let new = NewBulkExecution {
        execution_type: options.execution_type.clone(),
        fetch_mode: if fetch_mode == "none" {
            "incremental".to_string()
        } else {
            fetch_mode
        },
        output_disposition: "retain".to_string(),
        is_resync: options.resync_mode.is_some(),
        is_partial,
        is_test: options.test,
        schemas: selected
            .iter()
            .map(|s| (s.schema_id.clone(), output_name(s)))
            .collect(),
    };
    check_bulk_run(state, sync).await?;
    let execution = crate::jobs::enqueue_bulk_sync(state, sync, &new).await?;
    tracing::info!(bulk_sync_id = %sync.id, execution_id = %execution.id, execution_type = %options.execution_type, "bulk execution queued");
    Ok(execution)
}

/// Requests cancellation of a sync's unfinished execution (no-op when none).
pub(crate) async fn cancel_active(state: &AppState, sync: &BulkSync) -> ApiResult<Option<String>> {
    match state.store().active_bulk_execution(sync.id).await? {
        Some(execution) => cancel_running(state, sync, &execution).await.map(Some),
        None => Ok(None),
    }
}

/// Cancels an execution through the store, so it reaches the worker running it in any
/// process: `canceling`, which the worker reads at its next poll (at once when it runs in
/// this process); a job nobody claimed yet is settled `canceled` on the spot, and so is an
/// execution without a live job.
async fn cancel_running(
    state: &AppState,
    sync: &BulkSync,
    execution: &BulkExecution,
) -> ApiResult<String> {
    if ferry_store::bulk_syncs::is_terminal(&execution.status) {
        return Ok(format!(
            "execution {} already ended ({})",
            execution.id, execution.status
        ));
    }
    state
        .store()
        .transition_bulk_execution(
            execution.id,
            &["created", "scheduled", "running", "exporting", "processing"],
            "canceling",
            None,
        )
        .await?;
    let job = state.store().job_for_execution(execution.id).await?;
    match &job {
        Some(job) if job.status == JobStatus::Queued => {
            // Not claimed yet: it never runs. (Claimed meanwhile: the worker sees
            // `canceling` before it starts.)
            if state.store().cancel_queued_job(job.id).await? {
                finish_bulk_execution(state, sync, execution.id, &[], true).await?;
            }
        }
        Some(job) if job.status == JobStatus::Running => {
            state.bulk_runs().cancel(sync.id, execution.id);
        }
        _ => {
            // No job runs it any more.
            state
                .store()
                .transition_bulk_execution(
                    execution.id,
                    &ferry_store::bulk_syncs::ACTIVE_STATUSES,
                    "canceled",
                    Some("canceled"),
                )
                .await?;
        }
    }
    Ok(format!(
        "cancellation of execution {} requested",
        execution.id
    ))
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

/// A `BulkSyncExecution`.
pub(crate) fn execution_body(execution: &BulkExecution) -> Value {
    let schemas: Vec<Value> = execution
        .schemas
        .iter()
        .map(|s| {
            json!({
                "schema": s.schema_id,
                "output_name": s.output_name,
                "status": s.status,
                "status_message": s.status_message,
                "created_at": rfc3339(s.created_at),
                "started_at": s.started_at.map(rfc3339),
                "completed_at": s.completed_at.map(rfc3339),
                "updated_at": rfc3339(s.updated_at),
                "record_count": s.record_count,
                "delete_count": s.delete_count,
                "error_count": s.error_count,
                "warning_count": s.warning_count,
            })
        })
        .collect();
    json!({
        "id": execution.id,
        "type": execution.execution_type,
        "status": execution.status,
        "status_message": execution.status_message,
        "created_at": rfc3339(execution.created_at),
        "started_at": execution.started_at.map(rfc3339),
        "completed_at": execution.completed_at.map(rfc3339),
        "updated_at": rfc3339(execution.updated_at),
        "fetch_mode": execution.fetch_mode,
        "output_disposition": execution.output_disposition,
        "is_resync": execution.is_resync,
        "is_partial": execution.is_partial,
        "is_test": execution.is_test,
        "record_count": execution.record_count,
        "error_count": execution.error_count,
        "warning_count": execution.warning_count,
        "schemas": schemas,
    })
}

// ---------------------------------------------------------------------------------------
// Routes and handlers
// ---------------------------------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/executions",
                "bulk syncs",
                "Start an execution ({fetch_mode, resync_mode, schemas, test}); 409 while one runs",
            ),
            post(start),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions",
                "bulk syncs",
                "List executions, newest first",
            )
            .query("page_token", "from a previous page")
            .query("limit", "page size (default 50, at most 100)")
            .query("only_terminal", "only ended executions, by last update")
            .query("ascending", "oldest first"),
            get(list_executions),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions/{execution_id}",
                "bulk syncs",
                "Get an execution with its schema executions",
            ),
            get(fetch_execution),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/executions/{execution_id}/cancel",
                "bulk syncs",
                "Cancel an execution",
            ),
            post(cancel_execution),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/cancel",
                "bulk syncs",
                "Cancel the running execution",
            ),
            post(cancel_sync),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/schemas/{schema_id}/cancel",
                "bulk syncs",
                "Cancel one schema of the running execution",
            ),
            post(cancel_schema),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/status",
                "bulk syncs",
                "Current and last execution and the next scheduled time",
            ),
            get(status),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/status",
                "bulk syncs",
                "Latest execution status per schema of several syncs",
            )
            .query("all", "every sync of the organization")
            .query("active", "every active sync")
            .query("sync_id", "these syncs (repeatable)"),
            get(status_list),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions/{execution_id}/logs",
                "bulk syncs",
                "URLs of the execution's log files ({\"URLs\", \"Expires\"})",
            ),
            get(log_urls),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions/{execution_id}/logs/{file}",
                "bulk syncs",
                "One execution log file (JSON lines)",
            ),
            get(log_file),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/executions/{execution_id}/logs/export",
                "bulk syncs",
                "The URL of the execution's full log",
            )
            .query("notify", "accepted; no email is sent"),
            post(export_logs),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions/{execution_id}/consolelog",
                "bulk syncs",
                "Console log entries of an execution",
            )
            .query("limit", "at most 50")
            .query("after", "entries after this cursor"),
            get(console_log),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/executions/{execution_id}/schemas/{schema_id}/consolelog",
                "bulk syncs",
                "Console log entries of one schema of an execution",
            )
            .query("limit", "at most 50")
            .query("after", "entries after this cursor"),
            get(schema_console_log),
        )
}

#[derive(Debug, Default, Deserialize)]
struct StartBody {
    fetch_mode: Option<String>,
    resync_mode: Option<String>,
    schemas: Option<Vec<String>>,
    test: Option<bool>,
    resync: Option<Value>,
}

fn parse_start_body(body: &[u8]) -> ApiResult<StartOptions> {
    let body: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        match crate::extract::parse_json::<Value>(body)? {
            Value::Null => StartBody::default(),
            value => serde_json::from_value(value).map_err(|error| {
                ApiError::bad_request(format!("invalid start request: {error}"))
            })?,
        }
    };
    if body.resync.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "'resync' is not accepted in API version 2025-09-18; use resync_mode",
        )
        .with_metadata("field", "resync"));
    }
    let fetch_mode = body.fetch_mode.filter(|m| !m.is_empty());
    if let Some(mode) = &fetch_mode
        && !FETCH_MODES.contains(&mode.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "fetch_mode: '{mode}' is not accepted; accepted: {}",
            FETCH_MODES.join(", ")
        ))
        .with_metadata("field", "fetch_mode"));
    }
    let resync_mode = body.resync_mode.filter(|m| !m.is_empty());
    if let Some(mode) = &resync_mode
        && !target::RESYNC_MODES.contains(&mode.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "resync_mode: '{mode}' is not supported; accepted: {} (Ferry never drops \
             destination tables)",
            target::RESYNC_MODES.join(", ")
        ))
        .with_metadata("field", "resync_mode"));
    }
    let test = body.test.unwrap_or(false);
    if test && resync_mode.is_some() {
        return Err(
            ApiError::bad_request("test and resync_mode cannot be combined")
                .with_metadata("field", "resync_mode"),
        );
    }
    let execution_type = if test {
        "test"
    } else if resync_mode.is_some() {
        "resync"
    } else {
        "manual"
    };
    Ok(StartOptions {
        execution_type: execution_type.to_string(),
        fetch_mode,
        resync_mode,
        schemas: body
            .schemas
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect(),
        test,
    })
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: bytes::Bytes,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let options = parse_start_body(&body)?;
    let execution = start_execution(&state, &sync, options).await?;
    Ok(Json(json!({"data": execution_body(&execution)})))
}

#[derive(Debug, Deserialize)]
struct ExecutionsQuery {
    page_token: Option<String>,
    limit: Option<i64>,
    only_terminal: Option<bool>,
    ascending: Option<bool>,
}

async fn list_executions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let page = Page::from_query(
        query.page_token.as_deref(),
        query.limit,
        EXECUTION_PAGE,
        EXECUTION_PAGE_MAX,
    )?;
    let executions = state
        .store()
        .list_bulk_executions(
            sync.id,
            BulkExecutionPage {
                ascending: query.ascending.unwrap_or(false),
                only_terminal: query.only_terminal.unwrap_or(false),
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
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    Ok(Json(json!({"data": execution_body(&execution)})))
}

async fn cancel_execution(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let message = cancel_running(&state, &sync, &execution).await?;
    Ok(Json(json!({"data": {"message": message}})))
}

async fn cancel_sync(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let message = cancel_active(&state, &sync)
        .await?
        .unwrap_or_else(|| "no execution is running".to_string());
    Ok(Json(json!({"data": {"message": message}})))
}

async fn cancel_schema(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schema_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    if !state
        .store()
        .bulk_schemas(sync.id)
        .await?
        .iter()
        .any(|s| s.schema_id == schema_id)
    {
        return Err(ApiError::not_found("schema"));
    }
    let message = match settle_orphan(&state, sync.id).await? {
        Some(execution) => {
            let pending = execution.schemas.iter().any(|s| {
                s.schema_id == schema_id && !ferry_store::bulk_syncs::is_terminal(&s.status)
            });
            // Recorded on the job (read by its worker in any process, and kept for a
            // later attempt), and applied at once when the run is in this process.
            let recorded = match state.store().job_for_execution(execution.id).await? {
                Some(job) if pending && job.status != JobStatus::Done => {
                    state
                        .store()
                        .request_part_cancel(job.id, &schema_id)
                        .await?
                }
                _ => false,
            };
            if recorded {
                state
                    .bulk_runs()
                    .cancel_schema(sync.id, execution.id, &schema_id);
                format!(
                    "cancellation of {schema_id} in execution {} requested",
                    execution.id
                )
            } else {
                format!("{schema_id} is not running in execution {}", execution.id)
            }
        }
        None => "no execution is running".to_string(),
    };
    Ok(Json(json!({"data": {"message": message}})))
}

async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let current = settle_orphan(&state, sync.id).await?;
    let last = state.store().last_finished_bulk_execution(sync.id).await?;
    let last_started = current
        .as_ref()
        .or(last.as_ref())
        .map(|execution| execution.created_at);
    let schedules = state.store().bulk_schedules(sync.id).await?;
    let next = super::schedules::next_execution_time(&sync, &schedules, last_started);
    Ok(Json(json!({"data": {
        "current_execution": current.as_ref().map(execution_body),
        "last_execution": last.as_ref().map(execution_body),
        "next_execution_time": next.map(rfc3339),
    }})))
}

/// How many recent executions the status list looks through for each schema's latest.
const STATUS_HISTORY: i64 = 25;

async fn status_list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|error| ApiError::bad_request(format!("invalid query string: {error}")))?;
    let flag = |name: &str| -> ApiResult<bool> {
        match pairs.iter().rev().find(|(key, _)| key == name) {
            None => Ok(false),
            Some((_, value)) => value.parse::<bool>().map_err(|_| {
                ApiError::bad_request(format!("{name}: '{value}' is not true or false"))
            }),
        }
    };
    let all = flag("all")?;
    let active = flag("active")?;
    let mut ids = Vec::new();
    for (key, value) in &pairs {
        if key == "sync_id" || key == "sync_id[]" {
            ids.push(
                Uuid::parse_str(value.trim()).map_err(|_| {
                    ApiError::bad_request(format!("sync_id: '{value}' is not a UUID"))
                })?,
            );
        }
    }
    let syncs = state
        .store()
        .list_bulk_syncs(caller.organization_id, active.then_some(true))
        .await?;
    let selected: Vec<&BulkSync> = if all || active || ids.is_empty() {
        syncs.iter().collect()
    } else {
        for id in &ids {
            if !syncs.iter().any(|s| s.id == *id) {
                return Err(ApiError::not_found("bulk sync"));
            }
        }
        syncs.iter().filter(|s| ids.contains(&s.id)).collect()
    };
    let mut data = Vec::with_capacity(selected.len());
    for sync in selected {
        let current = settle_orphan(&state, sync.id).await?;
        let recent = state
            .store()
            .list_bulk_executions(
                sync.id,
                BulkExecutionPage {
                    ascending: false,
                    only_terminal: false,
                    offset: 0,
                    limit: STATUS_HISTORY,
                },
            )
            .await?;
        // Each schema once: the running execution wins, then the newest.
        let mut schemas: Vec<Value> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for execution in current.iter().chain(recent.iter()) {
            for schema in &execution.schemas {
                if seen.contains(&schema.schema_id) {
                    continue;
                }
                seen.push(schema.schema_id.clone());
                schemas.push(json!({
                    "schema": schema.schema_id,
                    "execution_id": execution.id,
                    "status": schema.status,
                    "status_message": schema.status_message,
                    "started_at": schema.started_at.map(rfc3339),
                    "completed_at": schema.completed_at.map(rfc3339),
                    "record_count": schema.record_count,
                    "error_count": schema.error_count,
                    "warning_count": schema.warning_count,
                }));
            }
        }
        let latest = current.as_ref().or(recent.first());
        let schedules = state.store().bulk_schedules(sync.id).await?;
        let next = super::schedules::next_execution_time(
            sync,
            &schedules,
            latest.map(|execution| execution.created_at),
        );
        data.push(json!({
            "sync_id": sync.id,
            "status": latest.map(|execution| execution.status.clone()),
            "nextExecutionTime": next.map(rfc3339),
            "schemas": schemas,
        }));
    }
    Ok(Json(json!({ "data": data })))
}

fn log_file_url(state: &AppState, sync_id: Uuid, execution_id: Uuid, number: i64) -> String {
    let base = state.settings().public_base_url.trim_end_matches('/');
    format!("{base}/api/bulk/syncs/{sync_id}/executions/{execution_id}/logs/log-{number:04}.jsonl")
}

async fn log_urls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let lines = state
        .store()
        .count_bulk_execution_logs(execution.id)
        .await?;
    let files = (lines + LOG_FILE_LINES - 1) / LOG_FILE_LINES;
    let urls: Vec<String> = (1..=files)
        .map(|n| log_file_url(&state, sync.id, execution.id, n))
        .collect();
    Ok(Json(json!({"data": {
        "URLs": urls,
        "Expires": rfc3339(Utc::now() + LOG_URL_TTL),
    }})))
}

async fn log_file(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id, file)): ApiPath<(Uuid, Uuid, String)>,
) -> ApiResult<Response> {
    let number = file
        .strip_prefix("log-")
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::not_found("log file"))?;
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let lines = state
        .store()
        .bulk_execution_logs(execution.id, (number - 1) * LOG_FILE_LINES, LOG_FILE_LINES)
        .await?;
    if lines.is_empty() {
        return Err(ApiError::not_found("log file"));
    }
    let mut body = String::new();
    for line in lines {
        body.push_str(&line);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn export_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    let lines = state
        .store()
        .count_bulk_execution_logs(execution.id)
        .await?;
    if lines == 0 {
        return Err(ApiError::not_found("execution log"));
    }
    if lines > LOG_FILE_LINES {
        return Err(ApiError::bad_request(format!(
            "the log has {lines} lines; download its files from \
             GET /api/bulk/syncs/{id}/executions/{execution_id}/logs"
        )));
    }
    Ok(Json(json!({
        "data": {"url": log_file_url(&state, sync.id, execution.id, 1)},
        "job": null,
    })))
}

#[derive(Debug, Deserialize)]
struct ConsoleQuery {
    limit: Option<i64>,
    after: Option<String>,
}

async fn console_page(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    execution_id: Uuid,
    schema_id: Option<&str>,
    query: ConsoleQuery,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let execution = state.store().bulk_execution(sync.id, execution_id).await?;
    if let Some(schema_id) = schema_id
        && !execution.schemas.iter().any(|s| s.schema_id == schema_id)
    {
        return Err(ApiError::not_found("schema execution"));
    }
    let limit = match query.limit {
        Some(n) if n > 0 => n.min(CONSOLE_PAGE_MAX),
        Some(_) => return Err(ApiError::bad_request("limit must be at least 1")),
        None => CONSOLE_PAGE_MAX,
    };
    let after = match query
        .after
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("after is not a cursor this server issued"))?,
        ),
    };
    let total = state
        .store()
        .count_bulk_execution_logs(execution.id)
        .await?;
    let lines = state
        .store()
        .bulk_execution_logs(execution.id, after.map_or(0, |a| a + 1), total.max(1))
        .await?;
    let first = after.map_or(0, |a| a + 1);
    let mut entries: Vec<(i64, Value)> = lines
        .iter()
        .enumerate()
        .filter_map(|(offset, line)| {
            let value: Value = serde_json::from_str(line).ok()?;
            Some((first + offset as i64, value))
        })
        .filter(|(_, value)| {
            schema_id
                .is_none_or(|schema| value.get("schema").and_then(Value::as_str) == Some(schema))
        })
        .collect();
    // Without a cursor: the latest entries; with one: the entries right after it.
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if after.is_none() && entries.len() > limit {
        entries.drain(..entries.len() - limit);
    } else {
        entries.truncate(limit);
    }
    let next_cursor = entries.last().map(|(seq, _)| seq.to_string());
    let data: Vec<Value> = entries
        .into_iter()
        .map(|(seq, value)| {
            json!({
                "id": seq.to_string(),
                "level": value.get("level").cloned().unwrap_or(Value::Null),
                "message": value.get("message").cloned().unwrap_or(Value::Null),
                "payload": value.get("payload").cloned().unwrap_or(Value::Null),
                "timestamp": value.get("timestamp").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(
        json!({"data": {"entries": data, "next_cursor": next_cursor}}),
    ))
}

async fn console_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<ConsoleQuery>,
) -> ApiResult<Json<Value>> {
    console_page(&state, &caller, id, execution_id, None, query).await
}

async fn schema_console_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, execution_id, schema_id)): ApiPath<(Uuid, Uuid, String)>,
    ApiQuery(query): ApiQuery<ConsoleQuery>,
) -> ApiResult<Json<Value>> {
    console_page(&state, &caller, id, execution_id, Some(&schema_id), query).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_bodies_are_checked() {
        assert_eq!(parse_start_body(b"").unwrap().execution_type, "manual");
        assert_eq!(parse_start_body(b"{}").unwrap().execution_type, "manual");
        let options =
            parse_start_body(br#"{"resync_mode": "refetch", "schemas": ["Account"]}"#).unwrap();
        assert_eq!(options.execution_type, "resync");
        assert_eq!(options.schemas, ["Account"]);
        let field = |body: &[u8]| parse_start_body(body).unwrap_err().metadata["field"].clone();
        assert_eq!(field(br#"{"resync": true}"#), "resync");
        assert_eq!(field(br#"{"fetch_mode": "sometimes"}"#), "fetch_mode");
        assert_eq!(field(br#"{"resync_mode": "rebuild"}"#), "resync_mode");
        assert_eq!(
            field(br#"{"test": true, "resync_mode": "resync"}"#),
            "resync_mode"
        );
        assert_eq!(
            parse_start_body(br#"{"test": true}"#)
                .unwrap()
                .execution_type,
            "test"
        );
    }

    #[test]
    fn progress_slots_keep_the_latest_outcome() {
        let slot = ProgressSlot::default();
        let object = BulkObject {
            object: "Account".into(),
            output_name: "Account".into(),
            fields: None,
            data_cutoff: None,
        };
        let mut outcome = canceled_outcome(&object);
        outcome.records = 1;
        slot.put(&outcome);
        outcome.records = 2;
        slot.put(&outcome);
        assert_eq!(slot.take().map(|o| o.records), Some(2));
        assert!(slot.take().is_none());
    }
}
