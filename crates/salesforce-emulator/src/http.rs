//! HTTP entry point: path normalisation, dispatch to OAuth, identity, REST and admin
//! handlers, API limits (`Sforce-Limit-Info`, `REQUEST_LIMIT_EXCEEDED`) and injected faults.
//!
//! One fallback handler does the routing by hand so that slashes are normalised (`//`,
//! trailing `/`, `query/?q=`), unknown paths get Salesforce's `NOT_FOUND` array body, and
//! wrong methods get `METHOD_NOT_ALLOWED`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rand::Rng;
use serde_json::{Map, Value as Json, json};

use crate::auth;
use crate::state::{AppState, Cursor};
use crate::store::{Org, UpsertOutcome, WriteError};
use crate::value::{Val, format_datetime, parse_datetime};
use crate::{describe, ids, query};

/// Oldest and newest API versions served.
pub const MIN_VERSION: u32 = 20;
/// Newest API version.
pub const MAX_VERSION: u32 = 62;

/// A response under construction.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ReplyBody,
    /// Extra headers.
    pub headers: Vec<(header::HeaderName, String)>,
}

/// Response body kinds.
#[derive(Debug)]
pub enum ReplyBody {
    /// `application/json;charset=UTF-8`.
    Json(Json),
    /// No body.
    Empty,
    /// `text/html;charset=UTF-8`.
    Html(String),
    /// Raw bytes with a content type.
    Raw(&'static str, Vec<u8>),
}

impl Reply {
    /// JSON reply.
    pub fn json(status: StatusCode, body: Json) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }
    /// Empty reply.
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: ReplyBody::Empty,
            headers: Vec::new(),
        }
    }
    /// HTML page.
    pub fn html(s: String) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: ReplyBody::Html(s),
            headers: Vec::new(),
        }
    }
    /// 302 redirect.
    pub fn redirect(to: String) -> Reply {
        Reply {
            status: StatusCode::FOUND,
            body: ReplyBody::Empty,
            headers: vec![(header::LOCATION, to)],
        }
    }
    /// Replaces the status.
    pub fn with_status(mut self, s: StatusCode) -> Reply {
        self.status = s;
        self
    }
    /// REST error array `[{"message","errorCode"}]`.
    pub fn error(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::json(status, json!([{"message": message, "errorCode": code}]))
    }
    fn into_response(self) -> Response {
        let mut resp = match self.body {
            ReplyBody::Json(j) => {
                let bytes = serde_json::to_vec(&j).unwrap_or_default();
                let mut r = Response::new(Body::from(bytes));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json;charset=UTF-8"),
                );
                r
            }
            ReplyBody::Empty => Response::new(Body::empty()),
            ReplyBody::Html(h) => {
                let mut r = Response::new(Body::from(h));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html;charset=UTF-8"),
                );
                r
            }
            ReplyBody::Raw(ct, b) => {
                let mut r = Response::new(Body::from(b));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                r
            }
        };
        *resp.status_mut() = self.status;
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

/// 404 `NOT_FOUND` with Salesforce's array body.
pub fn not_found() -> Reply {
    Reply::json(
        StatusCode::NOT_FOUND,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
    )
}

fn method_not_allowed(method: &Method, allowed: &str) -> Reply {
    Reply::json(
        StatusCode::METHOD_NOT_ALLOWED,
        json!([{"errorCode": "METHOD_NOT_ALLOWED", "message": format!("HTTP Method '{method}' not allowed. Allowed are {allowed}")}]),
    )
}

fn errors_reply(status: StatusCode, errs: &[WriteError]) -> Reply {
    Reply::json(
        status,
        Json::Array(errs.iter().map(WriteError::rest_json).collect()),
    )
}

/// The router: everything goes through one handler that routes by normalised path.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(entry).with_state(state)
}

/// Collapses `//` and drops a trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() { "/".into() } else { out }
}

async fn entry(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 30).await else {
        return Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "JSON_PARSER_ERROR",
            "request body too large",
        )
        .into_response();
    };
    let path = normalize(parts.uri.path());
    let query = parts.uri.query().unwrap_or("").to_string();
    if let Some(reply) = crate::bulk::admin_route(&st, peer, &parts.method, &path, &body) {
        return reply.into_response();
    }
    if path == "/__emulator" || path.starts_with("/__emulator/") {
        return crate::admin::handle(&st, peer, &parts.method, &path, &query, &body)
            .into_response();
    }
    let faults = st.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
    }
    let is_api = path.starts_with("/services/") || path.starts_with("/id/");
    if is_api && faults.error_rate > 0.0 && rand::rng().random::<f64>() < faults.error_rate {
        let status = StatusCode::from_u16(faults.error_status.unwrap_or(503))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reply = if status == StatusCode::SERVICE_UNAVAILABLE {
            Reply::error(
                status,
                "SERVER_UNAVAILABLE",
                "Server temporarily unavailable (injected fault)",
            )
        } else {
            Reply::error(
                status,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred (injected fault)",
            )
        };
        return reply.into_response();
    }
    // Bulk API 2.0/1.0 and Tooling (after the injected faults, so those apply to them too)
    if let Some(reply) =
        crate::bulk::route(&st, &parts.method, &path, &query, &parts.headers, &body)
    {
        return reply.into_response();
    }
    let reply = dispatch(&st, &parts.method, &path, &query, &parts.headers, &body);
    reply.into_response()
}

fn version_label(v: u32) -> String {
    let k = v as i64 - 59;
    let season = ["Winter", "Spring", "Summer"][k.rem_euclid(3) as usize];
    let year = 24 + k.div_euclid(3);
    format!("{season} '{year:02}")
}

/// Parses `vNN.N` into its canonical `NN.0` text.
pub fn parse_version(seg: &str) -> Option<String> {
    let v = seg.strip_prefix('v').or_else(|| seg.strip_prefix('V'))?;
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let n: u32 = major.parse().ok()?;
    if minor != "0" || !(MIN_VERSION..=MAX_VERSION).contains(&n) {
        return None;
    }
    Some(format!("{n}.0"))
}

fn dispatch(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if path.starts_with("/services/oauth2") {
        st.count_call(format!("{method} {path}"));
        return auth::handle(st, method, path, query, headers, body);
    }
    if let Some(v) = path.strip_prefix("/services/Soap/u/") {
        st.count_call(format!("{method} /services/Soap/u"));
        if *method != Method::POST {
            return method_not_allowed(method, "POST");
        }
        let version = v.split('/').next().unwrap_or("59.0");
        return auth::soap_login(st, version, body);
    }
    if path.starts_with("/id/") {
        st.count_call(format!("{method} /id"));
        return auth::identity(st, path, query, headers);
    }
    if path == "/services/data" {
        st.count_call(format!("{method} /services/data"));
        let list: Vec<Json> = (MIN_VERSION..=MAX_VERSION).map(|v| json!({"label": version_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")})).collect();
        return Reply::json(StatusCode::OK, Json::Array(list));
    }
    let Some(rest_path) = path.strip_prefix("/services/data/") else {
        return not_found();
    };
    let mut segs: Vec<&str> = rest_path.split('/').collect();
    let Some(version) = parse_version(segs[0]) else {
        return not_found();
    };
    segs.remove(0);
    let endpoint = endpoint_key(&segs);
    st.count_call(format!("{method} /services/data/vXX.X{endpoint}"));
    match auth::request_token(headers, query) {
        Some(t) if auth::valid(st, &t) => {}
        _ => return auth::invalid_session(),
    }
    let max = st.api_max.load(Ordering::Relaxed);
    let used = st.api_used.load(Ordering::Relaxed);
    if used >= max {
        let mut r = Reply::error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        r.headers.push((
            header::HeaderName::from_static("sforce-limit-info"),
            format!("api-usage={used}/{max}"),
        ));
        return r;
    }
    let used = st.api_used.fetch_add(1, Ordering::Relaxed) + 1;
    let mut r = rest(st, method, &segs, &version, query, headers, body);
    r.headers.push((
        header::HeaderName::from_static("sforce-limit-info"),
        format!("api-usage={used}/{max}"),
    ));
    r
}

fn endpoint_key(segs: &[&str]) -> String {
    let mut out = String::new();
    for (i, s) in segs.iter().enumerate() {
        out.push('/');
        let generic =
            (i >= 2 && segs[0] == "sobjects" && !matches!(*s, "describe" | "deleted" | "updated"))
                || (i >= 1 && matches!(segs[0], "query" | "queryAll"));
        out.push_str(if generic { "*" } else { s });
    }
    out
}

fn qparams(query: &str) -> Vec<(String, String)> {
    auth::params(query.as_bytes())
}

fn qget<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

fn parse_body(body: &[u8]) -> Result<Json, Reply> {
    if body.is_empty() {
        return Ok(Json::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            &format!("Unexpected character: {e}"),
        )
    })
}

/// The REST API below `/services/data/vXX.X` (also used for composite sub-requests).
pub fn rest(
    st: &AppState,
    method: &Method,
    segs: &[&str],
    v: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let segs: Vec<&str> = segs.iter().copied().filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [] => only_get(method, || Reply::json(StatusCode::OK, resource_map(st, v))),
        ["limits"] => only_get(method, || Reply::json(StatusCode::OK, limits(st))),
        ["limits", "recordCount"] => only_get(method, || record_count(st, query)),
        ["sobjects"] => only_get(method, || {
            not_modified(st, headers)
                .unwrap_or_else(|| Reply::json(StatusCode::OK, describe::global(&st.org(), v)))
        }),
        ["sobjects", o, "describe"]
            if *method == Method::GET
                && st.org().obj(o).is_some()
                && not_modified(st, headers).is_some() =>
        {
            not_modified(st, headers).unwrap_or_else(not_found)
        }
        ["sobjects", obj, rest @ ..] => sobjects(st, method, obj, rest, v, query, body),
        ["query" | "queryAll", locator] => only_get(method, || query_more(st, locator, v)),
        ["query"] => only_get(method, || run_query(st, query, false, v, headers)),
        ["queryAll"] => only_get(method, || run_query(st, query, true, v, headers)),
        ["composite", "sobjects", rest @ ..] => collections(st, method, rest, v, query, body),
        ["composite", "batch"] => {
            if method != Method::POST {
                return method_not_allowed(method, "POST");
            }
            composite_batch(st, v, headers, body)
        }
        ["composite"] => {
            if method != Method::POST {
                return method_not_allowed(method, "POST");
            }
            composite(st, v, headers, body)
        }
        _ => not_found(),
    }
}

/// 304 when `If-Modified-Since` is not older than the last schema change (describe calls).
fn not_modified(st: &AppState, headers: &HeaderMap) -> Option<Reply> {
    let since = headers.get(header::IF_MODIFIED_SINCE)?.to_str().ok()?;
    let since = chrono::DateTime::parse_from_rfc2822(since)
        .ok()?
        .timestamp_millis();
    let changed = st.schema_changed_ms.load(Ordering::Relaxed);
    (changed / 1000 <= since / 1000).then(|| Reply::empty(StatusCode::NOT_MODIFIED))
}

fn only_get(method: &Method, f: impl FnOnce() -> Reply) -> Reply {
    if *method == Method::GET || *method == Method::HEAD {
        f()
    } else {
        method_not_allowed(method, "GET,HEAD")
    }
}

fn resource_map(st: &AppState, v: &str) -> Json {
    let d = format!("/services/data/v{v}");
    let org = st.org();
    json!({
        "tooling": format!("{d}/tooling"),
        "metadata": format!("{d}/metadata"),
        "eclair": format!("{d}/eclair"),
        "folders": format!("{d}/folders"),
        "prechatForms": format!("{d}/prechatForms"),
        "jsonxform": format!("{d}/jsonxform"),
        "chatter": format!("{d}/chatter"),
        "tabs": format!("{d}/tabs"),
        "appMenu": format!("{d}/appMenu"),
        "quickActions": format!("{d}/quickActions"),
        "queryAll": format!("{d}/queryAll"),
        "commerce": format!("{d}/commerce"),
        "wave": format!("{d}/wave"),
        "analytics": format!("{d}/analytics"),
        "search": format!("{d}/search"),
        "identity": format!("{}/id/{}/{}", st.base(), ids::to18(&org.org_id), ids::to18(&org.user_id)),
        "composite": format!("{d}/composite"),
        "parameterizedSearch": format!("{d}/parameterizedSearch"),
        "theme": format!("{d}/theme"),
        "nouns": format!("{d}/nouns"),
        "recent": format!("{d}/recent"),
        "licensing": format!("{d}/licensing"),
        "limits": format!("{d}/limits"),
        "async-queries": format!("{d}/async-queries"),
        "query": format!("{d}/query"),
        "jobs": format!("{d}/jobs"),
        "sobjects": format!("{d}/sobjects"),
        "actions": format!("{d}/actions"),
        "support": format!("{d}/support"),
    })
}

fn limits(st: &AppState) -> Json {
    let max = st.api_max.load(Ordering::Relaxed);
    let used = st.api_used.load(Ordering::Relaxed);
    let org = st.org();
    let records: usize = org
        .tables
        .iter()
        .map(|t| t.rows.iter().filter(|r| r.deleted_ms.is_none()).count())
        .sum();
    let data_mb = (records as u64 * 2048).div_ceil(1024 * 1024);
    let bulk_batches = st.bulk_batches_used.load(Ordering::Relaxed);
    let bulk_jobs = st.bulk_query_jobs_used.load(Ordering::Relaxed);
    json!({
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "ConcurrentSyncReportRuns": {"Max": 20, "Remaining": 20},
        "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
        "DailyAsyncApexExecutions": {"Max": 250_000, "Remaining": 250_000},
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": 15_000u64.saturating_sub(bulk_batches)},
        "DailyBulkV2QueryFileStorageMB": {"Max": 1_048_576, "Remaining": crate::bulk::query_storage_remaining_mb(st)},
        "DailyBulkV2QueryJobs": {"Max": 10_000, "Remaining": 10_000u64.saturating_sub(bulk_jobs)},
        "DataStorageMB": {"Max": 1024, "Remaining": 1024u64.saturating_sub(data_mb)},
        "FileStorageMB": {"Max": 1024, "Remaining": 1024},
        "HourlyTimeBasedWorkflow": {"Max": 1000, "Remaining": 1000},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
    })
}

fn record_count(st: &AppState, query: &str) -> Reply {
    let p = qparams(query);
    let org = st.org();
    let wanted: Option<Vec<String>> =
        qget(&p, "sObjects").map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let mut out = Vec::new();
    for (i, o) in org.schema.objects.iter().enumerate() {
        if let Some(w) = &wanted
            && !w.iter().any(|x| x.eq_ignore_ascii_case(&o.name))
        {
            continue;
        }
        let n = org.tables[i]
            .rows
            .iter()
            .filter(|r| r.deleted_ms.is_none())
            .count();
        if n > 0 || wanted.is_some() {
            out.push(json!({"count": n, "name": o.name}));
        }
    }
    Reply::json(StatusCode::OK, json!({"sObjects": out}))
}

/// A record as REST retrieve returns it (all fields, or `fields`).
pub fn record_json(
    st: &AppState,
    obj: usize,
    row: u32,
    fields: Option<&[String]>,
    v: &str,
) -> Result<Json, Reply> {
    let org = st.org();
    let now = st.clock.now_ms();
    let def = org.def(obj);
    let id = org
        .row(obj, row)
        .id_opt()
        .map(ids::to18)
        .unwrap_or_default();
    let mut m = Map::new();
    m.insert("attributes".into(), query::attributes(&def.name, &id, v));
    let cols: Vec<usize> = match fields {
        Some(fs) => {
            let mut cols = Vec::new();
            for f in fs {
                let c = def.field(f.trim()).ok_or_else(|| {
                    Reply::error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        &format!(
                            "No such column '{}' on sobject of type {}",
                            f.trim(),
                            def.name
                        ),
                    )
                })?;
                cols.push(c);
            }
            if !cols.contains(&0) {
                cols.insert(0, 0);
            }
            cols
        }
        None => (0..def.fields.len()).collect(),
    };
    for c in cols {
        let kind = def.kinds[c];
        let val = if matches!(
            kind,
            crate::schema::Kind::Address | crate::schema::Kind::Location
        ) {
            query::compound(&org, obj, row, c, now)
        } else {
            query::render_val(&org.value(obj, row, c, now), kind)
        };
        m.insert(def.fields[c].name.clone(), val);
    }
    Ok(Json::Object(m))
}

fn lock_error(id: &str) -> WriteError {
    WriteError::new(
        "UNABLE_TO_LOCK_ROW",
        format!("unable to obtain exclusive access to this record or 1 records: {id}"),
        vec![],
    )
}

#[allow(clippy::too_many_arguments)]
fn sobjects(
    st: &AppState,
    method: &Method,
    obj_name: &str,
    rest: &[&str],
    v: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    let Some(obj) = st.org().obj(obj_name) else {
        return not_found();
    };
    let p = qparams(query);
    match rest {
        [] => match *method {
            Method::GET | Method::HEAD => {
                let org = st.org();
                let def = org.def(obj);
                let recent: Vec<Json> = org.tables[obj]
                    .rows
                    .iter()
                    .rev()
                    .filter(|r| r.deleted_ms.is_none())
                    .take(5)
                    .map(|r| {
                        let id = r.id_opt().map(ids::to18).unwrap_or_default();
                        let mut m = Map::new();
                        m.insert("attributes".into(), query::attributes(&def.name, &id, v));
                        m.insert("Id".into(), Json::String(id));
                        if let Some(n) = def.fields.iter().position(|f| f.name_field) {
                            m.insert(
                                def.fields[n].name.clone(),
                                query::render_val(&r.get(n), def.kinds[n]),
                            );
                        }
                        Json::Object(m)
                    })
                    .collect();
                Reply::json(
                    StatusCode::OK,
                    json!({"objectDescribe": describe::global_entry(&org, def, v), "recentItems": recent}),
                )
            }
            Method::POST => {
                let b = match parse_body(body) {
                    Ok(Json::Object(m)) => m,
                    Ok(_) => {
                        return Reply::error(
                            StatusCode::BAD_REQUEST,
                            "JSON_PARSER_ERROR",
                            "Expected a JSON object",
                        );
                    }
                    Err(r) => return r,
                };
                if st.lock_fault() {
                    return errors_reply(StatusCode::BAD_REQUEST, &[lock_error("")]);
                }
                let ctx = st.ctx();
                match st.org_mut().insert(obj, &b, ctx) {
                    Ok(id) => Reply::json(
                        StatusCode::CREATED,
                        json!({"id": id, "success": true, "errors": []}),
                    ),
                    Err(e) => errors_reply(StatusCode::BAD_REQUEST, &e),
                }
            }
            _ => method_not_allowed(method, "GET,HEAD,POST"),
        },
        ["describe"] => only_get(method, || {
            Reply::json(StatusCode::OK, describe::describe(&st.org(), obj, v))
        }),
        ["deleted"] => only_get(method, || replication(st, obj, &p, true)),
        ["updated"] => only_get(method, || replication(st, obj, &p, false)),
        [id] => {
            let Some(id15) =
                ids::to15(id).filter(|i| st.org().schema.object_for_id(i) == Some(obj))
            else {
                if ids::to15(id).is_some() {
                    return not_found();
                }
                return Reply::json(
                    StatusCode::NOT_FOUND,
                    json!([{"errorCode": "NOT_FOUND", "message": format!("Provided external ID field does not exist or is not accessible: {id}")}]),
                );
            };
            let row = st.org().find(obj, &id15);
            let Some(row) = row else { return not_found() };
            record_op(st, method, obj, row, &p, v, body)
        }
        [field, value] => external_id(st, method, obj, field, value, &p, v, body),
        _ => not_found(),
    }
}

fn record_op(
    st: &AppState,
    method: &Method,
    obj: usize,
    row: u32,
    p: &[(String, String)],
    v: &str,
    body: &[u8],
) -> Reply {
    let ctx = st.ctx();
    match *method {
        Method::GET | Method::HEAD => {
            if !st.org().row(obj, row).in_query_all(st.clock.now_ms()) {
                return not_found();
            }
            if st.org().row(obj, row).deleted_ms.is_some() {
                return errors_reply(
                    StatusCode::NOT_FOUND,
                    &[WriteError::new(
                        "ENTITY_IS_DELETED",
                        "entity is deleted",
                        vec![],
                    )],
                );
            }
            let fields: Option<Vec<String>> = qget(p, "fields").map(|f| {
                f.split(',')
                    .map(str::to_string)
                    .filter(|s| !s.trim().is_empty())
                    .collect()
            });
            match record_json(st, obj, row, fields.as_deref(), v) {
                Ok(j) => Reply::json(StatusCode::OK, j),
                Err(r) => r,
            }
        }
        Method::PATCH => {
            let b = match parse_body(body) {
                Ok(Json::Object(m)) => m,
                Ok(_) => {
                    return Reply::error(
                        StatusCode::BAD_REQUEST,
                        "JSON_PARSER_ERROR",
                        "Expected a JSON object",
                    );
                }
                Err(r) => return r,
            };
            if st.lock_fault() {
                let id = st
                    .org()
                    .row(obj, row)
                    .id_opt()
                    .map(ids::to18)
                    .unwrap_or_default();
                return errors_reply(StatusCode::BAD_REQUEST, &[lock_error(&id)]);
            }
            let res = st.org_mut().update(obj, row, &b, ctx);
            match res {
                Ok(()) => Reply::empty(StatusCode::NO_CONTENT),
                Err(e) if e.first().is_some_and(|x| x.code == "ENTITY_IS_DELETED") => {
                    errors_reply(StatusCode::NOT_FOUND, &e)
                }
                Err(e) => errors_reply(StatusCode::BAD_REQUEST, &e),
            }
        }
        Method::DELETE => {
            if st.lock_fault() {
                let id = st
                    .org()
                    .row(obj, row)
                    .id_opt()
                    .map(ids::to18)
                    .unwrap_or_default();
                return errors_reply(StatusCode::BAD_REQUEST, &[lock_error(&id)]);
            }
            let res = st.org_mut().delete(obj, row, ctx);
            match res {
                Ok(()) => Reply::empty(StatusCode::NO_CONTENT),
                Err(e) if e.code == "ENTITY_IS_DELETED" => {
                    errors_reply(StatusCode::NOT_FOUND, &[e])
                }
                Err(e) => errors_reply(StatusCode::BAD_REQUEST, &[e]),
            }
        }
        _ => method_not_allowed(method, "GET,PATCH,DELETE,HEAD"),
    }
}

#[allow(clippy::too_many_arguments)]
fn external_id(
    st: &AppState,
    method: &Method,
    obj: usize,
    field: &str,
    value: &str,
    p: &[(String, String)],
    v: &str,
    body: &[u8],
) -> Reply {
    let col = st.org().def(obj).field(field);
    let Some(col) = col.filter(|c| {
        let org = st.org();
        let f = &org.def(obj).fields[*c];
        *c == 0 || f.external_id || f.id_lookup
    }) else {
        return Reply::json(
            StatusCode::NOT_FOUND,
            json!([{"errorCode": "NOT_FOUND", "message": format!("Provided external ID field does not exist or is not accessible: {field}")}]),
        );
    };
    let key = if col == 0 {
        Val::Str(ids::to15(value).unwrap_or_else(|| value.to_string()).into())
    } else {
        Val::str(value)
    };
    match *method {
        Method::GET | Method::HEAD | Method::DELETE => {
            let rows = st.org_mut().lookup(obj, col, &key);
            match rows.as_slice() {
                [] => not_found(),
                [r] => record_op(st, method, obj, *r, p, v, body),
                many => multiple_choices(st, obj, many, v),
            }
        }
        Method::PATCH | Method::POST => {
            let b = match parse_body(body) {
                Ok(Json::Object(m)) => m,
                Ok(_) => {
                    return Reply::error(
                        StatusCode::BAD_REQUEST,
                        "JSON_PARSER_ERROR",
                        "Expected a JSON object",
                    );
                }
                Err(r) => return r,
            };
            if st.lock_fault() {
                return errors_reply(StatusCode::BAD_REQUEST, &[lock_error("")]);
            }
            let ctx = st.ctx();
            let major: u32 = v
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(MAX_VERSION);
            let res = st
                .org_mut()
                .upsert(obj, col, &Json::String(value.to_string()), &b, ctx);
            match res {
                Ok(UpsertOutcome::Created(id)) => Reply::json(
                    StatusCode::CREATED,
                    json!({"id": id, "success": true, "errors": [], "created": true}),
                ),
                Ok(UpsertOutcome::Updated(id)) if major >= 46 => Reply::json(
                    StatusCode::OK,
                    json!({"id": id, "success": true, "errors": [], "created": false}),
                ),
                Ok(UpsertOutcome::Updated(_)) => Reply::empty(StatusCode::NO_CONTENT),
                Ok(UpsertOutcome::Multiple(ids)) => {
                    let urls: Vec<Json> = ids
                        .iter()
                        .map(|i| {
                            Json::String(format!(
                                "/services/data/v{v}/sobjects/{}/{i}",
                                st.org().def(obj).name
                            ))
                        })
                        .collect();
                    Reply::json(StatusCode::MULTIPLE_CHOICES, Json::Array(urls))
                }
                Err(e) if e.first().is_some_and(|x| x.code == "NOT_FOUND") => {
                    errors_reply(StatusCode::NOT_FOUND, &e)
                }
                Err(e) => errors_reply(StatusCode::BAD_REQUEST, &e),
            }
        }
        _ => method_not_allowed(method, "GET,PATCH,DELETE,HEAD,POST"),
    }
}

fn multiple_choices(st: &AppState, obj: usize, rows: &[u32], v: &str) -> Reply {
    let org = st.org();
    let name = org.def(obj).name.clone();
    let urls: Vec<Json> = rows
        .iter()
        .map(|r| {
            Json::String(format!(
                "/services/data/v{v}/sobjects/{name}/{}",
                org.row(obj, *r).id_opt().map(ids::to18).unwrap_or_default()
            ))
        })
        .collect();
    Reply::json(StatusCode::MULTIPLE_CHOICES, Json::Array(urls))
}

fn minute_floor(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

fn replication(st: &AppState, obj: usize, p: &[(String, String)], deleted: bool) -> Reply {
    let (Some(start), Some(end)) = (
        qget(p, "start").and_then(parse_datetime),
        qget(p, "end").and_then(parse_datetime),
    ) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "start and end date parameters are required (ISO 8601 datetimes)",
        );
    };
    let now = st.clock.now_ms();
    let earliest = minute_floor(now - 15 * 86_400_000);
    if end < start {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALID_REPLICATION_DATE",
            "end date must be after start date",
        );
    }
    let start = minute_floor(start);
    let latest = minute_floor(end.min(now));
    let org = st.org();
    let def = org.def(obj);
    let smod = def.modstamp_col();
    if deleted {
        if start < earliest && end < earliest {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALID_REPLICATION_DATE",
                "startDate before org replication enabled date",
            );
        }
        let recs: Vec<Json> = org.tables[obj]
            .rows
            .iter()
            .filter_map(|r| {
                let d = r.deleted_ms?;
                (d >= start.max(earliest) && d < latest).then(|| json!({"id": r.id_opt().map(ids::to18).unwrap_or_default(), "deletedDate": format_datetime(d)}))
            })
            .collect();
        Reply::json(
            StatusCode::OK,
            json!({"deletedRecords": recs, "earliestDateAvailable": format_datetime(earliest), "latestDateCovered": format_datetime(latest)}),
        )
    } else {
        // Rows by SystemModstamp from the index, in row order (as a scan returns them).
        let table = &org.tables[obj];
        let mut rows: Vec<u32> = if smod.is_some() && start < latest {
            table
                .modstamps
                .range((start, 0)..(latest, 0))
                .map(|(_, row)| *row)
                .collect()
        } else {
            Vec::new()
        };
        rows.sort_unstable();
        let ids: Vec<Json> = rows
            .iter()
            .filter_map(|row| table.rows.get(*row as usize))
            .filter(|r| r.deleted_ms.is_none())
            .map(|r| Json::String(r.id_opt().map(ids::to18).unwrap_or_default()))
            .collect();
        Reply::json(
            StatusCode::OK,
            json!({"ids": ids, "latestDateCovered": format_datetime(latest)}),
        )
    }
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split([';', ',']).find_map(|kv| {
                kv.trim()
                    .strip_prefix("batchSize=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        })
        .map_or(2000, |n| n.clamp(200, 2000))
}

fn run_query(st: &AppState, query: &str, all_rows: bool, v: &str, headers: &HeaderMap) -> Reply {
    let p = qparams(query);
    let Some(q) = qget(&p, "q") else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let ast = match ferry_soql::parse(q) {
        Ok(a) => a,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e.error_code(), &e.message),
    };
    let now = st.clock.now_ms();
    let outcome = {
        let org = st.org();
        query::run(&org, &ast, q, all_rows, now)
    };
    match outcome {
        Err(e) => Reply::error(StatusCode::BAD_REQUEST, e.error_code(), &e.message),
        Ok(query::Outcome::Count(n)) => Reply::json(
            StatusCode::OK,
            json!({"totalSize": n, "done": true, "records": []}),
        ),
        Ok(query::Outcome::Aggregate(rows)) => Reply::json(
            StatusCode::OK,
            json!({"totalSize": rows.len(), "done": true, "records": rows}),
        ),
        Ok(query::Outcome::Rows { obj, plan, rows }) => {
            let batch = batch_size(headers);
            let cursor = Cursor {
                obj,
                plan,
                rows: Arc::new(rows),
                batch,
                touched: Instant::now(),
            };
            page(st, cursor, 0, v, None)
        }
    }
}

fn page(st: &AppState, cursor: Cursor, offset: usize, v: &str, locator: Option<String>) -> Reply {
    let total = cursor.rows.len();
    let end = (offset + cursor.batch).min(total);
    let now = st.clock.now_ms();
    let records: Vec<Json> = {
        let org = st.org();
        cursor.rows[offset.min(total)..end]
            .iter()
            .filter(|r| (**r as usize) < org.tables[cursor.obj].rows.len())
            .map(|r| query::render(&org, &cursor.plan, cursor.obj, *r, now, v))
            .collect()
    };
    let mut m = Map::new();
    m.insert("totalSize".into(), json!(total));
    m.insert("done".into(), json!(end >= total));
    if end < total {
        let id = match locator {
            Some(id) => {
                let mut cs = st
                    .cursors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                cs.insert(
                    id.clone(),
                    Cursor {
                        touched: Instant::now(),
                        ..cursor
                    },
                );
                id
            }
            None => st.open_cursor(cursor),
        };
        m.insert(
            "nextRecordsUrl".into(),
            json!(format!("/services/data/v{v}/query/{id}-{end}")),
        );
    }
    m.insert("records".into(), Json::Array(records));
    Reply::json(StatusCode::OK, Json::Object(m))
}

fn query_more(st: &AppState, locator: &str, v: &str) -> Reply {
    let invalid = || {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, off)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(off) = off.parse::<usize>() else {
        return invalid();
    };
    let cursor = {
        let mut cs = st
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cs.remove(id)
    };
    let Some(cursor) = cursor else {
        return invalid();
    };
    if cursor.touched.elapsed().as_secs() > 15 * 60 || off > cursor.rows.len() {
        return invalid();
    }
    page(st, cursor, off, v, Some(id.to_string()))
}

fn save_result(
    res: Result<String, Vec<WriteError>>,
    created: Option<bool>,
    echo_id: Option<&str>,
) -> (Json, bool) {
    match res {
        Ok(id) => {
            let mut m = Map::new();
            m.insert("id".into(), Json::String(id));
            m.insert("success".into(), Json::Bool(true));
            m.insert("errors".into(), json!([]));
            if let Some(c) = created {
                m.insert("created".into(), Json::Bool(c));
            }
            (Json::Object(m), true)
        }
        Err(errs) => {
            let mut m = Map::new();
            if let Some(id) = echo_id {
                m.insert("id".into(), Json::String(id.to_string()));
            }
            m.insert("success".into(), Json::Bool(false));
            m.insert(
                "errors".into(),
                Json::Array(errs.iter().map(WriteError::item_json).collect()),
            );
            (Json::Object(m), false)
        }
    }
}

const ROLLED_BACK: &str = "Record rolled back because not all records were valid and the request was using AllOrNone header";

fn finish_all_or_none(org: &mut Org, all_or_none: bool, results: Vec<(Json, bool)>) -> Reply {
    let any_failed = results.iter().any(|(_, ok)| !ok);
    let out: Vec<Json> = if all_or_none && any_failed {
        org.rollback();
        results
            .into_iter()
            .map(|(j, ok)| {
                if ok {
                    let mut m = Map::new();
                    m.insert("success".into(), Json::Bool(false));
                    m.insert("errors".into(), json!([{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": ROLLED_BACK, "fields": []}]));
                    Json::Object(m)
                } else {
                    j
                }
            })
            .collect()
    } else {
        if all_or_none {
            org.commit();
        }
        results.into_iter().map(|(j, _)| j).collect()
    };
    Reply::json(StatusCode::OK, Json::Array(out))
}

fn collections(
    st: &AppState,
    method: &Method,
    rest: &[&str],
    v: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    let p = qparams(query);
    let ctx = st.ctx();
    match (rest, method.as_str()) {
        ([], "DELETE") => {
            let all_or_none = qget(&p, "allOrNone").is_some_and(|x| x.eq_ignore_ascii_case("true"));
            let ids: Vec<String> = qget(&p, "ids")
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if ids.len() > 200 {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                );
            }
            // One write lock for the whole request, so allOrNone can roll back atomically.
            let mut org = st.org_mut();
            if all_or_none {
                org.begin();
            }
            let mut results = Vec::new();
            for id in &ids {
                let id18 = ids::to15(id).map(|i| ids::to18(&i));
                let res = match id18.as_deref() {
                    None => Err(vec![WriteError::new(
                        "MALFORMED_ID",
                        format!("malformed id {id}"),
                        vec![],
                    )]),
                    Some(_) if st.lock_fault() => Err(vec![lock_error(id)]),
                    Some(i) => match org.find_any(i) {
                        None => Err(vec![WriteError::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                            vec![],
                        )]),
                        Some((o, r)) => org
                            .delete(o, r, ctx)
                            .map(|()| i.to_string())
                            .map_err(|e| vec![e]),
                    },
                };
                results.push(save_result(
                    res,
                    None,
                    id18.as_deref().or(Some(id.as_str())),
                ));
            }
            finish_all_or_none(&mut org, all_or_none, results)
        }
        ([], "POST" | "PATCH") => {
            let b = match parse_body(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let all_or_none = b.get("allOrNone").and_then(Json::as_bool).unwrap_or(false);
            let Some(records) = b.get("records").and_then(Json::as_array) else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    "Json Deserialization failed: records is required",
                );
            };
            if records.len() > 200 {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                );
            }
            let insert = *method == Method::POST;
            // One write lock for the whole request, so allOrNone can roll back atomically.
            let mut org = st.org_mut();
            if all_or_none {
                org.begin();
            }
            let mut results = Vec::new();
            for rec in records {
                let Some(m) = rec.as_object() else {
                    results.push(save_result(
                        Err(vec![WriteError::new(
                            "INVALID_FIELD",
                            "record must be an object",
                            vec![],
                        )]),
                        None,
                        None,
                    ));
                    continue;
                };
                let type_name = m
                    .get("attributes")
                    .and_then(|a| a.get("type"))
                    .and_then(Json::as_str);
                let id = m
                    .get("Id")
                    .or_else(|| m.get("id"))
                    .and_then(Json::as_str)
                    .map(str::to_string);
                let res = (|| -> Result<String, Vec<WriteError>> {
                    if insert {
                        let t = type_name.ok_or_else(|| {
                            vec![WriteError::new(
                                "INVALID_TYPE",
                                "Must send a concrete entity type.",
                                vec![],
                            )]
                        })?;
                        let obj = org.obj(t).ok_or_else(|| {
                            vec![WriteError::new(
                                "INVALID_TYPE",
                                format!("sObject type '{t}' is not supported."),
                                vec![],
                            )]
                        })?;
                        if id.is_some() {
                            return Err(vec![WriteError::new(
                                "INVALID_FIELD",
                                "cannot specify Id in an insert call",
                                vec!["Id".into()],
                            )]);
                        }
                        if st.lock_fault() {
                            return Err(vec![lock_error("")]);
                        }
                        let mut body = m.clone();
                        body.remove("attributes");
                        org.insert(obj, &body, ctx)
                    } else {
                        let id = id.clone().ok_or_else(|| {
                            vec![WriteError::new(
                                "MISSING_ARGUMENT",
                                "Id not specified in an update call",
                                vec![],
                            )]
                        })?;
                        let (obj, row) = org.find_any(&id).ok_or_else(|| {
                            if ids::to15(&id).is_none() {
                                vec![WriteError::new(
                                    "MALFORMED_ID",
                                    format!("malformed id {id}"),
                                    vec!["Id".into()],
                                )]
                            } else {
                                vec![WriteError::new(
                                    "INVALID_CROSS_REFERENCE_KEY",
                                    "invalid cross reference id",
                                    vec![],
                                )]
                            }
                        })?;
                        if let Some(t) = type_name
                            && !org.def(obj).name.eq_ignore_ascii_case(t)
                        {
                            return Err(vec![WriteError::new(
                                "INVALID_ID_FIELD",
                                format!("Invalid id value for this SObject type: {id}"),
                                vec!["Id".into()],
                            )]);
                        }
                        if st.lock_fault() {
                            return Err(vec![lock_error(&id)]);
                        }
                        let mut body = m.clone();
                        body.remove("attributes");
                        org.update(obj, row, &body, ctx)?;
                        Ok(ids::to18(&ids::to15(&id).unwrap_or_default()))
                    }
                })();
                let echo = if insert {
                    None
                } else {
                    id.as_deref()
                        .map(|i| ids::to15(i).map_or_else(|| i.to_string(), |x| ids::to18(&x)))
                };
                results.push(save_result(res, None, echo.as_deref()));
            }
            finish_all_or_none(&mut org, all_or_none, results)
        }
        ([type_name], "GET" | "POST") => {
            let Some(obj) = st.org().obj(type_name) else {
                return not_found();
            };
            let (ids, fields): (Vec<String>, Vec<String>) = if *method == Method::GET {
                let split = |k: &str| {
                    qget(&p, k)
                        .unwrap_or("")
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                };
                (split("ids"), split("fields"))
            } else {
                let b = match parse_body(body) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let list = |k: &str| {
                    b.get(k)
                        .and_then(Json::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                (list("ids"), list("fields"))
            };
            if fields.is_empty() {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_QUERY",
                    "fields must be specified",
                );
            }
            if ids.len() > 2000 {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 2000 records into this call",
                );
            }
            let mut out = Vec::new();
            for id in &ids {
                let row = {
                    let org = st.org();
                    org.find(obj, id)
                        .filter(|r| org.row(obj, *r).deleted_ms.is_none())
                };
                match row {
                    Some(r) => match record_json(st, obj, r, Some(&fields), v) {
                        Ok(j) => out.push(j),
                        Err(e) => return e,
                    },
                    None => out.push(Json::Null),
                }
            }
            Reply::json(StatusCode::OK, Json::Array(out))
        }
        ([type_name, ext_field], "PATCH") => {
            let Some(obj) = st.org().obj(type_name) else {
                return not_found();
            };
            let Some(col) = st.org().def(obj).field(ext_field) else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!(
                        "Provided external ID field does not exist or is not accessible: {ext_field}"
                    ),
                );
            };
            let b = match parse_body(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let all_or_none = b.get("allOrNone").and_then(Json::as_bool).unwrap_or(false);
            let Some(records) = b.get("records").and_then(Json::as_array) else {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    "Json Deserialization failed: records is required",
                );
            };
            if records.len() > 200 {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                );
            }
            // One write lock for the whole request, so allOrNone can roll back atomically.
            let mut org = st.org_mut();
            if all_or_none {
                org.begin();
            }
            let fname = org.def(obj).fields[col].name.clone();
            let mut results = Vec::new();
            for rec in records {
                let m = rec.as_object().cloned().unwrap_or_default();
                let key = m
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&fname))
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Json::Null);
                let mut body = m.clone();
                body.remove("attributes");
                if st.lock_fault() {
                    results.push(save_result(Err(vec![lock_error("")]), Some(false), None));
                    continue;
                }
                let res = org.upsert(obj, col, &key, &body, ctx);
                let item = match res {
                    Ok(UpsertOutcome::Created(id)) => save_result(Ok(id), Some(true), None),
                    Ok(UpsertOutcome::Updated(id)) => save_result(Ok(id), Some(false), None),
                    Ok(UpsertOutcome::Multiple(ids)) => save_result(
                        Err(vec![WriteError::new(
                            "DUPLICATE_EXTERNAL_ID",
                            format!(
                                "{fname}: more than one record found for external id field: {ids:?}"
                            ),
                            vec![fname.clone()],
                        )]),
                        None,
                        None,
                    ),
                    Err(e) => save_result(Err(e), None, None),
                };
                results.push(item);
            }
            finish_all_or_none(&mut org, all_or_none, results)
        }
        ([], _) => method_not_allowed(method, "POST,PATCH,DELETE"),
        _ => not_found(),
    }
}

fn sub_request(
    st: &AppState,
    v: &str,
    method: &str,
    url: &str,
    body: Option<&Json>,
    headers: &HeaderMap,
) -> (StatusCode, Json) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = normalize(path);
    let trimmed = path
        .trim_start_matches("/services/data/")
        .trim_start_matches('/');
    let mut segs: Vec<&str> = trimmed.split('/').collect();
    let sub_v = match segs.first().and_then(|s| parse_version(s)) {
        Some(x) => {
            segs.remove(0);
            x
        }
        None => v.to_string(),
    };
    let Ok(m) = Method::from_bytes(method.as_bytes()) else {
        return (
            StatusCode::BAD_REQUEST,
            json!([{"errorCode": "INVALID_METHOD", "message": "bad method"}]),
        );
    };
    let body_bytes = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let r = rest(st, &m, &segs, &sub_v, query, headers, &body_bytes);
    let j = match r.body {
        ReplyBody::Json(j) => j,
        _ => Json::Null,
    };
    (r.status, j)
}

fn composite_batch(st: &AppState, v: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    let b = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let halt = b
        .get("haltOnError")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let Some(reqs) = b.get("batchRequests").and_then(Json::as_array) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "batchRequests is required",
        );
    };
    if reqs.len() > 25 {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "INVALID_BATCH_REQUEST",
            "A batch cannot contain more than 25 requests",
        );
    }
    let mut has_errors = false;
    let mut results = Vec::new();
    for r in reqs {
        if halt && has_errors {
            results.push(json!({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}]}));
            continue;
        }
        let method = r.get("method").and_then(Json::as_str).unwrap_or("GET");
        let url = r.get("url").and_then(Json::as_str).unwrap_or("");
        let (status, result) = sub_request(st, v, method, url, r.get("richInput"), headers);
        if status.as_u16() >= 400 {
            has_errors = true;
        }
        results.push(json!({"statusCode": status.as_u16(), "result": result}));
    }
    Reply::json(
        StatusCode::OK,
        json!({"hasErrors": has_errors, "results": results}),
    )
}

fn composite(st: &AppState, v: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    st.exclusive(|| composite_inner(st, v, headers, body))
}

fn composite_inner(st: &AppState, v: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    let b = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let all_or_none = b.get("allOrNone").and_then(Json::as_bool).unwrap_or(false);
    let Some(reqs) = b.get("compositeRequest").and_then(Json::as_array) else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "compositeRequest is required",
        );
    };
    if all_or_none {
        st.org_mut().begin();
    }
    let mut refs: Map<String, Json> = Map::new();
    let mut out = Vec::new();
    let mut failed = false;
    for r in reqs {
        let reference = r
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        if failed && all_or_none {
            out.push(json!({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference}));
            continue;
        }
        let method = r.get("method").and_then(Json::as_str).unwrap_or("GET");
        let url = substitute_refs(r.get("url").and_then(Json::as_str).unwrap_or(""), &refs);
        let body = r
            .get("body")
            .map(|b| Json::from(substitute_refs(&b.to_string(), &refs)))
            .and_then(|s| s.as_str().and_then(|s| serde_json::from_str(s).ok()));
        let (status, result) = sub_request(st, v, method, &url, body.as_ref(), headers);
        if status.as_u16() >= 400 {
            failed = true;
        }
        refs.insert(reference.clone(), result.clone());
        let mut hh = Map::new();
        if status == StatusCode::CREATED
            && let Some(id) = result.get("id").and_then(Json::as_str)
        {
            hh.insert(
                "Location".into(),
                Json::String(format!("/services/data/v{v}/sobjects/{}", id)),
            );
        }
        out.push(json!({"body": if result.is_null() { Json::Null } else { result }, "httpHeaders": hh, "httpStatusCode": status.as_u16(), "referenceId": reference}));
    }
    if all_or_none {
        if failed {
            st.org_mut().rollback()
        } else {
            st.org_mut().commit()
        }
    }
    Reply::json(StatusCode::OK, json!({"compositeResponse": out}))
}

fn substitute_refs(s: &str, refs: &Map<String, Json>) -> String {
    let mut out = s.to_string();
    for (name, val) in refs {
        let pat = format!("@{{{name}.");
        while let Some(start) = out.find(&pat) {
            let Some(end_rel) = out[start..].find('}') else {
                break;
            };
            let path = &out[start + pat.len()..start + end_rel];
            let mut cur = val;
            for p in path.split('.') {
                cur = cur.get(p).unwrap_or(&Json::Null);
            }
            let rep = match cur {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.replace_range(start..start + end_rel + 1, &rep);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(
            normalize("//services/data/v59.0/query/"),
            "/services/data/v59.0/query"
        );
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("v59.0").as_deref(), Some("59.0"));
        assert_eq!(parse_version("v19.0"), None);
        assert_eq!(parse_version("v99.0"), None);
        assert_eq!(version_label(59), "Winter '24");
        assert_eq!(version_label(20), "Winter '11");
        assert_eq!(version_label(61), "Summer '24");
    }
}
