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

use std::borrow::Cow;
use std::collections::HashMap;

use ferry_connectors::{RowBatch, SourceField};
use serde_json::{Map, Value};

use crate::change::RowHasher;
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

/// A model value as Salesforce takes it: JSON objects and arrays become JSON text, the
/// rest passes unchanged (borrowed).
fn salesforce_form(value: &Value) -> Cow<'_, Value> {
    match value {
        Value::Object(_) | Value::Array(_) => Cow::Owned(Value::String(value.to_string())),
        other => Cow::Borrowed(other),
    }
}

/// The value at `index` of a model row (null past its end).
fn value_at(row: &[Value], index: usize) -> &Value {
    row.get(index).unwrap_or(&Value::Null)
}

/// A model row the filters kept, with its identity, not mapped yet: `index` is its
/// position in the batch. Change detection hashes such rows straight from the batch
/// ([`BatchPlan::hash`]) and only rows that changed are mapped ([`BatchPlan::map_row`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedRow {
    /// The identity value (text), the ledger key.
    pub identity: String,
    /// Position of the row in the batch.
    pub index: usize,
    /// As [`MappedRow::pending_filters`].
    pub pending_filters: Option<Vec<Option<bool>>>,
}

/// The rows of a batch the filters kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// At most one per identity (the last one wins), in first-seen order.
    pub rows: Vec<SelectedRow>,
    /// Rows the filters excluded.
    pub filtered: usize,
    /// Rows that cannot be synced.
    pub rejected: Vec<RejectedRow>,
}

/// A sync's mapping resolved against the fields of a read: the position of every model
/// field it uses. Its methods take the same [`CompiledSync`] it was made from.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    key: usize,
    /// Position of each filter's model field (`None` for target filters).
    filters: Vec<Option<usize>>,
    /// Position of each override's model field.
    overrides: Vec<usize>,
    /// Position of each mapped field's model field (`None` for constants).
    fields: Vec<Option<usize>>,
    /// How many mapped fields read each model value: a value only one reads is moved.
    readers: Vec<usize>,
    /// Whether every target field is mapped once (a row's values are then exactly the
    /// mapped fields in order, which [`BatchPlan::hash`] relies on).
    distinct_targets: bool,
}

impl BatchPlan {
    /// Resolves `sync`'s fields against the fields of a read.
    pub fn new(sync: &CompiledSync, read: &[SourceField]) -> Result<BatchPlan, MissingField> {
        let positions: HashMap<&str, usize> = read
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
        let filters = sync
            .filters
            .iter()
            .map(|filter| match filter.field_type {
                FilterFieldType::Model => Ok(Some(position(&filter.field)?)),
                FilterFieldType::Target => Ok(None),
            })
            .collect::<Result<Vec<_>, MissingField>>()?;
        let overrides = sync
            .overrides
            .iter()
            .map(|o| position(&o.field))
            .collect::<Result<Vec<_>, MissingField>>()?;
        let fields = sync
            .fields
            .iter()
            .map(|field| match &field.value {
                FieldValue::Source(name) => Ok(Some(position(name)?)),
                FieldValue::Constant(_) => Ok(None),
            })
            .collect::<Result<Vec<_>, MissingField>>()?;
        let mut readers = vec![0usize; read.len()];
        for index in fields.iter().flatten() {
            if let Some(count) = readers.get_mut(*index) {
                *count += 1;
            }
        }
        let mut targets: Vec<&str> = sync.fields.iter().map(|f| f.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        Ok(BatchPlan {
            key,
            filters,
            overrides,
            fields,
            readers,
            distinct_targets: targets.len() == sync.fields.len(),
        })
    }

    /// Applies the filters and reads the identities: the rows to sync, the rows filtered
    /// out and the rows rejected (no identity, or a later row with the same identity).
    pub fn select(&self, sync: &CompiledSync, rows: &[Vec<Value>]) -> Selection {
        let target_filters = sync.has_target_filters();
        let mut out = Selection {
            rows: Vec::with_capacity(rows.len()),
            ..Selection::default()
        };
        let mut seen: crate::FastMap<String, usize> =
            crate::FastMap::with_capacity_and_hasher(rows.len(), Default::default());
        let mut results: Vec<bool> = Vec::with_capacity(self.filters.len());
        for (index, row) in rows.iter().enumerate() {
            // Each filter's result on this row; `None` for target filters.
            let model_filters = sync.filters.iter().zip(&self.filters).map(|(filter, at)| {
                at.map(|at| {
                    filter
                        .function
                        .matches(value_at(row, at), filter.value.as_ref())
                })
            });
            let pending_filters = if target_filters {
                let partial: Vec<Option<bool>> = model_filters.collect();
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
                results.extend(model_filters.flatten());
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
            let Some(identity) = identity_text(value_at(row, self.key)) else {
                out.rejected.push(RejectedRow {
                    identity: None,
                    message: format!("the identity field '{}' is empty", sync.key_field),
                });
                continue;
            };
            let selected = SelectedRow {
                identity,
                index,
                pending_filters,
            };
            match seen.get(&selected.identity) {
                Some(existing) => {
                    out.rejected.push(RejectedRow {
                        identity: Some(selected.identity.clone()),
                        message: "several rows share this identity; the last one is synced".into(),
                    });
                    out.rows[*existing] = selected;
                }
                None => {
                    seen.insert(selected.identity.clone(), out.rows.len());
                    out.rows.push(selected);
                }
            }
        }
        out
    }

    /// The override that replaces the model value at `index` (field `name`) of `row`.
    fn replacement<'v>(
        &self,
        sync: &'v CompiledSync,
        row: &[Value],
        index: usize,
        name: &str,
    ) -> Option<&'v Value> {
        let original = value_at(row, index);
        sync.overrides
            .iter()
            .zip(&self.overrides)
            .find(|(o, at)| {
                o.field == name
                    && **at == index
                    && o.function
                        .is_none_or(|f| f.matches(original, o.value.as_ref()))
            })
            .map(|(o, _)| &o.replacement)
    }

    /// The value mapped field `field` (a position in `sync.fields`) takes from `row`
    /// (overrides applied, converted for Salesforce), borrowed when it needs no change.
    fn value<'v>(&self, sync: &'v CompiledSync, row: &'v [Value], field: usize) -> Cow<'v, Value> {
        let Some(mapping) = sync.fields.get(field) else {
            return Cow::Owned(Value::Null);
        };
        match (self.fields.get(field).copied().flatten(), &mapping.value) {
            (Some(index), FieldValue::Source(name)) => salesforce_form(
                self.replacement(sync, row, index, name)
                    .unwrap_or_else(|| value_at(row, index)),
            ),
            (_, FieldValue::Constant(constant)) => salesforce_form(constant),
            (None, FieldValue::Source(_)) => Cow::Owned(Value::Null),
        }
    }

    /// The model value at the position mapped field `field` reads when it can be moved out
    /// of the row: no other mapped field reads it and no override replaces it.
    fn movable(&self, sync: &CompiledSync, row: &[Value], field: usize) -> Option<usize> {
        let index = self.fields.get(field).copied().flatten()?;
        let FieldValue::Source(name) = &sync.fields.get(field)?.value else {
            return None;
        };
        (self.readers.get(index) == Some(&1) && self.replacement(sync, row, index, name).is_none())
            .then_some(index)
    }

    /// The row's mapped values (target field → value, in mapping order). A model value
    /// only one mapped field reads is moved out of the row (leaving a null).
    pub fn map_row(&self, sync: &CompiledSync, row: &mut [Value]) -> Map<String, Value> {
        // One spare slot: a create's payload gains the identity field when it is not mapped.
        let mut values = Map::with_capacity(sync.fields.len() + 1);
        for (field, mapping) in sync.fields.iter().enumerate() {
            let value = match self.movable(sync, row, field) {
                Some(index) => {
                    let value = row.get_mut(index).map(std::mem::take).unwrap_or_default();
                    match salesforce_form(&value) {
                        Cow::Borrowed(_) => value,
                        Cow::Owned(converted) => converted,
                    }
                }
                None => self.value(sync, row, field).into_owned(),
            };
            values.insert(mapping.target.clone(), value);
        }
        values
    }

    /// The change-detection hash of the row's mapped values, equal to
    /// `hasher.hash(&self.map_row(..))` without building the map.
    pub fn hash(&self, sync: &CompiledSync, hasher: &mut RowHasher<'_>, row: &[Value]) -> String {
        if !self.distinct_targets {
            // A target mapped twice keeps one value: the map decides which.
            let mut copy = row.to_vec();
            return hasher.hash(&self.map_row(sync, &mut copy));
        }
        hasher.hash_fields(sync.fields.iter().map(|mapping| &mapping.target), |field| {
            self.value(sync, row, field)
        })
    }
}

/// Maps one batch of model rows. A model value mapped to a single field is moved out of
/// the batch (leaving a null) rather than copied.
pub fn map_batch(sync: &CompiledSync, batch: &mut RowBatch) -> Result<MappedBatch, MissingField> {
    let plan = BatchPlan::new(sync, &batch.fields)?;
    let selection = plan.select(sync, &batch.rows);
    let rows = selection
        .rows
        .into_iter()
        .map(|selected| MappedRow {
            values: batch
                .rows
                .get_mut(selected.index)
                .map(|row| plan.map_row(sync, row))
                .unwrap_or_default(),
            identity: selected.identity,
            pending_filters: selected.pending_filters,
        })
        .collect();
    Ok(MappedBatch {
        rows,
        filtered: selection.filtered,
        rejected: selection.rejected,
    })
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
            raw: None,
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

    /// Change detection hashes rows straight from the model values: the hash must be the
    /// one of the mapped map, whatever overrides, constants, conversions and a field read
    /// twice or a target mapped twice do.
    #[test]
    fn plan_hash_equals_the_hash_of_the_mapped_values() {
        let field = |target: &str, source: &str| json!({"target": target, "source": {"model_id": Uuid::nil(), "field": source}});
        let syncs = [
            sync(json!({})),
            sync(json!({"overrides": [
                {"field_id": "f-name", "function": "IsNull", "override": {"a": [1]}}
            ]})),
            sync(json!({"fields": [
                field("LastName", "name"), field("Title", "name"), field("Age__c", "age"),
                field("Extra__c", "tags"), {"target": "LeadSource", "override_value": "Ferry"}
            ]})),
            {
                // Compiling refuses a target mapped twice; the plan still copes.
                let mut twice =
                    sync(json!({"fields": [field("LastName", "name"), field("Title", "age")]}));
                twice.fields[1].target = "LastName".into();
                twice
            },
        ];
        let rows = vec![
            json!(["a@x.com", "Ann", 30, ["x", "y"]]),
            json!(["b@x.com", null, 1.5, {"k": "v"}]),
            json!(["c@x.com", "Él \"q\"", null, null]),
        ];
        for sync in &syncs {
            let mut model = batch(rows.clone());
            let plan = BatchPlan::new(sync, &model.fields).unwrap();
            let selection = plan.select(sync, &model.rows);
            assert_eq!(selection.rows.len(), 3);
            let mut hasher = RowHasher::new("Contact", "updateOrCreate");
            for selected in selection.rows {
                let hash = plan.hash(sync, &mut hasher, &model.rows[selected.index]);
                let values = plan.map_row(sync, &mut model.rows[selected.index]);
                assert_eq!(hash, hasher.hash(&values), "{values:?}");
            }
        }
        // Mapping moves model values only one field reads and copies the others.
        let sync = &syncs[2];
        let mut model = batch(rows);
        let plan = BatchPlan::new(sync, &model.fields).unwrap();
        let values = plan.map_row(sync, &mut model.rows[0]);
        assert_eq!(values["LastName"], "Ann");
        assert_eq!(values["Title"], "Ann");
        assert_eq!(values["Age__c"], 30);
        assert_eq!(
            model.rows[0],
            vec![json!("a@x.com"), json!("Ann"), Value::Null, Value::Null]
        );
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
