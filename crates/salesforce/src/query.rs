//! SOQL over REST (spec §3.5) and Tooling (§8), streamed page by page.
//!
//! [`SalesforceClient::query_pages`] yields one [`QueryPage`] per HTTP response, following
//! `nextRecordsUrl` (an absolute path on the instance) until `done`; only one page is held
//! at a time. [`SalesforceClient::query_records`] flattens it to records.

use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::client::{Call, SalesforceClient};
use crate::describe::check_name;
use crate::error::{Result, SalesforceError};

/// A record as JSON (with its `attributes`).
pub type Record = Map<String, Json>;

/// Which query resource to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryScope {
    /// `/query`: live records.
    Live,
    /// `/queryAll`: also deleted and merged records.
    All,
    /// `/tooling/query`.
    Tooling,
}

/// One page of query results.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryPage {
    /// Total rows over all pages.
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// Path of the next page, when there is one.
    pub next_records_url: Option<String>,
    /// The records of this page.
    pub records: Vec<Record>,
    /// Tooling only: the entity type.
    pub entity_type_name: Option<String>,
}

enum PageState {
    First(Call),
    Next(String),
    Finished,
}

impl SalesforceClient {
    fn query_call(&self, soql: &str, scope: QueryScope) -> Result<Call> {
        let resource = match scope {
            QueryScope::Live => "/query",
            QueryScope::All => "/queryAll",
            QueryScope::Tooling => "/tooling/query",
        };
        let mut call = Call::new(Method::GET, self.data_path(resource), "query").query("q", soql);
        if let Some(size) = self.config().query_batch_size {
            call = call.header(
                "sforce-query-options",
                &format!("batchSize={}", size.clamp(200, 2000)),
            )?;
        }
        Ok(call)
    }

    /// Runs a query and streams its pages.
    pub fn query_pages(
        &self,
        soql: &str,
        scope: QueryScope,
    ) -> impl Stream<Item = Result<QueryPage>> + Send + 'static {
        let client = self.clone();
        let start = match self.query_call(soql, scope) {
            Ok(call) => PageState::First(call),
            Err(error) => return stream::once(async move { Err(error) }).boxed(),
        };
        stream::try_unfold((client, start), |(client, state)| async move {
            let call = match state {
                PageState::Finished => return Ok(None),
                PageState::First(call) => call,
                PageState::Next(path) => {
                    let mut call = Call::new(Method::GET, path, "queryMore");
                    if let Some(size) = client.config().query_batch_size {
                        call = call.header(
                            "sforce-query-options",
                            &format!("batchSize={}", size.clamp(200, 2000)),
                        )?;
                    }
                    call
                }
            };
            let page: QueryPage = client.send_json(call).await?;
            let next = match (&page.next_records_url, page.done) {
                (Some(url), false) if !url.is_empty() => PageState::Next(next_path(url)?),
                _ => PageState::Finished,
            };
            Ok(Some((page, (client, next))))
        })
        .boxed()
    }

    /// Runs a query and streams its records.
    pub fn query_records(
        &self,
        soql: &str,
        scope: QueryScope,
    ) -> impl Stream<Item = Result<Record>> + Send + 'static {
        self.query_pages(soql, scope)
            .map_ok(|page| stream::iter(page.records.into_iter().map(Ok)))
            .try_flatten()
    }

    /// Runs a query and collects every record (only for results known to be small).
    pub async fn query_all_pages(&self, soql: &str, scope: QueryScope) -> Result<Vec<Record>> {
        self.query_records(soql, scope).try_collect().await
    }

    /// Tooling query (`/tooling/query`), streamed.
    pub fn tooling_query(
        &self,
        soql: &str,
    ) -> impl Stream<Item = Result<QueryPage>> + Send + 'static {
        self.query_pages(soql, QueryScope::Tooling)
    }

    /// `FieldDefinition` rows of one object via the Tooling API (the object name is quoted
    /// as a SOQL literal).
    pub async fn tooling_field_definitions(&self, sobject: &str) -> Result<Vec<Record>> {
        check_name("object", sobject)?;
        let soql = format!(
            "SELECT QualifiedApiName, DataType, Label, IsCalculated, IsNillable FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName = {}",
            ferry_soql::quote_string(sobject)
        );
        self.query_all_pages(&soql, QueryScope::Tooling).await
    }
}

/// Validates a `nextRecordsUrl`: it must be an absolute path under `/services/data/`.
fn next_path(url: &str) -> Result<String> {
    if url.starts_with("/services/data/") && !url.contains("..") && !url.contains("://") {
        Ok(url.to_string())
    } else {
        Err(SalesforceError::parse(
            "query",
            format!("unexpected nextRecordsUrl {url:?}"),
        ))
    }
}

/// Builds `SELECT f1, f2 FROM Object WHERE key IN ('a','b')` with every value quoted by
/// `ferry-soql` and every name validated, so data can never inject SOQL.
pub fn select_where_in(
    sobject: &str,
    fields: &[&str],
    key_field: &str,
    values: &[&str],
) -> Result<String> {
    check_name("object", sobject)?;
    if fields.is_empty() {
        return Err(SalesforceError::InvalidInput(
            "select at least one field".into(),
        ));
    }
    for field in fields.iter().chain(std::iter::once(&key_field)) {
        if !ferry_soql::is_valid_field_path(field) {
            return Err(SalesforceError::InvalidInput(format!(
                "{field:?} is not a valid field name"
            )));
        }
    }
    if values.is_empty() {
        return Err(SalesforceError::InvalidInput("the IN list is empty".into()));
    }
    let literals: Vec<String> = values.iter().map(|v| ferry_soql::quote_string(v)).collect();
    Ok(format!(
        "SELECT {} FROM {sobject} WHERE {key_field} IN ({})",
        fields.join(", "),
        literals.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pages() {
        let page: QueryPage = serde_json::from_str(r#"{"totalSize":3,"done":false,"nextRecordsUrl":"/services/data/v59.0/query/01gRO0000016PIAYA2-2000","records":[{"attributes":{"type":"Account","url":"/x"},"Id":"001","Name":"a"}]}"#).expect("page");
        assert_eq!(page.total_size, 3);
        assert!(!page.done);
        assert_eq!(page.records[0].get("Name"), Some(&Json::String("a".into())));
        let tooling: QueryPage = serde_json::from_str(r#"{"size":1,"totalSize":1,"done":true,"queryLocator":null,"entityTypeName":"ApexClass","records":[]}"#).expect("tooling page");
        assert_eq!(tooling.entity_type_name.as_deref(), Some("ApexClass"));
        let minimal: QueryPage = serde_json::from_str(r#"{"records":[]}"#).expect("no done");
        assert!(!minimal.done && minimal.next_records_url.is_none());
    }

    #[test]
    fn next_records_url_must_stay_on_the_instance() {
        assert!(next_path("/services/data/v59.0/query/01g-2000").is_ok());
        assert!(next_path("https://evil.example/services/data/").is_err());
        assert!(next_path("/services/data/../../x").is_err());
        assert!(next_path("query/01g").is_err());
    }

    #[test]
    fn in_lists_are_escaped() {
        let soql = select_where_in(
            "Contact",
            &["Id", "Account.Name"],
            "Email",
            &["o'brien@x.com", r"back\slash", "x') OR Name != ('"],
        )
        .expect("valid");
        assert_eq!(
            soql,
            r"SELECT Id, Account.Name FROM Contact WHERE Email IN ('o\'brien@x.com', 'back\\slash', 'x\') OR Name != (\'')"
        );
        let parsed = ferry_soql::parse(&soql).expect("re-parses");
        assert!(parsed.where_.is_some());
        assert!(select_where_in("Contact; DELETE", &["Id"], "Email", &["a"]).is_err());
        assert!(select_where_in("Contact", &["Id FROM User--"], "Email", &["a"]).is_err());
        assert!(select_where_in("Contact", &["Id"], "Email", &[]).is_err());
    }
}
