//! Stage 4 — target planning (pure): given a changed row, what the ledger knows and the
//! Salesforce records its identity matched, decide the operation and the payload.
//!
//! - `create`: rows whose identity already matches a record are left alone; without an
//!   identity, a row whose earlier create had an unknown outcome (`pending_create`) is not
//!   created again (a duplicate is worse than a warning).
//! - `update` / `updateOrCreate`: one match → update by Id; several → the row fails
//!   (`DUPLICATE_IDENTITY`), or is skipped with a warning for Leads with `skip_converted`;
//!   none → skipped with a warning (`update`) or created (`updateOrCreate`). An external-id
//!   identity upserts without a lookup when no current values are needed.
//! - `remove`: the matched record is deleted; no match means it is already gone.
//!
//! The payload follows `insert_null_values` (nulls omitted unless true), per-field
//! `sync_mode: create` (only written where Salesforce's value is empty) and
//! `only_sync_different` (rows equal to Salesforce's current values are skipped).
//!
//! Target filters (`filters[].field_type: Target`, mode `update` only) are tested here, on
//! the current values of the one record the identity matched ([`passes_target_filters`]);
//! a row they exclude is skipped with [`SkipReason::TargetFiltered`]: not written, no
//! warning, not part of the run's total, and the ledger is left as it was, so the row is
//! looked at again on the next run (and written once the target's value passes).

use std::collections::HashSet;

use ferry_salesforce::Record;
use ferry_store::LedgerEntry;
use serde_json::{Map, Value};

use crate::filter::combine;
use crate::mapping::MappedRow;
use crate::spec::{CompiledSync, CreateRecordsAs, FilterFieldType, Mode};

/// Ledger outcomes after which the stored record id is trusted.
const ID_OUTCOMES: [&str; 7] = [
    "inserted",
    "updated",
    "upserted",
    "exists",
    "unchanged",
    "skipped",
    "failed",
];

/// A row change detection decided to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The mapped row.
    pub row: MappedRow,
    /// Hash of its values.
    pub hash: String,
    /// Its ledger entry before this run.
    pub prior: Option<Box<LedgerEntry>>,
    /// The number of the read window it came from (its outcome decides the window's mark).
    pub window: usize,
}

impl Candidate {
    /// The record id the ledger trusts, if any.
    pub fn known_id(&self) -> Option<&str> {
        self.prior
            .as_ref()
            .filter(|entry| ID_OUTCOMES.contains(&entry.outcome.as_str()))
            .and_then(|entry| entry.record_id.as_deref())
    }
}

/// What planning needs from the target's describe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetInfo {
    /// The identity's target field is an external id (usable for upsert).
    pub identity_is_external_id: bool,
    /// Lookup and master-detail fields (lowercase).
    pub reference_fields: crate::FastSet<String>,
    /// The target is Lead.
    pub is_lead: bool,
}

/// A write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Insert.
    Create,
    /// Update by Id.
    Update,
    /// Upsert by the external-id identity.
    Upsert,
    /// Delete by Id.
    Delete,
}

/// Why a row is not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `create`: a record with this identity exists.
    Exists,
    /// `update`: no record matches (warning; retried next run).
    Unmatched,
    /// `only_sync_different`: Salesforce already holds these values.
    Equal,
    /// `skip_converted`: the Lead is converted (warning).
    Converted,
    /// `skip_converted`: several Leads match (warning).
    Duplicate(usize),
    /// `create` without identity: an earlier create's outcome is unknown (warning).
    UnknownCreate,
    /// `remove`: nothing matches (already gone).
    AlreadyRemoved,
    /// `update` with target filters: the matched record's current values do not pass
    /// them. Handled like a row a model filter excludes (not counted, no warning, ledger
    /// untouched: the row is looked at again next run).
    TargetFiltered,
}

impl SkipReason {
    /// Whether a filter excluded the row: it is then not part of the run's total and its
    /// ledger entry is left as it was (nothing about the target was confirmed).
    pub fn excluded_by_filter(&self) -> bool {
        matches!(self, SkipReason::TargetFiltered)
    }

    /// Whether the skip is reported as a warning.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            SkipReason::Unmatched
                | SkipReason::Converted
                | SkipReason::Duplicate(_)
                | SkipReason::UnknownCreate
        )
    }

    /// The ledger outcome recorded for it.
    pub fn outcome(&self) -> &'static str {
        match self {
            SkipReason::Exists => "exists",
            SkipReason::Unmatched => "unmatched",
            SkipReason::Equal => "unchanged",
            SkipReason::Converted | SkipReason::Duplicate(_) => "skipped",
            SkipReason::UnknownCreate => "pending_create",
            SkipReason::AlreadyRemoved => "deleted",
            // Never stored (see `excluded_by_filter`).
            SkipReason::TargetFiltered => "filtered",
        }
    }

    /// A message for logs.
    pub fn message(&self) -> String {
        match self {
            SkipReason::Exists => "a record with this identity already exists".into(),
            SkipReason::Unmatched => "no record matches this identity (mode update)".into(),
            SkipReason::Equal => "Salesforce already holds these values".into(),
            SkipReason::Converted => "the Lead is converted (skip_converted)".into(),
            SkipReason::Duplicate(n) => {
                format!("{n} Leads match this identity (skip_converted skips duplicates)")
            }
            SkipReason::UnknownCreate => "an earlier create of this row was interrupted and \
                                          its outcome is unknown; it is not created again to \
                                          avoid a duplicate (add an identity to reconcile)"
                .into(),
            SkipReason::AlreadyRemoved => "no record matches; nothing to remove".into(),
            SkipReason::TargetFiltered => "the matched record's current values do not pass \
                                           the target filters"
                .into(),
        }
    }
}

/// The planning decision for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write it.
    Write {
        /// Operation.
        operation: Operation,
        /// Record id (update, delete).
        id: Option<String>,
        /// Field values to send (without `Id`).
        payload: Map<String, Value>,
    },
    /// Leave it.
    Skip {
        /// Why.
        reason: SkipReason,
        /// The matched record, if any.
        id: Option<String>,
    },
    /// The row fails without a call.
    Fail {
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
}

/// Whether a Salesforce value counts as empty.
fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Whether a mapped value equals Salesforce's current value (numbers numerically, dates and
/// timestamps as instants, null = empty string).
pub fn values_equal(mapped: &Value, current: Option<&Value>) -> bool {
    if is_empty(Some(mapped)) && is_empty(current) {
        return true;
    }
    let Some(current) = current else {
        return false;
    };
    if mapped == current {
        return true;
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    if let (Some(a), Some(b)) = (number(mapped), number(current)) {
        return (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0);
    }
    if let (Value::Bool(a), Value::String(b)) | (Value::String(b), Value::Bool(a)) =
        (mapped, current)
    {
        return b.eq_ignore_ascii_case(if *a { "true" } else { "false" });
    }
    if let (Some(a), Some(b)) = (
        ferry_salesforce::datetime::parse_datetime_json(mapped),
        ferry_salesforce::datetime::parse_datetime_json(current),
    ) {
        return a == b;
    }
    false
}

fn field_of<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Whether planning needs Salesforce's current values of matched records (so every row
/// is looked up, even one whose record id the ledger knows).
pub fn needs_current_values(sync: &CompiledSync, target: &TargetInfo) -> bool {
    needs_mapped_values(sync, target) || sync.has_target_filters()
}

/// Whether planning compares the mapped fields with their current values (the lookup then
/// reads every mapped field; target filters only need the fields they test).
pub fn needs_mapped_values(sync: &CompiledSync, target: &TargetInfo) -> bool {
    sync.config.only_sync_different
        || sync.fields.iter().any(|f| f.create_only)
        || (target.is_lead && sync.config.skip_converted)
}

/// Whether a row passes the sync's filters once the current values of its matched target
/// record are known (`current` gives a target field's value, `None` for a field the
/// record lacks, tested as null). `pending` are the row's model filter results
/// ([`MappedRow::pending_filters`]); a row the model filters already decided (`None`)
/// passes.
pub fn passes_target_filters<'v>(
    sync: &CompiledSync,
    pending: Option<&[Option<bool>]>,
    current: impl Fn(&str) -> Option<&'v Value>,
) -> bool {
    let Some(pending) = pending else {
        return true;
    };
    let results: Vec<Option<bool>> = sync
        .filters
        .iter()
        .zip(pending)
        .map(|(filter, known)| match (known, filter.field_type) {
            (Some(result), _) => Some(*result),
            (None, FilterFieldType::Target) => Some(filter.function.matches(
                current(&filter.field).unwrap_or(&Value::Null),
                filter.value.as_ref(),
            )),
            (None, FilterFieldType::Model) => None,
        })
        .collect();
    combine(sync.filter_logic.as_ref(), &results) == Some(true)
}

/// Whether the row is written by upsert on the external-id identity without a lookup.
pub fn upserts_without_lookup(sync: &CompiledSync, target: &TargetInfo) -> bool {
    sync.mode == Mode::UpdateOrCreate
        && target.identity_is_external_id
        && !needs_current_values(sync, target)
}

/// The payload of a create or upsert: nulls follow `insert_null_values`, and the identity
/// value is set when the identity field is not mapped (so the record can be found again).
fn create_payload(sync: &CompiledSync, candidate: &Candidate) -> Map<String, Value> {
    payload_for_create(sync, &candidate.row.identity, candidate.row.values.clone())
}

/// [`create_payload`] that moves the mapped values out of the candidate instead of copying
/// them (they are not needed once a row is decided).
fn take_create_payload(sync: &CompiledSync, candidate: &mut Candidate) -> Map<String, Value> {
    let values = std::mem::take(&mut candidate.row.values);
    payload_for_create(sync, &candidate.row.identity, values)
}

fn payload_for_create(
    sync: &CompiledSync,
    identity_value: &str,
    mut payload: Map<String, Value>,
) -> Map<String, Value> {
    if !sync.config.insert_null_values {
        payload.retain(|_, value| !value.is_null());
    }
    if let Some(identity) = &sync.identity_target
        && !payload.keys().any(|k| k.eq_ignore_ascii_case(identity))
    {
        payload.insert(identity.clone(), Value::String(identity_value.to_string()));
    }
    payload
}

/// Decides one row. `matches` are the records its identity matched (`None` when no lookup
/// was made: the ledger's record id is used). A row decided for a write gives up its
/// mapped values to the payload.
pub fn decide(
    sync: &CompiledSync,
    target: &TargetInfo,
    candidate: &mut Candidate,
    matches: Option<&[Record]>,
) -> Decision {
    let record_id = |record: &Record| {
        field_of(record, "Id")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match sync.mode {
        Mode::Remove => match matches {
            None => match candidate.known_id() {
                Some(id) => Decision::Write {
                    operation: Operation::Delete,
                    id: Some(id.to_string()),
                    payload: Map::new(),
                },
                None => Decision::Skip {
                    reason: SkipReason::AlreadyRemoved,
                    id: None,
                },
            },
            Some([]) => Decision::Skip {
                reason: SkipReason::AlreadyRemoved,
                id: None,
            },
            Some([record]) => Decision::Write {
                operation: Operation::Delete,
                id: record_id(record),
                payload: Map::new(),
            },
            Some(many) => duplicate(many.len()),
        },
        Mode::Create => {
            if let Some(id) = candidate.prior.as_ref().and_then(|p| p.record_id.as_ref()) {
                return Decision::Skip {
                    reason: SkipReason::Exists,
                    id: Some(id.clone()),
                };
            }
            if sync.identity_target.is_some() {
                if let Some(existing) = matches.and_then(|m| m.first()) {
                    return Decision::Skip {
                        reason: SkipReason::Exists,
                        id: record_id(existing),
                    };
                }
            } else if candidate
                .prior
                .as_ref()
                .is_some_and(|p| p.outcome == "pending_create")
            {
                return Decision::Skip {
                    reason: SkipReason::UnknownCreate,
                    id: None,
                };
            }
            Decision::Write {
                operation: Operation::Create,
                id: None,
                payload: take_create_payload(sync, candidate),
            }
        }
        Mode::Update | Mode::UpdateOrCreate => {
            if matches.is_none() && upserts_without_lookup(sync, target) {
                return Decision::Write {
                    operation: Operation::Upsert,
                    id: None,
                    payload: take_create_payload(sync, candidate),
                };
            }
            let (id, current) = match matches {
                None => match candidate.known_id() {
                    Some(id) => (Some(id.to_string()), None),
                    None => (None, None),
                },
                Some([]) => (None, None),
                Some([record]) => (record_id(record), Some(record)),
                Some(many) => {
                    if target.is_lead && sync.config.skip_converted {
                        return Decision::Skip {
                            reason: SkipReason::Duplicate(many.len()),
                            id: None,
                        };
                    }
                    return duplicate(many.len());
                }
            };
            let Some(id) = id else {
                return if sync.mode == Mode::Update {
                    Decision::Skip {
                        reason: SkipReason::Unmatched,
                        id: None,
                    }
                } else {
                    Decision::Write {
                        operation: Operation::Create,
                        id: None,
                        payload: take_create_payload(sync, candidate),
                    }
                };
            };
            if let Some(current) = current
                && target.is_lead
                && sync.config.skip_converted
                && field_of(current, "IsConverted").and_then(Value::as_bool) == Some(true)
            {
                return Decision::Skip {
                    reason: SkipReason::Converted,
                    id: Some(id),
                };
            }
            // Without a looked-up record (no lookup was made) a row still waiting on target
            // filters cannot be tested: it is not written.
            let passes = match current {
                Some(record) => {
                    passes_target_filters(sync, candidate.row.pending_filters.as_deref(), |name| {
                        field_of(record, name)
                    })
                }
                None => candidate.row.pending_filters.is_none(),
            };
            if !passes {
                return Decision::Skip {
                    reason: SkipReason::TargetFiltered,
                    id: Some(id),
                };
            }
            let create_only: HashSet<String> = sync
                .fields
                .iter()
                .filter(|f| f.create_only)
                .map(|f| f.target.to_ascii_lowercase())
                .collect();
            let mut payload = std::mem::take(&mut candidate.row.values);
            payload.retain(|k, v| {
                (sync.config.insert_null_values || !v.is_null())
                    && (!create_only.contains(&k.to_ascii_lowercase())
                        || current.is_some_and(|c| is_empty(field_of(c, k))))
            });
            if let Some(current) = current
                && sync.config.only_sync_different
                && payload
                    .iter()
                    .all(|(k, v)| values_equal(v, field_of(current, k)))
            {
                return Decision::Skip {
                    reason: SkipReason::Equal,
                    id: Some(id),
                };
            }
            if payload.is_empty() {
                return Decision::Skip {
                    reason: SkipReason::Equal,
                    id: Some(id),
                };
            }
            Decision::Write {
                operation: Operation::Update,
                id: Some(id),
                payload,
            }
        }
    }
}

/// Which object of the sync a decision writes: the target object (Contact for
/// `multi:leadOrContact`) or, for `multi:leadOrContact`, Lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The target object, or Contact.
    Primary,
    /// Lead (`multi:leadOrContact` only).
    Lead,
}

/// The update payload for a matched record: nulls per `insert_null_values`, create-only
/// fields only where Salesforce's value is empty (without current values they are left
/// out), restricted to fields the object has.
fn update_payload(
    sync: &CompiledSync,
    candidate: &Candidate,
    current: Option<&Record>,
    has_field: &dyn Fn(&str) -> bool,
) -> Map<String, Value> {
    let create_only: HashSet<String> = sync
        .fields
        .iter()
        .filter(|f| f.create_only)
        .map(|f| f.target.to_ascii_lowercase())
        .collect();
    candidate
        .row
        .values
        .iter()
        .filter(|(k, _)| has_field(k))
        .filter(|(_, v)| sync.config.insert_null_values || !v.is_null())
        .filter(|(k, _)| {
            !create_only.contains(&k.to_ascii_lowercase())
                || current.is_some_and(|c| is_empty(field_of(c, k)))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Decides one row of a `multi:leadOrContact` sync: a matching Contact is updated; else a
/// matching Lead is updated, or — when converted — the Contact it became
/// (`ConvertedContactId`); with no match the row is created as `create_records_as` says
/// (`ContactIfAccountId`: a Contact when the row carries an AccountId, else a Lead).
/// Payloads keep only the fields the chosen object has.
pub fn decide_lead_or_contact(
    sync: &CompiledSync,
    candidate: &Candidate,
    contacts: &[Record],
    leads: &[Record],
    contact_has: &dyn Fn(&str) -> bool,
    lead_has: &dyn Fn(&str) -> bool,
) -> (Side, Decision) {
    let record_id = |record: &Record| {
        field_of(record, "Id")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let update = |side: Side, id: Option<String>, current: Option<&Record>| {
        let has: &dyn Fn(&str) -> bool = match side {
            Side::Primary => contact_has,
            Side::Lead => lead_has,
        };
        if sync.mode == Mode::Create {
            return (
                side,
                Decision::Skip {
                    reason: SkipReason::Exists,
                    id,
                },
            );
        }
        let payload = update_payload(sync, candidate, current, has);
        if payload.is_empty() {
            return (
                side,
                Decision::Skip {
                    reason: SkipReason::Equal,
                    id,
                },
            );
        }
        (
            side,
            Decision::Write {
                operation: Operation::Update,
                id,
                payload,
            },
        )
    };
    match contacts {
        [] => {}
        [contact] => return update(Side::Primary, record_id(contact), Some(contact)),
        many => return (Side::Primary, duplicate(many.len())),
    }
    match leads {
        [] => {}
        [lead] => {
            let converted = field_of(lead, "IsConverted").and_then(Value::as_bool) == Some(true);
            let contact_id = field_of(lead, "ConvertedContactId")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string);
            return match (converted, contact_id) {
                (true, Some(contact_id)) => update(Side::Primary, Some(contact_id), None),
                (true, None) => (
                    Side::Lead,
                    Decision::Skip {
                        reason: SkipReason::Converted,
                        id: record_id(lead),
                    },
                ),
                (false, _) => update(Side::Lead, record_id(lead), Some(lead)),
            };
        }
        many => return (Side::Lead, duplicate(many.len())),
    }
    if sync.mode == Mode::Update {
        return (
            Side::Primary,
            Decision::Skip {
                reason: SkipReason::Unmatched,
                id: None,
            },
        );
    }
    let has_account = candidate
        .row
        .values
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("AccountId") && !is_empty(Some(v)));
    let side = match sync.config.create_records_as {
        CreateRecordsAs::Contact => Side::Primary,
        CreateRecordsAs::Lead => Side::Lead,
        CreateRecordsAs::ContactIfAccountId if has_account => Side::Primary,
        CreateRecordsAs::ContactIfAccountId => Side::Lead,
    };
    let has: &dyn Fn(&str) -> bool = match side {
        Side::Primary => contact_has,
        Side::Lead => lead_has,
    };
    let payload = create_payload(sync, candidate)
        .into_iter()
        .filter(|(k, _)| has(k))
        .collect();
    (
        side,
        Decision::Write {
            operation: Operation::Create,
            id: None,
            payload,
        },
    )
}

fn duplicate(count: usize) -> Decision {
    Decision::Fail {
        code: "DUPLICATE_IDENTITY".into(),
        message: format!(
            "{count} records match this identity; Ferry does not guess which one to write"
        ),
    }
}

/// Whether a string looks like a Salesforce record id (15 or 18 alphanumerics).
pub fn looks_like_id(value: &str) -> bool {
    (value.len() == 15 || value.len() == 18) && value.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Reference fields of a payload whose value cannot be a record id.
pub fn malformed_references(target: &TargetInfo, payload: &Map<String, Value>) -> Vec<String> {
    payload
        .iter()
        .filter(|(k, _)| crate::contains_lowercase(&target.reference_fields, k))
        .filter(|(_, v)| match v {
            Value::String(s) => !s.is_empty() && !looks_like_id(s),
            Value::Null => false,
            _ => true,
        })
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::spec::{ModelFieldRef, ModelInfo, SyncDocument, compile};

    /// A Lead sync of model fields `email` (the identity), `name` and `company`.
    pub(crate) fn sync(mode: &str, config: Value, identity: bool) -> CompiledSync {
        let mut document = json!({
            "name": "s", "mode": mode,
            "target": {"connection_id": Uuid::nil(), "object": "Lead", "configuration": config},
            "fields": [
                {"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}},
                {"target": "Company", "source": {"model_id": Uuid::nil(), "field": "company"}, "sync_mode": "create"}
            ],
            "schedule": {"frequency": "manual"}
        });
        if identity {
            document["identity"] = json!({"source": {"model_id": Uuid::nil(), "field": "email"}, "target": "Email", "function": "Equality"});
        }
        let document: SyncDocument = serde_json::from_value(document).unwrap();
        let model = ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name", "company"]
                .iter()
                .map(|n| ModelFieldRef {
                    id: n.to_string(),
                    name: n.to_string(),
                })
                .collect(),
            identifier: Some("email".into()),
        };
        compile(&document, &model).unwrap()
    }

    fn candidate(values: Value, prior: Option<LedgerEntry>) -> Candidate {
        Candidate {
            row: MappedRow {
                identity: "a@x.com".into(),
                values: values.as_object().unwrap().clone(),
                pending_filters: None,
            },
            hash: "h".into(),
            prior: prior.map(Box::new),
            window: 0,
        }
    }

    fn record(value: Value) -> Record {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn update_or_create() {
        let s = sync("updateOrCreate", json!({}), true);
        let target = TargetInfo::default();
        let c = candidate(json!({"LastName": "Ann", "Company": null}), None);
        // No match: create with the identity value and without nulls.
        let Decision::Write {
            operation, payload, ..
        } = decide(&s, &target, &mut c.clone(), Some(&[]))
        else {
            panic!()
        };
        assert_eq!(operation, Operation::Create);
        assert_eq!(
            Value::Object(payload),
            json!({"LastName": "Ann", "Email": "a@x.com"})
        );
        // One match: update; create-only Company kept out when Salesforce has a value.
        let c = candidate(json!({"LastName": "Ann", "Company": "New"}), None);
        let matched = [record(
            json!({"Id": "00Q000000000001AAA", "Company": "Old"}),
        )];
        let Decision::Write {
            operation,
            id,
            payload,
        } = decide(&s, &target, &mut c.clone(), Some(&matched))
        else {
            panic!()
        };
        assert_eq!(operation, Operation::Update);
        assert_eq!(id.as_deref(), Some("00Q000000000001AAA"));
        assert_eq!(Value::Object(payload), json!({"LastName": "Ann"}));
        let empty = [record(json!({"Id": "00Q000000000001AAA", "Company": null}))];
        let Decision::Write { payload, .. } = decide(&s, &target, &mut c.clone(), Some(&empty))
        else {
            panic!()
        };
        assert_eq!(
            Value::Object(payload),
            json!({"LastName": "Ann", "Company": "New"})
        );
        // Several matches fail.
        let two = [matched[0].clone(), matched[0].clone()];
        assert!(matches!(
            decide(&s, &target, &mut c.clone(), Some(&two)),
            Decision::Fail { .. }
        ));
    }

    /// Mode update on Contact with a model filter on `age` (1) and a target filter on
    /// `Status__c` (2), combined by `logic`.
    fn filtered_sync(logic: Option<&str>) -> CompiledSync {
        let mut document = json!({
            "name": "s", "mode": "update",
            "target": {"connection_id": Uuid::nil(), "object": "Contact"},
            "identity": {"source": {"model_id": Uuid::nil(), "field": "email"}, "target": "Email", "function": "Equality"},
            "fields": [{"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}}],
            "filters": [
                {"field_id": "age", "function": "GreaterThanEqual", "value": 18},
                {"field_id": "Status__c", "field_type": "Target", "function": "StringOneOf", "value": ["Open", "Working"]}
            ],
            "schedule": {"frequency": "manual"}
        });
        if let Some(logic) = logic {
            document["filter_logic"] = json!(logic);
        }
        let document: SyncDocument = serde_json::from_value(document).unwrap();
        let model = ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name", "age"]
                .iter()
                .map(|n| ModelFieldRef {
                    id: n.to_string(),
                    name: n.to_string(),
                })
                .collect(),
            identifier: Some("email".into()),
        };
        compile(&document, &model).unwrap()
    }

    fn waiting(pending: Option<Vec<Option<bool>>>) -> Candidate {
        let mut c = candidate(json!({"LastName": "Ann"}), None);
        c.row.pending_filters = pending;
        c
    }

    #[test]
    fn target_filters_test_the_matched_record() {
        let s = filtered_sync(None);
        let t = TargetInfo::default();
        assert!(needs_current_values(&s, &t), "every row is looked up");
        assert!(
            !needs_mapped_values(&s, &t),
            "only the filter fields are read"
        );
        // The model filter passed; the target filter decides.
        let c = waiting(Some(vec![Some(true), None]));
        let open = [record(
            json!({"Id": "003000000000001AAA", "status__c": "Open"}),
        )];
        assert!(matches!(
            decide(&s, &t, &mut c.clone(), Some(&open)),
            Decision::Write {
                operation: Operation::Update,
                ..
            }
        ));
        for current in [json!("Closed"), json!(null)] {
            let closed = [record(
                json!({"Id": "003000000000001AAA", "Status__c": current}),
            )];
            let decision = decide(&s, &t, &mut c.clone(), Some(&closed));
            let Decision::Skip { reason, id } = decision else {
                panic!("{current}: {decision:?}")
            };
            assert_eq!(reason, SkipReason::TargetFiltered);
            assert_eq!(id.as_deref(), Some("003000000000001AAA"));
            assert!(reason.excluded_by_filter() && !reason.is_warning());
        }
        // A field missing from the record is tested as null.
        let bare = [record(json!({"Id": "003000000000001AAA"}))];
        assert!(matches!(
            decide(&s, &t, &mut c.clone(), Some(&bare)),
            Decision::Skip {
                reason: SkipReason::TargetFiltered,
                ..
            }
        ));
        // No record: unmatched as before (a warning, retried next run).
        assert!(matches!(
            decide(&s, &t, &mut c.clone(), Some(&[])),
            Decision::Skip {
                reason: SkipReason::Unmatched,
                ..
            }
        ));
        // Without a looked-up record the filters cannot be tested: not written.
        let mut known = waiting(Some(vec![Some(true), None]));
        known.prior = Some(Box::new(LedgerEntry::new(
            "a@x.com",
            Some("h0".into()),
            Some("003000000000001AAA".into()),
            "updated",
            None,
        )));
        assert!(matches!(
            decide(&s, &t, &mut known.clone(), None),
            Decision::Skip {
                reason: SkipReason::TargetFiltered,
                ..
            }
        ));
        // A row the model filters already let through is written whatever the target holds.
        let decided = waiting(None);
        let closed = [record(
            json!({"Id": "003000000000001AAA", "Status__c": "Closed"}),
        )];
        assert!(matches!(
            decide(&s, &t, &mut decided.clone(), Some(&closed)),
            Decision::Write { .. }
        ));
    }

    #[test]
    fn filter_logic_mixes_model_and_target_filters() {
        // "1 OR NOT 2": adults always; minors only where the record is neither Open nor
        // Working. Mapping kept the minor waiting with filter 1 false.
        let s = filtered_sync(Some("1 OR NOT 2"));
        let minor = Some(vec![Some(false), None]);
        let status = |value: &str| {
            [record(
                json!({"Id": "003000000000001AAA", "Status__c": value}),
            )]
        };
        let decide_with = |value: &str| {
            decide(
                &s,
                &TargetInfo::default(),
                &mut waiting(minor.clone()),
                Some(&status(value)),
            )
        };
        assert!(matches!(decide_with("Closed"), Decision::Write { .. }));
        assert!(matches!(
            decide_with("Open"),
            Decision::Skip {
                reason: SkipReason::TargetFiltered,
                ..
            }
        ));
        // The function alone, with values from anywhere (the database path).
        let closed = json!("Closed");
        let working = json!("Working");
        assert!(passes_target_filters(&s, minor.as_deref(), |_| Some(
            &closed
        )));
        assert!(!passes_target_filters(&s, minor.as_deref(), |_| Some(
            &working
        )));
        assert!(passes_target_filters(&s, None, |_| Some(&working)));
    }

    #[test]
    fn insert_null_values_sends_nulls() {
        let s = sync("updateOrCreate", json!({"insert_null_values": true}), true);
        let c = candidate(json!({"LastName": "Ann", "Company": null}), None);
        let Decision::Write { payload, .. } =
            decide(&s, &TargetInfo::default(), &mut c.clone(), Some(&[]))
        else {
            panic!()
        };
        assert_eq!(payload["Company"], Value::Null);
    }

    #[test]
    fn only_sync_different_skips_equal_rows() {
        let s = sync("update", json!({"only_sync_different": true}), true);
        let c = candidate(json!({"LastName": "Ann", "Company": null}), None);
        let same = [record(
            json!({"Id": "00Q000000000001AAA", "LastName": "Ann", "Company": "X"}),
        )];
        assert!(matches!(
            decide(&s, &TargetInfo::default(), &mut c.clone(), Some(&same)),
            Decision::Skip {
                reason: SkipReason::Equal,
                ..
            }
        ));
        let other = [record(
            json!({"Id": "00Q000000000001AAA", "LastName": "Bob"}),
        )];
        assert!(matches!(
            decide(&s, &TargetInfo::default(), &mut c.clone(), Some(&other)),
            Decision::Write {
                operation: Operation::Update,
                ..
            }
        ));
        assert!(matches!(
            decide(&s, &TargetInfo::default(), &mut c.clone(), Some(&[])),
            Decision::Skip {
                reason: SkipReason::Unmatched,
                ..
            }
        ));
    }

    #[test]
    fn skip_converted_and_duplicates() {
        let s = sync("updateOrCreate", json!({"skip_converted": true}), true);
        let lead = TargetInfo {
            is_lead: true,
            ..TargetInfo::default()
        };
        let c = candidate(json!({"LastName": "Ann"}), None);
        let converted = [record(
            json!({"Id": "00Q000000000001AAA", "IsConverted": true}),
        )];
        assert!(matches!(
            decide(&s, &lead, &mut c.clone(), Some(&converted)),
            Decision::Skip {
                reason: SkipReason::Converted,
                ..
            }
        ));
        let two = [
            record(json!({"Id": "00Q000000000001AAA"})),
            record(json!({"Id": "00Q000000000002AAA"})),
        ];
        assert!(matches!(
            decide(&s, &lead, &mut c.clone(), Some(&two)),
            Decision::Skip {
                reason: SkipReason::Duplicate(2),
                ..
            }
        ));
    }

    #[test]
    fn create_never_duplicates() {
        let s = sync("create", json!({}), false);
        let t = TargetInfo::default();
        let pending = LedgerEntry::new("a@x.com", None, None, "pending_create", None);
        assert!(matches!(
            decide(
                &s,
                &t,
                &mut candidate(json!({"LastName": "A"}), Some(pending)),
                None
            ),
            Decision::Skip {
                reason: SkipReason::UnknownCreate,
                ..
            }
        ));
        let created = LedgerEntry::new(
            "a@x.com",
            Some("old".into()),
            Some("00Q000000000001AAA".into()),
            "inserted",
            None,
        );
        assert!(matches!(
            decide(
                &s,
                &t,
                &mut candidate(json!({"LastName": "A"}), Some(created)),
                None
            ),
            Decision::Skip {
                reason: SkipReason::Exists,
                ..
            }
        ));
        assert!(matches!(
            decide(&s, &t, &mut candidate(json!({"LastName": "A"}), None), None),
            Decision::Write {
                operation: Operation::Create,
                ..
            }
        ));
        let with_identity = sync("create", json!({}), true);
        let existing = [record(json!({"Id": "00Q000000000001AAA"}))];
        assert!(matches!(
            decide(
                &with_identity,
                &t,
                &mut candidate(json!({"LastName": "A"}), None),
                Some(&existing)
            ),
            Decision::Skip {
                reason: SkipReason::Exists,
                ..
            }
        ));
    }

    #[test]
    fn upsert_and_remove() {
        let mut s = sync("updateOrCreate", json!({}), true);
        for field in &mut s.fields {
            field.create_only = false;
        }
        let external = TargetInfo {
            identity_is_external_id: true,
            ..TargetInfo::default()
        };
        assert!(matches!(
            decide(
                &s,
                &external,
                &mut candidate(json!({"LastName": "A"}), None),
                None
            ),
            Decision::Write {
                operation: Operation::Upsert,
                ..
            }
        ));
        let r = sync("remove", json!({}), true);
        let matched = [record(json!({"Id": "00Q000000000001AAA"}))];
        assert!(matches!(
            decide(
                &r,
                &TargetInfo::default(),
                &mut candidate(json!({}), None),
                Some(&matched)
            ),
            Decision::Write {
                operation: Operation::Delete,
                ..
            }
        ));
        assert!(matches!(
            decide(
                &r,
                &TargetInfo::default(),
                &mut candidate(json!({}), None),
                Some(&[])
            ),
            Decision::Skip {
                reason: SkipReason::AlreadyRemoved,
                ..
            }
        ));
    }

    #[test]
    fn equality_and_references() {
        assert!(values_equal(&json!(1), Some(&json!(1.0))));
        assert!(values_equal(&json!("2"), Some(&json!(2))));
        assert!(values_equal(&json!(null), Some(&json!(""))));
        assert!(values_equal(&json!(true), Some(&json!("true"))));
        assert!(values_equal(
            &json!("2024-01-01T00:00:00Z"),
            Some(&json!("2024-01-01T00:00:00.000+0000"))
        ));
        assert!(!values_equal(&json!("a"), Some(&json!("b"))));
        assert!(!values_equal(&json!("a"), None));
        let target = TargetInfo {
            reference_fields: ["accountid".to_string()].into_iter().collect(),
            ..TargetInfo::default()
        };
        let payload = json!({"AccountId": "not-an-id", "LastName": "x"});
        assert_eq!(
            malformed_references(&target, payload.as_object().unwrap()),
            vec!["AccountId"]
        );
        let payload = json!({"AccountId": "001000000000001AAA"});
        assert!(malformed_references(&target, payload.as_object().unwrap()).is_empty());
    }

    #[test]
    fn lead_or_contact_routing() {
        let document: SyncDocument = serde_json::from_value(json!({
            "name": "s", "mode": "updateOrCreate",
            "target": {"connection_id": Uuid::nil(), "object": "multi:leadOrContact",
                       "configuration": {"create_records_as": "ContactIfAccountId"}},
            "identity": {"source": {"model_id": Uuid::nil(), "field": "email"}, "target": "Email", "function": "Equality"},
            "fields": [
                {"target": "LastName", "source": {"model_id": Uuid::nil(), "field": "name"}},
                {"target": "Company", "source": {"model_id": Uuid::nil(), "field": "company"}},
                {"target": "AccountId", "source": {"model_id": Uuid::nil(), "field": "account"}}
            ],
            "schedule": {"frequency": "manual"}
        }))
        .unwrap();
        let model = ModelInfo {
            id: Uuid::nil(),
            fields: ["email", "name", "company", "account"]
                .iter()
                .map(|n| ModelFieldRef {
                    id: n.to_string(),
                    name: n.to_string(),
                })
                .collect(),
            identifier: None,
        };
        let s = compile(&document, &model).unwrap();
        let contact_has =
            |f: &str| ["lastname", "accountid", "email"].contains(&f.to_ascii_lowercase().as_str());
        let lead_has =
            |f: &str| ["lastname", "company", "email"].contains(&f.to_ascii_lowercase().as_str());
        let row = |account: Value| {
            candidate(
                json!({"LastName": "A", "Company": "C", "AccountId": account}),
                None,
            )
        };
        // No match: Contact when an AccountId is mapped, else Lead; payloads fit the object.
        let (side, decision) = decide_lead_or_contact(
            &s,
            &row(json!("001000000000001AAA")),
            &[],
            &[],
            &contact_has,
            &lead_has,
        );
        assert_eq!(side, Side::Primary);
        let Decision::Write { payload, .. } = decision else {
            panic!()
        };
        assert_eq!(
            Value::Object(payload),
            json!({"LastName": "A", "AccountId": "001000000000001AAA", "Email": "a@x.com"})
        );
        let (side, decision) =
            decide_lead_or_contact(&s, &row(Value::Null), &[], &[], &contact_has, &lead_has);
        assert_eq!(side, Side::Lead);
        let Decision::Write { payload, .. } = decision else {
            panic!()
        };
        assert_eq!(
            Value::Object(payload),
            json!({"LastName": "A", "Company": "C", "Email": "a@x.com"})
        );
        // A Contact match wins; a converted Lead updates its Contact.
        let contact = [record(json!({"Id": "003000000000001AAA"}))];
        let (side, decision) = decide_lead_or_contact(
            &s,
            &row(Value::Null),
            &contact,
            &[],
            &contact_has,
            &lead_has,
        );
        assert_eq!(side, Side::Primary);
        assert!(matches!(
            decision,
            Decision::Write {
                operation: Operation::Update,
                ..
            }
        ));
        let converted = [record(
            json!({"Id": "00Q000000000001AAA", "IsConverted": true, "ConvertedContactId": "003000000000009AAA"}),
        )];
        let (side, decision) = decide_lead_or_contact(
            &s,
            &row(Value::Null),
            &[],
            &converted,
            &contact_has,
            &lead_has,
        );
        assert_eq!(side, Side::Primary);
        let Decision::Write { id, .. } = decision else {
            panic!()
        };
        assert_eq!(id.as_deref(), Some("003000000000009AAA"));
        let open = [record(
            json!({"Id": "00Q000000000001AAA", "IsConverted": false}),
        )];
        let (side, decision) =
            decide_lead_or_contact(&s, &row(Value::Null), &[], &open, &contact_has, &lead_has);
        assert_eq!(side, Side::Lead);
        assert!(matches!(
            decision,
            Decision::Write {
                operation: Operation::Update,
                ..
            }
        ));
    }
}
