//! The admin API under `/__emulator/` (loopback clients only). See the crate README for
//! the endpoint reference.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::http::Reply;
use crate::schema::{CustomFieldSpec, CustomObjectSpec};
use crate::seed::{self, SeedFile};
use crate::state::{AppState, Faults};
use crate::store::{ConvertLead, WriteError};
use crate::value::{format_datetime, parse_datetime};

fn bad(msg: impl Into<String>) -> Reply {
    Reply::json(StatusCode::BAD_REQUEST, json!({"error": msg.into()}))
}

fn body_json(body: &[u8]) -> Result<Json, Reply> {
    if body.is_empty() {
        return Ok(Json::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))
}

/// Endpoint index returned by `GET /__emulator`.
const INDEX: &[(&str, &str)] = &[
    (
        "POST /__emulator/reset",
        "reset the org; body {\"seed\":\"empty|demo\"} (default: the configured seed)",
    ),
    (
        "POST /__emulator/records/{Object}",
        "insert records fast through the normal write path; body: JSON array or {\"records\":[...]}",
    ),
    (
        "POST /__emulator/generate/{Object}",
        "generate records: {\"count\":N,\"fields\":{\"Name\":\"Acct {n}\",\"Industry\":[\"A\",\"B\"]}}",
    ),
    (
        "POST /__emulator/schema",
        "define custom objects and fields: {\"objects\":[...],\"fields\":{\"Account\":[...]}}",
    ),
    (
        "POST /__emulator/objects",
        "define one custom object (CustomObjectSpec)",
    ),
    (
        "POST /__emulator/objects/{Object}/fields",
        "add custom fields (one spec or an array)",
    ),
    (
        "GET|PUT /__emulator/limits",
        "read or set {\"dailyApiRequests\":N,\"used\":N}",
    ),
    (
        "GET|PUT /__emulator/clock",
        "read or move the clock: {\"now\":\"2024-01-01T00:00:00Z\"} or {\"advanceSeconds\":N}",
    ),
    (
        "GET|DELETE /__emulator/calls",
        "per-endpoint call counts; DELETE clears them",
    ),
    (
        "POST /__emulator/convertLead",
        "convert a Lead: {\"leadId\",\"convertedStatus\",\"accountId\",\"contactId\",\"doNotCreateOpportunity\",\"opportunityName\"}",
    ),
    (
        "GET|PUT|DELETE /__emulator/faults",
        "fault injection: {\"errorRate\":0.1,\"errorStatus\":503,\"latencyMs\":50,\"lockRate\":0.05}",
    ),
    (
        "POST /__emulator/faults/expireSessions",
        "expire every access token now (clients must refresh)",
    ),
    (
        "POST /__emulator/snapshot",
        "write the --data-dir snapshot now",
    ),
    (
        "GET|PUT|DELETE /__emulator/bulk",
        "Bulk knobs: {\"lockContention\":true,\"parallelism\":4,\"retryBudget\":0,\"gatherMs\":100,\"startDelayMs\":5,\"batchSize\":10000,\"queryTimeoutRows\":null,\"defaultPageSize\":1000000,\"defaultPageBytes\":268435456}",
    ),
    (
        "GET /__emulator/bulk/jobs",
        "every Bulk job (API, type, state)",
    ),
    (
        "POST /__emulator/bulk/jobs/{id}/stall|resume|fail",
        "hold a Bulk job, let it go, or fail it now ({\"message\":\"...\"})",
    ),
];

/// Handles one admin request.
pub fn handle(
    st: &AppState,
    peer: Option<SocketAddr>,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    if let Some(p) = peer
        && !p.ip().is_loopback()
    {
        return Reply::json(
            StatusCode::FORBIDDEN,
            json!({"error": "the admin API only answers loopback clients"}),
        );
    }
    let _ = query;
    if *method != Method::GET && segs_touch_schema(path) {
        st.schema_changed_ms
            .store(crate::state::Clock::real_ms(), Ordering::Relaxed);
    }
    let segs: Vec<&str> = path
        .trim_start_matches("/__emulator")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) => Reply::json(
            StatusCode::OK,
            Json::Object(
                INDEX
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Json::String((*v).to_string())))
                    .collect(),
            ),
        ),
        ("POST", ["reset"]) => reset(st, body),
        ("POST", ["records", obj]) => records(st, obj, body),
        ("POST", ["generate", obj]) => generate(st, obj, body),
        ("POST", ["schema"]) => schema(st, body),
        ("POST", ["objects"]) => {
            let spec: CustomObjectSpec = match body_json(body)
                .and_then(|j| serde_json::from_value(j).map_err(|e| bad(e.to_string())))
            {
                Ok(s) => s,
                Err(r) => return r,
            };
            let mut org = st.org_mut();
            match org.schema.define_object(&spec) {
                Ok(i) => {
                    org.sync_tables();
                    let o = org.def(i);
                    Reply::json(
                        StatusCode::CREATED,
                        json!({"name": o.name, "keyPrefix": o.key_prefix, "fields": o.fields.len()}),
                    )
                }
                Err(e) => bad(e.to_string()),
            }
        }
        ("POST", ["objects", obj, "fields"]) => {
            let j = match body_json(body) {
                Ok(j) => j,
                Err(r) => return r,
            };
            let specs: Vec<CustomFieldSpec> = match if j.is_array() {
                serde_json::from_value(j)
            } else {
                serde_json::from_value(j).map(|s| vec![s])
            } {
                Ok(s) => s,
                Err(e) => return bad(e.to_string()),
            };
            let mut org = st.org_mut();
            for s in &specs {
                if let Err(e) = org.schema.define_field(obj, s) {
                    return bad(e.to_string());
                }
            }
            if let Some(o) = org.obj(obj) {
                org.drop_indexes(o);
            }
            Reply::json(
                StatusCode::CREATED,
                json!({"object": obj, "fields": specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>()}),
            )
        }
        ("GET", ["limits"]) => limits_json(st),
        ("PUT" | "POST", ["limits"]) => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct L {
                daily_api_requests: Option<u64>,
                used: Option<u64>,
            }
            let l: L = match body_json(body)
                .and_then(|j| serde_json::from_value(j).map_err(|e| bad(e.to_string())))
            {
                Ok(l) => l,
                Err(r) => return r,
            };
            if let Some(m) = l.daily_api_requests {
                st.api_max.store(m, Ordering::Relaxed);
            }
            if let Some(u) = l.used {
                st.api_used.store(u, Ordering::Relaxed);
            }
            limits_json(st)
        }
        ("GET", ["clock"]) => clock_json(st),
        ("PUT" | "POST", ["clock"]) => {
            let j = match body_json(body) {
                Ok(j) => j,
                Err(r) => return r,
            };
            if let Some(now) = j.get("now").and_then(Json::as_str) {
                match parse_datetime(now) {
                    Some(ms) => st.clock.set_ms(ms),
                    None => return bad(format!("cannot parse datetime {now}")),
                }
            } else if let Some(secs) = j.get("advanceSeconds").and_then(Json::as_f64) {
                st.clock.advance_ms((secs * 1000.0) as i64);
            } else if j.get("reset").and_then(Json::as_bool) == Some(true) {
                st.clock.set_ms(crate::state::Clock::real_ms());
            } else {
                return bad("expected now, advanceSeconds or reset");
            }
            clock_json(st)
        }
        ("GET", ["calls"]) => {
            let c = st
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Reply::json(
                StatusCode::OK,
                json!({"apiUsed": st.api_used.load(Ordering::Relaxed), "calls": *c}),
            )
        }
        ("DELETE", ["calls"]) => {
            st.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            Reply::empty(StatusCode::NO_CONTENT)
        }
        ("POST", ["convertLead"]) => {
            let req: ConvertLead = match body_json(body)
                .and_then(|j| serde_json::from_value(j).map_err(|e| bad(e.to_string())))
            {
                Ok(r) => r,
                Err(r) => return r,
            };
            let ctx = st.ctx();
            let res = st.org_mut().convert_lead(&req, ctx);
            match res {
                Ok(r) => {
                    let mut j = serde_json::to_value(&r).unwrap_or(Json::Null);
                    if let Some(m) = j.as_object_mut() {
                        m.insert("relatedPersonAccountId".into(), Json::Null);
                        m.insert("success".into(), Json::Bool(true));
                        m.insert("errors".into(), json!([]));
                    }
                    Reply::json(StatusCode::OK, j)
                }
                Err(e) => Reply::json(
                    StatusCode::BAD_REQUEST,
                    json!({"leadId": req.lead_id, "success": false, "errors": [e.item_json()]}),
                ),
            }
        }
        ("GET", ["faults"]) => Reply::json(
            StatusCode::OK,
            serde_json::to_value(st.faults()).unwrap_or(Json::Null),
        ),
        ("PUT" | "POST", ["faults"]) => {
            let f: Faults = match body_json(body)
                .and_then(|j| serde_json::from_value(j).map_err(|e| bad(e.to_string())))
            {
                Ok(f) => f,
                Err(r) => return r,
            };
            if !(0.0..=1.0).contains(&f.error_rate) || !(0.0..=1.0).contains(&f.lock_rate) {
                return bad("rates must be between 0 and 1");
            }
            if let Some(s) = f.error_status
                && s != 500
                && s != 503
            {
                return bad("errorStatus must be 500 or 503");
            }
            if let Ok(mut w) = st.faults.write() {
                *w = f.clone();
            }
            Reply::json(
                StatusCode::OK,
                serde_json::to_value(f).unwrap_or(Json::Null),
            )
        }
        ("DELETE", ["faults"]) => {
            if let Ok(mut w) = st.faults.write() {
                *w = Faults::default();
            }
            Reply::empty(StatusCode::NO_CONTENT)
        }
        ("POST", ["faults", "expireSessions"]) => {
            let n = {
                let mut t = st.tokens();
                let n = t.sessions.len();
                t.sessions.clear();
                n
            };
            Reply::json(StatusCode::OK, json!({"expired": n}))
        }
        ("POST", ["snapshot"]) => match crate::persist::snapshot_now(st) {
            Ok(Some(p)) => Reply::json(StatusCode::OK, json!({"path": p.display().to_string()})),
            Ok(None) => bad("no --data-dir configured"),
            Err(e) => Reply::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            ),
        },
        _ => Reply::json(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown admin endpoint {method} {path}; GET /__emulator lists them")}),
        ),
    }
}

fn segs_touch_schema(path: &str) -> bool {
    [
        "/__emulator/reset",
        "/__emulator/schema",
        "/__emulator/objects",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

fn limits_json(st: &AppState) -> Reply {
    Reply::json(
        StatusCode::OK,
        json!({"dailyApiRequests": st.api_max.load(Ordering::Relaxed), "used": st.api_used.load(Ordering::Relaxed)}),
    )
}

fn clock_json(st: &AppState) -> Reply {
    Reply::json(
        StatusCode::OK,
        json!({"now": format_datetime(st.clock.now_ms()), "nowMs": st.clock.now_ms()}),
    )
}

fn reset(st: &AppState, body: &[u8]) -> Reply {
    let j = match body_json(body) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let seed = match j.get("seed").and_then(Json::as_str) {
        Some("empty") => crate::Seed::Empty,
        Some("demo") => crate::Seed::Demo,
        Some(other) => crate::Seed::File(other.into()),
        None => st.config.seed.clone(),
    };
    match crate::build_org(&st.config, &seed, st.clock.now_ms()) {
        Ok(org) => {
            st.replace_org(org);
            st.api_used.store(0, Ordering::Relaxed);
            Reply::json(StatusCode::OK, json!({"reset": true}))
        }
        Err(e) => bad(e.to_string()),
    }
}

fn insert_many(
    st: &AppState,
    obj_name: &str,
    records: impl Iterator<Item = Map<String, Json>>,
) -> Reply {
    let ctx = st.ctx();
    let mut org = st.org_mut();
    let Some(obj) = org.obj(obj_name) else {
        return bad(format!("unknown object {obj_name}"));
    };
    let mut created = 0u64;
    let mut failed = 0u64;
    let mut errors: Vec<Json> = Vec::new();
    let mut first_id = None;
    let mut last_id = None;
    for (i, r) in records.enumerate() {
        match org.insert(obj, &r, ctx) {
            Ok(id) => {
                created += 1;
                if first_id.is_none() {
                    first_id = Some(id.clone());
                }
                last_id = Some(id);
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 20 {
                    errors.push(json!({"index": i, "errors": e.iter().map(WriteError::item_json).collect::<Vec<_>>()}));
                }
            }
        }
    }
    Reply::json(
        StatusCode::OK,
        json!({"object": org.def(obj).name, "created": created, "failed": failed, "firstId": first_id, "lastId": last_id, "errors": errors}),
    )
}

fn records(st: &AppState, obj: &str, body: &[u8]) -> Reply {
    let j = match body_json(body) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let list = match j {
        Json::Array(a) => a,
        Json::Object(mut m) => match m.remove("records") {
            Some(Json::Array(a)) => a,
            _ => return bad("expected a JSON array or {\"records\":[...]}"),
        },
        _ => return bad("expected a JSON array or {\"records\":[...]}"),
    };
    insert_many(
        st,
        obj,
        list.into_iter().map(|r| match r {
            Json::Object(m) => m,
            _ => Map::new(),
        }),
    )
}

fn generate(st: &AppState, obj: &str, body: &[u8]) -> Reply {
    let j = match body_json(body) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let Some(count) = j.get("count").and_then(Json::as_u64) else {
        return bad("count is required");
    };
    if count > 20_000_000 {
        return bad("count must be at most 20000000");
    }
    let fields = j
        .get("fields")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let start = j.get("start").and_then(Json::as_u64).unwrap_or(1);
    insert_many(
        st,
        obj,
        (0..count).map(move |i| {
            let n = start + i;
            fields
                .iter()
                .map(|(k, v)| {
                    let val = match v {
                        Json::String(s) => Json::String(s.replace("{n}", &n.to_string())),
                        Json::Array(a) if !a.is_empty() => a[(i as usize) % a.len()].clone(),
                        other => other.clone(),
                    };
                    (k.clone(), val)
                })
                .collect()
        }),
    )
}

fn schema(st: &AppState, body: &[u8]) -> Reply {
    let file: SeedFile = match body_json(body)
        .and_then(|j| serde_json::from_value(j).map_err(|e| bad(e.to_string())))
    {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ctx = st.ctx();
    let mut org = st.org_mut();
    match seed::apply_file(&mut org, &file, ctx) {
        Ok(n) => Reply::json(
            StatusCode::OK,
            json!({"objects": file.objects.len(), "records": n}),
        ),
        Err(e) => bad(e.to_string()),
    }
}
