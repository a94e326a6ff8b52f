//! Stage 2 — apply the mapping to a batch of model rows: filters (with `filter_logic`),
//! overrides, field mappings and constants. Each surviving row becomes a [`MappedRow`]:
//! its identity value (the ledger key) and the target values in mapping order.
//!
//! Target filters (`field_type: Target`) test the target record's current values, which
//! are read later (planning): here a row is dropped only when its model filters alone
//! already make `filter_logic` false; when the answer still depends on the target, the
//! row keeps its model filters' results ([`MappedRow::pending_filters`]) for planning.
//!
//! Values are converted for Salesforce here and nowhere else: JSON objects and arrays
//! become JSON text; numbers, strings, booleans, dates and timestamps pass unchanged.

use std::collections::HashMap;

use ferry_connectors::RowBatch;
use serde_json::{Map, Value};

use crate::filter::combine;
use crate::spec::{CompiledSync, FieldValue, FilterFieldType};

/// A model row after mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    /// The identity value (text), the ledger key.
    pub identity: String,
    /// Target field → value, in mapping order.
    pub values: Map<String, Value>,
    /// When whether the row passes the filters depends on target filters: each filter's
    /// result in `filters` order, `None` for the target filters (tested at planning on the
    /// matched record, [`crate::plan::passes_target_filters`]). `None` when the row passed.
    pub pending_filters: Option<Vec<Option<bool>>>,
}

/// A row that cannot be synced (logged as a warning).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// The identity value when there is one.
    pub identity: Option<String>,
    /// Why.
    pub message: String,
}

/// The result of mapping one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappedBatch {
    /// Rows to sync, at most one per identity (the last one wins).
    pub rows: Vec<MappedRow>,
    /// Rows the filters excluded.
    pub filtered: usize,
    /// Rows that cannot be synced.
    pub rejected: Vec<RejectedRow>,
}

/// A field the sync needs is missing from the rows read (the model changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model no longer has field '{0}'; update the model or the sync")]
pub struct MissingField(pub String);

/// The text form of an identity value (`None` for null and blank).
pub fn identity_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// Converts a model value for Salesforce.
pub fn to_salesforce(value: &Value) -> Value {
    match value {
        Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
        other => other.clone(),
    }
}

/// [`to_salesforce`] for a value the caller owns (nothing is copied).
fn into_salesforce(value: Value) -> Value {
    match value {
        Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
        other => other,
    }
}

/// The value at `index` of a model row (null past its end).
fn value_at(row: &[Value], index: usize) -> &Value {
    row.get(index).unwrap_or(&Value::Null)
}

/// Maps one batch of model rows. A model value mapped to a single field is moved out of
/// the batch (leaving a null) rather than copied.
pub fn map_batch(sync: &CompiledSync, batch: &mut RowBatch) -> Result<MappedBatch, MissingField> {
    let positions: HashMap<&str, usize> = batch
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| (field.name.as_str(), index))
        .collect();
    let position = |name: &str| {
        positions
            .get(name)
            .copied()
            .ok_or_else(|| MissingField(name.to_string()))
    };
    let key = position(&sync.key_field)?;
    // Model filters with the position of their field; `None` for target filters.
    let filters = sync
        .filters
        .iter()
        .map(|filter| match filter.field_type {
            FilterFieldType::Model => Ok(Some((position(&filter.field)?, filter))),
            FilterFieldType::Target => Ok(None),
        })
        .collect::<Result<Vec<_>, MissingField>>()?;
    let target_filters = sync.has_target_filters();
    let overrides = sync
        .overrides
        .iter()
        .map(|o| Ok((position(&o.field)?, o)))
        .collect::<Result<Vec<_>, MissingField>>()?;
    let fields = sync
        .fields
        .iter()
        .map(|field| {
            let source = match &field.value {
                FieldValue::Source(name) => Some((name.as_str(), position(name)?)),
                FieldValue::Constant(_) => None,
            };
            Ok((field, source))
        })
        .collect::<Result<Vec<_>, MissingField>>()?;
    // How many mapped fields read each model value: one that only one reads is moved.
    let mut readers = vec![0usize; batch.fields.len()];
    for (_, source) in &fields {
        if let Some((_, index)) = source
            && let Some(count) = readers.get_mut(*index)
        {
            *count += 1;
        }
    }

    let mut out = MappedBatch {
        rows: Vec::with_capacity(batch.rows.len()),
        ..MappedBatch::default()
    };
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(batch.rows.len());
    let mut results = Vec::with_capacity(filters.len());
    for row in &mut batch.rows {
        let pending_filters = if target_filters {
            let partial: Vec<Option<bool>> = filters
                .iter()
                .copied()
                .map(|model| {
                    model.map(|(index, filter)| {
                        filter
                            .function
                            .matches(value_at(row, index), filter.value.as_ref())
                    })
                })
                .collect();
            match combine(sync.filter_logic.as_ref(), &partial) {
                Some(false) => {
                    out.filtered += 1;
                    continue;
                }
                Some(true) => None,
                None => Some(partial),
            }
        } else {
            results.clear();
            results.extend(filters.iter().flatten().map(|(index, filter)| {
                filter
                    .function
                    .matches(value_at(row, *index), filter.value.as_ref())
            }));
            let keep = match &sync.filter_logic {
                Some(logic) => logic.evaluate(&results),
                None => results.iter().all(|r| *r),
            };
            if !keep {
                out.filtered += 1;
                continue;
            }
            None
        };
        let Some(identity) = identity_text(value_at(row, key)) else {
            out.rejected.push(RejectedRow {
                identity: None,
                message: format!("the identity field '{}' is empty", sync.key_field),
            });
            continue;
        };
        let mut values = Map::with_capacity(fields.len());
        for (field, source) in &fields {
            let value = match (source, &field.value) {
                (Some((name, index)), _) => {
                    let original = value_at(row, *index);
                    let replaced = overrides.iter().find(|(o_index, o)| {
                        o.field == *name
                            && *o_index == *index
                            && o.function
                                .is_none_or(|f| f.matches(original, o.value.as_ref()))
                    });
                    match replaced {
                        Some((_, o)) => to_salesforce(&o.replacement),
                        None if readers.get(*index) == Some(&1) => row
                            .get_mut(*index)
                            .map_or(Value::Null, |value| into_salesforce(std::mem::take(value))),
                        None => to_salesforce(original),
                    }
                }
                (None, FieldValue::Constant(constant)) => constant.clone(),
                (None, FieldValue::Source(_)) => Value::Null,
            };
            values.insert(field.target.clone(), value);
        }
        let mapped = MappedRow {
            identity,
            values,
            pending_filters,
        };
        match seen.get(&mapped.identity) {
            Some(existing) => {
                out.rejected.push(RejectedRow {
                    identity: Some(mapped.identity.clone()),
                    message: "several rows share this identity; the last one is synced".into(),
                });
                out.rows[*existing] = mapped;
            }
            None => {
                seen.insert(mapped.identity.clone(), out.rows.len());
                out.rows.push(mapped);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_connectors::{FieldType, SourceField};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::spec::{ModelFieldRef, ModelInfo, SyncDocument, compile};

    fn sync(extra: Value) -> CompiledSync {
        let mut document = json!({
            "name": "s", "mode": "updateOrCreate",
            "target": {"connection_id": Uuid::nil(), "object": "Contact"},
            "identity": {"source": {"model_id": Uuid::nil(), "field": "email"}, "target": "Email", "function": "Equality"},
            "fields": [
                {"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}},
                {"target": "Extra__c", "source": {"model_id": Uuid::nil(), "field": "tags"}},
                {"target": "LeadSource", "override_value": "Ferry"}
            ],
            "schedule": {"frequency": "manual"}
        });
        for (key, value) in extra.as_object().unwrap() {
            document[key] = value.clone();
        }
        let document: SyncDocument = serde_json::from_value(document).unwrap();
        let model = ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name", "age", "tags"]
                .iter()
                .map(|n| ModelFieldRef {
                    id: format!("f-{n}"),
                    name: n.to_string(),
                })
                .collect(),
            identifier: None,
        };
        compile(&document, &model).unwrap()
    }

    fn batch(rows: Vec<Value>) -> RowBatch {
        let fields: Vec<SourceField> = ["email", "name", "age", "tags"]
            .iter()
            .map(|n| SourceField {
                name: n.to_string(),
                field_type: FieldType::String,
                remote_type: "TEXT".into(),
            })
            .collect();
        RowBatch {
            fields: Arc::from(fields),
            rows: rows
                .into_iter()
                .map(|r| r.as_array().unwrap().clone())
                .collect(),
        }
    }

    #[test]
    fn maps_fields_constants_and_converts_values() {
        let mapped = map_batch(
            &sync(json!({})),
            &mut batch(vec![json!(["a@x.com", "Ann", 30, ["x", "y"]])]),
        )
        .unwrap();
        assert_eq!(mapped.rows.len(), 1);
        let row = &mapped.rows[0];
        assert_eq!(row.identity, "a@x.com");
        assert_eq!(
            Value::Object(row.values.clone()),
            json!({"LastName": "Ann", "Extra__c": "[\"x\",\"y\"]", "LeadSource": "Ferry"})
        );
    }

    #[test]
    fn filters_with_logic() {
        let sync = sync(json!({
            "filters": [
                {"field_id": "f-age", "function": "GreaterThanEqual", "value": 18},
                {"field_id": "f-name", "function": "StringStartsWith", "value": "A"},
                {"field_id": "f-name", "function": "IsNull"}
            ],
            "filter_logic": "1 AND (2 OR 3)"
        }));
        let mapped = map_batch(
            &sync,
            &mut batch(vec![
                json!(["a@x.com", "Ann", 30, null]),
                json!(["b@x.com", "Bob", 30, null]),
                json!(["c@x.com", null, 40, null]),
                json!(["d@x.com", "Al", 12, null]),
            ]),
        )
        .unwrap();
        let kept: Vec<&str> = mapped.rows.iter().map(|r| r.identity.as_str()).collect();
        assert_eq!(kept, vec!["a@x.com", "c@x.com"]);
        assert_eq!(mapped.filtered, 2);
    }

    #[test]
    fn target_filters_wait_for_the_target_unless_model_filters_decide() {
        let sync = sync(json!({
            "mode": "update",
            "filters": [
                {"field_id": "f-age", "function": "GreaterThanEqual", "value": 18},
                {"field_id": "Status__c", "field_type": "Target", "function": "Equality", "value": "Open"},
                {"field_id": "f-name", "function": "StringStartsWith", "value": "A"}
            ],
            "filter_logic": "1 AND (2 OR 3)"
        }));
        let mapped = map_batch(
            &sync,
            &mut batch(vec![
                // Adult named A...: passes whatever the target holds.
                json!(["a@x.com", "Ann", 30, null]),
                // Adult not named A...: depends on the target's Status__c.
                json!(["b@x.com", "Bob", 30, null]),
                // A minor: excluded by the model filter alone.
                json!(["c@x.com", "Al", 12, null]),
            ]),
        )
        .unwrap();
        let kept: Vec<(&str, Option<Vec<Option<bool>>>)> = mapped
            .rows
            .iter()
            .map(|r| (r.identity.as_str(), r.pending_filters.clone()))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("a@x.com", None),
                ("b@x.com", Some(vec![Some(true), None, Some(false)])),
            ]
        );
        assert_eq!(mapped.filtered, 1);
        // Without filter_logic every filter must hold: model-passing rows wait.
        let all = sync_without_logic();
        let mapped = map_batch(
            &all,
            &mut batch(vec![
                json!(["a@x.com", "Ann", 30, null]),
                json!(["c@x.com", "Al", 12, null]),
            ]),
        )
        .unwrap();
        assert_eq!(mapped.rows.len(), 1);
        assert_eq!(mapped.rows[0].pending_filters, Some(vec![Some(true), None]));
        assert_eq!(mapped.filtered, 1);
    }

    fn sync_without_logic() -> CompiledSync {
        sync(json!({
            "mode": "update",
            "filters": [
                {"field_id": "f-age", "function": "GreaterThanEqual", "value": 18},
                {"field_id": "Status__c", "field_type": "Target", "function": "IsNotNull"}
            ]
        }))
    }

    #[test]
    fn overrides_replace_matching_values() {
        let sync = sync(json!({"overrides": [
            {"field_id": "f-name", "function": "IsNull", "override": "Unknown"}
        ]}));
        let mapped = map_batch(
            &sync,
            &mut batch(vec![
                json!(["a@x.com", null, 1, null]),
                json!(["b@x.com", "Bo", 1, null]),
            ]),
        )
        .unwrap();
        assert_eq!(mapped.rows[0].values["LastName"], "Unknown");
        assert_eq!(mapped.rows[1].values["LastName"], "Bo");
    }

    #[test]
    fn empty_and_duplicate_identities() {
        let mapped = map_batch(
            &sync(json!({})),
            &mut batch(vec![
                json!([null, "x", 1, null]),
                json!(["  ", "x", 1, null]),
                json!(["a@x.com", "first", 1, null]),
                json!(["a@x.com", "second", 1, null]),
            ]),
        )
        .unwrap();
        assert_eq!(mapped.rows.len(), 1);
        assert_eq!(mapped.rows[0].values["LastName"], "second");
        assert_eq!(mapped.rejected.len(), 3);
    }

    #[test]
    fn a_missing_field_is_an_error() {
        let mut b = batch(vec![]);
        b.fields = Arc::from(vec![SourceField {
            name: "email".into(),
            field_type: FieldType::String,
            remote_type: "TEXT".into(),
        }]);
        assert_eq!(
            map_batch(&sync(json!({})), &mut b).unwrap_err(),
            MissingField("name".into())
        );
    }
}
