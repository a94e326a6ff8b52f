//! Bulk API 1.0 (`/services/async/XX.X/job...`), spec §7 and §0 rules 4, 5 and 14.
//!
//! Response formats: `/job` and `/job/{id}` answer in the request's `Content-Type` family
//! (JSON when it is `application/json`, XML otherwise); everything under `/job/{id}/batch`
//! answers in the job's family (JSON jobs → JSON, CSV/XML jobs → XML), whatever the request
//! says. `Content-Type` values are exactly `application/xml`, `application/json` and
//! `text/csv`. XML element order follows the recorded traffic (spec §10).
//!
//! Processing: a worker task per job takes queued batches in windows (one batch for
//! `Serial` jobs; up to `parallelism` batches gathered for `gatherMs` for `Parallel` jobs,
//! see [`crate::locks`]) and writes them through the shared write path. Query batches run
//! the SOQL executor; with `Sforce-Enable-PKChunking` the original batch becomes
//! `NotProcessed` and one `Completed` batch per chunk of rows appears.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Map, Value as Json, json};

use crate::bulk::{
    self, Bulk, Flavor, Op, RowOutcome, csv_error, csv_record, lock, map_header, now_s, parse_csv,
    push_quoted,
};
use crate::http::{Reply, ReplyBody};
use crate::ids;
use crate::locks::{Window, apply_batch};
use crate::schema::Kind;
use crate::state::AppState;
use crate::store::Org;
use crate::value::{format_datetime, parse_date, parse_datetime};

/// The async API XML namespace.
pub const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

/// Content types of Bulk 1.0 jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// CSV.
    Csv,
    /// JSON.
    Json,
    /// XML.
    Xml,
    /// Zipped CSV (accepted, data must be plain).
    ZipCsv,
    /// Zipped JSON.
    ZipJson,
    /// Zipped XML.
    ZipXml,
}

impl ContentType {
    fn parse(s: &str) -> Option<ContentType> {
        Some(match s.to_ascii_uppercase().as_str() {
            "CSV" => ContentType::Csv,
            "JSON" => ContentType::Json,
            "XML" => ContentType::Xml,
            "ZIP_CSV" => ContentType::ZipCsv,
            "ZIP_JSON" => ContentType::ZipJson,
            "ZIP_XML" => ContentType::ZipXml,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            ContentType::Csv => "CSV",
            ContentType::Json => "JSON",
            ContentType::Xml => "XML",
            ContentType::ZipCsv => "ZIP_CSV",
            ContentType::ZipJson => "ZIP_JSON",
            ContentType::ZipXml => "ZIP_XML",
        }
    }
    fn json(self) -> bool {
        matches!(self, ContentType::Json | ContentType::ZipJson)
    }
    fn csv(self) -> bool {
        matches!(self, ContentType::Csv | ContentType::ZipCsv)
    }
    fn mime(self) -> &'static str {
        if self.json() {
            "application/json"
        } else if self.csv() {
            "text/csv"
        } else {
            "application/xml"
        }
    }
}

/// Job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1State {
    /// Accepting batches.
    Open,
    /// No more batches.
    Closed,
    /// Aborted.
    Aborted,
    /// Failed.
    Failed,
}

impl V1State {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            V1State::Open => "Open",
            V1State::Closed => "Closed",
            V1State::Aborted => "Aborted",
            V1State::Failed => "Failed",
        }
    }
}

/// Batch states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BState {
    /// Waiting.
    Queued,
    /// Running.
    InProgress,
    /// Done (rows may have failed individually).
    Completed,
    /// The whole batch failed.
    Failed,
    /// Never processed (aborted job, PK-chunked original).
    NotProcessed,
}

impl BState {
    fn as_str(self) -> &'static str {
        match self {
            BState::Queued => "Queued",
            BState::InProgress => "InProgress",
            BState::Completed => "Completed",
            BState::Failed => "Failed",
            BState::NotProcessed => "NotProcessed",
        }
    }
}

/// One batch.
#[derive(Debug)]
pub struct V1Batch {
    /// 18-char id (`751...`).
    pub id: String,
    /// State.
    pub state: BState,
    /// `InvalidBatch : ...` when failed.
    pub state_message: Option<String>,
    created_ms: i64,
    modstamp_ms: i64,
    queued_at: Instant,
    request: Vec<u8>,
    processed: u64,
    failed: u64,
    total_ms: u64,
    results: Vec<RowOutcome>,
    query_results: Vec<(String, Vec<u8>)>,
}

/// A Bulk 1.0 job.
#[derive(Debug)]
pub struct V1Job {
    /// 18-char id (`750...`).
    pub id: String,
    /// Operation.
    pub operation: Op,
    object: String,
    ext_id: Option<String>,
    serial: bool,
    content_type: ContentType,
    /// State.
    pub state: V1State,
    created_by: String,
    created_ms: i64,
    modstamp_ms: i64,
    api_version: String,
    assignment_rule_id: Option<String>,
    pk_chunk: Option<usize>,
    batches: Vec<V1Batch>,
    worker: bool,
}

/// A Bulk 1.0 error reply (`<error>` XML or `{"exceptionCode",...}` JSON).
pub fn error_reply(flavor: Flavor, status: StatusCode, code: &str, msg: &str) -> Reply {
    match flavor {
        Flavor::V1Json | Flavor::Rest => raw(
            status,
            "application/json",
            serde_json::to_vec(&json!({"exceptionCode": code, "exceptionMessage": msg}))
                .unwrap_or_default(),
        ),
        Flavor::V1Xml => raw(
            status,
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error\n   xmlns=\"{NS}\">\n <exceptionCode>{}</exceptionCode>\n <exceptionMessage>{}</exceptionMessage>\n</error>",
                esc(code),
                esc(msg)
            )
            .into_bytes(),
        ),
    }
}

fn raw(status: StatusCode, ct: &'static str, body: Vec<u8>) -> Reply {
    Reply {
        status,
        body: ReplyBody::Raw(ct, body),
        headers: Vec::new(),
    }
}

/// XML text escaping.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// `2024-11-21T08:31:31.000Z` (XML job and batch info).
fn xml_dt(ms: i64) -> String {
    bulk::format_csv_datetime(ms)
}

impl V1Job {
    /// Last change (ms), and whether nothing is left to process.
    pub fn settled(&self) -> (i64, bool) {
        let idle = !matches!(self.state, V1State::Open)
            && self
                .batches
                .iter()
                .all(|b| !matches!(b.state, BState::Queued | BState::InProgress));
        let last = self
            .batches
            .iter()
            .map(|b| b.modstamp_ms)
            .fold(self.modstamp_ms, i64::max);
        (last, idle)
    }

    fn counts(&self) -> [u64; 8] {
        let mut c = [0u64; 8];
        for b in &self.batches {
            match b.state {
                BState::Queued => c[0] += 1,
                BState::InProgress => c[1] += 1,
                BState::Completed => c[2] += 1,
                BState::Failed => c[3] += 1,
                BState::NotProcessed => {}
            }
            c[4] += 1;
            c[5] += b.processed;
            c[6] += b.failed;
            c[7] += b.total_ms;
        }
        c
    }

    fn info_xml(&self) -> Vec<u8> {
        let [q, ip, done, failed, total, processed, rfailed, ms] = self.counts();
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><jobInfo\n   xmlns=\"{NS}\">\n <id>{}</id>\n <operation>{}</operation>\n <object>{}</object>\n <createdById>{}</createdById>\n <createdDate>{}</createdDate>\n <systemModstamp>{}</systemModstamp>\n <state>{}</state>\n",
            self.id,
            self.operation.as_str(),
            esc(&self.object),
            self.created_by,
            xml_dt(self.created_ms),
            xml_dt(self.modstamp_ms),
            self.state.as_str()
        );
        if let Some(e) = &self.ext_id {
            let _ = writeln!(s, " <externalIdFieldName>{}</externalIdFieldName>", esc(e));
        }
        let _ = write!(
            s,
            " <concurrencyMode>{}</concurrencyMode>\n <contentType>{}</contentType>\n",
            if self.serial { "Serial" } else { "Parallel" },
            self.content_type.as_str()
        );
        if let Some(a) = &self.assignment_rule_id {
            let _ = writeln!(s, " <assignmentRuleId>{}</assignmentRuleId>", esc(a));
        }
        let _ = write!(
            s,
            " <numberBatchesQueued>{q}</numberBatchesQueued>\n <numberBatchesInProgress>{ip}</numberBatchesInProgress>\n <numberBatchesCompleted>{done}</numberBatchesCompleted>\n <numberBatchesFailed>{failed}</numberBatchesFailed>\n <numberBatchesTotal>{total}</numberBatchesTotal>\n <numberRecordsProcessed>{processed}</numberRecordsProcessed>\n <numberRetries>0</numberRetries>\n <apiVersion>{}</apiVersion>\n <numberRecordsFailed>{rfailed}</numberRecordsFailed>\n <totalProcessingTime>{ms}</totalProcessingTime>\n <apiActiveProcessingTime>{ms}</apiActiveProcessingTime>\n <apexProcessingTime>0</apexProcessingTime>\n</jobInfo>",
            self.api_version
        );
        s.into_bytes()
    }

    fn info_json(&self) -> Json {
        let [q, ip, done, failed, total, processed, rfailed, ms] = self.counts();
        // Salesforce's JSON serializer sorts the keys
        json!({
            "apexProcessingTime": 0,
            "apiActiveProcessingTime": ms,
            "apiVersion": self.api_version.parse::<f64>().unwrap_or(0.0),
            "assignmentRuleId": self.assignment_rule_id,
            "concurrencyMode": if self.serial { "Serial" } else { "Parallel" },
            "contentType": self.content_type.as_str(),
            "createdById": self.created_by,
            "createdDate": format_datetime(self.created_ms),
            "externalIdFieldName": self.ext_id,
            "fastPathEnabled": false,
            "id": self.id,
            "numberBatchesCompleted": done,
            "numberBatchesFailed": failed,
            "numberBatchesInProgress": ip,
            "numberBatchesQueued": q,
            "numberBatchesTotal": total,
            "numberRecordsFailed": rfailed,
            "numberRecordsProcessed": processed,
            "numberRetries": 0,
            "object": self.object,
            "operation": self.operation.as_str(),
            "state": self.state.as_str(),
            "systemModstamp": format_datetime(self.modstamp_ms),
            "totalProcessingTime": ms,
        })
    }

    fn info(&self, json: bool, status: StatusCode) -> Reply {
        if json {
            raw(
                status,
                "application/json",
                serde_json::to_vec(&self.info_json()).unwrap_or_default(),
            )
        } else {
            raw(status, "application/xml", self.info_xml())
        }
    }
}

impl V1Batch {
    fn xml_body(&self, job: &str, indent: &str) -> String {
        let mut s = format!(
            "{indent}<id>{}</id>\n{indent}<jobId>{job}</jobId>\n{indent}<state>{}</state>\n",
            self.id,
            self.state.as_str()
        );
        if let Some(m) = &self.state_message {
            let _ = writeln!(s, "{indent}<stateMessage>{}</stateMessage>", esc(m));
        }
        let _ = write!(
            s,
            "{indent}<createdDate>{}</createdDate>\n{indent}<systemModstamp>{}</systemModstamp>\n{indent}<numberRecordsProcessed>{}</numberRecordsProcessed>\n{indent}<numberRecordsFailed>{}</numberRecordsFailed>\n{indent}<totalProcessingTime>{}</totalProcessingTime>\n{indent}<apiActiveProcessingTime>{}</apiActiveProcessingTime>\n{indent}<apexProcessingTime>0</apexProcessingTime>\n",
            xml_dt(self.created_ms),
            xml_dt(self.modstamp_ms),
            self.processed,
            self.failed,
            self.total_ms,
            self.total_ms
        );
        s
    }

    fn info_json(&self, job: &str) -> Json {
        json!({
            "apexProcessingTime": 0,
            "apiActiveProcessingTime": self.total_ms,
            "createdDate": format_datetime(self.created_ms),
            "id": self.id,
            "jobId": job,
            "numberRecordsFailed": self.failed,
            "numberRecordsProcessed": self.processed,
            "state": self.state.as_str(),
            "stateMessage": self.state_message,
            "systemModstamp": format_datetime(self.modstamp_ms),
            "totalProcessingTime": self.total_ms,
        })
    }
}

fn batch_info(job: &V1Job, b: &V1Batch, status: StatusCode) -> Reply {
    if job.content_type.json() {
        raw(
            status,
            "application/json",
            serde_json::to_vec(&b.info_json(&job.id)).unwrap_or_default(),
        )
    } else {
        raw(
            status,
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><batchInfo\n   xmlns=\"{NS}\">\n{}</batchInfo>",
                b.xml_body(&job.id, " ")
            )
            .into_bytes(),
        )
    }
}

fn batch_list(job: &V1Job) -> Reply {
    if job.content_type.json() {
        let list: Vec<Json> = job.batches.iter().map(|b| b.info_json(&job.id)).collect();
        raw(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&json!({"batchInfo": list})).unwrap_or_default(),
        )
    } else {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><batchInfoList\n   xmlns=\"{NS}\">\n"
        );
        for b in &job.batches {
            s.push_str(" <batchInfo>\n");
            s.push_str(&b.xml_body(&job.id, "  "));
            s.push_str(" </batchInfo>\n");
        }
        s.push_str("</batchInfoList>");
        raw(StatusCode::OK, "application/xml", s.into_bytes())
    }
}

// ---------------------------------------------------------------------------------------
// A tiny XML tree (job-create bodies and `<sObjects>` batches).

/// An XML element.
#[derive(Debug, Default, Clone)]
pub struct Node {
    /// Local name.
    pub name: String,
    /// `xsi:nil="true"`.
    pub nil: bool,
    /// Text content.
    pub text: String,
    /// Child elements.
    pub children: Vec<Node>,
}

/// Parses an XML document into its root element.
pub fn parse_xml(data: &[u8]) -> Result<Node, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(data);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Node> = Vec::new();
    let mut buf = Vec::new();
    let start = |e: &quick_xml::events::BytesStart| {
        let mut n = Node {
            name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            ..Node::default()
        };
        for a in e.attributes().flatten() {
            if a.key.local_name().as_ref() == b"nil" {
                n.nil = a
                    .unescape_value()
                    .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
            }
        }
        n
    };
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => stack.push(start(&e)),
            Ok(Event::Empty(e)) => {
                let n = start(&e);
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => return Ok(n),
                }
            }
            Ok(Event::End(_)) => {
                let Some(n) = stack.pop() else {
                    return Err("unbalanced XML".into());
                };
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => return Ok(n),
                }
            }
            Ok(Event::Text(t)) => {
                let s = t.unescape().map_err(|e| e.to_string())?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&s);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::Eof) => return Err("XML document has no root element".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("{e}")),
        }
        buf.clear();
    }
}

fn xml_record(n: &Node) -> Map<String, Json> {
    let mut m = Map::new();
    for c in &n.children {
        if c.nil {
            m.insert(c.name.clone(), Json::Null);
        } else if c.children.is_empty() {
            m.insert(c.name.clone(), Json::String(c.text.clone()));
        } else {
            // a parent reference; its `<type>` names the target of a polymorphic lookup
            let mut parent = xml_record(c);
            if let Some(t) = parent.remove("type") {
                parent.insert("attributes".into(), json!({ "type": t }));
            }
            m.insert(c.name.clone(), Json::Object(parent));
        }
    }
    m
}

// ---------------------------------------------------------------------------------------
// Routing

fn request_json(headers: &HeaderMap) -> bool {
    bulk::content_type(headers) == "application/json"
}

/// Handles `/services/async/XX.X/<segs>`.
pub fn handle(
    st: &Arc<AppState>,
    method: &Method,
    segs: &[&str],
    v: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let req_flavor = if request_json(headers) {
        Flavor::V1Json
    } else {
        Flavor::V1Xml
    };
    let limit = match bulk::gate(st, headers, query, req_flavor) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut r = route(st, method, segs, v, headers, body, req_flavor);
    r.headers
        .push((header::HeaderName::from_static("sforce-limit-info"), limit));
    r
}

fn route(
    st: &Arc<AppState>,
    method: &Method,
    segs: &[&str],
    v: &str,
    headers: &HeaderMap,
    body: &[u8],
    req_flavor: Flavor,
) -> Reply {
    let bulk = bulk::of(st);
    bulk::expire(&bulk, st.clock.now_ms());
    let m = method.as_str();
    match segs {
        ["job"] if m == "POST" => create_job(st, &bulk, v, headers, body, req_flavor),
        ["job", id, rest @ ..] => {
            let Some(job) = bulk::norm_id(id).and_then(|id| lock(&bulk.v1).get(&id).cloned())
            else {
                return error_reply(
                    req_flavor,
                    StatusCode::BAD_REQUEST,
                    "InvalidJob",
                    &format!("Invalid job id: {id}"),
                );
            };
            let job_flavor = if lock(&job).content_type.json() {
                Flavor::V1Json
            } else {
                Flavor::V1Xml
            };
            match (m, rest) {
                ("GET", []) => lock(&job).info(req_flavor == Flavor::V1Json, StatusCode::OK),
                ("POST", []) => update_job(st, &job, body, req_flavor),
                ("POST", ["batch"]) => add_batch(st, &bulk, &job, body),
                ("GET", ["batch"]) => batch_list(&lock(&job)),
                ("GET", ["batch", bid, rest @ ..]) => {
                    let j = lock(&job);
                    let Some(b) =
                        bulk::norm_id(bid).and_then(|bid| j.batches.iter().find(|b| b.id == bid))
                    else {
                        return error_reply(
                            job_flavor,
                            StatusCode::BAD_REQUEST,
                            "InvalidBatch",
                            &format!("Invalid batch id: {bid}"),
                        );
                    };
                    batch_get(&j, b, rest, job_flavor)
                }
                _ => error_reply(
                    req_flavor,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "InvalidUrl",
                    &format!("HTTP method {m} is not allowed on this resource"),
                ),
            }
        }
        _ => error_reply(
            req_flavor,
            StatusCode::NOT_FOUND,
            "InvalidUrl",
            "Destination URL not reset. The URL returned from login must be set",
        ),
    }
}

/// Job-create/update fields from an XML or JSON body.
fn body_fields(body: &[u8], json: bool) -> Result<Map<String, Json>, String> {
    let trimmed = body.trim_ascii_start();
    if json || trimmed.first() == Some(&b'{') {
        match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(m)) => return Ok(m),
            Ok(_) => return Err("the body must be a JSON object".into()),
            Err(e) if json => return Err(format!("Unable to parse JSON: {e}")),
            Err(_) => {}
        }
    }
    let root = parse_xml(body).map_err(|e| format!("Unable to parse XML: {e}"))?;
    if root.name != "jobInfo" {
        return Err(format!(
            "Unexpected root element {}; expected jobInfo",
            root.name
        ));
    }
    Ok(root
        .children
        .iter()
        .map(|c| (c.name.clone(), Json::String(c.text.clone())))
        .collect())
}

fn field_str(m: &Map<String, Json>, k: &str) -> Option<String> {
    match m.get(k)? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn pk_chunk_size(headers: &HeaderMap) -> Option<usize> {
    let v = headers
        .get("sforce-enable-pkchunking")?
        .to_str()
        .ok()?
        .trim()
        .to_string();
    if v.eq_ignore_ascii_case("false") {
        return None;
    }
    let mut size = 100_000usize;
    for part in v.split(';') {
        if let Some((k, val)) = part.trim().split_once('=')
            && k.trim().eq_ignore_ascii_case("chunkSize")
            && let Ok(n) = val.trim().parse::<usize>()
        {
            size = n.clamp(1, 250_000);
        }
    }
    Some(size)
}

fn create_job(
    st: &Arc<AppState>,
    bulk: &Arc<Bulk>,
    v: &str,
    headers: &HeaderMap,
    body: &[u8],
    flavor: Flavor,
) -> Reply {
    let bad = |code: &str, msg: &str| error_reply(flavor, StatusCode::BAD_REQUEST, code, msg);
    let m = match body_fields(body, flavor == Flavor::V1Json) {
        Ok(m) => m,
        Err(e) => return bad("InvalidJob", &e),
    };
    let Some(op) = field_str(&m, "operation").and_then(|o| Op::parse(&o)) else {
        return bad(
            "InvalidJob",
            &format!(
                "Invalid operation: {}",
                field_str(&m, "operation").unwrap_or_default()
            ),
        );
    };
    let Some(object) = field_str(&m, "object") else {
        return bad("InvalidJob", "Required field object is missing");
    };
    let content_type = match field_str(&m, "contentType") {
        None => ContentType::Csv,
        Some(c) => match ContentType::parse(&c) {
            Some(ct @ (ContentType::ZipCsv | ContentType::ZipJson | ContentType::ZipXml)) => {
                return bad(
                    "InvalidJob",
                    &format!(
                        "Unsupported content type: {} (this emulator does not read zip archives; use {})",
                        ct.as_str(),
                        ct.as_str().trim_start_matches("ZIP_")
                    ),
                );
            }
            Some(ct) => ct,
            None => return bad("InvalidJob", &format!("Invalid content type: {c}")),
        },
    };
    let serial = match m.get("concurrencyMode") {
        None | Some(Json::Null) => false,
        Some(Json::Number(n)) => n.as_i64() == Some(1),
        Some(Json::String(s)) => match s.as_str() {
            "Parallel" | "0" | "" => false,
            "Serial" | "1" => true,
            other => return bad("InvalidJob", &format!("Invalid concurrency mode: {other}")),
        },
        Some(other) => return bad("InvalidJob", &format!("Invalid concurrency mode: {other}")),
    };
    let org = st.org();
    let Some(obj) = org.obj(&object) else {
        return bad(
            "InvalidEntity",
            &format!("Entity '{object}' is not supported by the Bulk API."),
        );
    };
    let def = org.def(obj);
    let mut ext_id = None;
    if op == Op::Upsert {
        let Some(e) = field_str(&m, "externalIdFieldName") else {
            return bad(
                "InvalidJob",
                "External ID field name is required for upsert operation",
            );
        };
        let Some(col) = def.field(&e) else {
            return bad("InvalidJob", &format!("Field name not found : {e}"));
        };
        let f = &def.fields[col];
        if col != 0 && !f.external_id && !f.id_lookup {
            return bad(
                "InvalidJob",
                &format!(
                    "The field {} is not an external id field on {}",
                    f.name, def.name
                ),
            );
        }
        ext_id = Some(f.name.clone());
    }
    let now = now_s(st);
    let job = V1Job {
        id: bulk.new_id("750", org.pod),
        operation: op,
        object: def.name.clone(),
        ext_id,
        serial,
        content_type,
        state: V1State::Open,
        created_by: ids::to18(&org.user_id),
        created_ms: now,
        modstamp_ms: now,
        api_version: v.to_string(),
        assignment_rule_id: field_str(&m, "assignmentRuleId"),
        pk_chunk: if op.is_query() {
            pk_chunk_size(headers)
        } else {
            None
        },
        batches: Vec::new(),
        worker: false,
    };
    drop(org);
    let reply = job.info(flavor == Flavor::V1Json, StatusCode::CREATED);
    lock(&bulk.v1).insert(job.id.clone(), Arc::new(Mutex::new(job)));
    reply
}

fn update_job(st: &AppState, job: &Arc<Mutex<V1Job>>, body: &[u8], flavor: Flavor) -> Reply {
    let m = match body_fields(body, flavor == Flavor::V1Json) {
        Ok(m) => m,
        Err(e) => return error_reply(flavor, StatusCode::BAD_REQUEST, "InvalidJob", &e),
    };
    let want = field_str(&m, "state").unwrap_or_default();
    let mut j = lock(job);
    match want.as_str() {
        "Closed" | "Aborted" => {
            if j.state != V1State::Open {
                return error_reply(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    "InvalidJobState",
                    &format!(
                        "Job {} is {}; it can't be set to {want}",
                        j.id,
                        j.state.as_str()
                    ),
                );
            }
            let now = now_s(st);
            if want == "Closed" {
                j.state = V1State::Closed;
            } else {
                j.state = V1State::Aborted;
                for b in j.batches.iter_mut().filter(|b| b.state == BState::Queued) {
                    b.state = BState::NotProcessed;
                    b.modstamp_ms = now;
                }
            }
            j.modstamp_ms = now;
            j.info(flavor == Flavor::V1Json, StatusCode::OK)
        }
        other => error_reply(
            flavor,
            StatusCode::BAD_REQUEST,
            "InvalidJobState",
            &format!("Invalid state: {other}"),
        ),
    }
}

/// Fails a Bulk 1.0 job now (admin fault).
pub fn fail_now(bulk: &Bulk, id: &str, msg: &str, now: i64) {
    if let Some(j) = lock(&bulk.v1).get(id) {
        let mut j = lock(j);
        if matches!(j.state, V1State::Open | V1State::Closed) {
            j.state = V1State::Failed;
            j.modstamp_ms = now;
            for b in j
                .batches
                .iter_mut()
                .filter(|b| matches!(b.state, BState::Queued | BState::InProgress))
            {
                b.state = BState::Failed;
                b.state_message = Some(msg.to_string());
                b.modstamp_ms = now;
            }
        }
    }
}

fn add_batch(st: &Arc<AppState>, bulk: &Arc<Bulk>, job: &Arc<Mutex<V1Job>>, body: &[u8]) -> Reply {
    let mut j = lock(job);
    let flavor = if j.content_type.json() {
        Flavor::V1Json
    } else {
        Flavor::V1Xml
    };
    if j.state != V1State::Open {
        return error_reply(
            flavor,
            StatusCode::BAD_REQUEST,
            "InvalidJobState",
            &format!(
                "Job {} is {}; batches can only be added to Open jobs",
                j.id,
                j.state.as_str()
            ),
        );
    }
    if st.bulk_batches_used.load(Ordering::Relaxed) >= bulk::DAILY_BULK_BATCHES {
        return error_reply(
            flavor,
            StatusCode::BAD_REQUEST,
            "ExceededQuota",
            "ApiBatchItems Limit exceeded.",
        );
    }
    if body.len() > 10 * 1024 * 1024 {
        return error_reply(
            flavor,
            StatusCode::BAD_REQUEST,
            "ExceededQuota",
            "InvalidBatch : Batch size exceeds the 10 MB limit",
        );
    }
    let now = now_s(st);
    let b = V1Batch {
        id: bulk.new_id("751", st.org().pod),
        state: BState::Queued,
        state_message: None,
        created_ms: now,
        modstamp_ms: now,
        queued_at: Instant::now(),
        request: body.to_vec(),
        processed: 0,
        failed: 0,
        total_ms: 0,
        results: Vec::new(),
        query_results: Vec::new(),
    };
    st.bulk_batches_used.fetch_add(1, Ordering::Relaxed);
    let mut reply = batch_info(&j, &b, StatusCode::CREATED);
    reply.headers.push((
        header::LOCATION,
        format!(
            "/services/async/{}/job/{}/batch/{}",
            j.api_version, j.id, b.id
        ),
    ));
    j.batches.push(b);
    j.modstamp_ms = now;
    if !j.worker {
        j.worker = true;
        drop(j);
        spawn_worker(st, bulk.clone(), job.clone());
    }
    reply
}

fn batch_get(j: &V1Job, b: &V1Batch, rest: &[&str], flavor: Flavor) -> Reply {
    match rest {
        [] => batch_info(j, b, StatusCode::OK),
        ["request"] => raw(StatusCode::OK, j.content_type.mime(), b.request.clone()),
        ["result"] => {
            if matches!(b.state, BState::Queued | BState::InProgress) {
                return error_reply(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    "InvalidBatch",
                    "Batch not completed",
                );
            }
            if j.operation.is_query() {
                let ids: Vec<&str> = b.query_results.iter().map(|(id, _)| id.as_str()).collect();
                if j.content_type.json() {
                    raw(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_vec(&ids).unwrap_or_default(),
                    )
                } else {
                    let mut s = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><result-list xmlns=\"{NS}\">"
                    );
                    for id in ids {
                        let _ = write!(s, "<result>{id}</result>");
                    }
                    s.push_str("</result-list>");
                    raw(StatusCode::OK, "application/xml", s.into_bytes())
                }
            } else {
                ingest_results(j, b)
            }
        }
        ["result", rid] => {
            let Some((_, data)) = b
                .query_results
                .iter()
                .find(|(id, _)| ids::to15(id) == ids::to15(rid))
            else {
                return error_reply(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    "InvalidBatch",
                    &format!("Invalid result id: {rid}"),
                );
            };
            raw(StatusCode::OK, j.content_type.mime(), data.clone())
        }
        _ => error_reply(
            flavor,
            StatusCode::NOT_FOUND,
            "InvalidUrl",
            "Unknown batch resource",
        ),
    }
}

fn ingest_results(j: &V1Job, b: &V1Batch) -> Reply {
    if j.content_type.json() {
        let list: Vec<Json> = b
            .results
            .iter()
            .map(|r| {
                let errors: Vec<Json> = r
                    .error
                    .iter()
                    .map(|e| json!({"fields": e.fields, "message": e.message, "statusCode": e.code}))
                    .collect();
                json!({"id": r.id, "success": r.error.is_none(), "created": r.created, "errors": errors})
            })
            .collect();
        raw(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&list).unwrap_or_default(),
        )
    } else if j.content_type.csv() {
        let mut out = b"\"Id\",\"Success\",\"Created\",\"Error\"\n".to_vec();
        for r in &b.results {
            push_quoted(&mut out, r.id.as_deref().unwrap_or(""));
            out.push(b',');
            push_quoted(&mut out, if r.error.is_none() { "true" } else { "false" });
            out.push(b',');
            push_quoted(&mut out, if r.created { "true" } else { "false" });
            out.push(b',');
            push_quoted(
                &mut out,
                &r.error.as_ref().map(csv_error).unwrap_or_default(),
            );
            out.push(b'\n');
        }
        raw(StatusCode::OK, "text/csv", out)
    } else {
        let mut s = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><results xmlns=\"{NS}\">\n");
        for r in &b.results {
            s.push_str(" <result>\n");
            match &r.id {
                Some(id) => {
                    let _ = writeln!(s, "  <id>{id}</id>");
                }
                None => s.push_str("  <id xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/>\n"),
            }
            let _ = write!(
                s,
                "  <success>{}</success>\n  <created>{}</created>\n",
                r.error.is_none(),
                r.created
            );
            if let Some(e) = &r.error {
                s.push_str("  <errors>\n");
                for f in &e.fields {
                    let _ = writeln!(s, "   <fields>{}</fields>", esc(f));
                }
                let _ = write!(
                    s,
                    "   <message>{}</message>\n   <statusCode>{}</statusCode>\n  </errors>\n",
                    esc(&e.message),
                    e.code
                );
            }
            s.push_str(" </result>\n");
        }
        s.push_str("</results>");
        raw(StatusCode::OK, "application/xml", s.into_bytes())
    }
}

// ---------------------------------------------------------------------------------------
// Processing

struct Work {
    id: String,
    request: Vec<u8>,
}

enum Done {
    Rows(Vec<RowOutcome>),
    Query(Vec<Vec<u8>>),
    Failed(String),
}

fn spawn_worker(st: &Arc<AppState>, bulk: Arc<Bulk>, job: Arc<Mutex<V1Job>>) {
    let weak = Arc::downgrade(st);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        lock(&job).worker = false;
        return;
    };
    rt.spawn(async move {
        let cfg = bulk.config();
        tokio::time::sleep(Duration::from_millis(cfg.start_delay_ms)).await;
        let job_id = lock(&job).id.clone();
        loop {
            let cfg = bulk.config();
            if let Some(m) = bulk::checkpoint(&bulk, &job_id).await {
                let Some(st) = weak.upgrade() else { return };
                fail_now(&bulk, &job_id, &m, now_s(&st));
            }
            let Some(st) = weak.upgrade() else { return };
            // pick a window (or learn how long to wait for one)
            let picked = {
                let mut j = lock(&job);
                let queued: Vec<usize> = j
                    .batches
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.state == BState::Queued)
                    .map(|(i, _)| i)
                    .collect();
                if queued.is_empty() || j.state == V1State::Aborted || j.state == V1State::Failed {
                    j.worker = false;
                    return;
                }
                let gather = Duration::from_millis(cfg.locks.gather_ms);
                let oldest = j.batches[queued[0]].queued_at;
                if !j.serial
                    && !j.operation.is_query()
                    && j.state == V1State::Open
                    && oldest.elapsed() < gather
                {
                    Err(gather.saturating_sub(oldest.elapsed()))
                } else {
                    let take = if j.serial || j.operation.is_query() {
                        1
                    } else {
                        cfg.locks.parallelism.max(1)
                    };
                    let now = now_s(&st);
                    let mut work = Vec::new();
                    for &i in queued.iter().take(take) {
                        let b = &mut j.batches[i];
                        b.state = BState::InProgress;
                        b.modstamp_ms = now;
                        work.push(Work {
                            id: b.id.clone(),
                            request: b.request.clone(),
                        });
                    }
                    Ok((
                        work,
                        j.object.clone(),
                        j.operation,
                        j.ext_id.clone(),
                        j.content_type,
                        j.pk_chunk,
                        j.api_version.clone(),
                    ))
                }
            };
            let (work, object, op, ext, ct, pk, api_v) = match picked {
                Ok(p) => p,
                Err(wait) => {
                    drop(st);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let started = Instant::now();
            let st2 = st.clone();
            let cfg2 = cfg.clone();
            drop(st);
            let res = tokio::task::spawn_blocking(move || {
                let mut window = Window::new();
                let mut out = Vec::new();
                for w in work {
                    let done = if op.is_query() {
                        run_query_batch(&st2, &object, op, ct, &w.request, pk, &cfg2, &api_v)
                    } else {
                        match parse_records(&st2, &object, ct, &w.request) {
                            Err(m) => Done::Failed(m),
                            Ok(recs) if recs.len() > bulk::BATCH_RECORDS => Done::Failed(format!(
                                "InvalidBatch : Records in a batch can't exceed {}: {}",
                                bulk::BATCH_RECORDS,
                                recs.len()
                            )),
                            Ok(recs) => {
                                let pos = window.add_batch();
                                let ctx = st2.ctx();
                                let fault = || st2.lock_fault();
                                let mut org = st2.org_mut();
                                match bulk::resolve_target(&org, &object, ext.as_deref()) {
                                    Ok((obj, ext_col)) => Done::Rows(apply_batch(
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
                                    )),
                                    Err(e) => Done::Failed(format!("InvalidBatch : {}", e.message)),
                                }
                            }
                        }
                    };
                    out.push((w.id, done));
                }
                out
            })
            .await;
            let Some(st) = weak.upgrade() else { return };
            let now = now_s(&st);
            let ms = started.elapsed().as_millis() as u64;
            let Ok(results) = res else {
                let mut j = lock(&job);
                for b in j
                    .batches
                    .iter_mut()
                    .filter(|b| b.state == BState::InProgress)
                {
                    b.state = BState::Failed;
                    b.state_message = Some("InternalServerError : batch processing failed".into());
                    b.modstamp_ms = now;
                }
                continue;
            };
            let pod = st.org().pod;
            let mut j = lock(&job);
            for (bid, done) in results {
                let Some(idx) = j.batches.iter().position(|b| b.id == bid) else {
                    continue;
                };
                if j.batches[idx].state != BState::InProgress {
                    continue; // failed by the admin meanwhile
                }
                match done {
                    Done::Failed(m) => {
                        let b = &mut j.batches[idx];
                        b.state = BState::Failed;
                        b.state_message = Some(m);
                        b.modstamp_ms = now;
                        b.total_ms = ms;
                    }
                    Done::Rows(rows) => {
                        let b = &mut j.batches[idx];
                        b.processed = rows.len() as u64;
                        b.failed = rows.iter().filter(|r| r.error.is_some()).count() as u64;
                        b.results = rows;
                        b.state = BState::Completed;
                        b.modstamp_ms = now;
                        b.total_ms = ms;
                    }
                    Done::Query(chunks) if pk.is_some() => {
                        let b = &mut j.batches[idx];
                        b.state = BState::NotProcessed;
                        b.modstamp_ms = now;
                        b.total_ms = ms;
                        for (data, n) in chunks.into_iter().map(|c| {
                            let n = count_rows(ct, &c);
                            (c, n)
                        }) {
                            st.bulk_batches_used.fetch_add(1, Ordering::Relaxed);
                            j.batches.push(V1Batch {
                                id: bulk.new_id("751", pod),
                                state: BState::Completed,
                                state_message: None,
                                created_ms: now,
                                modstamp_ms: now,
                                queued_at: Instant::now(),
                                request: Vec::new(),
                                processed: n,
                                failed: 0,
                                total_ms: ms,
                                results: Vec::new(),
                                query_results: vec![(bulk.new_id("752", pod), data)],
                            });
                        }
                    }
                    Done::Query(chunks) => {
                        let b = &mut j.batches[idx];
                        b.processed = chunks.iter().map(|c| count_rows(ct, c)).sum();
                        b.query_results = chunks
                            .into_iter()
                            .map(|c| (bulk.new_id("752", pod), c))
                            .collect();
                        b.state = BState::Completed;
                        b.modstamp_ms = now;
                        b.total_ms = ms;
                    }
                }
            }
            j.modstamp_ms = now;
        }
    });
}

fn count_rows(ct: ContentType, data: &[u8]) -> u64 {
    if ct.json() {
        serde_json::from_slice::<Vec<Json>>(data).map_or(0, |v| v.len() as u64)
    } else if ct.csv() {
        parse_csv(data, b',').map_or(0, |d| d.rows.len() as u64)
    } else {
        data.windows(9).filter(|w| w == b"<records ").count() as u64
    }
}

fn parse_records(
    st: &AppState,
    object: &str,
    ct: ContentType,
    data: &[u8],
) -> Result<Vec<Map<String, Json>>, String> {
    let (obj, _) = bulk::resolve_target(&st.org(), object, None)
        .map_err(|e| format!("InvalidBatch : {}", e.message))?;
    if ct.csv() {
        let d = parse_csv(data, b',')?;
        let cols = map_header(&st.org(), obj, &d.header)?;
        Ok(d.rows.iter().map(|r| csv_record(&cols, r)).collect())
    } else if ct.json() {
        match serde_json::from_slice::<Json>(data) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Json::Object(m) => Ok(m),
                    other => Err(format!(
                        "InvalidBatch : Expected a JSON object, found {other}"
                    )),
                })
                .collect(),
            Ok(_) => Err("InvalidBatch : The batch must be a JSON array of records".into()),
            Err(e) => Err(format!("InvalidBatch : Failed to parse JSON: {e}")),
        }
    } else {
        let root =
            parse_xml(data).map_err(|e| format!("InvalidBatch : Failed to parse XML: {e}"))?;
        if root.name != "sObjects" {
            return Err(format!(
                "InvalidBatch : Unexpected root element {}; expected sObjects",
                root.name
            ));
        }
        let org = st.org();
        let def = org.def(obj);
        let recs: Vec<Map<String, Json>> = root
            .children
            .iter()
            .filter(|c| c.name == "sObject")
            .map(xml_record)
            .collect();
        for r in &recs {
            for k in r.keys() {
                if k != "type" && def.field(k).is_none() && def.rel(k).is_none() {
                    return Err(format!("InvalidBatch : Field name not found : {k}"));
                }
            }
        }
        Ok(recs
            .into_iter()
            .map(|mut r| {
                r.remove("type");
                r
            })
            .collect())
    }
}

#[allow(clippy::too_many_arguments)]
fn run_query_batch(
    st: &AppState,
    object: &str,
    op: Op,
    ct: ContentType,
    request: &[u8],
    pk: Option<usize>,
    cfg: &bulk::BulkConfig,
    v: &str,
) -> Done {
    let soql = String::from_utf8_lossy(request).trim().to_string();
    let now = st.clock.now_ms();
    let org = st.org();
    let obj = match bulk::resolve_target(&org, object, None) {
        Ok((o, _)) => o,
        Err(e) => return Done::Failed(format!("InvalidBatch : {}", e.message)),
    };
    let (ast, cols) = match bulk::prepare_query(&org, &soql) {
        Ok(x) => x,
        Err((code, msg)) => return Done::Failed(format!("{code} : {msg}")),
    };
    if org.obj(&ast.from.object) != Some(obj) {
        return Done::Failed(format!(
            "InvalidBatch : The query's object {} does not match the job's object {}",
            ast.from.object,
            org.def(obj).name
        ));
    }
    let outcome = crate::query::run(&org, &ast, &soql, op == Op::QueryAll, now);
    let (plan, rows) = match outcome {
        Ok(crate::query::Outcome::Rows { plan, rows, .. }) => (plan, rows),
        Ok(_) => {
            return Done::Failed(
                "API_ERROR : Implementation restriction: aggregate queries are not supported by the Bulk API".into(),
            );
        }
        Err(e) => return Done::Failed(format!("{} : {}", e.error_code(), e.message)),
    };
    let chunk = pk.unwrap_or(usize::MAX).max(1);
    // PK chunking is Salesforce's cure for timeouts: chunked queries never time out here
    if let Some(limit) = cfg.query_timeout_rows
        && pk.is_none()
        && rows.len() > limit
    {
        return Done::Failed("QUERY_TIMEOUT : Your query request was running for too long.".into());
    }
    let mut out = Vec::new();
    let parts: Vec<&[u32]> = if rows.is_empty() {
        vec![&rows[..]]
    } else {
        rows.chunks(chunk).collect()
    };
    for part in parts {
        if ct.csv() {
            let mut data = bulk::csv_header(&cols, b',', b"\n");
            let mut ends = Vec::new();
            bulk::render_csv_rows(
                &org, obj, part, &cols, now, b',', b"\n", &mut data, &mut ends,
            );
            out.push(data);
        } else {
            let recs: Vec<Json> = part
                .iter()
                .filter(|r| (**r as usize) < org.tables[obj].rows.len())
                .map(|r| crate::query::render(&org, &plan, obj, *r, now, v))
                .collect();
            if ct.json() {
                let recs: Vec<Json> = recs
                    .into_iter()
                    .map(|mut r| {
                        epoch_dates(&org, &mut r);
                        r
                    })
                    .collect();
                out.push(serde_json::to_vec(&recs).unwrap_or_default());
            } else {
                out.push(query_xml(&recs).into_bytes());
            }
        }
    }
    Done::Query(out)
}

/// Bulk 1.0 JSON query results give dates and datetimes as epoch milliseconds.
fn epoch_dates(org: &Org, j: &mut Json) {
    let Json::Object(m) = j else { return };
    let obj = m
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Json::as_str)
        .and_then(|t| org.obj(t));
    for (k, v) in m.iter_mut() {
        if k == "attributes" {
            continue;
        }
        match v {
            Json::Object(_) => epoch_dates(org, v),
            Json::String(s) => {
                let Some(o) = obj else { continue };
                let def = org.def(o);
                let Some(col) = def.field(k) else { continue };
                match def.kinds[col] {
                    Kind::DateTime => {
                        if let Some(ms) = parse_datetime(s) {
                            *v = json!(ms);
                        }
                    }
                    Kind::Date => {
                        if let Some(d) = parse_date(s) {
                            *v = json!(i64::from(d) * 86_400_000);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn query_xml(recs: &[Json]) -> String {
    fn fields(s: &mut String, m: &Map<String, Json>) {
        for (k, v) in m {
            if k == "attributes" {
                continue;
            }
            match v {
                Json::Null => {
                    let _ = write!(s, "<{k} xsi:nil=\"true\"/>");
                }
                Json::Object(inner) => {
                    let ty = inner
                        .get("attributes")
                        .and_then(|a| a.get("type"))
                        .and_then(Json::as_str)
                        .unwrap_or("");
                    let _ = write!(s, "<{k} xsi:type=\"sObject\"><type>{}</type>", esc(ty));
                    fields(s, inner);
                    let _ = write!(s, "</{k}>");
                }
                Json::String(t) => {
                    let _ = write!(s, "<{k}>{}</{k}>", esc(t));
                }
                other => {
                    let _ = write!(s, "<{k}>{other}</{k}>");
                }
            }
        }
    }
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><queryResult xmlns=\"{NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
    );
    for r in recs {
        let Json::Object(m) = r else { continue };
        let ty = m
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("");
        let _ = write!(s, "<records xsi:type=\"sObject\"><type>{}</type>", esc(ty));
        fields(&mut s, m);
        s.push_str("</records>");
    }
    s.push_str("</queryResult>");
    s
}
