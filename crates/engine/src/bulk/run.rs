//! One bulk-sync execution: every selected object in turn, each through
//! describe → plan → table and drift → read (staging) → reconcile counts → merge, deletes,
//! refresh and cursor in one destination transaction.
//!
//! # The cursor and the safe watermark
//! A window reads `SystemModstamp >= cursor AND SystemModstamp < U`, where `U` is the
//! newest `SystemModstamp` Salesforce has (deleted records included) plus one millisecond,
//! taken just before the read. The next cursor is `min(U, T - lag)`, `T` being
//! Salesforce's clock at the read (`latestDateCovered` of `/sobjects/{o}/updated`, whole
//! minutes; without it, `U - lag`). So the next window overlaps this one by at least `lag`
//! (`BulkOptions::lag`) before the read: a record whose transaction began earlier but
//! committed after the read (its SystemModstamp is older than records already seen), and
//! records sharing a timestamp with the newest one, are read next time. An org idle for a
//! day re-reads nothing: the cursor stays at `U`. Rows read twice merge idempotently on
//! `Id`. The cursor is written in the same destination transaction as the merge, so a
//! crash re-reads a window, never skips one.
//!
//! After each window is staged, `SELECT COUNT()` over the same window (through
//! `queryAll`) must not exceed the distinct records received; otherwise the window is read
//! again (records changed during the read move *out* of the window, so the count can only
//! shrink legitimately), and after `max_window_attempts` the object fails.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use ferry_salesforce::SalesforceError;
use ferry_salesforce::datetime::{format_datetime, parse_datetime};
use tracing::{Instrument, info, info_span, warn};

use super::destination::{Conn, Destination, Dialect};
use super::schema::{Column, ColumnSource, ObjectPlan, normalize_name, plan_object, widen};
use super::source::{self, ObjectRef, Page, PageReader, Rates, ReadVia, Row};
use super::{
    BulkObject, BulkRunRequest, DeleteHandling, DestinationMode, FetchMode, ObjectOutcome,
    ObjectStatus,
};

/// Why an object failed.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// A Salesforce call failed (including a refusal by the daily API budget).
    #[error("{}", salesforce_message(context, source))]
    Salesforce {
        context: &'static str,
        #[source]
        source: Box<SalesforceError>,
    },
    /// A destination statement failed.
    #[error("destination: {context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// The sync or destination configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// Salesforce returned something the engine cannot use.
    #[error("{0}")]
    Source(String),
    /// A window's record count never matched Salesforce's.
    #[error("{0}")]
    Reconciliation(String),
    /// The execution was canceled.
    #[error("canceled")]
    Canceled,
    /// `BulkOptions::fail_before_commit`.
    #[error("injected failure before the destination commit")]
    Injected,
}

fn salesforce_message(context: &str, source: &SalesforceError) -> String {
    if source::is_budget(source) {
        format!("the daily Salesforce API budget refused the call ({context}): {source}")
    } else {
        format!("salesforce {context}: {source}")
    }
}

impl BulkError {
    pub(crate) fn salesforce(context: &'static str, source: SalesforceError) -> BulkError {
        BulkError::Salesforce {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn database(context: &str, source: sqlx::Error) -> BulkError {
        BulkError::Database {
            context: context.to_string(),
            source,
        }
    }
}

/// Boxes a future as `Send`: proving `Send` here, with concrete lifetimes, keeps the
/// compiler from needing it for every lifetime (rust-lang/rust#102211), so callers can
/// spawn [`run_bulk_sync`](super::run_bulk_sync).
/// A boxed `Send` future.
pub(crate) type SendFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub(crate) fn send<'a, T>(
    future: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}

/// Names of the staging tables (temporary, per connection).
const STAGE_MAIN: &str = "_ferry_stage";
const STAGE_PARTIAL: &str = "_ferry_stage_refresh";
const STAGE_IDS: &str = "_ferry_stage_ids";

/// Everything an object needs from the run.
struct RunContext<'a> {
    req: &'a BulkRunRequest,
    destination: &'a Destination,
}

/// Counts of one object.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    deletes: u64,
}

pub(crate) async fn run(
    req: BulkRunRequest,
    progress: &(dyn Fn(&ObjectOutcome) + Send + Sync),
) -> Vec<ObjectOutcome> {
    let span = info_span!(
        "bulk_sync_run",
        sync_id = %req.sync_id,
        execution_id = %req.execution_id,
        destination = %req.destination.connection_type,
        objects = req.objects.len(),
    );
    async {
        let destination = Destination::from_spec(&req.destination);
        let mut rates: Option<Rates> = None;
        let mut outcomes = Vec::with_capacity(req.objects.len());
        for object in &req.objects {
            let mut outcome = ObjectOutcome {
                object: object.object.clone(),
                output_name: object.output_name.clone(),
                status: ObjectStatus::Running,
                records: 0,
                deletes: 0,
                errors: 0,
                error: None,
                started_at: Utc::now(),
                completed_at: None,
            };
            let result = if req.cancel.is_cancelled() {
                Err(BulkError::Canceled)
            } else {
                match &destination {
                    Err(error) => Err(BulkError::Config(error.to_string())),
                    Ok(destination) => {
                        progress(&outcome);
                        let ctx = RunContext {
                            req: &req,
                            destination,
                        };
                        send(sync_object(&ctx, object, &mut rates))
                            .instrument(info_span!("bulk_object", object = %object.object))
                            .await
                    }
                }
            };
            outcome.completed_at = Some(Utc::now());
            match result {
                Ok(counts) => {
                    outcome.status = ObjectStatus::Completed;
                    outcome.records = counts.records;
                    outcome.deletes = counts.deletes;
                    info!(object = %object.object, records = counts.records, deletes = counts.deletes, "object synced");
                }
                Err(BulkError::Canceled) => {
                    outcome.status = ObjectStatus::Canceled;
                    outcome.error = Some("canceled".into());
                }
                Err(error) => {
                    warn!(object = %object.object, %error, "object failed");
                    outcome.status = ObjectStatus::Failed;
                    outcome.errors = 1;
                    outcome.error = Some(error.to_string());
                }
            }
            progress(&outcome);
            outcomes.push(outcome);
        }
        outcomes
    }
    .instrument(span)
    .await
}

/// Where a staged cell comes from.
#[derive(Debug, Clone)]
enum CellSource {
    /// The read row's cell.
    Read(usize),
    /// A currency amount converted to the corporate currency.
    Convert {
        amount: usize,
        iso: Option<usize>,
        date: Option<usize>,
    },
}

/// One read: the fields selected and the staged columns computed from them.
struct Stage {
    read: Arc<Vec<String>>,
    columns: Vec<Column>,
    sources: Vec<CellSource>,
}

impl Stage {
    /// A stage of the plan's columns for which `include` holds (the Id always; the
    /// record's currency and date too when a converted column is included).
    fn of(plan: &ObjectPlan, include: impl Fn(&Column) -> bool) -> Stage {
        let wanted_converted: Vec<&Column> = plan.columns[plan.read_fields..]
            .iter()
            .filter(|c| include(c))
            .collect();
        let helpers: Vec<usize> = if wanted_converted.is_empty() {
            Vec::new()
        } else {
            [plan.currency_iso_code, plan.rate_date]
                .into_iter()
                .flatten()
                .collect()
        };
        let mut read_indices: Vec<usize> = Vec::new();
        for (index, column) in plan.columns[..plan.read_fields].iter().enumerate() {
            let converted_source = wanted_converted
                .iter()
                .any(|c| c.source == ColumnSource::Converted { field: index });
            if index == plan.id || include(column) || helpers.contains(&index) || converted_source {
                read_indices.push(index);
            }
        }
        let position = |plan_index: usize| read_indices.iter().position(|&i| i == plan_index);
        let mut columns = Vec::new();
        let mut sources = Vec::new();
        for (read_position, &plan_index) in read_indices.iter().enumerate() {
            columns.push(plan.columns[plan_index].clone());
            sources.push(CellSource::Read(read_position));
        }
        for column in wanted_converted {
            if let ColumnSource::Converted { field } = column.source
                && let Some(amount) = position(field)
            {
                columns.push(column.clone());
                sources.push(CellSource::Convert {
                    amount,
                    iso: plan.currency_iso_code.and_then(position),
                    date: plan.rate_date.and_then(position),
                });
            }
        }
        Stage {
            read: Arc::new(
                read_indices
                    .iter()
                    .map(|&i| plan.columns[i].field.clone())
                    .collect(),
            ),
            columns,
            sources,
        }
    }

    fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    fn stage_row(&self, destination: &Destination, rates: Option<&Rates>, row: &mut Row) -> Row {
        // Conversions first: they read cells the plain columns then take.
        let mut converted: Vec<Option<String>> = self
            .sources
            .iter()
            .map(|source| match source {
                CellSource::Convert { amount, iso, date } => {
                    convert(rates, row, *amount, *iso, *date)
                }
                CellSource::Read(_) => None,
            })
            .collect();
        self.sources
            .iter()
            .zip(&self.columns)
            .zip(converted.iter_mut())
            .map(|((source, column), converted)| {
                let raw = match source {
                    CellSource::Read(i) => row.get_mut(*i).and_then(Option::take),
                    CellSource::Convert { .. } => converted.take(),
                };
                raw.and_then(|value| destination.encode(column.sql_type, value))
            })
            .collect()
    }
}

fn convert(
    rates: Option<&Rates>,
    row: &Row,
    amount: usize,
    iso: Option<usize>,
    date: Option<usize>,
) -> Option<String> {
    let rates = rates?;
    let cell = |i: Option<usize>| i.and_then(|i| row.get(i)).and_then(Option::as_deref);
    let value: f64 = cell(Some(amount))?.trim().parse().ok()?;
    let day = cell(date).and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok());
    // Without a currency field the amount is already in the corporate currency.
    let converted = match cell(iso) {
        Some(code) => rates.to_corporate(value, code, day)?,
        None => value,
    };
    Some(format!("{converted}"))
}

async fn sync_object(
    ctx: &RunContext<'_>,
    object: &BulkObject,
    rates: &mut Option<Rates>,
) -> Result<Counts, BulkError> {
    let req = ctx.req;
    let object_ref = ObjectRef::parse(&object.object)?;
    let describe = source::describe(&req.client, &object_ref).await?;
    let plan = plan_object(
        &describe.fields,
        object.fields.as_deref(),
        req.normalize_names,
        req.enable_multicurrency_lookup,
    )
    .map_err(|e| BulkError::Config(format!("{}: {e}", object.object)))?;
    if !plan.missing_fields.is_empty() {
        warn!(
            object = %object.object,
            fields = ?plan.missing_fields,
            "selected fields no longer exist in salesforce; their columns keep their data"
        );
    }
    let converts = plan.columns.len() > plan.read_fields;
    if converts && rates.is_none() {
        *rates = Some(source::load_rates(&req.client).await?);
    }
    let output = if req.normalize_names {
        normalize_name(&object.output_name)
    } else {
        object.output_name.clone()
    };
    let table = ctx.destination.table_name(&output);
    let mut conn = ctx.destination.connect().await?;
    let result = send(sync_object_on(
        ctx,
        object,
        &object_ref,
        &plan,
        &table,
        rates.as_ref(),
        &mut conn,
    ))
    .await;
    conn.close().await;
    result
}

/// What the table looked like before this run.
struct TableState {
    /// The table was created by this run.
    created: bool,
    /// Read columns added by this run to an existing table (to backfill).
    added: HashSet<String>,
}

/// Creates the table or brings its columns up to the plan (add, widen; never drop).
async fn ensure_table(
    destination: &Destination,
    conn: &mut Conn,
    table: &str,
    plan: &ObjectPlan,
    soft_deletes: bool,
    snapshot: bool,
) -> Result<TableState, BulkError> {
    let Some(existing) = destination.table_columns(conn, table).await? else {
        conn.execute(&destination.create_table_sql(table, &plan.columns, soft_deletes, snapshot))
            .await?;
        return Ok(TableState {
            created: true,
            added: HashSet::new(),
        });
    };
    let mut added = HashSet::new();
    let find = |name: &str| {
        existing
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    };
    for column in &plan.columns {
        match find(&column.name) {
            None => {
                info!(table, column = %column.name, "adding column");
                conn.execute(&destination.add_column_sql(table, &column.name, column.sql_type))
                    .await?;
                added.insert(column.name.clone());
            }
            Some(Some(current)) => {
                if let Some(wider) = widen(destination.dialect, current, column.sql_type)
                    && let Some(sql) = destination.widen_column_sql(table, &column.name, wider)
                {
                    info!(table, column = %column.name, to = %wider.ddl(destination.dialect), "widening column");
                    conn.execute(&sql).await?;
                }
            }
            Some(None) => {}
        }
    }
    for (name, sql_type) in destination.ferry_columns(soft_deletes, snapshot) {
        if find(name).is_none() {
            conn.execute(&destination.add_column_sql(table, name, sql_type))
                .await?;
        }
    }
    Ok(TableState {
        created: false,
        added,
    })
}

/// Reads one query (or its Id-range chunks) into a fresh staging table; returns the
/// distinct records staged.
#[allow(clippy::too_many_arguments)]
async fn read_into(
    ctx: &RunContext<'_>,
    conn: &mut Conn,
    stage: &Stage,
    into: Into<'_>,
    queries: Vec<String>,
    via: ReadVia,
    rates: Option<&Rates>,
) -> Result<u64, BulkError> {
    let destination = ctx.destination;
    let names = stage.column_names();
    let (table_ref, staging) = match into {
        Into::Staging(staging) => {
            for statement in destination.create_staging_sql(staging, &names) {
                conn.execute(&statement).await?;
            }
            (destination.staging_ref(staging), Some(staging))
        }
        Into::Table(table) => {
            let table_ref = destination.qualified(table);
            conn.execute(&format!("TRUNCATE {table_ref}")).await?;
            (table_ref, None)
        }
    };
    // PostgreSQL takes Bulk pages as COPY input encoded on the read-ahead task, when every
    // staged column is a field read as it is.
    let copy = (destination.dialect == Dialect::Postgres
        && stage
            .sources
            .iter()
            .all(|source| matches!(source, CellSource::Read(_))))
    .then(|| Arc::new(stage.columns.iter().map(|c| c.sql_type).collect::<Vec<_>>()));
    let chunks = queries.len();
    let mut reader: PageReader = source::open(
        &ctx.req.client,
        queries,
        via,
        stage.read.clone(),
        copy,
        &ctx.req.options,
    );
    let mut pages = 0u64;
    while let Some(page) = reader.next(&ctx.req.cancel).await? {
        pages += 1;
        match page {
            Page::Rows(rows) => {
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|mut row| stage.stage_row(destination, rates, &mut row))
                    .collect();
                conn.load(destination, &table_ref, &names, &rows).await?;
            }
            Page::Copy(csv) => {
                conn.copy_csv(destination, &table_ref, &names, &csv).await?;
            }
        }
    }
    reader.finish().await;
    let count_sql = match staging {
        Some(staging) => {
            if let Some(sql) = destination.dedupe_staging_sql(staging, &names[0]) {
                conn.execute(&sql).await?;
            }
            destination.count_staging_sql(staging, None)
        }
        None => format!("SELECT COUNT(*) FROM {table_ref}"),
    };
    let staged = conn.fetch_count(&count_sql).await?;
    info!(into = %table_ref, pages, chunks, staged, ?via, "window staged");
    Ok(staged)
}

/// The SOQL of a read: one query, or — for a Bulk read of more than `chunk_records`
/// records — one query per Id range, the ranges splitting the object's Id span into
/// `ceil(expected / chunk_records)` parts.
async fn read_queries(
    ctx: &RunContext<'_>,
    object: &ObjectRef,
    fields: &[&str],
    conditions: &[String],
    via: ReadVia,
    expected: Option<u64>,
) -> Result<Vec<String>, BulkError> {
    let single = || vec![source::select(fields, &object.name, conditions)];
    let chunk_records = ctx.req.options.chunk_records.max(1);
    let Some(expected) = expected else {
        return Ok(single());
    };
    if !matches!(via, ReadVia::Bulk { .. }) || expected <= chunk_records {
        return Ok(single());
    }
    let Some((min, max)) = source::id_range(&ctx.req.client, object).await? else {
        return Ok(single());
    };
    let boundaries = source::id_boundaries(&min, &max, expected.div_ceil(chunk_records));
    info!(object = %object.name, expected, chunks = boundaries.len() + 1, "reading in id-range chunks");
    Ok(source::chunk_queries(
        fields,
        &object.name,
        conditions,
        &boundaries,
    ))
}

/// Where a read lands.
#[derive(Debug, Clone, Copy)]
enum Into<'a> {
    /// A temporary staging table (merged later).
    Staging(&'a str),
    /// Straight into a table this run created (PostgreSQL `COPY`; no merge needed).
    Table(&'a str),
}

/// Chooses REST for small reads and Bulk 2.0 for large ones (Tooling: always its query).
fn choose_via(
    ctx: &RunContext<'_>,
    object: &ObjectRef,
    expected: Option<u64>,
    all: bool,
) -> ReadVia {
    if object.tooling {
        return ReadVia::Tooling;
    }
    match expected {
        Some(n) if n <= ctx.req.options.rest_max_records => ReadVia::Rest { all },
        _ => ReadVia::Bulk { all },
    }
}

/// Reads a window, re-reading while Salesforce counts more records than were received.
#[allow(clippy::too_many_arguments)]
async fn read_reconciled(
    ctx: &RunContext<'_>,
    conn: &mut Conn,
    object: &ObjectRef,
    stage: &Stage,
    into: Into<'_>,
    conditions: &[String],
    all: bool,
    rates: Option<&Rates>,
) -> Result<u64, BulkError> {
    let fields: Vec<&str> = stage.read.iter().map(String::as_str).collect();
    if object.tooling {
        // The Tooling API has no queryAll; its objects are small and read whole.
        let soql = source::select(&fields, &object.name, conditions);
        return send(read_into(
            ctx,
            conn,
            stage,
            into,
            vec![soql],
            ReadVia::Tooling,
            rates,
        ))
        .await;
    }
    let mut expected = source::count(&ctx.req.client, object, conditions, all).await?;
    let attempts = ctx.req.options.max_window_attempts.max(1);
    for attempt in 1..=attempts {
        let via = choose_via(ctx, object, Some(expected), all);
        let queries = read_queries(ctx, object, &fields, conditions, via, Some(expected)).await?;
        let staged = send(read_into(ctx, conn, stage, into, queries, via, rates))
            .instrument(info_span!("bulk_window", attempt, expected))
            .await?;
        let after = source::count(&ctx.req.client, object, conditions, all).await?;
        if staged >= after {
            return Ok(staged);
        }
        warn!(
            ?into,
            attempt,
            staged,
            expected = after,
            "window short of salesforce's count; reading it again"
        );
        expected = after;
    }
    Err(BulkError::Reconciliation(format!(
        "{}: salesforce counted {expected} records in the window but {attempts} reads returned fewer",
        object.name
    )))
}

/// The cursor after a window read up to `upper` at Salesforce time `read_at`.
fn next_cursor(
    upper: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
    lag: ChronoDuration,
) -> DateTime<Utc> {
    match read_at {
        Some(read_at) => upper.min(read_at - lag),
        None => upper - lag,
    }
}

async fn sync_object_on(
    ctx: &RunContext<'_>,
    object: &BulkObject,
    object_ref: &ObjectRef,
    plan: &ObjectPlan,
    table: &str,
    rates: Option<&Rates>,
    conn: &mut Conn,
) -> Result<Counts, BulkError> {
    let req = ctx.req;
    let destination = ctx.destination;
    let soft_deletes = req.destination.deletes == DeleteHandling::SoftColumn;
    let snapshot = req.destination.mode == DestinationMode::Snapshot;
    destination.prepare(conn).await?;
    let sync_id = req.sync_id.to_string();
    let state = destination
        .read_state(conn, &sync_id, &object.object)
        .await?;
    let table_state = ensure_table(destination, conn, table, plan, soft_deletes, false).await?;
    let snapshot_table = format!("{table}_snapshots");
    if snapshot {
        ensure_table(destination, conn, &snapshot_table, plan, soft_deletes, true).await?;
    }
    let (stored_cursor, incremental_runs) = state.unwrap_or((None, 0));
    let cursor = stored_cursor.as_deref().and_then(parse_datetime);
    if stored_cursor.is_some() && cursor.is_none() {
        warn!(object = %object.object, cursor = ?stored_cursor, "unreadable cursor; reading the object in full");
    }
    let modstamp = plan.system_modstamp.map(|i| plan.columns[i].field.clone());
    let full = req.resync
        || req.fetch_mode == FetchMode::Full
        || cursor.is_none()
        || table_state.created
        || modstamp.is_none()
        || object_ref.tooling;
    info!(object = %object.object, full, cursor = ?stored_cursor, "reading");

    // The window's upper bound `U`: one millisecond past the newest SystemModstamp now;
    // and Salesforce's clock when the window was read (`T`), for the next cursor.
    let lag = ChronoDuration::from_std(req.options.lag).unwrap_or(ChronoDuration::zero());
    let (upper, read_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = match &modstamp {
        Some(field) if !object_ref.tooling => {
            let upper = source::max_modstamp(&req.client, object_ref, field)
                .await?
                .map(|at| at + ChronoDuration::milliseconds(1));
            let read_at = match upper {
                Some(upper) => source::server_time(&req.client, object_ref, upper).await,
                None => None,
            };
            (upper, read_at)
        }
        _ => (None, None),
    };
    let mut conditions = Vec::new();
    if let (Some(field), Some(cutoff)) = (&modstamp, object.data_cutoff) {
        conditions.push(format!("{field} >= {}", source::soql_datetime(cutoff)));
    }
    if let (Some(field), Some(upper)) = (&modstamp, upper) {
        conditions.push(format!("{field} < {}", source::soql_datetime(upper)));
    }
    if !full && let (Some(field), Some(cursor)) = (&modstamp, cursor) {
        conditions.push(format!("{field} >= {}", source::soql_datetime(cursor)));
    }
    // Deleted records matter for incremental windows (they are how deletes arrive) and for
    // full loads that keep deleted rows.
    let all = !object_ref.tooling && plan.is_deleted.is_some() && (!full || soft_deletes);
    let main = Stage::of(plan, |_| true);
    // A table created by this run and read in full (live records only) is loaded straight
    // with COPY: nothing to merge with. A crash leaves no cursor, so the next run reads in
    // full again and merges (the table then exists).
    let direct = destination.dialect == Dialect::Postgres
        && table_state.created
        && full
        && !all
        && !object_ref.tooling;
    let into = if direct {
        Into::Table(table)
    } else {
        Into::Staging(STAGE_MAIN)
    };
    let staged =
        read_reconciled(ctx, conn, object_ref, &main, into, &conditions, all, rates).await?;

    // Columns to refresh on rows already there: formulas (they change without touching
    // SystemModstamp) and columns this run added (backfill).
    let refresh = !full
        && plan.columns[1..]
            .iter()
            .any(|c| c.formula || table_state.added.contains(&c.name));
    let partial = Stage::of(plan, |c| c.formula || table_state.added.contains(&c.name));
    if refresh {
        let mut refresh_conditions = Vec::new();
        if let (Some(field), Some(cutoff)) = (&modstamp, object.data_cutoff) {
            refresh_conditions.push(format!("{field} >= {}", source::soql_datetime(cutoff)));
        }
        let fields: Vec<&str> = partial.read.iter().map(String::as_str).collect();
        let expected = source::count(&req.client, object_ref, &refresh_conditions, false).await?;
        let via = choose_via(ctx, object_ref, Some(expected), false);
        let queries = read_queries(
            ctx,
            object_ref,
            &fields,
            &refresh_conditions,
            via,
            Some(expected),
        )
        .await?;
        send(read_into(
            ctx,
            conn,
            &partial,
            Into::Staging(STAGE_PARTIAL),
            queries,
            via,
            rates,
        ))
        .instrument(info_span!("bulk_refresh", columns = partial.columns.len()))
        .await?;
    }

    // Id reconciliation: records purged from the recycle bin never show up in queryAll.
    let reconcile_every = req.options.id_reconcile_every_runs.max(1);
    let reconcile = if object_ref.tooling {
        true
    } else if full {
        !table_state.created
    } else {
        incremental_runs + 1 >= reconcile_every
    };
    let ids_staging = if object_ref.tooling {
        STAGE_MAIN
    } else {
        STAGE_IDS
    };
    if reconcile && !object_ref.tooling {
        let ids = Stage::of(plan, |_| false);
        let expected = source::count(&req.client, object_ref, &[], false).await?;
        let via = choose_via(ctx, object_ref, Some(expected), false);
        let queries = read_queries(ctx, object_ref, &["Id"], &[], via, Some(expected)).await?;
        send(read_into(
            ctx,
            conn,
            &ids,
            Into::Staging(STAGE_IDS),
            queries,
            via,
            None,
        ))
        .instrument(info_span!("bulk_id_reconciliation"))
        .await?;
    }

    if req.cancel.is_cancelled() {
        return Err(BulkError::Canceled);
    }

    // One transaction: merge, deletes, refresh, reconciliation, snapshot, cursor.
    let begin = match destination.dialect {
        Dialect::Postgres => "BEGIN",
        Dialect::Mysql => "START TRANSACTION",
        Dialect::Sqlite => "BEGIN IMMEDIATE",
    };
    conn.execute(begin).await?;
    let merged = send(async {
        let key = &plan.columns[plan.id].name;
        let is_deleted = plan.is_deleted.map(|i| plan.columns[i].name.as_str());
        let mut counts = Counts::default();
        let hard = !soft_deletes;
        if direct {
            counts.records = staged;
        } else {
            conn.execute(&destination.merge_sql(
                table,
                STAGE_MAIN,
                &main.columns,
                is_deleted,
                hard,
                soft_deletes,
            ))
            .await?;
            counts.records = conn
                .fetch_count(
                    &destination.count_staging_sql(STAGE_MAIN, is_deleted.map(|d| (d, false))),
                )
                .await?;
            if let Some(is_deleted) = is_deleted {
                if hard {
                    counts.deletes += conn
                        .execute(&destination.hard_delete_sql(table, STAGE_MAIN, key, is_deleted))
                        .await?;
                } else {
                    counts.deletes += conn
                        .fetch_count(
                            &destination.count_staging_sql(STAGE_MAIN, Some((is_deleted, true))),
                        )
                        .await?;
                }
            }
        }
        if refresh {
            let columns: Vec<Column> = partial
                .columns
                .iter()
                .filter(|c| c.name != *key)
                .cloned()
                .collect();
            conn.execute(&destination.update_from_sql(table, STAGE_PARTIAL, key, &columns))
                .await?;
        }
        if reconcile {
            counts.deletes += conn
                .execute(&destination.reconcile_sql(table, ids_staging, key, soft_deletes))
                .await?;
        }
        if snapshot {
            let mut names: Vec<String> = plan.columns.iter().map(|c| c.name.clone()).collect();
            names.extend(
                destination
                    .ferry_columns(soft_deletes, false)
                    .into_iter()
                    .map(|(n, _)| n.to_string()),
            );
            conn.execute(&destination.snapshot_sql(
                table,
                &snapshot_table,
                &names,
                &req.execution_id.to_string(),
            ))
            .await?;
        }
        let new_cursor = if modstamp.is_some() && !object_ref.tooling {
            upper.map(|upper| {
                let next = next_cursor(upper, read_at, lag);
                // Everything before the stored cursor is covered already; a cursor never
                // moves back (the newest record may be gone: deleted, then purged).
                let next = match cursor {
                    Some(previous) if !full => next.max(previous),
                    _ => next,
                };
                format_datetime(next)
            })
        } else {
            None
        };
        let runs = if reconcile { 0 } else { incremental_runs + 1 };
        conn.execute(&destination.write_state_sql(
            &sync_id,
            &object.object,
            new_cursor.as_deref(),
            runs,
        ))
        .await?;
        if req.options.fail_before_commit {
            return Err(BulkError::Injected);
        }
        Ok::<Counts, BulkError>(counts)
    })
    .instrument(info_span!("bulk_merge", table))
    .await;
    match merged {
        Ok(counts) => {
            conn.execute("COMMIT").await?;
            Ok(counts)
        }
        Err(error) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::schema::SqlType;

    fn column(name: &str, formula: bool, source: ColumnSource) -> Column {
        Column {
            field: name.trim_end_matches("_converted").into(),
            name: name.into(),
            sql_type: SqlType::Numeric,
            formula,
            source,
        }
    }

    #[test]
    fn cursor_keeps_a_lag_behind_the_read() {
        let at = |s: &str| parse_datetime(s).expect("datetime");
        let lag = ChronoDuration::minutes(10);
        // Busy org: the newest record is recent; the cursor stays `lag` behind the read.
        assert_eq!(
            next_cursor(
                at("2026-01-01T12:00:00Z"),
                Some(at("2026-01-01T12:00:00Z")),
                lag
            ),
            at("2026-01-01T11:50:00Z")
        );
        // Idle org: nothing changed for an hour; the cursor is the upper bound itself.
        assert_eq!(
            next_cursor(
                at("2026-01-01T11:00:00Z"),
                Some(at("2026-01-01T12:00:00Z")),
                lag
            ),
            at("2026-01-01T11:00:00Z")
        );
        // No server time: the upper bound minus the lag.
        assert_eq!(
            next_cursor(at("2026-01-01T11:00:00Z"), None, lag),
            at("2026-01-01T10:50:00Z")
        );
    }

    #[test]
    fn partial_stage_reads_id_formulas_and_currency_helpers() {
        let plan = ObjectPlan {
            columns: vec![
                column("Id", false, ColumnSource::Field),
                column("Name", false, ColumnSource::Field),
                column("Total__c", true, ColumnSource::Field),
                column("CurrencyIsoCode", false, ColumnSource::Field),
                column("CloseDate", false, ColumnSource::Field),
                column(
                    "Total__c_converted",
                    true,
                    ColumnSource::Converted { field: 2 },
                ),
            ],
            read_fields: 5,
            id: 0,
            system_modstamp: None,
            is_deleted: None,
            currency_iso_code: Some(3),
            rate_date: Some(4),
            missing_fields: Vec::new(),
        };
        let stage = Stage::of(&plan, |c| c.formula);
        assert_eq!(
            stage.read.as_slice(),
            ["Id", "Total__c", "CurrencyIsoCode", "CloseDate"]
        );
        assert_eq!(stage.columns.len(), 5);
        let mut rates = Rates::default();
        rates.static_rates.insert("EUR".into(), 0.5);
        let mut row: Row = vec![
            Some("006".into()),
            Some("10".into()),
            Some("EUR".into()),
            None,
        ];
        let destination = Destination::from_spec(&crate::bulk::DestinationSpec {
            connection_type: "sqlite".into(),
            connection: serde_json::json!({"path": "/tmp/unused.db"}),
            schema: None,
            table_prefix: None,
            mode: DestinationMode::Replicate,
            deletes: DeleteHandling::Hard,
        })
        .expect("destination");
        let staged = stage.stage_row(&destination, Some(&rates), &mut row);
        assert_eq!(staged[4].as_deref(), Some("20"));
        let ids = Stage::of(&plan, |_| false);
        assert_eq!(ids.read.as_slice(), ["Id"]);
    }
}
