//! The Salesforce side of a run: the target's describe, identity lookups (batched SOQL with
//! every literal escaped by `ferry-soql`) and writes through sObject Collections and Bulk
//! API 1.0. Every call goes through the connection's client, so each one is counted against
//! the connection's daily budget before it is made.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use ferry_salesforce::bulk1::{Bulk1ContentType, Bulk1JobRequest, Bulk1Operation, ConcurrencyMode};
use ferry_salesforce::bulk2::PollOptions;
use ferry_salesforce::{
    ApiErrorItem, CollectionOptions, QueryScope, Record, SObjectDescribe, SalesforceClient,
    SalesforceError, SaveResult,
};
use serde_json::{Map, Value};

use crate::plan::{Operation, TargetInfo, needs_current_values, upserts_without_lookup};
use crate::spec::{CompiledSync, Mode};

/// One record to write: its Id (updates, deletes) and its field values.
pub type WriteRow = (Option<String>, Map<String, Value>);

/// Identity values per lookup query (keeps the SOQL well under URL limits).
pub const LOOKUP_CHUNK: usize = 100;

/// Field types whose SOQL literals are numbers.
const NUMERIC_TYPES: [&str; 5] = ["double", "int", "currency", "percent", "long"];

/// The target object of a run.
#[derive(Debug, Clone)]
pub struct SalesforceTarget {
    client: SalesforceClient,
    /// The object's API name.
    pub object: String,
    /// What planning needs.
    pub info: TargetInfo,
    identity_field: Option<String>,
    identity_numeric: bool,
    lookup_fields: Vec<String>,
    /// Whether lookups are needed at all.
    pub lookups: bool,
    /// The object's field names (lowercase).
    fields: std::collections::HashSet<String>,
}

/// Normalizes an identity value for matching (Salesforce compares case-insensitively).
pub fn identity_key(value: &str) -> String {
    value.trim().to_lowercase()
}

fn describe_field<'a>(
    describe: &'a SObjectDescribe,
    name: &str,
) -> Option<&'a ferry_salesforce::FieldDescribe> {
    describe
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

impl SalesforceTarget {
    /// Describes the object and works out the lookup query's fields.
    pub async fn prepare(
        client: SalesforceClient,
        sync: &CompiledSync,
    ) -> Result<SalesforceTarget, SalesforceError> {
        let object = sync.object.clone();
        SalesforceTarget::prepare_object(client, sync, &object).await
    }

    /// Like [`SalesforceTarget::prepare`] for a named object (`Contact` and `Lead` of a
    /// Lead-or-Contact sync). Lead lookups of a Lead-or-Contact sync also read
    /// `IsConverted` and `ConvertedContactId`.
    pub async fn prepare_object(
        client: SalesforceClient,
        sync: &CompiledSync,
        object: &str,
    ) -> Result<SalesforceTarget, SalesforceError> {
        let describe = client.describe(object).await?;
        let identity = sync
            .identity_target
            .as_deref()
            .and_then(|name| describe_field(&describe, name));
        let info = TargetInfo {
            identity_is_external_id: identity.is_some_and(|f| f.external_id),
            reference_fields: describe
                .fields
                .iter()
                .filter(|f| f.field_type == "reference")
                .map(|f| f.name.to_ascii_lowercase())
                .collect(),
            is_lead: describe.name.eq_ignore_ascii_case("Lead"),
        };
        let mut lookup_fields = vec!["Id".to_string()];
        let mut add = |name: &str| {
            if let Some(field) = describe_field(&describe, name)
                && !lookup_fields
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&field.name))
            {
                lookup_fields.push(field.name.clone());
            }
        };
        if let Some(field) = identity {
            add(&field.name);
        }
        if needs_current_values(sync, &info) {
            for field in &sync.fields {
                add(&field.target);
            }
            if info.is_lead {
                add("IsConverted");
            }
        }
        if sync.object == crate::spec::LEAD_OR_CONTACT && info.is_lead {
            add("IsConverted");
            add("ConvertedContactId");
        }
        let lookups = identity.is_some() && !upserts_without_lookup(sync, &info);
        let fields = describe
            .fields
            .iter()
            .map(|f| f.name.to_ascii_lowercase())
            .collect();
        Ok(SalesforceTarget {
            object: describe.name.clone(),
            identity_field: identity.map(|f| f.name.clone()),
            identity_numeric: identity
                .is_some_and(|f| NUMERIC_TYPES.contains(&f.field_type.as_str())),
            lookup_fields,
            lookups,
            info,
            client,
            fields,
        })
    }

    /// The records matching each identity value, keyed by [`identity_key`].
    pub async fn lookup(
        &self,
        identities: &[String],
    ) -> Result<HashMap<String, Vec<Record>>, SalesforceError> {
        let mut found: HashMap<String, Vec<Record>> = HashMap::new();
        let Some(identity_field) = &self.identity_field else {
            return Ok(found);
        };
        let values: Vec<&str> = if self.identity_numeric {
            identities
                .iter()
                .map(String::as_str)
                .filter(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
                .collect()
        } else {
            identities.iter().map(String::as_str).collect()
        };
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let fields: Vec<&str> = self.lookup_fields.iter().map(String::as_str).collect();
            let soql = if self.identity_numeric {
                // Numbers were checked to parse as finite numbers above; they are literals.
                format!(
                    "SELECT {} FROM {} WHERE {identity_field} IN ({})",
                    fields.join(", "),
                    self.object,
                    chunk.join(", ")
                )
            } else {
                ferry_salesforce::query::select_where_in(
                    &self.object,
                    &fields,
                    identity_field,
                    chunk,
                )?
            };
            let records = self.client.query_all_pages(&soql, QueryScope::Live).await?;
            for record in records {
                let key = match record.get(identity_field.as_str()) {
                    Some(Value::String(s)) => identity_key(s),
                    Some(Value::Number(n)) => identity_key(&n.to_string()),
                    _ => continue,
                };
                found.entry(key).or_default().push(record);
            }
        }
        if self.identity_numeric {
            // Numeric identities: "42" and "42.0" are the same value.
            let mut normalized = HashMap::new();
            for (key, records) in found {
                let canonical = key.parse::<f64>().map(|f| f.to_string()).unwrap_or(key);
                normalized.insert(canonical, records);
            }
            return Ok(normalized);
        }
        Ok(found)
    }

    /// Whether the object has a field.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.contains(&name.to_ascii_lowercase())
    }

    /// The key a row's identity is looked up under.
    pub fn lookup_key(&self, identity: &str) -> String {
        if self.identity_numeric {
            identity
                .trim()
                .parse::<f64>()
                .map(|f| f.to_string())
                .unwrap_or_else(|_| identity_key(identity))
        } else {
            identity_key(identity)
        }
    }

    /// Writes one batch (≤ 200 records) through sObject Collections; results are in input
    /// order. `UNABLE_TO_LOCK_ROW` is resubmitted by the client per its retry policy.
    pub async fn write_rest(
        &self,
        operation: Operation,
        rows: &[WriteRow],
    ) -> Result<Vec<SaveResult>, SalesforceError> {
        let options = CollectionOptions::default();
        match operation {
            Operation::Create => {
                let records = rows.iter().map(|(_, payload)| nest(payload)).collect();
                self.client
                    .create_many(&self.object, records, options)
                    .await
            }
            Operation::Update => {
                let records = rows
                    .iter()
                    .map(|(id, payload)| {
                        let mut record = nest(payload);
                        record.insert("Id".into(), id.clone().map_or(Value::Null, Value::String));
                        record
                    })
                    .collect();
                self.client
                    .update_many(&self.object, records, options)
                    .await
            }
            Operation::Upsert => {
                let field = self.identity_field.as_deref().unwrap_or("Id");
                let records = rows.iter().map(|(_, payload)| nest(payload)).collect();
                self.client
                    .upsert_many(&self.object, field, records, options)
                    .await
            }
            Operation::Delete => {
                let ids: Vec<&str> = rows.iter().filter_map(|(id, _)| id.as_deref()).collect();
                self.client.delete_many(&ids, options).await
            }
        }
    }

    /// Writes batches (≤ 10,000 records each) through one Bulk API 1.0 job with the given
    /// concurrency mode (`Serial`: Salesforce processes one batch at a time), and maps each
    /// batch's positional results back to its rows. A batch Salesforce could not process
    /// fails its rows (`BULK_BATCH_FAILED` with Salesforce's state message); a job that
    /// cannot be created or closed is an error.
    pub async fn write_bulk_job(
        &self,
        operation: Operation,
        batches: &[Vec<WriteRow>],
        serial: bool,
        poll: PollOptions,
    ) -> Result<Vec<Vec<SaveResult>>, SalesforceError> {
        let bulk_operation = match operation {
            Operation::Create => Bulk1Operation::Insert,
            Operation::Update => Bulk1Operation::Update,
            Operation::Upsert => Bulk1Operation::Upsert,
            Operation::Delete => Bulk1Operation::Delete,
        };
        let request = Bulk1JobRequest {
            operation: bulk_operation,
            object: self.object.clone(),
            external_id_field_name: match operation {
                Operation::Upsert => self.identity_field.clone(),
                _ => None,
            },
            concurrency_mode: if serial {
                ConcurrencyMode::Serial
            } else {
                ConcurrencyMode::Parallel
            },
            content_type: Bulk1ContentType::Json,
        };
        let job = self.client.create_bulk1_job(&request).await?;
        let mut batch_ids = Vec::with_capacity(batches.len());
        for rows in batches {
            let records: Vec<Value> = rows
                .iter()
                .map(|(id, payload)| {
                    let mut record = match operation {
                        Operation::Delete => Map::new(),
                        _ => nest(payload),
                    };
                    if let Some(id) = id {
                        record.insert("Id".into(), Value::String(id.clone()));
                    }
                    Value::Object(record)
                })
                .collect();
            let body = serde_json::to_vec(&records)
                .map_err(|e| SalesforceError::InvalidInput(format!("bulk batch: {e}")))?;
            let batch = self
                .client
                .add_bulk1_batch(&job.id, Bulk1ContentType::Json, Bytes::from(body))
                .await?;
            batch_ids.push(batch.id);
        }
        self.client.close_bulk1_job(&job.id).await?;
        let mut out = Vec::with_capacity(batches.len());
        for (rows, batch_id) in batches.iter().zip(&batch_ids) {
            let info = self
                .client
                .wait_for_bulk1_batch(&job.id, batch_id, poll)
                .await?;
            if info.state == "Failed" || info.state == "Not Processed" {
                let message = info
                    .state_message
                    .unwrap_or_else(|| format!("the bulk batch ended in state {}", info.state));
                let error = ApiErrorItem::new("BULK_BATCH_FAILED", message, Vec::new());
                out.push(
                    rows.iter()
                        .map(|_| SaveResult {
                            id: None,
                            success: false,
                            created: None,
                            errors: vec![error.clone()],
                        })
                        .collect(),
                );
                continue;
            }
            let results = self.client.bulk1_batch_results(&job.id, batch_id).await?;
            if results.len() != rows.len() {
                return Err(SalesforceError::Parse {
                    context: "bulk 1.0 batch results".into(),
                    message: format!("{} results for {} records", results.len(), rows.len()),
                });
            }
            out.push(
                results
                    .into_iter()
                    .map(|result| SaveResult {
                        id: result.id.filter(|id| !id.is_empty()),
                        success: result.success,
                        created: Some(result.created),
                        errors: result.errors,
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// Turns `Relationship.ExternalIdField` keys into Salesforce's nested reference form
/// (`{"Account": {"Ext__c": "A-1"}}`); a null reference is left out (a parent cannot be
/// cleared through an external id).
pub fn nest(payload: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in payload {
        match key.split_once('.') {
            Some((relationship, field)) => {
                if value.is_null() {
                    continue;
                }
                let mut reference = Map::new();
                reference.insert(field.to_string(), value.clone());
                out.insert(relationship.to_string(), Value::Object(reference));
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// Whether an error is Salesforce's "Foreign key external ID: … not found" (a parent
/// referenced by an external id that matches no record, or several).
pub fn is_external_reference_error(item: &ApiErrorItem) -> bool {
    item.message.starts_with("Foreign key external ID")
}

/// Polling for Bulk batches: start fast, back off to a few seconds, give up after an hour.
pub fn bulk_poll() -> PollOptions {
    PollOptions {
        initial_interval: Duration::from_millis(200),
        max_interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3600),
    }
}

/// Whether an error item is about an invalid reference (a lookup id that does not exist or
/// is malformed).
pub fn is_reference_error(item: &ApiErrorItem) -> bool {
    matches!(
        item.error_code.as_str(),
        "INVALID_CROSS_REFERENCE_KEY"
            | "MALFORMED_ID"
            | "INVALID_ID_FIELD"
            | "FIELD_INTEGRITY_EXCEPTION"
    )
}

/// Whether the mode reads Salesforce before writing (for logs).
pub fn mode_reads(mode: Mode) -> bool {
    mode != Mode::Create
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn external_id_references_are_nested() {
        let payload = json!({"LastName": "A", "Account.Ext__c": "A-1", "Parent__r.Key__c": null});
        assert_eq!(
            Value::Object(nest(payload.as_object().unwrap())),
            json!({"LastName": "A", "Account": {"Ext__c": "A-1"}})
        );
        let error = ApiErrorItem::new(
            "INVALID_FIELD",
            "Foreign key external ID: x not found for field Ext__c in entity Account",
            vec![],
        );
        assert!(is_external_reference_error(&error));
        assert!(!is_reference_error(&error));
    }
}
