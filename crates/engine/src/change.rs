//! Stage 3 — change detection against the ledger.
//!
//! A row's hash is SHA-256 over the canonical JSON of its mapped values (keys sorted, the
//! target object and mode included), so any change of a value, of the mapping or of the
//! target makes the row differ. A row is sent when it is new, differs from what was last
//! confirmed, failed last time, or the run forces it (`resync`, `sync_all_records`,
//! `identities`). `skip_initial_backfill` turns the first run into a baseline: hashes are
//! recorded, nothing is written.

use ferry_store::LedgerEntry;
use serde::{Serialize, Serializer};
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

/// Stable hashes of rows' mapped values for one target. The rows of a window share their
/// keys in the same (mapping) order, so the sorted order of the keys is worked out once and
/// reused while a row's keys are the same, and one buffer takes each row's canonical JSON.
pub struct RowHasher<'a> {
    object: &'a str,
    mode: &'a str,
    /// The keys the order was worked out for, in the rows' order.
    keys: Vec<String>,
    /// Positions of `keys` in sorted order.
    order: Vec<usize>,
    json: Vec<u8>,
}

impl<'a> RowHasher<'a> {
    /// A hasher for rows written to `object` in `mode`.
    pub fn new(object: &'a str, mode: &'a str) -> Self {
        RowHasher {
            object,
            mode,
            keys: Vec::new(),
            order: Vec::new(),
            json: Vec::new(),
        }
    }

    /// The hash of one row's values.
    pub fn hash(&mut self, values: &Map<String, Value>) -> String {
        let entries: Vec<(&String, &Value)> = values.iter().collect();
        self.hash_entries(&entries)
    }

    /// The hash of one row's values given as (key, value) pairs with distinct keys, in
    /// any order: equal to [`RowHasher::hash`] of the map holding them.
    pub fn hash_entries(&mut self, entries: &[(&String, &Value)]) -> String {
        let same_keys = entries.len() == self.keys.len()
            && entries
                .iter()
                .zip(&self.keys)
                .all(|((key, _), known)| *key == known);
        if !same_keys {
            self.keys = entries.iter().map(|(key, _)| (*key).clone()).collect();
            self.order = (0..entries.len()).collect();
            // Keys are unique: an unstable sort orders them exactly as a BTreeMap would.
            let keys = &self.keys;
            self.order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        }
        self.json.clear();
        // The canonical JSON (`{"key":value,...}`, keys sorted); writing into a Vec cannot
        // fail.
        let _ = serde_json::to_writer(
            &mut self.json,
            &SortedMap {
                entries,
                order: &self.order,
            },
        );
        let mut hasher = Sha256::new();
        hasher.update(self.object.as_bytes());
        hasher.update([0]);
        hasher.update(self.mode.as_bytes());
        hasher.update([0]);
        hasher.update(&self.json);
        hex_prefix(&hasher.finalize())
    }
}

/// Key/value pairs serialized as a JSON object in `order`.
struct SortedMap<'a> {
    entries: &'a [(&'a String, &'a Value)],
    order: &'a [usize],
}

impl Serialize for SortedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.order
                .iter()
                .filter_map(|position| self.entries.get(*position).copied()),
        )
    }
}

/// The first 16 bytes of a digest as lowercase hex (32 characters).
fn hex_prefix(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
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

    /// One row's hash.
    fn hash_values(object: &str, mode: &str, values: &Map<String, Value>) -> String {
        RowHasher::new(object, mode).hash(values)
    }

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

    /// The hash as it was first defined (a BTreeMap serialized, every byte formatted):
    /// ledgers written before must keep matching.
    fn reference_hash(object: &str, mode: &str, values: &Map<String, Value>) -> String {
        let sorted: std::collections::BTreeMap<&String, &Value> = values.iter().collect();
        let mut hasher = Sha256::new();
        hasher.update(object.as_bytes());
        hasher.update([0]);
        hasher.update(mode.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(&sorted).unwrap());
        let digest = hasher.finalize();
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hash_matches_its_first_definition() {
        for row in [
            json!({}),
            json!({"LastName": "O'Brien", "Email": "a@x.com", "Birthdate": "1950-01-01"}),
            json!({"b": null, "a": 1.5, "Z": true, "é": "ü\"\n", "Account.Ext__c": "A-1", "n": -3}),
            json!({"Description": "[\"x\",{\"y\":2}]", "aa": "", "a": 12345678901234567890u64}),
        ] {
            let values = values(row);
            assert_eq!(
                hash_values("Contact", "updateOrCreate", &values),
                reference_hash("Contact", "updateOrCreate", &values)
            );
        }
    }

    #[test]
    fn one_hasher_for_rows_with_changing_keys() {
        let rows = [
            json!({"LastName": "A", "Email": "a@x.com", "City": null}),
            json!({"LastName": "B", "Email": "b@x.com", "City": "Rome"}),
            // Other keys, then fewer, then the same keys in another order.
            json!({"Zip": "1", "Email": "c@x.com"}),
            json!({"Email": "d@x.com"}),
            json!({"Email": "e@x.com", "LastName": "E", "City": "Oslo"}),
            json!({"LastName": "F", "Email": "f@x.com", "City": "Lima"}),
        ];
        let mut hasher = RowHasher::new("Contact", "update");
        for row in rows {
            let values = values(row);
            assert_eq!(
                hasher.hash(&values),
                reference_hash("Contact", "update", &values)
            );
        }
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
