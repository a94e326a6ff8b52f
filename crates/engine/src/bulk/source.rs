//! Salesforce reads for bulk syncs: describe, SOQL building, record pages (Bulk 2.0
//! `query`/`queryAll` CSV pages, REST `query`/`queryAll` JSON pages for small windows,
//! Tooling queries), `COUNT()` reconciliation queries, the high-water mark, and currency
//! rates.
//!
//! Rows come out as `Vec<Option<String>>` in the plan's read order, in a canonical text
//! form (datetimes `2024-01-01T00:00:00.000Z`, booleans `true`/`false`, numbers as decimal
//! text). Bulk CSV cannot tell null from the empty string; both become `None`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use ferry_salesforce::bulk2::{ColumnDelimiter, CsvPage, LineEnding};
use ferry_salesforce::datetime::{format_datetime, parse_datetime};
use ferry_salesforce::{QueryPage, QueryScope, SObjectDescribe, SalesforceClient, SalesforceError};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::BulkOptions;
use super::run::BulkError;

/// One row in read order.
pub(crate) type Row = Vec<Option<String>>;

/// A selected object: `Account` or `tooling:ApexClass`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectRef {
    pub name: String,
    pub tooling: bool,
}

impl ObjectRef {
    pub(crate) fn parse(object: &str) -> Result<ObjectRef, BulkError> {
        let (name, tooling) = match object.strip_prefix("tooling:") {
            Some(rest) => (rest, true),
            None => (object, false),
        };
        let valid = !name.is_empty()
            && name.len() <= 80
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name.as_bytes()[0].is_ascii_alphabetic();
        if !valid {
            return Err(BulkError::Config(format!(
                "{object:?} is not a Salesforce object name"
            )));
        }
        Ok(ObjectRef {
            name: name.to_string(),
            tooling,
        })
    }
}

/// Describes the object afresh (the client's describe cache is dropped first, so new and
/// removed fields are seen on every run).
pub(crate) async fn describe(
    client: &SalesforceClient,
    object: &ObjectRef,
) -> Result<Arc<SObjectDescribe>, BulkError> {
    client.invalidate_describe(Some(&object.name));
    let result = if object.tooling {
        client.tooling_describe(&object.name).await
    } else {
        client.describe(&object.name).await
    };
    result.map_err(|source| BulkError::salesforce("describe", source))
}

/// SOQL datetime literal.
pub(crate) fn soql_datetime(at: DateTime<Utc>) -> String {
    format_datetime(at)
}

/// `SELECT <fields> FROM <object>[ WHERE <conditions joined by AND>]`.
pub(crate) fn select(fields: &[&str], object: &str, conditions: &[String]) -> String {
    let mut soql = format!("SELECT {} FROM {object}", fields.join(", "));
    if !conditions.is_empty() {
        soql.push_str(" WHERE ");
        soql.push_str(&conditions.join(" AND "));
    }
    soql
}

/// How records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadVia {
    /// Bulk 2.0 query job; `all` = `queryAll` (deleted records too).
    Bulk { all: bool },
    /// REST `query` / `queryAll`.
    Rest { all: bool },
    /// Tooling API query.
    Tooling,
}

/// Pages of rows from one query.
///
/// A task reads one page ahead (a channel of one page), so fetching the next page from
/// Salesforce overlaps loading this one into the destination; memory stays bounded by two
/// pages. Dropping the reader stops the task.
pub(crate) struct PageReader {
    pages: tokio::sync::mpsc::Receiver<Result<Vec<Row>, BulkError>>,
    read_ahead: ReadAhead,
    job: Option<String>,
    client: SalesforceClient,
}

/// Aborts the read-ahead task when the reader goes away.
struct ReadAhead(tokio::task::JoinHandle<()>);

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read_ahead(
    mut pages: BoxStream<'static, Result<Vec<Row>, BulkError>>,
) -> (
    tokio::sync::mpsc::Receiver<Result<Vec<Row>, BulkError>>,
    ReadAhead,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(async move {
        while let Some(page) = pages.next().await {
            let failed = page.is_err();
            if sender.send(page).await.is_err() || failed {
                break;
            }
        }
    });
    (receiver, ReadAhead(task))
}

impl PageReader {
    /// The next page, or `None` after the last. Cancellation wins over a page in flight.
    pub(crate) async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<Row>>, BulkError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                self.abort().await;
                Err(BulkError::Canceled)
            }
            page = self.pages.recv() => page.transpose(),
        }
    }

    /// Best effort: a canceled read aborts its Bulk job.
    async fn abort(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = self.client.abort_query_job(&job).await;
        }
    }

    /// Deletes the finished Bulk job (best effort; Salesforce deletes them after 7 days).
    pub(crate) async fn finish(mut self) {
        self.read_ahead.0.abort();
        if let Some(job) = self.job.take() {
            let _ = self.client.delete_query_job(&job).await;
        }
    }
}

/// Starts a query and returns its pages. `fields` are the API names selected, in order.
pub(crate) async fn open(
    client: &SalesforceClient,
    soql: &str,
    via: ReadVia,
    fields: Arc<Vec<String>>,
    options: &BulkOptions,
    cancel: &CancellationToken,
) -> Result<PageReader, BulkError> {
    match via {
        ReadVia::Bulk { all } => {
            let job = client
                .create_query_job(soql, all, ColumnDelimiter::Comma, LineEnding::Lf)
                .await
                .map_err(|source| BulkError::salesforce("bulk 2.0 query job", source))?;
            let waited = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let _ = client.abort_query_job(&job.id).await;
                    return Err(BulkError::Canceled);
                }
                waited = client.wait_for_query_job(&job.id, options.poll) => waited,
            };
            waited.map_err(|source| BulkError::salesforce("bulk 2.0 query job", source))?;
            let pages = client
                .bulk2_query_pages(&job.id, Some(options.page_records), ColumnDelimiter::Comma)
                .map(move |page| {
                    page.map_err(|source| BulkError::salesforce("bulk 2.0 query results", source))
                        .and_then(|page| csv_rows(&fields, page))
                })
                .boxed();
            let (pages, read_ahead) = read_ahead(pages);
            Ok(PageReader {
                pages,
                read_ahead,
                job: Some(job.id),
                client: client.clone(),
            })
        }
        ReadVia::Rest { .. } | ReadVia::Tooling => {
            let scope = match via {
                ReadVia::Rest { all: true } => QueryScope::All,
                ReadVia::Rest { all: false } => QueryScope::Live,
                _ => QueryScope::Tooling,
            };
            let pages = client
                .query_pages(soql, scope)
                .map(move |page| {
                    page.map_err(|source| BulkError::salesforce("query", source))
                        .map(|page| json_rows(&fields, page))
                })
                .boxed();
            let (pages, read_ahead) = read_ahead(pages);
            Ok(PageReader {
                pages,
                read_ahead,
                job: None,
                client: client.clone(),
            })
        }
    }
}

fn csv_rows(fields: &[String], page: CsvPage) -> Result<Vec<Row>, BulkError> {
    if page.rows.is_empty() {
        return Ok(Vec::new());
    }
    let positions: Vec<usize> = fields
        .iter()
        .map(|field| {
            page.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(field))
                .ok_or_else(|| {
                    BulkError::Source(format!(
                        "bulk 2.0 results have no column {field:?} (columns: {:?})",
                        page.columns
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(page
        .rows
        .into_iter()
        .map(|mut cells| {
            positions
                .iter()
                .map(|&i| {
                    let cell = cells.get_mut(i).map(std::mem::take).unwrap_or_default();
                    (!cell.is_empty()).then_some(cell)
                })
                .collect()
        })
        .collect())
}

/// Canonical text of a JSON value.
fn json_text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(match parse_datetime(s) {
            // REST datetimes (`...+0000`) become the CSV form; dates and times do not parse
            // as datetimes and stay as they are.
            Some(at) if s.len() > 10 && s.as_bytes().get(10) == Some(&b'T') => format_datetime(at),
            _ => s.clone(),
        }),
        other => Some(other.to_string()),
    }
}

fn json_rows(fields: &[String], page: QueryPage) -> Vec<Row> {
    page.records
        .into_iter()
        .map(|record| {
            fields
                .iter()
                .map(|field| {
                    record
                        .get(field)
                        .or_else(|| {
                            record
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(field))
                                .map(|(_, v)| v)
                        })
                        .and_then(json_text)
                })
                .collect()
        })
        .collect()
}

/// `SELECT COUNT() FROM <object> WHERE ...` through REST (`queryAll` when `all`).
pub(crate) async fn count(
    client: &SalesforceClient,
    object: &ObjectRef,
    conditions: &[String],
    all: bool,
) -> Result<u64, BulkError> {
    let soql = select(&["COUNT()"], &object.name, conditions);
    let scope = match (object.tooling, all) {
        (true, _) => QueryScope::Tooling,
        (false, true) => QueryScope::All,
        (false, false) => QueryScope::Live,
    };
    let mut pages = std::pin::pin!(client.query_pages(&soql, scope));
    let first = pages
        .try_next()
        .await
        .map_err(|source| BulkError::salesforce("count query", source))?;
    Ok(first.map(|page| page.total_size).unwrap_or(0))
}

/// The newest `SystemModstamp` of the object (deleted records included), or `None` when
/// it has no records.
pub(crate) async fn max_modstamp(
    client: &SalesforceClient,
    object: &ObjectRef,
    field: &str,
) -> Result<Option<DateTime<Utc>>, BulkError> {
    let soql = format!(
        "SELECT {field} FROM {} ORDER BY {field} DESC LIMIT 1",
        object.name
    );
    let scope = if object.tooling {
        QueryScope::Tooling
    } else {
        QueryScope::All
    };
    let records = client
        .query_all_pages(&soql, scope)
        .await
        .map_err(|source| BulkError::salesforce("high-water mark query", source))?;
    let Some(record) = records.first() else {
        return Ok(None);
    };
    let value = record.get(field).and_then(Json::as_str).unwrap_or_default();
    match parse_datetime(value) {
        Some(at) => Ok(Some(at)),
        None => Err(BulkError::Source(format!(
            "{field} {value:?} of {} is not a datetime",
            object.name
        ))),
    }
}

/// Salesforce's clock now (whole minutes), from `latestDateCovered` of
/// `/sobjects/{o}/updated` with a window starting at `since` (a recent record's time, so
/// it is within the 30 days the feed serves). `None` when the object has no feed (not
/// replicateable) or the call fails: the caller then falls back to the data's own times.
pub(crate) async fn server_time(
    client: &SalesforceClient,
    object: &ObjectRef,
    since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start = since - chrono::Duration::minutes(2);
    let end = since + chrono::Duration::days(29);
    match client.get_updated(&object.name, start, end).await {
        Ok(updated) => updated
            .latest_date_covered
            .as_deref()
            .and_then(parse_datetime),
        Err(error) => {
            tracing::debug!(object = %object.name, %error, "no server time from getUpdated");
            None
        }
    }
}

/// The org's conversion rates (relative to the corporate currency, which has rate 1).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rates {
    /// `CurrencyType`: the static rates.
    pub static_rates: HashMap<String, f64>,
    /// `DatedConversionRate`: iso code → (start, next start, rate).
    pub dated: HashMap<String, Vec<(NaiveDate, Option<NaiveDate>, f64)>>,
}

impl Rates {
    /// Converts `amount` (in `iso`) into the corporate currency, with the dated rate in
    /// force on `date` when there is one, else the static rate. `None` when the currency
    /// is unknown.
    pub(crate) fn to_corporate(
        &self,
        amount: f64,
        iso: &str,
        date: Option<NaiveDate>,
    ) -> Option<f64> {
        // A dated rate runs from its StartDate to the next period's StartDate (which is
        // what Salesforce stores as NextStartDate): the latest period started on or before
        // the day applies.
        let dated = date.and_then(|day| {
            self.dated.get(iso).and_then(|periods| {
                periods
                    .iter()
                    .filter(|(start, next, _)| *start <= day && next.is_none_or(|n| day < n))
                    .max_by_key(|(start, _, _)| *start)
                    .map(|(_, _, rate)| *rate)
            })
        });
        let rate = dated.or_else(|| self.static_rates.get(iso).copied())?;
        (rate > 0.0).then(|| amount / rate)
    }
}

/// Reads `CurrencyType` and `DatedConversionRate` (two small REST queries).
pub(crate) async fn load_rates(client: &SalesforceClient) -> Result<Rates, BulkError> {
    let mut rates = Rates::default();
    let types = client
        .query_all_pages(
            "SELECT IsoCode, ConversionRate FROM CurrencyType WHERE IsActive = true",
            QueryScope::Live,
        )
        .await
        .map_err(|source| BulkError::salesforce("CurrencyType query", source))?;
    for record in types {
        if let (Some(iso), Some(rate)) = (
            record.get("IsoCode").and_then(Json::as_str),
            record.get("ConversionRate").and_then(Json::as_f64),
        ) {
            rates.static_rates.insert(iso.to_string(), rate);
        }
    }
    let dated = client
        .query_all_pages(
            "SELECT IsoCode, ConversionRate, StartDate, NextStartDate FROM DatedConversionRate",
            QueryScope::Live,
        )
        .await;
    match dated {
        Ok(records) => {
            for record in records {
                let date = |key: &str| {
                    record
                        .get(key)
                        .and_then(Json::as_str)
                        .and_then(ferry_salesforce::datetime::parse_date)
                };
                if let (Some(iso), Some(rate), Some(start)) = (
                    record.get("IsoCode").and_then(Json::as_str),
                    record.get("ConversionRate").and_then(Json::as_f64),
                    date("StartDate"),
                ) {
                    rates.dated.entry(iso.to_string()).or_default().push((
                        start,
                        date("NextStartDate"),
                        rate,
                    ));
                }
            }
        }
        // Orgs without advanced currency management have no DatedConversionRate: static
        // rates only.
        Err(error) if matches!(error.error_code(), Some("INVALID_TYPE")) => {}
        Err(source) => return Err(BulkError::salesforce("DatedConversionRate query", source)),
    }
    Ok(rates)
}

/// Whether the error is the daily API budget refusing a call.
pub(crate) fn is_budget(error: &SalesforceError) -> bool {
    matches!(error, SalesforceError::BudgetExhausted(_)) || error.is_daily_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_refs() {
        assert_eq!(
            ObjectRef::parse("tooling:ApexClass").expect("ok"),
            ObjectRef {
                name: "ApexClass".into(),
                tooling: true
            }
        );
        assert!(!ObjectRef::parse("Account").expect("ok").tooling);
        assert!(ObjectRef::parse("Account; DROP").is_err());
        assert!(ObjectRef::parse("tooling:").is_err());
    }

    #[test]
    fn canonical_json_values() {
        assert_eq!(
            json_text(&Json::String("2024-01-01T10:00:00.000+0000".into())).as_deref(),
            Some("2024-01-01T10:00:00.000Z")
        );
        assert_eq!(
            json_text(&Json::String("2024-01-01".into())).as_deref(),
            Some("2024-01-01")
        );
        assert_eq!(json_text(&serde_json::json!(12.5)).as_deref(), Some("12.5"));
        assert_eq!(json_text(&Json::Bool(true)).as_deref(), Some("true"));
        assert_eq!(json_text(&Json::Null), None);
        assert_eq!(
            select(
                &["Id", "Name"],
                "Account",
                &["A = 1".into(), "B = 2".into()]
            ),
            "SELECT Id, Name FROM Account WHERE A = 1 AND B = 2"
        );
    }

    #[test]
    fn converts_with_dated_rates() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let mut rates = Rates::default();
        rates.static_rates.insert("EUR".into(), 0.9);
        rates.static_rates.insert("USD".into(), 1.0);
        rates.dated.insert(
            "EUR".into(),
            vec![
                (day("2020-01-01"), None, 0.8),
                (day("2024-01-01"), None, 0.5),
            ],
        );
        assert_eq!(
            rates.to_corporate(100.0, "EUR", Some(day("2023-06-01"))),
            Some(125.0)
        );
        assert_eq!(
            rates.to_corporate(100.0, "EUR", Some(day("2025-06-01"))),
            Some(200.0)
        );
        assert_eq!(rates.to_corporate(90.0, "EUR", None), Some(100.0));
        assert_eq!(
            rates.to_corporate(90.0, "USD", Some(day("2025-06-01"))),
            Some(90.0)
        );
        assert_eq!(rates.to_corporate(1.0, "JPY", None), None);
    }
}
