//! Machinery shared by the Bulk APIs (2.0 in [`crate::bulk2`], 1.0 in [`crate::bulk1`]):
//! the per-emulator job registry, the admin knobs (`/__emulator/bulk`), request gating
//! (session, API usage, `Sforce-Limit-Info`), CSV input/output, the row write path (the
//! same [`Org`] calls as REST, so the same validation and error codes) and the query → CSV
//! renderer.
//!
//! Jobs are processed on background tokio tasks that hold only a [`Weak`] reference to the
//! emulator state: when the emulator goes away, its workers stop at their next step.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use http::{HeaderMap, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::http::Reply;
use crate::locks::LockConfig;
use crate::schema::Kind;
use crate::state::AppState;
use crate::store::{Org, UpsertOutcome, WriteCtx, WriteError};
use crate::value::Val;
use crate::{auth, ids};

/// `DailyBulkApiBatches` maximum (shared by Bulk 1.0 batches and Bulk 2.0 ingest batches).
pub const DAILY_BULK_BATCHES: u64 = 15_000;
/// `DailyBulkV2QueryJobs` maximum.
pub const DAILY_BULK_V2_QUERY_JOBS: u64 = 10_000;

/// Records per internal Bulk 2.0 batch (and the Bulk 1.0 per-batch maximum).
pub const BATCH_RECORDS: usize = 10_000;

/// Admin-tunable Bulk behaviour (`GET|PUT /__emulator/bulk`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BulkConfig {
    /// Lock-contention model (see [`crate::locks`]).
    #[serde(flatten)]
    pub locks: LockConfig,
    /// Delay before a job (2.0) or batch (1.0) starts processing, in ms: lets clients observe
    /// `UploadComplete`/`Queued` states.
    pub start_delay_ms: u64,
    /// Records per internal Bulk 2.0 ingest batch.
    pub batch_size: usize,
    /// Query jobs/batches whose result has more rows than this fail with `QUERY_TIMEOUT`
    /// (PK-chunked Bulk 1.0 batches are checked per chunk).
    pub query_timeout_rows: Option<usize>,
    /// Default Bulk 2.0 query page size (rows) when `maxRecords` is absent.
    pub default_page_size: usize,
    /// Byte cap of a Bulk 2.0 query page when `maxRecords` is absent.
    pub default_page_bytes: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            locks: LockConfig::default(),
            start_delay_ms: 5,
            batch_size: BATCH_RECORDS,
            query_timeout_rows: None,
            default_page_size: 1_000_000,
            default_page_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Per-job admin faults.
#[derive(Debug, Clone, Default)]
pub struct JobFaults {
    /// Processing pauses while set.
    pub stalled: bool,
    /// Set to fail the job at its next step with this message.
    pub fail: Option<String>,
}

/// The Bulk state of one emulator.
#[derive(Debug, Default)]
pub struct Bulk {
    /// Bulk 2.0 ingest jobs.
    pub ingest: Mutex<HashMap<String, Arc<Mutex<crate::bulk2::IngestJob>>>>,
    /// Bulk 2.0 query jobs.
    pub queries: Mutex<HashMap<String, Arc<Mutex<crate::bulk2::QueryJob>>>>,
    /// Bulk 1.0 jobs.
    pub v1: Mutex<HashMap<String, Arc<Mutex<crate::bulk1::V1Job>>>>,
    /// Tunables.
    pub config: RwLock<BulkConfig>,
    /// Injected per-job faults, by job id (15 or 18 chars accepted, stored 18).
    pub faults: Mutex<HashMap<String, JobFaults>>,
    /// Bulk 2.0 query result bytes produced today (`DailyBulkV2QueryFileStorageMB`).
    pub query_bytes: AtomicU64,
    seq: AtomicU64,
}

type Registry = Vec<(Weak<AppState>, Arc<Bulk>)>;

fn registry() -> MutexGuard<'static, Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    lock(REG.get_or_init(|| Mutex::new(Vec::new())))
}

/// Locks a mutex, recovering from poisoning (the data stays usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The Bulk state of an emulator (created on first use, dropped with the emulator).
pub fn of(st: &Arc<AppState>) -> Arc<Bulk> {
    let mut reg = registry();
    reg.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, b)) = reg
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(st)))
    {
        return b.clone();
    }
    let b = Arc::new(Bulk::default());
    reg.push((Arc::downgrade(st), b.clone()));
    b
}

/// The Bulk state of an emulator, when it has one (for `/limits`).
pub fn existing(st: &AppState) -> Option<Arc<Bulk>> {
    registry()
        .iter()
        .find(|(w, _)| w.strong_count() > 0 && std::ptr::eq(w.as_ptr(), st))
        .map(|(_, b)| b.clone())
}

/// Remaining `DailyBulkV2QueryFileStorageMB` (max 1,048,576 MB = 1 TB).
pub fn query_storage_remaining_mb(st: &AppState) -> u64 {
    let used = existing(st).map_or(0, |b| b.query_bytes.load(Ordering::Relaxed));
    1_048_576u64.saturating_sub(used.div_ceil(1024 * 1024))
}

impl Bulk {
    /// Current configuration.
    pub fn config(&self) -> BulkConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// A new 18-char id with a key prefix (`750` job, `751` batch, `752` result).
    pub fn new_id(&self, prefix: &str, pod: char) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        ids::to18(&ids::make15(prefix, pod, n))
    }

    /// Faults of a job.
    pub fn job_faults(&self, id: &str) -> JobFaults {
        lock(&self.faults).get(id).cloned().unwrap_or_default()
    }
}

/// How long finished jobs and their results are kept (Salesforce deletes them after 7 days).
pub const RETENTION_MS: i64 = 7 * 86_400_000;

/// Drops finished jobs whose last change is older than [`RETENTION_MS`] (emulated clock).
pub fn expire(bulk: &Bulk, now_ms: i64) {
    let cutoff = now_ms - RETENTION_MS;
    lock(&bulk.ingest).retain(|_, j| {
        let j = lock(j);
        !(j.state.terminal() && j.modstamp_ms < cutoff)
    });
    lock(&bulk.queries).retain(|_, j| {
        let j = lock(j);
        !(j.state.terminal() && j.modstamp_ms < cutoff)
    });
    lock(&bulk.v1).retain(|_, j| {
        let (last, idle) = lock(j).settled();
        !(idle && last < cutoff)
    });
}

/// Normalises a job/batch id from a path to its 18-char form (case-insensitive suffix).
pub fn norm_id(id: &str) -> Option<String> {
    ids::to15(id).map(|i| ids::to18(&i))
}

/// Emulated-clock now in whole seconds (Salesforce's job timestamps carry `.000`).
pub fn now_s(st: &AppState) -> i64 {
    let n = st.clock.now_ms();
    n - n.rem_euclid(1000)
}

/// Waits out a stalled job; returns the fail message when the admin failed it.
pub async fn checkpoint(bulk: &Bulk, job_id: &str) -> Option<String> {
    loop {
        let f = bulk.job_faults(job_id);
        if let Some(m) = f.fail {
            return Some(m);
        }
        if !f.stalled {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Entry point

/// Which protocol a gate failure must be reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// REST error arrays (Bulk 2.0, Tooling).
    Rest,
    /// Bulk 1.0 `<error>` XML.
    V1Xml,
    /// Bulk 1.0 JSON error object.
    V1Json,
}

/// Checks the session and the daily API allowance; returns the `api-usage=N/M` header value.
pub fn gate(
    st: &AppState,
    headers: &HeaderMap,
    query: &str,
    flavor: Flavor,
) -> Result<String, Reply> {
    match auth::request_token(headers, query) {
        Some(t) if auth::valid(st, &t) => {}
        _ => {
            return Err(match flavor {
                Flavor::Rest => auth::invalid_session(),
                _ => crate::bulk1::error_reply(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    "InvalidSessionId",
                    "Invalid session id",
                ),
            });
        }
    }
    let max = st.api_max.load(Ordering::Relaxed);
    let used = st.api_used.load(Ordering::Relaxed);
    if used >= max {
        let mut r = match flavor {
            Flavor::Rest => Reply::error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ),
            _ => crate::bulk1::error_reply(
                flavor,
                StatusCode::FORBIDDEN,
                "ExceededQuota",
                "TotalRequests Limit exceeded.",
            ),
        };
        r.headers.push((
            header::HeaderName::from_static("sforce-limit-info"),
            format!("api-usage={used}/{max}"),
        ));
        return Err(r);
    }
    let used = st.api_used.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(format!("api-usage={used}/{max}"))
}

/// The `/__emulator/bulk` admin resources (loopback clients only); `None` for other paths.
pub fn admin_route(
    st: &Arc<AppState>,
    peer: Option<SocketAddr>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Option<Reply> {
    let rest = path.strip_prefix("/__emulator/bulk")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    if let Some(p) = peer
        && !p.ip().is_loopback()
    {
        return Some(Reply::json(
            StatusCode::FORBIDDEN,
            json!({"error": "the admin API only answers loopback clients"}),
        ));
    }
    Some(admin(st, method, rest, body))
}

/// Routes Bulk 2.0 (`/services/data/vXX.X/jobs/...`), Tooling
/// (`/services/data/vXX.X/tooling/...`) and Bulk 1.0 (`/services/async/XX.X/...`).
/// `None` when the path is not one of these.
pub fn route(
    st: &Arc<AppState>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Reply> {
    if let Some(rest) = path.strip_prefix("/services/async/") {
        let mut segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        if segs.is_empty() {
            return Some(crate::http::not_found());
        }
        let version = segs.remove(0);
        let v = version.trim_start_matches(['v', 'V']);
        let ok = v
            .split_once('.')
            .map_or(v, |(a, _)| a)
            .parse::<u32>()
            .is_ok_and(|n| (crate::http::MIN_VERSION..=crate::http::MAX_VERSION).contains(&n));
        let v = if ok {
            let major = v.split_once('.').map_or(v, |(a, _)| a);
            format!("{major}.0")
        } else {
            return Some(crate::bulk1::error_reply(
                Flavor::V1Xml,
                StatusCode::NOT_FOUND,
                "InvalidUrl",
                &format!("Unsupported API version: {version}"),
            ));
        };
        st.count_call(format!("{method} /services/async/XX.X/{}", key_of(&segs)));
        return Some(crate::bulk1::handle(
            st, method, &segs, &v, query, headers, body,
        ));
    }
    let rest = path.strip_prefix("/services/data/")?;
    let mut segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() < 2 || !matches!(segs[1], "jobs" | "tooling") {
        return None;
    }
    let v = crate::http::parse_version(segs[0])?;
    segs.remove(0);
    st.count_call(format!("{method} /services/data/vXX.X/{}", key_of(&segs)));
    let limit = match gate(st, headers, query, Flavor::Rest) {
        Ok(l) => l,
        Err(r) => return Some(r),
    };
    let mut reply = if segs[0] == "jobs" {
        crate::bulk2::handle(st, method, &segs[1..], &v, query, headers, body)
    } else {
        crate::tooling::handle(st, method, &segs[1..], &v, query, headers)
    };
    reply
        .headers
        .push((header::HeaderName::from_static("sforce-limit-info"), limit));
    Some(reply)
}

/// Call-counter key: ids replaced by `*`.
fn key_of(segs: &[&str]) -> String {
    segs.iter()
        .map(|s| {
            if s.len() >= 15 && s.chars().all(|c| c.is_ascii_alphanumeric()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn admin(st: &Arc<AppState>, method: &Method, rest: &str, body: &[u8]) -> Reply {
    let bulk = of(st);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) => Reply::json(StatusCode::OK, json!(bulk.config())),
        ("PUT", []) => {
            let mut cfg = bulk.config();
            let patch: Json = match serde_json::from_slice(body) {
                Ok(j) => j,
                Err(e) => {
                    return Reply::json(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("bad JSON: {e}")}),
                    );
                }
            };
            let mut cur = serde_json::to_value(&cfg).unwrap_or(Json::Null);
            if let (Json::Object(c), Json::Object(p)) = (&mut cur, patch) {
                for (k, v) in p {
                    c.insert(k, v);
                }
            }
            match serde_json::from_value::<BulkConfig>(cur) {
                Ok(c) => cfg = c,
                Err(e) => {
                    return Reply::json(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("bad bulk config: {e}")}),
                    );
                }
            }
            cfg.locks.parallelism = cfg.locks.parallelism.clamp(1, 1000);
            cfg.locks.gather_ms = cfg.locks.gather_ms.min(3_600_000);
            cfg.start_delay_ms = cfg.start_delay_ms.min(3_600_000);
            cfg.batch_size = cfg.batch_size.clamp(1, 1_000_000);
            cfg.default_page_size = cfg.default_page_size.max(1);
            cfg.default_page_bytes = cfg.default_page_bytes.max(1);
            if let Ok(mut c) = bulk.config.write() {
                *c = cfg.clone();
            }
            Reply::json(StatusCode::OK, json!(cfg))
        }
        ("DELETE", []) => {
            if let Ok(mut c) = bulk.config.write() {
                *c = BulkConfig::default();
            }
            lock(&bulk.faults).clear();
            Reply::json(StatusCode::OK, json!(BulkConfig::default()))
        }
        ("GET", ["jobs"]) => {
            let mut out = Vec::new();
            for j in lock(&bulk.ingest).values() {
                let j = lock(j);
                out.push(
                    json!({"id": j.id, "api": "2.0", "type": "ingest", "state": j.state.as_str()}),
                );
            }
            for j in lock(&bulk.queries).values() {
                let j = lock(j);
                out.push(
                    json!({"id": j.id, "api": "2.0", "type": "query", "state": j.state.as_str()}),
                );
            }
            for j in lock(&bulk.v1).values() {
                let j = lock(j);
                out.push(json!({"id": j.id, "api": "1.0", "type": j.operation.as_str(), "state": j.state.as_str()}));
            }
            Reply::json(StatusCode::OK, Json::Array(out))
        }
        ("POST", ["jobs", id, action]) => {
            let Some(id) = norm_id(id) else {
                return Reply::json(StatusCode::NOT_FOUND, json!({"error": "no such job"}));
            };
            let known = lock(&bulk.ingest).contains_key(&id)
                || lock(&bulk.queries).contains_key(&id)
                || lock(&bulk.v1).contains_key(&id);
            if !known {
                return Reply::json(StatusCode::NOT_FOUND, json!({"error": "no such job"}));
            }
            let mut faults = lock(&bulk.faults);
            let f = faults.entry(id.clone()).or_default();
            match *action {
                "stall" => f.stalled = true,
                "resume" => f.stalled = false,
                "fail" => {
                    let msg = serde_json::from_slice::<Json>(body)
                        .ok()
                        .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string))
                        .unwrap_or_else(|| {
                            "InternalServerError : job failed (injected fault)".to_string()
                        });
                    f.fail = Some(msg);
                    f.stalled = false;
                }
                _ => {
                    return Reply::json(
                        StatusCode::NOT_FOUND,
                        json!({"error": "actions: stall, resume, fail"}),
                    );
                }
            }
            let f = f.clone();
            drop(faults);
            if let Some(m) = &f.fail {
                crate::bulk2::fail_now(&bulk, &id, m, now_s(st));
                crate::bulk1::fail_now(&bulk, &id, m, now_s(st));
            }
            Reply::json(
                StatusCode::OK,
                json!({"id": id, "stalled": f.stalled, "fail": f.fail}),
            )
        }
        _ => Reply::json(
            StatusCode::NOT_FOUND,
            json!({"error": "bulk admin: GET|PUT|DELETE /__emulator/bulk, GET /__emulator/bulk/jobs, POST /__emulator/bulk/jobs/{id}/{stall|resume|fail}"}),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Operations and the write path

/// A DML operation of a Bulk job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// insert.
    Insert,
    /// update (by `Id`).
    Update,
    /// upsert (by the external id field).
    Upsert,
    /// delete (recycle bin).
    Delete,
    /// hardDelete (skips the recycle bin).
    HardDelete,
    /// query (Bulk 1.0).
    Query,
    /// queryAll (Bulk 1.0).
    QueryAll,
}

impl Op {
    /// Parses an operation name (case-insensitive).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "insert" => Op::Insert,
            "update" => Op::Update,
            "upsert" => Op::Upsert,
            "delete" => Op::Delete,
            "harddelete" => Op::HardDelete,
            "query" => Op::Query,
            "queryall" => Op::QueryAll,
            _ => return None,
        })
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
            Op::HardDelete => "hardDelete",
            Op::Query => "query",
            Op::QueryAll => "queryAll",
        }
    }

    /// True for query operations.
    pub fn is_query(self) -> bool {
        matches!(self, Op::Query | Op::QueryAll)
    }
}

/// What happened to one input record.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutcome {
    /// 18-char id written (or the uploaded id for failed updates/deletes).
    pub id: Option<String>,
    /// Whether a record was created.
    pub created: bool,
    /// The error, when the row failed.
    pub error: Option<WriteError>,
}

impl RowOutcome {
    /// A failure.
    pub fn fail(id: Option<String>, e: WriteError) -> RowOutcome {
        RowOutcome {
            id,
            created: false,
            error: Some(e),
        }
    }
}

/// `STATUS_CODE:message:fields --` as in Bulk CSV results (spec §4.1).
pub fn csv_error(e: &WriteError) -> String {
    if e.fields.is_empty() {
        format!("{}:{}:--", e.code, e.message)
    } else {
        format!("{}:{}:{} --", e.code, e.message, e.fields.join(","))
    }
}

/// `UNABLE_TO_LOCK_ROW` naming the contended record.
pub fn lock_error(id: &str) -> WriteError {
    WriteError::new(
        "UNABLE_TO_LOCK_ROW",
        format!("unable to obtain exclusive access to this record or 1 records: {id}"),
        vec![],
    )
}

/// Re-resolves a job's object and upsert key by name: the schema may have changed (admin
/// reset, new fields) since the job was created, so stored indexes are never trusted.
pub fn resolve_target(
    org: &Org,
    object: &str,
    ext: Option<&str>,
) -> Result<(usize, Option<usize>), WriteError> {
    let obj = org.obj(object).ok_or_else(|| {
        WriteError::new(
            "INVALID_TYPE",
            format!("sObject type '{object}' is not supported."),
            vec![],
        )
    })?;
    let ext_col = match ext {
        None => None,
        Some(e) => Some(org.def(obj).field(e).ok_or_else(|| {
            WriteError::new(
                "INVALID_FIELD",
                format!("No such column '{e}' on sobject of type {object}"),
                vec![e.to_string()],
            )
        })?),
    };
    Ok((obj, ext_col))
}

/// Value of a key in a record map, case-insensitively.
fn get_ci<'a>(rec: &'a Map<String, Json>, k: &str) -> Option<(&'a String, &'a Json)> {
    rec.iter().find(|(kk, _)| kk.eq_ignore_ascii_case(k))
}

fn id_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Applies one record with the shared write path. `ext_col` is the upsert key column.
pub fn apply(
    org: &mut Org,
    obj: usize,
    op: Op,
    ext_col: Option<usize>,
    mut rec: Map<String, Json>,
    ctx: WriteCtx,
) -> RowOutcome {
    rec.remove("attributes");
    match op {
        Op::Insert => {
            if let Some((k, v)) = get_ci(&rec, "Id") {
                if id_text(v).is_some() {
                    return RowOutcome::fail(
                        None,
                        WriteError::new(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            "cannot specify Id in an insert call",
                            vec!["Id".into()],
                        ),
                    );
                }
                let k = k.clone();
                rec.remove(&k);
            }
            match org.insert(obj, &rec, ctx) {
                Ok(id) => RowOutcome {
                    id: Some(id),
                    created: true,
                    error: None,
                },
                Err(e) => RowOutcome::fail(None, first(e)),
            }
        }
        Op::Update | Op::Delete | Op::HardDelete => {
            let id = get_ci(&rec, "Id").and_then(|(_, v)| id_text(v));
            let Some(id) = id else {
                return RowOutcome::fail(
                    None,
                    WriteError::new(
                        "MISSING_ARGUMENT",
                        format!(
                            "Id not specified in an {} call",
                            if op == Op::Update { "update" } else { "delete" }
                        ),
                        vec![],
                    ),
                );
            };
            let Some(id15) = ids::to15(&id) else {
                return RowOutcome::fail(
                    Some(id.clone()),
                    WriteError::new(
                        "MALFORMED_ID",
                        format!("malformed id {id}"),
                        vec!["Id".into()],
                    ),
                );
            };
            let id18 = ids::to18(&id15);
            let Some((o, row)) = org.find_any(&id15) else {
                return RowOutcome::fail(
                    Some(id18),
                    WriteError::new(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        vec![],
                    ),
                );
            };
            if o != obj {
                return RowOutcome::fail(
                    Some(id18.clone()),
                    WriteError::new(
                        "INVALID_ID_FIELD",
                        format!("Invalid id value for this SObject type: {id18}"),
                        vec!["Id".into()],
                    ),
                );
            }
            let res = if op == Op::Update {
                rec.retain(|k, _| !k.eq_ignore_ascii_case("Id"));
                org.update(obj, row, &rec, ctx).map_err(first)
            } else {
                org.delete(obj, row, ctx).map(|()| {
                    if op == Op::HardDelete {
                        // gone for good: out of the recycle bin and queryAll
                        let t = &mut org.tables[obj].rows[row as usize];
                        t.deleted_ms = Some(ctx.now - crate::row::RECYCLE_BIN_MS - 1);
                    }
                })
            };
            match res {
                Ok(()) => RowOutcome {
                    id: Some(id18),
                    created: false,
                    error: None,
                },
                Err(e) => RowOutcome::fail(Some(id18), e),
            }
        }
        Op::Upsert => {
            let col = ext_col.unwrap_or(0);
            let fname = org.def(obj).fields[col].name.clone();
            let key = get_ci(&rec, &fname)
                .map(|(_, v)| v.clone())
                .unwrap_or(Json::Null);
            rec.retain(|k, _| !k.eq_ignore_ascii_case(&fname));
            if col != 0 {
                rec.retain(|k, _| !k.eq_ignore_ascii_case("Id"));
            }
            match org.upsert(obj, col, &key, &rec, ctx) {
                Ok(UpsertOutcome::Created(id)) => RowOutcome {
                    id: Some(id),
                    created: true,
                    error: None,
                },
                Ok(UpsertOutcome::Updated(id)) => RowOutcome {
                    id: Some(id),
                    created: false,
                    error: None,
                },
                Ok(UpsertOutcome::Multiple(ids)) => RowOutcome::fail(
                    None,
                    WriteError::new(
                        "DUPLICATE_EXTERNAL_ID",
                        format!(
                            "{fname}: more than one record found for external id field: [{}]",
                            ids.join(", ")
                        ),
                        vec![fname],
                    ),
                ),
                Err(e) => RowOutcome::fail(None, first(e)),
            }
        }
        Op::Query | Op::QueryAll => RowOutcome::fail(
            None,
            WriteError::new("INVALID_OPERATION", "not a DML operation", vec![]),
        ),
    }
}

fn first(e: Vec<WriteError>) -> WriteError {
    e.into_iter()
        .next()
        .unwrap_or_else(|| WriteError::new("UNKNOWN_EXCEPTION", "write failed", vec![]))
}

// ---------------------------------------------------------------------------------------
// CSV input

/// A parsed CSV upload: header and records (cells as text).
#[derive(Debug, Default, Clone)]
pub struct CsvData {
    /// Header names as uploaded.
    pub header: Vec<String>,
    /// Rows (one allocation per record).
    pub rows: Vec<csv::StringRecord>,
}

/// Parses CSV with a delimiter. Errors read like Salesforce's `InvalidBatch` messages.
pub fn parse_csv(data: &[u8], delimiter: u8) -> Result<CsvData, String> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut out = CsvData::default();
    let mut rec = csv::StringRecord::new();
    let mut first = true;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                if first {
                    out.header = rec.iter().map(|s| s.trim().to_string()).collect();
                    first = false;
                    continue;
                }
                if rec.len() == 1 && rec.get(0) == Some("") {
                    continue;
                }
                if rec.len() != out.header.len() {
                    return Err(format!(
                        "InvalidBatch : Record {} has {} columns but the header has {}",
                        out.rows.len() + 1,
                        rec.len(),
                        out.header.len()
                    ));
                }
                out.rows.push(std::mem::take(&mut rec));
            }
            Err(e) => return Err(format!("InvalidBatch : Failed to parse CSV: {e}")),
        }
    }
    if out.header.is_empty() || out.header.iter().all(String::is_empty) {
        return Err("InvalidBatch : The CSV has no header row".into());
    }
    Ok(out)
}

/// How each CSV column maps onto the object.
#[derive(Debug, Clone)]
pub enum ColMap {
    /// A field (canonical name).
    Field(String),
    /// A relationship reference `Rel.ExtField` (canonical relationship name, key field).
    Rel(String, String),
}

/// Checks a header against the object; `Err` is the `InvalidBatch` message.
pub fn map_header(org: &Org, obj: usize, header: &[String]) -> Result<Vec<ColMap>, String> {
    let def = org.def(obj);
    let mut out = Vec::with_capacity(header.len());
    for h in header {
        if let Some((rel, field)) = h.split_once('.') {
            // polymorphic form `Type:Rel.Field`: only the relationship part is needed here
            let rel = rel.rsplit(':').next().unwrap_or(rel);
            let Some(col) = def.rel(rel) else {
                return Err(format!("InvalidBatch : Field name not found : {h}"));
            };
            let rname = def.fields[col]
                .relationship_name
                .clone()
                .unwrap_or_else(|| rel.to_string());
            out.push(ColMap::Rel(rname, field.to_string()));
        } else {
            let Some(col) = def.field(h) else {
                return Err(format!("InvalidBatch : Field name not found : {h}"));
            };
            out.push(ColMap::Field(def.fields[col].name.clone()));
        }
    }
    Ok(out)
}

/// One CSV row as a record body: empty cells are left out ("don't change"), `#N/A` is null,
/// relationship columns become `{"Rel": {"Ext__c": "x"}}`.
pub fn csv_record(cols: &[ColMap], row: &csv::StringRecord) -> Map<String, Json> {
    let mut m = Map::new();
    for (c, cell) in cols.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        let v = if cell == "#N/A" {
            Json::Null
        } else {
            Json::String(cell.to_string())
        };
        match c {
            ColMap::Field(f) => {
                m.insert(f.clone(), v);
            }
            ColMap::Rel(r, f) => {
                if v.is_null() {
                    m.insert(r.clone(), Json::Null);
                } else {
                    let mut inner = Map::new();
                    inner.insert(f.clone(), v);
                    m.insert(r.clone(), Json::Object(inner));
                }
            }
        }
    }
    m
}

// ---------------------------------------------------------------------------------------
// CSV output

/// Appends a double-quoted CSV cell.
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if s.contains('"') {
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
    } else {
        out.extend_from_slice(s.as_bytes());
    }
    out.push(b'"');
}

/// Appends a header cell: plain when safe, quoted otherwise.
pub fn push_plain(out: &mut Vec<u8>, s: &str, delim: u8) {
    if s.bytes()
        .any(|b| b == delim || b == b'"' || b == b'\n' || b == b'\r')
    {
        push_quoted(out, s);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Text of a value in Bulk CSV output (spec §1.5).
pub fn csv_text(v: &Val, kind: Kind) -> String {
    match (kind, v) {
        (_, Val::Null) => String::new(),
        (Kind::Id | Kind::Reference, Val::Str(s)) if s.len() == 15 => ids::to18(s),
        (Kind::Int, Val::Num(n)) => format!("{}", *n as i64),
        (_, Val::DateTime(ms)) => format_csv_datetime(*ms),
        (_, other) => crate::value::to_text(other),
    }
}

/// `2024-01-01T00:00:00.000Z`.
pub fn format_csv_datetime(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Utc.timestamp_millis_opt(ms).single() {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// A select list resolved for CSV rendering.
#[derive(Debug, Clone)]
pub struct CsvColumns {
    /// Header names (`Name`, `Account.Name`).
    pub header: Vec<String>,
    /// Canonical paths.
    pub paths: Vec<Vec<String>>,
    /// Kind of each leaf.
    pub kinds: Vec<Kind>,
}

/// Rejections common to Bulk queries; `Err((code, message))`.
pub fn bulk_query_columns(
    org: &Org,
    q: &ferry_soql::Query,
) -> Result<CsvColumns, (&'static str, String)> {
    use ferry_soql::SelectItem;
    let restriction = |what: &str| {
        (
            "API_ERROR",
            format!("Implementation restriction: {what} are not supported by the Bulk API"),
        )
    };
    if q.offset.is_some() {
        return Err(restriction("OFFSET clauses"));
    }
    if !q.group_by.is_empty() || q.having.is_some() {
        return Err(restriction("GROUP BY and HAVING clauses"));
    }
    if q.for_clause.is_some() {
        return Err(restriction("FOR VIEW and FOR REFERENCE clauses"));
    }
    let Some(obj) = org.obj(&q.from.object) else {
        return Err((
            "INVALIDENTITY",
            format!(
                "Entity '{}' is not supported by the Bulk API.",
                q.from.object
            ),
        ));
    };
    let alias = q.from.alias.as_deref();
    let mut cols = CsvColumns {
        header: Vec::new(),
        paths: Vec::new(),
        kinds: Vec::new(),
    };
    for item in &q.select {
        match item {
            SelectItem::Field(fp) => {
                let parts = fp.strip_alias(alias);
                let (path, kind) = resolve_path(org, obj, parts).ok_or_else(|| {
                    (
                        "INVALID_FIELD",
                        ferry_soql::error::invalid_field_message(
                            &parts.join("."),
                            &org.def(obj).name,
                        ),
                    )
                })?;
                if matches!(kind, Kind::Address | Kind::Location) {
                    return Err((
                        "INVALID_FIELD",
                        "Selecting compound data not supported in Bulk Query".into(),
                    ));
                }
                cols.header.push(path.join("."));
                cols.paths.push(path);
                cols.kinds.push(kind);
            }
            SelectItem::Subquery(_) => {
                return Err((
                    "API_ERROR",
                    "Implementation restriction: Aggregate Relationships not supported in Bulk Query (child subqueries)".into(),
                ));
            }
            SelectItem::Aggregate { .. } | SelectItem::CountAll => {
                return Err(restriction("aggregate functions"));
            }
            SelectItem::Fields(_) => {
                return Err(restriction("FIELDS() functions"));
            }
            _ => return Err(restriction("toLabel(), convertCurrency() and FORMAT()")),
        }
    }
    Ok(cols)
}

/// Canonical path and leaf kind of a dotted field path.
pub fn resolve_path(org: &Org, mut obj: usize, parts: &[String]) -> Option<(Vec<String>, Kind)> {
    let mut out = Vec::with_capacity(parts.len());
    let (last, rels) = parts.split_last()?;
    for r in rels {
        let def = org.def(obj);
        let col = def.rel(r)?;
        let f = &def.fields[col];
        out.push(f.relationship_name.clone().unwrap_or_else(|| r.clone()));
        // polymorphic: the first target that has the next part
        let targets: Vec<usize> = f.reference_to.iter().filter_map(|t| org.obj(t)).collect();
        obj = *targets.first()?;
    }
    let def = org.def(obj);
    let col = def.field(last)?;
    out.push(def.fields[col].name.clone());
    Some((out, def.kinds[col]))
}

/// Renders query rows as CSV (every value quoted), returning the bytes and each row's end
/// offset. The header is not included.
#[allow(clippy::too_many_arguments)]
pub fn render_csv_rows(
    org: &Org,
    obj: usize,
    rows: &[u32],
    cols: &CsvColumns,
    now: i64,
    delim: u8,
    eol: &[u8],
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) {
    let single: Vec<Option<usize>> = cols
        .paths
        .iter()
        .map(|p| {
            if p.len() == 1 {
                org.def(obj).field(&p[0])
            } else {
                None
            }
        })
        .collect();
    for &r in rows {
        if (r as usize) >= org.tables[obj].rows.len() {
            continue;
        }
        for (i, path) in cols.paths.iter().enumerate() {
            if i > 0 {
                out.push(delim);
            }
            let v = match single[i] {
                Some(c) => org.value(obj, r, c, now),
                None => org.path_value(obj, r, path, now, 0),
            };
            push_quoted(out, &csv_text(&v, cols.kinds[i]));
        }
        out.extend_from_slice(eol);
        ends.push(out.len());
    }
}

/// The header line of a query result.
pub fn csv_header(cols: &CsvColumns, delim: u8, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, h) in cols.header.iter().enumerate() {
        if i > 0 {
            out.push(delim);
        }
        push_quoted(&mut out, h);
    }
    out.extend_from_slice(eol);
    out
}

/// Parses and checks a Bulk query; `Err` is (code, message).
pub fn prepare_query(
    org: &Org,
    soql: &str,
) -> Result<(ferry_soql::Query, CsvColumns), (&'static str, String)> {
    let ast = ferry_soql::parse(soql).map_err(|e| (e.error_code(), e.message.clone()))?;
    let cols = bulk_query_columns(org, &ast)?;
    Ok((ast, cols))
}

/// Runs a checked query: (object, matching rows).
pub fn run_query(
    org: &Org,
    ast: &ferry_soql::Query,
    soql: &str,
    all_rows: bool,
    now: i64,
) -> Result<(usize, Vec<u32>), (&'static str, String)> {
    match crate::query::run(org, ast, soql, all_rows, now) {
        Ok(crate::query::Outcome::Rows { obj, rows, .. }) => Ok((obj, rows)),
        Ok(_) => Err((
            "API_ERROR",
            "Implementation restriction: aggregate queries are not supported by the Bulk API"
                .into(),
        )),
        Err(e) => Err((e.error_code(), e.message.clone())),
    }
}

/// The `Content-Type` of a request, lower-cased without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// A JSON body object, or `None`.
pub fn json_object(body: &[u8]) -> Option<Map<String, Json>> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_read_like_salesforce() {
        let e = WriteError::new(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [LastName]",
            vec!["LastName".into()],
        );
        assert_eq!(
            csv_error(&e),
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
        );
        let e = WriteError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            vec![],
        );
        assert_eq!(
            csv_error(&e),
            "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
        );
    }

    #[test]
    fn csv_parsing_quotes_blank_lines_and_ragged_rows() {
        let d = parse_csv(
            b"\xEF\xBB\xBFName,Note\n\"a, b\",\"say \"\"hi\"\"\"\n\nx,\n",
            b',',
        )
        .expect("csv");
        assert_eq!(d.header, ["Name", "Note"]);
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0].get(0), Some("a, b"));
        assert_eq!(d.rows[0].get(1), Some("say \"hi\""));
        assert_eq!(d.rows[1].get(1), Some(""));
        assert!(parse_csv(b"A,B\n1\n", b',').is_err());
        assert!(parse_csv(b"", b',').is_err());
        let d = parse_csv(b"A|B\r\n1|2\r\n", b'|').expect("pipe");
        assert_eq!(d.rows[0].get(1), Some("2"));
    }

    #[test]
    fn csv_records_skip_empty_cells_and_null_na() {
        let cols = vec![
            ColMap::Field("Name".into()),
            ColMap::Field("Phone".into()),
            ColMap::Rel("Account".into(), "Ext__c".into()),
        ];
        let row = csv::StringRecord::from(vec!["X", "", "A-1"]);
        let m = csv_record(&cols, &row);
        assert_eq!(
            Json::Object(m),
            json!({"Name": "X", "Account": {"Ext__c": "A-1"}})
        );
        let row = csv::StringRecord::from(vec!["X", "#N/A", "#N/A"]);
        let m = csv_record(&cols, &row);
        assert_eq!(
            Json::Object(m),
            json!({"Name": "X", "Phone": null, "Account": null})
        );
    }

    #[test]
    fn quoting_and_datetimes() {
        let mut out = Vec::new();
        push_quoted(&mut out, "a\"b");
        push_plain(&mut out, "Plain", b',');
        push_plain(&mut out, "with,comma", b',');
        assert_eq!(out, b"\"a\"\"b\"Plain\"with,comma\"");
        assert_eq!(format_csv_datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(csv_text(&Val::Bool(true), Kind::Bool), "true");
        assert_eq!(
            csv_text(&Val::Str("001000000000001".into()), Kind::Id).len(),
            18
        );
    }
}
