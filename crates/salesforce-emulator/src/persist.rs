//! `--data-dir` persistence: the org is written as one JSON snapshot (`org.json`, written
//! to a temporary file and renamed) on shutdown, periodically when it changed, and on
//! demand; it is reloaded at start.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::schema::{CustomFieldSpec, CustomObjectSpec, Kind};
use crate::state::AppState;
use crate::store::{Org, Row};
use crate::value::{Val, format_date, parse_date};

/// Persistence errors.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// File system.
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Encoding.
    #[error("snapshot format: {0}")]
    Json(#[from] serde_json::Error),
    /// Schema replay.
    #[error("snapshot schema: {0}")]
    Schema(#[from] crate::schema::SchemaError),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    version: u32,
    api_used: u64,
    custom_objects: Vec<CustomObjectSpec>,
    custom_fields: Vec<(String, CustomFieldSpec)>,
    tables: Map<String, Json>,
    /// Refresh tokens (token, scope), so OAuth clients survive a restart.
    #[serde(default)]
    refresh_tokens: Vec<(String, String)>,
}

/// What a snapshot restores besides the org.
#[derive(Debug, Default)]
pub struct Restored {
    /// API calls used.
    pub api_used: u64,
    /// Refresh tokens (token, scope).
    pub refresh_tokens: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct TableSnap {
    seq: u64,
    fields: Vec<String>,
    rows: Vec<Vec<Json>>,
    deleted: Vec<Option<i64>>,
}

fn encode(v: &Val) -> Json {
    match v {
        Val::Null => Json::Null,
        Val::Bool(b) => Json::Bool(*b),
        Val::Int(i) => Json::from(*i),
        Val::Num(n) => crate::value::num_json(*n),
        Val::Str(s) => Json::String(s.to_string()),
        Val::Date(d) => Json::String(format_date(*d)),
        Val::DateTime(ms) => Json::from(*ms),
    }
}

fn decode(j: &Json, kind: Kind) -> Val {
    match (kind, j) {
        (_, Json::Null) => Val::Null,
        (_, Json::Bool(b)) => Val::Bool(*b),
        (Kind::Int, Json::Number(n)) => Val::Int(n.as_i64().unwrap_or(0)),
        (Kind::DateTime, Json::Number(n)) => Val::DateTime(n.as_i64().unwrap_or(0)),
        (_, Json::Number(n)) => Val::Num(n.as_f64().unwrap_or(0.0)),
        (Kind::Date, Json::String(s)) => parse_date(s).map_or(Val::Null, Val::Date),
        (_, Json::String(s)) => Val::str(s),
        _ => Val::Null,
    }
}

/// Path of the snapshot file inside a data dir.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("org.json")
}

/// Writes the snapshot if a data dir is configured; returns its path.
pub fn snapshot_now(st: &AppState) -> Result<Option<PathBuf>, PersistError> {
    let Some(dir) = &st.config.data_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    st.dirty.store(false, Ordering::Relaxed);
    let path = snapshot_path(dir);
    let tmp = dir.join("org.json.tmp");
    {
        let org = st.org();
        let mut snap = build(&org, st.api_used.load(Ordering::Relaxed));
        snap.refresh_tokens = st
            .tokens()
            .refresh
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let f = std::fs::File::create(&tmp).map_err(|source| PersistError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
        let mut w = BufWriter::new(f);
        serde_json::to_writer(&mut w, &snap)?;
        w.flush().map_err(|source| PersistError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
    }
    std::fs::rename(&tmp, &path).map_err(|source| PersistError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(path))
}

fn build(org: &Org, api_used: u64) -> Snapshot {
    let mut tables = Map::new();
    for (i, o) in org.schema.objects.iter().enumerate() {
        let t = &org.tables[i];
        let ts = TableSnap {
            seq: t.seq,
            fields: o.fields.iter().map(|f| f.name.clone()).collect(),
            rows: t
                .rows
                .iter()
                .map(|r| r.to_vals(o.fields.len()).iter().map(encode).collect())
                .collect(),
            deleted: t.rows.iter().map(|r| r.deleted_ms).collect(),
        };
        tables.insert(
            o.name.clone(),
            serde_json::to_value(ts).unwrap_or(Json::Null),
        );
    }
    Snapshot {
        version: 1,
        api_used,
        custom_objects: org.schema.custom_objects.clone(),
        custom_fields: org.schema.custom_specs.clone(),
        tables,
        refresh_tokens: Vec::new(),
    }
}

/// Loads a snapshot into a fresh base org; `None` when there is no snapshot yet.
pub fn load(dir: &Path, base: Org) -> Result<Option<(Org, Restored)>, PersistError> {
    let path = snapshot_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let f = std::fs::File::open(&path).map_err(|source| PersistError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let snap: Snapshot = serde_json::from_reader(BufReader::new(f))?;
    let mut org = base;
    for o in &snap.custom_objects {
        org.schema.define_object(o)?;
    }
    for (obj, spec) in &snap.custom_fields {
        org.schema.define_field(obj, spec)?;
    }
    org.sync_tables();
    for t in org.tables.iter_mut() {
        *t = crate::store::Table::default();
    }
    for (name, tj) in snap.tables {
        let Some(obj) = org.obj(&name) else { continue };
        let ts: TableSnap = serde_json::from_value(tj)?;
        let def = org.def(obj);
        let map: Vec<Option<usize>> = ts.fields.iter().map(|f| def.field(f)).collect();
        let kinds = def.kinds.clone();
        let ncols = def.fields.len();
        let table = &mut org.tables[obj];
        table.seq = ts.seq;
        for (ri, cells) in ts.rows.iter().enumerate() {
            let mut vals = vec![Val::Null; ncols];
            for (ci, cell) in cells.iter().enumerate() {
                if let Some(Some(col)) = map.get(ci) {
                    vals[*col] = decode(cell, kinds[*col]);
                }
            }
            if let Some(Val::Str(id)) = vals.first() {
                table.by_id.insert(id.clone(), table.rows.len() as u32);
            }
            table
                .rows
                .push(Row::from_vals(&vals, ts.deleted.get(ri).copied().flatten()));
        }
    }
    org.rebuild_modstamps();
    org.reset_caches();
    crate::seed::refresh_currencies(&mut org);
    Ok(Some((
        org,
        Restored {
            api_used: snap.api_used,
            refresh_tokens: snap.refresh_tokens,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_by_kind() {
        for (v, k) in [
            (Val::DateTime(1_700_000_000_000), Kind::DateTime),
            (Val::Date(19_000), Kind::Date),
            (Val::Int(7), Kind::Int),
            (Val::Num(2.5), Kind::Double),
            (Val::str("x"), Kind::Text),
            (Val::Bool(true), Kind::Bool),
            (Val::Null, Kind::Text),
        ] {
            assert_eq!(decode(&encode(&v), k), v);
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let dir = std::env::temp_dir().join(format!("ferry-emu-persist-{}", std::process::id()));
        let mut org = crate::seed::base_org("admin@ferry.local", 1_700_000_000_000);
        let spec = CustomFieldSpec {
            name: "Ext__c".into(),
            field_type: "text".into(),
            external_id: true,
            ..Default::default()
        };
        assert!(org.schema.define_field("Account", &spec).is_ok());
        let a = org.obj("Account").unwrap_or(0);
        let body = serde_json::json!({"Name": "Kept", "Ext__c": "K-1"});
        assert!(
            org.insert(
                a,
                body.as_object().unwrap_or(&Map::new()),
                crate::store::WriteCtx {
                    now: 1_700_000_000_000
                }
            )
            .is_ok()
        );
        let snap = build(&org, 42);
        assert!(std::fs::create_dir_all(&dir).is_ok());
        assert!(
            std::fs::write(
                snapshot_path(&dir),
                serde_json::to_vec(&snap).unwrap_or_default()
            )
            .is_ok()
        );
        let loaded = load(
            &dir,
            crate::seed::base_org("admin@ferry.local", 1_700_000_000_000),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(Some((org2, restored))) = loaded else {
            panic!("snapshot did not load")
        };
        assert_eq!(restored.api_used, 42);
        let a2 = org2.obj("Account").unwrap_or(0);
        assert_eq!(org2.tables[a2].rows.len(), 1);
        let col = org2.def(a2).field("Ext__c").unwrap_or(0);
        assert_eq!(org2.tables[a2].rows[0].get(col), Val::str("K-1"));
        assert_eq!(org2.find(a2, org.tables[a].rows[0].id()), Some(0));
    }
}
