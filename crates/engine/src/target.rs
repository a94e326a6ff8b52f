//! The Salesforce side of a run: the target's describe, identity lookups (batched SOQL with
//! every literal escaped by `ferry-soql`) and writes through sObject Collections, Bulk API
//! 1.0 and Bulk API 2.0. Every call goes through the connection's client, so each one is
//! counted against the connection's daily budget before it is made.
//!
//! Which Bulk API (`ingestion_api: bulk`, or `automatic` above its threshold):
//!
//! - `concurrency_mode: Serial` → one Bulk API 1.0 job in `Serial` mode per object and
//!   operation of a window, `bulk_batch_size` records per batch; Salesforce processes one
//!   batch at a time, so rows never contend for parent locks. Results come back in input
//!   order and map to rows by position.
//! - `concurrency_mode: Parallel` → one Bulk API 2.0 ingest job per object and operation of
//!   a window ([`SalesforceTarget::write_bulk2_job`]): one upload, Salesforce cuts it into
//!   its own batches and processes them in parallel, and the job needs the fewest calls
//!   (create, upload, close, status, successful results; failed results only when a record
//!   failed). Bulk 2.0 results come back in no particular order, so each row must carry a
//!   key the results echo: `Id` for updates and deletes, the identity field for creates and
//!   upserts (unique within the job). A job whose rows have no such key
//!   ([`SalesforceTarget::bulk2_key`] is `None`) goes through Bulk 1.0 instead. Rows missing
//!   from both result sets (unprocessed) fail with `BULK_UNPROCESSED` and are retried on
//!   the next run. `bulk_batch_size` shapes Bulk 1.0 batches only: Bulk 2.0 has no
//!   client-side batches.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use ferry_salesforce::bulk1::{Bulk1ContentType, Bulk1JobRequest, Bulk1Operation, ConcurrencyMode};
use ferry_salesforce::bulk2::{
    ColumnDelimiter, IngestJobRequest, IngestOperation, IngestResultKind, IngestResults,
    LineEnding, MAX_UPLOAD_BYTES, PollOptions, encode_csv,
};
use ferry_salesforce::{
    ApiErrorItem, CollectionOptions, QueryScope, Record, SObjectDescribe, SalesforceClient,
    SalesforceError, SaveResult,
};
use serde_json::{Map, Value};

use crate::plan::{Operation, TargetInfo, needs_mapped_values, upserts_without_lookup};
use crate::spec::{CompiledSync, Mode};
use crate::write_jobs::{JobApi, JobLog};
use crate::{FastMap, FastSet};

/// One record to write: its Id (updates, deletes) and its field values.
pub type WriteRow = (Option<String>, Map<String, Value>);

/// Identity values per lookup query (keeps the SOQL well under URL limits).
pub const LOOKUP_CHUNK: usize = 100;

/// Field types whose SOQL literals are numbers.
const NUMERIC_TYPES: [&str; 5] = ["double", "int", "currency", "percent", "long"];

/// The target object of a run.
#[derive(Debug, Clone)]
pub struct SalesforceTarget {
    client: SalesforceClient,
    /// The object's API name.
    pub object: String,
    /// What planning needs.
    pub info: TargetInfo,
    identity_field: Option<String>,
    identity_numeric: bool,
    lookup_fields: Vec<String>,
    /// Whether lookups are needed at all.
    pub lookups: bool,
    /// The object's field names (lowercase).
    fields: FastSet<String>,
    /// How long to wait before the first status check of a Bulk 2.0 job, in ms (learned
    /// from earlier jobs of the run, shared by the clones running jobs).
    bulk2_wait_ms: Arc<AtomicU64>,
    /// Where the Bulk jobs it opens are recorded while they run (none: not recorded).
    jobs: Option<JobLog>,
}

/// Normalizes an identity value for matching (Salesforce compares case-insensitively).
pub fn identity_key(value: &str) -> String {
    value.trim().to_lowercase()
}

fn describe_field<'a>(
    describe: &'a SObjectDescribe,
    name: &str,
) -> Option<&'a ferry_salesforce::FieldDescribe> {
    describe
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

impl SalesforceTarget {
    /// Describes the object and works out the lookup query's fields.
    pub async fn prepare(
        client: SalesforceClient,
        sync: &CompiledSync,
    ) -> Result<SalesforceTarget, SalesforceError> {
        let object = sync.object.clone();
        SalesforceTarget::prepare_object(client, sync, &object).await
    }

    /// Like [`SalesforceTarget::prepare`] for a named object (`Contact` and `Lead` of a
    /// Lead-or-Contact sync). Lead lookups of a Lead-or-Contact sync also read
    /// `IsConverted` and `ConvertedContactId`. The fields target filters test ride on the
    /// identity lookup (same query, no extra call); a filter field the object no longer
    /// has fails the run with its name.
    pub async fn prepare_object(
        client: SalesforceClient,
        sync: &CompiledSync,
        object: &str,
    ) -> Result<SalesforceTarget, SalesforceError> {
        let describe = client.describe(object).await?;
        let identity = sync
            .identity_target
            .as_deref()
            .and_then(|name| describe_field(&describe, name));
        let info = TargetInfo {
            identity_is_external_id: identity.is_some_and(|f| f.external_id),
            reference_fields: describe
                .fields
                .iter()
                .filter(|f| f.field_type == "reference")
                .map(|f| f.name.to_ascii_lowercase())
                .collect(),
            is_lead: describe.name.eq_ignore_ascii_case("Lead"),
        };
        let mut lookup_fields = vec!["Id".to_string()];
        let mut add = |name: &str| {
            if let Some(field) = describe_field(&describe, name)
                && !lookup_fields
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&field.name))
            {
                lookup_fields.push(field.name.clone());
            }
        };
        if let Some(field) = identity {
            add(&field.name);
        }
        if needs_mapped_values(sync, &info) {
            for field in &sync.fields {
                add(&field.target);
            }
            if info.is_lead {
                add("IsConverted");
            }
        }
        for name in sync.target_filter_fields() {
            if describe_field(&describe, name).is_none() {
                return Err(SalesforceError::InvalidInput(format!(
                    "the target filter field '{name}' is no longer a field of {}",
                    describe.name
                )));
            }
            add(name);
        }
        if sync.object == crate::spec::LEAD_OR_CONTACT && info.is_lead {
            add("IsConverted");
            add("ConvertedContactId");
        }
        let lookups = identity.is_some() && !upserts_without_lookup(sync, &info);
        let fields = describe
            .fields
            .iter()
            .map(|f| f.name.to_ascii_lowercase())
            .collect();
        Ok(SalesforceTarget {
            object: describe.name.clone(),
            identity_field: identity.map(|f| f.name.clone()),
            identity_numeric: identity
                .is_some_and(|f| NUMERIC_TYPES.contains(&f.field_type.as_str())),
            lookup_fields,
            lookups,
            info,
            client,
            fields,
            bulk2_wait_ms: Arc::new(AtomicU64::new(0)),
            jobs: None,
        })
    }

    /// Records the Bulk jobs this target opens in `log` while they run, so a later run can
    /// settle them if this process dies ([`crate::write_jobs`]).
    pub fn with_job_log(mut self, log: JobLog) -> SalesforceTarget {
        self.jobs = Some(log);
        self
    }

    async fn job_opened(&self, api: JobApi, job_id: &str) -> Result<(), SalesforceError> {
        match &self.jobs {
            Some(log) => log.opened(&self.client, api, job_id).await,
            None => Ok(()),
        }
    }

    async fn job_finished(&self, job_id: &str) {
        if let Some(log) = &self.jobs {
            log.finished(job_id).await;
        }
    }

    /// The records matching each identity value, keyed by [`identity_key`].
    pub async fn lookup(
        &self,
        identities: &[String],
    ) -> Result<HashMap<String, Vec<Record>>, SalesforceError> {
        let mut found: HashMap<String, Vec<Record>> = HashMap::new();
        let Some(identity_field) = &self.identity_field else {
            return Ok(found);
        };
        let values: Vec<&str> = if self.identity_numeric {
            identities
                .iter()
                .map(String::as_str)
                .filter(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
                .collect()
        } else {
            identities.iter().map(String::as_str).collect()
        };
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let fields: Vec<&str> = self.lookup_fields.iter().map(String::as_str).collect();
            let soql = if self.identity_numeric {
                // Numbers were checked to parse as finite numbers above; they are literals.
                format!(
                    "SELECT {} FROM {} WHERE {identity_field} IN ({})",
                    fields.join(", "),
                    self.object,
                    chunk.join(", ")
                )
            } else {
                ferry_salesforce::query::select_where_in(
                    &self.object,
                    &fields,
                    identity_field,
                    chunk,
                )?
            };
            let records = self.client.query_all_pages(&soql, QueryScope::Live).await?;
            for record in records {
                let key = match record.get(identity_field.as_str()) {
                    Some(Value::String(s)) => identity_key(s),
                    Some(Value::Number(n)) => identity_key(&n.to_string()),
                    _ => continue,
                };
                found.entry(key).or_default().push(record);
            }
        }
        if self.identity_numeric {
            // Numeric identities: "42" and "42.0" are the same value.
            let mut normalized = HashMap::new();
            for (key, records) in found {
                let canonical = key.parse::<f64>().map(|f| f.to_string()).unwrap_or(key);
                normalized.insert(canonical, records);
            }
            return Ok(normalized);
        }
        Ok(found)
    }

    /// Whether the object has a field.
    pub fn has_field(&self, name: &str) -> bool {
        crate::contains_lowercase(&self.fields, name)
    }

    /// The key a row's identity is looked up under.
    pub fn lookup_key(&self, identity: &str) -> String {
        if self.identity_numeric {
            identity
                .trim()
                .parse::<f64>()
                .map(|f| f.to_string())
                .unwrap_or_else(|_| identity_key(identity))
        } else {
            identity_key(identity)
        }
    }

    /// Writes one batch (≤ 200 records) through sObject Collections; results are in input
    /// order. `UNABLE_TO_LOCK_ROW` is resubmitted by the client per its retry policy.
    pub async fn write_rest(
        &self,
        operation: Operation,
        rows: &[WriteRow],
    ) -> Result<Vec<SaveResult>, SalesforceError> {
        let options = CollectionOptions::default();
        match operation {
            Operation::Create => {
                let records = rows.iter().map(|(_, payload)| nest(payload)).collect();
                self.client
                    .create_many(&self.object, records, options)
                    .await
            }
            Operation::Update => {
                let records = rows
                    .iter()
                    .map(|(id, payload)| {
                        let mut record = nest(payload);
                        record.insert("Id".into(), id.clone().map_or(Value::Null, Value::String));
                        record
                    })
                    .collect();
                self.client
                    .update_many(&self.object, records, options)
                    .await
            }
            Operation::Upsert => {
                let field = self.identity_field.as_deref().unwrap_or("Id");
                let records = rows.iter().map(|(_, payload)| nest(payload)).collect();
                self.client
                    .upsert_many(&self.object, field, records, options)
                    .await
            }
            Operation::Delete => {
                let ids: Vec<&str> = rows.iter().filter_map(|(id, _)| id.as_deref()).collect();
                self.client.delete_many(&ids, options).await
            }
        }
    }

    /// Writes batches (≤ 10,000 records each) through one Bulk API 1.0 job with the given
    /// concurrency mode (`Serial`: Salesforce processes one batch at a time), and maps each
    /// batch's positional results back to its rows. A batch Salesforce could not process
    /// fails its rows (`BULK_BATCH_FAILED` with Salesforce's state message); a job that
    /// cannot be created or closed is an error.
    pub async fn write_bulk_job(
        &self,
        operation: Operation,
        batches: &[Vec<WriteRow>],
        serial: bool,
        poll: PollOptions,
    ) -> Result<Vec<Vec<SaveResult>>, SalesforceError> {
        let bulk_operation = match operation {
            Operation::Create => Bulk1Operation::Insert,
            Operation::Update => Bulk1Operation::Update,
            Operation::Upsert => Bulk1Operation::Upsert,
            Operation::Delete => Bulk1Operation::Delete,
        };
        let request = Bulk1JobRequest {
            operation: bulk_operation,
            object: self.object.clone(),
            external_id_field_name: match operation {
                Operation::Upsert => self.identity_field.clone(),
                _ => None,
            },
            concurrency_mode: if serial {
                ConcurrencyMode::Serial
            } else {
                ConcurrencyMode::Parallel
            },
            content_type: Bulk1ContentType::Json,
        };
        let job = self.client.create_bulk1_job(&request).await?;
        self.job_opened(JobApi::Bulk1, &job.id).await?;
        let mut batch_ids = Vec::with_capacity(batches.len());
        for rows in batches {
            let records: Vec<Value> = rows
                .iter()
                .map(|(id, payload)| {
                    let mut record = match operation {
                        Operation::Delete => Map::new(),
                        _ => nest(payload),
                    };
                    if let Some(id) = id {
                        record.insert("Id".into(), Value::String(id.clone()));
                    }
                    Value::Object(record)
                })
                .collect();
            let body = serde_json::to_vec(&records)
                .map_err(|e| SalesforceError::InvalidInput(format!("bulk batch: {e}")))?;
            let batch = self
                .client
                .add_bulk1_batch(&job.id, Bulk1ContentType::Json, Bytes::from(body))
                .await?;
            batch_ids.push(batch.id);
        }
        self.client.close_bulk1_job(&job.id).await?;
        let mut out = Vec::with_capacity(batches.len());
        for (rows, batch_id) in batches.iter().zip(&batch_ids) {
            let info = self
                .client
                .wait_for_bulk1_batch(&job.id, batch_id, poll)
                .await?;
            if info.state == "Failed" || info.state == "Not Processed" {
                let message = info
                    .state_message
                    .unwrap_or_else(|| format!("the bulk batch ended in state {}", info.state));
                let error = ApiErrorItem::new("BULK_BATCH_FAILED", message, Vec::new());
                out.push(
                    rows.iter()
                        .map(|_| SaveResult {
                            id: None,
                            success: false,
                            created: None,
                            errors: vec![error.clone()],
                        })
                        .collect(),
                );
                continue;
            }
            let results = self.client.bulk1_batch_results(&job.id, batch_id).await?;
            if results.len() != rows.len() {
                return Err(SalesforceError::Parse {
                    context: "bulk 1.0 batch results".into(),
                    message: format!("{} results for {} records", results.len(), rows.len()),
                });
            }
            out.push(
                results
                    .into_iter()
                    .map(|result| SaveResult {
                        id: result.id.filter(|id| !id.is_empty()),
                        success: result.success,
                        created: Some(result.created),
                        errors: result.errors,
                    })
                    .collect(),
            );
        }
        self.job_finished(&job.id).await;
        Ok(out)
    }
}

impl SalesforceTarget {
    /// The column whose echoed value ties a Bulk 2.0 result row to its input row: `Id` for
    /// updates and deletes, the identity field for creates and upserts — `None` when a row
    /// lacks it or two rows share a value (then only positional Bulk 1.0 results can tell
    /// them apart).
    pub fn bulk2_key(&self, operation: Operation, rows: &[WriteRow]) -> Option<String> {
        let mut seen: FastSet<Cow<'_, str>> =
            FastSet::with_capacity_and_hasher(rows.len(), Default::default());
        match operation {
            Operation::Update | Operation::Delete => {
                for (id, _) in rows {
                    if !seen.insert(Cow::Borrowed(id.as_deref()?)) {
                        return None;
                    }
                }
                Some("Id".to_string())
            }
            Operation::Create | Operation::Upsert => {
                let field = self.identity_field.as_deref()?;
                for (_, payload) in rows {
                    let value = payload
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(field))
                        .and_then(|(_, v)| csv_text(v))?;
                    if value.is_empty() || !seen.insert(bulk2_key_value(value)) {
                        return None;
                    }
                }
                Some(field.to_string())
            }
        }
    }

    /// Writes rows through one Bulk API 2.0 ingest job (create, upload, close, wait,
    /// results) and returns one result per row, in input order. `key` is the column from
    /// [`SalesforceTarget::bulk2_key`]. Rows Salesforce did not process fail with
    /// `BULK_UNPROCESSED`; a job that ends `Failed` fails the rows it did not report with
    /// Salesforce's message (`BULK_JOB_FAILED`). A job that cannot be created, uploaded or
    /// closed is an error.
    pub async fn write_bulk2_job(
        &self,
        operation: Operation,
        rows: &[WriteRow],
        key: &str,
        poll: PollOptions,
    ) -> Result<Vec<SaveResult>, SalesforceError> {
        let prepared = self.prepare_bulk2_job(operation, rows, key)?;
        self.run_bulk2_job(prepared, poll).await
    }

    /// The first half of [`SalesforceTarget::write_bulk2_job`]: the job's CSV and where
    /// each row's result will be found. The rows are not needed after this.
    pub fn prepare_bulk2_job(
        &self,
        operation: Operation,
        rows: &[WriteRow],
        key: &str,
    ) -> Result<Bulk2Job, SalesforceError> {
        Ok(Bulk2Job {
            operation,
            uploads: bulk2_uploads(&bulk2_columns(operation, rows), rows)?,
            positions: bulk2_positions(operation, rows, key),
            rows: rows.len(),
            key: key.to_string(),
        })
    }

    /// The second half of [`SalesforceTarget::write_bulk2_job`]: creates the job, uploads,
    /// closes, waits and reads the results back, one per row in the rows' order.
    pub async fn run_bulk2_job(
        &self,
        prepared: Bulk2Job,
        poll: PollOptions,
    ) -> Result<Vec<SaveResult>, SalesforceError> {
        let Bulk2Job {
            operation,
            uploads,
            positions,
            rows,
            key,
        } = prepared;
        let ingest_operation = match operation {
            Operation::Create => IngestOperation::Insert,
            Operation::Update => IngestOperation::Update,
            Operation::Upsert => IngestOperation::Upsert,
            Operation::Delete => IngestOperation::Delete,
        };
        let mut request = IngestJobRequest::new(self.object.clone(), ingest_operation);
        if operation == Operation::Upsert {
            request.external_id_field_name = self.identity_field.clone();
        }
        let job = self.client.create_ingest_job(&request).await?;
        self.job_opened(JobApi::Bulk2, &job.id).await?;
        for csv in uploads {
            self.client.upload_ingest_data(&job.id, csv).await?;
        }
        self.client.complete_ingest_upload(&job.id).await?;
        let (info, job_failure) = match self.wait_for_bulk2_job(&job.id, poll).await {
            Ok(info) => (Some(info), None),
            Err(SalesforceError::JobFailed { state, message, .. }) => {
                let message = if message.is_empty() {
                    format!("the bulk job ended in state {state}")
                } else {
                    message
                };
                (None, Some(message))
            }
            Err(error) => return Err(error),
        };
        let mut results: Vec<Option<SaveResult>> = vec![None; rows];
        let want_successful = info
            .as_ref()
            .is_none_or(|i| i.number_records_processed > i.number_records_failed);
        let want_failed = info.as_ref().is_none_or(|i| i.number_records_failed > 0);
        for (kind, wanted) in [
            (IngestResultKind::Successful, want_successful),
            (IngestResultKind::Failed, want_failed),
        ] {
            if !wanted {
                continue;
            }
            let fetched = self
                .client
                .ingest_results(&job.id, kind, ColumnDelimiter::Comma, Some(&key))
                .await;
            let set = match (fetched, &job_failure) {
                (Ok(set), _) => set,
                // A failed job may have no result sets; its rows fail below.
                (Err(_), Some(_)) => continue,
                (Err(error), None) => return Err(error),
            };
            place_bulk2_results(&set, &key, &positions, &mut results);
        }
        self.job_finished(&job.id).await;
        let missing = match &job_failure {
            Some(message) => ApiErrorItem::new("BULK_JOB_FAILED", message.clone(), Vec::new()),
            None => ApiErrorItem::new(
                "BULK_UNPROCESSED",
                "Salesforce did not process the record in its Bulk job; it is retried on the next run",
                Vec::new(),
            ),
        };
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| SaveResult {
                    id: None,
                    success: false,
                    created: None,
                    errors: vec![missing.clone()],
                })
            })
            .collect())
    }
}

impl SalesforceTarget {
    /// Polls a closed Bulk 2.0 job until it ends. The first check waits as long as recent
    /// jobs took (each status check is an API call): after a first check that found the job
    /// done the next wait is a little shorter, after one that did not it is what the job
    /// really took — so most jobs need a single check. Later checks back off from a quarter
    /// of that. `Failed`/`Aborted` are [`SalesforceError::JobFailed`].
    async fn wait_for_bulk2_job(
        &self,
        job_id: &str,
        poll: PollOptions,
    ) -> Result<ferry_salesforce::bulk2::JobInfo, SalesforceError> {
        let closed = Instant::now();
        let learned = Duration::from_millis(self.bulk2_wait_ms.load(Ordering::Relaxed));
        let first_wait = learned.max(poll.initial_interval).min(poll.max_interval);
        let mut interval = (first_wait / 4).max(poll.initial_interval / 4);
        tokio::time::sleep(first_wait).await;
        let mut checks = 0u32;
        loop {
            let info = self.client.get_ingest_job(job_id).await?;
            checks += 1;
            match info.state.as_str() {
                "JobComplete" | "Failed" | "Aborted" => {
                    let next = if checks == 1 {
                        first_wait.mul_f64(BULK2_WAIT_SHRINK)
                    } else {
                        closed.elapsed()
                    };
                    let next_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX);
                    self.bulk2_wait_ms.store(next_ms, Ordering::Relaxed);
                    if info.state == "JobComplete" {
                        return Ok(info);
                    }
                    return Err(SalesforceError::JobFailed {
                        job_id: job_id.to_string(),
                        state: info.state.clone(),
                        message: info.error_message.clone().unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if closed.elapsed() >= poll.timeout {
                return Err(SalesforceError::JobTimeout {
                    job_id: job_id.to_string(),
                    waited: closed.elapsed(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(poll.max_interval);
        }
    }
}

/// After a Bulk 2.0 job was found done at the first status check, the next job's first
/// check comes this much sooner (so the wait tracks the jobs' real duration from above).
const BULK2_WAIT_SHRINK: f64 = 0.95;

/// A JSON value as a Bulk 2.0 CSV cell (`None` for null), borrowed when it is text.
fn csv_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// How key values are compared between the upload and the echoed results (external ids
/// and emails match case-insensitively in Salesforce).
fn bulk2_key_value(value: Cow<'_, str>) -> Cow<'_, str> {
    let trimmed = value.trim();
    if trimmed.len() == value.len()
        && value.is_ascii()
        && !value.bytes().any(|byte| byte.is_ascii_uppercase())
    {
        // Already in its compared form (the common case: nothing to allocate).
        return value;
    }
    Cow::Owned(if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        trimmed.to_lowercase()
    })
}

/// The CSV header: `Id` first for updates and deletes (deletes carry nothing else), then
/// every payload key in first-seen order (`Rel.ExtField` keys are reference columns).
fn bulk2_columns(operation: Operation, rows: &[WriteRow]) -> Vec<String> {
    let mut columns = Vec::new();
    let mut seen = FastSet::default();
    if matches!(operation, Operation::Update | Operation::Delete) {
        columns.push("Id".to_string());
        seen.insert("id".to_string());
    }
    if operation == Operation::Delete {
        return columns;
    }
    let mut previous: Option<&Map<String, Value>> = None;
    for (_, payload) in rows {
        // Rows of a window mostly carry the same keys in the same order: nothing new.
        if previous.is_some_and(|previous| previous.keys().eq(payload.keys())) {
            continue;
        }
        previous = Some(payload);
        for key in payload.keys() {
            if seen.insert(key.to_ascii_lowercase()) {
                columns.push(key.clone());
            }
        }
    }
    columns
}

/// One row's cell in `column`. A field the row does not set is an empty cell (Salesforce
/// leaves it unchanged); a null, or an empty string (which REST stores as null too), is
/// `None` (`#N/A`, cleared) — except in a reference column, where a parent cannot be
/// cleared through an external id and the cell stays empty (as `nest` leaves it out).
fn bulk2_cell<'r>(
    column: &str,
    value: Option<&'r Value>,
    id: Option<&'r str>,
) -> Option<Cow<'r, str>> {
    if column == "Id" && value.is_none() {
        return Some(Cow::Borrowed(id.unwrap_or_default()));
    }
    match value {
        None => Some(Cow::Borrowed("")),
        Some(value) => match csv_text(value) {
            Some(text) if !text.is_empty() => Some(text),
            _ if column.contains('.') => Some(Cow::Borrowed("")),
            _ => None,
        },
    }
}

/// One row's cells in `columns` order ([`bulk2_cell`]). The row's entries are walked
/// alongside the columns, so a row whose keys come in column order (the usual case) is
/// read without a lookup per cell.
fn bulk2_cells<'r>(
    columns: &'r [String],
    (id, payload): &'r WriteRow,
) -> impl Iterator<Item = Option<Cow<'r, str>>> + 'r {
    let mut entries = payload.iter().peekable();
    columns.iter().map(move |column| {
        let value = match entries.peek() {
            Some((key, value)) if *key == column => {
                let value = *value;
                entries.next();
                Some(value)
            }
            _ => payload.get(column),
        };
        bulk2_cell(column, value, id.as_deref())
    })
}

/// A Bulk 2.0 job ready to send ([`SalesforceTarget::prepare_bulk2_job`]).
#[derive(Debug)]
pub struct Bulk2Job {
    operation: Operation,
    uploads: Vec<Bytes>,
    /// Key value → the row's position.
    positions: FastMap<String, usize>,
    rows: usize,
    key: String,
}

/// The CSV of rows (header first).
fn bulk2_csv(columns: &[String], rows: &[WriteRow]) -> Result<Bytes, SalesforceError> {
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    encode_csv(
        &header,
        rows.iter().map(|row| bulk2_cells(columns, row)),
        ColumnDelimiter::Comma,
        LineEnding::Lf,
    )
}

/// The CSV uploads of a job: all rows in one upload, split in halves while an upload
/// would exceed Salesforce's size limit.
fn bulk2_uploads(columns: &[String], rows: &[WriteRow]) -> Result<Vec<Bytes>, SalesforceError> {
    let mut uploads = Vec::new();
    let mut pending = vec![rows];
    while let Some(part) = pending.pop() {
        let csv = bulk2_csv(columns, part)?;
        if csv.len() > MAX_UPLOAD_BYTES && part.len() > 1 {
            let (first, second) = part.split_at(part.len() / 2);
            pending.push(second);
            pending.push(first);
            continue;
        }
        uploads.push(csv);
    }
    Ok(uploads)
}

/// Key value → row position, for matching results.
fn bulk2_positions(operation: Operation, rows: &[WriteRow], key: &str) -> FastMap<String, usize> {
    rows.iter()
        .enumerate()
        .filter_map(|(position, (id, payload))| {
            let value = match operation {
                Operation::Update | Operation::Delete => id.as_deref().map(Cow::Borrowed),
                Operation::Create | Operation::Upsert => payload
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .and_then(|(_, v)| csv_text(v)),
            }?;
            Some((bulk2_key_value(value).into_owned(), position))
        })
        .collect()
}

/// Puts each result row of a set at its input row's position.
fn place_bulk2_results(
    set: &IngestResults,
    key: &str,
    positions: &FastMap<String, usize>,
    results: &mut [Option<SaveResult>],
) {
    for row in &set.rows {
        let Some(position) = set
            .value(row, key)
            .and_then(|value| positions.get(bulk2_key_value(Cow::Borrowed(value)).as_ref()))
        else {
            continue;
        };
        let result = match set.kind {
            IngestResultKind::Successful => SaveResult {
                id: row.id.clone(),
                success: true,
                created: row.created,
                errors: Vec::new(),
            },
            _ => SaveResult {
                id: row.id.clone(),
                success: false,
                created: None,
                errors: vec![row.error.clone().unwrap_or_else(|| {
                    ApiErrorItem::new(
                        "UNKNOWN_ERROR",
                        "Salesforce reported a failure without details",
                        Vec::new(),
                    )
                })],
            },
        };
        if let Some(slot) = results.get_mut(*position) {
            *slot = Some(result);
        }
    }
}

/// Turns `Relationship.ExternalIdField` keys into Salesforce's nested reference form
/// (`{"Account": {"Ext__c": "A-1"}}`); a null reference is left out (a parent cannot be
/// cleared through an external id).
pub fn nest(payload: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in payload {
        match key.split_once('.') {
            Some((relationship, field)) => {
                if value.is_null() {
                    continue;
                }
                let mut reference = Map::new();
                reference.insert(field.to_string(), value.clone());
                out.insert(relationship.to_string(), Value::Object(reference));
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// Whether an error is Salesforce's "Foreign key external ID: … not found" (a parent
/// referenced by an external id that matches no record, or several).
pub fn is_external_reference_error(item: &ApiErrorItem) -> bool {
    item.message.starts_with("Foreign key external ID")
}

/// Polling for Bulk batches: start fast, back off to a few seconds, give up after an hour.
pub fn bulk_poll() -> PollOptions {
    PollOptions {
        initial_interval: Duration::from_millis(200),
        max_interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3600),
    }
}

/// Whether an error item is about an invalid reference (a lookup id that does not exist or
/// is malformed).
pub fn is_reference_error(item: &ApiErrorItem) -> bool {
    matches!(
        item.error_code.as_str(),
        "INVALID_CROSS_REFERENCE_KEY"
            | "MALFORMED_ID"
            | "INVALID_ID_FIELD"
            | "FIELD_INTEGRITY_EXCEPTION"
    )
}

/// Whether the mode reads Salesforce before writing (for logs).
pub fn mode_reads(mode: Mode) -> bool {
    mode != Mode::Create
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bulk2_keys_compare_trimmed_and_without_case() {
        let key = |value: &str| bulk2_key_value(Cow::Borrowed(value)).into_owned();
        assert_eq!(key("ext-1"), "ext-1");
        assert!(matches!(
            bulk2_key_value(Cow::Borrowed("ext-1")),
            Cow::Borrowed(_)
        ));
        assert_eq!(key(" EXT-1 "), "ext-1");
        assert_eq!(key("Ann@Example.com"), "ann@example.com");
        // Non-ASCII text is lowercased by Unicode's rules, titlecase letters included.
        assert_eq!(key("ÉLAN"), "élan");
        assert_eq!(key("ǅ"), "ǆ");
    }

    fn row(id: Option<&str>, payload: Value) -> WriteRow {
        (
            id.map(str::to_string),
            payload.as_object().cloned().unwrap_or_default(),
        )
    }

    #[test]
    fn bulk2_cells_tell_unset_from_null() {
        let rows = [
            row(
                Some("003A"),
                json!({"LastName": "A", "FirstName": null, "Title": "", "Account.Ext__c": null, "Age__c": 41}),
            ),
            row(Some("003B"), json!({"LastName": "B", "Phone": "1"})),
        ];
        let columns = bulk2_columns(Operation::Update, &rows);
        assert_eq!(
            columns,
            [
                "Id",
                "LastName",
                "FirstName",
                "Title",
                "Account.Ext__c",
                "Age__c",
                "Phone"
            ]
        );
        let csv = String::from_utf8(bulk2_csv(&columns, &rows).unwrap().to_vec()).unwrap();
        assert_eq!(
            csv,
            "Id,LastName,FirstName,Title,Account.Ext__c,Age__c,Phone\n\
             003A,A,#N/A,#N/A,,41,\n\
             003B,B,,,,,1\n"
        );
        assert_eq!(bulk2_columns(Operation::Delete, &rows), ["Id"]);
    }

    #[test]
    fn bulk2_csv_has_one_header_however_many_rows() {
        let mut rows: Vec<WriteRow> = vec![row(None, json!({"Email": "a,\"b\"", "Age": 1.5}))];
        rows.extend((0..2_003).map(|n| row(None, json!({"Email": format!("p{n}@example.com")}))));
        let columns = bulk2_columns(Operation::Create, &rows);
        let csv = String::from_utf8(bulk2_csv(&columns, &rows).unwrap().to_vec()).unwrap();
        assert_eq!(csv.lines().count(), rows.len() + 1);
        assert_eq!(csv.matches("Email").count(), 1);
        assert!(csv.starts_with("Email,Age\n\"a,\"\"b\"\"\",1.5\np0@example.com,\n"));
        assert!(csv.ends_with(&format!("p{}@example.com,\n", rows.len() - 2)));
    }

    #[test]
    fn bulk2_results_map_back_by_key_whatever_their_order() {
        let rows = [
            row(None, json!({"Email": "Ada@example.com", "LastName": "L"})),
            row(None, json!({"Email": "grace@example.com", "LastName": ""})),
            row(None, json!({"Email": "alan@example.com", "LastName": "T"})),
        ];
        let positions = bulk2_positions(Operation::Create, &rows, "Email");
        let mut results: Vec<Option<SaveResult>> = vec![None; rows.len()];
        let successful = ferry_salesforce::bulk2::parse_ingest_results(
            IngestResultKind::Successful,
            b"\"sf__Id\",\"sf__Created\",Email,LastName\n\"003X\",\"true\",\"ada@example.com\",\"L\"\n",
            ColumnDelimiter::Comma,
        )
        .unwrap();
        let failed = ferry_salesforce::bulk2::parse_ingest_results(
            IngestResultKind::Failed,
            b"\"sf__Id\",\"sf__Error\",Email,LastName\n\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\",\"grace@example.com\",\"#N/A\"\n",
            ColumnDelimiter::Comma,
        )
        .unwrap();
        place_bulk2_results(&failed, "Email", &positions, &mut results);
        place_bulk2_results(&successful, "email", &positions, &mut results);
        let ada = results[0].as_ref().unwrap();
        assert!(ada.success);
        assert_eq!(ada.id.as_deref(), Some("003X"));
        assert_eq!(ada.created, Some(true));
        let grace = results[1].as_ref().unwrap();
        assert!(!grace.success);
        assert_eq!(grace.errors[0].error_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(grace.errors[0].fields, ["LastName"]);
        assert!(results[2].is_none(), "alan was not processed");
    }

    #[test]
    fn external_id_references_are_nested() {
        let payload = json!({"LastName": "A", "Account.Ext__c": "A-1", "Parent__r.Key__c": null});
        assert_eq!(
            Value::Object(nest(payload.as_object().unwrap())),
            json!({"LastName": "A", "Account": {"Ext__c": "A-1"}})
        );
        let error = ApiErrorItem::new(
            "INVALID_FIELD",
            "Foreign key external ID: x not found for field Ext__c in entity Account",
            vec![],
        );
        assert!(is_external_reference_error(&error));
        assert!(!is_reference_error(&error));
    }
}
