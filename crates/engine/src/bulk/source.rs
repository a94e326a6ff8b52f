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
use ferry_salesforce::bulk2::{ColumnDelimiter, LineEnding};
use ferry_salesforce::datetime::{format_datetime, parse_datetime};
use ferry_salesforce::{QueryPage, QueryScope, SObjectDescribe, SalesforceClient, SalesforceError};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::BulkOptions;
use super::run::BulkError;
use super::schema::SqlType;

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

/// A page as the reader hands it over.
pub(crate) enum Page {
    /// Rows in the read order.
    Rows(Vec<Row>),
    /// PostgreSQL COPY CSV rows, already encoded for the stage's column types.
    Copy(Vec<u8>),
}

/// The stage's column types, in the read order, for a PostgreSQL destination that takes
/// Bulk pages as COPY input (only stages whose columns are exactly the fields read).
pub(crate) type CopyTypes = Arc<Vec<SqlType>>;

/// Pages of one read (one query, or the Id-range chunks of one read).
///
/// A task reads ahead (a channel of one page): while the destination loads one page, the
/// next is downloaded and parsed or encoded. For Bulk 2.0 reads, the jobs of up to
/// `chunk_jobs_in_flight` chunks run in Salesforce while the pages of an earlier chunk are
/// read. Memory stays bounded by a few pages. Dropping the reader stops the task.
pub(crate) struct PageReader {
    pages: tokio::sync::mpsc::Receiver<Result<Page, BulkError>>,
    task: Option<AbortOnDrop<()>>,
    stop: CancellationToken,
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PageReader {
    /// The next page, or `None` after the last. Cancellation wins over a page in flight
    /// and aborts the Bulk jobs of the read.
    pub(crate) async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Page>, BulkError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                self.shutdown().await;
                Err(BulkError::Canceled)
            }
            page = self.pages.recv() => page.transpose(),
        }
    }

    /// Stops the task and waits while it aborts (or deletes) the jobs it created.
    async fn shutdown(&mut self) {
        self.stop.cancel();
        self.pages.close();
        if let Some(task) = self.task.as_mut() {
            let _ = (&mut task.0).await;
        }
        self.task = None;
    }

    /// Waits for the task after the last page (it deletes each finished Bulk job).
    pub(crate) async fn finish(mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = (&mut task.0).await;
        }
        self.task = None;
    }
}

/// Starts a read and returns its pages. `queries` are the SOQL texts of the read (several
/// only for Bulk reads chunked by Id range, in Id order); `fields` are the API names
/// selected, in order; `copy` asks Bulk pages to be encoded as COPY input when their
/// columns are `fields`.
pub(crate) fn open(
    client: &SalesforceClient,
    queries: Vec<String>,
    via: ReadVia,
    fields: Arc<Vec<String>>,
    copy: Option<CopyTypes>,
    options: &BulkOptions,
) -> PageReader {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let stop = CancellationToken::new();
    let task = match via {
        ReadVia::Bulk { all } => tokio::spawn(bulk_pages(
            BulkRead {
                client: client.clone(),
                all,
                fields,
                copy,
                options: options.clone(),
                stop: stop.clone(),
            },
            queries,
            sender,
        )),
        ReadVia::Rest { .. } | ReadVia::Tooling => {
            let scope = match via {
                ReadVia::Rest { all: true } => QueryScope::All,
                ReadVia::Rest { all: false } => QueryScope::Live,
                _ => QueryScope::Tooling,
            };
            tokio::spawn(rest_pages(
                client.clone(),
                queries,
                scope,
                fields,
                stop.clone(),
                sender,
            ))
        }
    };
    PageReader {
        pages: receiver,
        task: Some(AbortOnDrop(task)),
        stop,
    }
}

type PageSender = tokio::sync::mpsc::Sender<Result<Page, BulkError>>;

async fn rest_pages(
    client: SalesforceClient,
    queries: Vec<String>,
    scope: QueryScope,
    fields: Arc<Vec<String>>,
    stop: CancellationToken,
    sender: PageSender,
) {
    for soql in queries {
        let mut pages = std::pin::pin!(client.query_pages(&soql, scope));
        loop {
            let page = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                page = pages.next() => page,
            };
            let Some(page) = page else { break };
            let page = page
                .map_err(|source| BulkError::salesforce("query", source))
                .map(|page| Page::Rows(json_rows(&fields, page)));
            let failed = page.is_err();
            if sender.send(page).await.is_err() || failed {
                return;
            }
        }
    }
}

/// What a Bulk read task works with.
struct BulkRead {
    client: SalesforceClient,
    all: bool,
    fields: Arc<Vec<String>>,
    copy: Option<CopyTypes>,
    options: BulkOptions,
    stop: CancellationToken,
}

/// A chunk's job: created and waited for on its own task.
type ChunkJob = AbortOnDrop<Result<String, BulkError>>;

/// Creates a Bulk 2.0 query job and waits for it; on `stop` (or a failure) the job is
/// aborted.
async fn run_query_job(
    client: SalesforceClient,
    soql: String,
    all: bool,
    poll: ferry_salesforce::bulk2::PollOptions,
    stop: CancellationToken,
) -> Result<String, BulkError> {
    let job = client
        .create_query_job(&soql, all, ColumnDelimiter::Comma, LineEnding::Lf)
        .await
        .map_err(|source| BulkError::salesforce("bulk 2.0 query job", source))?;
    let waited = tokio::select! {
        biased;
        () = stop.cancelled() => {
            let _ = client.abort_query_job(&job.id).await;
            return Err(BulkError::Canceled);
        }
        waited = client.wait_for_query_job(&job.id, poll) => waited,
    };
    if let Err(source) = waited {
        let _ = client.abort_query_job(&job.id).await;
        return Err(BulkError::salesforce("bulk 2.0 query job", source));
    }
    Ok(job.id)
}

/// Waits for the chunk jobs still running after `stop` (each aborts its own job) and
/// deletes those that had completed.
async fn drain(client: &SalesforceClient, jobs: std::collections::VecDeque<ChunkJob>) {
    for mut job in jobs {
        if let Ok(Ok(id)) = (&mut job.0).await {
            let _ = client.delete_query_job(&id).await;
        }
    }
}

/// Encodes one Bulk page for the destination.
fn stage_page(fields: &[String], copy: Option<&CopyTypes>, body: &[u8]) -> Result<Page, BulkError> {
    if let Some(types) = copy
        && let Some((bytes, _rows)) = super::csv::page_to_copy(fields, types, body)?
    {
        return Ok(Page::Copy(bytes));
    }
    super::csv::page_rows(fields, body).map(Page::Rows)
}

/// The pages of each chunk's job in turn, with the jobs of the next chunks running
/// meanwhile. Each job is deleted once read.
async fn bulk_pages(read: BulkRead, queries: Vec<String>, sender: PageSender) {
    let BulkRead {
        client,
        all,
        fields,
        copy,
        options,
        stop,
    } = read;
    let in_flight = options.chunk_jobs_in_flight.max(1);
    let mut jobs: std::collections::VecDeque<ChunkJob> = std::collections::VecDeque::new();
    let mut queries = queries.into_iter();
    let mut chunks_done = 0usize;
    loop {
        while jobs.len() < in_flight
            && let Some(soql) = queries.next()
        {
            jobs.push_back(AbortOnDrop(tokio::spawn(run_query_job(
                client.clone(),
                soql,
                all,
                options.poll,
                stop.clone(),
            ))));
        }
        let Some(mut job) = jobs.pop_front() else {
            return;
        };
        let job = match (&mut job.0).await {
            Ok(Ok(id)) => id,
            Ok(Err(error)) => {
                stop.cancel();
                drain(&client, jobs).await;
                if !matches!(error, BulkError::Canceled) {
                    let _ = sender.send(Err(error)).await;
                }
                return;
            }
            Err(join) => {
                stop.cancel();
                drain(&client, jobs).await;
                let _ = sender
                    .send(Err(BulkError::Source(format!(
                        "bulk 2.0 read task: {join}"
                    ))))
                    .await;
                return;
            }
        };
        let mut pages = client.bulk2_query_raw_pages(&job, Some(options.page_records));
        let mut failure = None;
        loop {
            let page = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                page = pages.next() => page,
            };
            let Some(page) = page else { break };
            let staged = page
                .map_err(|source| BulkError::salesforce("bulk 2.0 query results", source))
                .and_then(|page| stage_page(&fields, copy.as_ref(), &page.body));
            match staged {
                Ok(page) => {
                    if sender.send(Ok(page)).await.is_err() {
                        stop.cancel();
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let _ = client.delete_query_job(&job).await;
        chunks_done += 1;
        if failure.is_none()
            && !stop.is_cancelled()
            && options.fail_after_chunks == Some(chunks_done)
            && (!jobs.is_empty() || queries.len() > 0)
        {
            failure = Some(BulkError::Injected);
        }
        if failure.is_some() || stop.is_cancelled() {
            stop.cancel();
            drain(&client, jobs).await;
            if let Some(error) = failure {
                let _ = sender.send(Err(error)).await;
            }
            return;
        }
    }
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

/// Base-62 digits of Salesforce ids, in their sort order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 15-character id as a number (ids compare like their base-62 values).
fn id_number(id15: &str) -> Option<u128> {
    id15.bytes().try_fold(0u128, |value, byte| {
        let digit = BASE62.iter().position(|b| *b == byte)?;
        Some(value * 62 + digit as u128)
    })
}

/// The 15-character id of a number.
fn id_text(mut value: u128) -> String {
    let mut digits = [b'0'; 15];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|b| char::from(*b)).collect()
}

/// The 18-character form of a 15-character id (the case-checksum suffix).
fn id18(id15: &str) -> String {
    const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id15.to_string();
    for chunk in id15.as_bytes().chunks(5) {
        let mut bits = 0usize;
        for (i, byte) in chunk.iter().enumerate() {
            if byte.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(char::from(SUFFIX[bits]));
    }
    out
}

/// `chunks - 1` ids splitting `[min, max]` (15- or 18-character ids) into `chunks` ranges
/// of equal id span, ascending and distinct (fewer when the span is too small). Each is an
/// 18-character id, so Salesforce accepts it as a literal.
pub(crate) fn id_boundaries(min: &str, max: &str, chunks: u64) -> Vec<String> {
    let (Some(low), Some(high)) = (
        min.get(..15).and_then(id_number),
        max.get(..15).and_then(id_number),
    ) else {
        return Vec::new();
    };
    if chunks < 2 || high <= low {
        return Vec::new();
    }
    let span = high - low;
    let mut out: Vec<String> = Vec::new();
    for index in 1..u128::from(chunks) {
        let value = low
            + span / u128::from(chunks) * index
            + span % u128::from(chunks) * index / u128::from(chunks);
        if value <= low || value > high {
            continue;
        }
        let id = id18(&id_text(value));
        if out.last() != Some(&id) {
            out.push(id);
        }
    }
    out
}

/// The smallest and largest `Id` of the object (two REST queries), or `None` when it has
/// no records.
pub(crate) async fn id_range(
    client: &SalesforceClient,
    object: &ObjectRef,
) -> Result<Option<(String, String)>, BulkError> {
    let mut ends = Vec::with_capacity(2);
    for direction in ["ASC", "DESC"] {
        let soql = format!(
            "SELECT Id FROM {} ORDER BY Id {direction} LIMIT 1",
            object.name
        );
        let records = client
            .query_all_pages(&soql, QueryScope::All)
            .await
            .map_err(|source| BulkError::salesforce("id range query", source))?;
        let Some(id) = records
            .first()
            .and_then(|r| r.get("Id"))
            .and_then(Json::as_str)
        else {
            return Ok(None);
        };
        ends.push(id.to_string());
    }
    let max = ends.pop().unwrap_or_default();
    let min = ends.pop().unwrap_or_default();
    Ok(Some((min, max)))
}

/// The SOQL of each Id-range chunk of a read: the conditions plus `Id >= lower` (all but
/// the first) and `Id < upper` (all but the last). The ranges cover every id, so no record
/// falls between chunks, and they do not overlap.
pub(crate) fn chunk_queries(
    fields: &[&str],
    object: &str,
    conditions: &[String],
    boundaries: &[String],
) -> Vec<String> {
    (0..=boundaries.len())
        .map(|index| {
            let mut chunk = conditions.to_vec();
            if index > 0 {
                chunk.push(format!("Id >= '{}'", boundaries[index - 1]));
            }
            if let Some(upper) = boundaries.get(index) {
                chunk.push(format!("Id < '{upper}'"));
            }
            select(fields, object, &chunk)
        })
        .collect()
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

/// Salesforce's clock now (whole minutes): `latestDateCovered` of the replication feed
/// `/sobjects/{o}/deleted` (its answer lists only deletes, usually few) — or of
/// `/sobjects/{o}/updated` when that fails (the deleted feed serves 15 days, the updated
/// one 30) — for a window starting at `since` (a recent record's time). `None` when the
/// object has no feed (not replicateable) or both calls fail: the caller then falls back
/// to the data's own times.
pub(crate) async fn server_time(
    client: &SalesforceClient,
    object: &ObjectRef,
    since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start = since - chrono::Duration::minutes(2);
    let end = since + chrono::Duration::days(29);
    let covered = match client.get_deleted(&object.name, start, end).await {
        Ok(deleted) => deleted.latest_date_covered,
        Err(error) => {
            tracing::debug!(object = %object.name, %error, "no server time from getDeleted");
            match client.get_updated(&object.name, start, end).await {
                Ok(updated) => updated.latest_date_covered,
                Err(error) => {
                    tracing::debug!(object = %object.name, %error, "no server time from getUpdated");
                    None
                }
            }
        }
    };
    covered.as_deref().and_then(parse_datetime)
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
    fn id_boundaries_split_the_span() {
        assert_eq!(id18("001000000000001"), "001000000000001AAA");
        assert_eq!(id18("001A0000000aBcD"), "001A0000000aBcDIAU");
        let bounds = id_boundaries("001Q00000000001", "001Q0000000fa0AAAA", 4);
        assert_eq!(bounds.len(), 3);
        let mut sorted = bounds.clone();
        sorted.sort();
        assert_eq!(sorted, bounds, "ascending");
        assert!(bounds.iter().all(|b| b.len() == 18));
        assert!(bounds[0].as_str() > "001Q00000000001");
        assert!(bounds[2].as_str() < "001Q0000000fa0A");
        assert!(id_boundaries("001Q00000000001", "001Q00000000001", 4).is_empty());
        assert_eq!(
            id_boundaries("001Q00000000001", "001Q00000000003", 8).len(),
            1
        );
        assert!(id_boundaries("bad", "001Q00000000003", 8).is_empty());
        let queries = chunk_queries(&["Id"], "Account", &["A = 1".into()], &bounds[..1]);
        assert_eq!(
            queries,
            [
                format!(
                    "SELECT Id FROM Account WHERE A = 1 AND Id < '{}'",
                    bounds[0]
                ),
                format!(
                    "SELECT Id FROM Account WHERE A = 1 AND Id >= '{}'",
                    bounds[0]
                ),
            ]
        );
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
