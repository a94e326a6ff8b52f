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

/// Stable hash of a row's mapped values for a target.
pub fn hash_values(object: &str, mode: &str, values: &Map<String, Value>) -> String {
    let mut sorted: Vec<(&String, &Value)> = values.iter().collect();
    // Keys are unique: an unstable sort orders them exactly as a BTreeMap would.
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    hasher.update(object.as_bytes());
    hasher.update([0]);
    hasher.update(mode.as_bytes());
    hasher.update([0]);
    // The canonical JSON (`{"key":value,...}`, keys sorted) streamed into the hasher;
    // writing into a hasher cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut hasher), &SortedMap(&sorted));
    hex_prefix(&hasher.finalize())
}

/// Sorted key/value pairs serialized as a JSON object.
struct SortedMap<'a>(&'a [(&'a String, &'a Value)]);

impl Serialize for SortedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

/// Feeds serialized bytes straight into the hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
