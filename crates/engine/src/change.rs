//! Stage 3 — change detection against the ledger.
//!
//! A row's hash is SHA-256 over the canonical JSON of its mapped values (keys sorted, the
//! target object and mode included), so any change of a value, of the mapping or of the
//! target makes the row differ. A row is sent when it is new, differs from what was last
//! confirmed, failed last time, or the run forces it (`resync`, `sync_all_records`,
//! `identities`). `skip_initial_backfill` turns the first run into a baseline: hashes are
//! recorded, nothing is written.

use std::ops::Deref;

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
        self.hash_fields(entries.iter().map(|(key, _)| *key), |position| {
            entries.get(position).map_or(NULL, |(_, value)| *value)
        })
    }

    /// The hash of one row given its keys (distinct, in any order) and the value of the
    /// key at each position: equal to [`RowHasher::hash`] of the map holding them. The
    /// canonical JSON is `{"key":value,...}` with the keys sorted, byte for byte what
    /// `serde_json` writes for a sorted map (the hashes of existing ledgers depend on it).
    pub fn hash_fields<'k, V: Deref<Target = Value>>(
        &mut self,
        keys: impl ExactSizeIterator<Item = &'k String> + Clone,
        value: impl Fn(usize) -> V,
    ) -> String {
        let same_keys = keys.len() == self.keys.len()
            && keys
                .clone()
                .zip(&self.keys)
                .all(|(key, known)| key == known);
        if !same_keys {
            self.keys = keys.cloned().collect();
            self.order = (0..self.keys.len()).collect();
            // Keys are unique: an unstable sort orders them exactly as a BTreeMap would.
            let keys = &self.keys;
            self.order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        }
        let keys = &self.keys;
        let json = &mut self.json;
        json.clear();
        write_json_object(
            json,
            self.order.iter().map(|position| {
                let key = keys.get(*position).map_or("", String::as_str);
                (key, value(*position))
            }),
        );
        let mut hasher = Sha256::new();
        hasher.update(self.object.as_bytes());
        hasher.update([0]);
        hasher.update(self.mode.as_bytes());
        hasher.update([0]);
        hasher.update(json.as_slice());
        hex_prefix(&hasher.finalize())
    }
}

/// The value of a missing entry.
const NULL: &Value = &Value::Null;

/// A JSON object of `entries`, in their order, byte for byte as `serde_json` writes it.
/// Strings, nulls and booleans — nearly every value — are written here; numbers, arrays
/// and objects by `serde_json` itself.
fn write_json_object<'k, V: Deref<Target = Value>>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'k str, V)>,
) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in entries {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, key);
        out.push(b':');
        write_json_value(out, &value);
    }
    out.push(b'}');
}

/// A JSON value as `serde_json` writes it.
fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::String(text) => write_json_str(out, text),
        // Writing into a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// A map's JSON text, as `serde_json::to_string` gives it.
pub(crate) fn json_object_text(map: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(64 * map.len() + 2);
    write_json_object(
        &mut out,
        map.iter().map(|(key, value)| (key.as_str(), value)),
    );
    // Only whole `&str`s and ASCII went in: valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// How `serde_json` escapes each byte of a string: 0 not at all, `u` as `\u00XX`, any
/// other as a backslash and that character.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A JSON string literal, escaped as `serde_json` escapes it.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        // Eight bytes at a time while none of them needs an escape (nearly all text).
        if let Some(word) = bytes.get(at..at + 8)
            && let Ok(word) = <[u8; 8]>::try_from(word)
            && !needs_escape(u64::from_le_bytes(word))
        {
            at += 8;
            continue;
        }
        let escape = ESCAPE[usize::from(byte)];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..at]);
            if escape == b'u' {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            } else {
                out.extend_from_slice(&[b'\\', escape]);
            }
            start = at + 1;
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of a word's eight bytes is one [`ESCAPE`] escapes: a control character
/// (below 0x20), `"` or `\`. Exact as a whole (the per-byte borrows of the subtractions
/// can only mark bytes after one that matched).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |word: u64, bound: u64| word.wrapping_sub(ONES * bound) & !word & HIGH;
    let zero = |word: u64| below(word, 1);
    (below(word, 0x20)
        | zero(word ^ (ONES * u64::from(b'"')))
        | zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
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

/// The digest of everything about a sync that decides what its rows become (the compiled
/// sync as Ferry renders it): part of every window fingerprint, so any change of mapping,
/// filters, target, mode or options makes every window differ. A change of Ferry's own
/// rendering only costs one run without window skips.
pub fn sync_digest(sync: &crate::spec::CompiledSync) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"ferry window marks 1\0");
    hasher.update(format!("{sync:?}").as_bytes());
    hasher.finalize().into()
}

/// The fingerprint of one read window: a 128-bit XXH3 over the sync's digest, the
/// window's number and size, its fields (names and types) and every value of every row,
/// each value tagged with its kind and strings prefixed with their length (so no two
/// different windows give the same bytes). 32 hex characters, like row hashes. XXH3 rather
/// than SHA-256: a run with nothing to send fingerprints every row it reads, and the
/// fingerprint only has to tell a window from its own earlier content, not withstand an
/// attacker (who would need write access to the model to try).
pub fn window_fingerprint(
    digest: &[u8; 32],
    window: u64,
    fields: &[ferry_connectors::SourceField],
    rows: &[Vec<Value>],
) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(digest);
    hasher.update(&window.to_le_bytes());
    hasher.update(&(rows.len() as u64).to_le_bytes());
    let mut bytes: Vec<u8> = Vec::with_capacity(256);
    for field in fields {
        bytes.clear();
        write_tagged_str(&mut bytes, &field.name);
        write_tagged_str(&mut bytes, field.field_type.as_str());
        write_tagged_str(&mut bytes, &field.remote_type);
        hasher.update(&bytes);
    }
    for row in rows {
        bytes.clear();
        write_length(&mut bytes, row.len());
        for value in row {
            match value {
                Value::Null => bytes.push(b'n'),
                Value::Bool(true) => bytes.push(b't'),
                Value::Bool(false) => bytes.push(b'f'),
                Value::String(text) => {
                    bytes.push(b's');
                    write_tagged_str(&mut bytes, text);
                }
                // Numbers, arrays and objects as their JSON text (which never holds a NUL
                // byte: control characters are escaped), NUL-terminated.
                other => {
                    bytes.push(b'j');
                    let _ = serde_json::to_writer(&mut bytes, other);
                    bytes.push(0);
                }
            }
        }
        hasher.update(&bytes);
    }
    let digest = hasher.digest128().to_be_bytes();
    hex_prefix(&digest)
}

/// The fingerprint of a window its source fingerprinted as read ([`RawWindow`]): the
/// sync's digest, the window's number, its row count and the source's fingerprint of its
/// fields and data. Marks made from it match only windows the same source read the same.
pub fn raw_window_fingerprint(
    digest: &[u8; 32],
    window: u64,
    raw: &ferry_connectors::RawWindow,
) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(digest);
    hasher.update(&window.to_le_bytes());
    hasher.update(b"raw window");
    hasher.update(&(raw.rows as u64).to_le_bytes());
    hasher.update(&raw.fingerprint.to_le_bytes());
    hex_prefix(&hasher.digest128().to_be_bytes())
}

/// A string prefixed with its length.
fn write_tagged_str(out: &mut Vec<u8>, text: &str) {
    write_length(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// A length as LEB128 (7 bits a byte, the high bit set on all but the last).
fn write_length(out: &mut Vec<u8>, mut length: usize) {
    while length >= 0x80 {
        out.push((length & 0x7f) as u8 | 0x80);
        length >>= 7;
    }
    out.push(length as u8);
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
    fn words_needing_an_escape_are_found_exactly() {
        let bytewise = |word: u64| {
            word.to_le_bytes()
                .iter()
                .any(|byte| ESCAPE[usize::from(*byte)] != 0)
        };
        for position in 0..8 {
            for byte in 0..=255u8 {
                for fill in [b'a', 0x80, 0xff, b' ', b'#'] {
                    let mut word = [fill; 8];
                    word[position] = byte;
                    let word = u64::from_le_bytes(word);
                    assert_eq!(needs_escape(word), bytewise(word), "{word:#018x}");
                }
            }
        }
        // Pseudo-random words, rich in the bytes around the bounds.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let word = (state >> 7) & 0x7f7f_7f7f_7f7f_7f7f ^ (state & 0x8080_0000_8000_0080);
            assert_eq!(needs_escape(word), bytewise(word), "{word:#018x}");
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        for text in [
            every_control.as_str(),
            "\u{7f}\"\\/ é ü 日本 🦀 \u{2028}",
            "",
            "plain",
            "ends with \\",
            // Escapes at every position of an eight-byte word, and across words.
            "abcdefg\"hijklmno\\pqrstuvw\nxyz0123456789 with a long plain tail",
            "\"bcdefgh",
            "abcdefg\u{1f}",
            "\u{7f}\u{80}\u{ff}é🦀🦀🦀\u{1}",
        ] {
            let mut ours = Vec::new();
            write_json_str(&mut ours, text);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        let values = values(
            json!({"n": -1.5e300, "i": 7, "a": [1, "x\n"], "o": {"z": 1, "a": null},
                                   "t": true, "f": false, "z": null, "s": "\t"}),
        );
        assert_eq!(
            hash_values("Contact", "update", &values),
            reference_hash("Contact", "update", &values)
        );
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

    fn field(name: &str) -> ferry_connectors::SourceField {
        ferry_connectors::SourceField {
            name: name.into(),
            field_type: ferry_connectors::FieldType::String,
            remote_type: "text".into(),
        }
    }

    #[test]
    fn window_fingerprints_tell_windows_apart() {
        let digest = [7u8; 32];
        let fields = [field("id"), field("email")];
        let rows = vec![
            vec![json!("1"), json!("a@x.com")],
            vec![json!(2), json!(null)],
        ];
        let print = window_fingerprint(&digest, 3, &fields, &rows);
        assert_eq!(print.len(), 32);
        assert_eq!(
            print,
            window_fingerprint(&digest, 3, &fields, &rows.clone())
        );
        let mut differ = vec![
            window_fingerprint(&[8u8; 32], 3, &fields, &rows),
            window_fingerprint(&digest, 4, &fields, &rows),
            window_fingerprint(&digest, 3, &[field("id"), field("mail")], &rows),
            window_fingerprint(&digest, 3, &fields, &rows[..1]),
        ];
        // A value of another kind, or moved across a field boundary.
        for changed in [
            vec![vec![json!(1), json!("a@x.com")], rows[1].clone()],
            vec![rows[0].clone(), vec![json!(2), json!("")]],
            vec![vec![json!("1a"), json!("@x.com")], rows[1].clone()],
            vec![rows[1].clone(), rows[0].clone()],
            // Lengths of more than one LEB128 byte.
            vec![vec![json!("x".repeat(300)), json!("y")], rows[1].clone()],
            vec![vec![json!("x".repeat(299)), json!("xy")], rows[1].clone()],
        ] {
            differ.push(window_fingerprint(&digest, 3, &fields, &changed));
        }
        let mut all = differ.clone();
        all.push(print);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), differ.len() + 1, "{differ:?}");
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
