//! The record-lock contention model of the Bulk APIs (deterministic).
//!
//! Salesforce locks the parent records (lookup and master-detail targets such as a
//! Contact's `AccountId`) of every row it writes, and the record itself on update and
//! delete. Batches processed at the same time that touch the same parent collide, and the
//! loser's rows fail with `UNABLE_TO_LOCK_ROW`. The emulator reproduces this as follows.
//!
//! **Windows.** A job's batches are processed in *windows* of concurrently running batches:
//! - `Serial` Bulk 1.0 jobs: every window holds exactly one batch, so they never contend;
//! - `Parallel` Bulk 1.0 jobs: the worker waits until `gatherMs` have passed since the
//!   oldest queued batch was added (or the job is closed), then takes up to `parallelism`
//!   queued batches, in creation order, as one window;
//! - Bulk 2.0 ingest jobs (always parallel): the uploaded rows are cut into internal batches
//!   of `batchSize` (10,000) rows in upload order, and consecutive groups of `parallelism`
//!   batches form the windows.
//!
//! **Locks.** Inside a window the batches are applied in order (position 0, 1, ...). A row
//! needs the *keys*: the ids in its lookup/master-detail columns (an id, or a relationship
//! column such as `Account.Ext__c` resolved to the parent id) except references to User,
//! Group, RecordType, Profile, UserRole and Organization, which Salesforce does not lock;
//! plus, for update/delete/hardDelete, the row's own `Id`. A successful row adds its keys
//! to its batch's lock set; locks are held until the window ends.
//!
//! **Decision.** A row of the batch at position `p` counts the *holders*: the batches at
//! positions `< p` of the same window whose lock set contains any of the row's keys. If
//! holders exceed `retryBudget` (default 0; Salesforce's internal retries waiting out that
//! many holders), the row fails with `UNABLE_TO_LOCK_ROW` ("unable to obtain exclusive
//! access to this record or 1 records: <18-char id of the first contended key>") and is not
//! written. Otherwise it is written normally. `lockContention: false` turns the model off.
//!
//! Consequences: data sorted by the parent field, so that one parent's children share a
//! batch, sees no lock errors (except for a parent whose children straddle a batch
//! boundary inside a window); unsorted data spread over parallel batches does; Serial jobs
//! never do. The random `lockRate` fault of the admin API applies on top, row by row.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::bulk::{Op, RowOutcome, apply, lock_error};
use crate::ids;
use crate::schema::Kind;
use crate::store::{Org, WriteCtx};
use crate::value::Val;

/// Lock-model settings (part of `/__emulator/bulk`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockConfig {
    /// Model parent-record lock contention at all.
    pub lock_contention: bool,
    /// Batches per window of a parallel job.
    pub parallelism: usize,
    /// Holders a row may wait out before it fails.
    pub retry_budget: usize,
    /// Bulk 1.0 parallel jobs: how long queued batches are gathered into one window (ms).
    pub gather_ms: u64,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            lock_contention: true,
            parallelism: 4,
            retry_budget: 0,
            gather_ms: 100,
        }
    }
}

/// Targets whose records are never locked by child writes.
const UNLOCKED_TARGETS: [&str; 6] = [
    "User",
    "Group",
    "RecordType",
    "Profile",
    "UserRole",
    "Organization",
];

/// Lock sets of the batches of one window.
#[derive(Debug, Default)]
pub struct Window {
    held: Vec<HashSet<String>>,
}

impl Window {
    /// A new, empty window.
    pub fn new() -> Window {
        Window::default()
    }

    /// Registers the next batch; returns its position.
    pub fn add_batch(&mut self) -> usize {
        self.held.push(HashSet::new());
        self.held.len() - 1
    }

    /// The first key held by more than `budget` earlier batches, if any.
    pub fn conflict<'a>(&self, pos: usize, keys: &'a [String], budget: usize) -> Option<&'a str> {
        if keys.is_empty() || pos == 0 {
            return None;
        }
        let earlier = &self.held[..pos.min(self.held.len())];
        let holders = earlier
            .iter()
            .filter(|h| keys.iter().any(|k| h.contains(k)))
            .count();
        if holders <= budget {
            return None;
        }
        keys.iter()
            .find(|k| earlier.iter().any(|h| h.contains(*k)))
            .map(String::as_str)
    }

    /// Records keys as held by the batch at `pos`.
    pub fn hold(&mut self, pos: usize, keys: Vec<String>) {
        if let Some(h) = self.held.get_mut(pos) {
            h.extend(keys);
        }
    }
}

/// The 15-char ids a row locks (see the module docs).
pub fn row_keys(org: &mut Org, obj: usize, op: Op, rec: &Map<String, Json>) -> Vec<String> {
    let mut keys = Vec::new();
    for (k, v) in rec {
        let def = org.def(obj);
        if let Some(col) = def.field(k) {
            if def.kinds[col] == Kind::Id {
                if matches!(op, Op::Update | Op::Delete | Op::HardDelete)
                    && let Some(id) = v.as_str().and_then(ids::to15)
                {
                    keys.push(id);
                }
                continue;
            }
            if def.kinds[col] != Kind::Reference || !lockable(&def.fields[col].reference_to) {
                continue;
            }
            if let Some(id) = v.as_str().and_then(ids::to15) {
                keys.push(id);
            }
        } else if let Some(col) = def.rel(k) {
            let f = &def.fields[col];
            if !lockable(&f.reference_to) {
                continue;
            }
            let Json::Object(m) = v else { continue };
            let declared = m
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Json::as_str)
                .map(str::to_string);
            let Some(target) = declared.or_else(|| f.reference_to.first().cloned()) else {
                continue;
            };
            let Some(tobj) = org.obj(&target) else {
                continue;
            };
            let Some((kf, kv)) = m.iter().find(|(kk, _)| kk.as_str() != "attributes") else {
                continue;
            };
            let Some(kcol) = org.def(tobj).field(kf) else {
                continue;
            };
            let key = match kv {
                Json::String(s) if kcol == 0 => ids::to15(s).unwrap_or_else(|| s.clone()),
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                _ => continue,
            };
            let hits = org.lookup(tobj, kcol, &Val::Str(key.into()));
            if let [r] = hits.as_slice()
                && let Some(id) = org.row(tobj, *r).id_opt()
            {
                keys.push(id.to_string());
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

fn lockable(targets: &[String]) -> bool {
    !targets.is_empty()
        && targets
            .iter()
            .any(|t| !UNLOCKED_TARGETS.iter().any(|u| u.eq_ignore_ascii_case(t)))
}

/// Applies one batch at position `pos` of a window, row by row, with the lock model.
/// `fault` is the admin `lockRate` dice (one roll per row).
#[allow(clippy::too_many_arguments)]
pub fn apply_batch(
    org: &mut Org,
    window: &mut Window,
    pos: usize,
    cfg: &LockConfig,
    fault: &dyn Fn() -> bool,
    obj: usize,
    op: Op,
    ext_col: Option<usize>,
    recs: Vec<Map<String, Json>>,
    ctx: WriteCtx,
) -> Vec<RowOutcome> {
    let mut out = Vec::with_capacity(recs.len());
    for rec in recs {
        let uploaded_id = if matches!(op, Op::Update | Op::Delete | Op::HardDelete) {
            rec.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Id"))
                .and_then(|(_, v)| v.as_str())
                .and_then(ids::to15)
                .map(|i| ids::to18(&i))
        } else {
            None
        };
        let keys = if cfg.lock_contention {
            row_keys(org, obj, op, &rec)
        } else {
            Vec::new()
        };
        if let Some(k) = window.conflict(pos, &keys, cfg.retry_budget) {
            out.push(RowOutcome::fail(uploaded_id, lock_error(&ids::to18(k))));
            continue;
        }
        if fault() {
            let shown = keys.first().map(|k| ids::to18(k)).unwrap_or_default();
            out.push(RowOutcome::fail(uploaded_id, lock_error(&shown)));
            continue;
        }
        let res = apply(org, obj, op, ext_col, rec, ctx);
        if res.error.is_none() {
            window.hold(pos, keys);
        }
        out.push(res);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_batches_lose_and_budget_absorbs() {
        let mut w = Window::new();
        let a = w.add_batch();
        let b = w.add_batch();
        let c = w.add_batch();
        w.hold(a, vec!["001000000000001".into()]);
        w.hold(b, vec!["001000000000001".into()]);
        let keys = vec!["001000000000001".to_string()];
        assert_eq!(w.conflict(a, &keys, 0), None);
        assert_eq!(w.conflict(b, &keys, 0), Some("001000000000001"));
        assert_eq!(w.conflict(c, &keys, 1), Some("001000000000001"));
        assert_eq!(w.conflict(c, &keys, 2), None);
        let other = vec!["001000000000002".to_string()];
        assert_eq!(w.conflict(c, &other, 0), None);
    }
}
