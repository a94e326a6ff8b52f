//! SOQL execution: evaluates a `ferry-soql` AST against the in-memory org and shapes the
//! results like Salesforce (spec §5.4): `attributes` on every record, parent paths nested,
//! child subqueries as `{totalSize, done, records}`, aggregates as `AggregateResult` rows.
//!
//! Time-dependent parts (date literals such as `TODAY`) use the injectable emulator clock;
//! org and user time zones are fixed to UTC.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{TimeZone, Utc};
use ferry_soql::{
    AggregateFunction, ComparisonOp, Condition, FieldPath, FieldsKind, InValues, Literal, Operand,
    OrderDirection, Query, SelectItem, SoqlError,
};
use serde_json::{Map, Value as Json, json};

use crate::ids;
use crate::schema::Kind;
use crate::store::Org;
use crate::value::{
    Val, cmp_vals, date_to_days, format_datetime, ms_to_days, num_json, to_json, to_text,
};

/// A resolved field path: lookups to follow, then a column on the final object.
#[derive(Debug, Clone)]
struct Path {
    /// (object, lookup column) steps from the root.
    steps: Vec<(usize, usize)>,
    /// Final object.
    obj: usize,
    /// Column on the final object.
    col: usize,
    kind: Kind,
}

/// One output entry of a record.
#[derive(Debug)]
enum Item {
    Field {
        key: String,
        col: usize,
        name: String,
        mode: Mode,
    },
    Parent {
        key: String,
        col: usize,
        node: Node,
    },
    Child(Box<ChildPlan>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Convert,
    Label,
    Format,
}

#[derive(Debug)]
struct Node {
    obj: usize,
    items: Vec<Item>,
}

#[derive(Debug)]
struct ChildPlan {
    key: String,
    child_obj: usize,
    fk_col: usize,
    node: Node,
    filter: Option<Cond>,
    order: Vec<(Path, bool, bool)>,
    limit: Option<u64>,
    index: OnceLock<HashMap<Box<str>, Vec<u32>>>,
}

/// A compiled select list, kept by query cursors to render later pages.
#[derive(Debug)]
pub struct Plan {
    root: Node,
    all_rows: bool,
}

#[derive(Debug)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp(Path, ComparisonOp, Lit),
    In(Path, bool, Vec<Lit>),
    InSet(Path, bool, std::collections::HashSet<String>),
    Includes(Path, Vec<Vec<String>>),
    Excludes(Path, Vec<Vec<String>>),
    Having(usize, ComparisonOp, Lit),
    HavingIn(usize, bool, Vec<Lit>),
}

/// A literal converted for the field it is compared with.
#[derive(Debug, Clone)]
enum Lit {
    Null,
    Val(Val),
    Range(i64, i64),
    DayRange(i64, i64),
    Money(f64, String),
    Pattern(String),
}

/// What a query produced.
#[derive(Debug)]
pub enum Outcome {
    /// `SELECT COUNT() ...`.
    Count(usize),
    /// Record rows of the root object (rendered page by page).
    Rows {
        /// Object index.
        obj: usize,
        /// Compiled select list.
        plan: Arc<Plan>,
        /// Matching rows in order.
        rows: Vec<u32>,
    },
    /// Aggregate rows, already rendered.
    Aggregate(Vec<Json>),
}

struct Ctx<'a> {
    org: &'a Org,
    text: &'a str,
    now: i64,
    all_rows: bool,
}

fn field_err(c: &Ctx, p: &FieldPath, field: &str, entity: &str) -> SoqlError {
    SoqlError::invalid_field(c.text, p.position, field, entity)
}

impl Ctx<'_> {
    fn resolve(&self, obj: usize, fp: &FieldPath, alias: Option<&str>) -> Result<Path, SoqlError> {
        let parts = fp.strip_alias(alias);
        let mut cur = obj;
        let mut steps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let def = self.org.def(cur);
            if i + 1 == parts.len() {
                let col = def
                    .field(part)
                    .ok_or_else(|| field_err(self, fp, &parts.join("."), &def.name))?;
                return Ok(Path {
                    steps,
                    obj: cur,
                    col,
                    kind: def.kinds[col],
                });
            }
            let col = def
                .rel(part)
                .ok_or_else(|| SoqlError::invalid_relationship(self.text, fp.position, part))?;
            let target = def.fields[col]
                .reference_to
                .iter()
                .find_map(|t| self.org.obj(t))
                .ok_or_else(|| SoqlError::invalid_relationship(self.text, fp.position, part))?;
            steps.push((cur, col));
            cur = target;
        }
        Err(field_err(self, fp, "", &self.org.def(obj).name))
    }

    /// Row reached by following `steps` (None when a lookup is empty).
    fn walk(&self, path: &Path, row: u32) -> Option<(usize, u32)> {
        let mut cur = (path.steps.first().map_or(path.obj, |s| s.0), row);
        for (_, col) in &path.steps {
            cur = self.org.parent(cur.0, cur.1, *col)?;
        }
        Some(cur)
    }

    fn get(&self, path: &Path, row: u32) -> Val {
        match self.walk(path, row) {
            Some((o, r)) if o == path.obj => self.org.value(o, r, path.col, self.now),
            Some((o, r)) => {
                let name = &self.org.def(path.obj).fields[path.col].name;
                self.org
                    .def(o)
                    .field(name)
                    .map_or(Val::Null, |c| self.org.value(o, r, c, self.now))
            }
            None => Val::Null,
        }
    }

    fn currency_of(&self, obj: usize, row: u32) -> Option<String> {
        let def = self.org.def(obj);
        let c = def.field("CurrencyIsoCode")?;
        self.org.row(obj, row).get_str(c).map(str::to_string)
    }

    fn to_corporate(&self, obj: usize, row: u32, amount: f64) -> f64 {
        let Some(iso) = self.currency_of(obj, row) else {
            return amount;
        };
        let day = if self.org.def(obj).name == "Opportunity" {
            self.org
                .def(obj)
                .field("CloseDate")
                .and_then(|c| match self.org.row(obj, row).get(c) {
                    Val::Date(d) => Some(d),
                    _ => None,
                })
        } else {
            None
        };
        let rate = self.org.rate(&iso, day);
        if rate == 0.0 { amount } else { amount / rate }
    }

    fn literal(&self, path: &Path, lit: &Literal, op: ComparisonOp) -> Lit {
        let now = Utc
            .timestamp_millis_opt(self.now)
            .single()
            .unwrap_or_default();
        match lit {
            Literal::Null => Lit::Null,
            Literal::Boolean(b) => Lit::Val(Val::Bool(*b)),
            Literal::String(s) if op == ComparisonOp::Like => Lit::Pattern(s.clone()),
            Literal::String(s) => match path.kind {
                Kind::Id | Kind::Reference => {
                    Lit::Val(Val::Str(ids::to15(s).unwrap_or_else(|| s.clone()).into()))
                }
                Kind::Int | Kind::Double | Kind::Currency => s
                    .parse::<f64>()
                    .map_or(Lit::Val(Val::str(s)), |n| Lit::Val(Val::Num(n))),
                Kind::Bool => Lit::Val(Val::Bool(s.eq_ignore_ascii_case("true"))),
                _ => Lit::Val(Val::str(s)),
            },
            Literal::Integer(i) => Lit::Val(Val::Num(*i as f64)),
            Literal::Decimal(d) => Lit::Val(d.parse::<f64>().map_or(Val::Null, Val::Num)),
            Literal::Date(d) => match path.kind {
                Kind::DateTime => Lit::Val(Val::DateTime(i64::from(date_to_days(*d)) * 86_400_000)),
                _ => Lit::Val(Val::Date(date_to_days(*d))),
            },
            Literal::DateTime(dt) => match path.kind {
                Kind::Date => Lit::Val(Val::Date(ms_to_days(dt.timestamp_millis()))),
                _ => Lit::Val(Val::DateTime(dt.timestamp_millis())),
            },
            Literal::DateLiteral(dl) => {
                let (s, e) = dl.range(now);
                match path.kind {
                    Kind::Date => Lit::DayRange(
                        i64::from(ms_to_days(s.timestamp_millis())),
                        i64::from(ms_to_days(e.timestamp_millis())),
                    ),
                    _ => Lit::Range(s.timestamp_millis(), e.timestamp_millis()),
                }
            }
            Literal::Currency { iso_code, amount } => {
                Lit::Money(amount.parse().unwrap_or(0.0), iso_code.clone())
            }
        }
    }

    fn compile(
        &self,
        obj: usize,
        cond: &Condition,
        alias: Option<&str>,
        having: Option<&[Operand]>,
    ) -> Result<Cond, SoqlError> {
        Ok(match cond {
            Condition::And(cs) => Cond::And(
                cs.iter()
                    .map(|c| self.compile(obj, c, alias, having))
                    .collect::<Result<_, _>>()?,
            ),
            Condition::Or(cs) => Cond::Or(
                cs.iter()
                    .map(|c| self.compile(obj, c, alias, having))
                    .collect::<Result<_, _>>()?,
            ),
            Condition::Not(c) => Cond::Not(Box::new(self.compile(obj, c, alias, having)?)),
            Condition::Comparison { field, op, value } => {
                if let (Some(h), Operand::Aggregate { .. }) = (having, field) {
                    let idx = h.iter().position(|o| o == field).unwrap_or(usize::MAX);
                    let path = self.resolve(obj, field.field(), alias)?;
                    return Ok(Cond::Having(
                        idx,
                        *op,
                        self.literal(
                            &Path {
                                kind: Kind::Double,
                                ..path
                            },
                            value,
                            *op,
                        ),
                    ));
                }
                if let Some(h) = having {
                    let idx = h.iter().position(|o| o == field).unwrap_or(usize::MAX);
                    let path = self.resolve(obj, field.field(), alias)?;
                    return Ok(Cond::Having(idx, *op, self.literal(&path, value, *op)));
                }
                let path = self.resolve(obj, field.field(), alias)?;
                let lit = self.literal(&path, value, *op);
                Cond::Cmp(path, *op, lit)
            }
            Condition::In {
                field,
                negated,
                values,
            } => {
                let path = self.resolve(obj, field.field(), alias)?;
                match values {
                    InValues::List(ls) => {
                        let lits = ls
                            .iter()
                            .map(|l| self.literal(&path, l, ComparisonOp::Eq))
                            .collect();
                        if let Some(h) = having {
                            let idx = h.iter().position(|o| o == field).unwrap_or(usize::MAX);
                            return Ok(Cond::HavingIn(idx, *negated, lits));
                        }
                        Cond::In(path, *negated, lits)
                    }
                    InValues::Subquery(sub) => {
                        let set = self.semi_join(sub)?;
                        Cond::InSet(path, *negated, set)
                    }
                }
            }
            Condition::Includes { field, values } => {
                Cond::Includes(self.resolve(obj, field, alias)?, split_sets(values))
            }
            Condition::Excludes { field, values } => {
                Cond::Excludes(self.resolve(obj, field, alias)?, split_sets(values))
            }
        })
    }

    fn semi_join(&self, sub: &Query) -> Result<std::collections::HashSet<String>, SoqlError> {
        let obj = self.org.obj(&sub.from.object).ok_or_else(|| {
            SoqlError::invalid_type(self.text, sub.from.position, &sub.from.object)
        })?;
        let Some(SelectItem::Field(fp)) = sub.select.first() else {
            return Err(SoqlError::malformed(
                self.text,
                sub.from.position,
                "semi join sub-selects must select exactly one field",
            ));
        };
        let path = self.resolve(obj, fp, sub.from.alias.as_deref())?;
        let filter = sub
            .where_
            .as_ref()
            .map(|w| self.compile(obj, w, sub.from.alias.as_deref(), None))
            .transpose()?;
        let mut out = std::collections::HashSet::new();
        for (i, r) in self.org.tables[obj].rows.iter().enumerate() {
            if r.deleted_ms.is_some() {
                continue;
            }
            let row = i as u32;
            if filter.as_ref().is_some_and(|f| !self.test(f, row)) {
                continue;
            }
            if let Some(k) = key_of(&self.get(&path, row)) {
                out.insert(k);
            }
        }
        Ok(out)
    }

    fn cmp_lit(&self, path: &Path, row: u32, v: &Val, op: ComparisonOp, lit: &Lit) -> bool {
        use std::cmp::Ordering;
        match lit {
            Lit::Null => match op {
                ComparisonOp::Eq => v.is_null(),
                ComparisonOp::Ne => !v.is_null(),
                _ => false,
            },
            _ if v.is_null() => op == ComparisonOp::Ne,
            Lit::Pattern(p) => match v {
                Val::Str(s) => ferry_soql::like_matches(p, s),
                other => ferry_soql::like_matches(p, &to_text(other)),
            },
            Lit::Range(s, e) | Lit::DayRange(s, e) => {
                let (s, e) = (*s, *e);
                let x = match (lit, v) {
                    (Lit::Range(..), Val::DateTime(t)) => *t,
                    (Lit::Range(..), Val::Date(d)) => i64::from(*d) * 86_400_000,
                    (Lit::DayRange(..), Val::Date(d)) => i64::from(*d),
                    (Lit::DayRange(..), Val::DateTime(t)) => i64::from(ms_to_days(*t)),
                    _ => return false,
                };
                match op {
                    ComparisonOp::Eq => x >= s && x < e,
                    ComparisonOp::Ne => !(x >= s && x < e),
                    ComparisonOp::Lt => x < s,
                    ComparisonOp::Le => x < e,
                    ComparisonOp::Gt => x >= e,
                    ComparisonOp::Ge => x >= s,
                    ComparisonOp::Like => false,
                }
            }
            Lit::Money(amount, iso) => {
                let Some(x) = v.as_f64() else { return false };
                let rate = self.org.rate(iso, None);
                let lit_corp = if rate == 0.0 { *amount } else { amount / rate };
                let (o, r) = self.walk(path, row).unwrap_or((path.obj, row));
                let x_corp = self.to_corporate(o, r, x);
                ord_ok(op, x_corp.partial_cmp(&lit_corp).unwrap_or(Ordering::Equal))
            }
            Lit::Val(l) => {
                let o = match (v, l) {
                    (Val::Str(a), Val::Str(b))
                        if matches!(path.kind, Kind::Id | Kind::Reference) =>
                    {
                        // Stored ids are 15 characters: compare them without a copy.
                        if a.len() == 15 {
                            (**a).cmp(&**b)
                        } else {
                            let a15 = ids::to15(a).unwrap_or_else(|| a.to_string());
                            a15.as_str().cmp(&**b)
                        }
                    }
                    (Val::Str(a), Val::Str(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
                    (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
                    _ => match (v.as_f64(), l.as_f64()) {
                        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
                        _ => cmp_vals(v, l),
                    },
                };
                ord_ok(op, o)
            }
        }
    }

    fn test(&self, c: &Cond, row: u32) -> bool {
        match c {
            Cond::And(cs) => cs.iter().all(|c| self.test(c, row)),
            Cond::Or(cs) => cs.iter().any(|c| self.test(c, row)),
            Cond::Not(c) => !self.test(c, row),
            Cond::Cmp(p, op, lit) => {
                let v = self.get(p, row);
                self.cmp_lit(p, row, &v, *op, lit)
            }
            Cond::In(p, neg, lits) => {
                let v = self.get(p, row);
                let hit = lits
                    .iter()
                    .any(|l| self.cmp_lit(p, row, &v, ComparisonOp::Eq, l));
                hit != *neg
            }
            Cond::InSet(p, neg, set) => {
                let hit = key_of(&self.get(p, row)).is_some_and(|k| set.contains(&k));
                hit != *neg
            }
            Cond::Includes(p, sets) => includes(&self.get(p, row), sets),
            Cond::Excludes(p, sets) => !includes(&self.get(p, row), sets),
            Cond::Having(..) | Cond::HavingIn(..) => true,
        }
    }

    fn build_node(
        &self,
        obj: usize,
        node: &mut Node,
        fp: &FieldPath,
        alias: Option<&str>,
        mode: Mode,
        key_override: Option<&str>,
    ) -> Result<(), SoqlError> {
        let parts = fp.strip_alias(alias).to_vec();
        let mut cur_obj = obj;
        let mut cur = node;
        for (i, part) in parts.iter().enumerate() {
            let def = self.org.def(cur_obj);
            if i + 1 == parts.len() {
                let col = def
                    .field(part)
                    .ok_or_else(|| field_err(self, fp, &parts.join("."), &def.name))?;
                let name = def.fields[col].name.clone();
                let key = key_override.map_or_else(|| name.clone(), str::to_string);
                if !cur
                    .items
                    .iter()
                    .any(|it| matches!(it, Item::Field { key: k, .. } if k == &key))
                {
                    cur.items.push(Item::Field {
                        key,
                        col,
                        name,
                        mode,
                    });
                }
                return Ok(());
            }
            let col = def
                .rel(part)
                .ok_or_else(|| SoqlError::invalid_relationship(self.text, fp.position, part))?;
            let rel_name = def.fields[col]
                .relationship_name
                .clone()
                .unwrap_or_else(|| part.clone());
            let target = def.fields[col]
                .reference_to
                .iter()
                .find_map(|t| self.org.obj(t))
                .ok_or_else(|| SoqlError::invalid_relationship(self.text, fp.position, part))?;
            let pos = cur
                .items
                .iter()
                .position(|it| matches!(it, Item::Parent { key, .. } if key == &rel_name));
            let pos = match pos {
                Some(p) => p,
                None => {
                    cur.items.push(Item::Parent {
                        key: rel_name,
                        col,
                        node: Node {
                            obj: target,
                            items: Vec::new(),
                        },
                    });
                    cur.items.len() - 1
                }
            };
            let Item::Parent { node: next, .. } = &mut cur.items[pos] else {
                return Err(SoqlError::invalid_relationship(
                    self.text,
                    fp.position,
                    part,
                ));
            };
            cur = next;
            cur_obj = target;
        }
        Ok(())
    }

    fn plan_select(&self, obj: usize, q: &Query) -> Result<Node, SoqlError> {
        let alias = q.from.alias.as_deref();
        let mut node = Node {
            obj,
            items: Vec::new(),
        };
        for item in &q.select {
            match item {
                SelectItem::Field(fp) => {
                    self.build_node(obj, &mut node, fp, alias, Mode::Plain, None)?
                }
                SelectItem::ConvertCurrency { field, alias: a } => {
                    self.build_node(obj, &mut node, field, alias, Mode::Convert, a.as_deref())?
                }
                SelectItem::ToLabel { field, alias: a } => {
                    self.build_node(obj, &mut node, field, alias, Mode::Label, a.as_deref())?
                }
                SelectItem::Format { field, alias: a } => {
                    self.build_node(obj, &mut node, field, alias, Mode::Format, a.as_deref())?
                }
                SelectItem::Fields(kind) => {
                    let def = self.org.def(obj);
                    for (col, f) in def.fields.iter().enumerate() {
                        let take = match kind {
                            FieldsKind::All => true,
                            FieldsKind::Standard => !f.custom,
                            FieldsKind::Custom => f.custom,
                        };
                        if take
                            && !node
                                .items
                                .iter()
                                .any(|it| matches!(it, Item::Field { key, .. } if key == &f.name))
                        {
                            node.items.push(Item::Field {
                                key: f.name.clone(),
                                col,
                                name: f.name.clone(),
                                mode: Mode::Plain,
                            });
                        }
                    }
                }
                SelectItem::Subquery(sub) => {
                    let def = self.org.def(obj);
                    let rel = def
                        .children
                        .iter()
                        .find(|c| {
                            c.name
                                .as_deref()
                                .is_some_and(|n| n.eq_ignore_ascii_case(&sub.from.object))
                        })
                        .ok_or_else(|| {
                            SoqlError::invalid_relationship(
                                self.text,
                                sub.from.position,
                                &sub.from.object,
                            )
                        })?;
                    let child_obj = self.org.obj(&rel.child).ok_or_else(|| {
                        SoqlError::invalid_type(self.text, sub.from.position, &rel.child)
                    })?;
                    let fk_col = self.org.def(child_obj).field(&rel.field).ok_or_else(|| {
                        SoqlError::invalid_type(self.text, sub.from.position, &rel.child)
                    })?;
                    let key = rel.name.clone().unwrap_or_default();
                    let sub_alias = sub.from.alias.as_deref();
                    let child_node = self.plan_select(child_obj, sub)?;
                    let filter = sub
                        .where_
                        .as_ref()
                        .map(|w| self.compile(child_obj, w, sub_alias, None))
                        .transpose()?;
                    let order = self.plan_order(child_obj, sub)?;
                    node.items.push(Item::Child(Box::new(ChildPlan {
                        key,
                        child_obj,
                        fk_col,
                        node: child_node,
                        filter,
                        order,
                        limit: sub.limit,
                        index: OnceLock::new(),
                    })));
                }
                SelectItem::CountAll | SelectItem::Aggregate { .. } => {}
            }
        }
        Ok(node)
    }

    fn plan_order(&self, obj: usize, q: &Query) -> Result<Vec<(Path, bool, bool)>, SoqlError> {
        q.order_by
            .iter()
            .map(|o| {
                Ok((
                    self.resolve(obj, o.field.field(), q.from.alias.as_deref())?,
                    o.direction == OrderDirection::Desc,
                    o.nulls_first(),
                ))
            })
            .collect()
    }
}

/// Converted money keeps the corporate currency's 2 decimal places.
fn round_money(n: f64) -> f64 {
    (n * 100.0).round() / 100.0
}

fn ord_ok(op: ComparisonOp, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        ComparisonOp::Eq => o == Equal,
        ComparisonOp::Ne => o != Equal,
        ComparisonOp::Lt => o == Less,
        ComparisonOp::Le => o != Greater,
        ComparisonOp::Gt => o == Greater,
        ComparisonOp::Ge => o != Less,
        ComparisonOp::Like => false,
    }
}

fn split_sets(values: &[String]) -> Vec<Vec<String>> {
    values
        .iter()
        .map(|v| {
            v.split(';')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .collect()
}

fn includes(v: &Val, sets: &[Vec<String>]) -> bool {
    let Some(s) = v.as_str() else { return false };
    let have: Vec<String> = s.split(';').map(|p| p.trim().to_lowercase()).collect();
    sets.iter().any(|set| set.iter().all(|x| have.contains(x)))
}

/// Comparable key of a value for semi-joins and grouping.
fn key_of(v: &Val) -> Option<String> {
    match v {
        Val::Null => None,
        Val::Str(s) => Some(
            ids::to15(s)
                .filter(|_| s.len() == 18)
                .unwrap_or_else(|| s.to_lowercase()),
        ),
        other => Some(to_text(other)),
    }
}

/// Rows that can possibly match, from the id index or an existing value index; `None`
/// when the condition has no indexed equality (then every row is scanned).
fn candidates(c: &Ctx, obj: usize, cond: &Cond) -> Option<Vec<u32>> {
    let table = &c.org.tables[obj];
    let lookup = |path: &Path, lits: &[&Lit]| -> Option<Vec<u32>> {
        if !path.steps.is_empty() || path.obj != obj {
            return None;
        }
        let index = if path.col == 0 {
            None
        } else {
            Some(table.indexes.get(&path.col)?)
        };
        let case_sensitive = c.org.def(obj).fields[path.col].case_sensitive;
        let mut out = Vec::new();
        for lit in lits {
            let Lit::Val(Val::Str(s)) = lit else {
                return None;
            };
            match index {
                None => out.extend(table.by_id.get(&**s).copied()),
                Some(ix) => {
                    let key = if case_sensitive {
                        s.to_string()
                    } else {
                        s.to_lowercase()
                    };
                    out.extend(ix.get(&key).into_iter().flatten().copied());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    };
    match cond {
        Cond::Cmp(p, ComparisonOp::Eq, lit) => lookup(p, &[lit]),
        Cond::In(p, false, lits) => lookup(p, &lits.iter().collect::<Vec<_>>()),
        Cond::And(cs) => cs.iter().find_map(|x| candidates(c, obj, x)),
        _ => None,
    }
}

/// Sorts rows by `order`; ties keep row order (a scan's order), as a stable sort would.
/// `keep`: only the first `keep` rows are wanted (`OFFSET` + `LIMIT`), so they are
/// selected in linear time before the sort and the rest dropped.
/// Rows whose `SystemModstamp` can satisfy the filter, from the object's SystemModstamp
/// index, in row order: `None` unless the filter is (an `AND` with) comparisons of the root
/// object's `SystemModstamp` with datetimes. A null SystemModstamp never satisfies such a
/// comparison, so rows without one are rightly left out.
fn modstamp_candidates(c: &Ctx, obj: usize, cond: &Cond) -> Option<Vec<u32>> {
    let col = c.org.def(obj).modstamp_col()?;
    let (low, high) = modstamp_bounds(obj, col, cond)?;
    let table = &c.org.tables[obj];
    let mut rows: Vec<u32> = if low < high {
        table
            .modstamps
            .range((low, 0)..(high, 0))
            .map(|(_, row)| *row)
            .collect()
    } else {
        Vec::new()
    };
    rows.sort_unstable();
    Some(rows)
}

/// `[low, high)` in epoch ms for the SystemModstamp comparisons of a condition (the
/// intersection of those under an `AND`), or `None` when it has none.
fn modstamp_bounds(obj: usize, col: usize, cond: &Cond) -> Option<(i64, i64)> {
    match cond {
        Cond::Cmp(path, op, Lit::Val(Val::DateTime(ms)))
            if path.steps.is_empty() && path.obj == obj && path.col == col =>
        {
            let ms = *ms;
            match op {
                ComparisonOp::Eq => Some((ms, ms.saturating_add(1))),
                ComparisonOp::Ge => Some((ms, i64::MAX)),
                ComparisonOp::Gt => Some((ms.saturating_add(1), i64::MAX)),
                ComparisonOp::Lt => Some((i64::MIN, ms)),
                ComparisonOp::Le => Some((i64::MIN, ms.saturating_add(1))),
                ComparisonOp::Ne | ComparisonOp::Like => None,
            }
        }
        Cond::And(children) => children
            .iter()
            .filter_map(|child| modstamp_bounds(obj, col, child))
            .reduce(|(l1, h1), (l2, h2)| (l1.max(l2), h1.min(h2))),
        _ => None,
    }
}

/// `ORDER BY SystemModstamp [DESC] LIMIT n` from the SystemModstamp index: the first `keep`
/// of `rows` in that order (ties in row order, as [`sort_rows`] leaves them) without
/// sorting every row. `None` when the order is anything else, or when some row has no
/// SystemModstamp (nulls would need their place in the order).
fn modstamp_order(
    c: &Ctx,
    obj: usize,
    order: &[(Path, bool, bool)],
    rows: &[u32],
    keep: usize,
) -> Option<Vec<u32>> {
    let [(path, desc, _)] = order else {
        return None;
    };
    let col = c.org.def(obj).modstamp_col()?;
    let table = &c.org.tables[obj];
    if !path.steps.is_empty()
        || path.obj != obj
        || path.col != col
        || table.modstamps.len() != table.rows.len()
    {
        return None;
    }
    let mut wanted = vec![false; table.rows.len()];
    for row in rows {
        if let Some(slot) = wanted.get_mut(*row as usize) {
            *slot = true;
        }
    }
    let entries: Box<dyn Iterator<Item = &(i64, u32)>> = if *desc {
        Box::new(table.modstamps.iter().rev())
    } else {
        Box::new(table.modstamps.iter())
    };
    let mut picked: Vec<(i64, u32)> = Vec::new();
    for &(ms, row) in entries {
        if picked.len() >= keep && picked.last().is_some_and(|(last, _)| *last != ms) {
            break;
        }
        if wanted.get(row as usize).copied().unwrap_or(false) {
            picked.push((ms, row));
        }
    }
    picked.sort_by(|a, b| {
        let by_time = if *desc { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) };
        by_time.then(a.1.cmp(&b.1))
    });
    picked.truncate(keep);
    Some(picked.into_iter().map(|(_, row)| row).collect())
}

fn sort_rows(c: &Ctx, rows: &mut Vec<u32>, order: &[(Path, bool, bool)], keep: Option<usize>) {
    if order.is_empty() {
        return;
    }
    let mut keyed: Vec<(Vec<Val>, u32)> = rows
        .iter()
        .map(|r| (order.iter().map(|(p, _, _)| c.get(p, *r)).collect(), *r))
        .collect();
    let compare = |a: &(Vec<Val>, u32), b: &(Vec<Val>, u32)| {
        for (i, (_, desc, nulls_first)) in order.iter().enumerate() {
            let o = compare_keys(&a.0[i], &b.0[i], *desc, *nulls_first);
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.1.cmp(&b.1)
    };
    if let Some(keep) = keep
        && keep < keyed.len()
    {
        if keep == 0 {
            keyed.clear();
        } else {
            keyed.select_nth_unstable_by(keep - 1, compare);
            keyed.truncate(keep);
        }
    }
    keyed.sort_unstable_by(compare);
    rows.clear();
    rows.extend(keyed.into_iter().map(|(_, r)| r));
}

fn compare_keys(a: &Val, b: &Val, desc: bool, nulls_first: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (false, true) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        _ => {
            let o = cmp_vals(a, b);
            if desc { o.reverse() } else { o }
        }
    }
}

/// Runs a parsed query. `all_rows` is true for `/queryAll` (deleted rows included).
pub fn run(
    org: &Org,
    q: &Query,
    text: &str,
    all_rows: bool,
    now: i64,
) -> Result<Outcome, SoqlError> {
    let c = Ctx {
        org,
        text,
        now,
        all_rows,
    };
    let obj = org
        .obj(&q.from.object)
        .ok_or_else(|| SoqlError::invalid_type(text, q.from.position, &q.from.object))?;
    let alias = q.from.alias.as_deref();
    let is_agg = !q.group_by.is_empty()
        || q.select
            .iter()
            .any(|s| matches!(s, SelectItem::Aggregate { .. }));
    let count_all = q.select.iter().any(|s| matches!(s, SelectItem::CountAll));
    let filter = q
        .where_
        .as_ref()
        .map(|w| c.compile(obj, w, alias, None))
        .transpose()?;
    let root = if is_agg || count_all {
        Node {
            obj,
            items: Vec::new(),
        }
    } else {
        c.plan_select(obj, q)?
    };
    let mut rows: Vec<u32> = Vec::new();
    let table = &org.tables[obj];
    let indexed = filter
        .as_ref()
        .and_then(|f| candidates(&c, obj, f).or_else(|| modstamp_candidates(&c, obj, f)));
    match indexed {
        // an indexed predicate (Id, a unique/external-id column, a SystemModstamp range)
        // narrows the scan
        Some(cands) => {
            for row in cands {
                let Some(r) = table.rows.get(row as usize) else {
                    continue;
                };
                if (r.deleted_ms.is_none() || (all_rows && r.in_query_all(now)))
                    && filter.as_ref().is_none_or(|f| c.test(f, row))
                {
                    rows.push(row);
                }
            }
        }
        None => {
            for (i, r) in table.rows.iter().enumerate() {
                if r.deleted_ms.is_some() && !(all_rows && r.in_query_all(now)) {
                    continue;
                }
                let row = i as u32;
                if filter.as_ref().is_none_or(|f| c.test(f, row)) {
                    rows.push(row);
                }
            }
        }
    }
    if q.offset.is_some_and(|o| o > 2000) {
        return Err(SoqlError::malformed(
            text,
            None,
            "Maximum SOQL offset allowed is 2000",
        ));
    }
    if count_all {
        let n = rows.len().saturating_sub(q.offset.unwrap_or(0) as usize);
        return Ok(Outcome::Count(q.limit.map_or(n, |l| n.min(l as usize))));
    }
    if is_agg {
        return aggregate(&c, obj, q, rows).map(Outcome::Aggregate);
    }
    let order = c.plan_order(obj, q)?;
    let keep = q
        .limit
        .map(|l| (l as usize).saturating_add(q.offset.unwrap_or(0) as usize));
    match keep.and_then(|keep| modstamp_order(&c, obj, &order, &rows, keep)) {
        Some(sorted) => rows = sorted,
        None => sort_rows(&c, &mut rows, &order, keep),
    }
    let offset = q.offset.unwrap_or(0) as usize;
    if offset > 0 {
        rows.drain(..offset.min(rows.len()));
    }
    if let Some(l) = q.limit {
        rows.truncate(l as usize);
    }
    Ok(Outcome::Rows {
        obj,
        plan: Arc::new(Plan { root, all_rows }),
        rows,
    })
}

fn aggregate(c: &Ctx, obj: usize, q: &Query, rows: Vec<u32>) -> Result<Vec<Json>, SoqlError> {
    let alias = q.from.alias.as_deref();
    let group: Vec<Path> = q
        .group_by
        .iter()
        .map(|g| c.resolve(obj, g, alias))
        .collect::<Result<_, _>>()?;
    for (g, p) in q.group_by.iter().zip(&group) {
        let f = &c.org.def(p.obj).fields[p.col];
        if !f.groupable {
            return Err(SoqlError::malformed(
                c.text,
                g.position,
                format!("field '{}' can not be grouped in a query call", f.name),
            ));
        }
    }
    // Output columns: (key, source)
    enum Col {
        Group(usize),
        Agg(AggregateFunction, Path),
    }
    let mut cols: Vec<(String, Col)> = Vec::new();
    let mut expr = 0;
    for item in &q.select {
        match item {
            SelectItem::Field(fp) => {
                let p = c.resolve(obj, fp, alias)?;
                let gi = group
                    .iter()
                    .position(|g| {
                        g.col == p.col && g.obj == p.obj && g.steps.len() == p.steps.len()
                    })
                    .ok_or_else(|| {
                        SoqlError::malformed(
                            c.text,
                            fp.position,
                            format!(
                                "Field must be grouped or aggregated: {}",
                                fp.parts.join(".")
                            ),
                        )
                    })?;
                cols.push((org_name(c, &p), Col::Group(gi)));
            }
            SelectItem::Aggregate {
                function,
                field,
                alias: a,
            } => {
                let p = c.resolve(obj, field, alias)?;
                let key = match a {
                    Some(a) => a.clone(),
                    None => {
                        let k = format!("expr{expr}");
                        expr += 1;
                        k
                    }
                };
                cols.push((key, Col::Agg(*function, p)));
            }
            _ => {
                return Err(SoqlError::malformed(
                    c.text,
                    q.from.position,
                    "only fields and aggregate functions can be selected in an aggregate query",
                ));
            }
        }
    }
    // HAVING / ORDER BY operands become extra hidden aggregate slots.
    let mut operands: Vec<Operand> = Vec::new();
    if let Some(h) = &q.having {
        collect_operands(h, &mut operands);
    }
    for o in &q.order_by {
        operands.push(o.field.clone());
    }
    let op_paths: Vec<Path> = operands
        .iter()
        .map(|o| c.resolve(obj, o.field(), alias))
        .collect::<Result<_, _>>()?;
    let having = q
        .having
        .as_ref()
        .map(|h| c.compile(obj, h, alias, Some(&operands)))
        .transpose()?;
    let mut groups: Vec<(Vec<Val>, Vec<u32>)> = Vec::new();
    let mut index: HashMap<Vec<Option<String>>, usize> = HashMap::new();
    for r in rows {
        let vals: Vec<Val> = group.iter().map(|g| c.get(g, r)).collect();
        let k: Vec<Option<String>> = vals.iter().map(key_of).collect();
        match index.get(&k) {
            Some(i) => groups[*i].1.push(r),
            None => {
                index.insert(k, groups.len());
                groups.push((vals, vec![r]));
            }
        }
    }
    if groups.is_empty() && group.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    let agg = |f: AggregateFunction, p: &Path, rs: &[u32]| -> Val {
        let vals: Vec<(u32, Val)> = rs
            .iter()
            .map(|r| (*r, c.get(p, *r)))
            .filter(|(_, v)| !v.is_null())
            .collect();
        let money = p.kind == Kind::Currency;
        let nums = || -> Vec<f64> {
            vals.iter()
                .filter_map(|(r, v)| {
                    v.as_f64().map(|n| {
                        if money {
                            let (o, rr) = c.walk(p, *r).unwrap_or((p.obj, *r));
                            c.to_corporate(o, rr, n)
                        } else {
                            n
                        }
                    })
                })
                .collect()
        };
        match f {
            AggregateFunction::Count => Val::Int(vals.len() as i64),
            AggregateFunction::CountDistinct => {
                let set: std::collections::HashSet<String> =
                    vals.iter().filter_map(|(_, v)| key_of(v)).collect();
                Val::Int(set.len() as i64)
            }
            AggregateFunction::Sum => {
                let n = nums();
                if n.is_empty() {
                    Val::Null
                } else {
                    Val::Num(n.iter().sum())
                }
            }
            AggregateFunction::Avg => {
                let n = nums();
                if n.is_empty() {
                    Val::Null
                } else {
                    Val::Num(n.iter().sum::<f64>() / n.len() as f64)
                }
            }
            AggregateFunction::Min | AggregateFunction::Max if money => {
                let n = nums();
                let pick = if f == AggregateFunction::Min {
                    f64::min
                } else {
                    f64::max
                };
                n.into_iter().reduce(pick).map_or(Val::Null, Val::Num)
            }
            AggregateFunction::Min | AggregateFunction::Max => {
                let best = vals.iter().map(|(_, v)| v.clone()).reduce(|a, b| {
                    let o = cmp_vals(&a, &b);
                    if (f == AggregateFunction::Min) == (o == std::cmp::Ordering::Greater) {
                        b
                    } else {
                        a
                    }
                });
                best.unwrap_or(Val::Null)
            }
        }
    };
    let operand_val = |i: usize, g: &(Vec<Val>, Vec<u32>)| -> Val {
        match &operands[i] {
            Operand::Aggregate { function, .. } => agg(*function, &op_paths[i], &g.1),
            Operand::Field(_) => {
                let p = &op_paths[i];
                group
                    .iter()
                    .position(|gp| gp.col == p.col && gp.obj == p.obj)
                    .map_or(Val::Null, |gi| g.0[gi].clone())
            }
        }
    };
    type Group = (Vec<Val>, Vec<u32>);
    let mut kept: Vec<(Vec<Val>, &Group)> = Vec::new();
    for g in &groups {
        let ov: Vec<Val> = (0..operands.len()).map(|i| operand_val(i, g)).collect();
        if let Some(h) = &having
            && !having_test(c, h, &ov, &op_paths)
        {
            continue;
        }
        kept.push((ov, g));
    }
    let first_order = operands.len() - q.order_by.len();
    if !q.order_by.is_empty() {
        kept.sort_by(|a, b| {
            for (i, o) in q.order_by.iter().enumerate() {
                let r = compare_keys(
                    &a.0[first_order + i],
                    &b.0[first_order + i],
                    o.direction == OrderDirection::Desc,
                    o.nulls_first(),
                );
                if r != std::cmp::Ordering::Equal {
                    return r;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let offset = q.offset.unwrap_or(0) as usize;
    let mut out = Vec::new();
    for (_, g) in kept
        .into_iter()
        .skip(offset)
        .take(q.limit.map_or(usize::MAX, |l| l as usize))
    {
        let mut m = Map::new();
        m.insert("attributes".into(), json!({"type": "AggregateResult"}));
        for (key, col) in &cols {
            let v = match col {
                Col::Group(i) => render_val(&g.0[*i], group[*i].kind),
                Col::Agg(f, p) => {
                    let v = agg(*f, p, &g.1);
                    match (f, &v) {
                        (AggregateFunction::Sum | AggregateFunction::Avg, Val::Num(n))
                            if p.kind == Kind::Currency =>
                        {
                            num_json(round_money(*n))
                        }
                        (AggregateFunction::Sum | AggregateFunction::Avg, Val::Num(n)) => {
                            num_json(*n)
                        }
                        (AggregateFunction::Min | AggregateFunction::Max, Val::Num(n))
                            if p.kind == Kind::Currency =>
                        {
                            num_json(round_money(*n))
                        }
                        _ => render_val(&v, p.kind),
                    }
                }
            };
            m.insert(key.clone(), v);
        }
        out.push(Json::Object(m));
    }
    Ok(out)
}

fn org_name(c: &Ctx, p: &Path) -> String {
    c.org.def(p.obj).fields[p.col].name.clone()
}

fn collect_operands(h: &Condition, out: &mut Vec<Operand>) {
    match h {
        Condition::And(cs) | Condition::Or(cs) => cs.iter().for_each(|c| collect_operands(c, out)),
        Condition::Not(c) => collect_operands(c, out),
        Condition::Comparison { field, .. } | Condition::In { field, .. } => {
            if !out.contains(field) {
                out.push(field.clone());
            }
        }
        Condition::Includes { .. } | Condition::Excludes { .. } => {}
    }
}

fn having_test(c: &Ctx, h: &Cond, vals: &[Val], paths: &[Path]) -> bool {
    match h {
        Cond::And(cs) => cs.iter().all(|x| having_test(c, x, vals, paths)),
        Cond::Or(cs) => cs.iter().any(|x| having_test(c, x, vals, paths)),
        Cond::Not(x) => !having_test(c, x, vals, paths),
        Cond::Having(i, op, lit) => match (vals.get(*i), paths.get(*i)) {
            (Some(v), Some(p)) => c.cmp_lit(
                &Path {
                    kind: if matches!(v, Val::Int(_) | Val::Num(_)) {
                        Kind::Double
                    } else {
                        p.kind
                    },
                    ..p.clone()
                },
                0,
                v,
                *op,
                lit,
            ),
            _ => false,
        },
        Cond::HavingIn(i, neg, lits) => match (vals.get(*i), paths.get(*i)) {
            (Some(v), Some(p)) => {
                lits.iter().any(|l| c.cmp_lit(p, 0, v, ComparisonOp::Eq, l)) != *neg
            }
            _ => false,
        },
        _ => true,
    }
}

/// Wire value of a cell given the field kind (ids become 18 chars).
pub fn render_val(v: &Val, kind: Kind) -> Json {
    match (kind, v) {
        (Kind::Id | Kind::Reference, Val::Str(s)) if s.len() == 15 => Json::String(ids::to18(s)),
        (Kind::Double | Kind::Currency, Val::Int(i)) => num_json(*i as f64),
        (Kind::Int, Val::Num(n)) => Json::from(*n as i64),
        _ => to_json(v),
    }
}

/// `attributes` of a record.
pub fn attributes(type_name: &str, id: &str, v: &str) -> Json {
    json!({"type": type_name, "url": format!("/services/data/v{v}/sobjects/{type_name}/{id}")})
}

/// Compound address value built from its components, or null when they are all empty.
pub fn compound(org: &Org, obj: usize, row: u32, col: usize, now: i64) -> Json {
    let def = org.def(obj);
    let name = &def.fields[col].name;
    let mut m = Map::new();
    let mut any = false;
    let keys = [
        "city",
        "country",
        "geocodeAccuracy",
        "latitude",
        "longitude",
        "postalCode",
        "state",
        "street",
    ];
    for k in keys {
        m.insert(k.into(), Json::Null);
    }
    for (i, f) in def.fields.iter().enumerate() {
        if f.compound_field_name.as_deref() != Some(name.as_str()) || i == col {
            continue;
        }
        let suffix = f.name.trim_start_matches(
            name.trim_end_matches("Address")
                .trim_end_matches("Location"),
        );
        let mut key = suffix.to_string();
        if let Some(first) = key.get(..1) {
            key = format!("{}{}", first.to_lowercase(), &key[1..]);
        }
        if !m.contains_key(&key) && !matches!(key.as_str(), "stateCode" | "countryCode") {
            continue;
        }
        let v = org.value(obj, row, i, now);
        if !v.is_null() {
            any = true;
        }
        m.insert(key, render_val(&v, def.kinds[i]));
    }
    if any { Json::Object(m) } else { Json::Null }
}

/// Renders one record of a query result.
pub fn render(org: &Org, plan: &Plan, obj: usize, row: u32, now: i64, v: &str) -> Json {
    let c = Ctx {
        org,
        text: "",
        now,
        all_rows: plan.all_rows,
    };
    render_node(&c, &plan.root, obj, row, v)
}

fn render_node(c: &Ctx, node: &Node, obj: usize, row: u32, v: &str) -> Json {
    let def = c.org.def(obj);
    let id = c
        .org
        .row(obj, row)
        .id_opt()
        .map(ids::to18)
        .unwrap_or_default();
    let mut m = Map::new();
    m.insert("attributes".into(), attributes(&def.name, &id, v));
    for item in &node.items {
        match item {
            Item::Field {
                key,
                col,
                name,
                mode,
            } => {
                let col = if obj == node.obj {
                    Some(*col)
                } else {
                    def.field(name)
                };
                let Some(col) = col else {
                    m.insert(key.clone(), Json::Null);
                    continue;
                };
                let kind = def.kinds[col];
                let val = if matches!(kind, Kind::Address | Kind::Location) {
                    compound(c.org, obj, row, col, c.now)
                } else {
                    let raw = c.org.value(obj, row, col, c.now);
                    match mode {
                        Mode::Plain => render_val(&raw, kind),
                        Mode::Convert => match raw.as_f64() {
                            Some(n) if kind == Kind::Currency => {
                                num_json(round_money(c.to_corporate(obj, row, n)))
                            }
                            _ => render_val(&raw, kind),
                        },
                        Mode::Label => match raw.as_str() {
                            Some(s) => Json::String(
                                def.fields[col]
                                    .picklist_values
                                    .iter()
                                    .find(|p| p.value == s)
                                    .map_or_else(|| s.to_string(), |p| p.label.clone()),
                            ),
                            None => Json::Null,
                        },
                        Mode::Format => format_val(c, obj, row, &raw, kind),
                    }
                };
                m.insert(key.clone(), val);
            }
            Item::Parent {
                key,
                col,
                node: sub,
            } => {
                let col = if obj == node.obj {
                    Some(*col)
                } else {
                    def.rel(key)
                };
                let parent = col.and_then(|col| c.org.parent(obj, row, col));
                let val = match parent {
                    Some((po, pr)) if c.all_rows || c.org.row(po, pr).deleted_ms.is_none() => {
                        render_node(c, sub, po, pr, v)
                    }
                    _ => Json::Null,
                };
                m.insert(key.clone(), val);
            }
            Item::Child(cp) => {
                let index = cp.index.get_or_init(|| {
                    let mut ix: HashMap<Box<str>, Vec<u32>> = HashMap::new();
                    for (i, r) in c.org.tables[cp.child_obj].rows.iter().enumerate() {
                        if r.deleted_ms.is_some() && !(c.all_rows && r.in_query_all(c.now)) {
                            continue;
                        }
                        if let Some(p) = r.get_str(cp.fk_col) {
                            ix.entry(p.into()).or_default().push(i as u32);
                        }
                    }
                    ix
                });
                let pid = c.org.row(obj, row).id_opt().unwrap_or("");
                let mut kids: Vec<u32> = index.get(pid).cloned().unwrap_or_default();
                if let Some(f) = &cp.filter {
                    kids.retain(|k| c.test(f, *k));
                }
                sort_rows(c, &mut kids, &cp.order, None);
                if let Some(l) = cp.limit {
                    kids.truncate(l as usize);
                }
                let val = if kids.is_empty() {
                    Json::Null
                } else {
                    let recs: Vec<Json> = kids
                        .iter()
                        .map(|k| render_node(c, &cp.node, cp.child_obj, *k, v))
                        .collect();
                    json!({"totalSize": recs.len(), "done": true, "records": recs})
                };
                m.insert(cp.key.clone(), val);
            }
        }
    }
    Json::Object(m)
}

fn format_val(c: &Ctx, obj: usize, row: u32, v: &Val, kind: Kind) -> Json {
    match (kind, v) {
        (_, Val::Null) => Json::Null,
        (Kind::Currency, Val::Num(n)) => {
            let iso = c
                .currency_of(obj, row)
                .unwrap_or_else(|| c.org.corporate_currency());
            Json::String(format!("{iso} {}", group_thousands(*n)))
        }
        (Kind::Double, Val::Num(n)) => Json::String(group_thousands(*n)),
        (Kind::DateTime, Val::DateTime(ms)) => Json::String(format_datetime(*ms)),
        _ => to_json(v),
    }
}

fn group_thousands(n: f64) -> String {
    let s = format!("{:.2}", n.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{}{out}.{frac}", if n < 0.0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_grouping() {
        assert_eq!(group_thousands(1_234_567.891), "1,234,567.89");
        assert_eq!(group_thousands(-12.5), "-12.50");
        assert_eq!(group_thousands(0.0), "0.00");
    }

    #[test]
    fn includes_semantics() {
        let v = Val::str("A;b;C");
        assert!(includes(&v, &split_sets(&["a;c".into()])));
        assert!(includes(&v, &split_sets(&["x".into(), "b".into()])));
        assert!(!includes(&v, &split_sets(&["a;x".into()])));
        assert!(!includes(&Val::Null, &split_sets(&["a".into()])));
    }

    #[test]
    fn null_ordering_defaults() {
        use std::cmp::Ordering;
        assert_eq!(
            compare_keys(&Val::Null, &Val::Int(1), false, true),
            Ordering::Less
        );
        assert_eq!(
            compare_keys(&Val::Null, &Val::Int(1), true, false),
            Ordering::Greater
        );
        assert_eq!(
            compare_keys(&Val::Int(2), &Val::Int(1), true, false),
            Ordering::Less
        );
        assert_eq!(
            compare_keys(&Val::str("b"), &Val::str("A"), false, true),
            Ordering::Greater
        );
    }

    #[test]
    fn ids_render_as_18_chars() {
        assert_eq!(
            render_val(&Val::str("0015500001QdQWa"), Kind::Id),
            Json::String("0015500001QdQWaAAN".into())
        );
        assert_eq!(render_val(&Val::Int(3), Kind::Double), json!(3.0));
        assert_eq!(
            key_of(&Val::str("0015500001QdQWaAAN")).as_deref(),
            Some("0015500001QdQWa")
        );
    }

    /// Record ids of a query's rows, in the order returned.
    fn answer(org: &Org, soql: &str, all_rows: bool) -> Vec<String> {
        let ast = ferry_soql::parse(soql).expect("soql");
        match run(org, &ast, soql, all_rows, 1_700_010_000_000).expect("query") {
            Outcome::Rows { obj, rows, .. } => rows
                .iter()
                .map(|r| org.row(obj, *r).id_opt().unwrap_or_default().to_string())
                .collect(),
            Outcome::Count(n) => vec![n.to_string()],
            Outcome::Aggregate(_) => Vec::new(),
        }
    }

    /// Queries answered through the SystemModstamp index give what a scan gives, after
    /// inserts, updates, deletes and rolled-back writes (an `OR` with a never-true branch
    /// forces the scan).
    #[test]
    fn modstamp_index_answers_like_a_scan() {
        use crate::schema::Schema;
        use crate::store::WriteCtx;
        let mut org = Org::new(Schema::standard(), 'A');
        let account = org.obj("Account").expect("Account");
        let base = 1_700_000_000_000i64;
        let mut ids = Vec::new();
        for i in 0..300i64 {
            let ctx = WriteCtx {
                now: base + (i * 7919) % 1000 * 1000,
            };
            let mut body = Map::new();
            body.insert("Name".into(), json!(format!("A{i}")));
            ids.push(org.insert(account, &body, ctx).expect("insert"));
        }
        for (i, id) in ids.iter().enumerate().step_by(3) {
            let row = org.find(account, id).expect("row");
            let ctx = WriteCtx {
                now: base + 2_000_000 + (i as i64 % 50) * 1000,
            };
            if i % 2 == 0 {
                let mut body = Map::new();
                body.insert("Name".into(), json!(format!("B{i}")));
                org.update(account, row, &body, ctx).expect("update");
            } else {
                org.delete(account, row, ctx).expect("delete");
            }
        }
        // Rolled back: an insert and an update leave the index as it was.
        org.begin();
        let mut body = Map::new();
        body.insert("Name".into(), json!("gone"));
        let ctx = WriteCtx {
            now: base + 9_000_000,
        };
        let row = org.find(account, &ids[1]).expect("row");
        org.update(account, row, &body, ctx).expect("update");
        org.insert(account, &body, ctx).expect("insert");
        org.rollback();
        let at = |ms: i64| crate::bulk::format_csv_datetime(base + ms);
        let conditions = [
            format!("SystemModstamp >= {}", at(500_000)),
            format!("SystemModstamp > {}", at(500_000)),
            format!("SystemModstamp < {}", at(300_000)),
            format!("SystemModstamp <= {}", at(300_000)),
            format!("SystemModstamp = {}", at(7_000)),
            format!(
                "SystemModstamp >= {} AND SystemModstamp < {}",
                at(100_000),
                at(2_020_000)
            ),
            format!(
                "SystemModstamp >= {} AND SystemModstamp < {} AND Name LIKE 'B%'",
                at(0),
                at(9_900_000)
            ),
            format!(
                "SystemModstamp > {} AND SystemModstamp < {}",
                at(800_000),
                at(100_000)
            ),
            format!("SystemModstamp >= {}", at(9_000_000)),
        ];
        let mut indexed_some = false;
        for condition in &conditions {
            for all_rows in [false, true] {
                for shape in [
                    "SELECT Id FROM Account WHERE {}",
                    "SELECT COUNT() FROM Account WHERE {}",
                    "SELECT Id FROM Account WHERE {} ORDER BY SystemModstamp DESC LIMIT 3",
                    "SELECT Id FROM Account WHERE {} ORDER BY Name LIMIT 5",
                ] {
                    let indexed = shape.replace("{}", condition);
                    let scanned = shape.replace("{}", &format!("({condition}) OR Name = 'never'"));
                    let got = answer(&org, &indexed, all_rows);
                    indexed_some |= !got.is_empty();
                    assert_eq!(got, answer(&org, &scanned, all_rows), "{indexed}");
                }
            }
        }
        assert!(indexed_some);
        // The index holds every row once, at its current SystemModstamp.
        let col = org.def(account).modstamp_col().expect("column");
        let table = &org.tables[account];
        assert_eq!(table.modstamps.len(), table.rows.len());
        for (ms, row) in &table.modstamps {
            assert_eq!(table.rows[*row as usize].get(col), Val::DateTime(*ms));
        }
        // Sorting with a LIMIT keeps the order of a full sort.
        let limited = answer(
            &org,
            "SELECT Id FROM Account ORDER BY Name DESC LIMIT 10",
            true,
        );
        let full = answer(&org, "SELECT Id FROM Account ORDER BY Name DESC", true);
        assert_eq!(limited, full[..10]);
        let top = answer(
            &org,
            "SELECT Id FROM Account ORDER BY SystemModstamp DESC LIMIT 1",
            true,
        );
        assert_eq!(top, full_sorted_top(&org, account));
    }

    /// The id of the row with the newest SystemModstamp (first in row order on ties).
    fn full_sorted_top(org: &Org, account: usize) -> Vec<String> {
        let col = org.def(account).modstamp_col().expect("column");
        let table = &org.tables[account];
        let mut best: Option<(i64, usize)> = None;
        for (i, row) in table.rows.iter().enumerate() {
            if let Val::DateTime(ms) = row.get(col)
                && best.is_none_or(|(b, _)| ms > b)
            {
                best = Some((ms, i));
            }
        }
        best.map(|(_, i)| vec![table.rows[i].id_opt().unwrap_or_default().to_string()])
            .unwrap_or_default()
    }
}
