//! Records over REST: single-record CRUD and upsert (spec §3.6), sObject Collections
//! (§3.8), `/limits` (§3.2) and the replication feeds `updated`/`deleted`.
//!
//! Collections calls take at most 200 records (refused locally otherwise). Results are per
//! record, in input order, with `statusCode` errors. Records that fail only with
//! `UNABLE_TO_LOCK_ROW` are resubmitted with backoff (per record with `allOrNone: false`;
//! the whole request with `allOrNone: true`, where a lock failure rolls everything back).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::client::{Call, SalesforceClient};
use crate::describe::check_name;
use crate::error::{ApiErrorItem, Result, SalesforceError};
use crate::query::Record;

/// Maximum records per sObject Collections call.
pub const COLLECTION_LIMIT: usize = 200;

/// One record's outcome (SaveResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveResult {
    /// Record id (absent for failed creates).
    pub id: Option<String>,
    /// Whether it succeeded.
    pub success: bool,
    /// Upserts: whether the record was inserted.
    pub created: Option<bool>,
    /// Errors when it failed.
    pub errors: Vec<ApiErrorItem>,
}

impl SaveResult {
    fn from_json(value: &Json) -> Result<SaveResult> {
        let object = value
            .as_object()
            .ok_or_else(|| SalesforceError::parse("collections", "a result is not an object"))?;
        let errors = match object.get("errors") {
            Some(Json::Array(items)) => items.iter().filter_map(ApiErrorItem::from_json).collect(),
            _ => Vec::new(),
        };
        Ok(SaveResult {
            id: object
                .get("id")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            success: object
                .get("success")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            created: object.get("created").and_then(Json::as_bool),
            errors,
        })
    }

    /// Whether the only errors are row-lock contention (worth resubmitting).
    pub fn is_lock_failure(&self) -> bool {
        !self.success
            && !self.errors.is_empty()
            && self.errors.iter().all(ApiErrorItem::is_retryable)
    }

    fn is_rolled_back(&self) -> bool {
        !self.success
            && self
                .errors
                .iter()
                .all(|e| e.error_code == "ALL_OR_NONE_OPERATION_ROLLED_BACK")
    }
}

/// Options for collections calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionOptions {
    /// Roll back every record when one fails.
    pub all_or_none: bool,
    /// Resubmit records that failed with `UNABLE_TO_LOCK_ROW` (per the retry policy).
    pub retry_lock_errors: bool,
}

impl Default for CollectionOptions {
    fn default() -> Self {
        CollectionOptions {
            all_or_none: false,
            retry_lock_errors: true,
        }
    }
}

/// Result of a single-record upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertResult {
    /// The record id (absent on API versions < 46 when updating: 204 has no body).
    pub id: Option<String>,
    /// Whether the record was inserted.
    pub created: bool,
}

/// A limit from `/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Limit {
    /// Maximum.
    pub max: i64,
    /// Remaining.
    pub remaining: i64,
}

/// `GET /limits`: limit name → max/remaining (per-app nested entries are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits(pub BTreeMap<String, Limit>);

impl Limits {
    /// A limit by name.
    pub fn get(&self, name: &str) -> Option<Limit> {
        self.0.get(name).copied()
    }

    /// `DailyApiRequests`.
    pub fn daily_api_requests(&self) -> Option<Limit> {
        self.get("DailyApiRequests")
    }

    fn from_json(value: &Json) -> Result<Limits> {
        let object = value
            .as_object()
            .ok_or_else(|| SalesforceError::parse("limits", "expected an object"))?;
        let mut out = BTreeMap::new();
        for (name, entry) in object {
            let (Some(max), Some(remaining)) = (
                entry.get("Max").and_then(Json::as_i64),
                entry.get("Remaining").and_then(Json::as_i64),
            ) else {
                continue;
            };
            out.insert(name.clone(), Limit { max, remaining });
        }
        Ok(Limits(out))
    }
}

/// `GET /sobjects/{Type}/updated`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdatedRecords {
    /// Ids changed in the window.
    pub ids: Vec<String>,
    /// Start the next window here.
    pub latest_date_covered: Option<String>,
}

/// One deleted record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeletedRecord {
    /// Id.
    pub id: String,
    /// When it was deleted.
    pub deleted_date: Option<String>,
}

/// `GET /sobjects/{Type}/deleted`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeletedRecords {
    /// Deleted records in the window.
    pub deleted_records: Vec<DeletedRecord>,
    /// Oldest date still available.
    pub earliest_date_available: Option<String>,
    /// Start the next window here.
    pub latest_date_covered: Option<String>,
}

/// Percent-encodes an external id value for one path segment. `.` and `..` are refused by
/// the callers (URL normalisation would turn them into directory steps).
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn check_id(id: &str) -> Result<()> {
    if (id.len() == 15 || id.len() == 18) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(SalesforceError::InvalidInput(format!(
            "{id:?} is not a Salesforce record id"
        )))
    }
}

fn check_external_id(value: &str) -> Result<()> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(SalesforceError::InvalidInput(format!(
            "{value:?} cannot be used as an external id in a URL"
        )));
    }
    Ok(())
}

fn check_batch(records: usize) -> Result<()> {
    if records > COLLECTION_LIMIT {
        return Err(SalesforceError::InvalidInput(format!(
            "{records} records given; sObject Collections accept at most {COLLECTION_LIMIT} per call"
        )));
    }
    Ok(())
}

fn with_type(sobject: &str, mut record: Record) -> Record {
    if !record.contains_key("attributes") {
        record.insert("attributes".into(), json!({"type": sobject}));
    }
    record
}

/// Which collections operation.
#[derive(Debug, Clone, Copy)]
enum CollectionOp<'a> {
    Create,
    Update,
    Upsert {
        sobject: &'a str,
        external_id_field: &'a str,
    },
}

impl SalesforceClient {
    /// Creates a record (`POST /sobjects/{Type}`, 201) and returns its id.
    pub async fn create(&self, sobject: &str, fields: &Record) -> Result<String> {
        check_name("object", sobject)?;
        let call = Call::new(
            Method::POST,
            self.data_path(&format!("/sobjects/{sobject}")),
            "create",
        )
        .json_body(fields)?;
        let value: Json = self.send_json(call).await?;
        let result = SaveResult::from_json(&value)?;
        match result.id {
            Some(id) if result.success => Ok(id),
            _ => Err(SalesforceError::parse(
                "create",
                "the response carries no id",
            )),
        }
    }

    /// Retrieves a record (`GET /sobjects/{Type}/{id}[?fields=]`).
    pub async fn retrieve(
        &self,
        sobject: &str,
        id: &str,
        fields: Option<&[&str]>,
    ) -> Result<Record> {
        check_name("object", sobject)?;
        check_id(id)?;
        let mut call = Call::new(
            Method::GET,
            self.data_path(&format!("/sobjects/{sobject}/{id}")),
            "retrieve",
        );
        if let Some(fields) = fields {
            for field in fields {
                check_name("field", field)?;
            }
            call = call.query("fields", fields.join(","));
        }
        self.send_json(call).await
    }

    /// Updates a record (`PATCH /sobjects/{Type}/{id}`, 204).
    pub async fn update(&self, sobject: &str, id: &str, fields: &Record) -> Result<()> {
        check_name("object", sobject)?;
        check_id(id)?;
        let call = Call::new(
            Method::PATCH,
            self.data_path(&format!("/sobjects/{sobject}/{id}")),
            "update",
        )
        .json_body(fields)?;
        self.send_empty(call).await.map(|_| ())
    }

    /// Deletes a record (`DELETE /sobjects/{Type}/{id}`, 204).
    pub async fn delete(&self, sobject: &str, id: &str) -> Result<()> {
        check_name("object", sobject)?;
        check_id(id)?;
        let call = Call::new(
            Method::DELETE,
            self.data_path(&format!("/sobjects/{sobject}/{id}")),
            "delete",
        );
        self.send_empty(call).await.map(|_| ())
    }

    /// Upserts by external id (`PATCH /sobjects/{Type}/{Field}/{value}`): 201 created,
    /// 200 updated (204 before API 46); several matches give
    /// [`SalesforceError::MultipleMatches`].
    pub async fn upsert(
        &self,
        sobject: &str,
        external_id_field: &str,
        external_id: &str,
        fields: &Record,
    ) -> Result<UpsertResult> {
        check_name("object", sobject)?;
        check_name("field", external_id_field)?;
        check_external_id(external_id)?;
        let path = self.data_path(&format!(
            "/sobjects/{sobject}/{external_id_field}/{}",
            encode_segment(external_id)
        ));
        let call = Call::new(Method::PATCH, path, "upsert").json_body(fields)?;
        let (_, body) = self.send_bytes(call).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(UpsertResult {
                id: None,
                created: false,
            });
        }
        let value: Json = serde_json::from_slice(&body)
            .map_err(|e| SalesforceError::parse("upsert", e.to_string()))?;
        let result = SaveResult::from_json(&value)?;
        Ok(UpsertResult {
            id: result.id,
            created: result.created.unwrap_or(false),
        })
    }

    /// Retrieves a record by external id (`GET /sobjects/{Type}/{Field}/{value}`).
    pub async fn retrieve_by_external_id(
        &self,
        sobject: &str,
        external_id_field: &str,
        external_id: &str,
    ) -> Result<Record> {
        check_name("object", sobject)?;
        check_name("field", external_id_field)?;
        check_external_id(external_id)?;
        let path = self.data_path(&format!(
            "/sobjects/{sobject}/{external_id_field}/{}",
            encode_segment(external_id)
        ));
        self.send_json(Call::new(Method::GET, path, "retrieve by external id"))
            .await
    }

    /// Creates up to 200 records of one type (`POST /composite/sobjects`).
    pub async fn create_many(
        &self,
        sobject: &str,
        records: Vec<Record>,
        options: CollectionOptions,
    ) -> Result<Vec<SaveResult>> {
        check_name("object", sobject)?;
        let records = records.into_iter().map(|r| with_type(sobject, r)).collect();
        self.collection_write(CollectionOp::Create, records, options)
            .await
    }

    /// Updates up to 200 records (`PATCH /composite/sobjects`); each needs `Id`.
    pub async fn update_many(
        &self,
        sobject: &str,
        records: Vec<Record>,
        options: CollectionOptions,
    ) -> Result<Vec<SaveResult>> {
        check_name("object", sobject)?;
        if let Some(position) = records
            .iter()
            .position(|r| !r.contains_key("Id") && !r.contains_key("id"))
        {
            return Err(SalesforceError::InvalidInput(format!(
                "record {position} has no Id"
            )));
        }
        let records = records.into_iter().map(|r| with_type(sobject, r)).collect();
        self.collection_write(CollectionOp::Update, records, options)
            .await
    }

    /// Upserts up to 200 records by an external id field
    /// (`PATCH /composite/sobjects/{Type}/{Field}`).
    pub async fn upsert_many(
        &self,
        sobject: &str,
        external_id_field: &str,
        records: Vec<Record>,
        options: CollectionOptions,
    ) -> Result<Vec<SaveResult>> {
        check_name("object", sobject)?;
        check_name("field", external_id_field)?;
        let records = records.into_iter().map(|r| with_type(sobject, r)).collect();
        self.collection_write(
            CollectionOp::Upsert {
                sobject,
                external_id_field,
            },
            records,
            options,
        )
        .await
    }

    /// Deletes up to 200 records (`DELETE /composite/sobjects?ids=`).
    pub async fn delete_many(
        &self,
        ids: &[&str],
        options: CollectionOptions,
    ) -> Result<Vec<SaveResult>> {
        check_batch(ids.len())?;
        for id in ids {
            check_id(id)?;
        }
        let mut results: Vec<Option<SaveResult>> = vec![None; ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut retries = 0;
        loop {
            let batch: Vec<&str> = pending.iter().map(|i| ids[*i]).collect();
            let call = Call::new(
                Method::DELETE,
                self.data_path("/composite/sobjects"),
                "collections delete",
            )
            .query("ids", batch.join(","))
            .query("allOrNone", options.all_or_none.to_string());
            let value: Json = self.send_json(call).await?;
            let round = parse_results(&value, batch.len())?;
            pending = self
                .merge_round(&mut results, &pending, round, options, &mut retries)
                .await;
            if pending.is_empty() {
                break;
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn collection_write(
        &self,
        op: CollectionOp<'_>,
        records: Vec<Record>,
        options: CollectionOptions,
    ) -> Result<Vec<SaveResult>> {
        check_batch(records.len())?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (method, path, context) = match op {
            CollectionOp::Create => (
                Method::POST,
                self.data_path("/composite/sobjects"),
                "collections create",
            ),
            CollectionOp::Update => (
                Method::PATCH,
                self.data_path("/composite/sobjects"),
                "collections update",
            ),
            CollectionOp::Upsert {
                sobject,
                external_id_field,
            } => (
                Method::PATCH,
                self.data_path(&format!(
                    "/composite/sobjects/{sobject}/{external_id_field}"
                )),
                "collections upsert",
            ),
        };
        let mut results: Vec<Option<SaveResult>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut retries = 0;
        loop {
            let batch: Vec<&Record> = pending.iter().map(|i| &records[*i]).collect();
            let body = json!({"allOrNone": options.all_or_none, "records": batch});
            let call = Call::new(method.clone(), path.clone(), context).json_body(&body)?;
            let value: Json = self.send_json(call).await?;
            let round = parse_results(&value, batch.len())?;
            if round
                .iter()
                .any(|r| r.errors.iter().any(|e| e.error_code == "INVALID_FIELD"))
            {
                self.invalidate_describe(None);
            }
            pending = self
                .merge_round(&mut results, &pending, round, options, &mut retries)
                .await;
            if pending.is_empty() {
                break;
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Stores a round's results; returns the indexes to resubmit (after sleeping).
    async fn merge_round(
        &self,
        results: &mut [Option<SaveResult>],
        pending: &[usize],
        round: Vec<SaveResult>,
        options: CollectionOptions,
        retries: &mut u32,
    ) -> Vec<usize> {
        let policy = &self.config().retry;
        let can_retry = options.retry_lock_errors && *retries + 1 < policy.max_attempts;
        let resubmit: Vec<usize> = if !can_retry {
            Vec::new()
        } else if options.all_or_none {
            // Everything was rolled back; resubmit all only when every real failure is a lock.
            let failures: Vec<&SaveResult> = round
                .iter()
                .filter(|r| !r.success && !r.is_rolled_back())
                .collect();
            if !failures.is_empty() && failures.iter().all(|r| r.is_lock_failure()) {
                pending.to_vec()
            } else {
                Vec::new()
            }
        } else {
            pending
                .iter()
                .zip(&round)
                .filter(|(_, r)| r.is_lock_failure())
                .map(|(i, _)| *i)
                .collect()
        };
        for (index, result) in pending.iter().zip(round) {
            results[*index] = Some(result);
        }
        if !resubmit.is_empty() {
            let delay = policy.next_delay(*retries, None);
            tracing::warn!(
                records = resubmit.len(),
                retry = *retries + 1,
                "resubmitting records after UNABLE_TO_LOCK_ROW"
            );
            *retries += 1;
            tokio::time::sleep(delay).await;
        }
        resubmit
    }

    /// Retrieves up to 2000 records of one type by id
    /// (`POST /composite/sobjects/{Type}` with `{"ids","fields"}`); `None` where an id was
    /// not found.
    pub async fn retrieve_many(
        &self,
        sobject: &str,
        ids: &[&str],
        fields: &[&str],
    ) -> Result<Vec<Option<Record>>> {
        check_name("object", sobject)?;
        if ids.len() > 2000 {
            return Err(SalesforceError::InvalidInput(format!(
                "{} ids given; at most 2000 per call",
                ids.len()
            )));
        }
        if fields.is_empty() {
            return Err(SalesforceError::InvalidInput(
                "name at least one field to retrieve".into(),
            ));
        }
        for id in ids {
            check_id(id)?;
        }
        for field in fields {
            check_name("field", field)?;
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let call = Call::new(
            Method::POST,
            self.data_path(&format!("/composite/sobjects/{sobject}")),
            "collections retrieve",
        )
        .json_body(&json!({"ids": ids, "fields": fields}))?;
        let value: Json = self.send_json(call).await?;
        let list = value
            .as_array()
            .ok_or_else(|| SalesforceError::parse("collections retrieve", "expected an array"))?;
        if list.len() != ids.len() {
            return Err(SalesforceError::parse(
                "collections retrieve",
                format!("{} records for {} ids", list.len(), ids.len()),
            ));
        }
        Ok(list.iter().map(|item| item.as_object().cloned()).collect())
    }

    /// Estimated record counts (`GET /limits/recordCount?sObjects=A,B`); objects without an
    /// estimate are absent.
    pub async fn record_counts(&self, sobjects: &[&str]) -> Result<BTreeMap<String, u64>> {
        for sobject in sobjects {
            check_name("object", sobject)?;
        }
        let mut call = Call::new(
            Method::GET,
            self.data_path("/limits/recordCount"),
            "recordCount",
        );
        if !sobjects.is_empty() {
            call = call.query("sObjects", sobjects.join(","));
        }
        let value: Json = self.send_json(call).await?;
        let list = value
            .get("sObjects")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|entry| {
                Some((
                    entry.get("name")?.as_str()?.to_string(),
                    entry.get("count")?.as_u64()?,
                ))
            })
            .collect())
    }

    /// `GET /limits`.
    pub async fn limits(&self) -> Result<Limits> {
        let value: Json = self
            .send_json(Call::new(Method::GET, self.data_path("/limits"), "limits"))
            .await?;
        Limits::from_json(&value)
    }

    /// `GET /sobjects/{Type}/updated?start=&end=`.
    pub async fn get_updated(
        &self,
        sobject: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<UpdatedRecords> {
        check_name("object", sobject)?;
        let call = Call::new(
            Method::GET,
            self.data_path(&format!("/sobjects/{sobject}/updated/")),
            "getUpdated",
        )
        .query("start", replication_time(start))
        .query("end", replication_time(end));
        self.send_json(call).await
    }

    /// `GET /sobjects/{Type}/deleted?start=&end=`.
    pub async fn get_deleted(
        &self,
        sobject: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DeletedRecords> {
        check_name("object", sobject)?;
        let call = Call::new(
            Method::GET,
            self.data_path(&format!("/sobjects/{sobject}/deleted/")),
            "getDeleted",
        )
        .query("start", replication_time(start))
        .query("end", replication_time(end));
        self.send_json(call).await
    }
}

fn replication_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

fn parse_results(value: &Json, expected: usize) -> Result<Vec<SaveResult>> {
    let list = value
        .as_array()
        .ok_or_else(|| SalesforceError::parse("collections", "expected an array of results"))?;
    if list.len() != expected {
        return Err(SalesforceError::parse(
            "collections",
            format!("{} results for {expected} records", list.len()),
        ));
    }
    list.iter().map(SaveResult::from_json).collect()
}

/// Builds a record from field pairs (convenience for callers and tests).
pub fn record<const N: usize>(fields: [(&str, Json); N]) -> Record {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<Map<String, Json>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_save_results() {
        let value = json!([
            {"id":"001000000000001AAA","success":true,"errors":[]},
            {"success":false,"errors":[{"statusCode":"DUPLICATES_DETECTED","message":"Use one of these records?","fields":[]}]},
            {"id":"001000000000002AAA","success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access","fields":[]}]},
            {"success":false,"errors":[{"statusCode":"ALL_OR_NONE_OPERATION_ROLLED_BACK","message":"Record rolled back","fields":[]}]},
            {"id":"003","success":true,"errors":[],"created":true}
        ]);
        let results = parse_results(&value, 5).expect("results");
        assert!(results[0].success && results[0].id.is_some());
        assert_eq!(results[1].errors[0].error_code, "DUPLICATES_DETECTED");
        assert!(!results[1].is_lock_failure());
        assert!(results[2].is_lock_failure());
        assert!(results[3].is_rolled_back());
        assert_eq!(results[4].created, Some(true));
        assert!(parse_results(&value, 4).is_err());
        assert!(parse_results(&json!({"a":1}), 1).is_err());
    }

    #[test]
    fn parses_limits_ignoring_per_app_entries() {
        let value = json!({"DailyApiRequests":{"Max":15000,"Remaining":14998,"Ferry":{"Max":0,"Remaining":0}},"Odd":{"x":1}});
        let limits = Limits::from_json(&value).expect("limits");
        assert_eq!(
            limits.daily_api_requests(),
            Some(Limit {
                max: 15000,
                remaining: 14998
            })
        );
        assert_eq!(limits.get("Odd"), None);
    }

    #[test]
    fn path_values_are_encoded() {
        assert_eq!(encode_segment("A-1"), "A-1");
        assert_eq!(encode_segment("a/b c?d#"), "a%2Fb%20c%3Fd%23");
        assert!(check_external_id("..").is_err());
        assert!(check_external_id("").is_err());
        assert!(check_external_id("a.b").is_ok());
        assert!(check_id("001000000000001").is_ok());
        assert!(check_id("001000000000001AAA").is_ok());
        assert!(check_id("../../x").is_err());
        assert!(check_batch(200).is_ok());
        assert!(check_batch(201).is_err());
        assert_eq!(
            replication_time(DateTime::from_timestamp(0, 0).expect("epoch")),
            "1970-01-01T00:00:00+00:00"
        );
    }
}
