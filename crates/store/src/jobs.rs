//! The job queue: every execution is a job that a worker claims with a lease.
//!
//! A job is `queued` until a worker claims it ([`JobStore::claim_job`]), then `running`
//! under a lease (`lease_owner`, `lease_expires_at`) that the worker extends with
//! [`JobStore::heartbeat_job`], and `done` once the worker records its outcome
//! ([`JobStore::complete_job`]). A worker stopping cleanly hands the job back
//! ([`JobStore::release_job`]); a worker that dies stops heart-beating, its lease expires
//! and the next claim takes the job over (`attempts` counts claims). Every state change of
//! a running job is conditional on the caller still holding the lease, so a worker that
//! lost its lease cannot overwrite its successor's work.
//!
//! Claims are transactions: PostgreSQL picks candidates with `FOR UPDATE SKIP LOCKED` (any
//! number of worker processes claim concurrently without blocking on each other's rows);
//! SQLite (one process) takes the write lock up front (`BEGIN IMMEDIATE`). The
//! per-connection cap (at most `connection_limit` running jobs using the same Salesforce
//! connection, Salesforce's concurrent long-running request limit) is checked inside the
//! claim after locking the connections' rows in `job_connection_locks` in a fixed order,
//! so it holds across processes and claims cannot deadlock.
//!
//! Model-sync and bulk-sync jobs create their execution in the same transaction as the job
//! ([`JobStore::enqueue_model_sync`], [`JobStore::enqueue_bulk_sync`]), and a takeover
//! replaces the execution of the previous attempt (marked `interrupted`) by a new one with
//! the same options in one transaction ([`JobStore::restart_model_sync_attempt`],
//! [`JobStore::restart_bulk_sync_attempt`]), so there is never an unfinished execution
//! without a job or a job pointing at someone else's execution.
//!
//! A job can be asked to stop part of its work ([`JobStore::request_part_cancel`]: a bulk
//! sync's schema); the request is kept in the payload (`cancel_parts`), where the worker
//! running the job reads it.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::bulk_syncs::{
    ACTIVE_STATUSES as ACTIVE_BULK_STATUSES, BulkExecution, BulkSyncStore, NewBulkExecution,
};
use crate::syncs::{Execution, SyncStore, placeholders};
use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// Default cap on running jobs per Salesforce connection (Salesforce allows a handful of
/// concurrent long-running requests per org).
pub const DEFAULT_CONNECTION_LIMIT: i64 = 5;

/// The payload key listing the parts of a job (bulk-sync schemas) asked to stop.
pub const CANCEL_PARTS: &str = "cancel_parts";

/// Candidates looked at per claim.
const CLAIM_CANDIDATES: i64 = 32;

/// What a job runs. Adding a kind is one variant here and one arm in the worker's
/// dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// A model-sync execution (reverse ETL).
    ModelSync,
    /// A bulk-sync execution (ELT).
    BulkSync,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 2] = [JobKind::ModelSync, JobKind::BulkSync];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ModelSync => "model_sync",
            JobKind::BulkSync => "bulk_sync",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<JobKind> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job kind '{text}'")))
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Leased by a worker.
    Running,
    /// Finished (its outcome says how).
    Done,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 3] = [JobStatus::Queued, JobStatus::Running, JobStatus::Done];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
        }
    }
}

impl FromStr for JobStatus {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job status '{text}'")))
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Id.
    pub id: Uuid,
    /// What it runs.
    pub kind: JobKind,
    /// Owning organization.
    pub organization_id: Uuid,
    /// The sync (model or bulk) it runs.
    pub subject_id: Uuid,
    /// The execution of the current attempt.
    pub execution_id: Uuid,
    /// Kind-specific parameters (e.g. the run options).
    pub payload: Value,
    /// Queue status.
    pub status: JobStatus,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Claims so far (the first claim makes it 1; each takeover adds one).
    pub attempts: i64,
    /// How it ended (`completed`, `failed`, `canceled`, ...), once done.
    pub outcome: Option<String>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The Salesforce connections it uses (the per-connection cap counts them).
    pub connection_ids: Vec<Uuid>,
    /// Enqueued at.
    pub created_at: DateTime<Utc>,
    /// First claimed at.
    pub started_at: Option<DateTime<Utc>>,
    /// Done at.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What it runs.
    pub kind: JobKind,
    /// Owning organization.
    pub organization_id: Uuid,
    /// The sync it runs.
    pub subject_id: Uuid,
    /// The execution it runs (ignored by [`JobStore::enqueue_model_sync`], which creates it).
    pub execution_id: Uuid,
    /// Kind-specific parameters.
    pub payload: Value,
    /// Salesforce connections it uses.
    pub connection_ids: Vec<Uuid>,
}

/// Parameters of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming worker (unique per worker process).
    pub owner: String,
    /// Lease length.
    pub lease: Duration,
    /// Most running jobs per Salesforce connection.
    pub connection_limit: i64,
    /// Kinds this worker can run.
    pub kinds: Vec<JobKind>,
}

/// Queue and execution figures for `/metrics` (all processes together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSnapshot {
    /// Jobs by (kind, status).
    pub jobs: Vec<(String, String, i64)>,
    /// Model-sync executions by status.
    pub executions: Vec<(String, i64)>,
    /// Bulk-sync executions by status.
    pub bulk_executions: Vec<(String, i64)>,
    /// Model-sync records by outcome (`insert`, `update`, `upsert`, `delete`, `error`,
    /// `warning`), summed over every execution.
    pub records: Vec<(&'static str, i64)>,
    /// Every Salesforce connection: id, metered API calls since the given time, and its
    /// stored (non-secret) configuration (`daily_api_calls`, `enforce_api_limits`).
    pub salesforce: Vec<(Uuid, i64, Value)>,
}

/// Job persistence.
#[async_trait]
pub trait JobStore {
    /// Enqueues a job for an execution that already exists.
    async fn enqueue_job(&self, job: NewJob) -> Result<Job>;
    /// Creates a model-sync execution (status `created`) and its job in one transaction;
    /// [`StoreError::AlreadyExists`] (entity `running execution`) when the sync has an
    /// unfinished execution.
    async fn enqueue_model_sync(
        &self,
        job: NewJob,
        execution_type: &str,
    ) -> Result<(Execution, Job)>;
    /// Creates a bulk-sync execution (status `created`, with its schema executions) and its
    /// job in one transaction; [`StoreError::AlreadyExists`] (entity `running execution`)
    /// when the sync has an unfinished execution.
    async fn enqueue_bulk_sync(
        &self,
        job: NewJob,
        execution: &NewBulkExecution,
    ) -> Result<(BulkExecution, Job)>;
    /// Fetches a job.
    async fn job(&self, id: Uuid) -> Result<Job>;
    /// The job of an execution (its current attempt), if any.
    async fn job_for_execution(&self, execution_id: Uuid) -> Result<Option<Job>>;
    /// Claims the oldest claimable job (queued, or running with an expired lease) the
    /// connection cap allows; `None` when there is none.
    async fn claim_job(&self, request: &ClaimRequest) -> Result<Option<Job>>;
    /// Extends the lease; `false` when the caller no longer holds it.
    async fn heartbeat_job(&self, id: Uuid, owner: &str, lease: Duration) -> Result<bool>;
    /// Marks a job done with its outcome; `false` when the caller no longer holds it.
    async fn complete_job(
        &self,
        id: Uuid,
        owner: &str,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<bool>;
    /// Hands a running job back to the queue (clean shutdown); `false` when the caller no
    /// longer holds it.
    async fn release_job(&self, id: Uuid, owner: &str) -> Result<bool>;
    /// Marks a job that no worker holds yet done (canceled before it ran); `false` when it
    /// is not queued any more.
    async fn cancel_queued_job(&self, id: Uuid) -> Result<bool>;
    /// Takeover of a model-sync job: marks the previous attempt's execution `interrupted`
    /// (if still unfinished), creates a new execution of the same type and points the job
    /// at it, in one transaction. `None` when another execution of the sync started in the
    /// meantime (the job is then superseded) or the caller lost the lease.
    async fn restart_model_sync_attempt(&self, id: Uuid, owner: &str) -> Result<Option<Execution>>;
    /// [`JobStore::restart_model_sync_attempt`] for a takeover that found the job at
    /// `claimed_execution_id`: when the job has moved on to a successor that never ran
    /// (`created`: the previous owner handed the attempt off in the meantime,
    /// [`JobStore::hand_off_lost_model_sync_attempt`]), that successor is returned
    /// unchanged instead of being replaced.
    async fn take_over_model_sync_attempt(
        &self,
        id: Uuid,
        owner: &str,
        claimed_execution_id: Uuid,
    ) -> Result<Option<Execution>>;
    /// A worker that lost a model-sync job's lease hands its attempt off before stopping
    /// its run: when the job still points at `execution_id` (its new owner has not
    /// restarted it yet) and that execution is unfinished and not being canceled, it is
    /// marked `interrupted` and its successor written, exactly as the new owner's
    /// [`JobStore::take_over_model_sync_attempt`] would (whichever comes first does it; the
    /// other finds it done). No lease is needed: the write is conditional on the job
    /// still being at that attempt. Returns the successor, or `None` when there was
    /// nothing to hand off. The run stopped afterwards can then never settle its
    /// execution `canceled`, and the sync keeps an unfinished execution throughout.
    async fn hand_off_lost_model_sync_attempt(
        &self,
        id: Uuid,
        execution_id: Uuid,
    ) -> Result<Option<Execution>>;
    /// Takeover (or clean hand-back) of a bulk-sync job: marks the previous attempt's
    /// execution `interrupted` with `message` (if still unfinished), creates a new
    /// execution with the same type, options and schema list and points the job at it, in
    /// one transaction. `None` when another execution of the sync started in the meantime
    /// (the job is then superseded) or the caller lost the lease.
    async fn restart_bulk_sync_attempt(
        &self,
        id: Uuid,
        owner: &str,
        message: &str,
    ) -> Result<Option<BulkExecution>>;
    /// Asks the job to stop one part of its work (a bulk sync's schema): `part` is added to
    /// the payload's [`CANCEL_PARTS`] list. `false` when the job is done.
    async fn request_part_cancel(&self, id: Uuid, part: &str) -> Result<bool>;
    /// Queue, execution and API-usage figures.
    async fn queue_snapshot(&self, api_calls_since: DateTime<Utc>) -> Result<QueueSnapshot>;
}

/// Backend differences of the claim (everything else is shared SQL).
trait ClaimDialect {
    /// Appended to the candidate query.
    const LOCK_CANDIDATES: &'static str;
    /// Appended to a query reading a row that is then updated.
    const LOCK_ROW: &'static str;
}

impl ClaimDialect for crate::backend::SqliteStore {
    const LOCK_CANDIDATES: &'static str = "";
    const LOCK_ROW: &'static str = "";
}

impl ClaimDialect for crate::backend::PostgresStore {
    const LOCK_CANDIDATES: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCK_ROW: &'static str = " FOR UPDATE";
}

const JOB_COLUMNS: &str = "id, kind, organization_id, subject_id, execution_id, payload, status, \
                           lease_owner, lease_expires_at, heartbeat_at, attempts, outcome, \
                           last_error, created_at, started_at, finished_at";

trait JobRow {
    fn to_job(&self, connection_ids: Vec<Uuid>) -> Result<Job>;
}

fn corrupt(error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

macro_rules! impl_job_row {
    ($row:ty) => {
        impl JobRow for $row {
            fn to_job(&self, connection_ids: Vec<Uuid>) -> Result<Job> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let millis = |column: &str| -> Result<Option<DateTime<Utc>>> {
                    let value: Option<i64> = self.try_get(column)?;
                    Ok(value.map(from_millis))
                };
                let kind: String = self.try_get("kind")?;
                let status: String = self.try_get("status")?;
                let payload: String = self.try_get("payload")?;
                Ok(Job {
                    id: uuid("id")?,
                    kind: kind.parse()?,
                    organization_id: uuid("organization_id")?,
                    subject_id: uuid("subject_id")?,
                    execution_id: uuid("execution_id")?,
                    payload: serde_json::from_str(&payload).map_err(|e| corrupt(&e))?,
                    status: status.parse()?,
                    lease_owner: self.try_get("lease_owner")?,
                    lease_expires_at: millis("lease_expires_at")?,
                    heartbeat_at: millis("heartbeat_at")?,
                    attempts: self.try_get("attempts")?,
                    outcome: self.try_get("outcome")?,
                    last_error: self.try_get("last_error")?,
                    connection_ids,
                    created_at: from_millis(self.try_get("created_at")?),
                    started_at: millis("started_at")?,
                    finished_at: millis("finished_at")?,
                })
            }
        }
    };
}
impl_job_row!(sqlx::sqlite::SqliteRow);
impl_job_row!(sqlx::postgres::PgRow);

fn now() -> i64 {
    ferry_core::time::now_millis().timestamp_millis()
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4)
}

fn job_not_found() -> StoreError {
    StoreError::NotFound { entity: "job" }
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| corrupt(&e))
}

macro_rules! impl_jobs {
    ($store:ty) => {
        impl $store {
            async fn job_connection_ids<'e, E>(executor: E, id: &str) -> Result<Vec<Uuid>>
            where
                E: sqlx::Executor<'e, Database = <$store as crate::syncs::StoreDb>::Db>,
            {
                let rows = sqlx::query(
                    "SELECT connection_id FROM job_connections WHERE job_id = $1 \
                     ORDER BY connection_id",
                )
                .bind(id)
                .fetch_all(executor)
                .await?;
                rows.iter()
                    .map(|row| parse_uuid(&row.try_get::<String, _>("connection_id")?))
                    .collect()
            }

            async fn insert_job(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                job: &NewJob,
                execution_id: Uuid,
            ) -> Result<Uuid> {
                let id = Uuid::new_v4();
                let now = now();
                let payload = serde_json::to_string(&job.payload).map_err(|e| corrupt(&e))?;
                sqlx::query(&format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}, updated_at) VALUES ($1, $2, $3, $4, $5, \
                     $6, 'queued', NULL, NULL, NULL, 0, NULL, NULL, $7, NULL, NULL, $7)"
                ))
                .bind(id.to_string())
                .bind(job.kind.as_str())
                .bind(job.organization_id.to_string())
                .bind(job.subject_id.to_string())
                .bind(execution_id.to_string())
                .bind(payload)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let mut connections = job.connection_ids.clone();
                connections.sort();
                connections.dedup();
                for connection_id in connections {
                    sqlx::query(
                        "INSERT INTO job_connections (job_id, connection_id) VALUES ($1, $2)",
                    )
                    .bind(id.to_string())
                    .bind(connection_id.to_string())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(id)
            }

            /// Inserts an execution row (status `created`) in the transaction.
            async fn insert_execution(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                sync_id: Uuid,
                execution_type: &str,
            ) -> Result<Uuid> {
                let id = Uuid::new_v4();
                let now = now();
                sqlx::query(
                    "INSERT INTO sync_executions (id, sync_id, status, execution_type, \
                     total_count, insert_count, update_count, upsert_count, delete_count, \
                     error_count, warning_count, errors, created_at, started_at, completed_at, \
                     updated_at) VALUES ($1, $2, 'created', $3, 0, 0, 0, 0, 0, 0, 0, '[]', $4, \
                     NULL, NULL, $4)",
                )
                .bind(id.to_string())
                .bind(sync_id.to_string())
                .bind(execution_type)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(map_unique("running execution"))?;
                Ok(id)
            }

            /// Marks a model-sync job's attempt `interrupted` (if still unfinished), writes
            /// its successor (`created`, same type) and points the job at it; `None` when
            /// another unfinished execution of the sync exists (the caller rolls back).
            async fn replace_attempt(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                id: Uuid,
                sync_id: Uuid,
                previous: &str,
                execution_type: &str,
                now: i64,
            ) -> Result<Option<Uuid>> {
                sqlx::query(
                    "UPDATE sync_executions SET status = 'interrupted', updated_at = $2, \
                     completed_at = COALESCE(completed_at, $2) WHERE id = $1 \
                     AND status IN ('created', 'queued', 'running', 'canceling')",
                )
                .bind(previous)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let execution_id = match Self::insert_execution(tx, sync_id, execution_type).await {
                    Ok(execution_id) => execution_id,
                    Err(StoreError::AlreadyExists { .. }) => return Ok(None),
                    Err(error) => return Err(error),
                };
                sqlx::query("UPDATE jobs SET execution_id = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(execution_id.to_string())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(Some(execution_id))
            }

            /// `restart_model_sync_attempt` and `take_over_model_sync_attempt`.
            async fn restart_model_sync(
                &self,
                id: Uuid,
                owner: &str,
                claimed: Option<Uuid>,
            ) -> Result<Option<Execution>> {
                let mut tx = self.begin_write().await?;
                // The job row is locked (PostgreSQL; SQLite holds the write lock) so a
                // takeover and a hand-off by the attempt's previous owner
                // (`hand_off_lost_model_sync_attempt`) happen one after the other.
                let row = sqlx::query(&format!(
                    "SELECT j.subject_id, j.execution_id, e.execution_type, e.status FROM jobs j \
                     JOIN sync_executions e ON e.id = j.execution_id \
                     WHERE j.id = $1 AND j.lease_owner = $2 AND j.status = 'running'{}",
                    <$store as ClaimDialect>::LOCK_ROW
                ))
                .bind(id.to_string())
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let sync_id = parse_uuid(&row.try_get::<String, _>("subject_id")?)?;
                let previous: String = row.try_get("execution_id")?;
                let status: String = row.try_get("status")?;
                if status == "created"
                    && claimed.is_some_and(|claimed| claimed.to_string() != previous)
                {
                    // A takeover finding that the previous owner handed the attempt off
                    // already: its successor, which never ran, is the one to continue.
                    tx.rollback().await?;
                    return self.execution(sync_id, parse_uuid(&previous)?).await.map(Some);
                }
                let execution_type: String = row.try_get("execution_type")?;
                let now = now();
                let Some(execution_id) =
                    Self::replace_attempt(&mut tx, id, sync_id, &previous, &execution_type, now)
                        .await?
                else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                tx.commit().await?;
                self.execution(sync_id, execution_id).await.map(Some)
            }
        }

        #[async_trait]
        impl JobStore for $store {
            async fn enqueue_job(&self, job: NewJob) -> Result<Job> {
                let mut tx = self.begin_write().await?;
                let id = Self::insert_job(&mut tx, &job, job.execution_id).await?;
                tx.commit().await?;
                self.job(id).await
            }

            async fn enqueue_model_sync(
                &self,
                job: NewJob,
                execution_type: &str,
            ) -> Result<(Execution, Job)> {
                let mut tx = self.begin_write().await?;
                let execution_id =
                    Self::insert_execution(&mut tx, job.subject_id, execution_type).await?;
                let id = Self::insert_job(&mut tx, &job, execution_id).await?;
                tx.commit().await?;
                let execution = self.execution(job.subject_id, execution_id).await?;
                Ok((execution, self.job(id).await?))
            }

            async fn enqueue_bulk_sync(
                &self,
                job: NewJob,
                execution: &NewBulkExecution,
            ) -> Result<(BulkExecution, Job)> {
                let mut tx = self.begin_write().await?;
                let execution_id =
                    match Self::insert_bulk_execution(&mut tx, job.subject_id, execution).await {
                        Ok(id) => id,
                        Err(error) => {
                            tx.rollback().await?;
                            return Err(error);
                        }
                    };
                let id = Self::insert_job(&mut tx, &job, execution_id).await?;
                tx.commit().await?;
                let execution = self.bulk_execution(job.subject_id, execution_id).await?;
                Ok((execution, self.job(id).await?))
            }

            async fn job(&self, id: Uuid) -> Result<Job> {
                let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else {
                    return Err(job_not_found());
                };
                let connections = Self::job_connection_ids(&self.pool, &id.to_string()).await?;
                row.to_job(connections)
            }

            async fn job_for_execution(&self, execution_id: Uuid) -> Result<Option<Job>> {
                let row = sqlx::query("SELECT id FROM jobs WHERE execution_id = $1")
                    .bind(execution_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(row) => {
                        let id: String = row.try_get("id")?;
                        Ok(Some(self.job(parse_uuid(&id)?).await?))
                    }
                    None => Ok(None),
                }
            }

            async fn claim_job(&self, request: &ClaimRequest) -> Result<Option<Job>> {
                if request.kinds.is_empty() {
                    return Ok(None);
                }
                let now = now();
                let mut tx = self.begin_write().await?;
                let claimable = format!(
                    "kind IN ({}) AND (status = 'queued' OR \
                     (status = 'running' AND lease_expires_at < $1))",
                    placeholders(3, request.kinds.len())
                );
                let sql = format!(
                    "SELECT id FROM jobs WHERE {claimable} ORDER BY created_at, id LIMIT $2"
                );
                let mut query = sqlx::query(&sql).bind(now).bind(CLAIM_CANDIDATES);
                for kind in &request.kinds {
                    query = query.bind(kind.as_str());
                }
                let candidates: Vec<String> = query
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| row.try_get("id"))
                    .collect::<std::result::Result<_, _>>()?;
                // Each candidate is examined in a savepoint: its row is locked (skipped if
                // another claim holds it), then its connections' lock rows in sorted order;
                // a candidate the cap refuses is rolled back, which releases those locks
                // before the next one (so claims never wait on each other in a cycle).
                let lock_sql = format!(
                    "SELECT id FROM jobs WHERE id = $2 AND {claimable}{}",
                    <$store as ClaimDialect>::LOCK_CANDIDATES
                );
                for id in candidates {
                    let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                    let mut query = sqlx::query(&lock_sql).bind(now).bind(&id);
                    for kind in &request.kinds {
                        query = query.bind(kind.as_str());
                    }
                    let locked = query.fetch_optional(&mut *savepoint).await?;
                    if locked.is_none() {
                        savepoint.rollback().await?;
                        continue;
                    }
                    let connections = Self::job_connection_ids(&mut *savepoint, &id).await?;
                    let mut allowed = true;
                    for connection_id in &connections {
                        sqlx::query(
                            "INSERT INTO job_connection_locks (connection_id, claims) \
                             VALUES ($1, 0) ON CONFLICT (connection_id) DO NOTHING",
                        )
                        .bind(connection_id.to_string())
                        .execute(&mut *savepoint)
                        .await?;
                        sqlx::query(
                            "UPDATE job_connection_locks SET claims = claims + 1 \
                             WHERE connection_id = $1",
                        )
                        .bind(connection_id.to_string())
                        .execute(&mut *savepoint)
                        .await?;
                        let row = sqlx::query(
                            "SELECT COUNT(*) AS n FROM job_connections c \
                             JOIN jobs j ON j.id = c.job_id \
                             WHERE c.connection_id = $1 AND j.id <> $2 \
                             AND j.status = 'running' AND j.lease_expires_at >= $3",
                        )
                        .bind(connection_id.to_string())
                        .bind(&id)
                        .bind(now)
                        .fetch_one(&mut *savepoint)
                        .await?;
                        let running: i64 = row.try_get("n")?;
                        if running >= request.connection_limit {
                            allowed = false;
                            break;
                        }
                    }
                    if !allowed {
                        savepoint.rollback().await?;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE jobs SET status = 'running', lease_owner = $2, \
                         lease_expires_at = $3, heartbeat_at = $4, attempts = attempts + 1, \
                         started_at = COALESCE(started_at, $4), updated_at = $4 WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(&request.owner)
                    .bind(now.saturating_add(lease_millis(request.lease)))
                    .bind(now)
                    .execute(&mut *savepoint)
                    .await?;
                    savepoint.commit().await?;
                    tx.commit().await?;
                    return self.job(parse_uuid(&id)?).await.map(Some);
                }
                tx.commit().await?;
                Ok(None)
            }

            async fn heartbeat_job(&self, id: Uuid, owner: &str, lease: Duration) -> Result<bool> {
                // The lease runs from when the renewal reaches the database, not from
                // before a connection was free (a wait for the pool must not shorten it).
                let mut connection = self.pool.acquire().await?;
                let now = now();
                let result = sqlx::query(
                    "UPDATE jobs SET lease_expires_at = $3, heartbeat_at = $4, updated_at = $4 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id.to_string())
                .bind(owner)
                .bind(now.saturating_add(lease_millis(lease)))
                .bind(now)
                .execute(&mut *connection)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn complete_job(
                &self,
                id: Uuid,
                owner: &str,
                outcome: &str,
                error: Option<&str>,
            ) -> Result<bool> {
                let now = now();
                let result = sqlx::query(
                    "UPDATE jobs SET status = 'done', outcome = $3, last_error = $4, \
                     lease_expires_at = NULL, finished_at = $5, updated_at = $5 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id.to_string())
                .bind(owner)
                .bind(outcome)
                .bind(error)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn release_job(&self, id: Uuid, owner: &str) -> Result<bool> {
                let result = sqlx::query(
                    "UPDATE jobs SET status = 'queued', lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id.to_string())
                .bind(owner)
                .bind(now())
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn cancel_queued_job(&self, id: Uuid) -> Result<bool> {
                let now = now();
                let result = sqlx::query(
                    "UPDATE jobs SET status = 'done', outcome = 'canceled', finished_at = $2, \
                     updated_at = $2 WHERE id = $1 AND status = 'queued'",
                )
                .bind(id.to_string())
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn restart_model_sync_attempt(
                &self,
                id: Uuid,
                owner: &str,
            ) -> Result<Option<Execution>> {
                self.restart_model_sync(id, owner, None).await
            }

            async fn take_over_model_sync_attempt(
                &self,
                id: Uuid,
                owner: &str,
                claimed_execution_id: Uuid,
            ) -> Result<Option<Execution>> {
                self.restart_model_sync(id, owner, Some(claimed_execution_id)).await
            }

            async fn hand_off_lost_model_sync_attempt(
                &self,
                id: Uuid,
                execution_id: Uuid,
            ) -> Result<Option<Execution>> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!(
                    "SELECT j.subject_id, e.execution_type FROM jobs j \
                     JOIN sync_executions e ON e.id = j.execution_id \
                     WHERE j.id = $1 AND j.execution_id = $2 AND j.status <> 'done' \
                     AND e.status IN ('created', 'queued', 'running'){}",
                    <$store as ClaimDialect>::LOCK_ROW
                ))
                .bind(id.to_string())
                .bind(execution_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let sync_id = parse_uuid(&row.try_get::<String, _>("subject_id")?)?;
                let execution_type: String = row.try_get("execution_type")?;
                let previous = execution_id.to_string();
                let Some(next) =
                    Self::replace_attempt(&mut tx, id, sync_id, &previous, &execution_type, now())
                        .await?
                else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                tx.commit().await?;
                self.execution(sync_id, next).await.map(Some)
            }

            async fn restart_bulk_sync_attempt(
                &self,
                id: Uuid,
                owner: &str,
                message: &str,
            ) -> Result<Option<BulkExecution>> {
                // Reads then writes: SQLite takes the write lock up front (a deferred
                // transaction could not upgrade while another writer is active).
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "SELECT j.subject_id, j.execution_id, e.execution_type, e.fetch_mode, \
                     e.output_disposition, e.is_resync, e.is_partial, e.is_test FROM jobs j \
                     JOIN bulk_sync_executions e ON e.id = j.execution_id \
                     WHERE j.id = $1 AND j.lease_owner = $2 AND j.status = 'running'",
                )
                .bind(id.to_string())
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let sync_id = parse_uuid(&row.try_get::<String, _>("subject_id")?)?;
                let previous: String = row.try_get("execution_id")?;
                let schemas = sqlx::query(
                    "SELECT schema_id, output_name FROM bulk_sync_schema_executions \
                     WHERE execution_id = $1 ORDER BY position",
                )
                .bind(&previous)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|schema| Ok((schema.try_get("schema_id")?, schema.try_get("output_name")?)))
                .collect::<Result<Vec<(String, String)>>>()?;
                let next = NewBulkExecution {
                    execution_type: row.try_get("execution_type")?,
                    fetch_mode: row.try_get("fetch_mode")?,
                    output_disposition: row.try_get("output_disposition")?,
                    is_resync: row.try_get("is_resync")?,
                    is_partial: row.try_get("is_partial")?,
                    is_test: row.try_get("is_test")?,
                    schemas,
                };
                let now = now();
                let interrupt = format!(
                    "UPDATE bulk_sync_executions SET status = 'interrupted', updated_at = $2, \
                     completed_at = COALESCE(completed_at, $2), status_message = $3 \
                     WHERE id = $1 AND status IN ({})",
                    placeholders(4, ACTIVE_BULK_STATUSES.len())
                );
                let mut query = sqlx::query(&interrupt).bind(&previous).bind(now).bind(message);
                for status in ACTIVE_BULK_STATUSES {
                    query = query.bind(status);
                }
                query.execute(&mut *tx).await?;
                sqlx::query(
                    "UPDATE bulk_sync_schema_executions SET status = 'interrupted', \
                     updated_at = $2, completed_at = COALESCE(completed_at, $2) \
                     WHERE execution_id = $1 AND status IN \
                     ('created', 'scheduled', 'running', 'exporting', 'processing')",
                )
                .bind(&previous)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let execution_id = match Self::insert_bulk_execution(&mut tx, sync_id, &next).await
                {
                    Ok(execution_id) => execution_id,
                    Err(StoreError::AlreadyExists { .. }) => {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    Err(error) => return Err(error),
                };
                sqlx::query("UPDATE jobs SET execution_id = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(execution_id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.bulk_execution(sync_id, execution_id).await.map(Some)
            }

            async fn request_part_cancel(&self, id: Uuid, part: &str) -> Result<bool> {
                // Locks the row on PostgreSQL so concurrent requests do not lose each other;
                // SQLite takes the write lock up front.
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(&format!(
                    "SELECT payload FROM jobs WHERE id = $1 AND status <> 'done'{}",
                    <$store as ClaimDialect>::LOCK_ROW
                ))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let payload: String = row.try_get("payload")?;
                let mut payload: Value =
                    serde_json::from_str(&payload).map_err(|e| corrupt(&e))?;
                let Some(object) = payload.as_object_mut() else {
                    tx.rollback().await?;
                    return Err(StoreError::Corrupt(format!("job {id}: payload is not an object")));
                };
                let parts = object
                    .entry(CANCEL_PARTS)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = parts {
                    if !list.iter().any(|p| p.as_str() == Some(part)) {
                        list.push(Value::String(part.to_string()));
                    }
                } else {
                    *parts = Value::Array(vec![Value::String(part.to_string())]);
                }
                let text = serde_json::to_string(&payload).map_err(|e| corrupt(&e))?;
                sqlx::query("UPDATE jobs SET payload = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(text)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn queue_snapshot(&self, api_calls_since: DateTime<Utc>) -> Result<QueueSnapshot> {
                let mut snapshot = QueueSnapshot::default();
                let rows = sqlx::query(
                    "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status \
                     ORDER BY kind, status",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in rows {
                    snapshot
                        .jobs
                        .push((row.try_get("kind")?, row.try_get("status")?, row.try_get("n")?));
                }
                let rows = sqlx::query(
                    "SELECT status, COUNT(*) AS n FROM sync_executions GROUP BY status \
                     ORDER BY status",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in rows {
                    snapshot
                        .executions
                        .push((row.try_get("status")?, row.try_get("n")?));
                }
                let rows = sqlx::query(
                    "SELECT status, COUNT(*) AS n FROM bulk_sync_executions GROUP BY status \
                     ORDER BY status",
                )
                .fetch_all(&self.pool)
                .await?;
                for row in rows {
                    snapshot
                        .bulk_executions
                        .push((row.try_get("status")?, row.try_get("n")?));
                }
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(insert_count), 0) AS BIGINT) AS inserts, \
                     CAST(COALESCE(SUM(update_count), 0) AS BIGINT) AS updates, \
                     CAST(COALESCE(SUM(upsert_count), 0) AS BIGINT) AS upserts, \
                     CAST(COALESCE(SUM(delete_count), 0) AS BIGINT) AS deletes, \
                     CAST(COALESCE(SUM(error_count), 0) AS BIGINT) AS errors, \
                     CAST(COALESCE(SUM(warning_count), 0) AS BIGINT) AS warnings \
                     FROM sync_executions",
                )
                .fetch_one(&self.pool)
                .await?;
                snapshot.records = vec![
                    ("insert", row.try_get("inserts")?),
                    ("update", row.try_get("updates")?),
                    ("upsert", row.try_get("upserts")?),
                    ("delete", row.try_get("deletes")?),
                    ("error", row.try_get("errors")?),
                    ("warning", row.try_get("warnings")?),
                ];
                let rows = sqlx::query(
                    "SELECT c.id, c.configuration, CAST(COALESCE((SELECT SUM(a.calls) \
                     FROM connection_api_calls a WHERE a.connection_id = c.id \
                     AND a.bucket_start >= $1), 0) AS BIGINT) AS n \
                     FROM connections c WHERE c.type = 'salesforce' ORDER BY c.id",
                )
                .bind(api_calls_since.timestamp_millis())
                .fetch_all(&self.pool)
                .await?;
                for row in rows {
                    let id: String = row.try_get("id")?;
                    let configuration: String = row.try_get("configuration")?;
                    let configuration =
                        serde_json::from_str(&configuration).map_err(|e| corrupt(&e))?;
                    snapshot
                        .salesforce
                        .push((parse_uuid(&id)?, row.try_get("n")?, configuration));
                }
                Ok(snapshot)
            }
        }
    };
}

for_each_backend!(impl_jobs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>().unwrap(), kind);
        }
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
        }
        assert!("reticulate".parse::<JobKind>().is_err());
    }

    #[test]
    fn leases_saturate() {
        assert_eq!(lease_millis(Duration::from_secs(3)), 3000);
        assert!(lease_millis(Duration::MAX) > 0);
    }
}
