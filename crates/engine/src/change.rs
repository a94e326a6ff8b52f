//! Stage 3 — change detection against the ledger.
//!
//! A row's hash is SHA-256 over the canonical JSON of its mapped values (keys sorted, the
//! target object and mode included), so any change of a value, of the mapping or of the
//! target makes the row differ. A row is sent when it is new, differs from what was last
//! confirmed, failed last time, or the run forces it (`resync`, `sync_all_records`,
//! `identities`). `skip_initial_backfill` turns the first run into a baseline: hashes are
//! recorded, nothing is written.

use std::collections::BTreeMap;

use ferry_store::LedgerEntry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Ledger outcomes that mean "the target holds the values of `hash`".
pub const CONFIRMED_OUTCOMES: [&str; 9] = [
    "inserted",
    "updated",
    "upserted",
    "deleted",
    "baseline",
    "unchanged",
    "exists",
    "skipped",
    "omitted",
];

/// Stable hash of a row's mapped values for a target.
pub fn hash_values(object: &str, mode: &str, values: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = values.iter().collect();
    let mut hasher = Sha256::new();
    hasher.update(object.as_bytes());
    hasher.update([0]);
    hasher.update(mode.as_bytes());
    hasher.update([0]);
    // Serializing a BTreeMap of JSON values cannot fail.
    hasher.update(serde_json::to_vec(&sorted).unwrap_or_default());
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What to do with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Send it to the target.
    Send,
    /// Identical to what the target confirmed: skip.
    Unchanged,
    /// Record the hash as the baseline without writing.
    Baseline,
}

/// Decides whether a row must be sent.
pub fn detect(hash: &str, entry: Option<&LedgerEntry>, force: bool, baseline: bool) -> Change {
    if baseline {
        return Change::Baseline;
    }
    if force {
        return Change::Send;
    }
    match entry {
        Some(entry)
            if entry.hash.as_deref() == Some(hash)
                && CONFIRMED_OUTCOMES.contains(&entry.outcome.as_str()) =>
        {
            Change::Unchanged
        }
        _ => Change::Send,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = hash_values("Contact", "create", &values(json!({"A": 1, "B": "x"})));
        let b = hash_values("Contact", "create", &values(json!({"B": "x", "A": 1})));
        assert_eq!(a, b, "key order does not matter");
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            hash_values("Contact", "create", &values(json!({"A": 2, "B": "x"})))
        );
        assert_ne!(
            a,
            hash_values("Lead", "create", &values(json!({"A": 1, "B": "x"})))
        );
        assert_ne!(
            a,
            hash_values(
                "Contact",
                "create",
                &values(json!({"A": 1, "B": "x", "C": null}))
            )
        );
    }

    #[test]
    fn detection() {
        let entry = |hash: &str, outcome: &str| {
            LedgerEntry::new("k", Some(hash.to_string()), None, outcome, None)
        };
        assert_eq!(detect("h", None, false, false), Change::Send);
        assert_eq!(
            detect("h", Some(&entry("h", "updated")), false, false),
            Change::Unchanged
        );
        assert_eq!(
            detect("h", Some(&entry("old", "updated")), false, false),
            Change::Send
        );
        assert_eq!(
            detect("h", Some(&entry("h", "failed")), false, false),
            Change::Send,
            "failed rows are retried"
        );
        assert_eq!(
            detect("h", Some(&entry("h", "pending_create")), false, false),
            Change::Send
        );
        assert_eq!(
            detect("h", Some(&entry("h", "updated")), true, false),
            Change::Send
        );
        assert_eq!(detect("h", None, false, true), Change::Baseline);
    }
}
