//! Stage 5 — batching: rows sorted by `sort_batches_by` (stable, nulls last) so one
//! parent's children share a batch, then cut into batches of the configured size.
//!
//! Sorting happens within a read window (the rows of one source batch), which keeps memory
//! bounded; windows are large (thousands of rows) compared with write batches.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::filter::compare;

/// Sorts items by the value of `field` in their payload (case-insensitive field name).
pub fn sort_by_field<T>(items: &mut [T], field: &str, values: impl Fn(&T) -> &Map<String, Value>) {
    let key = |item: &T| -> Option<Value> {
        values(item)
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_null())
    };
    items.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => compare(&x, &y).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
}

/// Splits `items` into batches of at most `size` (at least 1).
pub fn chunks<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    let mut current = Vec::with_capacity(size.min(items.len()));
    for item in items {
        current.push(item);
        if current.len() == size {
            out.push(std::mem::replace(&mut current, Vec::with_capacity(size)));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sorts_by_field_nulls_last_and_stable() {
        let mut rows: Vec<Map<String, Value>> = [
            json!({"n": 1, "AccountId": "b"}),
            json!({"n": 2, "AccountId": null}),
            json!({"n": 3, "AccountId": "a"}),
            json!({"n": 4, "AccountId": "b"}),
            json!({"n": 5}),
            json!({"n": 6, "AccountId": "a"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        sort_by_field(&mut rows, "accountid", |r| r);
        let order: Vec<i64> = rows.iter().map(|r| r["n"].as_i64().unwrap()).collect();
        assert_eq!(order, vec![3, 6, 1, 4, 2, 5]);
    }

    #[test]
    fn chunking() {
        let batches = chunks((0..450).collect::<Vec<_>>(), 200);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        assert!(chunks(Vec::<u8>::new(), 200).is_empty());
        assert_eq!(chunks(vec![1, 2], 0).len(), 2);
    }
}
