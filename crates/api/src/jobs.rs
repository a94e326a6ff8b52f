//! Jobs and workers: every execution — model sync or bulk sync — is a job in the store
//! (`ferry_store::jobs`), and workers claim and run them.
//!
//! - [`enqueue_model_sync`], [`enqueue_bulk_sync`]: the API's starts and the schedulers
//!   check that the sync can run, then write the execution and its job in one transaction
//!   (409 while one is unfinished).
//! - [`run_worker`]: the worker loop — claims jobs (at most `concurrency` at once; the store
//!   enforces the per-Salesforce-connection cap across processes), runs each on its own
//!   task and heart-beats its lease every third of the lease. `ferry worker` runs it
//!   against PostgreSQL; `ferry serve` runs it in process ([`LocalWorkers`]).
//! - Dispatch: [`SUPPORTED_KINDS`] lists the kinds this build runs and `run_job` has one
//!   match arm per kind.
//!
//! Per claim, for both kinds:
//!
//! 1. The job's execution is settled: `created` runs as is; `canceling` (canceled while no
//!    worker held it) ends as `canceled`; anything else means a previous attempt started
//!    it — its worker died (lease expired) or stopped — so the attempt's execution is
//!    marked `interrupted` and the job continues as a **new execution with the same
//!    options** (the old one keeps its logs and counts). Re-running is safe: the
//!    model-sync ledger skips confirmed rows and looks up creates whose outcome was lost
//!    (`pending_create`); the bulk engine commits an object's cursor only together with
//!    its destination transaction.
//! 2. The run is built from stored rows (`crate::syncs::prepare_model_sync`,
//!    `crate::bulk_syncs::prepare_bulk_run`) and runs on the job's task; its events are
//!    raised by this worker.
//! 3. Every heartbeat of a model sync, and every [`BULK_POLL`] of a bulk sync, reads the
//!    execution's status: `canceling` (set by the API in any process) cancels the run at
//!    the next batch boundary (bulk: at the engine's next check). A bulk sync's job also
//!    carries schema cancels (`cancel_parts` in its payload), which stop that object only.
//! 4. Shutdown (SIGTERM) stops the run at the next batch boundary without ever showing it
//!    as `canceled`: the attempt becomes `interrupted`, its successor execution (`created`)
//!    is written and the job handed back to the queue, so another worker continues it.
//!    For model syncs the successor is written *before* the engine is told to stop (the
//!    engine settles a stopped run as `canceled` only while it is still `running`); a bulk
//!    run is told it is interrupted, not canceled. A worker that finds its lease taken
//!    stops the same way and leaves the job to its new owner; a model-sync worker first
//!    hands its attempt off (`interrupted` plus the successor, in one transaction,
//!    conditional on the new owner not having done it yet — whichever comes first writes
//!    it, the other continues with that successor), so a lost lease never shows
//!    `canceled` either. A bulk attempt is marked `interrupted` by the new owner.
//! 5. After a model-sync run that grew its ledger a lot, the ledger table's planner
//!    statistics are refreshed (`ANALYZE` on PostgreSQL).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_engine::{CancellationToken, RunEnd, RunOptions};
use ferry_store::{
    BulkExecution, BulkSync, ClaimRequest, Execution, Job, JobKind, ModelSync, NewBulkExecution,
    NewJob, StoreError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::AppState;
use crate::bulk_syncs::BulkRunEnd;
use crate::error::{ApiError, ApiResult};

/// The job kinds this build's workers run (one arm each in `run_job`).
pub const SUPPORTED_KINDS: &[JobKind] = &[JobKind::ModelSync, JobKind::BulkSync];

/// How often a running bulk-sync job reads its execution's status and its schema cancels
/// (model syncs read theirs at every heartbeat).
pub const BULK_POLL: Duration = Duration::from_secs(2);

/// Default in-process / per-worker concurrency.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Default lease length.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How a worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Unique id of this worker (each claim leases under it plus a suffix).
    pub owner: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease length; heartbeats come every third of it.
    pub lease: Duration,
    /// Time between claims while the queue is empty.
    pub poll: Duration,
    /// Most running jobs per Salesforce connection, across all workers.
    pub connection_limit: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            owner: worker_id(),
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            poll: Duration::from_secs(1),
            connection_limit: ferry_store::jobs::DEFAULT_CONNECTION_LIMIT,
        }
    }
}

impl WorkerSettings {
    fn heartbeat(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
    }
}

/// A lease owner id: host, process id and a random suffix (unique per worker).
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

/// The lease owner of one claim: the worker's id and a random suffix.
fn claim_owner(worker: &str) -> String {
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{worker}/{}", &suffix[..8])
}

/// The parameters of a model-sync job (its run options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ModelSyncPayload {
    #[serde(default)]
    resync: bool,
    #[serde(default)]
    test: bool,
    #[serde(default)]
    identities: Option<Vec<String>>,
}

impl ModelSyncPayload {
    fn from_options(options: &RunOptions) -> Self {
        let identities = options.identities.as_ref().map(|set| {
            let mut list: Vec<String> = set.iter().cloned().collect();
            list.sort();
            list
        });
        ModelSyncPayload {
            resync: options.resync,
            test: options.test,
            identities,
        }
    }

    fn into_options(self) -> RunOptions {
        RunOptions {
            resync: self.resync,
            test: self.test,
            identities: self.identities.map(|list| list.into_iter().collect()),
        }
    }
}

/// Enqueues an execution of a model sync: refuses what cannot run (bad document, model or
/// Salesforce connection), then writes the execution and its job together. 409 while the
/// sync has an unfinished execution.
pub async fn enqueue_model_sync(
    state: &AppState,
    organization_id: Uuid,
    sync: &ModelSync,
    options: RunOptions,
    execution_type: &str,
) -> ApiResult<Execution> {
    crate::syncs::prepare_model_sync(state, organization_id, sync).await?;
    let payload = serde_json::to_value(ModelSyncPayload::from_options(&options))
        .map_err(ApiError::internal)?;
    let job = NewJob {
        kind: JobKind::ModelSync,
        organization_id,
        subject_id: sync.id,
        execution_id: Uuid::nil(),
        payload,
        connection_ids: vec![sync.target_connection_id],
    };
    let (execution, job) = match state.store().enqueue_model_sync(job, execution_type).await {
        Ok(created) => created,
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(ApiError::conflict("an execution of this sync is running"));
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        sync_id = %sync.id,
        execution_id = %execution.id,
        job_id = %job.id,
        execution_type,
        "execution queued"
    );
    state.local_workers().wake(state);
    Ok(execution)
}

/// Enqueues an execution of a bulk sync (checked by the caller,
/// `crate::bulk_syncs::runs::start_execution`): writes the execution, its schema
/// executions and its job together. 409 while the sync has an unfinished execution. The
/// job counts against the source Salesforce connection's cap.
pub async fn enqueue_bulk_sync(
    state: &AppState,
    sync: &BulkSync,
    execution: &NewBulkExecution,
) -> ApiResult<BulkExecution> {
    let job = NewJob {
        kind: JobKind::BulkSync,
        organization_id: sync.organization_id,
        subject_id: sync.id,
        execution_id: Uuid::nil(),
        payload: serde_json::json!({}),
        connection_ids: vec![sync.source_connection_id],
    };
    let (execution, job) = match state.store().enqueue_bulk_sync(job, execution).await {
        Ok(created) => created,
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(ApiError::conflict(
                "an execution of this bulk sync is running",
            ));
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        bulk_sync_id = %sync.id,
        execution_id = %execution.id,
        job_id = %job.id,
        execution_type = %execution.execution_type,
        "bulk execution queued"
    );
    state.local_workers().wake(state);
    Ok(execution)
}

/// Waits until the sync has no unfinished execution (any process); `false` on timeout.
pub async fn wait_until_stopped(
    state: &AppState,
    sync_id: Uuid,
    timeout: Duration,
) -> ApiResult<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if crate::syncs::settle_orphan(state, sync_id).await?.is_none() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process workers of an API state. By default they start with the first enqueued
/// job ([`WorkerSettings::default`]); `ferry serve` starts them explicitly
/// ([`LocalWorkers::start`]) or disables them (`--workers 0`, and `ferry worker`, which
/// runs its own loop).
#[derive(Debug, Default)]
pub struct LocalWorkers {
    mode: Mutex<LocalMode>,
    wake: Notify,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
enum LocalMode {
    #[default]
    OnDemand,
    Disabled,
    Started(Option<tokio::task::JoinHandle<()>>),
}

impl LocalWorkers {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalMode> {
        self.mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No in-process workers: jobs wait for `ferry worker` processes.
    pub fn disable(&self) {
        let mut mode = self.lock();
        if matches!(*mode, LocalMode::OnDemand) {
            *mode = LocalMode::Disabled;
        }
    }

    /// Starts the in-process worker loop (once); it stops on [`LocalWorkers::stop`] or when
    /// the state's runner shuts down ([`ferry_engine::Runner::shutdown`]).
    pub fn start(&self, state: &AppState, settings: WorkerSettings) {
        let mut mode = self.lock();
        if matches!(*mode, LocalMode::Started(_)) {
            return;
        }
        let stop = self.stop.clone();
        let closing = state.sync_runner().closing().clone();
        let linked = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = closing.cancelled() => linked.cancel(),
                () = linked.cancelled() => {}
            }
        });
        let handle = tokio::spawn(run_worker(state.clone(), settings, stop));
        *mode = LocalMode::Started(Some(handle));
    }

    /// Stops the in-process workers: no new claims; running jobs stop at a batch
    /// boundary and go back to the queue ([`LocalWorkers::stopped`] waits for that). Call
    /// it before [`ferry_engine::Runner::shutdown`], which would cancel model-sync runs
    /// directly.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the in-process worker loop to end (after the runner's shutdown began).
    pub async fn stopped(&self) {
        let handle = match &mut *self.lock() {
            LocalMode::Started(handle) => handle.take(),
            _ => None,
        };
        if let Some(handle) = handle
            && let Err(error) = handle.await
        {
            tracing::warn!(%error, "the in-process worker ended abnormally");
        }
    }

    /// A job was enqueued: starts on-demand workers, wakes an idle local worker.
    fn wake(&self, state: &AppState) {
        if matches!(*self.lock(), LocalMode::OnDemand) {
            self.start(state, WorkerSettings::default());
        }
        self.wake.notify_one();
    }
}

/// Claims and runs jobs until `shutdown`; then lets running jobs stop at a batch boundary,
/// hands them back to the queue and returns.
pub async fn run_worker(state: AppState, settings: WorkerSettings, shutdown: CancellationToken) {
    let mut request = ClaimRequest {
        owner: settings.owner.clone(),
        lease: settings.lease,
        connection_limit: settings.connection_limit,
        kinds: SUPPORTED_KINDS.to_vec(),
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    tracing::info!(
        owner = %settings.owner,
        concurrency = settings.concurrency,
        lease_seconds = settings.lease.as_secs_f64(),
        "worker started"
    );
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        if shutdown.is_cancelled() {
            break;
        }
        // Each claim holds the lease under its own name: were this process to take over
        // its own job (a task stalled past the lease), the stalled task must see its
        // lease as lost rather than keep heart-beating and complete its successor's job.
        request.owner = claim_owner(&settings.owner);
        match state.store().claim_job(&request).await {
            Ok(Some(job)) => {
                tasks.spawn(run_job(
                    state.clone(),
                    WorkerSettings {
                        owner: request.owner.clone(),
                        ..settings.clone()
                    },
                    job,
                    shutdown.clone(),
                    permit,
                ));
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "claiming a job failed"),
        }
        drop(permit);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.poll) => {}
            () = state.local_workers().wake.notified() => {}
        }
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!(owner = %settings.owner, "worker stopped");
}

/// Runs one claimed job (the permit bounds the worker's concurrency).
async fn run_job(
    state: AppState,
    settings: WorkerSettings,
    job: Job,
    shutdown: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let started = Instant::now();
    state.metrics().job_started();
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.kind,
        attempt = job.attempts,
        subject_id = %job.subject_id,
    );
    // Renewed from the claim on, through the preparation (describes, model reads) too.
    let lease = LeaseKeeper::start(&state, &settings, &job);
    let outcome = async {
        match job.kind {
            JobKind::ModelSync => run_model_sync(&state, &settings, &job, &shutdown, &lease).await,
            JobKind::BulkSync => run_bulk_sync(&state, &settings, &job, &shutdown, &lease).await,
            other => {
                // Not claimed by this build (see SUPPORTED_KINDS); settle it anyway.
                let message = format!("this worker cannot run {other} jobs");
                complete(&state, &settings, &job, "failed", Some(&message)).await;
                "failed"
            }
        }
    }
    .instrument(span)
    .await;
    state
        .metrics()
        .job_finished(job.kind.as_str(), outcome, started.elapsed());
}

async fn complete(
    state: &AppState,
    settings: &WorkerSettings,
    job: &Job,
    outcome: &str,
    error: Option<&str>,
) {
    match state
        .store()
        .complete_job(job.id, &settings.owner, outcome, error)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the job's lease was taken before it completed"),
        Err(error) => tracing::warn!(%error, "could not record the job's outcome"),
    }
}

/// Renews a job's lease on a task of its own — a run busy between two awaits cannot delay
/// it — until dropped; `lost` is cancelled once another claim holds the lease.
///
/// Renewals are due every third of the lease, counted from the start of the previous
/// successful one. One that fails, or does not answer within that third (a stalled
/// database, a pool with no free connection), is retried at once after a short pause
/// instead of a whole interval later, so a slow statement costs a retry rather than the
/// lease. A renewal that lands later than two thirds of the lease after the previous one
/// is logged: the lease is too short for this machine's or database's stalls.
struct LeaseKeeper {
    lost: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Pause before retrying a failed renewal (at most a quarter of the renewal interval).
const RENEWAL_RETRY: Duration = Duration::from_millis(250);

impl LeaseKeeper {
    fn start(state: &AppState, settings: &WorkerSettings, job: &Job) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let store = state.store().clone();
        let (id, owner, lease, every) = (
            job.id,
            settings.owner.clone(),
            settings.lease,
            settings.heartbeat(),
        );
        let retry = RENEWAL_RETRY.min(every / 4);
        let signal = lost.clone();
        let task = tokio::spawn(
            async move {
                let mut renewed = tokio::time::Instant::now();
                let mut next = renewed + every;
                loop {
                    tokio::time::sleep_until(next).await;
                    let attempt = tokio::time::Instant::now();
                    match tokio::time::timeout(every, store.heartbeat_job(id, &owner, lease)).await
                    {
                        Ok(Ok(true)) => {
                            let gap = attempt.saturating_duration_since(renewed);
                            if gap > lease * 2 / 3 {
                                tracing::warn!(
                                    since_last_ms = millis(gap),
                                    took_ms = millis(attempt.elapsed()),
                                    lease_ms = millis(lease),
                                    "lease renewed late"
                                );
                            }
                            renewed = attempt;
                            next = attempt + every;
                        }
                        Ok(Ok(false)) => {
                            signal.cancel();
                            return;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "renewing the lease failed; retrying");
                            next = tokio::time::Instant::now() + retry;
                        }
                        Err(_) => {
                            tracing::warn!(
                                timeout_ms = millis(every),
                                "renewing the lease did not answer in time; retrying"
                            );
                            next = tokio::time::Instant::now() + retry;
                        }
                    }
                }
            }
            .in_current_span(),
        );
        LeaseKeeper { lost, task }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why this worker stopped a run before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    LeaseLost,
    Canceled,
}

/// Records a failure of an execution that never started running.
async fn fail_execution(state: &AppState, execution: &Execution, message: &str) {
    let store = state.store();
    if let Err(error) = store
        .record_execution_progress(execution.id, execution.counts, &[message.to_string()])
        .await
    {
        tracing::warn!(%error, "could not store the execution's error");
    }
    if let Err(error) = store
        .transition_execution(execution.id, &["created", "queued"], "failed")
        .await
    {
        tracing::warn!(%error, "could not mark the execution failed");
    }
}

async fn run_model_sync(
    state: &AppState,
    settings: &WorkerSettings,
    job: &Job,
    shutdown: &CancellationToken,
    lease: &LeaseKeeper,
) -> &'static str {
    let store = state.store();
    let owner = settings.owner.as_str();
    let mut execution = match store.execution(job.subject_id, job.execution_id).await {
        Ok(execution) => execution,
        Err(StoreError::NotFound { .. }) => {
            complete(
                state,
                settings,
                job,
                "failed",
                Some("the sync or its execution no longer exists"),
            )
            .await;
            return "failed";
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the job's execution; handing the job back");
            let _ = store.release_job(job.id, owner).await;
            return "released";
        }
    };
    let status = execution.status.clone();
    match status.as_str() {
        "created" | "queued" => {}
        "canceling" => {
            let _ = store
                .transition_execution(execution.id, &["canceling"], "canceled")
                .await;
            complete(state, settings, job, "canceled", None).await;
            return "canceled";
        }
        previous => match store
            .take_over_model_sync_attempt(job.id, owner, execution.id)
            .await
        {
            Ok(Some(next)) => {
                tracing::info!(
                    previous_execution_id = %execution.id,
                    previous_status = previous,
                    execution_id = %next.id,
                    "job taken over; continuing as a new execution"
                );
                execution = next;
            }
            Ok(None) => {
                complete(state, settings, job, "superseded", None).await;
                return "superseded";
            }
            Err(error) => {
                tracing::warn!(%error, "could not restart the job's execution; handing it back");
                let _ = store.release_job(job.id, owner).await;
                return "released";
            }
        },
    }
    let options = serde_json::from_value::<ModelSyncPayload>(job.payload.clone())
        .unwrap_or_default()
        .into_options();
    let sync = match store.sync(job.organization_id, job.subject_id).await {
        Ok(sync) => sync,
        Err(error) => {
            let message = format!("the sync could not be loaded: {error}");
            fail_execution(state, &execution, &message).await;
            complete(state, settings, job, "failed", Some(&message)).await;
            return "failed";
        }
    };
    crate::events::watch_sync_execution(state, &sync, execution.id, &execution.execution_type);
    let cancel = CancellationToken::new();
    let context = match crate::syncs::prepare_model_sync(state, job.organization_id, &sync).await {
        Ok(prepared) => {
            prepared
                .into_context(state, sync.id, execution.id, options, cancel.clone())
                .await
        }
        Err(error) => Err(error),
    };
    let context = match context {
        Ok(context) => context,
        Err(error) => {
            fail_execution(state, &execution, &error.message).await;
            complete(state, settings, job, "failed", Some(&error.message)).await;
            return "failed";
        }
    };
    tracing::info!(execution_id = %execution.id, "execution running");
    let run = state.sync_runner().run(context);
    tokio::pin!(run);
    let mut heartbeat = tokio::time::interval(settings.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut stop: Option<Stop> = None;
    // What a shutdown did before stopping the engine (see `hand_back_model_sync`).
    let mut handed_back: Option<HandBack> = None;
    // After a lost lease: whether the attempt's hand-off reached the store, and whether a
    // user's cancel had stopped the run before.
    let mut handed_off = false;
    let mut user_canceled = false;
    let ledger_before = ledger_size(state, sync.id).await;
    // The run's end when it came while a hand-back or hand-off was being written.
    let mut ended: Option<RunEnd> = None;
    let end: RunEnd = loop {
        if let Some(end) = ended.take() {
            break end;
        }
        tokio::select! {
            end = &mut run => break end,
            () = shutdown.cancelled(), if stop.is_none() => {
                tracing::info!("shutting down: stopping the execution at the next batch boundary");
                if matches!(
                    store.execution(sync.id, execution.id).await,
                    Ok(current) if current.status == "canceling"
                ) {
                    // A user's cancel is pending: it wins.
                    stop = Some(Stop::Canceled);
                } else {
                    stop = Some(Stop::Shutdown);
                    let hand_back = hand_back_model_sync(state, settings, job);
                    handed_back = Some(while_running(hand_back, &mut run, &mut ended).await);
                }
                cancel.cancel();
            }
            () = lease.lost.cancelled(), if stop != Some(Stop::LeaseLost) => {
                tracing::warn!("lost the job's lease; stopping at the next batch boundary");
                // Before the engine is told to stop (it would settle a still `running`
                // execution `canceled`): the attempt becomes `interrupted` together with
                // its successor, unless the new owner did that already.
                user_canceled = stop == Some(Stop::Canceled);
                let hand_off = hand_off_lost_model_sync(state, job, execution.id);
                handed_off = while_running(hand_off, &mut run, &mut ended).await;
                stop = Some(Stop::LeaseLost);
                cancel.cancel();
            }
            _ = heartbeat.tick() => {
                if stop.is_none()
                    && let Ok(current) = store.execution(sync.id, execution.id).await
                    && current.status == "canceling"
                {
                    stop = Some(Stop::Canceled);
                    cancel.cancel();
                }
            }
        }
    };
    let outcome = match stop {
        Some(Stop::Shutdown) => {
            let handed_back = match handed_back {
                Some(HandBack::NotYet) | None if end.status == "canceled" => {
                    // The run was stopped before its successor could be written (the
                    // store failed, or the runner's shutdown reached it first).
                    let _ = store
                        .transition_execution(execution.id, &["canceled"], "interrupted")
                        .await;
                    Some(hand_back_model_sync(state, settings, job).await)
                }
                Some(HandBack::NotYet) | None => {
                    // It ended by itself before the stop reached it.
                    let error = (!end.errors.is_empty()).then(|| end.errors.join("; "));
                    complete(state, settings, job, end.status, error.as_deref()).await;
                    None
                }
                Some(done) => Some(done),
            };
            match handed_back {
                None => end.status,
                Some(HandBack::Superseded) => {
                    complete(state, settings, job, "superseded", None).await;
                    "superseded"
                }
                Some(_) => {
                    release(state, settings, job).await;
                    "released"
                }
            }
        }
        Some(Stop::LeaseLost) => {
            if end.status == "canceled" && !handed_off && !user_canceled {
                // The hand-off failed (the store did): the engine settled the run
                // `canceled`; it was interrupted.
                let _ = store
                    .transition_execution(execution.id, &["canceled"], "interrupted")
                    .await;
            }
            "lease_lost"
        }
        _ => {
            let error = (!end.errors.is_empty()).then(|| end.errors.join("; "));
            complete(state, settings, job, end.status, error.as_deref()).await;
            end.status
        }
    };
    // Once the job is settled (a worker dying here loses nothing).
    if let Some(before) = ledger_before {
        refresh_ledger_statistics(state, sync.id, before).await;
    }
    outcome
}

/// Awaits a store write of the worker (a hand-back or hand-off) while the run it is about
/// goes on. The run executes on the worker's own task, so while the worker awaited the
/// write without polling it, a run paused inside one of its own store transactions kept
/// SQLite's write lock, and the worker's write waited out the busy timeout on every try
/// and failed. The run's end, when it comes meanwhile, is kept in `ended`.
async fn while_running<T>(
    work: impl Future<Output = T>,
    run: &mut std::pin::Pin<&mut impl Future<Output = RunEnd>>,
    ended: &mut Option<RunEnd>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            end = run.as_mut(), if ended.is_none() => *ended = Some(end),
        }
    }
}

/// What a stopping worker did with its model-sync job's execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandBack {
    /// The attempt is `interrupted` and its successor (`created`) written.
    Restarted,
    /// Another execution of the sync exists, or the lease is gone: the job ends.
    Superseded,
    /// The store failed; nothing changed.
    NotYet,
}

/// Shutdown of a model-sync job: marks the attempt `interrupted` and writes its successor
/// execution (`created`) before the engine is told to stop — the engine settles a
/// stopped run as `canceled` only while it is still `running`, so the execution never
/// shows `canceled` — and the sync keeps an unfinished execution (a manual start answers
/// 409) until another worker continues it.
async fn hand_back_model_sync(state: &AppState, settings: &WorkerSettings, job: &Job) -> HandBack {
    match state
        .store()
        .restart_model_sync_attempt(job.id, &settings.owner)
        .await
    {
        Ok(Some(next)) => {
            tracing::info!(execution_id = %next.id, "next execution queued");
            HandBack::Restarted
        }
        Ok(None) => HandBack::Superseded,
        Err(error) => {
            tracing::warn!(%error, "could not queue the next execution");
            HandBack::NotYet
        }
    }
}

/// Lost lease of a model-sync job: hands the attempt off
/// ([`ferry_store::JobStore::hand_off_lost_model_sync_attempt`]) before the engine is
/// stopped. The store is asked up to [`HAND_OFF_ATTEMPTS`] times: under load SQLite can
/// answer "database is locked" inside the hand-off's transaction at once, without waiting
/// out its busy timeout, while the run's own writes go on (retrying `BEGIN IMMEDIATE` alone
/// did not help); the hand-off is one transaction, so a retry is safe. `false` when the
/// store kept failing (nothing changed).
async fn hand_off_lost_model_sync(state: &AppState, job: &Job, execution_id: Uuid) -> bool {
    for attempt in 1..=HAND_OFF_ATTEMPTS {
        match state
            .store()
            .hand_off_lost_model_sync_attempt(job.id, execution_id)
            .await
        {
            Ok(Some(next)) => {
                tracing::info!(execution_id = %next.id, "attempt handed off; next execution queued");
                return true;
            }
            Ok(None) => return true,
            Err(error) if attempt < HAND_OFF_ATTEMPTS => {
                tracing::info!(%error, attempt, "could not hand the attempt off yet; trying again");
                tokio::time::sleep(Duration::from_millis(50) * attempt).await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not hand the attempt off");
            }
        }
    }
    false
}

/// How often [`hand_off_lost_model_sync`] asks the store.
const HAND_OFF_ATTEMPTS: u32 = 5;

/// Entries in a sync's ledger (`None` when the store cannot say; statistics are then left
/// to the database).
async fn ledger_size(state: &AppState, sync_id: Uuid) -> Option<i64> {
    match state.store().count_ledger_entries(sync_id).await {
        Ok(count) => Some(count),
        Err(error) => {
            tracing::warn!(%error, "could not count the ledger's entries");
            None
        }
    }
}

/// After a run: when it grew the sync's ledger a lot
/// ([`ferry_store::ledger::needs_fresh_statistics`]), refreshes the ledger table's planner
/// statistics (PostgreSQL), so the next run's ledger reads do not depend on autovacuum
/// having noticed.
async fn refresh_ledger_statistics(state: &AppState, sync_id: Uuid, before: i64) {
    let Some(after) = ledger_size(state, sync_id).await else {
        return;
    };
    if !ferry_store::ledger::needs_fresh_statistics(before, after) {
        return;
    }
    match state.store().analyze_ledger().await {
        Ok(()) => tracing::info!(before, after, "ledger statistics refreshed"),
        Err(error) => tracing::warn!(%error, "could not refresh the ledger's statistics"),
    }
}

async fn release(state: &AppState, settings: &WorkerSettings, job: &Job) {
    match state.store().release_job(job.id, &settings.owner).await {
        Ok(true) => tracing::info!("job handed back to the queue"),
        Ok(false) => tracing::warn!("the job's lease was taken before it was released"),
        Err(error) => tracing::warn!(%error, "could not release the job"),
    }
}

/// The schemas a bulk-sync job was asked to stop.
fn cancel_parts(job: &Job) -> Vec<String> {
    job.payload
        .get(ferry_store::jobs::CANCEL_PARTS)
        .and_then(serde_json::Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn outcome_name(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "canceled" => "canceled",
        _ => "failed",
    }
}

/// Why the previous attempt of a bulk job ended (its execution's message).
const BULK_INTERRUPTED: &str =
    "the worker running the execution stopped; the job continues as a new execution";

async fn run_bulk_sync(
    state: &AppState,
    settings: &WorkerSettings,
    job: &Job,
    shutdown: &CancellationToken,
    lease: &LeaseKeeper,
) -> &'static str {
    let store = state.store();
    let owner = settings.owner.as_str();
    let gone = |error: &StoreError| matches!(error, StoreError::NotFound { .. });
    let (sync, mut execution) = match store.bulk_sync(job.organization_id, job.subject_id).await {
        Ok(sync) => match store.bulk_execution(sync.id, job.execution_id).await {
            Ok(execution) => (sync, execution),
            Err(error) if gone(&error) => {
                complete(
                    state,
                    settings,
                    job,
                    "failed",
                    Some("the execution no longer exists"),
                )
                .await;
                return "failed";
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the job's execution; handing the job back");
                release(state, settings, job).await;
                return "released";
            }
        },
        Err(error) if gone(&error) => {
            complete(
                state,
                settings,
                job,
                "failed",
                Some("the bulk sync no longer exists"),
            )
            .await;
            return "failed";
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the job's bulk sync; handing the job back");
            release(state, settings, job).await;
            return "released";
        }
    };
    match execution.status.as_str() {
        "created" => {}
        "canceling" => {
            let status =
                crate::bulk_syncs::finish_bulk_execution(state, &sync, execution.id, &[], true)
                    .await
                    .unwrap_or_else(|_| "canceled".to_string());
            let outcome = outcome_name(&status);
            complete(state, settings, job, outcome, None).await;
            return outcome;
        }
        previous => {
            match store
                .restart_bulk_sync_attempt(job.id, owner, BULK_INTERRUPTED)
                .await
            {
                Ok(Some(next)) => {
                    tracing::info!(
                        previous_execution_id = %execution.id,
                        previous_status = previous,
                        execution_id = %next.id,
                        "job taken over; continuing as a new execution"
                    );
                    execution = next;
                }
                Ok(None) => {
                    complete(state, settings, job, "superseded", None).await;
                    return "superseded";
                }
                Err(error) => {
                    tracing::warn!(%error, "could not restart the job's execution; handing it back");
                    release(state, settings, job).await;
                    return "released";
                }
            }
        }
    }
    let request = match crate::bulk_syncs::prepare_bulk_run(
        state,
        job.organization_id,
        sync.id,
        execution.id,
    )
    .await
    {
        Ok(request) => request,
        Err(error) => {
            crate::bulk_syncs::fail_bulk_execution(state, execution.id, &error.message).await;
            complete(state, settings, job, "failed", Some(&error.message)).await;
            return "failed";
        }
    };
    let root = request.cancel.clone();
    let schemas: std::collections::HashMap<String, CancellationToken> = request
        .objects
        .iter()
        .map(|object| (object.object.clone(), root.child_token()))
        .collect();
    let apply_parts = |job: &Job| {
        for part in cancel_parts(job) {
            if let Some(token) = schemas.get(&part) {
                token.cancel();
            }
        }
    };
    apply_parts(job);
    let _registration =
        state
            .bulk_runs()
            .register(sync.id, execution.id, root.clone(), schemas.clone());
    let interrupt = CancellationToken::new();
    tracing::info!(execution_id = %execution.id, "bulk execution running");
    let run = crate::bulk_syncs::run_bulk_execution(
        state,
        &sync,
        request,
        schemas.clone(),
        execution.is_test,
        &interrupt,
    );
    tokio::pin!(run);
    let mut poll = tokio::time::interval(BULK_POLL.min(settings.heartbeat()));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    let mut stop: Option<Stop> = None;
    let end = loop {
        tokio::select! {
            end = &mut run => break end,
            () = shutdown.cancelled(), if stop.is_none() => {
                tracing::info!("shutting down: stopping the bulk execution at the engine's next check");
                stop = Some(Stop::Shutdown);
                interrupt.cancel();
                root.cancel();
            }
            () = lease.lost.cancelled(), if !matches!(stop, Some(Stop::LeaseLost | Stop::Shutdown)) => {
                tracing::warn!("lost the job's lease; stopping the bulk execution");
                stop = Some(Stop::LeaseLost);
                interrupt.cancel();
                root.cancel();
            }
            _ = poll.tick(), if stop.is_none() => {
                if let Ok(current) = store.bulk_execution(sync.id, execution.id).await
                    && current.status == "canceling"
                {
                    stop = Some(Stop::Canceled);
                    root.cancel();
                }
                if let Ok(current) = store.job(job.id).await {
                    apply_parts(&current);
                }
            }
        }
    };
    match end {
        BulkRunEnd::Finished(status) => {
            let outcome = outcome_name(&status);
            let error = (outcome == "failed")
                .then(|| format!("the bulk execution {} ended {status}", execution.id));
            complete(state, settings, job, outcome, error.as_deref()).await;
            outcome
        }
        BulkRunEnd::Interrupted if stop == Some(Stop::LeaseLost) => {
            // The new owner marks this attempt `interrupted` together with writing its
            // successor; nothing here settled it.
            "lease_lost"
        }
        BulkRunEnd::Interrupted => {
            // A user's cancel that arrived while stopping still wins.
            if matches!(
                store.bulk_execution(sync.id, execution.id).await,
                Ok(current) if current.status == "canceling"
            ) {
                let _ =
                    crate::bulk_syncs::finish_bulk_execution(state, &sync, execution.id, &[], true)
                        .await;
                complete(state, settings, job, "canceled", None).await;
                return "canceled";
            }
            match store
                .restart_bulk_sync_attempt(job.id, owner, BULK_INTERRUPTED)
                .await
            {
                Ok(Some(next)) => {
                    tracing::info!(execution_id = %next.id, "next bulk execution queued");
                }
                Ok(None) => {
                    complete(state, settings, job, "superseded", None).await;
                    return "superseded";
                }
                Err(error) => tracing::warn!(%error, "could not queue the next bulk execution"),
            }
            release(state, settings, job).await;
            "released"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_run_options() {
        let options = RunOptions {
            resync: true,
            test: false,
            identities: Some(["b".to_string(), "a".to_string()].into_iter().collect()),
        };
        let payload = ModelSyncPayload::from_options(&options);
        assert_eq!(
            payload.identities,
            Some(vec!["a".to_string(), "b".to_string()])
        );
        let value = serde_json::to_value(&payload).unwrap();
        let back: ModelSyncPayload = serde_json::from_value(value).unwrap();
        assert_eq!(back.into_options(), options);
        let empty: ModelSyncPayload = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(empty.into_options(), RunOptions::default());
    }

    #[test]
    fn heartbeats_come_every_third_of_the_lease() {
        let settings = WorkerSettings {
            lease: Duration::from_secs(3),
            ..WorkerSettings::default()
        };
        assert_eq!(settings.heartbeat(), Duration::from_secs(1));
        assert_ne!(worker_id(), worker_id());
        let claim = claim_owner(&settings.owner);
        assert!(claim.starts_with(&format!("{}/", settings.owner)));
        assert_ne!(claim, claim_owner(&settings.owner));
    }
}
