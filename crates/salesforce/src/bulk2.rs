//! Bulk API 2.0 (spec §6): ingest jobs and query jobs.
//!
//! Ingest: create (200) → upload CSV (`PUT .../batches`, 201) → `UploadComplete` → poll →
//! `successfulResults/`, `failedResults/`, `unprocessedrecords/`, each parsed into per-row
//! results carrying the echoed input columns. Row order is not guaranteed, so callers match
//! rows on a key column they uploaded (external id, or `Id` for update/delete).
//!
//! Query: create (200, `UploadComplete`) → poll → results fetched page by page with
//! `Sforce-Locator` until the literal `null` (or a missing header), one page in memory at a
//! time ([`SalesforceClient::bulk2_query_pages`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::client::{Call, SalesforceClient};
use crate::describe::check_name;
use crate::error::{ApiErrorItem, Result, SalesforceError, parse_bulk_csv_error};

/// Ingest operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IngestOperation {
    /// Insert.
    Insert,
    /// Update (needs `Id`).
    Update,
    /// Upsert (needs `externalIdFieldName`).
    Upsert,
    /// Soft delete (single `Id` column).
    Delete,
    /// Delete skipping the recycle bin.
    HardDelete,
}

/// CSV column delimiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ColumnDelimiter {
    /// `` ` ``
    Backquote,
    /// `^`
    Caret,
    /// `,`
    #[default]
    Comma,
    /// `|`
    Pipe,
    /// `;`
    Semicolon,
    /// tab
    Tab,
}

impl ColumnDelimiter {
    /// The delimiter byte.
    pub fn byte(self) -> u8 {
        match self {
            ColumnDelimiter::Backquote => b'`',
            ColumnDelimiter::Caret => b'^',
            ColumnDelimiter::Comma => b',',
            ColumnDelimiter::Pipe => b'|',
            ColumnDelimiter::Semicolon => b';',
            ColumnDelimiter::Tab => b'\t',
        }
    }
}

/// CSV line endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LineEnding {
    /// `\n`
    #[default]
    #[serde(rename = "LF")]
    Lf,
    /// `\r\n`
    #[serde(rename = "CRLF")]
    Crlf,
}

/// A new ingest job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestJobRequest {
    /// Object API name.
    pub object: String,
    /// Operation.
    pub operation: IngestOperation,
    /// Upsert key (required for upsert).
    pub external_id_field_name: Option<String>,
    /// Delimiter of the uploaded CSV (and of the results).
    pub column_delimiter: ColumnDelimiter,
    /// Line ending of the uploaded CSV.
    pub line_ending: LineEnding,
    /// Lead/Case assignment rule.
    pub assignment_rule_id: Option<String>,
}

impl IngestJobRequest {
    /// A job with comma/LF CSV.
    pub fn new(object: impl Into<String>, operation: IngestOperation) -> Self {
        IngestJobRequest {
            object: object.into(),
            operation,
            external_id_field_name: None,
            column_delimiter: ColumnDelimiter::Comma,
            line_ending: LineEnding::Lf,
            assignment_rule_id: None,
        }
    }
}

/// Job info (ingest or query). Counters appear on GET.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobInfo {
    /// Job id (`750...`).
    pub id: String,
    /// Operation (`insert`, `query`, ...).
    pub operation: Option<String>,
    /// Object.
    pub object: Option<String>,
    /// State: `Open`, `UploadComplete`, `InProgress`, `JobComplete`, `Failed`, `Aborted`.
    pub state: String,
    /// Upsert key.
    pub external_id_field_name: Option<String>,
    /// `CSV`.
    pub content_type: Option<String>,
    /// Delimiter.
    pub column_delimiter: Option<ColumnDelimiter>,
    /// Line ending.
    pub line_ending: Option<LineEnding>,
    /// `V2Ingest` / `V2Query`.
    pub job_type: Option<String>,
    /// Relative upload URL (no leading slash).
    pub content_url: Option<String>,
    /// API version (a number: `60` or `52.0`).
    pub api_version: Option<Json>,
    /// Records processed.
    pub number_records_processed: u64,
    /// Records failed.
    pub number_records_failed: u64,
    /// Retries.
    pub retries: u64,
    /// Processing time, ms.
    pub total_processing_time: u64,
    /// Failure reason when `Failed`.
    pub error_message: Option<String>,
    /// Created at.
    pub created_date: Option<String>,
    /// Last modified at.
    pub system_modstamp: Option<String>,
}

impl JobInfo {
    /// Whether the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "JobComplete" | "Failed" | "Aborted")
    }
}

/// Polling settings for [`SalesforceClient::wait_for_ingest_job`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// First delay between polls.
    pub initial_interval: Duration,
    /// Longest delay between polls (the interval doubles up to it).
    pub max_interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(6 * 3600),
        }
    }
}

impl PollOptions {
    /// Fast polling for tests.
    pub fn for_test() -> Self {
        PollOptions {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Which ingest result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestResultKind {
    /// `successfulResults/`: `sf__Id`, `sf__Created`, input columns.
    Successful,
    /// `failedResults/`: `sf__Id`, `sf__Error`, input columns.
    Failed,
    /// `unprocessedrecords/`: the input columns.
    Unprocessed,
}

impl IngestResultKind {
    fn path(self) -> &'static str {
        match self {
            IngestResultKind::Successful => "successfulResults/",
            IngestResultKind::Failed => "failedResults/",
            IngestResultKind::Unprocessed => "unprocessedrecords/",
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResultRow {
    /// `sf__Id` (empty for failed inserts → `None`).
    pub id: Option<String>,
    /// `sf__Created`.
    pub created: Option<bool>,
    /// `sf__Error`, parsed.
    pub error: Option<ApiErrorItem>,
    /// The echoed input values, aligned with [`IngestResults::columns`].
    pub values: Vec<String>,
}

/// A parsed ingest result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResults {
    /// Which set.
    pub kind: IngestResultKind,
    /// Input column names echoed in each row.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<IngestResultRow>,
}

impl IngestResults {
    /// The value of `column` in `row`.
    pub fn value<'a>(&self, row: &'a IngestResultRow, column: &str) -> Option<&'a str> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        row.values.get(index).map(String::as_str)
    }
}

/// Parses an ingest result CSV.
pub fn parse_ingest_results(
    kind: IngestResultKind,
    body: &[u8],
    delimiter: ColumnDelimiter,
) -> Result<IngestResults> {
    parse_ingest_result_columns(kind, body, delimiter, None)
}

/// Parses an ingest result CSV, keeping of the echoed input columns only `only` (matched
/// case-insensitively) when it is given.
pub fn parse_ingest_result_columns(
    kind: IngestResultKind,
    body: &[u8],
    delimiter: ColumnDelimiter,
    only: Option<&str>,
) -> Result<IngestResults> {
    let context = "bulk 2.0 ingest results";
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.byte())
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| SalesforceError::parse(context, e.to_string()))?
        .clone();
    let mut id_at = None;
    let mut created_at = None;
    let mut error_at = None;
    let mut data_at = Vec::new();
    let mut columns = Vec::new();
    for (index, name) in headers.iter().enumerate() {
        match name {
            "sf__Id" => id_at = Some(index),
            "sf__Created" => created_at = Some(index),
            "sf__Error" => error_at = Some(index),
            _ if name.is_empty() && headers.len() == 1 => {}
            _ if only.is_some_and(|only| !only.eq_ignore_ascii_case(name)) => {}
            _ => {
                data_at.push(index);
                columns.push(name.to_string());
            }
        }
    }
    if kind != IngestResultKind::Unprocessed
        && id_at.is_none()
        && !headers.is_empty()
        && !(headers.len() == 1 && headers.get(0) == Some(""))
    {
        return Err(SalesforceError::parse(context, "missing the sf__Id column"));
    }
    let mut rows = Vec::new();
    // One record, refilled for every row.
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| SalesforceError::parse(context, e.to_string()))?
    {
        let cell = |at: Option<usize>| at.and_then(|i| record.get(i));
        rows.push(IngestResultRow {
            id: cell(id_at).filter(|s| !s.is_empty()).map(str::to_string),
            created: cell(created_at).map(|s| s.eq_ignore_ascii_case("true")),
            error: cell(error_at)
                .filter(|s| !s.is_empty())
                .map(parse_bulk_csv_error),
            values: data_at
                .iter()
                .map(|i| record.get(*i).unwrap_or_default().to_string())
                .collect(),
        });
    }
    Ok(IngestResults {
        kind,
        columns,
        rows,
    })
}

/// One page of Bulk 2.0 query results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvPage {
    /// Column names (parent paths as written: `Account.Name`).
    pub columns: Arc<Vec<String>>,
    /// Rows (empty cells are empty strings: CSV cannot tell null from "").
    pub rows: Vec<Vec<String>>,
    /// The locator of the next page (`None` after the last).
    pub next_locator: Option<String>,
    /// `Sforce-NumberOfRecords`.
    pub number_of_records: Option<u64>,
}

/// One page of Bulk 2.0 query results as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCsvPage {
    /// The CSV body: a header line, then the rows.
    pub body: Bytes,
    /// The locator of the next page (`None` after the last).
    pub next_locator: Option<String>,
    /// `Sforce-NumberOfRecords`.
    pub number_of_records: Option<u64>,
}

/// Parses a CSV page with a header row.
pub fn parse_csv_page(
    body: &[u8],
    delimiter: ColumnDelimiter,
) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let context = "bulk query results";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.byte())
        .has_headers(true)
        .from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| SalesforceError::parse(context, e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok((columns, rows))
}

/// Largest CSV accepted per upload (Salesforce allows 150 MB after its base64 growth,
/// i.e. about 100 MB of raw CSV).
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;

/// Rows per Bulk 2.0 query results page when the caller does not say.
pub const DEFAULT_QUERY_PAGE_RECORDS: u64 = 50_000;

/// The CSV cell Salesforce reads as null on ingest.
pub const CSV_NULL: &str = "#N/A";

/// Encodes rows as ingest CSV: `None` becomes `#N/A` (null), never an empty cell (which
/// means "leave unchanged" on update, which is what `Some("")` writes); every cell that
/// needs it is quoted. Cells may be borrowed or owned text.
pub fn encode_csv<R, C, S>(
    columns: &[&str],
    rows: R,
    delimiter: ColumnDelimiter,
    line_ending: LineEnding,
) -> Result<Bytes>
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = Option<S>>,
    S: AsRef<str>,
{
    let terminator = match line_ending {
        LineEnding::Lf => csv::Terminator::Any(b'\n'),
        LineEnding::Crlf => csv::Terminator::CRLF,
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter.byte())
        .terminator(terminator)
        .from_writer(Vec::new());
    let context = "bulk 2.0 csv";
    writer
        .write_record(columns)
        .map_err(|e| SalesforceError::InvalidInput(format!("{context}: {e}")))?;
    for (index, row) in rows.into_iter().enumerate() {
        let cells: Vec<Option<S>> = row.into_iter().collect();
        if cells.len() != columns.len() {
            return Err(SalesforceError::InvalidInput(format!(
                "row {index} has {} cells for {} columns",
                cells.len(),
                columns.len()
            )));
        }
        writer
            .write_record(
                cells
                    .iter()
                    .map(|cell| cell.as_ref().map_or(CSV_NULL, AsRef::as_ref)),
            )
            .map_err(|e| SalesforceError::InvalidInput(format!("{context}: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| SalesforceError::InvalidInput(format!("{context}: {e}")))?;
    Ok(Bytes::from(bytes))
}

/// Refuses job ids that are not plain Salesforce ids (they go into URL paths).
pub(crate) fn check_job_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidInput(format!(
            "{id:?} is not a job id"
        )))
    }
}

enum LocatorState {
    Start,
    Next(String),
    Finished,
}

impl SalesforceClient {
    fn ingest_path(&self, suffix: &str) -> String {
        self.data_path(&format!("/jobs/ingest{suffix}"))
    }

    fn query_job_path(&self, suffix: &str) -> String {
        self.data_path(&format!("/jobs/query{suffix}"))
    }

    /// `POST /jobs/ingest`.
    pub async fn create_ingest_job(&self, request: &IngestJobRequest) -> Result<JobInfo> {
        check_name("object", &request.object)?;
        let mut body = json!({
            "object": request.object,
            "operation": request.operation,
            "contentType": "CSV",
            "columnDelimiter": request.column_delimiter,
            "lineEnding": request.line_ending,
        });
        match (&request.external_id_field_name, request.operation) {
            (Some(field), _) => {
                check_name("field", field)?;
                body["externalIdFieldName"] = json!(field);
            }
            (None, IngestOperation::Upsert) => {
                return Err(SalesforceError::InvalidInput(
                    "an upsert job needs externalIdFieldName".into(),
                ));
            }
            (None, _) => {}
        }
        if let Some(rule) = &request.assignment_rule_id {
            body["assignmentRuleId"] = json!(rule);
        }
        let call = Call::new(
            Method::POST,
            self.ingest_path(""),
            "bulk 2.0 create ingest job",
        )
        .json_body(&body)?;
        self.send_json(call).await
    }

    /// `PUT /jobs/ingest/{id}/batches` with CSV (expects 201).
    pub async fn upload_ingest_data(&self, job_id: &str, csv: Bytes) -> Result<()> {
        check_job_id(job_id)?;
        let call = Call::new(
            Method::PUT,
            self.ingest_path(&format!("/{job_id}/batches")),
            "bulk 2.0 upload",
        )
        .raw_body(csv, "text/csv");
        let status = self.send_empty(call).await?;
        if status != 201 {
            tracing::debug!(
                status,
                job_id,
                "bulk 2.0 upload answered with a status other than 201"
            );
        }
        Ok(())
    }

    async fn set_job_state(
        &self,
        path: String,
        state: &str,
        context: &'static str,
    ) -> Result<JobInfo> {
        let call = Call::new(Method::PATCH, path, context).json_body(&json!({"state": state}))?;
        self.send_json(call).await
    }

    /// `PATCH /jobs/ingest/{id}` `{"state":"UploadComplete"}`.
    pub async fn complete_ingest_upload(&self, job_id: &str) -> Result<JobInfo> {
        check_job_id(job_id)?;
        self.set_job_state(
            self.ingest_path(&format!("/{job_id}")),
            "UploadComplete",
            "bulk 2.0 upload complete",
        )
        .await
    }

    /// `PATCH /jobs/ingest/{id}` `{"state":"Aborted"}`.
    pub async fn abort_ingest_job(&self, job_id: &str) -> Result<JobInfo> {
        check_job_id(job_id)?;
        self.set_job_state(
            self.ingest_path(&format!("/{job_id}")),
            "Aborted",
            "bulk 2.0 abort ingest",
        )
        .await
    }

    /// `GET /jobs/ingest/{id}`.
    pub async fn get_ingest_job(&self, job_id: &str) -> Result<JobInfo> {
        check_job_id(job_id)?;
        self.send_json(Call::new(
            Method::GET,
            self.ingest_path(&format!("/{job_id}")),
            "bulk 2.0 ingest job info",
        ))
        .await
    }

    /// `DELETE /jobs/ingest/{id}`.
    pub async fn delete_ingest_job(&self, job_id: &str) -> Result<()> {
        check_job_id(job_id)?;
        self.send_empty(Call::new(
            Method::DELETE,
            self.ingest_path(&format!("/{job_id}")),
            "bulk 2.0 delete ingest job",
        ))
        .await
        .map(|_| ())
    }

    /// Polls until `JobComplete` (or fails with [`SalesforceError::JobFailed`] on `Failed`
    /// and `Aborted`).
    pub async fn wait_for_ingest_job(&self, job_id: &str, poll: PollOptions) -> Result<JobInfo> {
        check_job_id(job_id)?;
        let path = self.ingest_path(&format!("/{job_id}"));
        self.wait_job(job_id, path, poll).await
    }

    async fn wait_job(&self, job_id: &str, path: String, poll: PollOptions) -> Result<JobInfo> {
        let started = Instant::now();
        let mut interval = poll.initial_interval;
        loop {
            let job: JobInfo = self
                .send_json(Call::new(Method::GET, path.clone(), "bulk 2.0 poll job"))
                .await?;
            match job.state.as_str() {
                "JobComplete" => return Ok(job),
                "Failed" | "Aborted" => {
                    return Err(SalesforceError::JobFailed {
                        job_id: job_id.to_string(),
                        state: job.state.clone(),
                        message: job.error_message.clone().unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= poll.timeout {
                return Err(SalesforceError::JobTimeout {
                    job_id: job_id.to_string(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(poll.max_interval);
        }
    }

    /// Downloads and parses one ingest result set. With `only`, of the echoed input
    /// columns only that one (matched case-insensitively) is kept: what matching results to
    /// rows by a key needs, without a string per cell of every other column.
    pub async fn ingest_results(
        &self,
        job_id: &str,
        kind: IngestResultKind,
        delimiter: ColumnDelimiter,
        only: Option<&str>,
    ) -> Result<IngestResults> {
        check_job_id(job_id)?;
        let call = Call::new(
            Method::GET,
            self.ingest_path(&format!("/{job_id}/{}", kind.path())),
            "bulk 2.0 ingest results",
        )
        .header("accept", "text/csv")?;
        let (_, body) = self.send_bytes(call).await?;
        parse_ingest_result_columns(kind, &body, delimiter, only)
    }

    /// `POST /jobs/query` (`query` or `queryAll`).
    pub async fn create_query_job(
        &self,
        soql: &str,
        include_deleted: bool,
        delimiter: ColumnDelimiter,
        line_ending: LineEnding,
    ) -> Result<JobInfo> {
        let body = json!({
            "operation": if include_deleted { "queryAll" } else { "query" },
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": delimiter,
            "lineEnding": line_ending,
        });
        let call = Call::new(
            Method::POST,
            self.query_job_path(""),
            "bulk 2.0 create query job",
        )
        .json_body(&body)?;
        self.send_json(call).await
    }

    /// `GET /jobs/query/{id}`.
    pub async fn get_query_job(&self, job_id: &str) -> Result<JobInfo> {
        check_job_id(job_id)?;
        self.send_json(Call::new(
            Method::GET,
            self.query_job_path(&format!("/{job_id}")),
            "bulk 2.0 query job info",
        ))
        .await
    }

    /// `PATCH /jobs/query/{id}` `{"state":"Aborted"}`.
    pub async fn abort_query_job(&self, job_id: &str) -> Result<JobInfo> {
        check_job_id(job_id)?;
        self.set_job_state(
            self.query_job_path(&format!("/{job_id}")),
            "Aborted",
            "bulk 2.0 abort query",
        )
        .await
    }

    /// `DELETE /jobs/query/{id}`.
    pub async fn delete_query_job(&self, job_id: &str) -> Result<()> {
        check_job_id(job_id)?;
        self.send_empty(Call::new(
            Method::DELETE,
            self.query_job_path(&format!("/{job_id}")),
            "bulk 2.0 delete query job",
        ))
        .await
        .map(|_| ())
    }

    /// Polls a query job until `JobComplete`.
    pub async fn wait_for_query_job(&self, job_id: &str, poll: PollOptions) -> Result<JobInfo> {
        check_job_id(job_id)?;
        let path = self.query_job_path(&format!("/{job_id}"));
        self.wait_job(job_id, path, poll).await
    }

    /// Streams the results of a completed query job, one locator page at a time.
    /// `max_records` (`maxRecords`) bounds each page and so the memory held; `None` uses
    /// [`DEFAULT_QUERY_PAGE_RECORDS`].
    pub fn bulk2_query_pages(
        &self,
        job_id: &str,
        max_records: Option<u64>,
        delimiter: ColumnDelimiter,
    ) -> impl Stream<Item = Result<CsvPage>> + Send + 'static {
        self.bulk2_query_raw_pages(job_id, max_records)
            .map(move |page| {
                let page = page?;
                let (columns, rows) = parse_csv_page(&page.body, delimiter)?;
                Ok(CsvPage {
                    columns: Arc::new(columns),
                    rows,
                    next_locator: page.next_locator,
                    number_of_records: page.number_of_records,
                })
            })
            .boxed()
    }

    /// Like [`SalesforceClient::bulk2_query_pages`], but each page is the CSV body as
    /// Salesforce sent it (header line included), for callers that transform the bytes
    /// themselves instead of materializing every cell.
    pub fn bulk2_query_raw_pages(
        &self,
        job_id: &str,
        max_records: Option<u64>,
    ) -> impl Stream<Item = Result<RawCsvPage>> + Send + 'static {
        if let Err(error) = check_job_id(job_id) {
            return stream::once(async move { Err(error) }).boxed();
        }
        let client = self.clone();
        let path = self.query_job_path(&format!("/{job_id}/results"));
        stream::try_unfold((client, LocatorState::Start), move |(client, state)| {
            let path = path.clone();
            async move {
                let locator = match state {
                    LocatorState::Finished => return Ok(None),
                    LocatorState::Start => None,
                    LocatorState::Next(locator) => Some(locator),
                };
                let mut call = Call::new(Method::GET, path, "bulk 2.0 query results")
                    .header("accept", "text/csv")?;
                if let Some(locator) = &locator {
                    call = call.query("locator", locator.clone());
                }
                let max = max_records.unwrap_or(DEFAULT_QUERY_PAGE_RECORDS).max(1);
                call = call.query("maxRecords", max.to_string());
                let (headers, body) = client.send_bytes(call).await?;
                let next = headers
                    .get("sforce-locator")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && *v != "null")
                    .map(str::to_string);
                if next.is_some() && next == locator {
                    return Err(SalesforceError::parse(
                        "bulk 2.0 query results",
                        "the locator did not advance",
                    ));
                }
                let number_of_records = headers
                    .get("sforce-numberofrecords")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                let page = RawCsvPage {
                    body,
                    next_locator: next.clone(),
                    number_of_records,
                };
                let state = match next {
                    Some(locator) => LocatorState::Next(locator),
                    None => LocatorState::Finished,
                };
                Ok(Some((page, (client, state))))
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_enums_like_salesforce() {
        assert_eq!(
            serde_json::to_value(IngestOperation::HardDelete).expect("json"),
            json!("hardDelete")
        );
        assert_eq!(
            serde_json::to_value(ColumnDelimiter::Semicolon).expect("json"),
            json!("SEMICOLON")
        );
        assert_eq!(
            serde_json::to_value(LineEnding::Crlf).expect("json"),
            json!("CRLF")
        );
        let job: JobInfo = serde_json::from_str(r#"{"id":"7505e000001","operation":"insert","object":"Account","state":"Open","concurrencyMode":"Parallel","contentType":"CSV","apiVersion":60,"contentUrl":"services/data/v60.0/jobs/ingest/7505e000001/batches","lineEnding":"LF","columnDelimiter":"COMMA"}"#).expect("job");
        assert_eq!(job.column_delimiter, Some(ColumnDelimiter::Comma));
        assert!(!job.is_terminal());
    }

    #[test]
    fn parses_successful_and_failed_results() {
        let ok = b"\"sf__Id\",\"sf__Created\",Name,Ext__c\n\"001000000000001AAA\",\"true\",\"Acme, Inc\",A-1\n\"001000000000002AAA\",\"false\",Beta,A-2\n";
        let results =
            parse_ingest_results(IngestResultKind::Successful, ok, ColumnDelimiter::Comma)
                .expect("ok");
        assert_eq!(results.columns, vec!["Name", "Ext__c"]);
        assert_eq!(results.rows.len(), 2);
        assert_eq!(results.rows[0].id.as_deref(), Some("001000000000001AAA"));
        assert_eq!(results.rows[0].created, Some(true));
        assert_eq!(results.value(&results.rows[0], "Name"), Some("Acme, Inc"));
        assert_eq!(results.value(&results.rows[1], "ext__c"), Some("A-2"));
        // Keeping one echoed column (by any case): the rest are not read.
        let keyed = parse_ingest_result_columns(
            IngestResultKind::Successful,
            ok,
            ColumnDelimiter::Comma,
            Some("EXT__C"),
        )
        .expect("ok");
        assert_eq!(keyed.columns, vec!["Ext__c"]);
        assert_eq!(keyed.rows[1].values, vec!["A-2"]);
        assert_eq!(keyed.rows[1].id.as_deref(), Some("001000000000002AAA"));
        assert_eq!(keyed.rows[1].created, Some(false));
        assert_eq!(keyed.value(&keyed.rows[0], "Name"), None);
        let failed = b"\"sf__Id\",\"sf__Error\",LastName,Email\r\n\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\",,a@b.c\r\n";
        let results =
            parse_ingest_results(IngestResultKind::Failed, failed, ColumnDelimiter::Comma)
                .expect("failed");
        assert_eq!(results.rows[0].id, None);
        let error = results.rows[0].error.clone().expect("error");
        assert_eq!(error.error_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(error.fields, vec!["LastName"]);
        assert_eq!(results.value(&results.rows[0], "Email"), Some("a@b.c"));
        let unprocessed = b"Name|Ext__c\nA|1\n";
        let results = parse_ingest_results(
            IngestResultKind::Unprocessed,
            unprocessed,
            ColumnDelimiter::Pipe,
        )
        .expect("unprocessed");
        assert_eq!(results.rows[0].values, vec!["A", "1"]);
        assert!(
            parse_ingest_results(
                IngestResultKind::Successful,
                b"Name\nA\n",
                ColumnDelimiter::Comma
            )
            .is_err()
        );
        let empty = parse_ingest_results(IngestResultKind::Failed, b"", ColumnDelimiter::Comma)
            .expect("empty");
        assert!(empty.rows.is_empty());
    }

    #[test]
    fn encodes_csv_with_null_markers() {
        let rows = vec![
            vec![Some("E-1"), Some("Smith, Jr"), None],
            vec![Some("E-2"), Some("say \"hi\""), Some("")],
        ];
        let csv = encode_csv(
            &["Ext__c", "LastName", "Email"],
            rows,
            ColumnDelimiter::Comma,
            LineEnding::Crlf,
        )
        .expect("csv");
        assert_eq!(
            &csv[..],
            b"Ext__c,LastName,Email\r\nE-1,\"Smith, Jr\",#N/A\r\nE-2,\"say \"\"hi\"\"\",\r\n"
        );
        let csv = encode_csv(
            &["A", "B"],
            vec![vec![Some("x|y"), None]],
            ColumnDelimiter::Pipe,
            LineEnding::Lf,
        )
        .expect("pipe");
        assert_eq!(&csv[..], b"A|B\n\"x|y\"|#N/A\n");
        assert!(
            encode_csv(
                &["A", "B"],
                vec![vec![Some("x")]],
                ColumnDelimiter::Comma,
                LineEnding::Lf
            )
            .is_err()
        );
    }

    #[test]
    fn parses_query_pages() {
        let (columns, rows) = parse_csv_page(
            b"\"Id\",\"Name\",\"Account.Name\"\n\"003\",\"O\"\"Brien\",\"\"\n",
            ColumnDelimiter::Comma,
        )
        .expect("page");
        assert_eq!(columns, vec!["Id", "Name", "Account.Name"]);
        assert_eq!(
            rows,
            vec![vec![
                "003".to_string(),
                "O\"Brien".to_string(),
                String::new()
            ]]
        );
        let (columns, rows) = parse_csv_page(b"", ColumnDelimiter::Comma).expect("empty");
        assert!(columns.is_empty() && rows.is_empty());
        assert!(parse_csv_page(b"a,b\n1,2,3\n", ColumnDelimiter::Comma).is_err());
        assert!(check_job_id("7505e000001AbCdAAA").is_ok());
        assert!(check_job_id("../x").is_err());
    }
}
