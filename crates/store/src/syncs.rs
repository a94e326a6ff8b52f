//! Model syncs (reverse ETL) and their executions.
//!
//! A sync row keeps the API's `SyncRequest` document as JSON (`document`) plus the columns
//! lists filter on (name, mode, target connection and object, model ids, active). The sync
//! is registered as a dependent (`kind = "sync"`) of its target connection and of every
//! connection its models read from, in the same transaction that writes it, so deleting a
//! connection a sync uses answers "connection in use".
//!
//! Executions carry their status, type, counts and error messages. At most one unfinished
//! execution (`created`, `queued`, `running`, `canceling`) exists per sync: a unique partial
//! index enforces it, so two concurrent starts cannot both succeed
//! ([`StoreError::AlreadyExists`] with entity `running execution`). Status changes are
//! compare-and-set ([`SyncStore::transition_execution`]).
//!
//! Record logs (`records`, `errors`, `warnings`, `inserts`, `updates`, `deletes`) are
//! numbered lines per execution and log (0, 1, 2, … without gaps). They are stored in
//! chunks: one `sync_execution_records` row holds consecutive lines joined by `\n` and is
//! keyed by the number of its first line, so a million-record run writes a few thousand
//! rows rather than millions (rows written before chunking hold one line each and read the
//! same way). A chunk of 512 bytes or more is stored LZ4-compressed in `packed`
//! (migration 12), with `line` left empty. When an execution ends, the logs of the sync's
//! executions older than the [`RECORD_LOG_EXECUTIONS_KEPT`] most recent are deleted; the
//! execution rows stay.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// The dependent kind syncs register under.
pub const DEPENDENT_KIND: &str = "sync";

/// Statuses of an unfinished execution (at most one per sync).
pub const ACTIVE_STATUSES: [&str; 4] = ["created", "queued", "running", "canceling"];

/// A stored sync.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSync {
    /// Public id.
    pub id: Uuid,
    /// Owning organization.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// `create`, `update`, `updateOrCreate`, `remove`, ...
    pub mode: String,
    /// The destination connection.
    pub target_connection_id: Uuid,
    /// The target object (`Contact`, `multi:leadOrContact`, ...).
    pub target_object: Option<String>,
    /// Models referenced by the mappings.
    pub model_ids: Vec<Uuid>,
    /// Enabled and scheduled.
    pub active: bool,
    /// The full `SyncRequest` document.
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

/// The writable part of a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncWrite {
    /// Display name.
    pub name: String,
    /// Sync mode.
    pub mode: String,
    /// Destination connection (must belong to the organization).
    pub target_connection_id: Uuid,
    /// Target object.
    pub target_object: Option<String>,
    /// Models referenced by the mappings (must belong to the organization).
    pub model_ids: Vec<Uuid>,
    /// Enabled.
    pub active: bool,
    /// The `SyncRequest` document.
    pub document: Value,
    /// Who writes.
    pub actor: Option<String>,
}

/// Filters of [`SyncStore::list_syncs`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncFilter {
    /// Only active (or inactive) syncs.
    pub active: Option<bool>,
    /// Only this mode.
    pub mode: Option<String>,
    /// Only syncs writing to this connection.
    pub target_connection_id: Option<Uuid>,
}

/// Execution counts (Polytomic's `ExecutionCounts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionCounts {
    /// Records the execution had to act on.
    pub total: i64,
    /// Records created.
    pub insert: i64,
    /// Records updated.
    pub update: i64,
    /// Records written by upsert (also counted as insert or update).
    pub upserts: i64,
    /// Records deleted.
    pub delete: i64,
    /// Records that failed.
    pub error: i64,
    /// Warnings raised.
    pub warnings: i64,
}

/// A stored execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Public id.
    pub id: Uuid,
    /// The sync.
    pub sync_id: Uuid,
    /// Status (`created`, `running`, `completed`, ...).
    pub status: String,
    /// Type (`manual`, `resync`, `test`, `identities`).
    pub execution_type: String,
    /// Counts so far.
    pub counts: ExecutionCounts,
    /// Execution-level error messages.
    pub errors: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Options of [`SyncStore::list_executions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionPage {
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Only `completed` executions.
    pub only_completed: bool,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// One line of an execution's record log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    /// `records`, `errors`, `warnings`, `inserts`, `updates` or `deletes`.
    pub log_type: String,
    /// Position within the log (0-based, unique per log type, without gaps).
    pub seq: i64,
    /// The line (JSON text, one line: a line break inside it is stored as a space, as the
    /// logs are served as JSON Lines).
    pub line: String,
}

/// How many executions of a sync keep their record logs: when an execution ends, the logs
/// of older executions beyond the most recent `RECORD_LOG_EXECUTIONS_KEPT` (the one that
/// ended included) are deleted. The execution rows, their counts and errors stay.
pub const RECORD_LOG_EXECUTIONS_KEPT: i64 = 10;

/// Sync and execution persistence. Sync calls are scoped to an organization; execution
/// calls take a sync id the caller has already resolved within its organization.
#[async_trait]
pub trait SyncStore {
    /// Inserts a sync and registers it as a dependent of its connections.
    async fn create_sync(&self, organization_id: Uuid, write: SyncWrite) -> Result<ModelSync>;
    /// Fetches one sync.
    async fn sync(&self, organization_id: Uuid, id: Uuid) -> Result<ModelSync>;
    /// Syncs of the organization, most recently updated first (id breaks ties).
    async fn list_syncs(
        &self,
        organization_id: Uuid,
        filter: &SyncFilter,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ModelSync>>;
    /// Every active sync of every organization (the scheduler's view).
    async fn list_active_syncs(&self) -> Result<Vec<ModelSync>>;
    /// Replaces a sync and moves its dependent links.
    async fn update_sync(
        &self,
        organization_id: Uuid,
        id: Uuid,
        write: SyncWrite,
    ) -> Result<ModelSync>;
    /// Sets `active`.
    async fn set_sync_active(&self, organization_id: Uuid, id: Uuid, active: bool) -> Result<()>;
    /// Deletes a sync, its executions, logs, ledger and dependent links.
    async fn delete_sync(&self, organization_id: Uuid, id: Uuid) -> Result<()>;

    /// Creates an execution in status `created`; [`StoreError::AlreadyExists`] when the sync
    /// has an unfinished one.
    async fn create_execution(&self, sync_id: Uuid, execution_type: &str) -> Result<Execution>;
    /// Fetches an execution of a sync.
    async fn execution(&self, sync_id: Uuid, id: Uuid) -> Result<Execution>;
    /// The unfinished execution of a sync, if any.
    async fn active_execution(&self, sync_id: Uuid) -> Result<Option<Execution>>;
    /// The most recent terminal execution of a sync.
    async fn last_finished_execution(&self, sync_id: Uuid) -> Result<Option<Execution>>;
    /// Executions of a sync by creation time (newest first unless `ascending`).
    async fn list_executions(&self, sync_id: Uuid, page: ExecutionPage) -> Result<Vec<Execution>>;
    /// Moves an execution to `to` if its status is one of `from`; returns whether it moved.
    /// `running` sets `started_at`; terminal statuses set `completed_at` and prune the
    /// sync's record logs to the [`RECORD_LOG_EXECUTIONS_KEPT`] most recent executions.
    async fn transition_execution(&self, id: Uuid, from: &[&str], to: &str) -> Result<bool>;
    /// Stores the counts and execution-level errors so far.
    async fn record_execution_progress(
        &self,
        id: Uuid,
        counts: ExecutionCounts,
        errors: &[String],
    ) -> Result<()>;
    /// Appends record-log lines (each log's lines numbered 0, 1, 2, … without gaps across
    /// calls), in one transaction.
    async fn append_execution_records(&self, id: Uuid, lines: &[RecordLine]) -> Result<()>;
    /// Deletes the record logs of the sync's executions except the `keep` most recent ones
    /// (by creation). [`SyncStore::transition_execution`] calls it with
    /// [`RECORD_LOG_EXECUTIONS_KEPT`] when an execution ends.
    async fn prune_record_logs(&self, sync_id: Uuid, keep: i64) -> Result<()>;
    /// Lines of one log, in order, starting at `from_seq`.
    async fn execution_records(
        &self,
        id: Uuid,
        log_type: &str,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<RecordLine>>;
    /// Number of lines of one log.
    async fn count_execution_records(&self, id: Uuid, log_type: &str) -> Result<i64>;
}

/// Whether `status` is terminal.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "canceled" | "interrupted")
}

const SYNC_COLUMNS: &str = "id, organization_id, name, mode, target_connection_id, target_object, \
                            model_ids, active, document, created_at, created_by, updated_at, \
                            updated_by";

const EXECUTION_COLUMNS: &str = "id, sync_id, status, execution_type, total_count, insert_count, \
                                 update_count, upsert_count, delete_count, error_count, \
                                 warning_count, errors, created_at, started_at, completed_at, \
                                 updated_at";

trait SyncRow {
    fn to_sync(&self) -> Result<ModelSync>;
    fn to_execution(&self) -> Result<Execution>;
    /// A record-log chunk: the number of its first line and its lines joined by `\n`.
    fn to_chunk(&self) -> Result<(i64, String)>;
}

fn corrupt(error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

macro_rules! impl_sync_row {
    ($row:ty) => {
        impl SyncRow for $row {
            fn to_sync(&self) -> Result<ModelSync> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let document: String = self.try_get("document")?;
                let model_ids: String = self.try_get("model_ids")?;
                Ok(ModelSync {
                    id: uuid("id")?,
                    organization_id: uuid("organization_id")?,
                    name: self.try_get("name")?,
                    mode: self.try_get("mode")?,
                    target_connection_id: uuid("target_connection_id")?,
                    target_object: self.try_get("target_object")?,
                    model_ids: serde_json::from_str(&model_ids).map_err(|e| corrupt(&e))?,
                    active: self.try_get("active")?,
                    document: serde_json::from_str(&document).map_err(|e| corrupt(&e))?,
                    created_at: from_millis(self.try_get("created_at")?),
                    created_by: self.try_get("created_by")?,
                    updated_at: from_millis(self.try_get("updated_at")?),
                    updated_by: self.try_get("updated_by")?,
                })
            }

            fn to_execution(&self) -> Result<Execution> {
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let errors: String = self.try_get("errors")?;
                let started: Option<i64> = self.try_get("started_at")?;
                let completed: Option<i64> = self.try_get("completed_at")?;
                Ok(Execution {
                    id: uuid("id")?,
                    sync_id: uuid("sync_id")?,
                    status: self.try_get("status")?,
                    execution_type: self.try_get("execution_type")?,
                    counts: ExecutionCounts {
                        total: self.try_get("total_count")?,
                        insert: self.try_get("insert_count")?,
                        update: self.try_get("update_count")?,
                        upserts: self.try_get("upsert_count")?,
                        delete: self.try_get("delete_count")?,
                        error: self.try_get("error_count")?,
                        warnings: self.try_get("warning_count")?,
                    },
                    errors: serde_json::from_str(&errors).map_err(|e| corrupt(&e))?,
                    created_at: from_millis(self.try_get("created_at")?),
                    started_at: started.map(from_millis),
                    completed_at: completed.map(from_millis),
                    updated_at: from_millis(self.try_get("updated_at")?),
                })
            }

            fn to_chunk(&self) -> Result<(i64, String)> {
                let text = match self.try_get::<Option<&[u8]>, _>("packed")? {
                    Some(packed) => unpack(packed)?,
                    None => self.try_get("line")?,
                };
                Ok((self.try_get("seq")?, text))
            }
        }
    };
}
impl_sync_row!(sqlx::sqlite::SqliteRow);
impl_sync_row!(sqlx::postgres::PgRow);

fn not_found() -> StoreError {
    StoreError::NotFound { entity: "sync" }
}

fn execution_not_found() -> StoreError {
    StoreError::NotFound {
        entity: "execution",
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn now() -> i64 {
    ferry_core::time::now_millis().timestamp_millis()
}

/// Deletes the record logs of a sync's (`$1`) executions but the `$2` most recent.
const PRUNE_RECORD_LOGS: &str = "DELETE FROM sync_execution_records WHERE execution_id IN \
     (SELECT id FROM sync_executions WHERE sync_id = $1 AND id NOT IN \
     (SELECT id FROM sync_executions WHERE sync_id = $1 \
     ORDER BY created_at DESC, id DESC LIMIT $2))";

/// Most lines per stored record-log chunk.
const RECORD_CHUNK_LINES: usize = 1_000;

/// A chunk is closed once its text reaches this many bytes (reading one log file of
/// 10,000 lines touches at most a few of them).
const RECORD_CHUNK_BYTES: usize = 256 * 1024;

/// Record-log chunks written per statement (4 binds each).
const RECORD_WRITE_ROWS: usize = 20;

/// Chunks with less text than this are stored as text: compressing them saves little.
const PACK_MIN_BYTES: usize = 512;

/// The most text a packed chunk may say it holds. Chunks close at [`RECORD_CHUNK_BYTES`],
/// so only a chunk of one huge line comes near; a corrupt length must not allocate more.
const PACKED_TEXT_MAX: usize = 1 << 30;

/// The `packed` column of a chunk: its text as an LZ4 block preceded by the text's length
/// (4 bytes, little-endian), or `None` to keep short text as it is. JSON lines of one log
/// repeat their keys and most of their shape, so a chunk shrinks several times over, and
/// the store writes (and copies, and checkpoints) that much less.
fn pack(text: &str) -> Option<Vec<u8>> {
    (text.len() >= PACK_MIN_BYTES).then(|| lz4_flex::block::compress_prepend_size(text.as_bytes()))
}

/// The text of a `packed` column.
fn unpack(packed: &[u8]) -> Result<String> {
    let invalid = |what: &dyn std::fmt::Display| corrupt(&format!("packed record log: {what}"));
    let (length, _) =
        lz4_flex::block::uncompressed_size(packed).map_err(|error| invalid(&error))?;
    if length > PACKED_TEXT_MAX {
        return Err(invalid(&format!("claims {length} bytes")));
    }
    let bytes =
        lz4_flex::block::decompress_size_prepended(packed).map_err(|error| invalid(&error))?;
    String::from_utf8(bytes).map_err(|error| invalid(&error))
}

/// The log every record line is in.
const RECORDS: &str = "records";

/// Suffix of the log under which another log's lines that repeat a `records` line are kept,
/// each as the number of that `records` line (see [`stored_lines`]).
const REFERENCE_SUFFIX: &str = ">records";

/// The log holding `log_type`'s references to `records` lines.
fn reference_log(log_type: &str) -> String {
    format!("{log_type}{REFERENCE_SUFFIX}")
}

/// What a stored line holds: its text, or the number of the identical `records` line.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Record(i64),
}

/// A record-log chunk to store: log type (its reference log when `references`), number of
/// its first line, lines joined by `\n`.
#[derive(Debug, PartialEq, Eq)]
struct Chunk<'a> {
    log_type: &'a str,
    references: bool,
    first_seq: i64,
    text: String,
}

impl Chunk<'_> {
    /// The `log_type` column of the chunk's row.
    fn stored_type(&self) -> std::borrow::Cow<'_, str> {
        if self.references {
            reference_log(self.log_type).into()
        } else {
            self.log_type.into()
        }
    }
}

/// The lines as stored. The engine logs a written record twice, in its own log (`inserts`,
/// `errors`, …) and in `records`, one right after the other: such a line is stored once, in
/// `records`, and its own log keeps only the `records` line's number.
fn stored_lines(lines: &[RecordLine]) -> impl Iterator<Item = (&str, i64, Piece<'_>)> {
    lines.iter().enumerate().map(|(at, line)| {
        let twin = |other: Option<&RecordLine>| {
            other
                .filter(|other| other.log_type == RECORDS && other.line == line.line)
                .map(|other| other.seq)
        };
        let piece = if line.log_type == RECORDS {
            None
        } else {
            twin(lines.get(at + 1)).or_else(|| twin(at.checked_sub(1).and_then(|p| lines.get(p))))
        };
        let piece = piece.map_or(Piece::Text(&line.line), Piece::Record);
        (line.log_type.as_str(), line.seq, piece)
    })
}

/// Groups lines into chunks: consecutive lines of one log (`seq` following on) up to
/// [`RECORD_CHUNK_LINES`] lines or [`RECORD_CHUNK_BYTES`] bytes. A line break inside a line
/// becomes a space.
fn chunk_lines<'a>(lines: impl Iterator<Item = (&'a str, i64, Piece<'a>)>) -> Vec<Chunk<'a>> {
    use std::fmt::Write as _;
    // Open chunk per log: (index in `chunks`, its next seq, its line count).
    let mut open: crate::FastMap<(&str, bool), (usize, i64, usize)> = crate::FastMap::default();
    let mut chunks: Vec<Chunk<'a>> = Vec::new();
    for (log_type, seq, piece) in lines {
        let key = (log_type, matches!(piece, Piece::Record(_)));
        let continues = open.get(&key).copied().filter(|(at, next, count)| {
            *next == seq
                && *count < RECORD_CHUNK_LINES
                && chunks[*at].text.len() < RECORD_CHUNK_BYTES
        });
        let at = match continues {
            Some((at, _, count)) => {
                chunks[at].text.push('\n');
                open.insert(key, (at, seq + 1, count + 1));
                at
            }
            None => {
                // Sized for a full chunk of lines like this one, so it grows rarely.
                let line_bytes = match piece {
                    Piece::Text(text) => text.len(),
                    // A `records` line number: a few digits.
                    Piece::Record(_) => 8,
                };
                let capacity = (line_bytes + 1)
                    .saturating_mul(RECORD_CHUNK_LINES)
                    .min(RECORD_CHUNK_BYTES + line_bytes);
                chunks.push(Chunk {
                    log_type,
                    references: key.1,
                    first_seq: seq,
                    text: String::with_capacity(capacity),
                });
                open.insert(key, (chunks.len() - 1, seq + 1, 1));
                chunks.len() - 1
            }
        };
        let chunk = &mut chunks[at].text;
        match piece {
            Piece::Record(number) => {
                // Writing into a String cannot fail.
                let _ = write!(chunk, "{number}");
            }
            // Nearly every line has no line break: one memchr2 pass says so.
            Piece::Text(text) if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() => chunk
                .extend(
                    text.chars()
                        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
                ),
            Piece::Text(text) => chunk.push_str(text),
        }
    }
    chunks
}

/// `$first, $first+1, ...` for `count` placeholders.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! impl_syncs {
    ($store:ty) => {
        impl $store {
            /// Checks that the target connection and the models belong to the organization;
            /// returns the connection ids the sync depends on.
            async fn sync_dependencies(
                tx: &mut sqlx::Transaction<'static, <$store as StoreDb>::Db>,
                organization_id: Uuid,
                write: &SyncWrite,
            ) -> Result<Vec<String>> {
                let connection = sqlx::query(
                    "SELECT id FROM connections WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(write.target_connection_id.to_string())
                .fetch_optional(&mut **tx)
                .await?;
                if connection.is_none() {
                    return Err(StoreError::NotFound {
                        entity: "connection",
                    });
                }
                let mut connections = vec![write.target_connection_id.to_string()];
                for model_id in &write.model_ids {
                    let row = sqlx::query(
                        "SELECT connection_id FROM models WHERE organization_id = $1 AND id = $2",
                    )
                    .bind(organization_id.to_string())
                    .bind(model_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
                    let Some(row) = row else {
                        return Err(StoreError::NotFound { entity: "model" });
                    };
                    let connection_id: String = row.try_get("connection_id")?;
                    if !connections.contains(&connection_id) {
                        connections.push(connection_id);
                    }
                }
                Ok(connections)
            }
        }

        #[async_trait]
        impl SyncStore for $store {
            async fn create_sync(&self, organization_id: Uuid, write: SyncWrite) -> Result<ModelSync> {
                let id = Uuid::new_v4();
                let now = now();
                let mut tx = self.begin_write().await?;
                let connections =
                    match Self::sync_dependencies(&mut tx, organization_id, &write).await {
                        Ok(connections) => connections,
                        Err(error) => {
                            tx.rollback().await?;
                            return Err(error);
                        }
                    };
                sqlx::query(&format!(
                    "INSERT INTO syncs ({SYNC_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $10, $11)"
                ))
                .bind(id.to_string())
                .bind(organization_id.to_string())
                .bind(&write.name)
                .bind(&write.mode)
                .bind(write.target_connection_id.to_string())
                .bind(&write.target_object)
                .bind(json_text(&write.model_ids)?)
                .bind(write.active)
                .bind(json_text(&write.document)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, &write.name, &connections)
                    .await?;
                tx.commit().await?;
                self.sync(organization_id, id).await
            }

            async fn sync(&self, organization_id: Uuid, id: Uuid) -> Result<ModelSync> {
                let row = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM syncs WHERE organization_id = $1 AND id = $2"
                ))
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map(SyncRow::to_sync)
                    .transpose()?
                    .ok_or_else(not_found)
            }

            async fn list_syncs(
                &self,
                organization_id: Uuid,
                filter: &SyncFilter,
                offset: i64,
                limit: i64,
            ) -> Result<Vec<ModelSync>> {
                // Optional filters are written as `($n IS NULL OR column = $n)` so the
                // statement text is fixed.
                let rows = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM syncs WHERE organization_id = $1 \
                     AND ($2 IS NULL OR active = $2) \
                     AND ($3 IS NULL OR mode = $3) \
                     AND ($4 IS NULL OR target_connection_id = $4) \
                     ORDER BY updated_at DESC, id LIMIT $5 OFFSET $6"
                ))
                .bind(organization_id.to_string())
                .bind(filter.active)
                .bind(filter.mode.as_deref())
                .bind(filter.target_connection_id.map(|id| id.to_string()))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(SyncRow::to_sync).collect()
            }

            async fn list_active_syncs(&self) -> Result<Vec<ModelSync>> {
                let rows = sqlx::query(&format!(
                    "SELECT {SYNC_COLUMNS} FROM syncs WHERE active = $1 ORDER BY id"
                ))
                .bind(true)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(SyncRow::to_sync).collect()
            }

            async fn update_sync(
                &self,
                organization_id: Uuid,
                id: Uuid,
                write: SyncWrite,
            ) -> Result<ModelSync> {
                let now = now();
                let mut tx = self.begin_write().await?;
                let connections =
                    match Self::sync_dependencies(&mut tx, organization_id, &write).await {
                        Ok(connections) => connections,
                        Err(error) => {
                            tx.rollback().await?;
                            return Err(error);
                        }
                    };
                let result = sqlx::query(
                    "UPDATE syncs SET name = $3, mode = $4, target_connection_id = $5, \
                     target_object = $6, model_ids = $7, active = $8, document = $9, \
                     updated_at = $10, updated_by = $11 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(&write.name)
                .bind(&write.mode)
                .bind(write.target_connection_id.to_string())
                .bind(&write.target_object)
                .bind(json_text(&write.model_ids)?)
                .bind(write.active)
                .bind(json_text(&write.document)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                if result.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, &write.name, &connections)
                    .await?;
                tx.commit().await?;
                self.sync(organization_id, id).await
            }

            async fn set_sync_active(
                &self,
                organization_id: Uuid,
                id: Uuid,
                active: bool,
            ) -> Result<()> {
                let result = sqlx::query(
                    "UPDATE syncs SET active = $3, updated_at = $4 \
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

            async fn delete_sync(&self, organization_id: Uuid, id: Uuid) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let exists =
                    sqlx::query("SELECT id FROM syncs WHERE organization_id = $1 AND id = $2")
                        .bind(organization_id.to_string())
                        .bind(id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                for statement in [
                    "DELETE FROM sync_execution_records WHERE execution_id IN \
                     (SELECT id FROM sync_executions WHERE sync_id = $1)",
                    "DELETE FROM sync_executions WHERE sync_id = $1",
                    "DELETE FROM sync_ledger WHERE sync_id = $1",
                    "DELETE FROM sync_window_marks WHERE sync_id = $1",
                    "DELETE FROM syncs WHERE id = $1",
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

            async fn create_execution(
                &self,
                sync_id: Uuid,
                execution_type: &str,
            ) -> Result<Execution> {
                let id = Uuid::new_v4();
                let now = now();
                sqlx::query(&format!(
                    "INSERT INTO sync_executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, 'created', \
                     $3, 0, 0, 0, 0, 0, 0, 0, '[]', $4, NULL, NULL, $4)"
                ))
                .bind(id.to_string())
                .bind(sync_id.to_string())
                .bind(execution_type)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(map_unique("running execution"))?;
                self.execution(sync_id, id).await
            }

            async fn execution(&self, sync_id: Uuid, id: Uuid) -> Result<Execution> {
                let row = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM sync_executions WHERE sync_id = $1 AND id = $2"
                ))
                .bind(sync_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map(SyncRow::to_execution)
                    .transpose()?
                    .ok_or_else(execution_not_found)
            }

            async fn active_execution(&self, sync_id: Uuid) -> Result<Option<Execution>> {
                let row = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM sync_executions WHERE sync_id = $1 \
                     AND status IN ('created', 'queued', 'running', 'canceling')"
                ))
                .bind(sync_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(SyncRow::to_execution).transpose()
            }

            async fn last_finished_execution(&self, sync_id: Uuid) -> Result<Option<Execution>> {
                let row = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM sync_executions WHERE sync_id = $1 \
                     AND status IN ('completed', 'failed', 'canceled', 'interrupted') \
                     ORDER BY created_at DESC, id DESC LIMIT 1"
                ))
                .bind(sync_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(SyncRow::to_execution).transpose()
            }

            async fn list_executions(
                &self,
                sync_id: Uuid,
                page: ExecutionPage,
            ) -> Result<Vec<Execution>> {
                let order = if page.ascending { "ASC" } else { "DESC" };
                let rows = sqlx::query(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM sync_executions WHERE sync_id = $1 \
                     AND ($2 = FALSE OR status = 'completed') \
                     ORDER BY created_at {order}, id {order} LIMIT $3 OFFSET $4"
                ))
                .bind(sync_id.to_string())
                .bind(page.only_completed)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(SyncRow::to_execution).collect()
            }

            async fn transition_execution(
                &self,
                id: Uuid,
                from: &[&str],
                to: &str,
            ) -> Result<bool> {
                if from.is_empty() {
                    return Ok(false);
                }
                let now = now();
                let started = if to == "running" { Some(now) } else { None };
                let completed = if is_terminal(to) { Some(now) } else { None };
                let sql = format!(
                    "UPDATE sync_executions SET status = $1, updated_at = $2, \
                     started_at = COALESCE(started_at, $3), \
                     completed_at = COALESCE(completed_at, $4) \
                     WHERE id = $5 AND status IN ({})",
                    placeholders(6, from.len())
                );
                let mut query = sqlx::query(&sql)
                    .bind(to)
                    .bind(now)
                    .bind(started)
                    .bind(completed)
                    .bind(id.to_string());
                for status in from {
                    query = query.bind(*status);
                }
                let result = query.execute(&self.pool).await?;
                let moved = result.rows_affected() == 1;
                if moved && is_terminal(to) {
                    let row = sqlx::query("SELECT sync_id FROM sync_executions WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                    if let Some(row) = row {
                        let sync_id: String = row.try_get("sync_id")?;
                        sqlx::query(PRUNE_RECORD_LOGS)
                            .bind(sync_id)
                            .bind(RECORD_LOG_EXECUTIONS_KEPT)
                            .execute(&self.pool)
                            .await?;
                    }
                }
                Ok(moved)
            }

            async fn record_execution_progress(
                &self,
                id: Uuid,
                counts: ExecutionCounts,
                errors: &[String],
            ) -> Result<()> {
                let result = sqlx::query(
                    "UPDATE sync_executions SET total_count = $2, insert_count = $3, \
                     update_count = $4, upsert_count = $5, delete_count = $6, error_count = $7, \
                     warning_count = $8, errors = $9, updated_at = $10 WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(counts.total)
                .bind(counts.insert)
                .bind(counts.update)
                .bind(counts.upserts)
                .bind(counts.delete)
                .bind(counts.error)
                .bind(counts.warnings)
                .bind(json_text(&errors)?)
                .bind(now())
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err(execution_not_found());
                }
                Ok(())
            }

            async fn append_execution_records(
                &self,
                id: Uuid,
                lines: &[RecordLine],
            ) -> Result<()> {
                if lines.is_empty() {
                    return Ok(());
                }
                let chunks = chunk_lines(stored_lines(lines));
                let packed: Vec<Option<Vec<u8>>> =
                    chunks.iter().map(|chunk| pack(&chunk.text)).collect();
                let mut tx = self.begin_write().await?;
                // Multi-row statements: 4 binds per chunk plus the execution id.
                for (rows, packed) in chunks
                    .chunks(RECORD_WRITE_ROWS)
                    .zip(packed.chunks(RECORD_WRITE_ROWS))
                {
                    let values: Vec<String> = (0..rows.len())
                        .map(|i| format!("($1, {})", placeholders(2 + i * 4, 4)))
                        .collect();
                    let sql = format!(
                        "INSERT INTO sync_execution_records \
                         (execution_id, log_type, seq, line, packed) VALUES {}",
                        values.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(id.to_string());
                    for (chunk, packed) in rows.iter().zip(packed) {
                        let text = if packed.is_some() { "" } else { chunk.text.as_str() };
                        query = query
                            .bind(chunk.stored_type().into_owned())
                            .bind(chunk.first_seq)
                            .bind(text)
                            .bind(packed.as_deref());
                    }
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn prune_record_logs(&self, sync_id: Uuid, keep: i64) -> Result<()> {
                sqlx::query(PRUNE_RECORD_LOGS)
                    .bind(sync_id.to_string())
                    .bind(keep.max(0))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn execution_records(
                &self,
                id: Uuid,
                log_type: &str,
                from_seq: i64,
                limit: i64,
            ) -> Result<Vec<RecordLine>> {
                let (from_seq, limit) = (from_seq.max(0), limit.max(0));
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let end = from_seq.saturating_add(limit);
                let mut lines = self.record_chunk_lines(id, log_type, from_seq, end).await?;
                if log_type != RECORDS {
                    let references = self
                        .record_chunk_lines(id, &reference_log(log_type), from_seq, end)
                        .await?;
                    if !references.is_empty() {
                        lines.extend(self.referenced_lines(id, references).await?);
                        lines.sort_unstable_by_key(|(seq, _)| *seq);
                    }
                }
                Ok(lines
                    .into_iter()
                    .map(|(seq, line)| RecordLine {
                        log_type: log_type.to_string(),
                        seq,
                        line,
                    })
                    .collect())
            }

            async fn count_execution_records(&self, id: Uuid, log_type: &str) -> Result<i64> {
                // Lines are numbered without gaps (whether kept as text or as references):
                // the count is the last chunk's first line number plus its lines.
                let row = sqlx::query(
                    "SELECT seq, line, packed FROM sync_execution_records \
                     WHERE execution_id = $1 AND log_type IN ($2, $3) \
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(id.to_string())
                .bind(log_type)
                .bind(reference_log(log_type))
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else {
                    return Ok(0);
                };
                let (first, text) = row.to_chunk()?;
                let lines = text.bytes().filter(|b| *b == b'\n').count() + 1;
                Ok(first + i64::try_from(lines).unwrap_or(i64::MAX))
            }
        }

        impl $store {
            /// The lines numbered `[from_seq, end)` of one stored log, as (number, text).
            async fn record_chunk_lines(
                &self,
                id: Uuid,
                log_type: &str,
                from_seq: i64,
                end: i64,
            ) -> Result<Vec<(i64, String)>> {
                // The chunks overlapping [from_seq, end): from the last one starting at or
                // before `from_seq` to the last one starting before `end`.
                let rows = sqlx::query(
                    "SELECT seq, line, packed FROM sync_execution_records \
                     WHERE execution_id = $1 AND log_type = $2 AND seq < $4 AND seq >= \
                     COALESCE((SELECT MAX(seq) FROM sync_execution_records \
                     WHERE execution_id = $1 AND log_type = $2 AND seq <= $3), 0) \
                     ORDER BY seq",
                )
                .bind(id.to_string())
                .bind(log_type)
                .bind(from_seq)
                .bind(end)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::new();
                for row in &rows {
                    let (first, text) = row.to_chunk()?;
                    for (seq, line) in (first..).zip(text.split('\n')) {
                        if seq >= from_seq && seq < end {
                            out.push((seq, line.to_string()));
                        }
                    }
                }
                Ok(out)
            }

            /// Resolves references (line number, `records` line number as text) to the
            /// `records` lines' text, reading `records` in runs of nearby numbers.
            async fn referenced_lines(
                &self,
                id: Uuid,
                references: Vec<(i64, String)>,
            ) -> Result<Vec<(i64, String)>> {
                let mut wanted: Vec<(i64, i64)> = references
                    .into_iter()
                    .map(|(seq, number)| {
                        number
                            .parse::<i64>()
                            .map(|number| (number, seq))
                            .map_err(|_| corrupt(&format!("record reference '{number}'")))
                    })
                    .collect::<Result<_>>()?;
                wanted.sort_unstable();
                let mut out = Vec::with_capacity(wanted.len());
                let mut rest = wanted.as_slice();
                while let Some(&(first, _)) = rest.first() {
                    // A run ends where the next wanted line is more than a chunk further on.
                    let run = rest
                        .windows(2)
                        .position(|pair| pair[1].0 - pair[0].0 > RECORD_CHUNK_LINES as i64)
                        .map_or(rest.len(), |at| at + 1);
                    let (taken, remaining) = rest.split_at(run);
                    rest = remaining;
                    let last = taken.last().map_or(first, |(number, _)| *number);
                    let texts: std::collections::HashMap<i64, String> = self
                        .record_chunk_lines(id, RECORDS, first, last + 1)
                        .await?
                        .into_iter()
                        .collect();
                    for (number, seq) in taken {
                        let text = texts.get(number).ok_or_else(|| {
                            corrupt(&format!("record line {number} is missing"))
                        })?;
                        out.push((*seq, text.clone()));
                    }
                }
                Ok(out)
            }
        }
    };
}

/// The sqlx database of each store type (lets one macro body name executors generically).
pub(crate) trait StoreDb {
    type Db: sqlx::Database;
}
impl StoreDb for crate::backend::SqliteStore {
    type Db = sqlx::Sqlite;
}
impl StoreDb for crate::backend::PostgresStore {
    type Db = sqlx::Postgres;
}

for_each_backend!(impl_syncs);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }

    fn line(log_type: &str, seq: i64, line: &str) -> RecordLine {
        RecordLine {
            log_type: log_type.into(),
            seq,
            line: line.into(),
        }
    }

    #[test]
    fn lines_are_chunked_per_log_and_run_of_numbers() {
        let lines = [
            line("records", 0, "a"),
            line("inserts", 0, "a"),
            line("records", 1, "b\nc"),
            line("records", 5, "d"),
            line("records", 6, "e"),
        ];
        let chunks = chunk_lines(stored_lines(&lines));
        let got: Vec<(&str, i64, &str)> = chunks
            .iter()
            .map(|c| (c.log_type, c.first_seq, c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("records", 0, "a\nb c"),
                // The same text as `records` line 0 next to it: kept as its number.
                ("inserts", 0, "0"),
                ("records", 5, "d\ne"),
            ]
        );
        assert_eq!(chunks[1].stored_type(), "inserts>records");
        assert_eq!(chunks[0].stored_type(), "records");
    }

    #[test]
    fn chunks_are_bounded() {
        let lines: Vec<RecordLine> = (0..2_500)
            .map(|n| line("records", n, &format!("{{\"n\":{n}}}")))
            .collect();
        let chunks = chunk_lines(stored_lines(&lines));
        let firsts: Vec<i64> = chunks.iter().map(|c| c.first_seq).collect();
        assert_eq!(firsts, [0, 1_000, 2_000]);
        let big = "x".repeat(RECORD_CHUNK_BYTES);
        let lines: Vec<RecordLine> = (0..3).map(|n| line("records", n, &big)).collect();
        assert_eq!(chunk_lines(stored_lines(&lines)).len(), 3);
    }

    #[test]
    fn terminal_statuses() {
        for status in ["completed", "failed", "canceled", "interrupted"] {
            assert!(is_terminal(status));
        }
        for status in ACTIVE_STATUSES {
            assert!(!is_terminal(status));
        }
    }
}
