//! The model-sync scheduler: starts executions of active syncs when their schedule says.
//!
//! [`run`] ticks every `interval` until `shutdown`; each tick ([`tick`]) looks at every
//! active sync and starts an execution (type `scheduled`) when none runs and
//!
//! - `hourly`, `daily`, `weekly`, `custom`: the schedule's next time after the later of
//!   the last execution's start and the sync's last change has come;
//! - `continuous`: the previous execution has ended (or there was none);
//! - `runafter`: a model sync it names finished (successfully, with
//!   `run_after_success_only`) after this sync last started or changed.
//!
//! While a loop runs, [`ferry_engine::Runner::scheduler_running`] is true and the API
//! accepts scheduled frequencies; without one it answers 422, so a schedule is never a
//! setting that does nothing. `ferry serve` runs the loop; a start enqueues a job that a
//! worker runs ([`crate::jobs`]). With several processes sharing PostgreSQL, the unique
//! "one unfinished execution per sync" index makes a second start of the same sync fail
//! harmlessly.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_engine::spec::{SyncDocument, run_after_syncs, schedule_of};
use ferry_engine::{CancellationToken, RunOptions};
use ferry_store::{ExecutionPage, ModelSync};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// Default time between ticks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(state: AppState, shutdown: CancellationToken, interval: Duration) {
    let _guard = state.sync_runner().scheduler_guard();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        match tick(&state, Utc::now()).await {
            Ok(started) if !started.is_empty() => {
                tracing::info!(executions = started.len(), "scheduled executions started");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error.message, "scheduler tick failed"),
        }
    }
}

/// When a sync is next due after its last run (`None`: not time-based or not active).
pub fn next_run(sync: &ModelSync, last_started: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    if !sync.active {
        return None;
    }
    let document: SyncDocument = serde_json::from_value(sync.document.clone()).ok()?;
    let schedule = schedule_of(&document).ok()?;
    let base = last_started.map_or(sync.updated_at, |last| last.max(sync.updated_at));
    schedule.next_after(base)
}

/// `runafter`: whether a sync it waits for finished (successfully, with
/// `run_after_success_only`) after this sync's last start (or last change).
async fn after_dependencies(
    state: &AppState,
    sync: &ModelSync,
    last_started: Option<DateTime<Utc>>,
) -> Result<bool, ApiError> {
    let Ok(document) = serde_json::from_value::<SyncDocument>(sync.document.clone()) else {
        return Ok(false);
    };
    let Ok(schedule) = schedule_of(&document) else {
        return Ok(false);
    };
    let success_only = schedule.run_after_success_only.unwrap_or(false);
    let since = last_started.map_or(sync.updated_at, |last| last.max(sync.updated_at));
    for dependency in run_after_syncs(&schedule).unwrap_or_default() {
        // Only syncs of the same organization count.
        if state
            .store()
            .sync(sync.organization_id, dependency)
            .await
            .is_err()
        {
            continue;
        }
        let Some(finished) = state.store().last_finished_execution(dependency).await? else {
            continue;
        };
        if success_only && finished.status != "completed" {
            continue;
        }
        if finished.completed_at.is_some_and(|at| at > since) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One pass over the active syncs at `now`; returns the executions started.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> Result<Vec<Uuid>, ApiError> {
    let mut started = Vec::new();
    for sync in state.store().list_active_syncs().await? {
        let frequency = sync
            .document
            .get("schedule")
            .and_then(|s| s.get("frequency"))
            .and_then(|f| f.as_str())
            .unwrap_or("manual")
            .to_string();
        if frequency == "manual" {
            continue;
        }
        // An unfinished execution (queued or running in any process) holds the sync.
        if super::settle_orphan(state, sync.id).await?.is_some() {
            continue;
        }
        let last = state
            .store()
            .list_executions(
                sync.id,
                ExecutionPage {
                    ascending: false,
                    only_completed: false,
                    offset: 0,
                    limit: 1,
                },
            )
            .await?
            .into_iter()
            .next();
        let last_started = last.as_ref().map(|e| e.created_at);
        let due = match frequency.as_str() {
            "continuous" => true,
            "runafter" => after_dependencies(state, &sync, last_started).await?,
            _ => next_run(&sync, last_started).is_some_and(|next| next <= now),
        };
        if !due {
            continue;
        }
        match super::start_execution(
            state,
            sync.organization_id,
            &sync,
            RunOptions::default(),
            "scheduled",
        )
        .await
        {
            Ok(execution) => started.push(execution.id),
            Err(error) => {
                tracing::warn!(sync_id = %sync.id, error = %error.message, "scheduled start failed");
            }
        }
    }
    started.extend(crate::bulk_syncs::schedules::tick(state, now).await?);
    Ok(started)
}
