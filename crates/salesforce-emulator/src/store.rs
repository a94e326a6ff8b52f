//! The org's data: one compact table per object (`Vec<Val>` rows addressed by column index)
//! and the single write path every API uses (REST, collections, admin seeding and, later,
//! Bulk). Writes validate and coerce like Salesforce and return its error codes; an undo log
//! gives `allOrNone` rollback.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value as Json};

use crate::formula::Resolver;
use crate::ids;
use crate::schema::{Kind, ObjectDef, Schema};
use crate::value::{Val, ms_to_days, parse_date, parse_datetime};

/// One error of a failed write, as Salesforce reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteError {
    /// `errorCode` (REST) / `statusCode` (collections).
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Fields involved.
    pub fields: Vec<String>,
}

impl WriteError {
    /// Builds an error.
    pub fn new(code: &'static str, message: impl Into<String>, fields: Vec<String>) -> WriteError {
        WriteError {
            code,
            message: message.into(),
            fields,
        }
    }

    /// REST shape: `{"message","errorCode","fields"}`.
    pub fn rest_json(&self) -> Json {
        serde_json::json!({"message": self.message, "errorCode": self.code, "fields": self.fields})
    }

    /// Collections/SaveResult shape: `{"statusCode","message","fields"}`.
    pub fn item_json(&self) -> Json {
        serde_json::json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

pub use crate::row::Row;

/// One object's records plus its indexes.
#[derive(Default, Clone)]
pub struct Table {
    /// Records in insertion order, deleted ones included (recycle bin).
    pub rows: Vec<Row>,
    /// 15-char id → row index.
    pub by_id: HashMap<Box<str>, u32>,
    /// Last id sequence number used.
    pub seq: u64,
    /// Value indexes of unique / external-id columns: normalised value → rows.
    pub indexes: HashMap<usize, HashMap<String, Vec<u32>>>,
    /// `(SystemModstamp ms, row)` of every row that has one, deleted rows included: the
    /// index behind `SystemModstamp` range filters and `ORDER BY SystemModstamp` (Salesforce
    /// indexes the field, so incremental reads cost what they return). Kept by every write
    /// path of [`Org`] and by snapshot loading.
    pub modstamps: BTreeSet<(i64, u32)>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("rows", &self.rows.len())
            .field("seq", &self.seq)
            .field("indexes", &self.indexes.len())
            .field("modstamps", &self.modstamps.len())
            .finish()
    }
}

/// Who and when, for system fields.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx {
    /// Epoch ms from the emulator clock.
    pub now: i64,
}

/// The whole org.
#[derive(Debug, Clone)]
pub struct Org {
    /// Metadata.
    pub schema: Schema,
    /// Tables, parallel to `schema.objects`.
    pub tables: Vec<Table>,
    /// 15-char Organization id.
    pub org_id: String,
    /// 15-char id of the API user.
    pub user_id: String,
    /// Instance char used in new ids.
    pub pod: char,
    undo: Option<Vec<(usize, UndoEntry)>>,
    undo_marks: Vec<usize>,
    corporate: std::sync::OnceLock<String>,
}

#[derive(Debug, Clone)]
enum UndoEntry {
    Insert,
    Update(u32, Row),
}

/// A row's `SystemModstamp` in epoch ms, when the object has the field and the row a value.
pub fn modstamp_of(def: &ObjectDef, row: &Row) -> Option<i64> {
    match row.get(def.modstamp_col()?) {
        Val::DateTime(ms) => Some(ms),
        _ => None,
    }
}

fn row_val(row: &Row, col: usize) -> Val {
    row.get(col)
}

fn norm_key(v: &Val, case_sensitive: bool) -> Option<String> {
    match v {
        Val::Null => None,
        Val::Str(s) if case_sensitive => Some(s.to_string()),
        Val::Str(s) => Some(s.to_lowercase()),
        other => Some(crate::value::to_text(other)),
    }
}

fn first_error(errors: Vec<WriteError>) -> WriteError {
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| WriteError::new("UNKNOWN_EXCEPTION", "write failed", vec![]))
}

fn field_list(fields: &[String]) -> String {
    fields.join(", ")
}

/// Outcome of an upsert.
#[derive(Debug)]
pub enum UpsertOutcome {
    /// Inserted, with the new 18-char id.
    Created(String),
    /// Updated the single match.
    Updated(String),
    /// Several records match: their 18-char ids.
    Multiple(Vec<String>),
}

impl Org {
    /// An empty org with the standard objects (see `seed` for the Organization, user and currencies).
    pub fn new(schema: Schema, pod: char) -> Org {
        let tables = schema.objects.iter().map(|_| Table::default()).collect();
        let mut org = Org {
            schema,
            tables,
            org_id: String::new(),
            user_id: String::new(),
            pod,
            undo: None,
            undo_marks: Vec::new(),
            corporate: std::sync::OnceLock::new(),
        };
        org.org_id = ids::make15("00D", pod, 1);
        org.user_id = ids::make15("005", pod, 1);
        org
    }

    /// Object index by name.
    pub fn obj(&self, name: &str) -> Option<usize> {
        self.schema.object(name)
    }

    /// Object definition.
    pub fn def(&self, obj: usize) -> &ObjectDef {
        &self.schema.objects[obj]
    }

    /// Makes sure a table exists for every object (after schema changes).
    pub fn sync_tables(&mut self) {
        while self.tables.len() < self.schema.objects.len() {
            self.tables.push(Table::default());
        }
    }

    /// Finds a row by 15/18-char id in a given object.
    pub fn find(&self, obj: usize, id: &str) -> Option<u32> {
        let id15 = ids::to15(id)?;
        self.tables.get(obj)?.by_id.get(id15.as_str()).copied()
    }

    /// Finds a record by id in any object: (object, row).
    pub fn find_any(&self, id: &str) -> Option<(usize, u32)> {
        let id15 = ids::to15(id)?;
        let obj = self.schema.object_for_id(&id15)?;
        self.tables
            .get(obj)?
            .by_id
            .get(id15.as_str())
            .map(|r| (obj, *r))
    }

    /// The record at (obj,row).
    pub fn row(&self, obj: usize, row: u32) -> &Row {
        &self.tables[obj].rows[row as usize]
    }

    /// Stored or computed value (formulas, compound fields) of a column.
    pub fn value(&self, obj: usize, row: u32, col: usize, now: i64) -> Val {
        let def = self.def(obj);
        if let Some(Some(f)) = def.formulas.get(col) {
            let r = RowResolver {
                org: self,
                obj,
                row,
                now,
                depth: 0,
            };
            let v = f.eval(&r);
            return coerce_formula(v, def.kinds[col], def.fields[col].scale);
        }
        row_val(self.row(obj, row), col)
    }

    /// Parent record through a lookup column.
    pub fn parent(&self, obj: usize, row: u32, col: usize) -> Option<(usize, u32)> {
        let id = self.row(obj, row).get_str(col)?;
        self.find_any(id)
    }

    /// Value of a dotted path relative to a record (used by formulas).
    pub fn path_value(&self, obj: usize, row: u32, path: &[String], now: i64, depth: u8) -> Val {
        if depth > 8 || path.is_empty() {
            return Val::Null;
        }
        let def = self.def(obj);
        if path.len() == 1 {
            return match def.field(&path[0]) {
                Some(col) if def.formulas[col].is_some() => {
                    let r = RowResolver {
                        org: self,
                        obj,
                        row,
                        now,
                        depth: depth + 1,
                    };
                    def.formulas[col].as_ref().map_or(Val::Null, |f| {
                        coerce_formula(f.eval(&r), def.kinds[col], def.fields[col].scale)
                    })
                }
                Some(col) => row_val(self.row(obj, row), col),
                None => Val::Null,
            };
        }
        let Some(col) = def.rel(&path[0]) else {
            return Val::Null;
        };
        match self.parent(obj, row, col) {
            Some((po, pr)) => self.path_value(po, pr, &path[1..], now, depth + 1),
            None => Val::Null,
        }
    }

    /// Starts recording undo information (for allOrNone).
    ///
    /// Transactions nest: an inner [`Org::rollback`] only reverts the inner changes.
    pub fn begin(&mut self) {
        let log = self.undo.get_or_insert_with(Vec::new);
        self.undo_marks.push(log.len());
    }

    /// Ends the innermost transaction, keeping its changes.
    pub fn commit(&mut self) {
        self.undo_marks.pop();
        if self.undo_marks.is_empty() {
            self.undo = None;
        }
    }

    /// Reverts every change since the matching [`Org::begin`].
    pub fn rollback(&mut self) {
        self.reset_caches();
        let mark = self.undo_marks.pop().unwrap_or(0);
        let Some(log) = self.undo.as_mut() else {
            return;
        };
        let tail: Vec<(usize, UndoEntry)> = log.drain(mark.min(log.len())..).collect();
        if self.undo_marks.is_empty() {
            self.undo = None;
        }
        for (obj, entry) in tail.into_iter().rev() {
            match entry {
                UndoEntry::Insert => {
                    let t = &mut self.tables[obj];
                    if let Some(row) = t.rows.pop() {
                        let idx = t.rows.len() as u32;
                        if let Some(ms) = modstamp_of(&self.schema.objects[obj], &row) {
                            t.modstamps.remove(&(ms, idx));
                        }
                        if let Some(id) = row.id_opt() {
                            t.by_id.remove(id);
                        }
                        for (col, ix) in t.indexes.iter_mut() {
                            let def = &self.schema.objects[obj].fields[*col];
                            if let Some(k) = norm_key(&row_val(&row, *col), def.case_sensitive)
                                && let Some(v) = ix.get_mut(&k)
                            {
                                v.retain(|r| *r != idx);
                            }
                        }
                    }
                }
                UndoEntry::Update(row, old) => {
                    self.reindex(obj, row, Some(&old));
                    let current = std::mem::replace(&mut self.tables[obj].rows[row as usize], old);
                    self.restamp(obj, row, Some(&current));
                }
            }
        }
    }

    /// Moves `row`'s entry in the SystemModstamp index from its value in `previous` (the
    /// row as it was; `None` for a new row) to its current value.
    fn restamp(&mut self, obj: usize, row: u32, previous: Option<&Row>) {
        let def = &self.schema.objects[obj];
        let before = previous.and_then(|p| modstamp_of(def, p));
        let after = modstamp_of(def, &self.tables[obj].rows[row as usize]);
        if before == after {
            return;
        }
        let t = &mut self.tables[obj];
        if let Some(ms) = before {
            t.modstamps.remove(&(ms, row));
        }
        if let Some(ms) = after {
            t.modstamps.insert((ms, row));
        }
    }

    /// Rebuilds the SystemModstamp index of every table (after rows were loaded directly).
    pub fn rebuild_modstamps(&mut self) {
        for (obj, t) in self.tables.iter_mut().enumerate() {
            let Some(def) = self.schema.objects.get(obj) else {
                continue;
            };
            t.modstamps = t
                .rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| modstamp_of(def, r).map(|ms| (ms, i as u32)))
                .collect();
        }
    }

    fn log(&mut self, obj: usize, e: UndoEntry) {
        self.touch(obj);
        if let Some(l) = &mut self.undo {
            l.push((obj, e));
        }
    }

    fn ensure_index(&mut self, obj: usize, col: usize) {
        if self.tables[obj].indexes.contains_key(&col) {
            return;
        }
        let cs = self.schema.objects[obj].fields[col].case_sensitive;
        let mut ix: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, r) in self.tables[obj].rows.iter().enumerate() {
            if let Some(k) = norm_key(&row_val(r, col), cs) {
                ix.entry(k).or_default().push(i as u32);
            }
        }
        self.tables[obj].indexes.insert(col, ix);
    }

    /// Live (not deleted) rows whose `col` equals `v` (case-insensitive unless the field is
    /// case-sensitive); indexed for unique/external-id fields, scanned otherwise.
    pub fn lookup(&mut self, obj: usize, col: usize, v: &Val) -> Vec<u32> {
        let f = &self.schema.objects[obj].fields[col];
        let cs = f.case_sensitive;
        let Some(key) = norm_key(v, cs) else {
            return Vec::new();
        };
        if col == 0 {
            return self
                .find(obj, &key)
                .into_iter()
                .filter(|r| self.row(obj, *r).deleted_ms.is_none())
                .collect();
        }
        if f.unique || f.external_id {
            self.ensure_index(obj, col);
            let t = &self.tables[obj];
            return t
                .indexes
                .get(&col)
                .and_then(|ix| ix.get(&key))
                .map(|rows| {
                    rows.iter()
                        .copied()
                        .filter(|r| t.rows[*r as usize].deleted_ms.is_none())
                        .collect()
                })
                .unwrap_or_default();
        }
        let t = &self.tables[obj];
        t.rows
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.deleted_ms.is_none()
                    && norm_key(&row_val(r, col), cs).as_deref() == Some(key.as_str())
            })
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Moves index entries of `row` from `old` values to its current values.
    fn reindex(&mut self, obj: usize, row: u32, old: Option<&Row>) {
        let cols: Vec<usize> = self.tables[obj].indexes.keys().copied().collect();
        for col in cols {
            let cs = self.schema.objects[obj].fields[col].case_sensitive;
            let new_key = norm_key(&row_val(&self.tables[obj].rows[row as usize], col), cs);
            let old_key = old.and_then(|o| norm_key(&row_val(o, col), cs));
            if new_key == old_key {
                continue;
            }
            let Some(ix) = self.tables[obj].indexes.get_mut(&col) else {
                continue;
            };
            if let Some(k) = old_key
                && let Some(v) = ix.get_mut(&k)
            {
                v.retain(|r| *r != row);
            }
            if let Some(k) = new_key {
                ix.entry(k).or_default().push(row);
            }
        }
    }

    /// Drops value indexes of an object (after its fields change).
    pub fn drop_indexes(&mut self, obj: usize) {
        if let Some(t) = self.tables.get_mut(obj) {
            t.indexes.clear();
        }
    }

    /// Converts one JSON input value for a column, with Salesforce's error codes.
    fn coerce(&self, obj: usize, col: usize, v: &Json) -> Result<Val, WriteError> {
        let f = &self.schema.objects[obj].fields[col];
        let kind = self.schema.objects[obj].kinds[col];
        let label = f.label.as_str();
        let name = f.name.as_str();
        let bad_type = |v: &Json| {
            let shown = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            WriteError::new(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                format!("{label}: value not of required type: {shown}"),
                vec![name.to_string()],
            )
        };
        if v.is_null() {
            return Ok(Val::Null);
        }
        if let Json::String(s) = v
            && s.is_empty()
            && kind != Kind::Text
        {
            return Ok(Val::Null);
        }
        let out = match kind {
            Kind::Text | Kind::Time | Kind::Picklist | Kind::MultiPicklist => {
                let s: std::borrow::Cow<'_, str> = match v {
                    Json::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                    Json::Number(n) => std::borrow::Cow::Owned(n.to_string()),
                    Json::Bool(b) => std::borrow::Cow::Owned(b.to_string()),
                    _ => return Err(bad_type(v)),
                };
                if s.is_empty() {
                    return Ok(Val::Null);
                }
                let len = s.chars().count() as i64;
                if f.length > 0 && len > f.length {
                    return Err(WriteError::new(
                        "STRING_TOO_LONG",
                        format!(
                            "{label}: data value too large: {s} (max length={})",
                            f.length
                        ),
                        vec![name.to_string()],
                    ));
                }
                if matches!(kind, Kind::Picklist | Kind::MultiPicklist) {
                    let currency = matches!(
                        f.name.as_str(),
                        "CurrencyIsoCode" | "DefaultCurrencyIsoCode"
                    );
                    let restricted = f.restricted_picklist || currency;
                    let parts: Vec<&str> = if kind == Kind::MultiPicklist {
                        s.split(';')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .collect()
                    } else {
                        vec![&*s]
                    };
                    let mut canon = Vec::new();
                    for p in parts {
                        let found = if currency {
                            self.active_currencies()
                                .into_iter()
                                .find(|c| c.eq_ignore_ascii_case(p))
                        } else {
                            f.picklist_values
                                .iter()
                                .find(|pv| pv.value.eq_ignore_ascii_case(p) && pv.active)
                                .map(|pv| pv.value.clone())
                        };
                        match found {
                            Some(c) => canon.push(c),
                            None if restricted => {
                                return Err(WriteError::new(
                                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                    format!(
                                        "{label}: bad value for restricted picklist field: {p}"
                                    ),
                                    vec![name.to_string()],
                                ));
                            }
                            None => canon.push(p.to_string()),
                        }
                    }
                    Val::Str(canon.join(";").into())
                } else {
                    Val::Str(Box::from(&*s))
                }
            }
            Kind::Bool => match v {
                Json::Bool(b) => Val::Bool(*b),
                Json::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Val::Bool(true),
                Json::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => Val::Bool(false),
                Json::Number(n) if n.as_i64() == Some(1) => Val::Bool(true),
                Json::Number(n) if n.as_i64() == Some(0) => Val::Bool(false),
                _ => return Err(bad_type(v)),
            },
            Kind::Int => match v {
                Json::Number(n) => match n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
                {
                    Some(i) => Val::Int(i),
                    None => return Err(bad_type(v)),
                },
                Json::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Val::Int)
                    .map_err(|_| bad_type(v))?,
                _ => return Err(bad_type(v)),
            },
            Kind::Double | Kind::Currency => {
                let n = match v {
                    Json::Number(n) => n.as_f64().ok_or_else(|| bad_type(v))?,
                    Json::String(s) => s.trim().parse::<f64>().map_err(|_| bad_type(v))?,
                    _ => return Err(bad_type(v)),
                };
                let int_digits = f.precision - f.scale;
                if f.precision > 0 && n.abs() >= 10f64.powi(int_digits as i32) {
                    return Err(WriteError::new(
                        "NUMBER_OUTSIDE_VALID_RANGE",
                        format!("{label}: value outside of valid range on numeric field: {n}"),
                        vec![name.to_string()],
                    ));
                }
                Val::Num(n)
            }
            Kind::Date => match v {
                Json::String(s) => Val::Date(parse_date(s).ok_or_else(|| bad_type(v))?),
                _ => return Err(bad_type(v)),
            },
            Kind::DateTime => match v {
                Json::String(s) => Val::DateTime(parse_datetime(s).ok_or_else(|| bad_type(v))?),
                Json::Number(n) => Val::DateTime(n.as_i64().ok_or_else(|| bad_type(v))?),
                _ => return Err(bad_type(v)),
            },
            Kind::Id | Kind::Reference => {
                let Json::String(s) = v else {
                    return Err(bad_type(v));
                };
                let targets = f.reference_to.clone();
                let incorrect = || {
                    WriteError::new(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("{label}: id value of incorrect type: {s}"),
                        vec![name.to_string()],
                    )
                };
                let id15 = ids::to15(s).ok_or_else(incorrect)?;
                let target_objs: Vec<usize> = targets
                    .iter()
                    .filter_map(|t| self.schema.object(t))
                    .collect();
                let Some(tobj) = target_objs
                    .iter()
                    .copied()
                    .find(|o| self.schema.objects[*o].key_prefix == ids::prefix(&id15))
                else {
                    return Err(incorrect());
                };
                match self.find(tobj, &id15) {
                    Some(r) if self.row(tobj, r).deleted_ms.is_none() => Val::Str(id15.into()),
                    Some(_) => {
                        return Err(WriteError::new(
                            "ENTITY_IS_DELETED",
                            "entity is deleted",
                            vec![name.to_string()],
                        ));
                    }
                    None => {
                        return Err(WriteError::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                            vec![name.to_string()],
                        ));
                    }
                }
            }
            Kind::Address | Kind::Location => return Err(bad_type(v)),
        };
        Ok(out)
    }

    /// Active currency codes (the corporate one first).
    pub fn active_currencies(&self) -> Vec<String> {
        let mut out: Vec<(bool, String)> = Vec::new();
        if let Some(ct) = self.obj("CurrencyType") {
            let d = self.def(ct);
            let (Some(iso), Some(active), Some(corp)) = (
                d.field("IsoCode"),
                d.field("IsActive"),
                d.field("IsCorporate"),
            ) else {
                return vec!["USD".into()];
            };
            for r in &self.tables[ct].rows {
                if r.deleted_ms.is_none()
                    && r.is_true(active)
                    && let Some(s) = r.get_str(iso)
                {
                    out.push((r.is_true(corp), s.to_string()));
                }
            }
        }
        if out.is_empty() {
            return vec!["USD".into()];
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Corporate currency code.
    pub fn corporate_currency(&self) -> String {
        self.corporate
            .get_or_init(|| {
                self.active_currencies()
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "USD".into())
            })
            .clone()
    }

    /// Forgets derived caches (after bulk loads).
    pub fn reset_caches(&mut self) {
        self.corporate = std::sync::OnceLock::new();
    }

    /// Forgets cached currency data after a CurrencyType write.
    fn touch(&mut self, obj: usize) {
        if self.schema.objects[obj].name == "CurrencyType" {
            self.corporate = std::sync::OnceLock::new();
        }
    }

    /// Conversion rate of a currency relative to the corporate one (dated rates win when
    /// `on_day` falls in one of their ranges).
    pub fn rate(&self, iso: &str, on_day: Option<i32>) -> f64 {
        if let (Some(day), Some(dcr)) = (on_day, self.obj("DatedConversionRate")) {
            let d = self.def(dcr);
            if let (Some(ic), Some(rc), Some(sc), Some(nc)) = (
                d.field("IsoCode"),
                d.field("ConversionRate"),
                d.field("StartDate"),
                d.field("NextStartDate"),
            ) {
                for r in &self.tables[dcr].rows {
                    if r.deleted_ms.is_some() || r.get_str(ic) != Some(iso) {
                        continue;
                    }
                    let Val::Date(start) = row_val(r, sc) else {
                        continue;
                    };
                    let next = match row_val(r, nc) {
                        Val::Date(s) => s,
                        _ => i32::MAX,
                    };
                    if day >= start && day < next {
                        return row_val(r, rc).as_f64().unwrap_or(1.0);
                    }
                }
            }
        }
        if let Some(ct) = self.obj("CurrencyType") {
            let d = self.def(ct);
            if let (Some(ic), Some(rc)) = (d.field("IsoCode"), d.field("ConversionRate")) {
                for r in &self.tables[ct].rows {
                    if r.deleted_ms.is_none() && r.get_str(ic) == Some(iso) {
                        return row_val(r, rc).as_f64().unwrap_or(1.0);
                    }
                }
            }
        }
        1.0
    }

    /// Resolves `{"Account": {"Ext__c": "x"}}`-style references into a lookup id.
    fn resolve_reference(
        &mut self,
        obj: usize,
        rel_col: usize,
        rel_name: &str,
        v: &Json,
    ) -> Result<Val, WriteError> {
        if v.is_null() {
            return Ok(Val::Null);
        }
        let Json::Object(m) = v else {
            return Err(WriteError::new(
                "INVALID_FIELD",
                format!(
                    "Cannot deserialize instance of reference from {v} value for field {rel_name}"
                ),
                vec![rel_name.to_string()],
            ));
        };
        let f = &self.schema.objects[obj].fields[rel_col];
        let declared = m
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Json::as_str)
            .map(str::to_string);
        let target_name = declared
            .or_else(|| f.reference_to.first().cloned())
            .unwrap_or_default();
        let Some(tobj) = self.schema.object(&target_name) else {
            return Err(WriteError::new(
                "INVALID_FIELD",
                format!("Unable to find object: {target_name}"),
                vec![rel_name.to_string()],
            ));
        };
        let pairs: Vec<(&String, &Json)> = m
            .iter()
            .filter(|(k, _)| k.as_str() != "attributes")
            .collect();
        let [(key, val)] = pairs.as_slice() else {
            return Err(WriteError::new(
                "INVALID_FIELD",
                format!(
                    "Foreign key reference for field {rel_name} must name exactly one external id field"
                ),
                vec![rel_name.to_string()],
            ));
        };
        let tdef = &self.schema.objects[tobj];
        let tname = tdef.name.clone();
        let Some(kcol) = tdef.field(key) else {
            return Err(WriteError::new(
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {tname}"),
                vec![rel_name.to_string()],
            ));
        };
        let kf = &tdef.fields[kcol];
        if !(kf.external_id || kf.id_lookup) {
            return Err(WriteError::new(
                "INVALID_FIELD",
                format!(
                    "The {} field on {tname} is not an external id or indexed field",
                    kf.name
                ),
                vec![rel_name.to_string()],
            ));
        }
        let kname = kf.name.clone();
        let key_val = match val {
            Json::String(s) if kcol == 0 => {
                Val::Str(ids::to15(s).unwrap_or_else(|| s.clone()).into())
            }
            Json::String(s) => Val::Str(s.as_str().into()),
            Json::Number(n) => Val::Str(n.to_string().into()),
            other => Val::Str(other.to_string().into()),
        };
        let shown = crate::value::to_text(&key_val);
        let rows = self.lookup(tobj, kcol, &key_val);
        match rows.as_slice() {
            [r] => Ok(self.row(tobj, *r).get(0)),
            [] => Err(WriteError::new(
                "INVALID_FIELD",
                format!(
                    "Foreign key external ID: {shown} not found for field {kname} in entity {tname}"
                ),
                vec![],
            )),
            _ => Err(WriteError::new(
                "INVALID_FIELD",
                format!(
                    "Foreign key external ID: {shown} matched more than one record for field {kname} in entity {tname}"
                ),
                vec![],
            )),
        }
    }

    /// Validates and converts a JSON record body into (column, value) pairs.
    fn prepare(
        &mut self,
        obj: usize,
        body: &Map<String, Json>,
        insert: bool,
        allow_id: bool,
    ) -> Result<Vec<(usize, Val)>, Vec<WriteError>> {
        let mut out: Vec<(usize, Val)> = Vec::with_capacity(body.len());
        let mut errors = Vec::new();
        let mut not_writable = Vec::new();
        let oname = self.schema.objects[obj].name.clone();
        for (k, v) in body {
            if k == "attributes" {
                continue;
            }
            let def = &self.schema.objects[obj];
            if let Some(col) = def.field(k) {
                if col == 0 {
                    if allow_id {
                        continue;
                    }
                    if insert {
                        errors.push(WriteError::new(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            "cannot specify Id in an insert call",
                            vec!["Id".into()],
                        ));
                    }
                    continue;
                }
                let f = &def.fields[col];
                let writable = if insert { f.createable } else { f.updateable };
                if !writable {
                    not_writable.push(f.name.clone());
                    continue;
                }
                match self.coerce(obj, col, v) {
                    Ok(val) => out.push((col, val)),
                    Err(e) => errors.push(e),
                }
            } else if let Some(col) = def.rel(k) {
                let f = &def.fields[col];
                let writable = if insert { f.createable } else { f.updateable };
                if !writable {
                    not_writable.push(f.name.clone());
                    continue;
                }
                match self.resolve_reference(obj, col, k, v) {
                    Ok(val) => out.push((col, val)),
                    Err(e) => errors.push(e),
                }
            } else {
                errors.push(WriteError::new(
                    "INVALID_FIELD",
                    format!("No such column '{k}' on sobject of type {oname}"),
                    vec![],
                ));
            }
        }
        if !not_writable.is_empty() {
            errors.insert(
                0,
                WriteError::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        field_list(&not_writable)
                    ),
                    not_writable,
                ),
            );
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn check_unique(
        &mut self,
        obj: usize,
        vals: &[Val],
        self_row: Option<u32>,
    ) -> Result<(), WriteError> {
        let cols: Vec<usize> = self.schema.objects[obj]
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.unique)
            .map(|(i, _)| i)
            .collect();
        for col in cols {
            let v = vals.get(col).cloned().unwrap_or(Val::Null);
            if v.is_null() {
                continue;
            }
            let hits = self.lookup(obj, col, &v);
            if let Some(other) = hits.into_iter().find(|r| Some(*r) != self_row) {
                let f = &self.schema.objects[obj].fields[col];
                let id = self
                    .row(obj, other)
                    .id_opt()
                    .map(ids::to18)
                    .unwrap_or_default();
                return Err(WriteError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {id}",
                        f.name
                    ),
                    vec![f.name.clone()],
                ));
            }
        }
        Ok(())
    }

    /// Applies derived standard fields (compound names, opportunity stage flags).
    fn derive(&self, obj: usize, vals: &mut [Val]) {
        let def = &self.schema.objects[obj];
        if let (Some(n), Some(l)) = (def.field("Name"), def.field("LastName"))
            && !def.fields[n].createable
        {
            let first = def
                .field("FirstName")
                .map(|c| vals[c].clone())
                .unwrap_or(Val::Null);
            // the API's Name is "FirstName LastName" (the salutation is display-only)
            let parts: Vec<String> = [first, vals[l].clone()]
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            vals[n] = if parts.is_empty() {
                Val::Null
            } else {
                Val::Str(parts.join(" ").into())
            };
        }
        if def.name == "Opportunity" {
            let stage = def
                .field("StageName")
                .and_then(|c| vals[c].as_str().map(str::to_string))
                .unwrap_or_default();
            let closed = stage.starts_with("Closed");
            let won = stage == "Closed Won";
            if let Some(c) = def.field("IsClosed") {
                vals[c] = Val::Bool(closed);
            }
            if let Some(c) = def.field("IsWon") {
                vals[c] = Val::Bool(won);
            }
            if let Some(c) = def.field("ForecastCategory") {
                vals[c] = Val::str(if won {
                    "Closed"
                } else if closed {
                    "Omitted"
                } else {
                    "Pipeline"
                });
            }
            if let (Some(e), Some(a), Some(p)) = (
                def.field("ExpectedRevenue"),
                def.field("Amount"),
                def.field("Probability"),
            ) {
                vals[e] = match (vals[a].as_f64(), vals[p].as_f64()) {
                    (Some(a), Some(p)) => Val::Num(a * p / 100.0),
                    _ => Val::Null,
                };
            }
        }
    }

    /// Inserts one record (the write path every API shares). Returns the 18-char id.
    pub fn insert(
        &mut self,
        obj: usize,
        body: &Map<String, Json>,
        ctx: WriteCtx,
    ) -> Result<String, Vec<WriteError>> {
        let def = &self.schema.objects[obj];
        if !def.createable {
            return Err(vec![WriteError::new(
                "INVALID_TYPE",
                format!("entity type {} does not support insert", def.name),
                vec![],
            )]);
        }
        let pairs = self.prepare(obj, body, true, false)?;
        self.insert_prepared(obj, pairs, ctx)
    }

    /// Inserts already-coerced values (also used by the admin seeder and Lead conversion).
    pub fn insert_prepared(
        &mut self,
        obj: usize,
        pairs: Vec<(usize, Val)>,
        ctx: WriteCtx,
    ) -> Result<String, Vec<WriteError>> {
        let ncols = self.schema.objects[obj].fields.len();
        let mut vals = vec![Val::Null; ncols];
        let mut set = vec![false; ncols];
        for (c, v) in pairs {
            set[c] = true;
            vals[c] = v;
        }
        let corporate = self.corporate_currency();
        let user = Val::Str(self.user_id.as_str().into());
        let def = &self.schema.objects[obj];
        let mut missing = Vec::new();
        for (i, f) in def.fields.iter().enumerate() {
            if set[i] {
                continue;
            }
            match f.name.as_str() {
                "IsDeleted" => vals[i] = Val::Bool(false),
                "CreatedDate" | "LastModifiedDate" | "SystemModstamp" => {
                    vals[i] = Val::DateTime(ctx.now)
                }
                "CreatedById" | "LastModifiedById" | "OwnerId" => vals[i] = user.clone(),
                "CurrencyIsoCode" | "DefaultCurrencyIsoCode" => vals[i] = Val::str(&corporate),
                _ => {
                    if f.calculated {
                        continue;
                    }
                    if let Some(p) = f.picklist_values.iter().find(|p| p.default_value) {
                        vals[i] = Val::str(&p.value);
                    } else if def.kinds[i] == Kind::Bool {
                        vals[i] = Val::Bool(
                            f.default_value
                                .as_bool()
                                .unwrap_or(f.name == "IsUnreadByOwner" || f.name == "IsActive"),
                        );
                    } else if !f.default_value.is_null() {
                        vals[i] = match &f.default_value {
                            Json::String(s) => Val::str(s),
                            Json::Number(n) if def.kinds[i] == Kind::Int => {
                                Val::Int(n.as_i64().unwrap_or(0))
                            }
                            Json::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
                            _ => Val::Null,
                        };
                    }
                }
            }
        }
        for (i, f) in def.fields.iter().enumerate() {
            if !f.nillable
                && f.createable
                && !f.defaulted_on_create
                && vals[i].is_null()
                && !f.calculated
            {
                missing.push(f.name.clone());
            }
        }
        if !missing.is_empty() {
            return Err(vec![WriteError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", field_list(&missing)),
                missing,
            )]);
        }
        self.derive(obj, &mut vals);
        self.check_unique(obj, &vals, None).map_err(|e| vec![e])?;
        let t = &mut self.tables[obj];
        t.seq += 1;
        let prefix = self.schema.objects[obj].key_prefix.clone();
        let mut id15 = ids::make15(&prefix, self.pod, t.seq);
        while t.by_id.contains_key(id15.as_str()) {
            t.seq += 1;
            id15 = ids::make15(&prefix, self.pod, t.seq);
        }
        vals[0] = Val::Str(id15.as_str().into());
        let idx = t.rows.len() as u32;
        t.rows.push(Row::from_vals(&vals, None));
        t.by_id.insert(id15.as_str().into(), idx);
        self.reindex(obj, idx, None);
        self.restamp(obj, idx, None);
        self.log(obj, UndoEntry::Insert);
        Ok(ids::to18(&id15))
    }

    /// Checks a row is writable (exists, not deleted, not a converted lead).
    pub fn check_live(&self, obj: usize, row: u32, for_update: bool) -> Result<(), WriteError> {
        let r = self.row(obj, row);
        if r.deleted_ms.is_some() {
            return Err(WriteError::new(
                "ENTITY_IS_DELETED",
                "entity is deleted",
                vec![],
            ));
        }
        let def = self.def(obj);
        if for_update
            && def.name == "Lead"
            && let Some(c) = def.field("IsConverted")
            && r.is_true(c)
        {
            return Err(WriteError::new(
                "CANNOT_UPDATE_CONVERTED_LEAD",
                "cannot reference converted lead",
                vec![],
            ));
        }
        Ok(())
    }

    /// Updates one record by row.
    pub fn update(
        &mut self,
        obj: usize,
        row: u32,
        body: &Map<String, Json>,
        ctx: WriteCtx,
    ) -> Result<(), Vec<WriteError>> {
        self.check_live(obj, row, true).map_err(|e| vec![e])?;
        let pairs = self.prepare(obj, body, false, true)?;
        self.update_prepared(obj, row, pairs, ctx)
    }

    /// Applies coerced values to a row (system fields move).
    pub fn update_prepared(
        &mut self,
        obj: usize,
        row: u32,
        pairs: Vec<(usize, Val)>,
        ctx: WriteCtx,
    ) -> Result<(), Vec<WriteError>> {
        let def = &self.schema.objects[obj];
        let old = self.tables[obj].rows[row as usize].clone();
        let mut vals = old.to_vals(def.fields.len());
        let mut missing = Vec::new();
        for (c, v) in pairs {
            let f = &def.fields[c];
            if v.is_null() && !f.nillable && !f.calculated {
                missing.push(f.name.clone());
            }
            vals[c] = v;
        }
        if !missing.is_empty() {
            return Err(vec![WriteError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", field_list(&missing)),
                missing,
            )]);
        }
        for n in ["LastModifiedDate", "SystemModstamp"] {
            if let Some(c) = def.field(n) {
                vals[c] = Val::DateTime(ctx.now.max(match &vals[c] {
                    Val::DateTime(t) => *t,
                    _ => 0,
                }));
            }
        }
        if let Some(c) = def.field("LastModifiedById") {
            vals[c] = Val::Str(self.user_id.as_str().into());
        }
        self.derive(obj, &mut vals);
        self.check_unique(obj, &vals, Some(row))
            .map_err(|e| vec![e])?;
        self.tables[obj].rows[row as usize] = Row::from_vals(&vals, old.deleted_ms);
        self.reindex(obj, row, Some(&old));
        self.restamp(obj, row, Some(&old));
        self.log(obj, UndoEntry::Update(row, old));
        Ok(())
    }

    /// Soft-deletes a record (and cascade-deletes children), moving it to the recycle bin.
    pub fn delete(&mut self, obj: usize, row: u32, ctx: WriteCtx) -> Result<(), WriteError> {
        self.check_live(obj, row, false)?;
        let def = &self.schema.objects[obj];
        if def.name == "Organization" || def.name == "User" {
            return Err(WriteError::new(
                "INVALID_TYPE",
                format!("entity type {} does not support delete", def.name),
                vec![],
            ));
        }
        let id = self.row(obj, row).get(0);
        let children: Vec<(usize, usize, bool, bool)> = def
            .children
            .iter()
            .filter_map(|c| {
                let co = self.schema.object(&c.child)?;
                let cf = self.schema.objects[co].field(&c.field)?;
                Some((co, cf, c.cascade_delete, c.restricted_delete))
            })
            .collect();
        for (co, cf, cascade, restricted) in &children {
            let hits: Vec<u32> = self.tables[*co]
                .rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.deleted_ms.is_none() && row_val(r, *cf) == id)
                .map(|(i, _)| i as u32)
                .collect();
            if *restricted && !hits.is_empty() {
                return Err(WriteError::new(
                    "DELETE_FAILED",
                    "Your attempt to delete this record failed because it is referenced by other records.",
                    vec![],
                ));
            }
            if *cascade {
                for r in hits {
                    self.delete(*co, r, ctx)?;
                }
            }
        }
        let old = self.tables[obj].rows[row as usize].clone();
        let def = &self.schema.objects[obj];
        let (isdel, smod) = (def.field("IsDeleted"), def.field("SystemModstamp"));
        let mut vals = old.to_vals(def.fields.len());
        if let Some(c) = isdel {
            vals[c] = Val::Bool(true);
        }
        if let Some(c) = smod {
            vals[c] = Val::DateTime(ctx.now);
        }
        self.tables[obj].rows[row as usize] = Row::from_vals(&vals, Some(ctx.now));
        self.restamp(obj, row, Some(&old));
        self.log(obj, UndoEntry::Update(row, old));
        Ok(())
    }

    /// Upserts by an external-id field (or `Id`).
    pub fn upsert(
        &mut self,
        obj: usize,
        ext_col: usize,
        key: &Json,
        body: &Map<String, Json>,
        ctx: WriteCtx,
    ) -> Result<UpsertOutcome, Vec<WriteError>> {
        let def = &self.schema.objects[obj];
        let f = &def.fields[ext_col];
        if ext_col != 0 && !f.external_id && !f.id_lookup {
            return Err(vec![WriteError::new(
                "INVALID_FIELD",
                format!(
                    "Field {} is not an external id field on {}",
                    f.name, def.name
                ),
                vec![f.name.clone()],
            )]);
        }
        let key_val = match key {
            Json::Null => Val::Null,
            Json::String(s) if s.is_empty() => Val::Null,
            Json::String(s) if ext_col == 0 => {
                Val::Str(ids::to15(s).unwrap_or_else(|| s.clone()).into())
            }
            Json::String(s) => Val::str(s),
            other => Val::Str(
                crate::value::to_text(&match other {
                    Json::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
                    _ => Val::Null,
                })
                .into(),
            ),
        };
        let hits = if key_val.is_null() {
            Vec::new()
        } else {
            self.lookup(obj, ext_col, &key_val)
        };
        match hits.as_slice() {
            [] => {
                if ext_col == 0 && !key_val.is_null() {
                    return Err(vec![WriteError::new(
                        "NOT_FOUND",
                        "Provided external ID field does not exist or is not accessible: Id",
                        vec![],
                    )]);
                }
                let mut body = body.clone();
                if ext_col != 0 && !key_val.is_null() {
                    body.insert(
                        self.schema.objects[obj].fields[ext_col].name.clone(),
                        key.clone(),
                    );
                }
                body.remove("Id");
                body.remove("id");
                self.insert(obj, &body, ctx).map(UpsertOutcome::Created)
            }
            [r] => {
                let mut body = body.clone();
                let ename = self.schema.objects[obj].fields[ext_col].name.clone();
                body.retain(|k, _| !k.eq_ignore_ascii_case(&ename));
                self.update(obj, *r, &body, ctx)?;
                let id = self
                    .row(obj, *r)
                    .id_opt()
                    .map(ids::to18)
                    .unwrap_or_default();
                Ok(UpsertOutcome::Updated(id))
            }
            many => Ok(UpsertOutcome::Multiple(
                many.iter()
                    .map(|r| {
                        self.row(obj, *r)
                            .id_opt()
                            .map(ids::to18)
                            .unwrap_or_default()
                    })
                    .collect(),
            )),
        }
    }

    /// Lead conversion (spec §9.3): creates or reuses the Account and Contact (and an
    /// Opportunity unless told not to), then marks the lead converted.
    pub fn convert_lead(
        &mut self,
        req: &ConvertLead,
        ctx: WriteCtx,
    ) -> Result<ConvertResult, WriteError> {
        let lead_obj = self
            .obj("Lead")
            .ok_or_else(|| WriteError::new("INVALID_TYPE", "no Lead object", vec![]))?;
        let row = self.find(lead_obj, &req.lead_id).ok_or_else(|| {
            WriteError::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                vec![],
            )
        })?;
        self.check_live(lead_obj, row, true)?;
        let status = req
            .converted_status
            .clone()
            .unwrap_or_else(|| "Closed - Converted".into());
        let get = |org: &Org, name: &str| -> Val {
            org.def(lead_obj)
                .field(name)
                .map_or(Val::Null, |c| row_val(org.row(lead_obj, row), c))
        };
        let text = |v: Val| -> Json {
            v.as_str()
                .map_or(Json::Null, |s| Json::String(s.to_string()))
        };
        let account_id = match &req.account_id {
            Some(a) => ids::to18(&ids::to15(a).ok_or_else(|| {
                WriteError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    vec!["accountId".into()],
                )
            })?),
            None => {
                let acct = self
                    .obj("Account")
                    .ok_or_else(|| WriteError::new("INVALID_TYPE", "no Account", vec![]))?;
                let mut m = Map::new();
                m.insert("Name".into(), text(get(self, "Company")));
                for (from, to) in [
                    ("Street", "BillingStreet"),
                    ("City", "BillingCity"),
                    ("State", "BillingState"),
                    ("PostalCode", "BillingPostalCode"),
                    ("Country", "BillingCountry"),
                    ("Phone", "Phone"),
                    ("Website", "Website"),
                    ("Industry", "Industry"),
                ] {
                    let v = get(self, from);
                    if !v.is_null() {
                        m.insert(to.into(), text(v));
                    }
                }
                self.insert(acct, &m, ctx).map_err(first_error)?
            }
        };
        let contact_id = match &req.contact_id {
            Some(c) => ids::to18(&ids::to15(c).ok_or_else(|| {
                WriteError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    vec!["contactId".into()],
                )
            })?),
            None => {
                let con = self
                    .obj("Contact")
                    .ok_or_else(|| WriteError::new("INVALID_TYPE", "no Contact", vec![]))?;
                let mut m = Map::new();
                m.insert("AccountId".into(), Json::String(account_id.clone()));
                for (from, to) in [
                    ("FirstName", "FirstName"),
                    ("LastName", "LastName"),
                    ("Salutation", "Salutation"),
                    ("Email", "Email"),
                    ("Phone", "Phone"),
                    ("Title", "Title"),
                    ("LeadSource", "LeadSource"),
                ] {
                    let v = get(self, from);
                    if !v.is_null() {
                        m.insert(to.into(), text(v));
                    }
                }
                self.insert(con, &m, ctx).map_err(first_error)?
            }
        };
        let opportunity_id = if req.do_not_create_opportunity {
            None
        } else {
            let opp = self
                .obj("Opportunity")
                .ok_or_else(|| WriteError::new("INVALID_TYPE", "no Opportunity", vec![]))?;
            let mut m = Map::new();
            let name = req
                .opportunity_name
                .clone()
                .unwrap_or_else(|| format!("{}-", get(self, "Company").as_str().unwrap_or("Lead")));
            m.insert("Name".into(), Json::String(name));
            m.insert("AccountId".into(), Json::String(account_id.clone()));
            m.insert("StageName".into(), Json::String("Prospecting".into()));
            m.insert(
                "CloseDate".into(),
                Json::String(crate::value::format_date(ms_to_days(ctx.now) + 30)),
            );
            Some(self.insert(opp, &m, ctx).map_err(first_error)?)
        };
        let def = self.def(lead_obj);
        let mut pairs = Vec::new();
        let mut set = |n: &str, v: Val| {
            if let Some(c) = def.field(n) {
                pairs.push((c, v));
            }
        };
        set("IsConverted", Val::Bool(true));
        set("ConvertedDate", Val::Date(ms_to_days(ctx.now)));
        set(
            "ConvertedAccountId",
            Val::Str(ids::to15(&account_id).unwrap_or_default().into()),
        );
        set(
            "ConvertedContactId",
            Val::Str(ids::to15(&contact_id).unwrap_or_default().into()),
        );
        set(
            "ConvertedOpportunityId",
            opportunity_id
                .as_deref()
                .and_then(ids::to15)
                .map_or(Val::Null, |s| Val::Str(s.into())),
        );
        set("Status", Val::Str(status.into()));
        self.update_prepared(lead_obj, row, pairs, ctx)
            .map_err(first_error)?;
        Ok(ConvertResult {
            lead_id: ids::to18(&ids::to15(&req.lead_id).unwrap_or_default()),
            account_id,
            contact_id,
            opportunity_id,
        })
    }
}

/// Input of a Lead conversion.
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConvertLead {
    /// Lead to convert.
    pub lead_id: String,
    /// Status to set (default `Closed - Converted`).
    pub converted_status: Option<String>,
    /// Merge into this Account.
    pub account_id: Option<String>,
    /// Merge into this Contact.
    pub contact_id: Option<String>,
    /// Skip the Opportunity.
    pub do_not_create_opportunity: bool,
    /// Name for the new Opportunity.
    pub opportunity_name: Option<String>,
}

/// Result of a Lead conversion.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvertResult {
    /// Converted lead.
    pub lead_id: String,
    /// Account created or reused.
    pub account_id: String,
    /// Contact created or reused.
    pub contact_id: String,
    /// Opportunity created, if any.
    pub opportunity_id: Option<String>,
}

fn coerce_formula(v: Val, kind: Kind, scale: i64) -> Val {
    match (kind, v) {
        (_, Val::Null) => Val::Null,
        (Kind::Text | Kind::Picklist, v @ Val::Str(_)) => v,
        (Kind::Text | Kind::Picklist, v) => Val::Str(crate::value::to_text(&v).into()),
        (Kind::Double | Kind::Currency, v) => v.as_f64().map_or(Val::Null, |n| {
            let m = 10f64.powi(scale.clamp(0, 10) as i32);
            Val::Num((n * m).round() / m)
        }),
        (Kind::Int, v) => v.as_f64().map_or(Val::Null, |n| Val::Int(n as i64)),
        (Kind::Bool, v @ Val::Bool(_)) => v,
        (Kind::Date, Val::DateTime(ms)) => Val::Date(ms_to_days(ms)),
        (Kind::Date, v @ Val::Date(_)) => v,
        (Kind::DateTime, Val::Date(d)) => Val::DateTime(i64::from(d) * 86_400_000),
        (Kind::DateTime, v @ Val::DateTime(_)) => v,
        _ => Val::Null,
    }
}

struct RowResolver<'a> {
    org: &'a Org,
    obj: usize,
    row: u32,
    now: i64,
    depth: u8,
}

impl Resolver for RowResolver<'_> {
    fn field(&self, path: &[String]) -> Val {
        self.org
            .path_value(self.obj, self.row, path, self.now, self.depth)
    }
    fn now_ms(&self) -> i64 {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn org() -> Org {
        Org::new(Schema::standard(), 'A')
    }
    const CTX: WriteCtx = WriteCtx {
        now: 1_700_000_000_000,
    };

    fn body(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn insert_get_update_delete() {
        let mut o = org();
        let a = o.obj("Account").unwrap_or(0);
        let id = o
            .insert(
                a,
                &body(json!({"Name": "Acme", "NumberOfEmployees": "12"})),
                CTX,
            )
            .unwrap_or_default();
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("001"));
        let r = o.find(a, &id).unwrap_or(0);
        let emp = o.def(a).field("NumberOfEmployees").unwrap_or(0);
        assert_eq!(o.value(a, r, emp, CTX.now), Val::Int(12));
        assert!(
            o.update(a, r, &body(json!({"Name": "Acme 2"})), CTX)
                .is_ok()
        );
        assert!(o.delete(a, r, CTX).is_ok());
        let err = o
            .update(a, r, &body(json!({"Name": "x"})), CTX)
            .err()
            .unwrap_or_default();
        assert_eq!(err[0].code, "ENTITY_IS_DELETED");
    }

    #[test]
    fn write_errors() {
        let mut o = org();
        let a = o.obj("Account").unwrap_or(0);
        let c = o.obj("Contact").unwrap_or(0);
        let code = |r: Result<String, Vec<WriteError>>| r.err().map(|e| e[0].code).unwrap_or("OK");
        assert_eq!(
            code(o.insert(a, &body(json!({})), CTX)),
            "REQUIRED_FIELD_MISSING"
        );
        assert_eq!(
            code(o.insert(a, &body(json!({"Name": "x".repeat(256)})), CTX)),
            "STRING_TOO_LONG"
        );
        assert_eq!(
            code(o.insert(
                a,
                &body(json!({"Name": "x", "NumberOfEmployees": "many"})),
                CTX
            )),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code(o.insert(a, &body(json!({"Name": "x", "Foo__c": 1})), CTX)),
            "INVALID_FIELD"
        );
        assert_eq!(
            code(o.insert(
                a,
                &body(json!({"Name": "x", "CreatedDate": "2020-01-01"})),
                CTX
            )),
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
        assert_eq!(
            code(o.insert(
                c,
                &body(json!({"LastName": "x", "AccountId": "001000000000000AAA"})),
                CTX
            )),
            "INVALID_CROSS_REFERENCE_KEY"
        );
        assert_eq!(
            code(o.insert(
                a,
                &body(json!({"Name": "x", "CurrencyIsoCode": "XXX"})),
                CTX
            )),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        );
    }

    #[test]
    fn reference_by_external_id_and_rollback() {
        let mut o = org();
        let spec = crate::schema::CustomFieldSpec {
            name: "Ext__c".into(),
            field_type: "text".into(),
            external_id: true,
            unique: true,
            ..Default::default()
        };
        assert!(o.schema.define_field("Account", &spec).is_ok());
        let a = o.obj("Account").unwrap_or(0);
        let c = o.obj("Contact").unwrap_or(0);
        assert!(
            o.insert(a, &body(json!({"Name": "A", "Ext__c": "A-1"})), CTX)
                .is_ok()
        );
        let dup = o
            .insert(a, &body(json!({"Name": "B", "Ext__c": "a-1"})), CTX)
            .err()
            .unwrap_or_default();
        assert_eq!(dup[0].code, "DUPLICATE_VALUE");
        assert!(
            o.insert(
                c,
                &body(json!({"LastName": "L", "Account": {"Ext__c": "A-1"}})),
                CTX
            )
            .is_ok()
        );
        let nf = o
            .insert(
                c,
                &body(json!({"LastName": "L", "Account": {"Ext__c": "nope"}})),
                CTX,
            )
            .err()
            .unwrap_or_default();
        assert_eq!(
            nf[0].message,
            "Foreign key external ID: nope not found for field Ext__c in entity Account"
        );
        o.begin();
        assert!(
            o.insert(a, &body(json!({"Name": "C", "Ext__c": "C-1"})), CTX)
                .is_ok()
        );
        o.rollback();
        assert_eq!(o.tables[a].rows.len(), 1);
        assert!(
            o.insert(a, &body(json!({"Name": "C", "Ext__c": "C-1"})), CTX)
                .is_ok()
        );
    }

    #[test]
    fn nested_transactions_roll_back_only_their_changes() {
        let mut o = org();
        let a = o.obj("Account").unwrap_or(0);
        o.begin();
        assert!(o.insert(a, &body(json!({"Name": "outer"})), CTX).is_ok());
        o.begin();
        assert!(o.insert(a, &body(json!({"Name": "inner"})), CTX).is_ok());
        o.rollback();
        assert_eq!(o.tables[a].rows.len(), 1);
        o.commit();
        assert_eq!(o.tables[a].rows.len(), 1);
        o.begin();
        let r = o.find(a, o.tables[a].rows[0].id()).unwrap_or(0);
        assert!(
            o.update(a, r, &body(json!({"Name": "changed"})), CTX)
                .is_ok()
        );
        o.rollback();
        let name = o.def(a).field("Name").unwrap_or(0);
        assert_eq!(o.value(a, r, name, CTX.now), Val::str("outer"));
    }

    #[test]
    fn lead_conversion() {
        let mut o = org();
        let l = o.obj("Lead").unwrap_or(0);
        let id = o
            .insert(
                l,
                &body(json!({"LastName": "Smith", "Company": "Smith Co"})),
                CTX,
            )
            .unwrap_or_default();
        let res = o.convert_lead(
            &ConvertLead {
                lead_id: id.clone(),
                ..Default::default()
            },
            CTX,
        );
        assert!(res.is_ok());
        let r = o.find(l, &id).unwrap_or(0);
        let err = o
            .update(l, r, &body(json!({"LastName": "x"})), CTX)
            .err()
            .unwrap_or_default();
        assert_eq!(err[0].code, "CANNOT_UPDATE_CONVERTED_LEAD");
    }
}
