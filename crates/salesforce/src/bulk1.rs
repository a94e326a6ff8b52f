//! Bulk API 1.0 (spec §7): jobs and batches under `/services/async/XX.X/job`, authenticated
//! with `X-SFDC-Session`.
//!
//! Jobs are created with an XML body (CSV/XML content) or a JSON body (JSON content), with
//! `concurrencyMode` `Parallel` or `Serial`. Responses are parsed by their `Content-Type`
//! (XML or JSON), since Salesforce answers batch resources in the job's format whatever the
//! request says. Ingest batch results come back in input order.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::bulk2::{PollOptions, check_job_id};
use crate::client::{AuthStyle, Call, SalesforceClient};
use crate::describe::check_name;
use crate::error::{ApiErrorItem, Result, SalesforceError, parse_bulk_csv_error};
use crate::xml::{self, Element};

/// Largest batch body Bulk API 1.0 accepts.
pub const MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;

const NAMESPACE: &str = "http://www.force.com/2009/06/asyncapi/dataload";

/// Bulk 1.0 operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Bulk1Operation {
    /// Insert.
    Insert,
    /// Update.
    Update,
    /// Upsert (needs an external id field).
    Upsert,
    /// Delete.
    Delete,
    /// Hard delete.
    HardDelete,
    /// Query.
    Query,
    /// Query including deleted rows.
    QueryAll,
}

impl Bulk1Operation {
    fn as_str(self) -> &'static str {
        match self {
            Bulk1Operation::Insert => "insert",
            Bulk1Operation::Update => "update",
            Bulk1Operation::Upsert => "upsert",
            Bulk1Operation::Delete => "delete",
            Bulk1Operation::HardDelete => "hardDelete",
            Bulk1Operation::Query => "query",
            Bulk1Operation::QueryAll => "queryAll",
        }
    }
}

/// How batches of a job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyMode {
    /// Batches run in parallel (default).
    #[default]
    Parallel,
    /// One batch at a time (avoids lock contention).
    Serial,
}

/// Batch content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Bulk1ContentType {
    /// CSV batches (results in CSV; job resources in XML).
    #[default]
    Csv,
    /// JSON batches and JSON results.
    Json,
    /// XML batches and results.
    Xml,
}

impl Bulk1ContentType {
    fn as_str(self) -> &'static str {
        match self {
            Bulk1ContentType::Csv => "CSV",
            Bulk1ContentType::Json => "JSON",
            Bulk1ContentType::Xml => "XML",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Bulk1ContentType::Csv => "text/csv",
            Bulk1ContentType::Json => "application/json",
            Bulk1ContentType::Xml => "application/xml",
        }
    }
}

/// A new Bulk 1.0 job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk1JobRequest {
    /// Operation.
    pub operation: Bulk1Operation,
    /// Object API name.
    pub object: String,
    /// Upsert key.
    pub external_id_field_name: Option<String>,
    /// Parallel or serial batches.
    pub concurrency_mode: ConcurrencyMode,
    /// Batch format.
    pub content_type: Bulk1ContentType,
}

/// A response body flattened to `name → text` (from XML children or JSON keys).
#[derive(Debug, Default)]
struct Flat(HashMap<String, String>);

impl Flat {
    fn from_element(element: &Element) -> Flat {
        Flat(
            element
                .children
                .iter()
                .filter(|c| !c.nil)
                .map(|c| (c.name.clone(), c.text.clone()))
                .collect(),
        )
    }

    fn from_json(value: &Json) -> Flat {
        let mut out = HashMap::new();
        if let Some(object) = value.as_object() {
            for (key, value) in object {
                let text = match value {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    Json::Bool(b) => b.to_string(),
                    _ => continue,
                };
                out.insert(key.clone(), text);
            }
        }
        Flat(out)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn number(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v.max(0.0) as u64)
    }
}

/// Bulk 1.0 job info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bulk1JobInfo {
    /// Job id (`750...`).
    pub id: String,
    /// Operation.
    pub operation: Option<String>,
    /// Object.
    pub object: Option<String>,
    /// `Open`, `Closed`, `Aborted`, `Failed`.
    pub state: String,
    /// `Parallel` / `Serial`.
    pub concurrency_mode: Option<String>,
    /// `CSV`, `JSON`, ...
    pub content_type: Option<String>,
    /// Batches queued.
    pub number_batches_queued: u64,
    /// Batches in progress.
    pub number_batches_in_progress: u64,
    /// Batches completed.
    pub number_batches_completed: u64,
    /// Batches failed.
    pub number_batches_failed: u64,
    /// All batches.
    pub number_batches_total: u64,
    /// Records processed.
    pub number_records_processed: u64,
    /// Records failed.
    pub number_records_failed: u64,
}

impl Bulk1JobInfo {
    fn from_flat(flat: &Flat) -> Result<Bulk1JobInfo> {
        let id = flat
            .text("id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SalesforceError::parse("bulk 1.0 jobInfo", "no id"))?;
        Ok(Bulk1JobInfo {
            id,
            operation: flat.text("operation"),
            object: flat.text("object"),
            state: flat.text("state").unwrap_or_default(),
            concurrency_mode: flat.text("concurrencyMode"),
            content_type: flat.text("contentType"),
            number_batches_queued: flat.number("numberBatchesQueued"),
            number_batches_in_progress: flat.number("numberBatchesInProgress"),
            number_batches_completed: flat.number("numberBatchesCompleted"),
            number_batches_failed: flat.number("numberBatchesFailed"),
            number_batches_total: flat.number("numberBatchesTotal"),
            number_records_processed: flat.number("numberRecordsProcessed"),
            number_records_failed: flat.number("numberRecordsFailed"),
        })
    }
}

/// Bulk 1.0 batch info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchInfo {
    /// Batch id (`751...`).
    pub id: String,
    /// Job id.
    pub job_id: String,
    /// `Queued`, `InProgress`, `Completed`, `Failed`, `NotProcessed`.
    pub state: String,
    /// Reason for a failure (`InvalidBatch : ...`).
    pub state_message: Option<String>,
    /// Records processed.
    pub number_records_processed: u64,
    /// Records failed.
    pub number_records_failed: u64,
    /// Created at.
    pub created_date: Option<String>,
}

impl BatchInfo {
    fn from_flat(flat: &Flat) -> Result<BatchInfo> {
        let id = flat
            .text("id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SalesforceError::parse("bulk 1.0 batchInfo", "no id"))?;
        Ok(BatchInfo {
            id,
            job_id: flat.text("jobId").unwrap_or_default(),
            state: flat.text("state").unwrap_or_default(),
            state_message: flat.text("stateMessage").filter(|s| !s.is_empty()),
            number_records_processed: flat.number("numberRecordsProcessed"),
            number_records_failed: flat.number("numberRecordsFailed"),
            created_date: flat.text("createdDate"),
        })
    }
}

/// One ingest row's outcome, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk1Result {
    /// Record id (absent when the row failed to insert).
    pub id: Option<String>,
    /// Whether it succeeded.
    pub success: bool,
    /// Whether it was inserted.
    pub created: bool,
    /// Errors.
    pub errors: Vec<ApiErrorItem>,
}

fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    let by_header = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.contains("json"));
    by_header.unwrap_or_else(|| {
        body.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'[')
    })
}

fn content_kind(headers: &HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
}

fn parse_flat(headers: &HeaderMap, body: &[u8], context: &str) -> Result<Flat> {
    if is_json(headers, body) {
        let value: Json = serde_json::from_slice(body)
            .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        Ok(Flat::from_json(&value))
    } else {
        let root = xml::parse(&String::from_utf8_lossy(body))
            .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        Ok(Flat::from_element(&root))
    }
}

/// Builds the XML jobInfo for a create request.
pub fn job_request_xml(request: &Bulk1JobRequest) -> String {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><jobInfo xmlns=\"{NAMESPACE}\"><operation>{}</operation><object>{}</object>",
        request.operation.as_str(),
        xml::escape(&request.object)
    );
    if let Some(field) = &request.external_id_field_name {
        body.push_str(&format!(
            "<externalIdFieldName>{}</externalIdFieldName>",
            xml::escape(field)
        ));
    }
    body.push_str(&format!(
        "<concurrencyMode>{}</concurrencyMode><contentType>{}</contentType></jobInfo>",
        match request.concurrency_mode {
            ConcurrencyMode::Parallel => "Parallel",
            ConcurrencyMode::Serial => "Serial",
        },
        request.content_type.as_str()
    ));
    body
}

/// Parses ingest batch results in any format (CSV `"Id","Success","Created","Error"`,
/// a JSON array, or XML `<results>`).
pub fn parse_batch_results(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Bulk1Result>> {
    let context = "bulk 1.0 batch results";
    let content_type = content_type.unwrap_or_default();
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if content_type.contains("json") || first == Some(b'[') {
        let value: Vec<Json> = serde_json::from_slice(body)
            .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        return Ok(value
            .iter()
            .map(|row| Bulk1Result {
                id: row
                    .get("id")
                    .and_then(Json::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                success: row.get("success").and_then(Json::as_bool).unwrap_or(false),
                created: row.get("created").and_then(Json::as_bool).unwrap_or(false),
                errors: row
                    .get("errors")
                    .and_then(Json::as_array)
                    .map(|e| e.iter().filter_map(ApiErrorItem::from_json).collect())
                    .unwrap_or_default(),
            })
            .collect());
    }
    if content_type.contains("xml") || first == Some(b'<') {
        let root = xml::parse(&String::from_utf8_lossy(body))
            .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        return Ok(root
            .children_named("result")
            .map(|row| Bulk1Result {
                id: row.child_text("id").filter(|s| !s.is_empty()),
                success: row.child_text("success").is_some_and(|s| s == "true"),
                created: row.child_text("created").is_some_and(|s| s == "true"),
                errors: row
                    .children_named("errors")
                    .filter_map(|e| {
                        let code = e.child_text("statusCode")?;
                        let fields = e
                            .children_named("fields")
                            .map(|f| f.text.clone())
                            .filter(|f| !f.is_empty())
                            .collect();
                        Some(ApiErrorItem::new(
                            code,
                            e.child_text("message").unwrap_or_default(),
                            fields,
                        ))
                    })
                    .collect(),
            })
            .collect());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| SalesforceError::parse(context, e.to_string()))?
        .clone();
    let at = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (id_at, success_at, created_at, error_at) =
        (at("Id"), at("Success"), at("Created"), at("Error"));
    if success_at.is_none() {
        return Err(SalesforceError::parse(
            context,
            "missing the Success column",
        ));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default();
        let error = cell(error_at);
        out.push(Bulk1Result {
            id: Some(cell(id_at).to_string()).filter(|s| !s.is_empty()),
            success: cell(success_at).eq_ignore_ascii_case("true"),
            created: cell(created_at).eq_ignore_ascii_case("true"),
            errors: if error.is_empty() {
                Vec::new()
            } else {
                vec![parse_bulk_csv_error(error)]
            },
        });
    }
    Ok(out)
}

/// Parses a query batch's result-id list (XML `<result-list>` or a JSON array).
pub fn parse_result_list(content_type: Option<&str>, body: &[u8]) -> Result<Vec<String>> {
    let context = "bulk 1.0 result list";
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if content_type.unwrap_or_default().contains("json") || first == Some(b'[') {
        return serde_json::from_slice(body)
            .map_err(|e| SalesforceError::parse(context, e.to_string()));
    }
    let root = xml::parse(&String::from_utf8_lossy(body))
        .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
    Ok(root
        .children_named("result")
        .map(|r| r.text.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect())
}

impl SalesforceClient {
    fn async_path(&self, suffix: &str) -> String {
        format!("/services/async/{}/job{suffix}", self.api_version())
    }

    fn bulk1_call(&self, method: Method, suffix: &str, context: &'static str) -> Call {
        Call::new(method, self.async_path(suffix), context).auth(AuthStyle::SfdcSession)
    }

    async fn bulk1_job(&self, call: Call) -> Result<Bulk1JobInfo> {
        let context = call.context;
        let (headers, body) = self.send_bytes(call).await?;
        Bulk1JobInfo::from_flat(&parse_flat(&headers, &body, context)?)
    }

    async fn bulk1_batch(&self, call: Call) -> Result<BatchInfo> {
        let context = call.context;
        let (headers, body) = self.send_bytes(call).await?;
        BatchInfo::from_flat(&parse_flat(&headers, &body, context)?)
    }

    /// `POST /job`: XML body for CSV/XML jobs, JSON body for JSON jobs.
    pub async fn create_bulk1_job(&self, request: &Bulk1JobRequest) -> Result<Bulk1JobInfo> {
        check_name("object", &request.object)?;
        if let Some(field) = &request.external_id_field_name {
            check_name("field", field)?;
        } else if request.operation == Bulk1Operation::Upsert {
            return Err(SalesforceError::InvalidInput(
                "an upsert job needs externalIdFieldName".into(),
            ));
        }
        let call = self.bulk1_call(Method::POST, "", "bulk 1.0 create job");
        let call = match request.content_type {
            Bulk1ContentType::Json => {
                let mut body = json!({
                    "operation": request.operation.as_str(),
                    "object": request.object,
                    "contentType": "JSON",
                    "concurrencyMode": request.concurrency_mode,
                });
                if let Some(field) = &request.external_id_field_name {
                    body["externalIdFieldName"] = json!(field);
                }
                call.json_body(&body)?
            }
            _ => call.raw_body(Bytes::from(job_request_xml(request)), "application/xml"),
        };
        self.bulk1_job(call).await
    }

    /// `GET /job/{id}`.
    pub async fn get_bulk1_job(&self, job_id: &str) -> Result<Bulk1JobInfo> {
        check_job_id(job_id)?;
        self.bulk1_job(self.bulk1_call(Method::GET, &format!("/{job_id}"), "bulk 1.0 job info"))
            .await
    }

    async fn set_bulk1_state(&self, job_id: &str, state: &str) -> Result<Bulk1JobInfo> {
        check_job_id(job_id)?;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><jobInfo xmlns=\"{NAMESPACE}\"><state>{state}</state></jobInfo>"
        );
        let call = self
            .bulk1_call(Method::POST, &format!("/{job_id}"), "bulk 1.0 job state")
            .raw_body(Bytes::from(body), "application/xml");
        self.bulk1_job(call).await
    }

    /// Closes a job (no more batches).
    pub async fn close_bulk1_job(&self, job_id: &str) -> Result<Bulk1JobInfo> {
        self.set_bulk1_state(job_id, "Closed").await
    }

    /// Aborts a job.
    pub async fn abort_bulk1_job(&self, job_id: &str) -> Result<Bulk1JobInfo> {
        self.set_bulk1_state(job_id, "Aborted").await
    }

    /// `POST /job/{id}/batch` with CSV, JSON or XML records (for query jobs: the SOQL text
    /// with `Bulk1ContentType::Csv`).
    pub async fn add_bulk1_batch(
        &self,
        job_id: &str,
        content_type: Bulk1ContentType,
        body: Bytes,
    ) -> Result<BatchInfo> {
        check_job_id(job_id)?;
        let call = self
            .bulk1_call(
                Method::POST,
                &format!("/{job_id}/batch"),
                "bulk 1.0 add batch",
            )
            .raw_body(body, content_type.mime());
        self.bulk1_batch(call).await
    }

    /// `GET /job/{id}/batch/{batch}`.
    pub async fn get_bulk1_batch(&self, job_id: &str, batch_id: &str) -> Result<BatchInfo> {
        check_job_id(job_id)?;
        check_job_id(batch_id)?;
        self.bulk1_batch(self.bulk1_call(
            Method::GET,
            &format!("/{job_id}/batch/{batch_id}"),
            "bulk 1.0 batch info",
        ))
        .await
    }

    /// `GET /job/{id}/batch`.
    pub async fn list_bulk1_batches(&self, job_id: &str) -> Result<Vec<BatchInfo>> {
        check_job_id(job_id)?;
        let context = "bulk 1.0 batch list";
        let (headers, body) = self
            .send_bytes(self.bulk1_call(Method::GET, &format!("/{job_id}/batch"), context))
            .await?;
        if is_json(&headers, &body) {
            let value: Json = serde_json::from_slice(&body)
                .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
            let list = value
                .get("batchInfo")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            return list
                .iter()
                .map(|b| BatchInfo::from_flat(&Flat::from_json(b)))
                .collect();
        }
        let root = xml::parse(&String::from_utf8_lossy(&body))
            .map_err(|e| SalesforceError::parse(context, e.to_string()))?;
        root.children_named("batchInfo")
            .map(|b| BatchInfo::from_flat(&Flat::from_element(b)))
            .collect()
    }

    /// Polls a batch until `Completed` (`Failed`/`NotProcessed` → [`SalesforceError::JobFailed`]).
    pub async fn wait_for_bulk1_batch(
        &self,
        job_id: &str,
        batch_id: &str,
        poll: PollOptions,
    ) -> Result<BatchInfo> {
        let started = Instant::now();
        let mut interval = poll.initial_interval;
        loop {
            let batch = self.get_bulk1_batch(job_id, batch_id).await?;
            match batch.state.as_str() {
                "Completed" => return Ok(batch),
                "Failed" | "NotProcessed" | "Not Processed" => {
                    return Err(SalesforceError::JobFailed {
                        job_id: format!("{job_id}/{batch_id}"),
                        state: batch.state.clone(),
                        message: batch.state_message.clone().unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= poll.timeout {
                return Err(SalesforceError::JobTimeout {
                    job_id: format!("{job_id}/{batch_id}"),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(poll.max_interval);
        }
    }

    /// `GET /job/{id}/batch/{batch}/result` of an ingest batch, in input order.
    pub async fn bulk1_batch_results(
        &self,
        job_id: &str,
        batch_id: &str,
    ) -> Result<Vec<Bulk1Result>> {
        check_job_id(job_id)?;
        check_job_id(batch_id)?;
        let (headers, body) = self
            .send_bytes(self.bulk1_call(
                Method::GET,
                &format!("/{job_id}/batch/{batch_id}/result"),
                "bulk 1.0 batch results",
            ))
            .await?;
        parse_batch_results(content_kind(&headers).as_deref(), &body)
    }

    /// The result ids of a query batch.
    pub async fn bulk1_query_result_ids(
        &self,
        job_id: &str,
        batch_id: &str,
    ) -> Result<Vec<String>> {
        check_job_id(job_id)?;
        check_job_id(batch_id)?;
        let (headers, body) = self
            .send_bytes(self.bulk1_call(
                Method::GET,
                &format!("/{job_id}/batch/{batch_id}/result"),
                "bulk 1.0 result list",
            ))
            .await?;
        parse_result_list(content_kind(&headers).as_deref(), &body)
    }

    /// One query result (`.../result/{resultId}`): CSV or a JSON array, as sent. Parse CSV
    /// with [`crate::bulk2::parse_csv_page`].
    pub async fn bulk1_query_result(
        &self,
        job_id: &str,
        batch_id: &str,
        result_id: &str,
    ) -> Result<Bytes> {
        check_job_id(job_id)?;
        check_job_id(batch_id)?;
        check_job_id(result_id)?;
        let (_, body) = self
            .send_bytes(self.bulk1_call(
                Method::GET,
                &format!("/{job_id}/batch/{batch_id}/result/{result_id}"),
                "bulk 1.0 query result",
            ))
            .await?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_job_xml() {
        let request = Bulk1JobRequest {
            operation: Bulk1Operation::Upsert,
            object: "Account".into(),
            external_id_field_name: Some("Ext__c".into()),
            concurrency_mode: ConcurrencyMode::Serial,
            content_type: Bulk1ContentType::Csv,
        };
        let text = job_request_xml(&request);
        let root = xml::parse(&text).expect("valid xml");
        let flat = Flat::from_element(&root);
        assert_eq!(flat.text("operation").as_deref(), Some("upsert"));
        assert_eq!(flat.text("externalIdFieldName").as_deref(), Some("Ext__c"));
        assert_eq!(flat.text("concurrencyMode").as_deref(), Some("Serial"));
        assert_eq!(flat.text("contentType").as_deref(), Some("CSV"));
        assert!(text.find("<operation>") < text.find("<object>"));
    }

    #[test]
    fn parses_job_and_batch_info_in_both_formats() {
        let xml_job = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NAMESPACE}"><id>750x00000000001AAA</id><operation>insert</operation><object>Account</object><createdById>005</createdById><state>Open</state><concurrencyMode>Parallel</concurrencyMode><contentType>CSV</contentType><numberBatchesQueued>0</numberBatchesQueued><numberRecordsProcessed>12</numberRecordsProcessed><apiVersion>62.0</apiVersion></jobInfo>"#
        );
        let job = Bulk1JobInfo::from_flat(&Flat::from_element(&xml::parse(&xml_job).expect("xml")))
            .expect("job");
        assert_eq!(
            (
                job.id.as_str(),
                job.state.as_str(),
                job.number_records_processed
            ),
            ("750x00000000001AAA", "Open", 12)
        );
        let json_batch = json!({"apexProcessingTime":0,"createdDate":"2024-11-21T08:31:31.000+0000","id":"7519H000001XiCzQAK","jobId":"7509H0000016GUXQA2","numberRecordsFailed":0,"numberRecordsProcessed":3,"state":"Queued","stateMessage":null});
        let batch = BatchInfo::from_flat(&Flat::from_json(&json_batch)).expect("batch");
        assert_eq!(batch.state, "Queued");
        assert_eq!(batch.state_message, None);
        assert_eq!(batch.number_records_processed, 3);
        assert!(BatchInfo::from_flat(&Flat::default()).is_err());
    }

    #[test]
    fn parses_batch_results_in_every_format() {
        let csv = b"\"Id\",\"Success\",\"Created\",\"Error\"\n\"003P000001avB5GIAU\",\"true\",\"true\",\"\"\n\"\",\"false\",\"false\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\"\n";
        let rows = parse_batch_results(Some("text/csv"), csv).expect("csv");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].success && rows[0].created);
        assert_eq!(rows[1].id, None);
        assert_eq!(rows[1].errors[0].error_code, "REQUIRED_FIELD_MISSING");
        let json_rows = br#"[{"id":"001","success":true,"created":true,"errors":[]},{"id":null,"success":false,"created":false,"errors":[{"statusCode":"DUPLICATE_VALUE","message":"dup","fields":["Ext__c"]}]}]"#;
        let rows = parse_batch_results(Some("application/json"), json_rows).expect("json");
        assert_eq!(rows[1].errors[0].fields, vec!["Ext__c"]);
        let xml_rows = br#"<results xmlns="http://www.force.com/2009/06/asyncapi/dataload"><result><id>001</id><success>true</success><created>false</created></result><result><id/><success>false</success><created>false</created><errors><fields>Name</fields><message>bad</message><statusCode>STRING_TOO_LONG</statusCode></errors></result></results>"#;
        let rows = parse_batch_results(Some("application/xml"), xml_rows).expect("xml");
        assert!(rows[0].success && !rows[0].created);
        assert_eq!(rows[1].errors[0].error_code, "STRING_TOO_LONG");
        assert_eq!(rows[1].errors[0].fields, vec!["Name"]);
        assert!(parse_batch_results(Some("text/csv"), b"Id,Name\n1,2\n").is_err());
    }

    #[test]
    fn parses_result_lists() {
        let xml_list = br#"<result-list xmlns="http://www.force.com/2009/06/asyncapi/dataload"><result>752x000000000F1</result><result>752x000000000F2</result></result-list>"#;
        assert_eq!(
            parse_result_list(Some("application/xml"), xml_list).expect("xml"),
            vec!["752x000000000F1", "752x000000000F2"]
        );
        assert_eq!(
            parse_result_list(Some("application/json"), br#"["7529H000000xO6L"]"#).expect("json"),
            vec!["7529H000000xO6L"]
        );
    }
}
