//! The `ModelSource` capability: what a connection type offers as the source of a model.
//!
//! A model selects rows from a source by a [`Selection`]: a `table`, a `view` or a SQL
//! `query`. A source can
//!
//! - list the relations a model can select ([`ModelSource::list_relations`]),
//! - describe the fields of a selection without reading it ([`ModelSource::describe`]:
//!   prepared statements, never a full run),
//! - read it ([`ModelSource::read`]): a stream of [`RowBatch`]es of at most `batch_size` rows,
//!   optionally stopping after `limit` rows. The producer runs ahead of the consumer by at
//!   most [`READ_AHEAD`] batches, so memory stays flat however many rows a model has.
//!
//! Values are JSON with their types kept: numbers stay numbers, booleans booleans, NULL is
//! `null`, timestamps are RFC 3339 strings in UTC, dates `YYYY-MM-DD`, binary data base64,
//! JSON columns objects or arrays. Field types use Polytomic's vocabulary ([`FieldType`]).
//!
//! Identifiers are never spliced into SQL as given: a table or view name is first resolved
//! against the relations the database lists, then quoted with the database's quoting rules.
//! A query is wrapped as a subquery (`SELECT * FROM (\n<query>\n) AS ferry_model`), which
//! also means only a single `SELECT` (or `WITH ... SELECT`) is accepted; reads run in
//! read-only transactions (read-only connections for SQLite).

use std::sync::Arc;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;

/// How many batches a reader may produce before the consumer takes them.
pub const READ_AHEAD: usize = 1;

/// Default batch size for reads.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;

/// The alias a wrapped query is given (`SELECT * FROM (<query>) AS ferry_model`).
pub(crate) const QUERY_ALIAS: &str = "ferry_model";

/// What a model reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selection {
    /// A table, as listed by [`ModelSource::list_relations`] (`schema.table` on PostgreSQL,
    /// `database.table` on MySQL, `table` on SQLite).
    Table(String),
    /// A view, named like a table.
    View(String),
    /// A SQL query (a single `SELECT`).
    Query(String),
}

impl Selection {
    /// The configuration key this selection comes from: `table`, `view` or `query`.
    pub fn key(&self) -> &'static str {
        match self {
            Selection::Table(_) => "table",
            Selection::View(_) => "view",
            Selection::Query(_) => "query",
        }
    }

    /// The table/view name or the query text.
    pub fn value(&self) -> &str {
        match self {
            Selection::Table(value) | Selection::View(value) | Selection::Query(value) => value,
        }
    }
}

/// A table or view a model can select.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relation {
    /// The name a model's configuration uses (`schema.table`, `db.table` or `table`).
    pub name: String,
    /// Whether it is a table or a view.
    pub kind: RelationKind,
}

/// Tables and views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationKind {
    /// A table (including partitioned and foreign tables).
    Table,
    /// A view or materialized view.
    View,
}

/// Polytomic's field types (`UtilFieldType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text, UUIDs, times of day, intervals, enums, anything without a better type.
    String,
    /// Integers, floating point and decimal numbers.
    Number,
    /// Booleans.
    Boolean,
    /// Timestamps and dates.
    Datetime,
    /// JSON documents.
    Object,
    /// Arrays.
    Array,
    /// Binary data (base64 in values).
    Binary,
    /// The database did not say (an expression SQLite cannot type).
    Unknown,
}

impl FieldType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Datetime => "datetime",
            FieldType::Object => "object",
            FieldType::Array => "array",
            FieldType::Binary => "binary",
            FieldType::Unknown => "unknown",
        }
    }
}

/// A column of a selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceField {
    /// Column name.
    pub name: String,
    /// Polytomic type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// The database's type name (`int4`, `VARCHAR`, `TEXT`, ...).
    pub remote_type: String,
}

/// Rows of a read, each aligned with `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    /// The selection's fields, shared by every batch of a read.
    pub fields: Arc<[SourceField]>,
    /// Rows; `rows[i][j]` is the value of `fields[j]`.
    pub rows: Vec<Vec<Value>>,
    /// What the source knew of the batch's data before building its rows, when it reads
    /// raw text it can fingerprint (PostgreSQL's COPY); `None` from other sources.
    pub raw: Option<RawWindow>,
}

/// A batch's data as read, before its rows were built ([`ModelSource::read_skipping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawWindow {
    /// XXH3-128 of the batch's fields, of how the source turns its data into values, and
    /// of the data itself: equal fingerprints mean equal rows.
    pub fingerprint: u128,
    /// The rows the data holds.
    pub rows: usize,
    /// The consumer's [`WindowSkip`] said it needs none of them: the batch's `rows` is
    /// empty.
    pub skipped: bool,
}

/// A consumer's test of a batch before its rows are built: given the batch's number in
/// the read (from 0) and what the source read, whether the consumer can do without its
/// rows.
pub type WindowSkip = Arc<dyn Fn(usize, &RawWindow) -> bool + Send + Sync>;

/// A channel for the one answer a consumer gives a reader: which batches it can do without
/// ([`ModelSource::read_skipping`]). Dropping the [`SkipAnswer`] unanswered answers `None`.
pub fn skip_channel() -> (SkipAnswer, SkipQuestion) {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    (SkipAnswer(sender), SkipQuestion(receiver))
}

/// The consumer's side of [`skip_channel`].
pub struct SkipAnswer(tokio::sync::oneshot::Sender<Option<WindowSkip>>);

impl SkipAnswer {
    /// Answers: `None` when every row is wanted.
    pub fn answer(self, skip: Option<WindowSkip>) {
        // A reader that already stopped needs no answer.
        let _ = self.0.send(skip);
    }
}

impl std::fmt::Debug for SkipAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SkipAnswer")
    }
}

/// The reader's side of [`skip_channel`].
pub struct SkipQuestion(tokio::sync::oneshot::Receiver<Option<WindowSkip>>);

impl SkipQuestion {
    /// Waits for the consumer's answer (`None` when it dropped its side unanswered).
    pub async fn answer(self) -> Option<WindowSkip> {
        self.0.await.ok().flatten()
    }
}

impl std::fmt::Debug for SkipQuestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SkipQuestion")
    }
}

/// A failure of a source operation. Messages are safe to show (no secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The connection's configuration is invalid.
    #[error("invalid connection configuration: {0}")]
    Configuration(String),
    /// The database could not be reached or refused the login.
    #[error("{0}")]
    Connect(String),
    /// The named table or view does not exist (or is not visible to the connection's user).
    #[error("{0}")]
    UnknownRelation(String),
    /// The database rejected the query; the message is the database's own.
    #[error("{0}")]
    Query(String),
    /// The selection cannot be a model (e.g. two columns share a name).
    #[error("{0}")]
    Unsupported(String),
    /// Reading rows failed midway.
    #[error("reading rows failed: {0}")]
    Read(String),
}

/// Reading models from a connection type. Object safe; configurations are the full
/// (decrypted) connection configuration, parsed by each implementation.
pub trait ModelSource: Send + Sync {
    /// Tables and views a model can select, ordered by name.
    fn list_relations<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Vec<Relation>, SourceError>>;

    /// The fields of a selection, from the database's description of it (the query is
    /// prepared, not run).
    fn describe<'a>(
        &'a self,
        config: &'a Value,
        selection: &'a Selection,
    ) -> BoxFuture<'a, Result<Vec<SourceField>, SourceError>>;

    /// Reads a selection in batches of at most `batch_size` rows, stopping after `limit`
    /// rows when given. The stream ends after the last row or the first error.
    fn read(
        &self,
        config: &Value,
        selection: &Selection,
        limit: Option<u64>,
        batch_size: usize,
    ) -> BoxStream<'static, Result<RowBatch, SourceError>>;

    /// Reads a whole selection as [`ModelSource::read`] does, for a consumer that may
    /// already have some of its batches. A source that can fingerprint a batch's raw data
    /// before building its rows (PostgreSQL) attaches a [`RawWindow`] to every batch,
    /// waits for the consumer's answer before its first one, and leaves unbuilt the batches
    /// the answer skips. Other sources read every row, as `read` does.
    fn read_skipping(
        &self,
        config: &Value,
        selection: &Selection,
        batch_size: usize,
        question: SkipQuestion,
    ) -> BoxStream<'static, Result<RowBatch, SourceError>> {
        drop(question);
        self.read(config, selection, None, batch_size)
    }
}

/// Reads at most `limit` rows into one batch (model samples and previews).
pub async fn sample(
    source: &dyn ModelSource,
    config: &Value,
    selection: &Selection,
    limit: usize,
) -> Result<RowBatch, SourceError> {
    use futures_util::StreamExt as _;
    let batch_size = limit.max(1);
    let mut stream = source.read(config, selection, Some(limit as u64), batch_size);
    let mut sample: Option<RowBatch> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        match &mut sample {
            Some(sample) => sample.rows.extend(batch.rows),
            None => sample = Some(batch),
        }
    }
    match sample {
        Some(mut sample) => {
            sample.rows.truncate(limit);
            Ok(sample)
        }
        None => {
            let fields = source.describe(config, selection).await?;
            Ok(RowBatch {
                fields: fields.into(),
                rows: Vec::new(),
                raw: None,
            })
        }
    }
}

/// The query text of a `query` selection: trailing semicolons and blanks removed. An empty
/// query is an error.
pub(crate) fn query_text(query: &str) -> Result<&str, SourceError> {
    let trimmed = query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if trimmed.is_empty() {
        return Err(SourceError::Query("the query is empty".to_string()));
    }
    Ok(trimmed)
}

/// `SELECT <columns> FROM (\n<query>\n) AS ferry_model[ LIMIT n]`. The newlines keep a
/// trailing `--` comment in the query from swallowing the closing parenthesis.
pub(crate) fn wrap_query(columns: &str, query: &str, limit: Option<u64>) -> String {
    let mut sql = format!("SELECT {columns} FROM (\n{query}\n) AS {QUERY_ALIAS}");
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// Quotes an identifier with `quote` (`"` or `` ` ``), doubling any quote inside it.
pub(crate) fn quote_identifier(name: &str, quote: char) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push(quote);
    for c in name.chars() {
        if c == quote {
            quoted.push(quote);
        }
        quoted.push(c);
    }
    quoted.push(quote);
    quoted
}

/// Finds `name` among `relations`: an exact match, else (for unqualified names) the one
/// relation whose unqualified name is `name` within `default_prefix` (`public.`, the
/// connection's database). Unknown names list a few known ones.
pub(crate) fn resolve_relation(
    relations: &[Relation],
    selection: &Selection,
    default_prefix: Option<&str>,
) -> Result<usize, SourceError> {
    let name = selection.value().trim();
    if let Some(found) = relations.iter().position(|r| r.name == name) {
        return Ok(found);
    }
    if let Some(prefix) = default_prefix {
        let qualified = format!("{prefix}.{name}");
        if let Some(found) = relations.iter().position(|r| r.name == qualified) {
            return Ok(found);
        }
    }
    let what = match selection {
        Selection::View(_) => "view",
        _ => "table",
    };
    let known: Vec<&str> = relations.iter().take(10).map(|r| r.name.as_str()).collect();
    let hint = if known.is_empty() {
        "the connection's user sees no tables".to_string()
    } else if relations.len() > known.len() {
        format!("known: {}, ...", known.join(", "))
    } else {
        format!("known: {}", known.join(", "))
    };
    Err(SourceError::UnknownRelation(format!(
        "{what} \"{name}\" does not exist or is not readable ({hint})"
    )))
}

/// Rejects a description whose column names repeat (rows are keyed by field name).
pub(crate) fn check_unique_names(fields: &[SourceField]) -> Result<(), SourceError> {
    let mut seen = std::collections::HashSet::new();
    for field in fields {
        if !seen.insert(field.name.as_str()) {
            return Err(SourceError::Unsupported(format!(
                "the column name \"{}\" appears more than once; give the columns distinct \
                 names (e.g. with AS)",
                field.name
            )));
        }
    }
    if fields.is_empty() {
        return Err(SourceError::Unsupported(
            "the selection has no columns".to_string(),
        ));
    }
    Ok(())
}

/// Base64 (standard alphabet, padded) of binary values.
pub(crate) fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// An `f64` as a JSON number; NaN and infinities (which JSON cannot carry) as strings.
pub(crate) fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(value.to_string()))
}

/// A decimal's text as a JSON number when it converts without loss, else the text.
pub(crate) fn decimal(text: &str) -> Value {
    let text = text.trim();
    if let Ok(integer) = text.parse::<i64>() {
        return Value::from(integer);
    }
    if let Ok(integer) = text.parse::<u64>() {
        return Value::from(integer);
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
        && same_decimal(text, number)
    {
        return float(number);
    }
    Value::String(text.to_string())
}

/// Whether `number` prints as the same decimal as `text` (ignoring trailing zeros).
fn same_decimal(text: &str, number: f64) -> bool {
    fn normalize(s: &str) -> String {
        let s = s.trim_start_matches('+');
        if s.contains('.') && !s.contains(['e', 'E']) {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    }
    normalize(text) == normalize(&number.to_string())
}

/// A naive timestamp (taken as UTC) in RFC 3339.
pub(crate) fn naive_timestamp(value: chrono::NaiveDateTime) -> Value {
    Value::String(ferry_core::time::rfc3339(value.and_utc()).replace(".000Z", "Z"))
}

/// A UTC timestamp in RFC 3339.
pub(crate) fn utc_timestamp(value: chrono::DateTime<chrono::Utc>) -> Value {
    Value::String(ferry_core::time::rfc3339(value).replace(".000Z", "Z"))
}

/// Parses common textual timestamps (`2024-01-02 03:04:05[.fff]`, `...T...`, with or
/// without an offset) into RFC 3339 UTC; anything else is returned unchanged.
pub(crate) fn text_timestamp(text: &str) -> Value {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return utc_timestamp(at.with_timezone(&chrono::Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(at) = chrono::DateTime::parse_from_str(text, format) {
            return utc_timestamp(at.with_timezone(&chrono::Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return naive_timestamp(at);
        }
    }
    Value::String(text.to_string())
}

/// Groups a stream of rows into batches, through a bounded channel: `produce` runs on its
/// own task and sends rows with [`Batcher::push`]; the consumer's stream yields batches.
/// Dropping the stream stops the producer at its next push.
pub(crate) fn batched<F, Fut>(
    batch_size: usize,
    produce: F,
) -> BoxStream<'static, Result<RowBatch, SourceError>>
where
    F: FnOnce(Batcher) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), SourceError>> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    let batcher = Batcher {
        sender,
        batch_size: batch_size.max(1),
        fields: None,
        rows: Vec::new(),
        sent: false,
        slot: None,
    };
    tokio::spawn(async move {
        let errors = batcher.sender.clone();
        if let Err(error) = produce(batcher).await {
            let _ = errors.send(Err(error)).await;
        }
    });
    Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}

/// The next item of `rows`, unless the consumer of the batches goes away first (then
/// `None`), so a reader blocked on a slow database stops as soon as nobody waits for it.
pub(crate) async fn next_row<S, T>(batcher: &Batcher, rows: &mut S) -> Option<T>
where
    S: futures_util::Stream<Item = T> + Unpin,
{
    use futures_util::StreamExt as _;
    use futures_util::future::Either;
    let closed = std::pin::pin!(batcher.sender.closed());
    match futures_util::future::select(rows.next(), closed).await {
        Either::Left((item, _)) => item,
        Either::Right(_) => None,
    }
}

/// The producing side of [`batched`].
#[derive(Debug)]
pub(crate) struct Batcher {
    sender: tokio::sync::mpsc::Sender<Result<RowBatch, SourceError>>,
    batch_size: usize,
    fields: Option<Arc<[SourceField]>>,
    rows: Vec<Vec<Value>>,
    sent: bool,
    /// The channel slot the batch being built will take: a batch is only started once the
    /// consumer has room for it, so at most [`READ_AHEAD`] batches exist beside the one the
    /// consumer holds.
    slot: Option<tokio::sync::mpsc::OwnedPermit<Result<RowBatch, SourceError>>>,
}

/// The consumer went away; the producer should stop.
#[derive(Debug)]
pub(crate) struct Closed;

impl Batcher {
    /// Sets the fields of every batch (before the first row).
    pub(crate) fn set_fields(&mut self, fields: Vec<SourceField>) {
        self.fields = Some(fields.into());
        self.rows = Vec::with_capacity(self.batch_size.min(DEFAULT_BATCH_SIZE));
    }

    /// Adds a row, sending a full batch (waiting while the consumer is [`READ_AHEAD`]
    /// batches behind).
    pub(crate) async fn push(&mut self, row: Vec<Value>) -> Result<(), Closed> {
        self.reserve().await?;
        self.rows.push(row);
        if self.rows.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        let rows = std::mem::replace(
            &mut self.rows,
            Vec::with_capacity(self.batch_size.min(DEFAULT_BATCH_SIZE)),
        );
        let fields = self.fields.clone().unwrap_or_else(|| Arc::from(Vec::new()));
        self.send(RowBatch {
            fields,
            rows,
            raw: None,
        })
        .await
    }

    /// Sends a whole batch of rows read as `raw` (none when it was skipped), after the rows
    /// pushed before it.
    pub(crate) async fn send_window(
        &mut self,
        rows: Vec<Vec<Value>>,
        raw: RawWindow,
    ) -> Result<(), Closed> {
        if !self.rows.is_empty() {
            self.flush().await?;
        }
        let fields = self.fields.clone().unwrap_or_else(|| Arc::from(Vec::new()));
        self.send(RowBatch {
            fields,
            rows,
            raw: Some(raw),
        })
        .await
    }

    /// Waits (unless it already has one) for the channel slot of the next batch: building
    /// a batch only once the consumer has room for it bounds memory.
    pub(crate) async fn reserve(&mut self) -> Result<(), Closed> {
        if self.slot.is_none() {
            let slot = self.sender.clone().reserve_owned().await;
            self.slot = Some(slot.map_err(|_| Closed)?);
        }
        Ok(())
    }

    /// The most rows a batch holds.
    pub(crate) fn batch_size(&self) -> usize {
        self.batch_size
    }

    async fn send(&mut self, batch: RowBatch) -> Result<(), Closed> {
        self.sent = true;
        let batch = Ok(batch);
        match self.slot.take() {
            Some(slot) => {
                slot.send(batch);
                Ok(())
            }
            None => self.sender.send(batch).await.map_err(|_| Closed),
        }
    }

    /// Whether the consumer of the batches went away.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends the last, partial batch. A read of zero rows sends one empty batch, so the
    /// consumer still learns the fields.
    pub(crate) async fn finish(mut self) -> Result<(), Closed> {
        if !self.rows.is_empty() || !self.sent {
            self.flush().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use serde_json::json;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_identifier("users", '"'), "\"users\"");
        assert_eq!(
            quote_identifier("a\"; DROP TABLE x; --", '"'),
            "\"a\"\"; DROP TABLE x; --\""
        );
        assert_eq!(quote_identifier("we`ird", '`'), "`we``ird`");
    }

    #[test]
    fn queries_are_trimmed_and_wrapped() {
        assert_eq!(query_text(" SELECT 1 ;; \n").unwrap(), "SELECT 1");
        assert!(query_text(" ; ").is_err());
        assert_eq!(
            wrap_query("*", "SELECT 1 -- note", Some(5)),
            "SELECT * FROM (\nSELECT 1 -- note\n) AS ferry_model LIMIT 5"
        );
    }

    #[test]
    fn relations_resolve_exactly_or_in_the_default_schema() {
        let relations = vec![
            Relation {
                name: "public.users".into(),
                kind: RelationKind::Table,
            },
            Relation {
                name: "sales.users".into(),
                kind: RelationKind::View,
            },
        ];
        let found = resolve_relation(
            &relations,
            &Selection::Table("sales.users".into()),
            Some("public"),
        )
        .unwrap();
        assert_eq!(relations[found].kind, RelationKind::View);
        let found = resolve_relation(
            &relations,
            &Selection::Table("users".into()),
            Some("public"),
        )
        .unwrap();
        assert_eq!(relations[found].name, "public.users");
        let error = resolve_relation(
            &relations,
            &Selection::Table("users; drop".into()),
            Some("public"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        assert!(error.to_string().contains("public.users"), "{error}");
    }

    #[test]
    fn decimals_stay_exact() {
        assert_eq!(decimal("42"), json!(42));
        assert_eq!(decimal("12.50"), json!(12.5));
        assert_eq!(decimal("-0.1"), json!(-0.1));
        assert_eq!(
            decimal("12345678901234567890.123456789"),
            json!("12345678901234567890.123456789")
        );
        assert_eq!(
            decimal("18446744073709551615"),
            json!(18446744073709551615u64)
        );
    }

    #[test]
    fn timestamps_become_rfc3339_utc() {
        assert_eq!(
            text_timestamp("2024-01-02 03:04:05"),
            json!("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            text_timestamp("2024-01-02T03:04:05.250+02:00"),
            json!("2024-01-02T01:04:05.250Z")
        );
        assert_eq!(
            text_timestamp("2024-01-02 03:04:05+00"),
            json!("2024-01-02T03:04:05Z")
        );
        assert_eq!(text_timestamp("infinity"), json!("infinity"));
    }

    #[test]
    fn duplicate_columns_are_refused() {
        let field = |name: &str| SourceField {
            name: name.into(),
            field_type: FieldType::Number,
            remote_type: "INT".into(),
        };
        assert!(check_unique_names(&[field("id"), field("name")]).is_ok());
        let error = check_unique_names(&[field("id"), field("id")]).unwrap_err();
        assert!(error.to_string().contains("\"id\""), "{error}");
    }

    #[tokio::test]
    async fn batches_are_bounded_and_complete() {
        let stream = batched(3, |mut batcher| async move {
            batcher.set_fields(vec![SourceField {
                name: "n".into(),
                field_type: FieldType::Number,
                remote_type: "INT".into(),
            }]);
            for n in 0..7 {
                if batcher.push(vec![json!(n)]).await.is_err() {
                    return Ok(());
                }
            }
            let _ = batcher.finish().await;
            Ok(())
        });
        let sizes: Vec<usize> = stream
            .map(|batch| batch.unwrap().rows.len())
            .collect()
            .await;
        assert_eq!(sizes, vec![3, 3, 1]);
    }

    #[tokio::test]
    async fn the_producer_waits_for_the_consumer() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let mut stream = batched(10, move |mut batcher| async move {
            batcher.set_fields(Vec::new());
            for n in 0..100_000 {
                if batcher.push(vec![json!(n)]).await.is_err() {
                    return Ok(());
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.rows.len(), 10);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // One batch taken, READ_AHEAD queued, one being filled.
        let ahead = produced.load(Ordering::SeqCst);
        assert!(ahead <= 10 * (READ_AHEAD + 2), "{ahead} rows produced");
        drop(stream);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            produced.load(Ordering::SeqCst),
            ahead,
            "the producer stopped"
        );
    }
}
