//! Bulk syncs (ELT): the sync, its schemas, its schedules, its executions.
//!
//! A bulk sync row keeps the API's `BulkSyncRequest` document as JSON (`document`) plus the
//! columns lists filter on (name, connections, mode, active). The sync is registered as a
//! dependent (`kind = "bulk_sync"`) of its source and destination connections in the same
//! transaction that writes it, so deleting a connection in use answers "connection in use".
//!
//! - Schemas: one row per selected source object (`Account`, `tooling:ApexClass`) with its
//!   `enabled` flag, `user_output_name`, partition/tracking field, data cutoff, and the
//!   field and filter documents as JSON.
//! - Schedules: exactly one default schedule per sync (unique partial index) plus any number
//!   of additional ones.
//! - Executions: status, type, options and counts, with one row per schema execution; the
//!   execution's counts are the sums of its schema executions, recomputed in the same
//!   transaction that records a schema's progress. At most one unfinished execution
//!   ([`ACTIVE_STATUSES`]) exists per sync: a unique partial index enforces it, so two
//!   concurrent starts cannot both succeed ([`StoreError::AlreadyExists`] with entity
//!   `running execution`). Status changes are compare-and-set
//!   ([`BulkSyncStore::transition_bulk_execution`]); a terminal status also settles every
//!   schema execution still unfinished.
//! - Logs: numbered JSON lines per execution.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::syncs::placeholders;
use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// The dependent kind bulk syncs register under.
pub const DEPENDENT_KIND: &str = "bulk_sync";

/// Statuses of an unfinished execution (at most one per sync).
pub const ACTIVE_STATUSES: [&str; 6] = [
    "created",
    "scheduled",
    "running",
    "exporting",
    "processing",
    "canceling",
];

/// Whether an execution (or schema execution) status is terminal.
pub fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "completed" | "failed" | "canceled" | "interrupted" | "errors"
    )
}

/// A stored bulk sync.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkSync {
    /// Public id.
    pub id: Uuid,
    /// Owning organization.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// The connection records are read from.
    pub source_connection_id: Uuid,
    /// The connection records are written to.
    pub destination_connection_id: Uuid,
    /// `replicate` or `snapshot`.
    pub mode: String,
    /// Runs on its schedules.
    pub active: bool,
    /// The normalized `BulkSyncRequest` document (without schemas and schedules).
    pub document: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Creator (API key id).
    pub created_by: Option<String>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Last updater.
    pub updated_by: Option<String>,
}

/// The writable part of a bulk sync.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkSyncWrite {
    /// Display name.
    pub name: String,
    /// Source connection (must belong to the organization).
    pub source_connection_id: Uuid,
    /// Destination connection (must belong to the organization).
    pub destination_connection_id: Uuid,
    /// `replicate` or `snapshot`.
    pub mode: String,
    /// Runs on its schedules.
    pub active: bool,
    /// The document.
    pub document: Value,
    /// Who writes.
    pub actor: Option<String>,
}

/// One schema (source object) of a bulk sync.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkSchema {
    /// Source schema id (`Account`, `tooling:ApexClass`).
    pub schema_id: String,
    /// Included in runs.
    pub enabled: bool,
    /// The user's destination name, overriding the default.
    pub user_output_name: Option<String>,
    /// Partition field.
    pub partition_key: Option<String>,
    /// Change-tracking field.
    pub tracking_field: Option<String>,
    /// Records older than this are skipped.
    pub data_cutoff_timestamp: Option<DateTime<Utc>>,
    /// Ignore every cutoff for this schema.
    pub disable_data_cutoff: bool,
    /// Field documents (`[{id, enabled, obfuscated, user_output_name}]`); an empty array
    /// means every field.
    pub fields: Value,
    /// Filter documents (`[{field_id, function, value}]`).
    pub filters: Value,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkSchedule {
    /// Public id.
    pub id: Uuid,
    /// The sync.
    pub sync_id: Uuid,
    /// The sync's default schedule.
    pub is_default: bool,
    /// `manual`, `hourly`, ...
    pub frequency: String,
    /// Minute field.
    pub minute: Option<String>,
    /// Hour field.
    pub hour: Option<String>,
    /// Day-of-week field.
    pub day_of_week: Option<String>,
    /// Day-of-month field.
    pub day_of_month: Option<String>,
    /// Month field.
    pub month: Option<String>,
    /// `none`, `incrementalFields`, `nonincrementalFields`.
    pub selective_mode: Option<String>,
    /// `normal`, `refetch`, `resync`, `rebuild`.
    pub sync_mode: Option<String>,
    /// Schemas it applies to (empty: all).
    pub schemas: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Creator.
    pub created_by: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last updater.
    pub updated_by: Option<String>,
}

/// The writable part of a schedule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkScheduleWrite {
    /// Keep this id (replace the schedule); `None` creates a new one.
    pub id: Option<Uuid>,
    /// The default schedule.
    pub is_default: bool,
    /// Frequency.
    pub frequency: String,
    /// Minute field.
    pub minute: Option<String>,
    /// Hour field.
    pub hour: Option<String>,
    /// Day-of-week field.
    pub day_of_week: Option<String>,
    /// Day-of-month field.
    pub day_of_month: Option<String>,
    /// Month field.
    pub month: Option<String>,
    /// Selective mode.
    pub selective_mode: Option<String>,
    /// Sync mode.
    pub sync_mode: Option<String>,
    /// Schemas it applies to.
    pub schemas: Vec<String>,
    /// Who writes.
    pub actor: Option<String>,
}

/// A new execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewBulkExecution {
    /// `manual`, `scheduled`, `test`, ...
    pub execution_type: String,
    /// `none`, `incremental`, `full`.
    pub fetch_mode: String,
    /// `retain`, `truncate`, `rebuild`.
    pub output_disposition: String,
    /// A resync.
    pub is_resync: bool,
    /// Only some of the enabled schemas.
    pub is_partial: bool,
    /// A test execution.
    pub is_test: bool,
    /// `(schema id, output name)` of every schema the execution covers, in run order.
    pub schemas: Vec<(String, String)>,
}

/// One schema of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkSchemaExecution {
    /// Source schema id.
    pub schema_id: String,
    /// Destination table name.
    pub output_name: String,
    /// Status (`created`, `running`, `completed`, `failed`, `canceled`, `interrupted`).
    pub status: String,
    /// Detail (the error of a failed schema).
    pub status_message: String,
    /// Records written.
    pub record_count: i64,
    /// Records deleted.
    pub delete_count: i64,
    /// Errors.
    pub error_count: i64,
    /// Warnings.
    pub warning_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub completed_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A stored execution with its schema executions.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkExecution {
    /// Public id.
    pub id: Uuid,
    /// The sync.
    pub sync_id: Uuid,
    /// Status (Polytomic's `BulkExecutionStatus`).
    pub status: String,
    /// Detail.
    pub status_message: String,
    /// `manual`, `scheduled`, `test`, ...
    pub execution_type: String,
    /// `none`, `incremental`, `full`.
    pub fetch_mode: String,
    /// `retain`, `truncate`, `rebuild`.
    pub output_disposition: String,
    /// A resync.
    pub is_resync: bool,
    /// Only some schemas.
    pub is_partial: bool,
    /// A test execution.
    pub is_test: bool,
    /// Sum of the schemas' records.
    pub record_count: i64,
    /// Sum of the schemas' errors.
    pub error_count: i64,
    /// Sum of the schemas' warnings.
    pub warning_count: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub completed_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The schema executions, in run order.
    pub schemas: Vec<BulkSchemaExecution>,
}

/// Progress of one schema execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkSchemaProgress {
    /// Source schema id.
    pub schema_id: String,
    /// New status.
    pub status: String,
    /// Detail.
    pub status_message: String,
    /// Records written so far.
    pub record_count: i64,
    /// Records deleted so far.
    pub delete_count: i64,
    /// Errors so far.
    pub error_count: i64,
    /// Warnings so far.
    pub warning_count: i64,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Options of [`BulkSyncStore::list_bulk_executions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkExecutionPage {
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Only terminal executions, ordered by `updated_at`.
    pub only_terminal: bool,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// Bulk-sync persistence. Sync calls are scoped to an organization; the others take a sync
/// id the caller has already resolved within its organization.
#[async_trait]
pub trait BulkSyncStore {
    /// Inserts a sync with its schemas and schedules and registers it as a dependent of its
    /// connections.
    async fn create_bulk_sync(
        &self,
        organization_id: Uuid,
        write: BulkSyncWrite,
        schemas: &[BulkSchema],
        schedules: &[BulkScheduleWrite],
    ) -> Result<BulkSync>;
    /// Fetches one sync.
    async fn bulk_sync(&self, organization_id: Uuid, id: Uuid) -> Result<BulkSync>;
    /// Syncs of the organization, most recently updated first (id breaks ties).
    async fn list_bulk_syncs(
        &self,
        organization_id: Uuid,
        active: Option<bool>,
    ) -> Result<Vec<BulkSync>>;
    /// Every active sync of every organization (the scheduler's view).
    async fn list_active_bulk_syncs(&self) -> Result<Vec<BulkSync>>;
    /// Replaces a sync, moves its dependent links and replaces its schedules (schedules
    /// whose id is not listed are deleted; listed ids keep their creation data).
    async fn update_bulk_sync(
        &self,
        organization_id: Uuid,
        id: Uuid,
        write: BulkSyncWrite,
        schedules: &[BulkScheduleWrite],
    ) -> Result<BulkSync>;
    /// Sets `active`.
    async fn set_bulk_sync_active(
        &self,
        organization_id: Uuid,
        id: Uuid,
        active: bool,
    ) -> Result<()>;
    /// Deletes a sync, its schemas, schedules, executions, logs and dependent links.
    async fn delete_bulk_sync(&self, organization_id: Uuid, id: Uuid) -> Result<()>;

    /// The schemas of a sync, by id.
    async fn bulk_schemas(&self, sync_id: Uuid) -> Result<Vec<BulkSchema>>;
    /// Inserts or replaces the listed schemas; others are untouched.
    async fn put_bulk_schemas(&self, sync_id: Uuid, schemas: &[BulkSchema]) -> Result<()>;

    /// The schedules of a sync, the default first.
    async fn bulk_schedules(&self, sync_id: Uuid) -> Result<Vec<BulkSchedule>>;
    /// Creates a schedule, or replaces the one with `write.id`.
    async fn put_bulk_schedule(
        &self,
        sync_id: Uuid,
        write: &BulkScheduleWrite,
    ) -> Result<BulkSchedule>;
    /// Deletes a schedule.
    async fn delete_bulk_schedule(&self, sync_id: Uuid, id: Uuid) -> Result<()>;

    /// Creates an execution (and its schema executions) in status `created`;
    /// [`StoreError::AlreadyExists`] when the sync has an unfinished one.
    async fn create_bulk_execution(
        &self,
        sync_id: Uuid,
        new: &NewBulkExecution,
    ) -> Result<BulkExecution>;
    /// Fetches an execution of a sync.
    async fn bulk_execution(&self, sync_id: Uuid, id: Uuid) -> Result<BulkExecution>;
    /// The unfinished execution of a sync, if any.
    async fn active_bulk_execution(&self, sync_id: Uuid) -> Result<Option<BulkExecution>>;
    /// The most recent terminal execution of a sync.
    async fn last_finished_bulk_execution(&self, sync_id: Uuid) -> Result<Option<BulkExecution>>;
    /// Executions of a sync by creation time (newest first unless `ascending`).
    async fn list_bulk_executions(
        &self,
        sync_id: Uuid,
        page: BulkExecutionPage,
    ) -> Result<Vec<BulkExecution>>;
    /// Moves an execution to `to` if its status is one of `from` (and sets the status
    /// message when given); returns whether it moved. `running` sets `started_at`; a
    /// terminal status sets `completed_at` and moves every unfinished schema execution to
    /// the same status (`completed`: `canceled`, as they never ran).
    async fn transition_bulk_execution(
        &self,
        id: Uuid,
        from: &[&str],
        to: &str,
        message: Option<&str>,
    ) -> Result<bool>;
    /// Records a schema execution's progress and recomputes the execution's counts.
    async fn record_bulk_schema_progress(
        &self,
        execution_id: Uuid,
        progress: &BulkSchemaProgress,
    ) -> Result<()>;
    /// Appends log lines after the existing ones.
    async fn append_bulk_execution_logs(&self, execution_id: Uuid, lines: &[String]) -> Result<()>;
    /// Log lines in order, starting at `from_seq` (0-based).
    async fn bulk_execution_logs(
        &self,
        execution_id: Uuid,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<String>>;
    /// Number of log lines.
    async fn count_bulk_execution_logs(&self, execution_id: Uuid) -> Result<i64>;
}

const SYNC_COLUMNS: &str = "id, organization_id, name, source_connection_id, \
                            destination_connection_id, mode, active, document, created_at, \
                            created_by, updated_at, updated_by";

const SCHEMA_COLUMNS: &str = "schema_id, enabled, user_output_name, partition_key, \
                              tracking_field, data_cutoff_timestamp, disable_data_cutoff, fields, \
                              filters";

const SCHEDULE_COLUMNS: &str = "id, sync_id, is_default, frequency, minute, hour, day_of_week, \
                                day_of_month, month, selective_mode, sync_mode, schemas, \
                                created_at, created_by, updated_at, updated_by";

const EXECUTION_COLUMNS: &str = "id, sync_id, status, status_message, execution_type, \
                                 fetch_mode, output_disposition, is_resync, is_partial, is_test, \
                                 record_count, error_count, warning_count, created_at, \
                                 started_at, completed_at, updated_at";

const SCHEMA_EXECUTION_COLUMNS: &str = "schema_id, output_name, status, status_message, \
                                        record_count, delete_count, error_count, \
                                        warning_count, created_at, started_at, completed_at, \
                                        updated_at";

trait BulkRow {
    fn to_sync(&self) -> Result<BulkSync>;
    fn to_schema(&self) -> Result<BulkSchema>;
    fn to_schedule(&self) -> Result<BulkSchedule>;
    fn to_execution(&self) -> Result<BulkExecution>;
    fn to_schema_execution(&self) -> Result<BulkSchemaExecution>;
}

fn corrupt(error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

macro_rules! impl_bulk_row {
    ($row:ty) => {
        impl BulkRow for $row {
            fn to_sync(&self) -> Result<BulkSync> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let document: String = self.try_get("document")?;
                Ok(BulkSync {
                    id: uuid("id")?,
                    organization_id: uuid("organization_id")?,
                    name: self.try_get("name")?,
                    source_connection_id: uuid("source_connection_id")?,
                    destination_connection_id: uuid("destination_connection_id")?,
                    mode: self.try_get("mode")?,
                    active: self.try_get("active")?,
                    document: serde_json::from_str(&document).map_err(|e| corrupt(&e))?,
                    created_at: from_millis(self.try_get("created_at")?),
                    created_by: self.try_get("created_by")?,
                    updated_at: from_millis(self.try_get("updated_at")?),
                    updated_by: self.try_get("updated_by")?,
                })
            }

            fn to_schema(&self) -> Result<BulkSchema> {
                let fields: String = self.try_get("fields")?;
                let filters: String = self.try_get("filters")?;
                let cutoff: Option<i64> = self.try_get("data_cutoff_timestamp")?;
                Ok(BulkSchema {
                    schema_id: self.try_get("schema_id")?,
                    enabled: self.try_get("enabled")?,
                    user_output_name: self.try_get("user_output_name")?,
                    partition_key: self.try_get("partition_key")?,
                    tracking_field: self.try_get("tracking_field")?,
                    data_cutoff_timestamp: cutoff.map(from_millis),
                    disable_data_cutoff: self.try_get("disable_data_cutoff")?,
                    fields: serde_json::from_str(&fields).map_err(|e| corrupt(&e))?,
                    filters: serde_json::from_str(&filters).map_err(|e| corrupt(&e))?,
                })
            }

            fn to_schedule(&self) -> Result<BulkSchedule> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let schemas: String = self.try_get("schemas")?;
                Ok(BulkSchedule {
                    id: uuid("id")?,
                    sync_id: uuid("sync_id")?,
                    is_default: self.try_get("is_default")?,
                    frequency: self.try_get("frequency")?,
                    minute: self.try_get("minute")?,
                    hour: self.try_get("hour")?,
                    day_of_week: self.try_get("day_of_week")?,
                    day_of_month: self.try_get("day_of_month")?,
                    month: self.try_get("month")?,
                    selective_mode: self.try_get("selective_mode")?,
                    sync_mode: self.try_get("sync_mode")?,
                    schemas: serde_json::from_str(&schemas).map_err(|e| corrupt(&e))?,
                    created_at: from_millis(self.try_get("created_at")?),
                    created_by: self.try_get("created_by")?,
                    updated_at: from_millis(self.try_get("updated_at")?),
                    updated_by: self.try_get("updated_by")?,
                })
            }

            fn to_execution(&self) -> Result<BulkExecution> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let started: Option<i64> = self.try_get("started_at")?;
                let completed: Option<i64> = self.try_get("completed_at")?;
                Ok(BulkExecution {
                    id: uuid("id")?,
                    sync_id: uuid("sync_id")?,
                    status: self.try_get("status")?,
                    status_message: self.try_get("status_message")?,
                    execution_type: self.try_get("execution_type")?,
                    fetch_mode: self.try_get("fetch_mode")?,
                    output_disposition: self.try_get("output_disposition")?,
                    is_resync: self.try_get("is_resync")?,
                    is_partial: self.try_get("is_partial")?,
                    is_test: self.try_get("is_test")?,
                    record_count: self.try_get("record_count")?,
                    error_count: self.try_get("error_count")?,
                    warning_count: self.try_get("warning_count")?,
                    created_at: from_millis(self.try_get("created_at")?),
                    started_at: started.map(from_millis),
                    completed_at: completed.map(from_millis),
                    updated_at: from_millis(self.try_get("updated_at")?),
                    schemas: Vec::new(),
                })
            }

            fn to_schema_execution(&self) -> Result<BulkSchemaExecution> {
                let started: Option<i64> = self.try_get("started_at")?;
                let completed: Option<i64> = self.try_get("completed_at")?;
                Ok(BulkSchemaExecution {
                    schema_id: self.try_get("schema_id")?,
                    output_name: self.try_get("output_name")?,
                    status: self.try_get("status")?,
                    status_message: self.try_get("status_message")?,
                    record_count: self.try_get("record_count")?,
                    delete_count: self.try_get("delete_count")?,
                    error_count: self.try_get("error_count")?,
                    warning_count: self.try_get("warning_count")?,
                    created_at: from_millis(self.try_get("created_at")?),
                    started_at: started.map(from_millis),
                    completed_at: completed.map(from_millis),
                    updated_at: from_millis(self.try_get("updated_at")?),
                })
            }
        }
    };
}
impl_bulk_row!(sqlx::sqlite::SqliteRow);
impl_bulk_row!(sqlx::postgres::PgRow);

fn not_found() -> StoreError {
    StoreError::NotFound {
        entity: "bulk sync",
    }
}

fn execution_not_found() -> StoreError {
    StoreError::NotFound {
        entity: "bulk sync execution",
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn now() -> i64 {
    ferry_core::time::now_millis().timestamp_millis()
}

/// The connection ids a sync depends on (one row each, even when source = destination).
fn dependency_ids(write: &BulkSyncWrite) -> Vec<String> {
    let mut ids = vec![write.source_connection_id.to_string()];
    let destination = write.destination_connection_id.to_string();
    if !ids.contains(&destination) {
        ids.push(destination);
    }
    ids
}

/// The status unfinished schema executions take when their execution ends in `to`.
fn settled_schema_status(to: &str) -> &str {
    match to {
        "completed" | "errors" => "canceled",
        other => other,
    }
}

macro_rules! impl_bulk_syncs {
    ($store:ty) => {
        impl $store {
            /// Inserts an execution (status `created`) and its schema executions, in order,
            /// in the transaction; [`StoreError::AlreadyExists`] (entity `running
            /// execution`) when the sync has an unfinished one. Shared with the job queue,
            /// which writes an execution and its job together.
            pub(crate) async fn insert_bulk_execution(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                sync_id: Uuid,
                new: &NewBulkExecution,
            ) -> Result<Uuid> {
                let id = Uuid::new_v4();
                let now = now();
                sqlx::query(&format!(
                    "INSERT INTO bulk_sync_executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, \
                     'created', '', $3, $4, $5, $6, $7, $8, 0, 0, 0, $9, NULL, NULL, $9)"
                ))
                .bind(id.to_string())
                .bind(sync_id.to_string())
                .bind(&new.execution_type)
                .bind(&new.fetch_mode)
                .bind(&new.output_disposition)
                .bind(new.is_resync)
                .bind(new.is_partial)
                .bind(new.is_test)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(map_unique("running execution"))?;
                for (position, (schema_id, output_name)) in new.schemas.iter().enumerate() {
                    sqlx::query(&format!(
                        "INSERT INTO bulk_sync_schema_executions (execution_id, position, \
                         {SCHEMA_EXECUTION_COLUMNS}) VALUES ($1, $2, $3, $4, 'created', '', \
                         0, 0, 0, 0, $5, NULL, NULL, $5)"
                    ))
                    .bind(id.to_string())
                    .bind(position as i64)
                    .bind(schema_id)
                    .bind(output_name)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(id)
            }

            /// Checks that both connections belong to the organization.
            async fn bulk_dependencies(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                organization_id: Uuid,
                write: &BulkSyncWrite,
            ) -> Result<Vec<String>> {
                let ids = dependency_ids(write);
                for id in &ids {
                    let found = sqlx::query(
                        "SELECT id FROM connections WHERE organization_id = $1 AND id = $2",
                    )
                    .bind(organization_id.to_string())
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if found.is_none() {
                        return Err(StoreError::NotFound {
                            entity: "connection",
                        });
                    }
                }
                Ok(ids)
            }

            async fn upsert_schema(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                sync_id: Uuid,
                schema: &BulkSchema,
            ) -> Result<()> {
                sqlx::query(&format!(
                    "INSERT INTO bulk_sync_schemas (sync_id, {SCHEMA_COLUMNS}, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (sync_id, schema_id) DO UPDATE SET enabled = excluded.enabled, \
                     user_output_name = excluded.user_output_name, \
                     partition_key = excluded.partition_key, \
                     tracking_field = excluded.tracking_field, \
                     data_cutoff_timestamp = excluded.data_cutoff_timestamp, \
                     disable_data_cutoff = excluded.disable_data_cutoff, \
                     fields = excluded.fields, filters = excluded.filters, \
                     updated_at = excluded.updated_at"
                ))
                .bind(sync_id.to_string())
                .bind(&schema.schema_id)
                .bind(schema.enabled)
                .bind(&schema.user_output_name)
                .bind(&schema.partition_key)
                .bind(&schema.tracking_field)
                .bind(schema.data_cutoff_timestamp.map(|t| t.timestamp_millis()))
                .bind(schema.disable_data_cutoff)
                .bind(json_text(&schema.fields)?)
                .bind(json_text(&schema.filters)?)
                .bind(now())
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Inserts a schedule or replaces the one with `write.id` (of this sync only).
            async fn upsert_schedule(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                sync_id: Uuid,
                write: &BulkScheduleWrite,
            ) -> Result<Uuid> {
                let id = write.id.unwrap_or_else(Uuid::new_v4);
                let now = now();
                let result = sqlx::query(&format!(
                    "INSERT INTO bulk_sync_schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, \
                     $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13, $14) \
                     ON CONFLICT (id) DO UPDATE SET is_default = excluded.is_default, \
                     frequency = excluded.frequency, minute = excluded.minute, \
                     hour = excluded.hour, day_of_week = excluded.day_of_week, \
                     day_of_month = excluded.day_of_month, month = excluded.month, \
                     selective_mode = excluded.selective_mode, sync_mode = excluded.sync_mode, \
                     schemas = excluded.schemas, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by \
                     WHERE bulk_sync_schedules.sync_id = excluded.sync_id"
                ))
                .bind(id.to_string())
                .bind(sync_id.to_string())
                .bind(write.is_default)
                .bind(&write.frequency)
                .bind(&write.minute)
                .bind(&write.hour)
                .bind(&write.day_of_week)
                .bind(&write.day_of_month)
                .bind(&write.month)
                .bind(&write.selective_mode)
                .bind(&write.sync_mode)
                .bind(json_text(&write.schemas)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut **tx)
                .await
                .map_err(map_unique("default schedule"))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound {
                        entity: "bulk sync schedule",
                    });
                }
                Ok(id)
            }

            async fn schema_executions(
                &self,
                execution: &mut BulkExecution,
            ) -> Result<()> {
                let rows = sqlx::query(&format!(
                    "SELECT {SCHEMA_EXECUTION_COLUMNS} FROM bulk_sync_schema_executions \
                     WHERE execution_id = $1 ORDER BY position"
                ))
                .bind(execution.id.to_string())
                .fetch_all(&self.pool)
                .await?;
                execution.schemas = rows
                    .iter()
                    .map(BulkRow::to_schema_execution)
                    .collect::<Result<_>>()?;
                Ok(())
            }

            async fn executions_with_schemas(
                &self,
                rows: Vec<<<$store as crate::syncs::StoreDb>::Db as sqlx::Database>::Row>,
            ) -> Result<Vec<BulkExecution>> {
                let mut executions = Vec::with_capacity(rows.len());
                for row in &rows {
                    let mut execution = row.to_execution()?;
                    self.schema_executions(&mut execution).await?;
                    executions.push(execution);
                }
                Ok(executions)
            }
        }

        #[async_trait]
        impl BulkSyncStore for $store {
            async fn create_bulk_sync(
                &self,
                organization_id: Uuid,
                write: BulkSyncWrite,
                schemas: &[BulkSchema],
                schedules: &[BulkScheduleWrite],
            ) -> Result<BulkSync> {
                let id = Uuid::new_v4();
                let now = now();
                let mut tx = self.begin_write().await?;
                let connections =
                    match Self::bulk_dependencies(&mut tx, organization_id, &write).await {
                        Ok(connections) => connections,
                        Err(error) => {
                            tx.rollback().await?;
                            return Err(error);
                        }
                    };
                sqlx::query(&format!(
                    "INSERT INTO bulk_syncs ({SYNC_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, \
                     $7, $8, $9, $10, $9, $10)"
                ))
                .bind(id.to_string())
                .bind(organization_id.to_string())
                .bind(&write.name)
                .bind(write.source_connection_id.to_string())
                .bind(write.destination_connection_id.to_string())
                .bind(&write.mode)
                .bind(write.active)
                .bind(json_text(&write.document)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, &write.name, &connections).await?;
                for schema in schemas {
                    Self::upsert_schema(&mut tx, id, schema).await?;
                }
                for schedule in schedules {
                    if let Err(error) = Self::upsert_schedule(&mut tx, id, schedule).await {
                        tx.rollback().await?;
                        return Err(error);
                    }
                }
                tx.commit().await?;
                self.bulk_sync(organization_id, id).await
            }

            async fn bulk_sync(&self, organization_id: Uuid, id: Uuid) -> Result<BulkSync> {
                let row = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM bulk_syncs WHERE organization_id = $1 AND id = $2"
                ))
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map(BulkRow::to_sync)
                    .transpose()?
                    .ok_or_else(not_found)
            }

            async fn list_bulk_syncs(
                &self,
                organization_id: Uuid,
                active: Option<bool>,
            ) -> Result<Vec<BulkSync>> {
                let rows = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM bulk_syncs WHERE organization_id = $1 \
                     AND ($2 IS NULL OR active = $2) ORDER BY updated_at DESC, id"
                ))
                .bind(organization_id.to_string())
                .bind(active)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(BulkRow::to_sync).collect()
            }

            async fn list_active_bulk_syncs(&self) -> Result<Vec<BulkSync>> {
                let rows = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM bulk_syncs WHERE active = $1 ORDER BY id"
                ))
                .bind(true)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(BulkRow::to_sync).collect()
            }

            async fn update_bulk_sync(
                &self,
                organization_id: Uuid,
                id: Uuid,
                write: BulkSyncWrite,
                schedules: &[BulkScheduleWrite],
            ) -> Result<BulkSync> {
                let mut tx = self.begin_write().await?;
                let connections =
                    match Self::bulk_dependencies(&mut tx, organization_id, &write).await {
                        Ok(connections) => connections,
                        Err(error) => {
                            tx.rollback().await?;
                            return Err(error);
                        }
                    };
                let result = sqlx::query(
                    "UPDATE bulk_syncs SET name = $3, source_connection_id = $4, \
                     destination_connection_id = $5, mode = $6, active = $7, document = $8, \
                     updated_at = $9, updated_by = $10 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(&write.name)
                .bind(write.source_connection_id.to_string())
                .bind(write.destination_connection_id.to_string())
                .bind(&write.mode)
                .bind(write.active)
                .bind(json_text(&write.document)?)
                .bind(now())
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                if result.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, &write.name, &connections).await?;
                let kept: Vec<String> = schedules
                    .iter()
                    .filter_map(|s| s.id.map(|id| id.to_string()))
                    .collect();
                let sql = if kept.is_empty() {
                    "DELETE FROM bulk_sync_schedules WHERE sync_id = $1".to_string()
                } else {
                    format!(
                        "DELETE FROM bulk_sync_schedules WHERE sync_id = $1 AND id NOT IN ({})",
                        placeholders(2, kept.len())
                    )
                };
                let mut delete = sqlx::query(&sql).bind(id.to_string());
                for kept_id in &kept {
                    delete = delete.bind(kept_id);
                }
                delete.execute(&mut *tx).await?;
                for schedule in schedules {
                    if let Err(error) = Self::upsert_schedule(&mut tx, id, schedule).await {
                        tx.rollback().await?;
                        return Err(error);
                    }
                }
                tx.commit().await?;
                self.bulk_sync(organization_id, id).await
            }

            async fn set_bulk_sync_active(
                &self,
                organization_id: Uuid,
                id: Uuid,
                active: bool,
            ) -> Result<()> {
                let result = sqlx::query(
                    "UPDATE bulk_syncs SET active = $3, updated_at = $4 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(active)
                .bind(now())
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err(not_found());
                }
                Ok(())
            }

            async fn delete_bulk_sync(&self, organization_id: Uuid, id: Uuid) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query(
                    "SELECT id FROM bulk_syncs WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                for statement in [
                    "DELETE FROM bulk_sync_execution_logs WHERE execution_id IN \
                     (SELECT id FROM bulk_sync_executions WHERE sync_id = $1)",
                    "DELETE FROM bulk_sync_schema_executions WHERE execution_id IN \
                     (SELECT id FROM bulk_sync_executions WHERE sync_id = $1)",
                    "DELETE FROM bulk_sync_executions WHERE sync_id = $1",
                    "DELETE FROM bulk_sync_schedules WHERE sync_id = $1",
                    "DELETE FROM bulk_sync_schemas WHERE sync_id = $1",
                    "DELETE FROM bulk_syncs WHERE id = $1",
                ] {
                    sqlx::query(statement)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, "", &[]).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn bulk_schemas(&self, sync_id: Uuid) -> Result<Vec<BulkSchema>> {
                let rows = sqlx::query(&format!(
                    "SELECT {SCHEMA_COLUMNS} FROM bulk_sync_schemas WHERE sync_id = $1 \
                     ORDER BY schema_id"
                ))
                .bind(sync_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(BulkRow::to_schema).collect()
            }

            async fn put_bulk_schemas(&self, sync_id: Uuid, schemas: &[BulkSchema]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for schema in schemas {
                    Self::upsert_schema(&mut tx, sync_id, schema).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn bulk_schedules(&self, sync_id: Uuid) -> Result<Vec<BulkSchedule>> {
                let rows = sqlx::query(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM bulk_sync_schedules WHERE sync_id = $1 \
                     ORDER BY is_default DESC, created_at, id"
                ))
                .bind(sync_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(BulkRow::to_schedule).collect()
            }

            async fn put_bulk_schedule(
                &self,
                sync_id: Uuid,
                write: &BulkScheduleWrite,
            ) -> Result<BulkSchedule> {
                let mut tx = self.begin_write().await?;
                let id = match Self::upsert_schedule(&mut tx, sync_id, write).await {
                    Ok(id) => id,
                    Err(error) => {
                        tx.rollback().await?;
                        return Err(error);
                    }
                };
                tx.commit().await?;
                let row = sqlx::query(&format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM bulk_sync_schedules WHERE id = $1"
                ))
                .bind(id.to_string())
                .fetch_one(&self.pool)
                .await?;
                row.to_schedule()
            }

            async fn delete_bulk_schedule(&self, sync_id: Uuid, id: Uuid) -> Result<()> {
                let result =
                    sqlx::query("DELETE FROM bulk_sync_schedules WHERE sync_id = $1 AND id = $2")
                        .bind(sync_id.to_string())
                        .bind(id.to_string())
                        .execute(&self.pool)
                        .await?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::NotFound {
                        entity: "bulk sync schedule",
                    });
                }
                Ok(())
            }

            async fn create_bulk_execution(
                &self,
                sync_id: Uuid,
                new: &NewBulkExecution,
            ) -> Result<BulkExecution> {
                let mut tx = self.begin_write().await?;
                let id = match Self::insert_bulk_execution(&mut tx, sync_id, new).await {
                    Ok(id) => id,
                    Err(error) => {
                        tx.rollback().await?;
                        return Err(error);
                    }
                };
                tx.commit().await?;
                self.bulk_execution(sync_id, id).await
            }

            async fn bulk_execution(&self, sync_id: Uuid, id: Uuid) -> Result<BulkExecution> {
                let row = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM bulk_sync_executions \
                     WHERE sync_id = $1 AND id = $2"
                ))
                .bind(sync_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else {
                    return Err(execution_not_found());
                };
                let mut execution = row.to_execution()?;
                self.schema_executions(&mut execution).await?;
                Ok(execution)
            }

            async fn active_bulk_execution(
                &self,
                sync_id: Uuid,
            ) -> Result<Option<BulkExecution>> {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM bulk_sync_executions WHERE sync_id = $1 \
                     AND status IN ({})",
                    placeholders(2, ACTIVE_STATUSES.len())
                );
                let mut query = sqlx::query(&sql).bind(sync_id.to_string());
                for status in ACTIVE_STATUSES {
                    query = query.bind(status);
                }
                let rows = query.fetch_all(&self.pool).await?;
                Ok(self.executions_with_schemas(rows).await?.into_iter().next())
            }

            async fn last_finished_bulk_execution(
                &self,
                sync_id: Uuid,
            ) -> Result<Option<BulkExecution>> {
                let rows = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM bulk_sync_executions WHERE sync_id = $1 \
                     AND status IN ('completed', 'failed', 'canceled', 'interrupted', 'errors') \
                     ORDER BY created_at DESC, id DESC LIMIT 1"
                ))
                .bind(sync_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                Ok(self.executions_with_schemas(rows).await?.into_iter().next())
            }

            async fn list_bulk_executions(
                &self,
                sync_id: Uuid,
                page: BulkExecutionPage,
            ) -> Result<Vec<BulkExecution>> {
                let order = if page.ascending { "ASC" } else { "DESC" };
                let key = if page.only_terminal {
                    "updated_at"
                } else {
                    "created_at"
                };
                let rows = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM bulk_sync_executions WHERE sync_id = $1 \
                     AND ($2 = FALSE OR status IN \
                     ('completed', 'failed', 'canceled', 'interrupted', 'errors')) \
                     ORDER BY {key} {order}, id {order} LIMIT $3 OFFSET $4"
                ))
                .bind(sync_id.to_string())
                .bind(page.only_terminal)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                self.executions_with_schemas(rows).await
            }

            async fn transition_bulk_execution(
                &self,
                id: Uuid,
                from: &[&str],
                to: &str,
                message: Option<&str>,
            ) -> Result<bool> {
                if from.is_empty() {
                    return Ok(false);
                }
                let now = now();
                let started = if to == "running" { Some(now) } else { None };
                let completed = if is_terminal(to) { Some(now) } else { None };
                let sql = format!(
                    "UPDATE bulk_sync_executions SET status = $1, updated_at = $2, \
                     started_at = COALESCE(started_at, $3), \
                     completed_at = COALESCE(completed_at, $4), \
                     status_message = COALESCE($5, status_message) \
                     WHERE id = $6 AND status IN ({})",
                    placeholders(7, from.len())
                );
                let mut tx = self.begin_write().await?;
                let mut query = sqlx::query(&sql)
                    .bind(to)
                    .bind(now)
                    .bind(started)
                    .bind(completed)
                    .bind(message)
                    .bind(id.to_string());
                for status in from {
                    query = query.bind(*status);
                }
                let moved = query.execute(&mut *tx).await?.rows_affected() == 1;
                if moved && is_terminal(to) {
                    sqlx::query(
                        "UPDATE bulk_sync_schema_executions SET status = $1, updated_at = $2, \
                         completed_at = COALESCE(completed_at, $2) \
                         WHERE execution_id = $3 AND status IN \
                         ('created', 'scheduled', 'running', 'exporting', 'processing')",
                    )
                    .bind(settled_schema_status(to))
                    .bind(now)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(moved)
            }

            async fn record_bulk_schema_progress(
                &self,
                execution_id: Uuid,
                progress: &BulkSchemaProgress,
            ) -> Result<()> {
                let now = now();
                let mut tx = self.begin_write().await?;
                let result = sqlx::query(
                    "UPDATE bulk_sync_schema_executions SET status = $3, status_message = $4, \
                     record_count = $5, delete_count = $6, error_count = $7, \
                     warning_count = $8, started_at = COALESCE($9, started_at), \
                     completed_at = COALESCE($10, completed_at), updated_at = $11 \
                     WHERE execution_id = $1 AND schema_id = $2",
                )
                .bind(execution_id.to_string())
                .bind(&progress.schema_id)
                .bind(&progress.status)
                .bind(&progress.status_message)
                .bind(progress.record_count)
                .bind(progress.delete_count)
                .bind(progress.error_count)
                .bind(progress.warning_count)
                .bind(progress.started_at.map(|t| t.timestamp_millis()))
                .bind(progress.completed_at.map(|t| t.timestamp_millis()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if result.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::NotFound {
                        entity: "bulk sync schema execution",
                    });
                }
                let totals = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(record_count), 0) AS BIGINT) AS records, \
                     CAST(COALESCE(SUM(error_count), 0) AS BIGINT) AS errors, \
                     CAST(COALESCE(SUM(warning_count), 0) AS BIGINT) AS warnings \
                     FROM bulk_sync_schema_executions WHERE execution_id = $1",
                )
                .bind(execution_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
                let records: i64 = totals.try_get("records")?;
                let errors: i64 = totals.try_get("errors")?;
                let warnings: i64 = totals.try_get("warnings")?;
                sqlx::query(
                    "UPDATE bulk_sync_executions SET record_count = $2, error_count = $3, \
                     warning_count = $4, updated_at = $5 WHERE id = $1",
                )
                .bind(execution_id.to_string())
                .bind(records)
                .bind(errors)
                .bind(warnings)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn append_bulk_execution_logs(
                &self,
                execution_id: Uuid,
                lines: &[String],
            ) -> Result<()> {
                if lines.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM bulk_sync_execution_logs WHERE execution_id = $1",
                )
                .bind(execution_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
                let first: i64 = row.try_get("n")?;
                for (offset, line) in lines.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO bulk_sync_execution_logs (execution_id, seq, line) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(execution_id.to_string())
                    .bind(first + offset as i64)
                    .bind(line)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn bulk_execution_logs(
                &self,
                execution_id: Uuid,
                from_seq: i64,
                limit: i64,
            ) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT line FROM bulk_sync_execution_logs \
                     WHERE execution_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                )
                .bind(execution_id.to_string())
                .bind(from_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| row.try_get("line").map_err(StoreError::from))
                    .collect()
            }

            async fn count_bulk_execution_logs(&self, execution_id: Uuid) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM bulk_sync_execution_logs WHERE execution_id = $1",
                )
                .bind(execution_id.to_string())
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("n")?)
            }
        }
    };
}

for_each_backend!(impl_bulk_syncs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses() {
        for status in ["completed", "failed", "canceled", "interrupted", "errors"] {
            assert!(is_terminal(status));
        }
        for status in ACTIVE_STATUSES {
            assert!(!is_terminal(status));
        }
    }

    #[test]
    fn unfinished_schemas_of_a_completed_execution_are_canceled() {
        assert_eq!(settled_schema_status("completed"), "canceled");
        assert_eq!(settled_schema_status("failed"), "failed");
        assert_eq!(settled_schema_status("interrupted"), "interrupted");
    }

    #[test]
    fn dependencies_are_listed_once() {
        let connection = Uuid::new_v4();
        let write = BulkSyncWrite {
            name: "s".into(),
            source_connection_id: connection,
            destination_connection_id: connection,
            mode: "replicate".into(),
            active: false,
            document: Value::Null,
            actor: None,
        };
        assert_eq!(dependency_ids(&write), vec![connection.to_string()]);
    }
}
