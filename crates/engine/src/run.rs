//! One execution of a model sync, stage by stage, one read window at a time:
//!
//! 1. read a batch of model rows (the source streams bounded batches),
//! 2. [`map_batch`] (filters, overrides, mappings),
//! 3. [`detect`] changes against the ledger (a window read exactly as when the last
//!    completed run confirmed all of it is skipped whole: [`Marking`]),
//! 4. look identities up in Salesforce and [`decide`] each row,
//! 5. sort and cut into batches ([`sort_by_field`], [`chunks`]),
//! 6. write (REST collections, Bulk 1.0 or Bulk 2.0 — `target.rs` says which; bounded
//!    concurrency),
//! 7. turn per-record outcomes into ledger entries, log lines and counts, and commit them.
//!
//! Stages 1 and 2 run on a task of their own ([`PreparedWindows`]): the next window is read,
//! mapped and hashed while the current one is looked up and written.
//!
//! `Parallel` Bulk writes can be pipelined: each window's Bulk 2.0 job runs on its own
//! task, up to [`JOBS_IN_FLIGHT`] of them waiting while the next windows are read and
//! planned, and their outcomes are recorded in window order ([`Run::complete_oldest`]).
//! Everything else is written before the next window is read.
//!
//! Memory is bounded by a few windows (one source batch each; rows in flight keep only
//! their payload, not the mapped values). The ledger advances only for rows
//! Salesforce confirmed; creates are marked `pending_create` before they are sent so an
//! interrupted run never creates a row twice. Rows still failing with `UNABLE_TO_LOCK_ROW`
//! after the client's own retries are written again, one batch at a time, at the end of the
//! run. A refused budget, an unreachable Salesforce or a source failure fails the
//! execution with that message (what was confirmed before stays committed and the rest is
//! retried next run). Cancellation is honoured between batches.

use std::collections::{HashMap, HashSet, VecDeque};

use ferry_connectors::{RawWindow, RowBatch, SkipAnswer, SourceError, WindowSkip};
use ferry_salesforce::{ApiErrorItem, Record, SalesforceClient, SalesforceError, SaveResult};
use ferry_store::{DynStore, ExecutionCounts, LedgerEntry, RecordLine, StoreError};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::batch::{chunks, sort_by_field};
use crate::change::{CONFIRMED_OUTCOMES, Change, RowHasher, detect};
use crate::change::{json_object_text, write_json_str};
use crate::change::{raw_window_fingerprint, sync_digest, window_fingerprint};
use crate::mapping::{BatchPlan, MappedRow, MissingField, RejectedRow, SelectedRow};
use crate::plan::{Candidate, Decision, Operation, SkipReason, decide, malformed_references};
use crate::plan::{Side, decide_lead_or_contact};
use crate::spec::LEAD_OR_CONTACT;
use crate::spec::{
    AUTOMATIC_BULK_THRESHOLD, CompiledSync, ConcurrencyMode, IngestionApi, InvalidRelationships,
};
use crate::target::{
    SalesforceTarget, WriteRow, bulk_poll, is_external_reference_error, is_reference_error,
};
use crate::{FastMap, FastSet};

/// The object(s) a run writes: the target object, or Contact and Lead.
struct Targets {
    primary: SalesforceTarget,
    lead: Option<SalesforceTarget>,
}

impl Targets {
    fn get(&self, side: Side) -> &SalesforceTarget {
        match (side, &self.lead) {
            (Side::Lead, Some(lead)) => lead,
            _ => &self.primary,
        }
    }
}

/// Concurrent write calls in `Parallel` mode.
pub const PARALLEL_WRITES: usize = 4;

/// Bulk 2.0 jobs (`Parallel`) kept running while the next window is read and planned
/// (Salesforce works on earlier windows while Ferry prepares the next and records the
/// outcomes of the one before; rows in flight keep their payloads only as the JSON text of
/// their log lines). A window holding an identity that is still in flight waits for every
/// job in flight first, so a row is never planned against a ledger entry its own earlier
/// write is about to change.
///
/// Measured with `ferry bench model-sync` (1M rows): 0 → 61 s; 1 → 23–26 s, peak RSS
/// 225–240 MB once the C allocator's arenas were capped (`ferry`'s `main`); 2 → 21 s but
/// peak RSS 247–258 MB, over the 256 MB budget. Once a row in flight held only its log
/// text and the run's buffers shrank, 1 → 20–24 s at 166–172 MB, and 2 → 14–19 s at
/// 182–195 MB (175 MB at 100k rows): with one job behind it, the next job's upload and
/// first poll waited on the one before; 3 → 17–18 s at 217–219 MB, no better. Measured
/// again once the SQLite store wrote a third less (packed record logs, a one-B-tree
/// ledger): 3 → 12.5 and 13.6 s at 226 and 237 MB (192 MB at 100k), 2 → 14.2 and 15.6 s
/// at 198 and 208 MB (167 MB at 100k); but a later pair (with `MIMALLOC_PURGE_DELAY=250`)
/// gave 3 → 13.95 and 14.70 s at 217 and 226 MB against 2 → 13.98 s at 192 MB. Any gain of
/// three is within the run-to-run noise, while it leaves under a tenth of the 256 MB
/// budget where two leave a fifth.
pub const JOBS_IN_FLIGHT: usize = 2;

/// Rows read per window when Bulk may be used (a window fills whole Bulk batches).
pub const WINDOW_ROWS: usize = 10_000;

/// Rows read per window with `ingestion_api: rest` (progress and the ledger are
/// committed per window: at most 10 full collections calls of work per commit).
pub const REST_WINDOW_ROWS: usize = 2_000;

/// The read batch size of a sync: one window.
pub fn window_rows(sync: &CompiledSync) -> usize {
    match sync.config.ingestion_api {
        IngestionApi::Rest => REST_WINDOW_ROWS,
        IngestionApi::Bulk | IngestionApi::Automatic => {
            WINDOW_ROWS.max(sync.config.bulk_batch_size)
        }
    }
}

/// Moves a created (or queued) execution to `running`. When it was canceled before it
/// started (or the store is gone) it is settled as `canceled` and that end is returned.
pub(crate) async fn begin_execution(store: &DynStore, execution_id: Uuid) -> Option<RunEnd> {
    let started = store
        .transition_execution(execution_id, &["created", "queued"], "running")
        .await;
    if matches!(started, Ok(true)) {
        return None;
    }
    let _ = store
        .transition_execution(execution_id, &["canceling", "created"], "canceled")
        .await;
    Some(RunEnd {
        status: "canceled",
        counts: ExecutionCounts::default(),
        errors: Vec::new(),
    })
}

/// Records how a run ended (its record logs already flushed): the final counts and
/// errors, and the status — `failed` with the error appended, `canceled`, or `completed`.
/// Store failures here are logged: the run's own state is committed window by window.
pub(crate) async fn finish_execution(
    store: &DynStore,
    execution_id: Uuid,
    cancelled: bool,
    result: Result<(), impl std::fmt::Display>,
    counts: ExecutionCounts,
    mut errors: Vec<String>,
) -> RunEnd {
    let status = match result {
        Ok(()) if cancelled => "canceled",
        Ok(()) => "completed",
        Err(error) => {
            tracing::warn!(%error, "sync run failed");
            errors.push(error.to_string());
            "failed"
        }
    };
    if let Err(error) = store
        .record_execution_progress(execution_id, counts, &errors)
        .await
    {
        tracing::warn!(%error, "could not store execution counts");
    }
    if let Err(error) = store
        .transition_execution(execution_id, &["running", "canceling"], status)
        .await
    {
        tracing::warn!(%error, "could not store the execution status");
    }
    tracing::info!(
        status,
        total = counts.total,
        insert = counts.insert,
        update = counts.update,
        delete = counts.delete,
        error = counts.error,
        warnings = counts.warnings,
        "sync run finished"
    );
    RunEnd {
        status,
        counts,
        errors,
    }
}

/// What kind of run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Re-push every row regardless of the ledger.
    pub resync: bool,
    /// Plan only: look up, decide and log what would be written; write nothing and leave
    /// the ledger untouched.
    pub test: bool,
    /// Only these identity values (each is pushed even if unchanged).
    pub identities: Option<HashSet<String>>,
}

/// Everything a run needs.
pub struct RunContext {
    /// The sync.
    pub sync_id: Uuid,
    /// The execution (status `created`).
    pub execution_id: Uuid,
    /// The compiled sync.
    pub sync: CompiledSync,
    /// Options.
    pub options: RunOptions,
    /// No execution of this sync has completed before (`skip_initial_backfill`).
    pub first_run: bool,
    /// The store (ledger, execution, logs).
    pub store: DynStore,
    /// Where the rows go: a Salesforce connection's client (budgeted), or a database table.
    pub target: RunTarget,
    /// The model's rows.
    pub rows: BoxStream<'static, Result<RowBatch, SourceError>>,
    /// The answer the source of `rows` waits for before its first window
    /// ([`ferry_connectors::ModelSource::read_skipping`]): the run's marks, so windows they
    /// cover are not even built. Dropped unanswered, every row is read.
    pub skips: Option<SkipAnswer>,
    /// Cancels the run between batches.
    pub cancel: CancellationToken,
}

/// Where a run writes.
#[derive(Debug)]
pub enum RunTarget {
    /// A Salesforce object, through the connection's client.
    Salesforce(SalesforceClient),
    /// A PostgreSQL, MySQL or SQLite table ([`crate::db_target`]).
    Database(crate::db_target::DatabaseTarget),
}

impl From<SalesforceClient> for RunTarget {
    fn from(client: SalesforceClient) -> Self {
        RunTarget::Salesforce(client)
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the model failed.
    #[error("reading the model failed: {0}")]
    Source(#[from] SourceError),
    /// The model lost a field the sync uses.
    #[error(transparent)]
    MissingField(#[from] MissingField),
    /// Salesforce refused or could not be reached (including the daily budget).
    #[error("salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// A write task ended abnormally (it panicked or was aborted).
    #[error("a write task ended abnormally: {0}")]
    Task(String),
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// `completed`, `canceled` or `failed`.
    pub status: &'static str,
    /// Counts.
    pub counts: ExecutionCounts,
    /// Execution-level errors.
    pub errors: Vec<String>,
}

/// Runs an execution to its end and records its final status. Never panics on external
/// input; every failure becomes a `failed` status with its message.
pub async fn execute(context: RunContext) -> RunEnd {
    let span = info_span!(
        "sync_run",
        sync_id = %context.sync_id,
        execution_id = %context.execution_id,
        object = %context.sync.object,
        mode = context.sync.mode.as_str(),
    );
    // Database tables are planned and written by `db_target`.
    if matches!(context.target, RunTarget::Database(_)) {
        return crate::db_target::execute(context).instrument(span).await;
    }
    execute_inner(context).instrument(span).await
}

/// The run's inputs except the row stream (shared by reference across awaits).
struct Env {
    sync_id: Uuid,
    execution_id: Uuid,
    sync: CompiledSync,
    options: RunOptions,
    first_run: bool,
    store: DynStore,
    client: SalesforceClient,
    cancel: CancellationToken,
}

async fn execute_inner(context: RunContext) -> RunEnd {
    let RunContext {
        sync_id,
        execution_id,
        sync,
        options,
        first_run,
        store,
        target,
        rows,
        skips,
        cancel,
    } = context;
    let RunTarget::Salesforce(client) = target else {
        // `execute` sends database targets to `db_target`.
        return RunEnd {
            status: "failed",
            counts: ExecutionCounts::default(),
            errors: vec!["internal: a database target reached the Salesforce writer".into()],
        };
    };
    let context = Env {
        sync_id,
        execution_id,
        sync,
        options,
        first_run,
        store: store.clone(),
        client,
        cancel,
    };
    if let Some(canceled) = begin_execution(&store, execution_id).await {
        return canceled;
    }
    let mut run = Run::new(&context);
    let result = run.run(&context, rows, skips).await;
    // Best effort: the run's own state is already committed window by window.
    let flushed = match run.flush(&store).await {
        Ok(()) => run.settle_flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = &flushed {
        tracing::warn!(%error, "could not store the last record logs");
    }
    let cancelled = context.cancel.is_cancelled();
    // Test runs and runs for chosen identities make no marks (`clean_windows` is `None`).
    if result.is_ok()
        && flushed.is_ok()
        && !cancelled
        && let Some(marks) = run.clean_windows()
        && let Err(error) = store.put_window_marks(sync_id, &marks).await
    {
        tracing::warn!(%error, "could not store the window marks");
    }
    finish_execution(
        &store,
        execution_id,
        cancelled,
        result,
        run.counts,
        std::mem::take(&mut run.errors),
    )
    .await
}

/// A row planned for a write.
#[derive(Debug, Clone)]
struct Planned {
    candidate: Candidate,
    operation: Operation,
    id: Option<String>,
    payload: Map<String, Value>,
    /// Reference fields already dropped (`omit_values`).
    omitted: Vec<String>,
    /// Which object it is written to.
    side: Side,
}

/// One read window after stages 1 and 2: the rows the filters kept (only the wanted
/// identities when the run names some), each row's hash, and the model rows themselves —
/// a row is mapped only once change detection wants it.
struct PreparedWindow {
    plan: BatchPlan,
    model_rows: Vec<Vec<Value>>,
    rows: Vec<SelectedRow>,
    hashes: Vec<String>,
    rejected: Vec<RejectedRow>,
    /// Model rows read for this window.
    read: usize,
    /// Its number in the read (from 0).
    number: usize,
    /// Its fingerprint, when the run marks windows ([`Marking`]).
    fingerprint: Option<String>,
    /// It matched its mark: nothing of it was selected or hashed, and nothing is to do.
    marked: bool,
}

/// Window marks: a run over rows that did not change skips whole windows.
///
/// A window's fingerprint ([`window_fingerprint`]) covers the sync (its compiled form),
/// the window's number and every value of every row read in it. When a run completes and
/// every row of a window ended with a confirmed ledger entry of its current hash (sent and
/// confirmed, or unchanged) and nothing of it was rejected, the window is marked with its
/// fingerprint. The next run finding a window with the same number and fingerprint knows
/// that looking its rows up would find each of them unchanged, and skips it: no filters,
/// no hashes, no ledger lookups. Marks describe the ledger as the run that made them left
/// it: any write of ledger entries removes them (the store does, in the transaction of the
/// write), so a run that fails or is killed after writing leaves none, and one that wrote
/// nothing leaves marks that still hold. A completed run that makes marks replaces them with
/// its clean windows. Runs that push chosen identities, runs of syncs with target filters
/// (whose outcome depends on Salesforce's current values) and test runs make none; only
/// unforced runs skip by them.
///
/// One difference from looking every row up: an identity the model holds twice with
/// different values (the later row's write wins) is compared row by row only in windows
/// that changed. Looked up, the earlier row would differ from the ledger (which holds the
/// other one's hash), so one of them would be written again on every run; with marks they
/// are written again only when one of their windows changes.
struct Marking {
    /// [`sync_digest`] of the run's sync.
    digest: [u8; 32],
    /// The marks found when the run started that it may skip by: window number →
    /// fingerprint.
    known: FastMap<usize, String>,
}

impl Marking {
    /// The fingerprint of window `number`: from the source's own fingerprint of its raw
    /// data when it has one, else from its values.
    fn fingerprint(&self, number: usize, batch: &RowBatch) -> String {
        match &batch.raw {
            Some(raw) => raw_window_fingerprint(&self.digest, number as u64, raw),
            None => window_fingerprint(&self.digest, number as u64, &batch.fields, &batch.rows),
        }
    }

    /// Whether window `number` is marked with `fingerprint`.
    fn holds(&self, number: usize, fingerprint: &str) -> bool {
        self.known
            .get(&number)
            .is_some_and(|mark| mark == fingerprint)
    }

    /// The source's test of a window it read raw
    /// ([`ferry_connectors::ModelSource::read_skipping`]): whether the window matches its
    /// mark, so its rows need not be built. `None` when there is no mark to skip by.
    fn skip(marking: std::sync::Arc<Marking>) -> Option<WindowSkip> {
        if marking.known.is_empty() {
            return None;
        }
        Some(std::sync::Arc::new(
            move |number: usize, raw: &RawWindow| {
                marking.holds(
                    number,
                    &raw_window_fingerprint(&marking.digest, number as u64, raw),
                )
            },
        ))
    }
}

/// A window of this run as far as marks go.
#[derive(Debug)]
struct WindowState {
    fingerprint: String,
    /// Rows of it still waiting for their outcome.
    outstanding: usize,
    /// No row of it was rejected or ended other than confirmed with its hash.
    clean: bool,
}

/// Stages 1 and 2 on a task of their own: while a window is looked up and written, the
/// next one (and only that one) is read, mapped and hashed. Dropping this stops the task
/// (and, through the source's channel, the read).
struct PreparedWindows {
    next: Option<tokio::task::JoinHandle<PreparedNext>>,
    sync: std::sync::Arc<CompiledSync>,
    identities: Option<std::sync::Arc<HashSet<String>>>,
    marking: Option<std::sync::Arc<Marking>>,
    /// The number of the window being prepared.
    number: usize,
}

/// What a preparing task hands back: the source, to read the following window from, and
/// the window (`None` once the source has ended).
type PreparedNext = (
    BoxStream<'static, Result<RowBatch, SourceError>>,
    Option<Result<PreparedWindow, EngineError>>,
);

impl PreparedWindows {
    fn start(
        context: &Env,
        marking: Option<std::sync::Arc<Marking>>,
        rows: BoxStream<'static, Result<RowBatch, SourceError>>,
    ) -> Self {
        let mut windows = PreparedWindows {
            next: None,
            sync: std::sync::Arc::new(context.sync.clone()),
            identities: context.options.identities.clone().map(std::sync::Arc::new),
            marking,
            number: 0,
        };
        windows.prepare(rows);
        windows
    }

    /// Starts preparing the window after the last one handed out.
    fn prepare(&mut self, mut rows: BoxStream<'static, Result<RowBatch, SourceError>>) {
        let sync = self.sync.clone();
        let identities = self.identities.clone();
        let marking = self.marking.clone();
        let number = self.number;
        self.number += 1;
        self.next = Some(tokio::spawn(
            async move {
                let prepared = rows.next().await.map(|batch| {
                    batch.map_err(EngineError::from).and_then(|batch| {
                        prepare_window(
                            &sync,
                            identities.as_deref(),
                            marking.as_deref(),
                            number,
                            batch,
                        )
                    })
                });
                (rows, prepared)
            }
            .in_current_span(),
        ));
    }

    /// The next window; the one after it is prepared meanwhile.
    async fn next(&mut self) -> Option<Result<PreparedWindow, EngineError>> {
        let task = self.next.take()?;
        let (rows, prepared) = match task.await {
            Ok(done) => done,
            Err(error) => return Some(Err(EngineError::Task(error.to_string()))),
        };
        match prepared {
            Some(Ok(window)) => {
                self.prepare(rows);
                Some(Ok(window))
            }
            // After a failure or the end nothing more is read.
            other => other,
        }
    }
}

impl Drop for PreparedWindows {
    fn drop(&mut self) {
        if let Some(task) = &self.next {
            task.abort();
        }
    }
}

/// Filters one batch, reads its identities and hashes the mapped values of the rows the
/// run wants (without mapping them). When the run marks windows the batch is fingerprinted
/// first, and a window matching its mark goes no further.
fn prepare_window(
    sync: &CompiledSync,
    identities: Option<&HashSet<String>>,
    marking: Option<&Marking>,
    number: usize,
    batch: RowBatch,
) -> Result<PreparedWindow, EngineError> {
    let read = batch.raw.map_or(batch.rows.len(), |raw| raw.rows);
    let plan = BatchPlan::new(sync, &batch.fields)?;
    let fingerprint = marking.map(|marking| marking.fingerprint(number, &batch));
    let marked = marking
        .zip(fingerprint.as_deref())
        .is_some_and(|(marking, fingerprint)| marking.holds(number, fingerprint));
    if batch.raw.is_some_and(|raw| raw.skipped) && !marked {
        return Err(EngineError::Source(SourceError::Read(format!(
            "the source left window {number} unread, which the run has no mark for"
        ))));
    }
    if marked {
        return Ok(PreparedWindow {
            plan,
            model_rows: Vec::new(),
            rows: Vec::new(),
            hashes: Vec::new(),
            rejected: Vec::new(),
            read,
            number,
            fingerprint,
            marked,
        });
    }
    let selection = plan.select(sync, &batch.rows);
    let rows: Vec<SelectedRow> = match identities {
        Some(wanted) => selection
            .rows
            .into_iter()
            .filter(|row| wanted.contains(&row.identity))
            .collect(),
        None => selection.rows,
    };
    let mut hasher = RowHasher::new(&sync.object, sync.mode.as_str());
    let hashes = rows
        .iter()
        .map(|row| {
            let values = batch.rows.get(row.index).map_or(&[][..], Vec::as_slice);
            plan.hash(sync, &mut hasher, values)
        })
        .collect();
    Ok(PreparedWindow {
        plan,
        model_rows: batch.rows,
        rows,
        hashes,
        rejected: selection.rejected,
        read,
        number,
        fingerprint,
        marked: false,
    })
}

/// The state of a run.
struct Run {
    execution_id: Uuid,
    sync_id: Uuid,
    counts: ExecutionCounts,
    errors: Vec<String>,
    seq: FastMap<&'static str, i64>,
    lines: Vec<RecordLine>,
    ledger: Vec<LedgerEntry>,
    /// Rows that still failed with `UNABLE_TO_LOCK_ROW`.
    locked: Vec<Planned>,
    /// Whether the "nothing to sort by" warning was already given this run.
    sort_warned: bool,
    /// Bulk 2.0 jobs of earlier windows still running (oldest first).
    in_flight: VecDeque<InFlight>,
    /// The identities of the rows in `in_flight`, as [`identity_hash`]es with their
    /// counts (a collision only makes a window wait for the jobs in flight).
    in_flight_identities: FastMap<u64, u32>,
    /// The previous flush, still being written to the store while the run goes on.
    pending_flush: Option<PendingFlush>,
    /// The identities seen so far, kept only when the ledger was empty at the start.
    seen: Option<SeenIdentities>,
    /// The windows read so far (by number), when the run marks windows ([`Marking`]).
    windows: Option<Vec<WindowState>>,
}

/// The identities a run has seen, kept when the sync's ledger was empty at its start: the
/// ledger can then only hold an identity this run has seen, so a row whose identity is not
/// in the set is new without a lookup. A bitset indexed by [`identity_hash`] (4 MiB); a
/// collision only costs a lookup.
struct SeenIdentities {
    bits: Vec<u64>,
}

impl SeenIdentities {
    const BITS: u64 = 1 << 25;

    fn new() -> Self {
        SeenIdentities {
            bits: vec![0; usize::try_from(Self::BITS / 64).unwrap_or(0)],
        }
    }

    /// Adds `key`; whether it (or a colliding key) was there already.
    fn insert(&mut self, key: u64) -> bool {
        let bit = key % Self::BITS;
        let Some(word) = usize::try_from(bit / 64)
            .ok()
            .and_then(|word| self.bits.get_mut(word))
        else {
            return true;
        };
        let mask = 1u64 << (bit % 64);
        let known = *word & mask != 0;
        *word |= mask;
        known
    }
}

/// A flush written to the store on a task of its own (one at a time, in order), so the
/// next window is looked up and written meanwhile. A window holding an identity whose
/// ledger entry is still being written waits for it first.
struct PendingFlush {
    /// Hashes of the identities whose ledger entries it writes.
    identities: FastSet<u64>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// The key of an identity in [`PendingFlush::identities`] (a collision only costs a wait).
fn identity_hash(identity: &str) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::fast::FixedState::default().hash_one(identity)
}

/// A Bulk 2.0 job running on its own task while later windows are read and planned; its
/// rows wait here for their outcomes. Dropping it aborts the task (the rows keep their
/// previous ledger state, creates stay `pending_create`).
struct InFlight {
    /// The rows, their payloads moved into the job (they come back with its results).
    rows: Vec<Planned>,
    job: tokio::task::JoinHandle<JobOutput>,
}

/// What a Bulk 2.0 job task gives back: the payloads it was given (as JSON text) and the
/// per-row results.
type JobOutput = (Vec<String>, Result<Vec<SaveResult>, SalesforceError>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.job.abort();
    }
}

impl Run {
    fn new(context: &Env) -> Run {
        Run {
            execution_id: context.execution_id,
            sync_id: context.sync_id,
            counts: ExecutionCounts::default(),
            errors: Vec::new(),
            seq: FastMap::default(),
            lines: Vec::new(),
            ledger: Vec::new(),
            locked: Vec::new(),
            sort_warned: false,
            in_flight: VecDeque::new(),
            in_flight_identities: FastMap::default(),
            pending_flush: None,
            seen: None,
            windows: None,
        }
    }

    fn log(&mut self, log_type: &'static str, line: Value) {
        let seq = self.seq.entry(log_type).or_insert(0);
        self.lines.push(RecordLine {
            log_type: log_type.to_string(),
            seq: *seq,
            line: line.to_string(),
        });
        *seq += 1;
    }

    /// Logs one line in `log_type` and in `records`.
    fn log_text_twice(&mut self, log_type: &'static str, text: String) {
        for (log_type, text) in [(log_type, text.clone()), ("records", text)] {
            let seq = self.seq.entry(log_type).or_insert(0);
            self.lines.push(RecordLine {
                log_type: log_type.to_string(),
                seq: *seq,
                line: text,
            });
            *seq += 1;
        }
    }

    fn warn(&mut self, identity: Option<&str>, id: Option<&str>, message: &str) {
        self.counts.warnings += 1;
        self.log(
            "warnings",
            json!({"identity": identity, "id": id, "message": message}),
        );
    }

    /// Hands the ledger entries, record lines and progress gathered so far to the store on
    /// a task of its own, once the previous flush has finished (its error is returned here).
    async fn flush(&mut self, store: &DynStore) -> Result<(), EngineError> {
        self.settle_flush().await?;
        let ledger = std::mem::take(&mut self.ledger);
        let lines = std::mem::take(&mut self.lines);
        let identities = ledger
            .iter()
            .map(|entry| identity_hash(&entry.identity))
            .collect();
        let (store, sync_id, execution_id) = (store.clone(), self.sync_id, self.execution_id);
        let (counts, errors) = (self.counts, self.errors.clone());
        let task = tokio::spawn(
            async move {
                store.put_ledger_entries(sync_id, &ledger).await?;
                store.append_execution_records(execution_id, &lines).await?;
                store
                    .record_execution_progress(execution_id, counts, &errors)
                    .await
            }
            .in_current_span(),
        );
        self.pending_flush = Some(PendingFlush { identities, task });
        Ok(())
    }

    /// Waits for the flush still being written, if any.
    async fn settle_flush(&mut self) -> Result<(), EngineError> {
        let Some(pending) = self.pending_flush.take() else {
            return Ok(());
        };
        match pending.task.await {
            Ok(written) => Ok(written?),
            Err(error) => Err(EngineError::Task(error.to_string())),
        }
    }

    async fn run(
        &mut self,
        context: &Env,
        rows: BoxStream<'static, Result<RowBatch, SourceError>>,
        skips: Option<SkipAnswer>,
    ) -> Result<(), EngineError> {
        let target = if context.sync.object == LEAD_OR_CONTACT {
            Targets {
                primary: SalesforceTarget::prepare_object(
                    context.client.clone(),
                    &context.sync,
                    "Contact",
                )
                .await?,
                lead: Some(
                    SalesforceTarget::prepare_object(context.client.clone(), &context.sync, "Lead")
                        .await?,
                ),
            }
        } else {
            Targets {
                primary: SalesforceTarget::prepare(context.client.clone(), &context.sync).await?,
                lead: None,
            }
        };
        let target = track_jobs(context, target).await?;
        let ledger_empty = context.store.ledger_is_empty(context.sync_id).await?;
        if ledger_empty {
            self.seen = Some(SeenIdentities::new());
        }
        let marking = self
            .start_marking(context, ledger_empty)
            .await?
            .map(std::sync::Arc::new);
        if let Some(skips) = skips {
            skips.answer(marking.clone().and_then(Marking::skip));
        }
        let mut windows = PreparedWindows::start(context, marking, rows);
        let mut window = 0usize;
        while let Some(prepared) = windows.next().await {
            if context.cancel.is_cancelled() {
                // Jobs already sent are still waited for below, so their outcomes count.
                break;
            }
            let prepared = prepared?;
            window += 1;
            let span = info_span!("sync_window", window, rows = prepared.read);
            let result = self
                .window(context, &target, prepared)
                .instrument(span)
                .await;
            if result.is_ok() {
                while self.in_flight.len() > JOBS_IN_FLIGHT {
                    self.complete_oldest(context, &target).await?;
                }
            }
            self.flush(&context.store).await?;
            result?;
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest(context, &target).await?;
        }
        if !self.locked.is_empty() && !context.cancel.is_cancelled() {
            let locked = std::mem::take(&mut self.locked);
            tracing::info!(
                rows = locked.len(),
                "final serial pass for rows locked by others"
            );
            let span = info_span!("sync_lock_retry", rows = locked.len());
            let result = self
                .write_all(context, &target, locked, true, false)
                .instrument(span)
                .await;
            // Rows that are still locked now are failures.
            for planned in std::mem::take(&mut self.locked) {
                let error = ApiErrorItem::new(
                    "UNABLE_TO_LOCK_ROW",
                    "the record stayed locked by another transaction through the final serial pass",
                    Vec::new(),
                );
                self.failed(&planned, &[error]);
            }
            self.flush(&context.store).await?;
            result?;
        }
        Ok(())
    }

    /// Window marks ([`Marking`]): whether this run makes them, and the ones it may skip
    /// by.
    async fn start_marking(
        &mut self,
        context: &Env,
        ledger_empty: bool,
    ) -> Result<Option<Marking>, EngineError> {
        let (sync, options) = (&context.sync, &context.options);
        if options.identities.is_some() || sync.has_target_filters() {
            return Ok(None);
        }
        let force = options.resync || sync.sync_all_records;
        let baseline = sync.skip_initial_backfill && context.first_run && !force;
        let known: FastMap<usize, String> = if !force && !baseline && !ledger_empty {
            let marks = context.store.window_marks(context.sync_id).await?;
            marks
                .into_iter()
                .filter_map(|(number, print)| Some((usize::try_from(number).ok()?, print)))
                .collect()
        } else {
            FastMap::default()
        };
        if !options.test {
            self.windows = Some(Vec::new());
        } else if known.is_empty() {
            return Ok(None);
        }
        Ok(Some(Marking {
            digest: sync_digest(sync),
            known,
        }))
    }

    /// Records the window's row's ledger entry, and what it means for the window's mark.
    fn settle(&mut self, candidate: &Candidate, entry: LedgerEntry) {
        if let Some(state) = self
            .windows
            .as_mut()
            .and_then(|windows| windows.get_mut(candidate.window))
        {
            state.outstanding = state.outstanding.saturating_sub(1);
            // Clean when the next run would find the row unchanged.
            state.clean &= detect(&candidate.hash, Some(&entry), false, false) == Change::Unchanged;
        }
        self.ledger.push(entry);
    }

    /// The marks of the windows that ended clean, when the run makes marks (only for a
    /// run that completed).
    fn clean_windows(&self) -> Option<Vec<(i64, String)>> {
        let windows = self.windows.as_ref()?;
        let clean = windows
            .iter()
            .enumerate()
            .filter(|(_, state)| state.clean && state.outstanding == 0)
            .filter_map(|(number, state)| {
                Some((i64::try_from(number).ok()?, state.fingerprint.clone()))
            })
            .collect();
        Some(clean)
    }

    async fn window(
        &mut self,
        context: &Env,
        targets: &Targets,
        prepared: PreparedWindow,
    ) -> Result<(), EngineError> {
        let sync = &context.sync;
        let options = &context.options;
        let PreparedWindow {
            plan,
            mut model_rows,
            rows,
            hashes,
            rejected,
            read: _,
            number,
            fingerprint,
            marked,
        } = prepared;
        if let (Some(windows), Some(fingerprint)) = (self.windows.as_mut(), fingerprint) {
            // Windows come in order; a gap (never) leaves the window unmarked.
            if windows.len() == number {
                windows.push(WindowState {
                    fingerprint,
                    outstanding: 0,
                    clean: rejected.is_empty(),
                });
            }
        }
        if marked {
            return Ok(());
        }
        for rejected in &rejected {
            self.warn(rejected.identity.as_deref(), None, &rejected.message);
        }
        if rows.is_empty() {
            return Ok(());
        }
        // A row whose identity is still being written by an earlier window's job waits for
        // that outcome (and its ledger entry) before it is compared and planned.
        let keys: Vec<u64> = rows
            .iter()
            .map(|row| identity_hash(&row.identity))
            .collect();
        if !self.in_flight_identities.is_empty()
            && keys
                .iter()
                .any(|key| self.in_flight_identities.contains_key(key))
        {
            while !self.in_flight.is_empty() {
                self.complete_oldest(context, targets).await?;
            }
        }
        // The ledger entries of an earlier window for the same identities are written first.
        if let Some(pending) = &self.pending_flush
            && keys.iter().any(|key| pending.identities.contains(key))
        {
            self.settle_flush().await?;
        }
        // Stage 3: change detection. Unforced runs ask the ledger only for the rows it does
        // not hold as confirmed with the same hash (unchanged rows read nothing back).
        let force = options.resync || options.identities.is_some() || sync.sync_all_records;
        let baseline = sync.skip_initial_backfill && context.first_run && !force;
        let mut prior: Vec<Option<Box<LedgerEntry>>> = Vec::new();
        let mut changed: Vec<bool> = Vec::new();
        if baseline {
            // Every row becomes the baseline whatever the ledger says.
        } else if force {
            let identities: Vec<String> = rows.iter().map(|r| r.identity.clone()).collect();
            let mut known: HashMap<String, LedgerEntry> = context
                .store
                .ledger_entries(context.sync_id, &identities)
                .await?
                .into_iter()
                .map(|entry| (entry.identity.clone(), entry))
                .collect();
            prior = rows
                .iter()
                .map(|row| known.remove(&row.identity).map(Box::new))
                .collect();
        } else {
            prior = vec![None; rows.len()];
            changed = vec![false; rows.len()];
            // Rows the ledger cannot hold (a fresh ledger, identities not seen this run) are
            // new without asking; the rest are looked up.
            let mut lookup: Vec<usize> = Vec::with_capacity(rows.len());
            for (position, key) in keys.iter().enumerate() {
                let known = self.seen.as_mut().is_none_or(|seen| seen.insert(*key));
                if known {
                    lookup.push(position);
                } else if let Some(flag) = changed.get_mut(position) {
                    *flag = true;
                }
            }
            let pairs: Vec<(&str, &str)> = lookup
                .iter()
                .filter_map(|&position| Some((rows.get(position)?, hashes.get(position)?)))
                .map(|(row, hash)| (row.identity.as_str(), hash.as_str()))
                .collect();
            let changes = if pairs.is_empty() {
                Vec::new()
            } else {
                context
                    .store
                    .ledger_changes(context.sync_id, &pairs, &CONFIRMED_OUTCOMES)
                    .await?
            };
            for (asked, entry) in changes {
                let position = lookup.get(asked).copied().unwrap_or(usize::MAX);
                if let (Some(slot), Some(flag)) =
                    (prior.get_mut(position), changed.get_mut(position))
                {
                    *slot = entry.map(Box::new);
                    *flag = true;
                }
            }
        }
        // Only the rows change detection marked can become candidates.
        let possible = if baseline {
            0
        } else if force {
            rows.len()
        } else {
            changed.iter().filter(|flag| **flag).count()
        };
        let mut candidates = Vec::with_capacity(possible);
        for (index, (row, hash)) in rows.into_iter().zip(hashes).enumerate() {
            if !baseline && !force && changed.get(index) != Some(&true) {
                // The ledger holds this hash as confirmed.
                continue;
            }
            let entry = prior.get_mut(index).and_then(Option::take);
            match detect(&hash, entry.as_deref(), force, baseline) {
                Change::Unchanged => {}
                Change::Baseline => {
                    if !options.test {
                        self.ledger.push(LedgerEntry::new(
                            row.identity.clone(),
                            Some(hash),
                            None,
                            "baseline",
                            None,
                        ));
                    }
                }
                Change::Send => {
                    let values = model_rows
                        .get_mut(row.index)
                        .map(|values| plan.map_row(sync, values))
                        .unwrap_or_default();
                    candidates.push(Candidate {
                        row: MappedRow {
                            identity: row.identity,
                            values,
                            pending_filters: row.pending_filters,
                        },
                        hash,
                        prior: entry,
                        window: number,
                    });
                }
            }
        }
        drop(model_rows);
        if let Some(state) = self
            .windows
            .as_mut()
            .and_then(|windows| windows.get_mut(number))
        {
            state.outstanding = candidates.len();
        }
        if candidates.is_empty() {
            return Ok(());
        }
        self.counts.total += candidates.len() as i64;

        // Stage 4: identity lookups and planning.
        let target = &targets.primary;
        if let Some(lead_target) = &targets.lead {
            let identities: Vec<String> =
                candidates.iter().map(|c| c.row.identity.clone()).collect();
            let contacts = target.lookup(&identities).await?;
            let unmatched: Vec<String> = identities
                .iter()
                .filter(|i| !contacts.contains_key(&target.lookup_key(i)))
                .cloned()
                .collect();
            let leads = if unmatched.is_empty() {
                HashMap::new()
            } else {
                lead_target.lookup(&unmatched).await?
            };
            let empty: Vec<Record> = Vec::new();
            let contact_has = |f: &str| target.has_field(f);
            let lead_has = |f: &str| lead_target.has_field(f);
            let mut decided = Vec::with_capacity(candidates.len());
            for candidate in candidates {
                let key = target.lookup_key(&candidate.row.identity);
                let (side, decision) = decide_lead_or_contact(
                    sync,
                    &candidate,
                    contacts.get(&key).unwrap_or(&empty),
                    leads
                        .get(&lead_target.lookup_key(&candidate.row.identity))
                        .unwrap_or(&empty),
                    &contact_has,
                    &lead_has,
                );
                decided.push((candidate, side, decision));
            }
            return self.plan_and_write(context, targets, decided).await;
        }
        let needs_lookup: Vec<String> = if target.lookups {
            candidates
                .iter()
                .filter(|c| {
                    crate::plan::needs_current_values(sync, &target.info) || c.known_id().is_none()
                })
                .map(|c| c.row.identity.clone())
                .collect()
        } else {
            Vec::new()
        };
        let lookup_set: HashSet<&String> = needs_lookup.iter().collect();
        let found = if needs_lookup.is_empty() {
            HashMap::new()
        } else {
            target.lookup(&needs_lookup).await?
        };
        let empty: Vec<Record> = Vec::new();
        let mut decided = Vec::with_capacity(candidates.len());
        for mut candidate in candidates {
            let matches = lookup_set.contains(&candidate.row.identity).then(|| {
                found
                    .get(&target.lookup_key(&candidate.row.identity))
                    .unwrap_or(&empty)
                    .as_slice()
            });
            let decision = decide(sync, &target.info, &mut candidate, matches);
            decided.push((candidate, Side::Primary, decision));
        }
        self.plan_and_write(context, targets, decided).await
    }

    /// Applies the decisions: skips and failures are recorded, writes are checked for
    /// malformed references, then written (or only logged in a test run).
    async fn plan_and_write(
        &mut self,
        context: &Env,
        targets: &Targets,
        decided: Vec<(Candidate, Side, Decision)>,
    ) -> Result<(), EngineError> {
        let sync = &context.sync;
        let options = &context.options;
        let mut planned = Vec::with_capacity(decided.len());
        for (candidate, side, decision) in decided {
            match decision {
                Decision::Write {
                    operation,
                    id,
                    payload,
                } => planned.push(Planned {
                    candidate,
                    operation,
                    id,
                    payload,
                    omitted: Vec::new(),
                    side,
                }),
                Decision::Skip { reason, id } => {
                    self.skipped(&candidate, &reason, id, options.test)
                }
                Decision::Fail { code, message } => {
                    let error = ApiErrorItem::new(code, message, Vec::new());
                    let planned = Planned {
                        candidate,
                        operation: Operation::Update,
                        id: None,
                        payload: Map::new(),
                        omitted: Vec::new(),
                        side,
                    };
                    self.failed_with(&planned, &[error], options.test);
                }
            }
        }

        // Invalid references Ferry can see without a call (not an id at all).
        if sync.config.invalid_relationships != InvalidRelationships::Error {
            let mut kept = Vec::with_capacity(planned.len());
            for mut row in planned {
                let invalid = malformed_references(&targets.get(row.side).info, &row.payload);
                if invalid.is_empty() {
                    kept.push(row);
                } else if sync.config.invalid_relationships == InvalidRelationships::OmitValues {
                    self.omit_values(&mut row, &invalid);
                    kept.push(row);
                } else {
                    self.omit_record(&row, &invalid, options.test);
                }
            }
            planned = kept;
        }

        if options.test {
            for row in &planned {
                let (log_type, counter) = match row.operation {
                    Operation::Create => ("inserts", &mut self.counts.insert),
                    Operation::Update => ("updates", &mut self.counts.update),
                    Operation::Upsert => ("updates", &mut self.counts.upserts),
                    Operation::Delete => ("deletes", &mut self.counts.delete),
                };
                *counter += 1;
                let line = json!({"identity": row.candidate.row.identity, "id": row.id,
                    "operation": operation_name(row.operation), "values": row.payload, "test": true});
                self.log(log_type, line.clone());
                self.log("records", line);
            }
            return Ok(());
        }

        // Stages 5–7.
        let bulk = match sync.config.ingestion_api {
            IngestionApi::Rest => false,
            IngestionApi::Bulk => true,
            IngestionApi::Automatic => planned.len() >= AUTOMATIC_BULK_THRESHOLD,
        };
        let serial = sync.config.concurrency_mode == ConcurrencyMode::Serial;
        if bulk && !serial {
            let rest = self.submit_bulk2(context, targets, planned).await?;
            return self.write_all(context, targets, rest, serial, bulk).await;
        }
        self.write_all(context, targets, planned, serial, bulk)
            .await
    }

    /// `Parallel` Bulk: starts one Bulk 2.0 job per object and operation of the window on
    /// its own task (at most [`JOBS_IN_FLIGHT`] + 1 run while the next windows are read and
    /// planned; outcomes are recorded in window order by [`Run::complete_oldest`]). Returns
    /// the rows whose results could not be matched by key; they are written the ordinary
    /// way (a parallel Bulk 1.0 job).
    async fn submit_bulk2(
        &mut self,
        context: &Env,
        targets: &Targets,
        mut planned: Vec<Planned>,
    ) -> Result<Vec<Planned>, EngineError> {
        self.sort_for_batches(&context.sync, &mut planned);
        let mut groups: Vec<((Side, Operation), Vec<Planned>)> = Vec::new();
        let first = planned.first().map(|row| (row.side, row.operation));
        if let Some(group) = first
            && planned.iter().all(|row| (row.side, row.operation) == group)
        {
            // The usual window: one object and operation, its rows kept where they are.
            groups.push((group, planned));
        } else {
            for row in planned {
                let group = (row.side, row.operation);
                match groups.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, rows)) => rows.push(row),
                    None => groups.push((group, vec![row])),
                }
            }
        }
        let mut rest = Vec::new();
        for ((side, operation), mut rows) in groups {
            // The payloads travel with the job and come back with its results; the mapped
            // values were only needed for planning. Memory per row in flight stays small.
            let payloads: Vec<WriteRow> = rows
                .iter_mut()
                .map(|row| {
                    row.candidate.row.values = Map::new();
                    (row.id.clone(), std::mem::take(&mut row.payload))
                })
                .collect();
            let target = targets.get(side);
            let Some(key) = target.bulk2_key(operation, &payloads) else {
                for (row, (_, payload)) in rows.iter_mut().zip(payloads) {
                    row.payload = payload;
                }
                rest.extend(rows);
                continue;
            };
            mark_pending_creates(context, &rows).await?;
            let span = info_span!(
                "sync_bulk_job",
                api = "bulk2",
                operation = operation_name(operation),
                rows = rows.len(),
            );
            for row in &rows {
                *self
                    .in_flight_identities
                    .entry(identity_hash(&row.candidate.row.identity))
                    .or_insert(0) += 1;
            }
            let target = target.clone();
            let job = tokio::spawn(
                async move {
                    // Once the CSV is built each payload is kept only as the JSON text of
                    // its log line (a fraction of the map's memory); a failed row gets its
                    // payload back from it.
                    let prepared = target.prepare_bulk2_job(operation, &payloads, &key);
                    let values: Vec<String> = payloads
                        .iter()
                        .map(|(_, payload)| json_object_text(payload))
                        .collect();
                    drop(payloads);
                    let result = match prepared {
                        Ok(prepared) => target.run_bulk2_job(prepared, bulk_poll()).await,
                        Err(error) => Err(error),
                    };
                    (values, result)
                }
                .instrument(span),
            );
            self.in_flight.push_back(InFlight { rows, job });
        }
        Ok(rest)
    }

    /// Waits for the oldest Bulk 2.0 job in flight and records its outcomes (rows to
    /// write again without invalid references are written right away), then commits.
    async fn complete_oldest(
        &mut self,
        context: &Env,
        targets: &Targets,
    ) -> Result<(), EngineError> {
        let Some(mut in_flight) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let joined = (&mut in_flight.job).await;
        let rows = std::mem::take(&mut in_flight.rows);
        for row in &rows {
            let key = identity_hash(&row.candidate.row.identity);
            if let Some(count) = self.in_flight_identities.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.in_flight_identities.remove(&key);
                }
            }
        }
        let (values, outcomes) = match joined {
            Ok((values, Ok(outcomes))) => (values, outcomes),
            Ok((_, Err(error))) => {
                tracing::warn!(%error, "bulk job failed");
                return Err(error.into());
            }
            Err(error) => return Err(EngineError::Task(error.to_string())),
        };
        let mut retry = Vec::new();
        for ((mut row, values), outcome) in rows.into_iter().zip(values).zip(outcomes) {
            if outcome.success {
                self.confirmed(&row, &outcome, &values);
                continue;
            }
            // The text was made from a map, so it parses back into the same one.
            if let Ok(Value::Object(payload)) = serde_json::from_str(&values) {
                row.payload = payload;
            }
            let target = targets.get(row.side);
            if let Some(again) = self.outcome(&context.sync, target, row, outcome) {
                retry.push(again);
            }
        }
        let result = self.write_all(context, targets, retry, false, true).await;
        self.flush(&context.store).await?;
        result
    }

    /// Sorts, batches and writes rows, then records every outcome. Rows rejected for an
    /// invalid reference under `omit_values` are written once more without it.
    async fn write_all(
        &mut self,
        context: &Env,
        targets: &Targets,
        mut planned: Vec<Planned>,
        serial: bool,
        bulk: bool,
    ) -> Result<(), EngineError> {
        for _round in 0..2 {
            if planned.is_empty() {
                return Ok(());
            }
            let retry = self
                .write_round(context, targets, planned, serial, bulk)
                .await?;
            planned = retry;
        }
        // A row rejected twice for references keeps its last failure (recorded below).
        for row in planned {
            let error = ApiErrorItem::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "the row was rejected for invalid references again after they were omitted",
                row.omitted.clone(),
            );
            self.failed(&row, &[error]);
        }
        Ok(())
    }

    /// `sort_batches_by`: sorts rows by the field (said once per run when no written row
    /// carries it).
    fn sort_for_batches(&mut self, sync: &CompiledSync, planned: &mut [Planned]) {
        let Some(field) = &sync.config.sort_batches_by else {
            return;
        };
        let present = planned.iter().any(|row| {
            row.payload
                .keys()
                .any(|name| name.eq_ignore_ascii_case(field))
        });
        if !present && !planned.is_empty() && !self.sort_warned {
            // The published examples name `AccountId` even for Lead: accepted as
            // written, and said plainly instead of silently doing nothing.
            self.sort_warned = true;
            self.warn(
                None,
                None,
                &format!(
                    "sort_batches_by: '{field}' is not among the fields written to {}; batches keep the model's order",
                    sync.object
                ),
            );
        }
        sort_by_field(planned, field, |row| &row.payload);
    }

    async fn write_round(
        &mut self,
        context: &Env,
        targets: &Targets,
        mut planned: Vec<Planned>,
        serial: bool,
        bulk: bool,
    ) -> Result<Vec<Planned>, EngineError> {
        let sync = &context.sync;
        self.sort_for_batches(sync, &mut planned);
        mark_pending_creates(context, &planned).await?;

        let size = if bulk {
            sync.config.bulk_batch_size
        } else {
            sync.config.rest_batch_size
        };
        // Group by operation, keeping the sorted order inside each group.
        let mut groups: Vec<(Operation, Vec<Planned>)> = Vec::new();
        for side in [Side::Primary, Side::Lead] {
            for operation in [
                Operation::Create,
                Operation::Update,
                Operation::Upsert,
                Operation::Delete,
            ] {
                let rows: Vec<Planned> = planned
                    .iter()
                    .filter(|row| row.operation == operation && row.side == side)
                    .cloned()
                    .collect();
                for batch in chunks(rows, size) {
                    groups.push((operation, batch));
                }
            }
        }
        if bulk {
            return self.write_bulk_jobs(context, targets, groups, serial).await;
        }
        let concurrency = if serial { 1 } else { PARALLEL_WRITES };
        // Once a batch fails fatally or the run is canceled, batches not yet sent are not
        // sent (those already in flight finish and are recorded).
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stop = &stop;
        let cancel = &context.cancel;
        let mut results = stream::iter(groups.into_iter().enumerate().map(
            |(index, (operation, rows))| {
                let payloads: Vec<WriteRow> = rows
                    .iter()
                    .map(|row| (row.id.clone(), row.payload.clone()))
                    .collect();
                let span = info_span!(
                    "sync_batch",
                    batch = index,
                    operation = operation_name(operation),
                    rows = rows.len(),
                    api = "rest"
                );
                let target = targets.get(rows.first().map_or(Side::Primary, |r| r.side));
                async move {
                    if cancel.is_cancelled() || stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return (rows, None);
                    }
                    let result = target.write_rest(operation, &payloads).await;
                    (rows, Some(result))
                }
                .instrument(span)
            },
        ))
        .buffered(concurrency);

        let mut retry = Vec::new();
        let mut fatal: Option<SalesforceError> = None;
        while let Some((rows, result)) = results.next().await {
            match result {
                None => self.not_sent(&rows),
                Some(Ok(outcomes)) => {
                    for (row, outcome) in rows.into_iter().zip(outcomes) {
                        let target = targets.get(row.side);
                        if let Some(again) = self.outcome(sync, target, row, outcome) {
                            retry.push(again);
                        }
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, rows = rows.len(), "write batch failed");
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    if matches!(error, SalesforceError::BudgetExhausted(_)) {
                        self.not_sent(&rows);
                    }
                    if fatal.is_none() {
                        fatal = Some(error);
                    }
                }
            }
            // No store writes here: a batch still in flight may hold the budget's store
            // transaction (SQLite allows one writer); outcomes are committed per round.
        }
        drop(results);
        if let Some(error) = fatal {
            return Err(error.into());
        }
        Ok(retry)
    }

    /// Rows whose call was refused before it was made (the budget): their creates are not
    /// in doubt, so the ledger goes back to what it said before.
    fn not_sent(&mut self, rows: &[Planned]) {
        for row in rows.iter().filter(|r| r.operation == Operation::Create) {
            let prior = row.candidate.prior.as_ref();
            let entry = LedgerEntry::new(
                row.candidate.row.identity.clone(),
                prior.and_then(|p| p.hash.clone()),
                prior.and_then(|p| p.record_id.clone()),
                prior.map_or("failed", |p| p.outcome.as_str()),
                prior.and_then(|p| p.error_code.clone()),
            );
            self.settle(&row.candidate, entry);
        }
    }

    /// Bulk: one job per object and operation of the round. `Serial`: a Bulk API 1.0 job
    /// in serial mode holding all of its batches (Salesforce runs them one at a time).
    /// `Parallel`: a Bulk API 2.0 job of all its rows (Salesforce batches and parallelizes),
    /// or a parallel Bulk 1.0 job when the rows carry no key the Bulk 2.0 results could be
    /// matched by (see `target.rs`).
    async fn write_bulk_jobs(
        &mut self,
        context: &Env,
        targets: &Targets,
        groups: Vec<(Operation, Vec<Planned>)>,
        serial: bool,
    ) -> Result<Vec<Planned>, EngineError> {
        // Consecutive batches of the same object and operation form one job.
        let mut jobs: Vec<(Side, Operation, Vec<Vec<Planned>>)> = Vec::new();
        for (operation, rows) in groups {
            let side = rows.first().map_or(Side::Primary, |r| r.side);
            match jobs.last_mut() {
                Some((s, o, batches)) if *s == side && *o == operation => batches.push(rows),
                _ => jobs.push((side, operation, vec![rows])),
            }
        }
        let mut retry = Vec::new();
        for (side, operation, batches) in jobs {
            if context.cancel.is_cancelled() {
                break;
            }
            let target = targets.get(side);
            let payloads: Vec<Vec<WriteRow>> = batches
                .iter()
                .map(|rows| {
                    rows.iter()
                        .map(|row| (row.id.clone(), row.payload.clone()))
                        .collect()
                })
                .collect();
            let rows_in_job = payloads.iter().map(Vec::len).sum::<usize>();
            let bulk2_key = if serial {
                None
            } else {
                let all: Vec<WriteRow> = payloads.iter().flatten().cloned().collect();
                target.bulk2_key(operation, &all).map(|key| (key, all))
            };
            let result = match bulk2_key {
                Some((key, all)) => {
                    let span = info_span!(
                        "sync_bulk_job",
                        api = "bulk2",
                        operation = operation_name(operation),
                        rows = rows_in_job,
                    );
                    target
                        .write_bulk2_job(operation, &all, &key, bulk_poll())
                        .instrument(span)
                        .await
                        .map(|outcomes| vec![outcomes])
                        .map(|outcomes| (outcomes, true))
                }
                None => {
                    let span = info_span!(
                        "sync_bulk_job",
                        api = "bulk1",
                        operation = operation_name(operation),
                        batches = batches.len(),
                        rows = rows_in_job,
                        serial
                    );
                    target
                        .write_bulk_job(operation, &payloads, serial, bulk_poll())
                        .instrument(span)
                        .await
                        .map(|outcomes| (outcomes, false))
                }
            };
            match result {
                Ok((outcomes, flattened)) => {
                    let batches = if flattened {
                        vec![batches.into_iter().flatten().collect()]
                    } else {
                        batches
                    };
                    for (rows, outcomes) in batches.into_iter().zip(outcomes) {
                        for (row, outcome) in rows.into_iter().zip(outcomes) {
                            let target = targets.get(row.side);
                            if let Some(again) = self.outcome(&context.sync, target, row, outcome) {
                                retry.push(again);
                            }
                        }
                    }
                }
                Err(error) => {
                    // Rows already uploaded to a job may still be processed, so the
                    // creates stay `pending_create` (re-resolved by identity next run).
                    tracing::warn!(%error, "bulk job failed");
                    return Err(error.into());
                }
            }
        }
        Ok(retry)
    }

    /// Records a write Salesforce confirmed: counts, the log lines (`values` is the payload
    /// as JSON text) and the ledger entry.
    fn confirmed(&mut self, row: &Planned, result: &SaveResult, values: &str) {
        let id = result.id.clone().or_else(|| row.id.clone());
        let (outcome, log_type) = match (row.operation, result.created) {
            (Operation::Create, _) => {
                self.counts.insert += 1;
                ("inserted", "inserts")
            }
            (Operation::Update, _) => {
                self.counts.update += 1;
                ("updated", "updates")
            }
            (Operation::Upsert, created) => {
                self.counts.upserts += 1;
                if created == Some(true) {
                    self.counts.insert += 1;
                    ("upserted", "inserts")
                } else {
                    self.counts.update += 1;
                    ("upserted", "updates")
                }
            }
            (Operation::Delete, _) => {
                self.counts.delete += 1;
                ("deleted", "deletes")
            }
        };
        let identity = &row.candidate.row.identity;
        // The line `{"identity", "id", "operation", "values"}` with the values already text.
        let mut line = Vec::with_capacity(values.len() + identity.len() + 80);
        line.extend_from_slice(b"{\"identity\":");
        write_json_str(&mut line, identity);
        line.extend_from_slice(b",\"id\":");
        match id.as_deref() {
            Some(id) => write_json_str(&mut line, id),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"operation\":\"");
        line.extend_from_slice(operation_name(row.operation).as_bytes());
        line.extend_from_slice(b"\",\"values\":");
        line.extend_from_slice(values.as_bytes());
        line.push(b'}');
        // Built from `&str`s.
        let text = String::from_utf8(line).unwrap_or_default();
        self.log_text_twice(log_type, text);
        let entry = LedgerEntry::new(
            identity.clone(),
            Some(row.candidate.hash.clone()),
            id,
            outcome,
            None,
        );
        self.settle(&row.candidate, entry);
    }

    /// Records one record's outcome; returns the row when it should be written again
    /// without its invalid references.
    fn outcome(
        &mut self,
        sync: &CompiledSync,
        target: &SalesforceTarget,
        mut row: Planned,
        result: SaveResult,
    ) -> Option<Planned> {
        if result.success {
            let values = json_object_text(&row.payload);
            self.confirmed(&row, &result, &values);
            return None;
        }
        if result.is_lock_failure() {
            self.locked.push(row);
            return None;
        }
        // Lead `ignore_invalid_references`: parents referenced by an external id that
        // matches nothing are dropped and the record is written without them.
        if sync.config.ignore_invalid_references
            && !result.errors.is_empty()
            && result.errors.iter().all(is_external_reference_error)
            && row.omitted.is_empty()
        {
            let references: Vec<String> = row
                .payload
                .keys()
                .filter(|k| k.contains('.'))
                .cloned()
                .collect();
            if !references.is_empty() {
                for field in &references {
                    row.payload.remove(field);
                }
                row.omitted.extend(references.iter().cloned());
                let message = format!(
                    "unresolved external-id reference {} ignored (ignore_invalid_references): {}",
                    references.join(", "),
                    result.errors[0].message
                );
                self.warn(
                    Some(&row.candidate.row.identity),
                    row.id.as_deref(),
                    &message,
                );
                return Some(row);
            }
        }
        let reference_errors: Vec<&ApiErrorItem> = result
            .errors
            .iter()
            .filter(|e| is_reference_error(e))
            .collect();
        if !reference_errors.is_empty()
            && reference_errors.len() == result.errors.len()
            && sync.config.invalid_relationships != InvalidRelationships::Error
        {
            let named: Vec<String> = reference_errors
                .iter()
                .flat_map(|e| e.fields.iter())
                .filter(|f| crate::contains_lowercase(&target.info.reference_fields, f))
                .cloned()
                .collect();
            let fields: Vec<String> = if named.is_empty() {
                row.payload
                    .keys()
                    .filter(|k| crate::contains_lowercase(&target.info.reference_fields, k))
                    .cloned()
                    .collect()
            } else {
                named
            };
            if !fields.is_empty() {
                if sync.config.invalid_relationships == InvalidRelationships::OmitValues {
                    if row.omitted.is_empty() {
                        self.omit_values(&mut row, &fields);
                        return Some(row);
                    }
                } else {
                    self.omit_record(&row, &fields, false);
                    return None;
                }
            }
        }
        self.failed(&row, &result.errors);
        None
    }

    fn omit_values(&mut self, row: &mut Planned, fields: &[String]) {
        for field in fields {
            row.payload.remove(field);
        }
        row.omitted.extend(fields.iter().cloned());
        let message = format!(
            "invalid reference in {} omitted (invalid_relationships: omit_values); the rest \
             of the record is written",
            fields.join(", ")
        );
        self.warn(
            Some(&row.candidate.row.identity),
            row.id.as_deref(),
            &message,
        );
    }

    fn omit_record(&mut self, row: &Planned, fields: &[String], test: bool) {
        let message = format!(
            "record skipped: invalid reference in {} (invalid_relationships: omit_records)",
            fields.join(", ")
        );
        self.warn(
            Some(&row.candidate.row.identity),
            row.id.as_deref(),
            &message,
        );
        if !test {
            let entry = LedgerEntry::new(
                row.candidate.row.identity.clone(),
                Some(row.candidate.hash.clone()),
                row.id.clone(),
                "omitted",
                None,
            );
            self.settle(&row.candidate, entry);
        }
    }

    fn skipped(
        &mut self,
        candidate: &Candidate,
        reason: &SkipReason,
        id: Option<String>,
        test: bool,
    ) {
        let identity = candidate.row.identity.as_str();
        if reason.is_warning() {
            self.warn(Some(identity), id.as_deref(), &reason.message());
        }
        self.log(
            "records",
            json!({"identity": identity, "id": id, "operation": "skip", "message": reason.message()}),
        );
        if reason.excluded_by_filter() {
            // Like a row a model filter drops: not in the total, ledger left as it was.
            self.counts.total -= 1;
            return;
        }
        if test {
            return;
        }
        let hash = match reason {
            // Retried next run: keep what was confirmed before.
            SkipReason::Unmatched | SkipReason::UnknownCreate => {
                candidate.prior.as_ref().and_then(|p| p.hash.clone())
            }
            _ => Some(candidate.hash.clone()),
        };
        let entry = LedgerEntry::new(identity.to_string(), hash, id, reason.outcome(), None);
        self.settle(candidate, entry);
    }

    fn failed(&mut self, row: &Planned, errors: &[ApiErrorItem]) {
        self.failed_with(row, errors, false);
    }

    fn failed_with(&mut self, row: &Planned, errors: &[ApiErrorItem], test: bool) {
        self.counts.error += 1;
        let first = errors.first();
        let code = first.map_or("UNKNOWN_ERROR", |e| e.error_code.as_str());
        let message = first.map_or("Salesforce reported a failure without details", |e| {
            e.message.as_str()
        });
        let identity = row.candidate.row.identity.as_str();
        let line = json!({
            "identity": identity,
            "id": row.id,
            "operation": operation_name(row.operation),
            "error_code": code,
            "message": message,
            "fields": first.map(|e| e.fields.clone()).unwrap_or_default(),
            "errors": errors.iter().map(|e| json!({"errorCode": e.error_code, "message": e.message, "fields": e.fields})).collect::<Vec<_>>(),
        });
        self.log("errors", line.clone());
        self.log("records", line);
        if test {
            return;
        }
        // The record id is forgotten when Salesforce says it no longer exists, so the next
        // run resolves the identity again.
        let gone = errors.iter().any(|e| {
            matches!(
                e.error_code.as_str(),
                "ENTITY_IS_DELETED" | "INVALID_ID_FIELD" | "NOT_FOUND"
            )
        });
        let prior = row.candidate.prior.as_ref();
        let record_id = if gone {
            None
        } else {
            row.id
                .clone()
                .or_else(|| prior.and_then(|p| p.record_id.clone()))
        };
        let entry = LedgerEntry::new(
            identity.to_string(),
            prior.and_then(|p| p.hash.clone()),
            record_id,
            "failed",
            Some(code.to_string()),
        );
        self.settle(&row.candidate, entry);
    }
}

/// Marks the creates among `rows` `pending_create` before they are sent, so an interrupted
/// run re-resolves them by identity instead of creating them again.
async fn mark_pending_creates(context: &Env, rows: &[Planned]) -> Result<(), StoreError> {
    let pending: Vec<LedgerEntry> = rows
        .iter()
        .filter(|row| row.operation == Operation::Create)
        .map(|row| {
            let prior = row.candidate.prior.as_ref();
            LedgerEntry::new(
                row.candidate.row.identity.clone(),
                prior.and_then(|p| p.hash.clone()),
                None,
                "pending_create",
                None,
            )
        })
        .collect();
    context
        .store
        .put_ledger_entries(context.sync_id, &pending)
        .await
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "insert",
        Operation::Update => "update",
        Operation::Upsert => "upsert",
        Operation::Delete => "delete",
    }
}

/// Settles the Bulk jobs an earlier run of the sync left behind (a killed process), then
/// has the targets record the jobs this run opens ([`crate::write_jobs`]). Test runs write
/// nothing and track nothing.
async fn track_jobs(context: &Env, targets: Targets) -> Result<Targets, EngineError> {
    if context.options.test {
        return Ok(targets);
    }
    let settled = crate::write_jobs::settle_leftover_jobs(
        &context.store,
        context.sync_id,
        &context.client,
        bulk_poll(),
    )
    .await
    .map_err(|error| match error {
        crate::write_jobs::SettleError::Salesforce(error) => EngineError::Salesforce(error),
        crate::write_jobs::SettleError::Store(error) => EngineError::Store(error),
    })?;
    if settled > 0 {
        tracing::info!(
            jobs = settled,
            "waited for bulk jobs left by an earlier run"
        );
    }
    let log = crate::write_jobs::JobLog::new(context.store.clone(), context.sync_id);
    Ok(Targets {
        primary: targets.primary.with_job_log(log.clone()),
        lead: targets.lead.map(|lead| lead.with_job_log(log)),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_connectors::{FieldType, SourceField};
    use serde_json::json;

    use super::*;

    fn batch(rows: Vec<Vec<Value>>, raw: Option<RawWindow>) -> RowBatch {
        let fields: Vec<SourceField> = ["email", "name", "company"]
            .iter()
            .map(|name| SourceField {
                name: name.to_string(),
                field_type: FieldType::String,
                remote_type: "text".into(),
            })
            .collect();
        RowBatch {
            fields: fields.into(),
            rows,
            raw,
        }
    }

    fn raw(fingerprint: u128, rows: usize, skipped: bool) -> RawWindow {
        RawWindow {
            fingerprint,
            rows,
            skipped,
        }
    }

    #[test]
    fn sources_skip_exactly_the_marked_raw_windows() {
        let sync = crate::plan::tests::sync("updateOrCreate", json!({}), true);
        let digest = sync_digest(&sync);
        let read = raw(7, 2, false);
        let marking = Arc::new(Marking {
            digest,
            known: [(1, raw_window_fingerprint(&digest, 1, &read))]
                .into_iter()
                .collect(),
        });
        let skip = Marking::skip(marking.clone()).expect("a test with marks to skip by");
        assert!(skip(1, &read));
        // Another window number, other data, another row count: built.
        assert!(!skip(0, &read));
        assert!(!skip(1, &raw(8, 2, false)));
        assert!(!skip(1, &raw(7, 3, false)));
        // Nothing to skip by: no test at all.
        let empty = Arc::new(Marking {
            digest,
            known: FastMap::default(),
        });
        assert!(Marking::skip(empty).is_none());

        // The window the source skipped counts its rows as read, and goes no further.
        let skipped = prepare_window(
            &sync,
            None,
            Some(&marking),
            1,
            batch(Vec::new(), Some(raw(7, 2, true))),
        )
        .unwrap();
        assert!(skipped.marked);
        assert_eq!((skipped.read, skipped.rows.len()), (2, 0));

        // A window built from the same data is marked too, by the same fingerprint.
        let rows = vec![
            vec![json!("a@x.com"), json!("Ann"), json!("A Inc")],
            vec![json!("b@x.com"), json!("Bo"), json!("B Inc")],
        ];
        let built = prepare_window(
            &sync,
            None,
            Some(&marking),
            1,
            batch(rows.clone(), Some(read)),
        )
        .unwrap();
        assert!(built.marked);
        assert_eq!(built.fingerprint, marking.known.get(&1).cloned());

        // Changed data is compared row by row.
        let changed = prepare_window(
            &sync,
            None,
            Some(&marking),
            1,
            batch(rows, Some(raw(8, 2, false))),
        )
        .unwrap();
        assert!(!changed.marked);
        assert_eq!((changed.read, changed.rows.len()), (2, 2));

        // A source skipping a window the run has no mark for is an error, never a silent
        // loss of rows.
        let Err(error) = prepare_window(
            &sync,
            None,
            Some(&marking),
            0,
            batch(Vec::new(), Some(raw(7, 2, true))),
        ) else {
            panic!("an unmarked skipped window was accepted");
        };
        assert!(error.to_string().contains("window 0"), "{error}");
    }
}
