//! Bulk-sync schedules: the `default_schedule`/`additional_schedules` of a sync, the
//! `/api/bulk/syncs/{id}/schedules` sub-resource (camelCase bodies, as Polytomic's
//! `BulkSyncScheduleAPI`/`BulkBulkSyncSchedule`), and the scheduler's pass over bulk syncs.
//!
//! Frequencies: `manual`, `continuous`, `hourly`, `daily`, `weekly`, `custom`, validated
//! with `ferry_core::schedule` (times in UTC). Scheduled frequencies are accepted only while
//! a scheduler loop runs in the process (`ferry serve`), as for model syncs. An additional
//! schedule may name the schemas it runs (empty: every enabled schema) and a resync mode
//! (`normal`, `refetch`, `resync`); `selectiveMode` accepts `none` only (field-selective
//! runs are not supported).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use ferry_core::FieldError;
use ferry_core::schedule::Schedule;
use ferry_core::time::rfc3339;
use ferry_store::{BulkExecutionPage, BulkSchedule, BulkScheduleWrite, BulkSync};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::actor;
use super::runs::{StartOptions, start_execution};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::middleware::Caller;
use crate::routes::{ApiRoutes, Operation};

/// Frequencies a bulk sync can be scheduled with.
pub const FREQUENCIES: [&str; 6] = [
    "manual",
    "continuous",
    "hourly",
    "daily",
    "weekly",
    "custom",
];

/// Accepted schedule resync modes.
pub const SYNC_MODES: [&str; 3] = ["normal", "refetch", "resync"];

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/schedules",
                "bulk syncs",
                "The schedules of a bulk sync (camelCase keys)",
            ),
            get(list),
        )
        .add(
            Operation::new(
                "post",
                "/api/bulk/syncs/{id}/schedules",
                "bulk syncs",
                "Add a schedule: {\"schedule\": {frequency, minute, hour, dayOfWeek, \
                 dayOfMonth, month, selectiveMode}}",
            ),
            axum::routing::post(create),
        )
        .add(
            Operation::new(
                "get",
                "/api/bulk/syncs/{id}/schedules/{schedule_id}",
                "bulk syncs",
                "One schedule",
            ),
            get(fetch),
        )
        .add(
            Operation::new(
                "put",
                "/api/bulk/syncs/{id}/schedules/{schedule_id}",
                "bulk syncs",
                "Replace a schedule",
            ),
            axum::routing::put(replace),
        )
        .add(
            Operation::new(
                "delete",
                "/api/bulk/syncs/{id}/schedules/{schedule_id}",
                "bulk syncs",
                "Delete an additional schedule (running executions continue)",
            )
            .status(204),
            axum::routing::delete(remove),
        )
}

fn field_error(error: FieldError) -> ApiError {
    ApiError::field(error)
}

fn text(object: &Map<String, Value>, keys: &[&str], path: &str) -> ApiResult<Option<String>> {
    for key in keys {
        match object.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(value)) => {
                let value = value.trim();
                return Ok((!value.is_empty()).then(|| value.to_string()));
            }
            // Numbers are accepted for the time fields (`"minute": 5`).
            Some(Value::Number(number)) => return Ok(Some(number.to_string())),
            Some(_) => {
                return Err(field_error(FieldError::new(
                    format!("{path}.{key}"),
                    "must be a string",
                )));
            }
        }
    }
    Ok(None)
}

/// Parses and validates a schedule (snake_case or camelCase keys); errors name
/// `path.<field>`. `known_schemas` are the sync's schema ids (for `schemas`).
pub(crate) fn parse_request_schedule(
    state: &AppState,
    path: &str,
    value: &Value,
    is_default: bool,
    known_schemas: &[String],
) -> ApiResult<BulkScheduleWrite> {
    let Value::Object(object) = value else {
        return Err(field_error(FieldError::new(
            path,
            "must be a schedule object",
        )));
    };
    let frequency = text(object, &["frequency"], path)?
        .ok_or_else(|| field_error(FieldError::new(format!("{path}.frequency"), "is required")))?;
    if !FREQUENCIES.contains(&frequency.as_str()) {
        return Err(field_error(FieldError::new(
            format!("{path}.frequency"),
            format!(
                "'{frequency}' is not supported for bulk syncs; accepted: {}",
                FREQUENCIES.join(", ")
            ),
        )));
    }
    let write = BulkScheduleWrite {
        id: match text(object, &["id"], path)? {
            Some(id) => Some(Uuid::parse_str(&id).map_err(|_| {
                field_error(FieldError::new(
                    format!("{path}.id"),
                    format!("'{id}' is not a UUID"),
                ))
            })?),
            None => None,
        },
        is_default,
        minute: text(object, &["minute"], path)?,
        hour: text(object, &["hour"], path)?,
        day_of_week: text(object, &["day_of_week", "dayOfWeek"], path)?,
        day_of_month: text(object, &["day_of_month", "dayOfMonth"], path)?,
        month: text(object, &["month"], path)?,
        selective_mode: text(object, &["selective_mode", "selectiveMode"], path)?,
        sync_mode: text(object, &["resync_mode", "syncMode", "sync_mode"], path)?,
        schemas: Vec::new(),
        frequency,
        actor: None,
    };
    let schedule = core_schedule(&write);
    schedule
        .validate()
        .map_err(|error| field_error(error.prefixed(path)))?;
    if write.frequency != "manual" && !state.sync_runner().scheduler_running() {
        return Err(field_error(FieldError::new(
            format!("{path}.frequency"),
            format!(
                "'{}' needs the scheduler, which does not run in this process (`ferry serve` \
                 runs it); use manual and start runs with POST /api/bulk/syncs/{{id}}/executions",
                write.frequency
            ),
        )));
    }
    if let Some(mode) = &write.selective_mode
        && mode != "none"
    {
        return Err(field_error(FieldError::new(
            format!("{path}.selective_mode"),
            format!("'{mode}' is not supported; accepted: none"),
        )));
    }
    if let Some(mode) = &write.sync_mode
        && !SYNC_MODES.contains(&mode.as_str())
    {
        return Err(field_error(FieldError::new(
            format!("{path}.resync_mode"),
            format!(
                "'{mode}' is not supported; accepted: {}",
                SYNC_MODES.join(", ")
            ),
        )));
    }
    let schemas = match object.get("schemas") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut schemas = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let Some(id) = item.as_str().map(str::trim).filter(|id| !id.is_empty()) else {
                    return Err(field_error(FieldError::new(
                        format!("{path}.schemas[{index}]"),
                        "must be a schema id",
                    )));
                };
                if !known_schemas.iter().any(|known| known == id) {
                    return Err(field_error(FieldError::new(
                        format!("{path}.schemas[{index}]"),
                        format!("'{id}' is not a schema of this sync"),
                    )));
                }
                schemas.push(id.to_string());
            }
            schemas
        }
        Some(_) => {
            return Err(field_error(FieldError::new(
                format!("{path}.schemas"),
                "must be a list of schema ids",
            )));
        }
    };
    Ok(BulkScheduleWrite { schemas, ..write })
}

/// The `ferry_core` form of a schedule.
fn core_schedule(write: &BulkScheduleWrite) -> Schedule {
    Schedule {
        frequency: write.frequency.clone(),
        minute: write.minute.clone(),
        hour: write.hour.clone(),
        day_of_week: write.day_of_week.clone(),
        day_of_month: write.day_of_month.clone(),
        month: write.month.clone(),
        run_after: None,
        run_after_success_only: None,
    }
}

fn stored_schedule(schedule: &BulkSchedule) -> Schedule {
    Schedule {
        frequency: schedule.frequency.clone(),
        minute: schedule.minute.clone(),
        hour: schedule.hour.clone(),
        day_of_week: schedule.day_of_week.clone(),
        day_of_month: schedule.day_of_month.clone(),
        month: schedule.month.clone(),
        run_after: None,
        run_after_success_only: None,
    }
}

/// A schedule inside a `BulkSyncResponse` (snake_case).
pub(crate) fn response_schedule(schedule: &BulkSchedule, additional: bool) -> Value {
    let mut body = json!({
        "id": schedule.id,
        "frequency": schedule.frequency,
        "minute": schedule.minute,
        "hour": schedule.hour,
        "day_of_week": schedule.day_of_week,
        "day_of_month": schedule.day_of_month,
        "month": schedule.month,
        "created_at": rfc3339(schedule.created_at),
        "created_by": actor(&schedule.created_by),
        "updated_at": rfc3339(schedule.updated_at),
        "updated_by": actor(&schedule.updated_by),
    });
    if additional {
        body["schemas"] = json!(schedule.schemas);
        body["selective_mode"] = json!(schedule.selective_mode.as_deref().unwrap_or("none"));
        body["resync_mode"] = json!(schedule.sync_mode.as_deref().unwrap_or("normal"));
    }
    body
}

/// A `BulkBulkSyncSchedule` (camelCase; `createdBy`/`updatedBy` are plain strings).
pub(crate) fn api_schedule_body(schedule: &BulkSchedule) -> Value {
    json!({
        "id": schedule.id,
        "frequency": schedule.frequency,
        "minute": schedule.minute,
        "hour": schedule.hour,
        "month": schedule.month,
        "dayOfWeek": schedule.day_of_week,
        "dayOfMonth": schedule.day_of_month,
        "selectiveMode": schedule.selective_mode.as_deref().unwrap_or("none"),
        "syncMode": schedule.sync_mode.as_deref().unwrap_or("normal"),
        "schemas": schedule.schemas,
        "isDefault": schedule.is_default,
        "syncId": schedule.sync_id,
        "createdAt": rfc3339(schedule.created_at),
        "createdBy": schedule.created_by,
        "updatedAt": rfc3339(schedule.updated_at),
        "updatedBy": schedule.updated_by,
    })
}

/// When the sync next runs on one of its schedules (`None`: inactive or manual only).
/// A schedule counts from the later of the last execution's start and its own last change.
pub fn next_execution_time(
    sync: &BulkSync,
    schedules: &[BulkSchedule],
    last_started: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    if !sync.active {
        return None;
    }
    schedules
        .iter()
        .filter_map(|schedule| {
            let base =
                last_started.map_or(schedule.updated_at, |last| last.max(schedule.updated_at));
            stored_schedule(schedule).next_after(base)
        })
        .min()
}

async fn sync_and_schemas(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> ApiResult<(BulkSync, Vec<String>)> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let schemas = state
        .store()
        .bulk_schemas(sync.id)
        .await?
        .into_iter()
        .map(|s| s.schema_id)
        .collect();
    Ok((sync, schemas))
}

fn schedule_member(body: &Value) -> ApiResult<&Value> {
    body.get("schedule")
        .filter(|v| !v.is_null())
        .ok_or_else(|| field_error(FieldError::new("schedule", "is required")))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let data: Vec<Value> = state
        .store()
        .bulk_schedules(sync.id)
        .await?
        .iter()
        .map(api_schedule_body)
        .collect();
    Ok(Json(json!({ "data": data })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let (sync, schemas) = sync_and_schemas(&state, &caller, id).await?;
    let mut write =
        parse_request_schedule(&state, "schedule", schedule_member(&body)?, false, &schemas)?;
    write.id = None;
    write.actor = Some(caller.api_key_id.to_string());
    let schedule = state.store().put_bulk_schedule(sync.id, &write).await?;
    Ok(Json(json!({ "data": api_schedule_body(&schedule) })))
}

async fn find(state: &AppState, sync_id: Uuid, schedule_id: Uuid) -> ApiResult<BulkSchedule> {
    state
        .store()
        .bulk_schedules(sync_id)
        .await?
        .into_iter()
        .find(|s| s.id == schedule_id)
        .ok_or_else(|| ApiError::not_found("schedule"))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schedule_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Value>> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let schedule = find(&state, sync.id, schedule_id).await?;
    Ok(Json(json!({ "data": api_schedule_body(&schedule) })))
}

async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schedule_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    let (sync, schemas) = sync_and_schemas(&state, &caller, id).await?;
    let current = find(&state, sync.id, schedule_id).await?;
    let mut write = parse_request_schedule(
        &state,
        "schedule",
        schedule_member(&body)?,
        current.is_default,
        &schemas,
    )?;
    write.id = Some(current.id);
    write.actor = Some(caller.api_key_id.to_string());
    let schedule = state.store().put_bulk_schedule(sync.id, &write).await?;
    Ok(Json(json!({ "data": api_schedule_body(&schedule) })))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, schedule_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let sync = state.store().bulk_sync(caller.organization_id, id).await?;
    let current = find(&state, sync.id, schedule_id).await?;
    if current.is_default {
        return Err(ApiError::bad_request(
            "the default schedule cannot be deleted; set its frequency to manual instead",
        ));
    }
    state
        .store()
        .delete_bulk_schedule(sync.id, schedule_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The scheduler's pass over bulk syncs at `now` (called from the model-sync scheduler's
/// tick): starts an execution (type `scheduled`) of every active sync one of whose
/// schedules is due and that has no unfinished execution. Returns the executions started.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> ApiResult<Vec<Uuid>> {
    let mut started = Vec::new();
    for sync in state.store().list_active_bulk_syncs().await? {
        let schedules = state.store().bulk_schedules(sync.id).await?;
        if schedules.iter().all(|s| s.frequency == "manual") {
            continue;
        }
        if super::runs::settle_orphan(state, sync.id).await?.is_some() {
            continue;
        }
        let last_started = state
            .store()
            .list_bulk_executions(
                sync.id,
                BulkExecutionPage {
                    ascending: false,
                    only_terminal: false,
                    offset: 0,
                    limit: 1,
                },
            )
            .await?
            .first()
            .map(|e| e.created_at);
        let due = schedules
            .iter()
            .find(|schedule| match schedule.frequency.as_str() {
                "manual" => false,
                "continuous" => true,
                _ => {
                    let base = last_started
                        .map_or(schedule.updated_at, |last| last.max(schedule.updated_at));
                    stored_schedule(schedule)
                        .next_after(base)
                        .is_some_and(|next| next <= now)
                }
            });
        let Some(schedule) = due else {
            continue;
        };
        let resync = matches!(schedule.sync_mode.as_deref(), Some("refetch" | "resync"));
        let options = StartOptions {
            execution_type: "scheduled".to_string(),
            fetch_mode: None,
            resync_mode: resync.then(|| schedule.sync_mode.clone().unwrap_or_default()),
            schemas: schedule.schemas.clone(),
            test: false,
        };
        match start_execution(state, &sync, options).await {
            Ok(execution) => started.push(execution.id),
            Err(error) => {
                tracing::warn!(bulk_sync_id = %sync.id, error = %error.message, "scheduled bulk start failed");
            }
        }
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(frequency: &str, minute: Option<&str>) -> BulkSchedule {
        let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        BulkSchedule {
            id: Uuid::new_v4(),
            sync_id: Uuid::new_v4(),
            is_default: true,
            frequency: frequency.to_string(),
            minute: minute.map(str::to_string),
            hour: None,
            day_of_week: None,
            day_of_month: None,
            month: None,
            selective_mode: None,
            sync_mode: None,
            schemas: Vec::new(),
            created_at: at,
            created_by: Some("key".into()),
            updated_at: at,
            updated_by: None,
        }
    }

    fn sync(active: bool) -> BulkSync {
        let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        BulkSync {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            name: "s".into(),
            source_connection_id: Uuid::new_v4(),
            destination_connection_id: Uuid::new_v4(),
            mode: "replicate".into(),
            active,
            document: json!({}),
            created_at: at,
            created_by: None,
            updated_at: at,
            updated_by: None,
        }
    }

    #[test]
    fn next_time_is_the_earliest_schedule() {
        let schedules = [
            schedule("hourly", Some("30")),
            schedule("hourly", Some("10")),
            schedule("manual", None),
        ];
        assert_eq!(
            next_execution_time(&sync(true), &schedules, None)
                .map(rfc3339)
                .as_deref(),
            Some("2024-01-01T00:10:00.000Z")
        );
        let last = DateTime::parse_from_rfc3339("2024-01-01T00:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            next_execution_time(&sync(true), &schedules, Some(last))
                .map(rfc3339)
                .as_deref(),
            Some("2024-01-01T00:30:00.000Z")
        );
        assert!(next_execution_time(&sync(false), &schedules, None).is_none());
    }

    #[test]
    fn schedule_bodies_use_camel_case() {
        let body = api_schedule_body(&schedule("hourly", Some("5")));
        for key in [
            "dayOfWeek",
            "dayOfMonth",
            "selectiveMode",
            "syncMode",
            "isDefault",
            "syncId",
            "createdAt",
            "createdBy",
        ] {
            assert!(body.get(key).is_some(), "{key}");
        }
        assert_eq!(body["createdBy"], "key");
        assert_eq!(body["minute"], "5");
    }
}
