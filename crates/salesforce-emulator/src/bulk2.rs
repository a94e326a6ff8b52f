//! Bulk API 2.0 (`/services/data/vXX.X/jobs/ingest` and `/jobs/query`), spec §6.
//!
//! Ingest: uploads are kept as raw CSV until `UploadComplete`; a background task then
//! parses them, cuts the rows into internal batches of 10,000 (counted against
//! `DailyBulkApiBatches`), applies them through the shared write path with the lock model
//! of [`crate::locks`], and fills the result CSVs. Query: the SOQL is checked (and its row
//! set snapshotted) at create time; a background task renders the CSV result, which pages
//! are then cut from by locator.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Map, Value as Json, json};

use crate::bulk::{
    self, Bulk, CsvColumns, Op, RowOutcome, csv_error, csv_record, lock, map_header, now_s,
    parse_csv, push_plain, push_quoted,
};
use crate::http::Reply;
use crate::ids;
use crate::locks::{Window, apply_batch};
use crate::state::AppState;
use crate::value::format_datetime;

/// Bulk 2.0 job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Accepting uploads.
    Open,
    /// Queued for processing.
    UploadComplete,
    /// Being processed.
    InProgress,
    /// Done.
    JobComplete,
    /// Failed (see `errorMessage`).
    Failed,
    /// Aborted by the client.
    Aborted,
}

impl JobState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }

    /// Finished (no more processing).
    pub fn terminal(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

/// `columnDelimiter` values.
pub const DELIMITERS: [(&str, u8); 6] = [
    ("COMMA", b','),
    ("TAB", b'\t'),
    ("PIPE", b'|'),
    ("SEMICOLON", b';'),
    ("CARET", b'^'),
    ("BACKQUOTE", b'`'),
];

/// CSV format options of a job.
#[derive(Debug, Clone)]
pub struct Format {
    /// `columnDelimiter` name.
    pub delimiter: &'static str,
    /// Delimiter byte.
    pub delim: u8,
    /// `lineEnding`: `LF` or `CRLF`.
    pub crlf: bool,
}

impl Format {
    fn eol(&self) -> &'static [u8] {
        if self.crlf { b"\r\n" } else { b"\n" }
    }
    fn line_ending(&self) -> &'static str {
        if self.crlf { "CRLF" } else { "LF" }
    }
}

fn parse_format(m: &Map<String, Json>) -> Result<Format, Reply> {
    let delim_name = m
        .get("columnDelimiter")
        .and_then(Json::as_str)
        .unwrap_or("COMMA");
    let Some((name, delim)) = DELIMITERS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(delim_name))
    else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            &format!(
                "Cannot deserialize instance of ColumnDelimiterEnum from VALUE_STRING value {delim_name}"
            ),
        ));
    };
    let le = m.get("lineEnding").and_then(Json::as_str).unwrap_or("LF");
    let crlf = match le.to_ascii_uppercase().as_str() {
        "LF" => false,
        "CRLF" => true,
        _ => {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                &format!(
                    "Cannot deserialize instance of LineEndingEnum from VALUE_STRING value {le}"
                ),
            ));
        }
    };
    if let Some(ct) = m.get("contentType").and_then(Json::as_str)
        && !ct.eq_ignore_ascii_case("CSV")
    {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("InvalidJob : Unsupported content type: {ct}. Only CSV is supported"),
        ));
    }
    Ok(Format {
        delimiter: name,
        delim: *delim,
        crlf,
    })
}

/// A Bulk 2.0 ingest job.
#[derive(Debug)]
pub struct IngestJob {
    /// 18-char id (`750...`).
    pub id: String,
    /// Object API name.
    pub object: String,
    /// Object index.
    pub obj: usize,
    /// Operation.
    pub op: Op,
    /// Upsert key field (canonical name).
    pub ext_id: Option<String>,
    /// CSV format.
    pub format: Format,
    /// `NN.0`.
    pub api_version: String,
    /// Creator (18-char user id).
    pub created_by: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// State.
    pub state: JobState,
    /// Why it failed.
    pub error_message: Option<String>,
    /// `assignmentRuleId`, echoed.
    pub assignment_rule_id: Option<String>,
    uploads: Vec<Vec<u8>>,
    /// Rows processed so far.
    pub processed: u64,
    /// Rows failed so far.
    pub failed: u64,
    /// Processing time (ms).
    pub total_ms: u64,
    header: Vec<String>,
    success: Vec<u8>,
    failures: Vec<u8>,
    unprocessed: Vec<u8>,
}

/// A Bulk 2.0 query job.
#[derive(Debug)]
pub struct QueryJob {
    /// 18-char id.
    pub id: String,
    /// `query` or `queryAll`.
    pub op: Op,
    /// SOQL text.
    pub query: String,
    /// Root object.
    pub object: String,
    obj: usize,
    /// CSV format.
    pub format: Format,
    /// `NN.0`.
    pub api_version: String,
    /// Creator.
    pub created_by: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// State.
    pub state: JobState,
    /// Why it failed.
    pub error_message: Option<String>,
    cols: CsvColumns,
    pending: Option<Vec<u32>>,
    header: Vec<u8>,
    data: Arc<Vec<u8>>,
    ends: Arc<Vec<usize>>,
    /// Rows produced.
    pub processed: u64,
    /// Processing time (ms).
    pub total_ms: u64,
}

fn api_num(v: &str) -> Json {
    v.parse::<f64>().map_or(json!(v), |n| json!(n))
}

fn not_found() -> Reply {
    crate::http::not_found()
}

fn bad_state(msg: &str) -> Reply {
    Reply::error(StatusCode::CONFLICT, "INVALIDJOBSTATE", msg)
}

impl IngestJob {
    fn info(&self, full: bool) -> Json {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("operation".into(), json!(self.op.as_str()));
        m.insert("object".into(), json!(self.object));
        m.insert("createdById".into(), json!(self.created_by));
        m.insert(
            "createdDate".into(),
            json!(format_datetime(self.created_ms)),
        );
        m.insert(
            "systemModstamp".into(),
            json!(format_datetime(self.modstamp_ms)),
        );
        m.insert("state".into(), json!(self.state.as_str()));
        if let Some(e) = &self.ext_id {
            m.insert("externalIdFieldName".into(), json!(e));
        }
        m.insert("concurrencyMode".into(), json!("Parallel"));
        m.insert("contentType".into(), json!("CSV"));
        m.insert("apiVersion".into(), api_num(&self.api_version));
        if full {
            m.insert("jobType".into(), json!("V2Ingest"));
        }
        m.insert(
            "contentUrl".into(),
            json!(format!(
                "services/data/v{}/jobs/ingest/{}/batches",
                self.api_version, self.id
            )),
        );
        m.insert("lineEnding".into(), json!(self.format.line_ending()));
        m.insert("columnDelimiter".into(), json!(self.format.delimiter));
        if let Some(a) = &self.assignment_rule_id {
            m.insert("assignmentRuleId".into(), json!(a));
        }
        if full {
            m.insert("numberRecordsProcessed".into(), json!(self.processed));
            m.insert("numberRecordsFailed".into(), json!(self.failed));
            m.insert("retries".into(), json!(0));
            m.insert("totalProcessingTime".into(), json!(self.total_ms));
            m.insert("apiActiveProcessingTime".into(), json!(self.total_ms));
            m.insert("apexProcessingTime".into(), json!(0));
            if let Some(e) = &self.error_message {
                m.insert("errorMessage".into(), json!(e));
            }
        }
        Json::Object(m)
    }

    fn list_entry(&self) -> Json {
        let mut j = self.info(false);
        if let Json::Object(m) = &mut j {
            m.insert("jobType".into(), json!("V2Ingest"));
        }
        j
    }
}

impl QueryJob {
    fn info(&self, full: bool) -> Json {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("operation".into(), json!(self.op.as_str()));
        m.insert("object".into(), json!(self.object));
        m.insert("createdById".into(), json!(self.created_by));
        m.insert(
            "createdDate".into(),
            json!(format_datetime(self.created_ms)),
        );
        m.insert(
            "systemModstamp".into(),
            json!(format_datetime(self.modstamp_ms)),
        );
        m.insert("state".into(), json!(self.state.as_str()));
        m.insert("concurrencyMode".into(), json!("Parallel"));
        m.insert("contentType".into(), json!("CSV"));
        m.insert("apiVersion".into(), api_num(&self.api_version));
        if full {
            m.insert("jobType".into(), json!("V2Query"));
        }
        m.insert("lineEnding".into(), json!(self.format.line_ending()));
        m.insert("columnDelimiter".into(), json!(self.format.delimiter));
        if full {
            m.insert("numberRecordsProcessed".into(), json!(self.processed));
            m.insert("retries".into(), json!(0));
            m.insert("totalProcessingTime".into(), json!(self.total_ms));
            m.insert("isPkChunkingSupported".into(), json!(true));
            if let Some(e) = &self.error_message {
                m.insert("errorMessage".into(), json!(e));
            }
        }
        Json::Object(m)
    }
}

/// Fails a Bulk 2.0 job now (admin fault), if it exists and is not finished.
pub fn fail_now(bulk: &Bulk, id: &str, msg: &str, now: i64) {
    if let Some(j) = lock(&bulk.ingest).get(id) {
        let mut j = lock(j);
        if !j.state.terminal() {
            j.state = JobState::Failed;
            j.error_message = Some(msg.to_string());
            j.modstamp_ms = now;
            header_from_uploads(&mut j);
            let pending = std::mem::take(&mut j.uploads);
            for u in pending {
                push_unprocessed_raw(&mut j.unprocessed, &u);
            }
        }
    }
    if let Some(j) = lock(&bulk.queries).get(id) {
        let mut j = lock(j);
        if !j.state.terminal() {
            j.state = JobState::Failed;
            j.error_message = Some(msg.to_string());
            j.modstamp_ms = now;
            j.pending = None;
        }
    }
}

/// Handles `/jobs/...` (segments after `jobs`).
pub fn handle(
    st: &Arc<AppState>,
    method: &Method,
    segs: &[&str],
    v: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let bulk = bulk::of(st);
    bulk::expire(&bulk, st.clock.now_ms());
    match segs {
        ["ingest"] => match method.as_str() {
            "POST" if bulk::content_type(headers) == "multipart/form-data" => {
                match multipart(headers, body) {
                    Some((job, csv)) => create_ingest(st, &bulk, v, job, Some(csv)),
                    None => Reply::error(
                        StatusCode::BAD_REQUEST,
                        "INVALIDJOB",
                        "InvalidJob : A multipart request needs a job part and a content part",
                    ),
                }
            }
            "POST" => create_ingest(st, &bulk, v, body, None),
            "GET" => list(&bulk, query, true),
            _ => method_not_allowed(method, "GET, POST"),
        },
        ["query"] => match method.as_str() {
            "POST" => create_query(st, &bulk, v, body),
            "GET" => list(&bulk, query, false),
            _ => method_not_allowed(method, "GET, POST"),
        },
        ["ingest", id, rest @ ..] => {
            let Some(id) = bulk::norm_id(id) else {
                return not_found();
            };
            let Some(job) = lock(&bulk.ingest).get(&id).cloned() else {
                return not_found();
            };
            ingest_job(st, &bulk, &job, method, rest, headers, body)
        }
        ["query", id, rest @ ..] => {
            let Some(id) = bulk::norm_id(id) else {
                return not_found();
            };
            let Some(job) = lock(&bulk.queries).get(&id).cloned() else {
                return not_found();
            };
            query_job(st, &bulk, &job, method, rest, query, body)
        }
        _ => not_found(),
    }
}

fn method_not_allowed(method: &Method, allowed: &str) -> Reply {
    Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
}

fn list(bulk: &Bulk, query: &str, ingest: bool) -> Reply {
    let p = crate::auth::params(query.as_bytes());
    let want = |k: &str| {
        p.iter()
            .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let job_type = want("jobType");
    // every Bulk 2.0 job is Parallel and none is PK-chunked
    if want("concurrencyMode").is_some_and(|m| !m.eq_ignore_ascii_case("Parallel"))
        || want("isPkChunkingEnabled").is_some_and(|m| m.eq_ignore_ascii_case("true"))
    {
        return Reply::json(
            StatusCode::OK,
            json!({"done": true, "records": [], "nextRecordsUrl": null}),
        );
    }
    let mut rows: Vec<(i64, String, Json)> = Vec::new();
    if ingest {
        for j in lock(&bulk.ingest).values() {
            let j = lock(j);
            rows.push((j.created_ms, j.id.clone(), j.list_entry()));
        }
    } else {
        for j in lock(&bulk.queries).values() {
            let j = lock(j);
            let mut e = j.info(false);
            if let Json::Object(m) = &mut e {
                m.insert("jobType".into(), json!("V2Query"));
            }
            rows.push((j.created_ms, j.id.clone(), e));
        }
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let records: Vec<Json> = rows
        .into_iter()
        .map(|(_, _, j)| j)
        .filter(|j| {
            job_type.as_deref().is_none_or(|t| {
                j.get("jobType")
                    .and_then(Json::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        json!({"done": true, "records": records, "nextRecordsUrl": null}),
    )
}

fn create_ingest(
    st: &Arc<AppState>,
    bulk: &Arc<Bulk>,
    v: &str,
    body: &[u8],
    data: Option<&[u8]>,
) -> Reply {
    if st.bulk_batches_used.load(Ordering::Relaxed) >= bulk::DAILY_BULK_BATCHES {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "DailyBulkApiBatches Limit exceeded.",
        );
    }
    let Some(m) = bulk::json_object(body) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "Unexpected character: the request body must be a JSON object",
        );
    };
    let format = match parse_format(&m) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(op_name) = m.get("operation").and_then(Json::as_str) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "InvalidJob : Required field operation is missing",
        );
    };
    let op = match Op::parse(op_name) {
        Some(op) if !op.is_query() => op,
        _ => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOB",
                &format!("InvalidJob : Invalid operation: {op_name}"),
            );
        }
    };
    let Some(object) = m.get("object").and_then(Json::as_str) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "InvalidJob : Required field object is missing",
        );
    };
    let org = st.org();
    let Some(obj) = org.obj(object) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALIDENTITY",
            &format!("InvalidEntity : Entity '{object}' is not supported by the Bulk API."),
        );
    };
    let def = org.def(obj);
    let mut ext_id = None;
    if op == Op::Upsert {
        let Some(e) = m
            .get("externalIdFieldName")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOB",
                "InvalidJob : External ID field is required for upsert operation",
            );
        };
        let Some(col) = def.field(e) else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOB",
                &format!("InvalidJob : Field name not found : {e}"),
            );
        };
        let f = &def.fields[col];
        if col != 0 && !f.external_id && !f.id_lookup {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOB",
                &format!(
                    "InvalidJob : The field {} is not an external id field on {}",
                    f.name, def.name
                ),
            );
        }
        ext_id = Some(f.name.clone());
    }
    let now = now_s(st);
    let id = bulk.new_id("750", org.pod);
    let job = IngestJob {
        id: id.clone(),
        object: def.name.clone(),
        obj,
        op,
        ext_id,
        format,
        api_version: v.to_string(),
        created_by: ids::to18(&org.user_id),
        created_ms: now,
        modstamp_ms: now,
        state: JobState::Open,
        error_message: None,
        assignment_rule_id: m
            .get("assignmentRuleId")
            .and_then(Json::as_str)
            .map(str::to_string),
        uploads: Vec::new(),
        processed: 0,
        failed: 0,
        total_ms: 0,
        header: Vec::new(),
        success: Vec::new(),
        failures: Vec::new(),
        unprocessed: Vec::new(),
    };
    drop(org);
    let info = job.info(false);
    let job = Arc::new(Mutex::new(job));
    lock(&bulk.ingest).insert(id, job.clone());
    if let Some(csv) = data {
        // multipart create: the data came with the job, which is UploadComplete at once
        let mut j = lock(&job);
        j.uploads.push(csv.to_vec());
        j.state = JobState::UploadComplete;
        let info = j.info(false);
        drop(j);
        spawn_ingest(st, bulk.clone(), job);
        return Reply::json(StatusCode::OK, info);
    }
    Reply::json(StatusCode::OK, info)
}

/// The `job` and `content` parts of a `multipart/form-data` body.
fn multipart<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = ct.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    })?;
    let delim = format!("--{boundary}");
    let (mut job, mut content) = (None, None);
    let mut rest = body;
    while let Some(pos) = find(rest, delim.as_bytes()) {
        rest = &rest[pos + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(end) = find(rest, delim.as_bytes()) else {
            break;
        };
        let part = &rest[..end];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).to_ascii_lowercase();
        let data = &part[split + 4..];
        let data = data.strip_suffix(b"\r\n").unwrap_or(data);
        if head.contains("name=\"job\"") {
            job = Some(data);
        } else if head.contains("name=\"content\"") {
            content = Some(data);
        }
    }
    Some((job?, content?))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ingest_job(
    st: &Arc<AppState>,
    bulk: &Arc<Bulk>,
    job: &Arc<Mutex<IngestJob>>,
    method: &Method,
    rest: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let now = now_s(st);
    match (method.as_str(), rest) {
        ("GET", []) => Reply::json(StatusCode::OK, lock(job).info(true)),
        ("PATCH", []) => {
            let Some(m) = bulk::json_object(body) else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    "Unexpected character: the request body must be a JSON object",
                );
            };
            let want = m.get("state").and_then(Json::as_str).unwrap_or("");
            let mut j = lock(job);
            match want {
                "UploadComplete" => {
                    if j.state != JobState::Open {
                        return bad_state(&format!(
                            "InvalidJobState : Job {} is in state {}, it cannot be set to UploadComplete",
                            j.id,
                            j.state.as_str()
                        ));
                    }
                    j.state = JobState::UploadComplete;
                    j.modstamp_ms = now;
                    let info = j.info(false);
                    drop(j);
                    spawn_ingest(st, bulk.clone(), job.clone());
                    Reply::json(StatusCode::OK, info)
                }
                "Aborted" => {
                    if j.state.terminal() {
                        return bad_state(&format!(
                            "InvalidJobState : Job {} is already {}",
                            j.id,
                            j.state.as_str()
                        ));
                    }
                    j.state = JobState::Aborted;
                    j.modstamp_ms = now;
                    header_from_uploads(&mut j);
                    let pending = std::mem::take(&mut j.uploads);
                    for u in pending {
                        push_unprocessed_raw(&mut j.unprocessed, &u);
                    }
                    Reply::json(StatusCode::OK, j.info(false))
                }
                other => Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALIDJOBSTATE",
                    &format!("InvalidJobState : Invalid state requested: {other}"),
                ),
            }
        }
        ("DELETE", []) => {
            let mut j = lock(job);
            if matches!(j.state, JobState::UploadComplete | JobState::InProgress) {
                return bad_state(&format!(
                    "InvalidJobState : Job {} is {}; abort it or wait for it to finish before deleting it",
                    j.id,
                    j.state.as_str()
                ));
            }
            j.state = JobState::Aborted;
            let id = j.id.clone();
            drop(j);
            lock(&bulk.ingest).remove(&id);
            lock(&bulk.faults).remove(&id);
            Reply::empty(StatusCode::NO_CONTENT)
        }
        ("PUT", ["batches"]) => {
            let ct = bulk::content_type(headers);
            if !ct.is_empty() && ct != "text/csv" {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALIDBATCH",
                    &format!("InvalidBatch : Unsupported content type {ct}; use text/csv"),
                );
            }
            if body.len() > 150 * 1024 * 1024 {
                return Reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "INVALIDBATCH",
                    "InvalidBatch : The upload exceeds 150 MB",
                );
            }
            let mut j = lock(job);
            if j.state != JobState::Open {
                return bad_state(&format!(
                    "InvalidJobState : Job {} is not Open (it is {}); data can only be uploaded to Open jobs",
                    j.id,
                    j.state.as_str()
                ));
            }
            j.uploads.push(body.to_vec());
            j.modstamp_ms = now;
            Reply::empty(StatusCode::CREATED)
        }
        ("GET", [r]) => {
            let r = r.to_ascii_lowercase();
            let j = lock(job);
            let eol = j.format.eol();
            let d = j.format.delim;
            let mut out = Vec::new();
            let (first, second, rows) = match r.as_str() {
                "successfulresults" => (Some("sf__Id"), Some("sf__Created"), &j.success),
                "failedresults" => (Some("sf__Id"), Some("sf__Error"), &j.failures),
                "unprocessedrecords" => (None, None, &j.unprocessed),
                _ => return not_found(),
            };
            if let (Some(a), Some(b)) = (first, second) {
                push_quoted(&mut out, a);
                out.push(d);
                push_quoted(&mut out, b);
                for h in &j.header {
                    out.push(d);
                    push_plain(&mut out, h, d);
                }
                out.extend_from_slice(eol);
            } else if !j.header.is_empty() {
                for (i, h) in j.header.iter().enumerate() {
                    if i > 0 {
                        out.push(d);
                    }
                    push_plain(&mut out, h, d);
                }
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(rows);
            Reply {
                status: StatusCode::OK,
                body: crate::http::ReplyBody::Raw("text/csv", out),
                headers: Vec::new(),
            }
        }
        (_, [] | ["batches"]) => method_not_allowed(method, "GET, PATCH, DELETE, PUT"),
        _ => not_found(),
    }
}

/// Takes the header of the first upload when the job has none yet (for unprocessed records
/// of jobs that never got parsed).
fn header_from_uploads(j: &mut IngestJob) {
    if !j.header.is_empty() {
        return;
    }
    let Some(first) = j.uploads.first() else {
        return;
    };
    let line = first.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Ok(d) = parse_csv(line, j.format.delim) {
        j.header = d.header;
    }
}

/// Adds the data lines of a raw upload (header dropped) to the unprocessed records.
fn push_unprocessed_raw(out: &mut Vec<u8>, upload: &[u8]) {
    if let Some(pos) = upload.iter().position(|b| *b == b'\n') {
        out.extend_from_slice(&upload[pos + 1..]);
    }
}

fn line_ending_error(upload: &[u8], crlf: bool) -> Option<String> {
    let pos = upload.iter().position(|b| *b == b'\n')?;
    let has_cr = pos > 0 && upload[pos - 1] == b'\r';
    if has_cr != crlf {
        Some(format!(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {}",
            if crlf { "CRLF" } else { "LF" }
        ))
    } else {
        None
    }
}

fn finish_failed(job: &Mutex<IngestJob>, msg: String, now: i64, started: Instant) {
    let mut j = lock(job);
    if j.state.terminal() {
        return;
    }
    header_from_uploads(&mut j);
    j.state = JobState::Failed;
    j.error_message = Some(msg);
    j.modstamp_ms = now;
    j.total_ms = started.elapsed().as_millis() as u64;
    let pending = std::mem::take(&mut j.uploads);
    for u in pending {
        push_unprocessed_raw(&mut j.unprocessed, &u);
    }
}

fn spawn_ingest(st: &Arc<AppState>, bulk: Arc<Bulk>, job: Arc<Mutex<IngestJob>>) {
    let weak = Arc::downgrade(st);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let cfg = bulk.config();
        tokio::time::sleep(Duration::from_millis(cfg.start_delay_ms)).await;
        let started = Instant::now();
        let id = lock(&job).id.clone();
        let Some(st) = weak.upgrade() else { return };
        if let Some(m) = bulk::checkpoint(&bulk, &id).await {
            finish_failed(&job, m, now_s(&st), started);
            return;
        }
        let (uploads, format, object, op, ext) = {
            let mut j = lock(&job);
            if j.state != JobState::UploadComplete {
                return;
            }
            j.state = JobState::InProgress;
            j.modstamp_ms = now_s(&st);
            (
                std::mem::take(&mut j.uploads),
                j.format.clone(),
                j.object.clone(),
                j.op,
                j.ext_id.clone(),
            )
        };
        drop(st);
        // parse every upload; they must share one header
        let parse_weak = weak.clone();
        let object_p = object.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let parse = |uploads: &[Vec<u8>]| -> Result<_, String> {
                let st = parse_weak.upgrade().ok_or_else(String::new)?;
                let mut header: Option<Vec<String>> = None;
                let mut rows = Vec::new();
                for u in uploads {
                    if let Some(e) = line_ending_error(u, format.crlf) {
                        return Err(e);
                    }
                    let data = parse_csv(u, format.delim)?;
                    match &header {
                        None => header = Some(data.header.clone()),
                        Some(h) if *h != data.header => {
                            return Err(
                                "InvalidBatch : Every upload of a job must have the same header"
                                    .into(),
                            );
                        }
                        Some(_) => {}
                    }
                    rows.extend(data.rows);
                }
                let header = header.unwrap_or_default();
                let cols = if header.is_empty() {
                    Vec::new()
                } else {
                    let org = st.org();
                    let (obj, _) = bulk::resolve_target(&org, &object_p, None)
                        .map_err(|e| format!("InvalidBatch : {}", e.message))?;
                    map_header(&org, obj, &header)?
                };
                Ok((header, cols, rows))
            };
            // on failure the raw uploads come back: they are the unprocessed records
            parse(&uploads).map_err(|e| (e, uploads))
        })
        .await;
        let Some(st) = weak.upgrade() else { return };
        let (header, cols, rows) = match parsed {
            Ok(Ok(x)) => x,
            Ok(Err((msg, uploads))) => {
                lock(&job).uploads = uploads;
                finish_failed(&job, msg, now_s(&st), started);
                return;
            }
            Err(e) => {
                finish_failed(
                    &job,
                    format!("InternalServerError : {e}"),
                    now_s(&st),
                    started,
                );
                return;
            }
        };
        {
            let mut j = lock(&job);
            j.uploads.clear();
            j.header = header;
        }
        let rows = Arc::new(rows);
        let cols = Arc::new(cols);
        let batch = cfg.batch_size.max(1);
        let nbatches = rows.len().div_ceil(batch);
        st.bulk_batches_used
            .fetch_add(nbatches as u64, Ordering::Relaxed);
        drop(st);
        let par = cfg.locks.parallelism.max(1);
        let mut b = 0;
        while b < nbatches {
            let stop = bulk::checkpoint(&bulk, &id).await;
            let Some(st) = weak.upgrade() else { return };
            if let Some(m) = stop {
                finish_failed(&job, m, now_s(&st), started);
                push_rows_unprocessed(&job, &rows, b * batch, &format);
                return;
            }
            if lock(&job).state != JobState::InProgress {
                push_rows_unprocessed(&job, &rows, b * batch, &format);
                return;
            }
            let first = b;
            let last = (b + par).min(nbatches);
            b = last;
            let (rows2, cols2, cfg2, st2) = (rows.clone(), cols.clone(), cfg.clone(), st.clone());
            let (object2, ext2) = (object.clone(), ext.clone());
            drop(st);
            let res = tokio::task::spawn_blocking(move || {
                let mut window = Window::new();
                let mut out: Vec<(usize, RowOutcome)> = Vec::new();
                for bi in first..last {
                    let pos = window.add_batch();
                    let lo = bi * batch;
                    let hi = ((bi + 1) * batch).min(rows2.len());
                    let recs: Vec<Map<String, Json>> = rows2[lo..hi]
                        .iter()
                        .map(|r| csv_record(&cols2, r))
                        .collect();
                    let ctx = st2.ctx();
                    let fault = || st2.lock_fault();
                    let mut org = st2.org_mut();
                    let outcomes = match bulk::resolve_target(&org, &object2, ext2.as_deref()) {
                        Ok((obj, ext_col)) => apply_batch(
                            &mut org,
                            &mut window,
                            pos,
                            &cfg2.locks,
                            &fault,
                            obj,
                            op,
                            ext_col,
                            recs,
                            ctx,
                        ),
                        Err(e) => recs
                            .iter()
                            .map(|_| RowOutcome::fail(None, e.clone()))
                            .collect(),
                    };
                    drop(org);
                    out.extend(outcomes.into_iter().enumerate().map(|(i, o)| (lo + i, o)));
                }
                out
            })
            .await;
            let Ok(outcomes) = res else {
                let Some(st) = weak.upgrade() else { return };
                finish_failed(
                    &job,
                    "InternalServerError : batch processing failed".into(),
                    now_s(&st),
                    started,
                );
                return;
            };
            let mut j = lock(&job);
            let eol = format.eol();
            let d = format.delim;
            for (i, o) in outcomes {
                let row = &rows[i];
                j.processed += 1;
                let buf = if o.error.is_some() {
                    j.failed += 1;
                    &mut j.failures
                } else {
                    &mut j.success
                };
                push_quoted(buf, o.id.as_deref().unwrap_or(""));
                buf.push(d);
                match &o.error {
                    Some(e) => push_quoted(buf, &csv_error(e)),
                    None => push_quoted(buf, if o.created { "true" } else { "false" }),
                }
                for cell in row.iter() {
                    buf.push(d);
                    push_quoted(buf, cell);
                }
                buf.extend_from_slice(eol);
            }
        }
        let Some(st) = weak.upgrade() else { return };
        let mut j = lock(&job);
        if j.state == JobState::InProgress {
            j.state = JobState::JobComplete;
            j.modstamp_ms = now_s(&st);
            j.total_ms = started.elapsed().as_millis() as u64;
        }
    });
}

fn push_rows_unprocessed(
    job: &Mutex<IngestJob>,
    rows: &[csv::StringRecord],
    from: usize,
    f: &Format,
) {
    let mut j = lock(job);
    for r in rows.iter().skip(from) {
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                j.unprocessed.push(f.delim);
            }
            push_quoted(&mut j.unprocessed, c);
        }
        j.unprocessed.extend_from_slice(f.eol());
    }
}

// ---------------------------------------------------------------------------------------
// Query jobs

fn create_query(st: &Arc<AppState>, bulk: &Arc<Bulk>, v: &str, body: &[u8]) -> Reply {
    if st.bulk_query_jobs_used.load(Ordering::Relaxed) >= bulk::DAILY_BULK_V2_QUERY_JOBS {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "DailyBulkV2QueryJobs Limit exceeded.",
        );
    }
    let Some(m) = bulk::json_object(body) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "Unexpected character: the request body must be a JSON object",
        );
    };
    let format = match parse_format(&m) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let op = match m.get("operation").and_then(Json::as_str).map(Op::parse) {
        Some(Some(op)) if op.is_query() => op,
        _ => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOB",
                "InvalidJob : operation must be query or queryAll",
            );
        }
    };
    let Some(soql) = m.get("query").and_then(Json::as_str) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "InvalidJob : Required field query is missing",
        );
    };
    let now = st.clock.now_ms();
    let org = st.org();
    let (ast, cols) = match bulk::prepare_query(&org, soql) {
        Ok(x) => x,
        Err((code, msg)) => return Reply::error(StatusCode::BAD_REQUEST, code, &msg),
    };
    let (obj, rows) = match bulk::run_query(&org, &ast, soql, op == Op::QueryAll, now) {
        Ok(x) => x,
        Err((code, msg)) => return Reply::error(StatusCode::BAD_REQUEST, code, &msg),
    };
    st.bulk_query_jobs_used.fetch_add(1, Ordering::Relaxed);
    let now = now_s(st);
    let id = bulk.new_id("750", org.pod);
    let header = bulk::csv_header(&cols, format.delim, format.eol());
    let job = QueryJob {
        id: id.clone(),
        op,
        query: soql.to_string(),
        object: org.def(obj).name.clone(),
        obj,
        format,
        api_version: v.to_string(),
        created_by: ids::to18(&org.user_id),
        created_ms: now,
        modstamp_ms: now,
        state: JobState::UploadComplete,
        error_message: None,
        cols,
        pending: Some(rows),
        header,
        data: Arc::new(Vec::new()),
        ends: Arc::new(Vec::new()),
        processed: 0,
        total_ms: 0,
    };
    drop(org);
    let info = job.info(false);
    let job = Arc::new(Mutex::new(job));
    lock(&bulk.queries).insert(id, job.clone());
    spawn_query(st, bulk.clone(), job);
    Reply::json(StatusCode::OK, info)
}

fn spawn_query(st: &Arc<AppState>, bulk: Arc<Bulk>, job: Arc<Mutex<QueryJob>>) {
    let weak = Arc::downgrade(st);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let cfg = bulk.config();
        tokio::time::sleep(Duration::from_millis(cfg.start_delay_ms)).await;
        let started = Instant::now();
        let id = lock(&job).id.clone();
        let stop = bulk::checkpoint(&bulk, &id).await;
        let Some(st) = weak.upgrade() else { return };
        let fail = |msg: String, now: i64| {
            let mut j = lock(&job);
            if !j.state.terminal() {
                j.state = JobState::Failed;
                j.error_message = Some(msg);
                j.modstamp_ms = now;
                j.pending = None;
            }
        };
        if let Some(m) = stop {
            fail(m, now_s(&st));
            return;
        }
        let (rows, obj, object_q, cols, format) = {
            let mut j = lock(&job);
            if j.state != JobState::UploadComplete {
                return;
            }
            let Some(rows) = j.pending.take() else { return };
            j.state = JobState::InProgress;
            j.modstamp_ms = now_s(&st);
            (
                rows,
                j.obj,
                j.object.clone(),
                j.cols.clone(),
                j.format.clone(),
            )
        };
        if let Some(limit) = cfg.query_timeout_rows
            && rows.len() > limit
        {
            fail(
                "QUERY_TIMEOUT : Your query request was running for too long.".into(),
                now_s(&st),
            );
            return;
        }
        drop(st);
        let w2 = weak.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let st = w2.upgrade()?;
            let now = st.clock.now_ms();
            let mut data = Vec::with_capacity(rows.len() * 16 * cols.paths.len().max(1));
            let mut ends = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(50_000) {
                let org = st.org();
                if org.obj(&object_q) != Some(obj) {
                    return None;
                }
                bulk::render_csv_rows(
                    &org,
                    obj,
                    chunk,
                    &cols,
                    now,
                    format.delim,
                    format.eol(),
                    &mut data,
                    &mut ends,
                );
            }
            Some((data, ends))
        })
        .await;
        let Some(st) = weak.upgrade() else { return };
        let Ok(Some((data, ends))) = rendered else {
            fail(
                "InternalServerError : query processing failed".into(),
                now_s(&st),
            );
            return;
        };
        bulk.query_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut j = lock(&job);
        if j.state == JobState::InProgress {
            j.processed = ends.len() as u64;
            j.data = Arc::new(data);
            j.ends = Arc::new(ends);
            j.state = JobState::JobComplete;
            j.modstamp_ms = now_s(&st);
            j.total_ms = started.elapsed().as_millis() as u64;
        }
    });
}

/// Locator text for a row offset (base64 of the decimal offset, like Salesforce's).
pub fn encode_locator(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(offset.to_string())
}

fn decode_locator(s: &str) -> Option<usize> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    std::str::from_utf8(&b).ok()?.parse().ok()
}

fn query_job(
    st: &Arc<AppState>,
    bulk: &Arc<Bulk>,
    job: &Arc<Mutex<QueryJob>>,
    method: &Method,
    rest: &[&str],
    query: &str,
    body: &[u8],
) -> Reply {
    let now = now_s(st);
    match (method.as_str(), rest) {
        ("GET", []) => Reply::json(StatusCode::OK, lock(job).info(true)),
        ("PATCH", []) => {
            let want = bulk::json_object(body)
                .and_then(|m| m.get("state").and_then(Json::as_str).map(str::to_string))
                .unwrap_or_default();
            if want != "Aborted" {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALIDJOBSTATE",
                    &format!("InvalidJobState : Invalid state requested: {want}"),
                );
            }
            let mut j = lock(job);
            if j.state.terminal() {
                return bad_state(&format!(
                    "InvalidJobState : Job {} is already {}",
                    j.id,
                    j.state.as_str()
                ));
            }
            j.state = JobState::Aborted;
            j.pending = None;
            j.modstamp_ms = now;
            Reply::json(StatusCode::OK, j.info(false))
        }
        ("DELETE", []) => {
            let mut j = lock(job);
            if j.state == JobState::InProgress {
                return bad_state(&format!(
                    "InvalidJobState : Job {} is InProgress; abort it before deleting it",
                    j.id
                ));
            }
            j.state = JobState::Aborted;
            j.pending = None;
            let id = j.id.clone();
            drop(j);
            lock(&bulk.queries).remove(&id);
            lock(&bulk.faults).remove(&id);
            Reply::empty(StatusCode::NO_CONTENT)
        }
        ("GET", ["results"]) => {
            let p = crate::auth::params(query.as_bytes());
            let get = |k: &str| {
                p.iter()
                    .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty() && v != "null")
            };
            let (data, ends, header, state) = {
                let j = lock(job);
                (j.data.clone(), j.ends.clone(), j.header.clone(), j.state)
            };
            if state != JobState::JobComplete {
                return bad_state(&format!(
                    "InvalidJobState : The job is {}; results are available once it is JobComplete",
                    state.as_str()
                ));
            }
            let start = match get("locator") {
                None => 0,
                Some(l) => match decode_locator(&l) {
                    Some(n) if n <= ends.len() => n,
                    _ => {
                        return Reply::error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_QUERY_LOCATOR",
                            "invalid query locator",
                        );
                    }
                },
            };
            let cfg = bulk.config();
            let by_size = get("maxRecords").is_none();
            let max = match get("maxRecords") {
                None => cfg.default_page_size,
                Some(m) => match m.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Reply::error(
                            StatusCode::BAD_REQUEST,
                            "INVALIDJOB",
                            &format!("InvalidJob : maxRecords must be a positive integer: {m}"),
                        );
                    }
                },
            };
            let mut end = start.saturating_add(max).min(ends.len());
            let lo = if start == 0 { 0 } else { ends[start - 1] };
            if by_size {
                // without maxRecords Salesforce sizes pages by bytes: stop before the row
                // that would cross the cap (at least one row per page)
                let cap = lo.saturating_add(cfg.default_page_bytes);
                let fits = start + ends[start..end].partition_point(|e| *e <= cap);
                end = fits.max((start + 1).min(end));
            }
            let hi = if end == 0 { 0 } else { ends[end - 1] };
            let mut out = Vec::with_capacity(header.len() + hi - lo);
            out.extend_from_slice(&header);
            out.extend_from_slice(&data[lo..hi]);
            let locator = if end < ends.len() {
                encode_locator(end)
            } else {
                "null".to_string()
            };
            Reply {
                status: StatusCode::OK,
                body: crate::http::ReplyBody::Raw("text/csv", out),
                headers: vec![
                    (header::HeaderName::from_static("sforce-locator"), locator),
                    (
                        header::HeaderName::from_static("sforce-numberofrecords"),
                        (end - start).to_string(),
                    ),
                ],
            }
        }
        (_, []) => method_not_allowed(method, "GET, PATCH, DELETE"),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip_and_stay_url_safe() {
        for n in [0usize, 1, 10_000, 123_456_789] {
            let l = encode_locator(n);
            assert!(
                l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert_eq!(decode_locator(&l), Some(n));
        }
        assert_eq!(encode_locator(10_000), "MTAwMDA");
        assert_eq!(decode_locator("%%%"), None);
        assert_eq!(decode_locator("bm90IGEgbnVtYmVy"), None);
    }

    #[test]
    fn multipart_parts_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("multipart/form-data; boundary=\"XyZ\""),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n{\"a\":1}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"content\"; filename=\"c\"\r\n\r\nA\n1\n\r\n--XyZ--\r\n";
        let (job, csv) = multipart(&h, body).expect("parts");
        assert_eq!(job, b"{\"a\":1}");
        assert_eq!(csv, b"A\n1\n");
        assert!(multipart(&h, b"--XyZ--\r\n").is_none());
    }

    #[test]
    fn line_endings_are_checked_on_the_header_line() {
        assert!(line_ending_error(b"A\r\n1\r\n", false).is_some());
        assert!(line_ending_error(b"A\n1\n", true).is_some());
        assert!(line_ending_error(b"A\n1\n", false).is_none());
        assert!(line_ending_error(b"A\r\n1\r\n", true).is_none());
    }
}
