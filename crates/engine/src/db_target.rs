//! Model syncs into database tables (PostgreSQL, MySQL, SQLite): table discovery, new
//! tables, planning and writing.
//!
//! A run reads the model window by window like a Salesforce run and shares its stages
//! ([`map_batch`], [`detect`] against the per-sync ledger): only new and changed rows are
//! written, so a second run over unchanged data writes nothing. Each chunk of at most
//! [`chunk_rows`] rows is one transaction:
//!
//! 1. with an identity column, `SELECT` which identities the table already holds (with
//!    target filters, also the current values of the columns they test);
//! 2. decide per row by mode: `create` inserts absent identities and leaves present ones;
//!    `update` writes present ones and skips the rest (retried next run) — with target
//!    filters, only present rows whose current values pass them (the others are left
//!    alone, uncounted, their ledger untouched, like rows a model filter drops); `updateOrCreate`
//!    upserts (`INSERT … ON CONFLICT (id) DO UPDATE` on PostgreSQL and SQLite,
//!    `INSERT … ON DUPLICATE KEY UPDATE` on MySQL — the identity column needs a unique
//!    index, which new tables get and existing tables are checked for); `remove` deletes
//!    present identities; `append` inserts every new or changed row;
//! 3. one multi-row statement per operation, then `COMMIT`.
//!
//! When a chunk's transaction fails on a data error (a value the column refuses, a
//! constraint), each of its rows is written again in a transaction of its own, so every
//! row gets its own outcome and message; connection failures end the run. The ledger
//! advances only for rows whose transaction committed.
//!
//! `replace` loads every model row into a staging table (`<table>_ferry_stage`) and, at the
//! end of the run, empties the table and copies the staging rows in one transaction; a
//! failed or canceled run leaves the table as it was.
//!
//! Values are written with the column's type: on PostgreSQL every value is sent as text
//! and cast to the column's declared type (`$1::numeric`, `decode($2, 'base64')` for
//! `bytea`); on MySQL as text, with booleans as `1`/`0` and timestamps as
//! `YYYY-MM-DD HH:MM:SS.ffffff` (UTC); on SQLite as integers, reals, text or blobs.
//!
//! New tables get one column per mapped field (plus the identity column), typed from the
//! model field's type (see [`column_type`]), and a unique index on the identity column.

use std::collections::HashMap;

use base64::Engine as _;
use ferry_connectors::{RowBatch, SourceError};
use ferry_core::FieldError;
use ferry_store::{DynStore, ExecutionCounts, LedgerEntry, RecordLine, StoreError};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::{Map, Value, json};
use sqlx::{Connection as _, Row as _};
use tracing::{Instrument as _, info_span};

use crate::change::{Change, RowHasher, detect};
use crate::mapping::{MissingField, map_batch};
use crate::run::{RunContext, RunEnd, RunTarget, begin_execution, finish_execution};
use crate::spec::{CompiledSync, DatabaseMode, DatabaseSync, TableName};

/// Most rows in one statement (also bounded by the bind-parameter limits, see
/// [`chunk_rows`]).
pub const MAX_CHUNK_ROWS: usize = 500;

/// The database dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgresql,
    /// MySQL / MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// The dialect of a connection type id.
    pub fn of(type_id: &str) -> Option<Dialect> {
        match type_id {
            "postgresql" => Some(Dialect::Postgresql),
            "mysql" => Some(Dialect::Mysql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    fn quote(self, name: &str) -> String {
        let quote = match self {
            Dialect::Mysql => '`',
            Dialect::Postgresql | Dialect::Sqlite => '"',
        };
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

    fn table(self, table: &TableName) -> String {
        match &table.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(&table.name)),
            None => self.quote(&table.name),
        }
    }

    /// Bind parameters one statement may carry.
    fn max_parameters(self) -> usize {
        match self {
            Dialect::Postgresql | Dialect::Mysql => 60_000,
            Dialect::Sqlite => 30_000,
        }
    }
}

/// Rows per statement for `columns` columns.
pub fn chunk_rows(dialect: Dialect, columns: usize) -> usize {
    (dialect.max_parameters() / columns.max(1)).clamp(1, MAX_CHUNK_ROWS)
}

/// How values are rendered for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    /// Integers.
    Integer,
    /// Other numbers.
    Decimal,
    /// Booleans.
    Boolean,
    /// Dates.
    Date,
    /// Timestamps.
    Timestamp,
    /// JSON documents.
    Json,
    /// Binary data (values are base64).
    Binary,
    /// Everything else.
    Text,
}

impl ColumnClass {
    /// The class of a declared column type (`bigint`, `varchar(20)`, `tinyint(1)`, ...).
    pub fn of(declared: &str) -> ColumnClass {
        let lower = declared.trim().to_ascii_lowercase();
        let base = lower.split('(').next().unwrap_or("").trim();
        let base = base.trim_end_matches(" unsigned").trim();
        if lower.starts_with("tinyint(1)") || base == "bool" || base == "boolean" {
            return ColumnClass::Boolean;
        }
        if base.starts_with("timestamp") || base.starts_with("datetime") {
            return ColumnClass::Timestamp;
        }
        match base {
            "int" | "integer" | "bigint" | "smallint" | "tinyint" | "mediumint" | "int2"
            | "int4" | "int8" | "serial" | "bigserial" | "smallserial" => ColumnClass::Integer,
            "numeric" | "decimal" | "real" | "double" | "double precision" | "float" | "float4"
            | "float8" | "money" => ColumnClass::Decimal,
            "date" => ColumnClass::Date,
            "json" | "jsonb" => ColumnClass::Json,
            "bytea" | "blob" | "longblob" | "mediumblob" | "tinyblob" | "binary" | "varbinary" => {
                ColumnClass::Binary
            }
            _ => ColumnClass::Text,
        }
    }
}

/// A column of a target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Declared type, as the database formats it.
    pub data_type: String,
    /// `NOT NULL`.
    pub required: bool,
    /// A single-column unique index (or primary key) covers it.
    pub unique: bool,
}

impl ColumnInfo {
    fn class(&self) -> ColumnClass {
        ColumnClass::of(&self.data_type)
    }
}

/// A target table and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The resolved name (`public.people`, `shop.people`, `people`).
    pub name: TableName,
    /// Columns in table order.
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    /// A column by name (exactly, else the one matching case-insensitively).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            let mut matches = self
                .columns
                .iter()
                .filter(|c| c.name.eq_ignore_ascii_case(name));
            match (matches.next(), matches.next()) {
                (Some(column), None) => Some(column),
                _ => None,
            }
        })
    }
}

/// A column of a new table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    /// Name.
    pub name: String,
    /// Polytomic field type of the model field it comes from (`string`, `number`, ...).
    pub field_type: String,
    /// The source's own type name (`int4`, `currency`, `datetime`, ...).
    pub remote_type: String,
}

/// A failure of a database target operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbTargetError {
    /// The connection configuration cannot be used.
    #[error("invalid connection configuration: {0}")]
    Configuration(String),
    /// The table named does not exist.
    #[error("{0}")]
    UnknownTable(String),
    /// The database refused a statement or could not be reached.
    #[error("{0}")]
    Database(String),
}

fn database_error(error: sqlx::Error) -> DbTargetError {
    DbTargetError::Database(describe_sqlx(&error))
}

fn describe_sqlx(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// Whether a failure is about the data (a row can fail alone) rather than the connection.
fn is_data_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::Encode(_) | sqlx::Error::ColumnDecode { .. }
    )
}

// ---------------------------------------------------------------------------------------
// Types of new columns
// ---------------------------------------------------------------------------------------

fn is_integer_type(remote: &str) -> bool {
    ColumnClass::of(remote) == ColumnClass::Integer
        || matches!(remote.to_ascii_lowercase().as_str(), "long")
}

fn is_exact_decimal(remote: &str) -> bool {
    let lower = remote.to_ascii_lowercase();
    ["numeric", "decimal", "currency", "percent", "money"]
        .iter()
        .any(|t| lower.starts_with(t))
}

/// The declared type of a new column for a model field: numbers stay integers, exact
/// decimals or floating point as the source had them, booleans booleans, dates dates,
/// timestamps timestamps (PostgreSQL `timestamptz`), JSON objects and arrays JSON, binary
/// binary, the rest text. An identity column on MySQL is `VARCHAR(255)` (MySQL cannot index
/// `TEXT` whole).
pub fn column_type(dialect: Dialect, column: &NewColumn, identity: bool) -> &'static str {
    let remote = column.remote_type.to_ascii_lowercase();
    let remote = remote.trim();
    use Dialect::{Mysql, Postgresql, Sqlite};
    match column.field_type.as_str() {
        "number" if is_integer_type(remote) => match dialect {
            Postgresql | Mysql => "BIGINT",
            Sqlite => "INTEGER",
        },
        "number" if is_exact_decimal(remote) => match dialect {
            Postgresql => "NUMERIC",
            Mysql => "DECIMAL(38,10)",
            Sqlite => "NUMERIC",
        },
        "number" => match dialect {
            Postgresql => "DOUBLE PRECISION",
            Mysql => "DOUBLE",
            Sqlite => "REAL",
        },
        "boolean" => "BOOLEAN",
        "datetime" if remote == "date" => "DATE",
        "datetime" if remote == "time" || remote.starts_with("time ") => match dialect {
            Postgresql | Sqlite => "TEXT",
            Mysql => "VARCHAR(32)",
        },
        "datetime" => match dialect {
            Postgresql => "TIMESTAMPTZ",
            Mysql => "DATETIME(6)",
            Sqlite => "DATETIME",
        },
        "object" | "array" => match dialect {
            Postgresql => "JSONB",
            Mysql => "JSON",
            Sqlite => "TEXT",
        },
        "binary" => match dialect {
            Postgresql => "BYTEA",
            Mysql => "LONGBLOB",
            Sqlite => "BLOB",
        },
        _ => match (dialect, identity) {
            (Mysql, true) => "VARCHAR(255)",
            (Mysql, false) => "LONGTEXT",
            _ => "TEXT",
        },
    }
}

/// `CREATE TABLE` and, with an identity column, its unique index.
pub fn create_table_sql(
    dialect: Dialect,
    table: &TableName,
    columns: &[NewColumn],
    identity: Option<&str>,
) -> Vec<String> {
    let definitions: Vec<String> = columns
        .iter()
        .map(|column| {
            let is_identity = identity.is_some_and(|i| i == column.name);
            let mut definition = format!(
                "{} {}",
                dialect.quote(&column.name),
                column_type(dialect, column, is_identity)
            );
            if is_identity {
                definition.push_str(" NOT NULL");
            }
            definition
        })
        .collect();
    let mut statements = vec![format!(
        "CREATE TABLE {} ({})",
        dialect.table(table),
        definitions.join(", ")
    )];
    if let Some(identity) = identity {
        let index: String = format!("{}_{}_ferry_key", table.name, identity)
            .chars()
            .take(60)
            .collect();
        let index_name = dialect.quote(&index);
        statements.push(format!(
            "CREATE UNIQUE INDEX {index_name} ON {} ({})",
            dialect.table(table),
            dialect.quote(identity)
        ));
    }
    statements
}

// ---------------------------------------------------------------------------------------
// Values and statements
// ---------------------------------------------------------------------------------------

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// SQL NULL.
    Null,
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Bytes.
    Bytes(Vec<u8>),
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `2024-01-02T03:04:05.250Z` → `2024-01-02 03:04:05.250000` (UTC), for MySQL.
fn mysql_timestamp(text: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(at) => at
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        Err(_) => text.to_string(),
    }
}

/// A value as a parameter for a column of `class`.
pub fn render(dialect: Dialect, class: ColumnClass, value: &Value) -> Bind {
    if value.is_null() {
        return Bind::Null;
    }
    match dialect {
        // Cast in SQL to the declared type: the text form of every value.
        Dialect::Postgresql => Bind::Text(text_of(value)),
        Dialect::Mysql => match (class, value) {
            (_, Value::Bool(flag)) => Bind::Text(if *flag { "1" } else { "0" }.to_string()),
            (ColumnClass::Boolean, Value::String(text)) if text == "true" || text == "false" => {
                Bind::Text(if text == "true" { "1" } else { "0" }.to_string())
            }
            (ColumnClass::Timestamp, Value::String(text)) => Bind::Text(mysql_timestamp(text)),
            (ColumnClass::Date, Value::String(text)) if text.len() > 10 => {
                Bind::Text(mysql_timestamp(text).chars().take(10).collect())
            }
            (ColumnClass::Binary, Value::String(text)) => {
                match base64::engine::general_purpose::STANDARD.decode(text) {
                    Ok(bytes) => Bind::Bytes(bytes),
                    Err(_) => Bind::Text(text.clone()),
                }
            }
            (_, other) => Bind::Text(text_of(other)),
        },
        Dialect::Sqlite => match (class, value) {
            (_, Value::Bool(flag)) => Bind::Int(i64::from(*flag)),
            (ColumnClass::Boolean, Value::String(text)) if text == "true" || text == "false" => {
                Bind::Int(i64::from(text == "true"))
            }
            (ColumnClass::Integer, Value::String(text)) => match text.trim().parse::<i64>() {
                Ok(number) => Bind::Int(number),
                Err(_) => Bind::Text(text.clone()),
            },
            (ColumnClass::Binary, Value::String(text)) => {
                match base64::engine::general_purpose::STANDARD.decode(text) {
                    Ok(bytes) => Bind::Bytes(bytes),
                    Err(_) => Bind::Text(text.clone()),
                }
            }
            (_, Value::Number(number)) => match number.as_i64() {
                Some(integer) => Bind::Int(integer),
                None => number
                    .as_f64()
                    .map_or_else(|| Bind::Text(number.to_string()), Bind::Float),
            },
            (_, other) => Bind::Text(text_of(other)),
        },
    }
}

/// One statement with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// SQL text.
    pub sql: String,
    /// Parameters, in order.
    pub binds: Vec<Bind>,
}

/// Numbers placeholders and casts them to the column type where the dialect needs it.
struct Placeholders {
    dialect: Dialect,
    next: usize,
}

impl Placeholders {
    fn new(dialect: Dialect) -> Self {
        Placeholders { dialect, next: 0 }
    }

    fn next(&mut self, column: &ColumnInfo) -> String {
        self.next += 1;
        match self.dialect {
            Dialect::Postgresql => match column.class() {
                ColumnClass::Binary => format!("decode(${}, 'base64')", self.next),
                _ => format!("${}::{}", self.next, column.data_type),
            },
            Dialect::Mysql | Dialect::Sqlite => "?".to_string(),
        }
    }
}

/// What an insert does when the identity already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict<'a> {
    /// Nothing special (plain insert).
    Fail,
    /// Update the other columns (upsert by this column).
    Update(&'a str),
    /// Like `Update`, but the listed columns (per-field `sync_mode: create`) are only
    /// written where the existing row holds NULL.
    UpdateFilling(&'a str, &'a [String]),
}

/// A multi-row `INSERT` of `rows` (values aligned with `columns`).
pub fn insert_statement(
    dialect: Dialect,
    table: &TableName,
    columns: &[&ColumnInfo],
    rows: &[Vec<Value>],
    on_conflict: OnConflict<'_>,
) -> Statement {
    let mut placeholders = Placeholders::new(dialect);
    let mut binds = Vec::with_capacity(rows.len() * columns.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let mut parts = Vec::with_capacity(columns.len());
        for (column, value) in columns.iter().zip(row) {
            parts.push(placeholders.next(column));
            binds.push(render(dialect, column.class(), value));
        }
        tuples.push(format!("({})", parts.join(", ")));
    }
    let names: Vec<String> = columns.iter().map(|c| dialect.quote(&c.name)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        dialect.table(table),
        names.join(", "),
        tuples.join(", ")
    );
    let conflict = match on_conflict {
        OnConflict::Fail => None,
        OnConflict::Update(key) => Some((key, &[][..])),
        OnConflict::UpdateFilling(key, fill) => Some((key, fill)),
    };
    if let Some((key, fill)) = conflict {
        let filled = |name: &str| fill.iter().any(|f| f == name);
        let others: Vec<&str> = columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| *name != key)
            .collect();
        match dialect {
            Dialect::Postgresql | Dialect::Sqlite => {
                let excluded = if dialect == Dialect::Postgresql {
                    "EXCLUDED"
                } else {
                    "excluded"
                };
                if others.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", dialect.quote(key)));
                } else {
                    let sets: Vec<String> = others
                        .iter()
                        .map(|name| {
                            let quoted = dialect.quote(name);
                            if filled(name) {
                                // The existing row's column, qualified by the table's name
                                // (PostgreSQL; SQLite reads unqualified names as it).
                                let existing = match dialect {
                                    Dialect::Postgresql => {
                                        format!("{}.{quoted}", dialect.quote(&table.name))
                                    }
                                    _ => quoted.clone(),
                                };
                                format!("{quoted} = COALESCE({existing}, {excluded}.{quoted})")
                            } else {
                                format!("{quoted} = {excluded}.{quoted}")
                            }
                        })
                        .collect();
                    sql.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        dialect.quote(key),
                        sets.join(", ")
                    ));
                }
            }
            Dialect::Mysql => {
                let sets: Vec<String> = if others.is_empty() {
                    let quoted = dialect.quote(key);
                    vec![format!("{quoted} = {quoted}")]
                } else {
                    others
                        .iter()
                        .map(|name| {
                            let quoted = dialect.quote(name);
                            if filled(name) {
                                format!("{quoted} = COALESCE({quoted}, VALUES({quoted}))")
                            } else {
                                format!("{quoted} = VALUES({quoted})")
                            }
                        })
                        .collect()
                };
                sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", ")));
            }
        }
    }
    Statement { sql, binds }
}

fn in_list(dialect: Dialect, column: &ColumnInfo, identities: &[&str]) -> (String, Vec<Bind>) {
    let mut placeholders = Placeholders::new(dialect);
    let mut binds = Vec::with_capacity(identities.len());
    let mut parts = Vec::with_capacity(identities.len());
    for identity in identities {
        parts.push(placeholders.next(column));
        binds.push(render(
            dialect,
            column.class(),
            &Value::String((*identity).to_string()),
        ));
    }
    (parts.join(", "), binds)
}

/// A column read back as text.
fn as_text(dialect: Dialect, column: &ColumnInfo) -> String {
    let quoted = dialect.quote(&column.name);
    match dialect {
        Dialect::Postgresql => format!("{quoted}::text"),
        Dialect::Mysql => format!("CAST({quoted} AS CHAR)"),
        Dialect::Sqlite => format!("CAST({quoted} AS TEXT)"),
    }
}

/// `SELECT <identity as text> FROM table WHERE identity IN (...)`.
pub fn existing_statement(
    dialect: Dialect,
    table: &TableName,
    column: &ColumnInfo,
    identities: &[&str],
) -> Statement {
    lookup_statement(dialect, table, column, &[], identities)
}

/// `SELECT <identity as text>, <current values as text>... FROM table WHERE identity IN
/// (...)`: the rows the identities match, with the current values of `current` columns
/// (those target filters test).
pub fn lookup_statement(
    dialect: Dialect,
    table: &TableName,
    column: &ColumnInfo,
    current: &[&ColumnInfo],
    identities: &[&str],
) -> Statement {
    let (list, binds) = in_list(dialect, column, identities);
    let mut selected = vec![as_text(dialect, column)];
    selected.extend(current.iter().map(|c| as_text(dialect, c)));
    Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {} IN ({list})",
            selected.join(", "),
            dialect.table(table),
            dialect.quote(&column.name)
        ),
        binds,
    }
}

/// A column's current value (read as text) as the value filters test: integers as
/// numbers, booleans as booleans, JSON parsed, everything else as text (numbers and
/// timestamps in text still compare as numbers and instants).
pub fn current_value(column: &ColumnInfo, text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    match column.class() {
        ColumnClass::Integer => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        ColumnClass::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" => Value::Bool(true),
            "f" | "false" | "0" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        ColumnClass::Json => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
        ColumnClass::Decimal
        | ColumnClass::Date
        | ColumnClass::Timestamp
        | ColumnClass::Binary
        | ColumnClass::Text => Value::String(text.to_string()),
    }
}

/// `DELETE FROM table WHERE identity IN (...)`.
pub fn delete_statement(
    dialect: Dialect,
    table: &TableName,
    column: &ColumnInfo,
    identities: &[&str],
) -> Statement {
    let (list, binds) = in_list(dialect, column, identities);
    Statement {
        sql: format!(
            "DELETE FROM {} WHERE {} IN ({list})",
            dialect.table(table),
            dialect.quote(&column.name)
        ),
        binds,
    }
}

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

/// An open connection to a target database.
pub enum TargetConnection {
    /// PostgreSQL.
    Postgresql(sqlx::PgConnection),
    /// MySQL.
    Mysql(sqlx::MySqlConnection),
    /// SQLite.
    Sqlite(sqlx::SqliteConnection),
}

impl std::fmt::Debug for TargetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetConnection::Postgresql(_) => "TargetConnection::Postgresql",
            TargetConnection::Mysql(_) => "TargetConnection::Mysql",
            TargetConnection::Sqlite(_) => "TargetConnection::Sqlite",
        })
    }
}

macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Null => query.bind(None::<String>),
                Bind::Text(text) => query.bind(text.clone()),
                Bind::Int(number) => query.bind(*number),
                Bind::Float(number) => query.bind(*number),
                Bind::Bytes(bytes) => query.bind(bytes.clone()),
            };
        }
        query
    }};
}

/// Runs `$body` with `$conn` bound to the concrete connection (or open transaction).
macro_rules! on_connection {
    ($target:expr, |$conn:ident| $body:expr) => {
        match $target {
            TargetConnection::Postgresql($conn) => $body,
            TargetConnection::Mysql($conn) => $body,
            TargetConnection::Sqlite($conn) => $body,
        }
    };
}

impl TargetConnection {
    /// Opens a write transaction. SQLite takes its write lock up front: a deferred transaction
    /// that reads and then writes fails at once (no busy timeout applies) when another
    /// connection committed in between.
    fn begin_statement(&self) -> &'static str {
        match self {
            TargetConnection::Sqlite(_) => "BEGIN IMMEDIATE",
            TargetConnection::Postgresql(_) | TargetConnection::Mysql(_) => "BEGIN",
        }
    }

    /// Connects with a stored (decrypted) connection configuration. SQLite files must exist
    /// (Ferry never creates a database file).
    pub async fn open(dialect: Dialect, config: &Value) -> Result<TargetConnection, DbTargetError> {
        let configuration = |error: FieldError| DbTargetError::Configuration(error.to_string());
        let connected = match dialect {
            Dialect::Postgresql => {
                let config = ferry_connectors::postgresql::PostgresqlConfig::from_value(config)
                    .map_err(configuration)?;
                sqlx::PgConnection::connect_with(&config.connect_options())
                    .await
                    .map(TargetConnection::Postgresql)
            }
            Dialect::Mysql => {
                let config = ferry_connectors::mysql::MysqlConfig::from_value(config)
                    .map_err(configuration)?;
                sqlx::MySqlConnection::connect_with(&config.connect_options())
                    .await
                    .map(TargetConnection::Mysql)
            }
            Dialect::Sqlite => {
                let config = ferry_connectors::sqlite::SqliteConfig::from_value(config)
                    .map_err(configuration)?;
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&config.path)
                    .create_if_missing(false)
                    .busy_timeout(std::time::Duration::from_secs(10));
                sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .map(TargetConnection::Sqlite)
            }
        };
        connected.map_err(|error| {
            DbTargetError::Database(format!(
                "could not connect to the target database: {}",
                describe_sqlx(&error)
            ))
        })
    }

    fn dialect(&self) -> Dialect {
        match self {
            TargetConnection::Postgresql(_) => Dialect::Postgresql,
            TargetConnection::Mysql(_) => Dialect::Mysql,
            TargetConnection::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs plain SQL (DDL).
    async fn execute_sql(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        on_connection!(self, |conn| {
            sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
        })
    }

    /// Rows of a query with text columns (introspection).
    async fn fetch_strings(
        &mut self,
        sql: &str,
        binds: &[Bind],
        columns: usize,
    ) -> Result<Vec<Vec<String>>, sqlx::Error> {
        on_connection!(self, |conn| {
            let rows = bind_all!(sqlx::query(sql), binds)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter()
                .map(|row| {
                    (0..columns)
                        .map(|index| {
                            row.try_get::<Option<String>, _>(index)
                                .map(Option::unwrap_or_default)
                        })
                        .collect::<Result<Vec<String>, sqlx::Error>>()
                })
                .collect()
        })
    }

    /// Runs statements in one transaction (rolled back on the first failure); returns the
    /// rows each affected.
    async fn execute_all(&mut self, statements: &[Statement]) -> Result<Vec<u64>, sqlx::Error> {
        let begin = self.begin_statement();
        on_connection!(self, |conn| {
            let mut transaction = conn.begin_with(begin).await?;
            let mut affected = Vec::with_capacity(statements.len());
            for statement in statements {
                let done = bind_all!(sqlx::query(&statement.sql), &statement.binds)
                    .execute(&mut *transaction)
                    .await?;
                affected.push(done.rows_affected());
            }
            transaction.commit().await?;
            Ok(affected)
        })
    }

    /// One transaction: `lookup` is read (each row's first column, the identity, as text →
    /// its other columns as text), `plan` turns it into outcomes and statements, the
    /// statements run, and the transaction commits (or, with `commit` false, rolls back: a
    /// test run).
    async fn plan_and_write<F>(
        &mut self,
        lookup: Option<&Statement>,
        commit: bool,
        plan: F,
    ) -> Result<Vec<Outcome>, sqlx::Error>
    where
        F: FnOnce(HashMap<String, Vec<Option<String>>>) -> (Vec<Outcome>, Vec<Statement>),
    {
        let begin = self.begin_statement();
        on_connection!(self, |conn| {
            let mut transaction = conn.begin_with(begin).await?;
            let mut found = HashMap::new();
            if let Some(statement) = lookup {
                let rows = bind_all!(sqlx::query(&statement.sql), &statement.binds)
                    .fetch_all(&mut *transaction)
                    .await?;
                for row in &rows {
                    if let Some(text) = row.try_get::<Option<String>, _>(0)? {
                        let current = (1..row.len())
                            .map(|index| row.try_get::<Option<String>, _>(index))
                            .collect::<Result<Vec<_>, _>>()?;
                        found.insert(text, current);
                    }
                }
            }
            let (outcomes, statements) = plan(found);
            if !commit {
                transaction.rollback().await?;
                return Ok(outcomes);
            }
            for statement in &statements {
                bind_all!(sqlx::query(&statement.sql), &statement.binds)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
            Ok(outcomes)
        })
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = on_connection!(self, |conn| conn.close().await);
    }
}

// ---------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------

const PG_TABLES: &str = "SELECT table_schema::text, table_name::text FROM information_schema.tables \
     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
     AND table_schema NOT LIKE 'pg\\_%' ORDER BY 1, 2";
const MYSQL_TABLES: &str = "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR) \
     FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
     ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2";
const SQLITE_TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE \
     'sqlite\\_%' ESCAPE '\\' ORDER BY name";

/// Tables the connection can write, by the names syncs use (`schema.table`, `db.table`,
/// `table`).
pub async fn list_tables(
    connection: &mut TargetConnection,
) -> Result<Vec<TableName>, DbTargetError> {
    let dialect = connection.dialect();
    let (sql, width) = match dialect {
        Dialect::Postgresql => (PG_TABLES, 2),
        Dialect::Mysql => (MYSQL_TABLES, 2),
        Dialect::Sqlite => (SQLITE_TABLES, 1),
    };
    let rows = connection
        .fetch_strings(sql, &[], width)
        .await
        .map_err(database_error)?;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            if width == 2 {
                let name = row.pop().unwrap_or_default();
                TableName {
                    schema: row.pop(),
                    name,
                }
            } else {
                TableName {
                    schema: None,
                    name: row.pop().unwrap_or_default(),
                }
            }
        })
        .collect())
}

/// The schema (PostgreSQL) or database (MySQL) unqualified names live in.
async fn default_schema(
    connection: &mut TargetConnection,
) -> Result<Option<String>, DbTargetError> {
    let sql = match connection.dialect() {
        Dialect::Postgresql => "SELECT current_schema()::text",
        Dialect::Mysql => "SELECT CAST(DATABASE() AS CHAR)",
        Dialect::Sqlite => return Ok(None),
    };
    let rows = connection
        .fetch_strings(sql, &[], 1)
        .await
        .map_err(database_error)?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|mut row| row.pop())
        .filter(|s| !s.is_empty()))
}

/// Resolves a table name against the listed tables: exactly, else in the default schema,
/// else the one table matching case-insensitively.
pub async fn resolve_table(
    connection: &mut TargetConnection,
    wanted: &TableName,
) -> Result<Option<TableName>, DbTargetError> {
    let tables = list_tables(connection).await?;
    let mut wanted = wanted.clone();
    if wanted.schema.is_none() && connection.dialect() != Dialect::Sqlite {
        wanted.schema = default_schema(connection).await?;
    }
    if tables.contains(&wanted) {
        return Ok(Some(wanted));
    }
    let matches: Vec<&TableName> = tables
        .iter()
        .filter(|t| {
            t.name.eq_ignore_ascii_case(&wanted.name)
                && match (&t.schema, &wanted.schema) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (None, None) => true,
                    _ => false,
                }
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(Some((*one).clone())),
        _ => Ok(None),
    }
}

/// The columns of a table (which must exist), with single-column unique indexes marked.
pub async fn describe_table(
    connection: &mut TargetConnection,
    table: &TableName,
) -> Result<TableInfo, DbTargetError> {
    let dialect = connection.dialect();
    let schema = table.schema.clone().unwrap_or_default();
    let columns = match dialect {
        Dialect::Postgresql => {
            let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 CASE WHEN a.attnotnull THEN '1' ELSE '0' END, \
                 CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid \
                   AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum \
                   AND i.indpred IS NULL) THEN '1' ELSE '0' END \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum";
            connection
                .fetch_strings(
                    sql,
                    &[Bind::Text(schema), Bind::Text(table.name.clone())],
                    4,
                )
                .await
        }
        Dialect::Mysql => {
            let sql = "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), \
                 CASE WHEN c.IS_NULLABLE = 'NO' THEN '1' ELSE '0' END, \
                 CASE WHEN EXISTS (SELECT 1 FROM information_schema.STATISTICS s \
                   WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME \
                   AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0 \
                   AND (SELECT COUNT(*) FROM information_schema.STATISTICS s2 \
                        WHERE s2.TABLE_SCHEMA = s.TABLE_SCHEMA AND s2.TABLE_NAME = s.TABLE_NAME \
                        AND s2.INDEX_NAME = s.INDEX_NAME) = 1) THEN '1' ELSE '0' END \
                 FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
                 ORDER BY c.ORDINAL_POSITION";
            connection
                .fetch_strings(
                    sql,
                    &[Bind::Text(schema), Bind::Text(table.name.clone())],
                    4,
                )
                .await
        }
        Dialect::Sqlite => {
            let sql = "SELECT t.name, t.type, CASE WHEN t.\"notnull\" THEN '1' ELSE '0' END, \
                 CASE WHEN (t.pk = 1 AND (SELECT COUNT(*) FROM pragma_table_info(?1) p \
                   WHERE p.pk > 0) = 1) OR EXISTS (SELECT 1 FROM pragma_index_list(?1) l \
                   WHERE l.\"unique\" = 1 AND l.partial = 0 \
                   AND (SELECT COUNT(*) FROM pragma_index_info(l.name)) = 1 \
                   AND (SELECT i.name FROM pragma_index_info(l.name) i) = t.name) \
                 THEN '1' ELSE '0' END FROM pragma_table_info(?1) t ORDER BY t.cid";
            connection
                .fetch_strings(sql, &[Bind::Text(table.name.clone())], 4)
                .await
        }
    }
    .map_err(database_error)?;
    if columns.is_empty() {
        return Err(DbTargetError::UnknownTable(format!(
            "table {table} does not exist or has no columns the connection's user can see"
        )));
    }
    Ok(TableInfo {
        name: table.clone(),
        columns: columns
            .into_iter()
            .map(|row| ColumnInfo {
                name: row.first().cloned().unwrap_or_default(),
                data_type: row.get(1).cloned().unwrap_or_default(),
                required: row.get(2).is_some_and(|v| v == "1"),
                unique: row.get(3).is_some_and(|v| v == "1"),
            })
            .collect(),
    })
}

/// Creates a table (and the unique index of its identity column), then describes it.
pub async fn create_table(
    connection: &mut TargetConnection,
    table: &TableName,
    columns: &[NewColumn],
    identity: Option<&str>,
) -> Result<TableInfo, DbTargetError> {
    let dialect = connection.dialect();
    let mut table = table.clone();
    if table.schema.is_none() && dialect != Dialect::Sqlite {
        table.schema = default_schema(connection).await?;
    }
    for sql in create_table_sql(dialect, &table, columns, identity) {
        connection.execute_sql(&sql).await.map_err(|error| {
            DbTargetError::Database(format!(
                "could not create table {table}: {}",
                describe_sqlx(&error)
            ))
        })?;
    }
    describe_table(connection, &table).await
}

/// Checks a sync's mapping against the table: every mapped column exists, the identity
/// column exists and (for `update` and `updateOrCreate`) has a unique index, and every
/// column a target filter tests exists.
pub fn check_table(
    document: &crate::spec::SyncDocument,
    sync: &CompiledSync,
    database: &DatabaseSync,
    table: &TableInfo,
) -> Result<(), FieldError> {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let listed = || {
        let mut shown: Vec<&str> = names.iter().take(20).copied().collect();
        if names.len() > shown.len() {
            shown.push("...");
        }
        shown.join(", ")
    };
    for (group, docs) in [
        ("fields", document.fields.as_slice()),
        (
            "override_fields",
            document.override_fields.as_deref().unwrap_or_default(),
        ),
    ] {
        for (index, doc) in docs.iter().enumerate() {
            if table.column(&doc.target).is_none() {
                return Err(FieldError::new(
                    format!("{group}[{index}].target"),
                    format!(
                        "'{}' is not a column of {} (columns: {})",
                        doc.target,
                        table.name,
                        listed()
                    ),
                ));
            }
        }
    }
    if let Some(identity) = &sync.identity_target {
        let Some(column) = table.column(identity) else {
            return Err(FieldError::new(
                "identity.target",
                format!(
                    "'{identity}' is not a column of {} (columns: {})",
                    table.name,
                    listed()
                ),
            ));
        };
        if database.mode.requires_unique_identity() && !column.unique {
            let unique: Vec<&str> = table
                .columns
                .iter()
                .filter(|c| c.unique)
                .map(|c| c.name.as_str())
                .collect();
            return Err(FieldError::new(
                "identity.target",
                format!(
                    "column '{}' of {} has no unique index, which mode {} needs to match \
                     rows (create one, e.g. CREATE UNIQUE INDEX ON {} ({}); columns with \
                     one: {})",
                    column.name,
                    table.name,
                    database.mode.as_str(),
                    table.name,
                    column.name,
                    if unique.is_empty() {
                        "none".to_string()
                    } else {
                        unique.join(", ")
                    }
                ),
            ));
        }
        if database.mode == DatabaseMode::Snapshot && column.unique {
            return Err(FieldError::new(
                "identity.target",
                format!(
                    "column '{}' of {} has a unique index, but mode snapshot appends the \
                     model's rows again on every run (use a table without that index, or \
                     target.create for a new one)",
                    column.name, table.name
                ),
            ));
        }
    }
    for (index, filter) in sync.filters.iter().enumerate() {
        if filter.field_type == crate::spec::FilterFieldType::Target
            && table.column(&filter.field).is_none()
        {
            return Err(FieldError::new(
                format!("filters[{index}].field_id"),
                format!(
                    "'{}' is not a column of {} (a target filter tests a column of the target \
                     table; columns: {})",
                    filter.field,
                    table.name,
                    listed()
                ),
            ));
        }
    }
    Ok(())
}

/// The column `snapshot` syncs stamp every row of a run with (the run's start, UTC).
pub const SNAPSHOT_COLUMN: &str = "_ferry_snapshot_at";

fn snapshot_column_type(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgresql => "timestamptz",
        Dialect::Mysql => "DATETIME(6)",
        Dialect::Sqlite => "TEXT",
    }
}

/// The SQL literal of a snapshot time for the dialect's snapshot column.
fn snapshot_literal(dialect: Dialect, at: chrono::DateTime<chrono::Utc>) -> String {
    match dialect {
        Dialect::Postgresql => format!(
            "CAST('{}' AS timestamptz)",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        Dialect::Mysql => format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.6f")),
        Dialect::Sqlite => format!(
            "'{}'",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    }
}

/// Adds [`SNAPSHOT_COLUMN`] to `table` when it does not have it yet, and returns the
/// table as it now is.
pub async fn ensure_snapshot_column(
    connection: &mut TargetConnection,
    table: TableInfo,
) -> Result<TableInfo, DbTargetError> {
    if table.column(SNAPSHOT_COLUMN).is_some() {
        return Ok(table);
    }
    let dialect = connection.dialect();
    let sql = format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        dialect.table(&table.name),
        dialect.quote(SNAPSHOT_COLUMN),
        snapshot_column_type(dialect)
    );
    connection.execute_sql(&sql).await.map_err(|error| {
        DbTargetError::Database(format!(
            "could not add column {SNAPSHOT_COLUMN} to {}: {}",
            table.name,
            describe_sqlx(&error)
        ))
    })?;
    describe_table(connection, &table.name).await
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

/// Where a database-target run writes.
#[derive(Debug, Clone)]
pub struct DatabaseTarget {
    /// The connection type (`postgresql`, `mysql`, `sqlite`).
    pub dialect: Dialect,
    /// The connection's full (decrypted) configuration.
    pub connection: Value,
    /// The compiled table, mode and options.
    pub sync: DatabaseSync,
}

/// Why a database-target run stopped early.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("reading the model failed: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    MissingField(#[from] MissingField),
    #[error("target database: {0}")]
    Target(#[from] DbTargetError),
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
}

/// A row to write.
#[derive(Debug, Clone)]
struct Pending {
    identity: String,
    hash: String,
    prior: Option<Box<LedgerEntry>>,
    values: Map<String, Value>,
    /// The row as mapped, for target filters still to be tested
    /// ([`crate::mapping::MappedRow::pending_filters`]).
    pending_filters: Option<Vec<Option<bool>>>,
}

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Inserted,
    Updated,
    Upserted {
        created: bool,
    },
    Deleted,
    /// Create mode, the identity is already in the table.
    Exists,
    /// Update or remove mode, the identity is not in the table.
    Unmatched,
    /// Update mode, the matched row's current values do not pass the target filters.
    TargetFiltered,
}

struct DbRun {
    sync_id: uuid::Uuid,
    execution_id: uuid::Uuid,
    counts: ExecutionCounts,
    errors: Vec<String>,
    seq: HashMap<&'static str, i64>,
    lines: Vec<RecordLine>,
    ledger: Vec<LedgerEntry>,
}

impl DbRun {
    fn log(&mut self, log_type: &'static str, line: Value) {
        let seq = self.seq.entry(log_type).or_insert(0);
        self.lines.push(RecordLine {
            log_type: log_type.to_string(),
            seq: *seq,
            line: line.to_string(),
        });
        *seq += 1;
    }

    fn warn(&mut self, identity: Option<&str>, message: &str) {
        self.counts.warnings += 1;
        self.log(
            "warnings",
            json!({"identity": identity, "message": message}),
        );
    }

    async fn flush(&mut self, store: &DynStore) -> Result<(), StoreError> {
        let ledger = std::mem::take(&mut self.ledger);
        store.put_ledger_entries(self.sync_id, &ledger).await?;
        let lines = std::mem::take(&mut self.lines);
        store
            .append_execution_records(self.execution_id, &lines)
            .await?;
        store
            .record_execution_progress(self.execution_id, self.counts, &self.errors)
            .await
    }

    fn record(&mut self, row: &Pending, outcome: Outcome, test: bool) {
        let (operation, log_type, ledger_outcome) = match outcome {
            Outcome::Inserted => {
                self.counts.insert += 1;
                ("insert", Some("inserts"), "inserted")
            }
            Outcome::Updated => {
                self.counts.update += 1;
                ("update", Some("updates"), "updated")
            }
            Outcome::Upserted { created } => {
                self.counts.upserts += 1;
                if created {
                    self.counts.insert += 1;
                    ("upsert", Some("inserts"), "upserted")
                } else {
                    self.counts.update += 1;
                    ("upsert", Some("updates"), "upserted")
                }
            }
            Outcome::Deleted => {
                self.counts.delete += 1;
                ("delete", Some("deletes"), "deleted")
            }
            Outcome::Exists => ("skip", None, "exists"),
            Outcome::Unmatched => ("skip", None, "unmatched"),
            Outcome::TargetFiltered => ("skip", None, "filtered"),
        };
        let mut line = json!({"identity": row.identity, "operation": operation,
            "values": row.values});
        if test {
            line["test"] = Value::Bool(true);
        }
        match outcome {
            Outcome::Exists => {
                line["message"] = json!("a row with this identity is already in the table");
            }
            Outcome::Unmatched => {
                line["message"] = json!("no row with this identity in the table");
            }
            Outcome::TargetFiltered => {
                line["message"] =
                    json!("the matched row's current values do not pass the target filters");
            }
            _ => {}
        }
        if let Some(log_type) = log_type {
            self.log(log_type, line.clone());
        }
        self.log("records", line);
        if outcome == Outcome::TargetFiltered {
            // Like a row a model filter drops: not in the total, ledger left as it was (so
            // the row is looked at again next run).
            self.counts.total -= 1;
            return;
        }
        if test {
            return;
        }
        // An update or delete that matched nothing is retried next run.
        let hash = match outcome {
            Outcome::Unmatched => row.prior.as_ref().and_then(|p| p.hash.clone()),
            _ => Some(row.hash.clone()),
        };
        self.ledger.push(LedgerEntry::new(
            row.identity.clone(),
            hash,
            None,
            ledger_outcome,
            None,
        ));
    }

    fn failed(&mut self, row: &Pending, operation: &str, message: &str) {
        self.counts.error += 1;
        let line = json!({"identity": row.identity, "operation": operation,
            "error_code": "DATABASE_ERROR", "message": message, "values": row.values});
        self.log("errors", line.clone());
        self.log("records", line);
        let prior = row.prior.as_ref();
        self.ledger.push(LedgerEntry::new(
            row.identity.clone(),
            prior.and_then(|p| p.hash.clone()),
            None,
            "failed",
            Some("DATABASE_ERROR".to_string()),
        ));
    }
}

/// Everything a database-target run reads.
struct DbEnv<'a> {
    sync: &'a CompiledSync,
    database: &'a DatabaseSync,
    table: TableInfo,
    /// Mapped target fields → the table's column (resolved case-insensitively).
    columns: Vec<(String, ColumnInfo)>,
    /// The identity column, when the sync has one.
    identity: Option<ColumnInfo>,
    /// The columns target filters test (read with the identity lookup), in
    /// [`CompiledSync::target_filter_fields`] order.
    filter_columns: Vec<(String, ColumnInfo)>,
    test: bool,
}

impl DbEnv<'_> {
    /// The columns of fields mapped with `sync_mode: create`: written on insert, and on
    /// update only where the row holds NULL.
    fn create_only(&self) -> Vec<String> {
        self.sync
            .fields
            .iter()
            .zip(&self.columns)
            .filter(|(field, _)| field.create_only)
            .map(|(_, (_, column))| column.name.clone())
            .collect()
    }

    /// The written columns (mapped ones, plus the identity column if not mapped) and each
    /// row's values aligned with them.
    fn layout(&self) -> Vec<&ColumnInfo> {
        let mut columns: Vec<&ColumnInfo> = self.columns.iter().map(|(_, c)| c).collect();
        if let Some(identity) = &self.identity
            && !columns.iter().any(|c| c.name == identity.name)
        {
            columns.push(identity);
        }
        columns
    }

    fn values(&self, row: &Pending, layout: &[&ColumnInfo]) -> Vec<Value> {
        layout
            .iter()
            .map(|column| {
                let mapped = self
                    .columns
                    .iter()
                    .find(|(_, c)| c.name == column.name)
                    .and_then(|(target, _)| row.values.get(target));
                match mapped {
                    Some(value) => value.clone(),
                    // The identity column, unmapped: the identity value.
                    None => Value::String(row.identity.clone()),
                }
            })
            .collect()
    }
}

/// Runs a database-target execution (called by [`crate::run::execute`]).
pub(crate) async fn execute(context: RunContext) -> RunEnd {
    let RunContext {
        sync_id,
        execution_id,
        sync,
        options,
        first_run,
        store,
        target,
        mut rows,
        skips,
        cancel,
    } = context;
    // Every row is read: the source need not wait for an answer.
    drop(skips);
    let RunTarget::Database(target) = target else {
        return RunEnd {
            status: "failed",
            counts: ExecutionCounts::default(),
            errors: vec!["internal: a Salesforce target reached the database writer".into()],
        };
    };
    if let Some(canceled) = begin_execution(&store, execution_id).await {
        return canceled;
    }
    let mut run = DbRun {
        sync_id,
        execution_id,
        counts: ExecutionCounts::default(),
        errors: Vec::new(),
        seq: HashMap::new(),
        lines: Vec::new(),
        ledger: Vec::new(),
    };
    let result = run_all(
        &mut run, &sync, &target, &options, first_run, &store, &mut rows, &cancel,
    )
    .await;
    if let Err(error) = run.flush(&store).await {
        tracing::warn!(%error, "could not store the last record logs");
    }
    finish_execution(
        &store,
        execution_id,
        cancel.is_cancelled(),
        result,
        run.counts,
        std::mem::take(&mut run.errors),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_all(
    run: &mut DbRun,
    sync: &CompiledSync,
    target: &DatabaseTarget,
    options: &crate::run::RunOptions,
    first_run: bool,
    store: &DynStore,
    rows: &mut BoxStream<'static, Result<RowBatch, SourceError>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), RunError> {
    let database = &target.sync;
    let mut connection = TargetConnection::open(target.dialect, &target.connection).await?;
    let Some(name) = resolve_table(&mut connection, &database.table).await? else {
        return Err(DbTargetError::UnknownTable(format!(
            "table {} no longer exists",
            database.table
        ))
        .into());
    };
    let mut table = describe_table(&mut connection, &name).await?;
    if database.mode == DatabaseMode::Snapshot && !options.test {
        table = ensure_snapshot_column(&mut connection, table).await?;
    }
    let mut columns = Vec::new();
    for field in &sync.fields {
        let Some(column) = table.column(&field.target) else {
            return Err(DbTargetError::UnknownTable(format!(
                "column '{}' of {} no longer exists",
                field.target, table.name
            ))
            .into());
        };
        columns.push((field.target.clone(), column.clone()));
    }
    let identity = match &sync.identity_target {
        Some(name) => match table.column(name) {
            Some(column) => Some(column.clone()),
            None => {
                return Err(DbTargetError::UnknownTable(format!(
                    "identity column '{name}' of {} no longer exists",
                    table.name
                ))
                .into());
            }
        },
        None => None,
    };
    let mut filter_columns = Vec::new();
    for name in sync.target_filter_fields() {
        let Some(column) = table.column(name) else {
            return Err(DbTargetError::UnknownTable(format!(
                "column '{name}' of {}, which a target filter tests, no longer exists",
                table.name
            ))
            .into());
        };
        filter_columns.push((name.to_string(), column.clone()));
    }
    let env = DbEnv {
        sync,
        database,
        table,
        columns,
        identity,
        filter_columns,
        test: options.test,
    };
    let dialect = target.dialect;
    if matches!(
        database.mode,
        DatabaseMode::Replace | DatabaseMode::Snapshot
    ) {
        let result = replace(run, &env, dialect, &mut connection, rows, cancel).await;
        connection.close().await;
        return result;
    }
    if options.resync && !database.preserve_table_on_resync && !options.test {
        let sql = format!("DELETE FROM {}", dialect.table(&env.table.name));
        connection.execute_sql(&sql).await.map_err(database_error)?;
        store.clear_ledger(run.sync_id).await?;
        run.warn(
            None,
            &format!(
                "resync with preserve_table_on_resync false: {} was emptied first",
                env.table.name
            ),
        );
    }
    let mut window = 0usize;
    let mut result = Ok(());
    while let Some(batch) = rows.next().await {
        if cancel.is_cancelled() {
            break;
        }
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                result = Err(error.into());
                break;
            }
        };
        window += 1;
        let span = info_span!("sync_window", window, rows = batch.rows.len());
        let outcome = write_window(
            run,
            &env,
            options,
            first_run,
            store,
            &mut connection,
            &mut batch,
        )
        .instrument(span)
        .await;
        run.flush(store).await?;
        if let Err(error) = outcome {
            result = Err(error);
            break;
        }
    }
    connection.close().await;
    result
}

/// Stages 2–7 for one window of model rows.
async fn write_window(
    run: &mut DbRun,
    env: &DbEnv<'_>,
    options: &crate::run::RunOptions,
    first_run: bool,
    store: &DynStore,
    connection: &mut TargetConnection,
    batch: &mut RowBatch,
) -> Result<(), RunError> {
    let sync = env.sync;
    let mapped = map_batch(sync, batch)?;
    for rejected in &mapped.rejected {
        run.warn(rejected.identity.as_deref(), &rejected.message);
    }
    let rows: Vec<_> = match &options.identities {
        Some(wanted) => mapped
            .rows
            .into_iter()
            .filter(|row| wanted.contains(&row.identity))
            .collect(),
        None => mapped.rows,
    };
    if rows.is_empty() {
        return Ok(());
    }
    let identities: Vec<String> = rows.iter().map(|r| r.identity.clone()).collect();
    let mut prior: HashMap<String, LedgerEntry> = store
        .ledger_entries(run.sync_id, &identities)
        .await?
        .into_iter()
        .map(|entry| (entry.identity.clone(), entry))
        .collect();
    let force = options.resync || options.identities.is_some() || sync.sync_all_records;
    let baseline = sync.skip_initial_backfill && first_run && !force;
    let object = env.table.name.to_string();
    let mut hasher = RowHasher::new(&object, env.database.mode.as_str());
    let mut pending = Vec::new();
    for row in rows {
        let hash = hasher.hash(&row.values);
        let entry = prior.remove(&row.identity);
        match detect(&hash, entry.as_ref(), force, baseline) {
            Change::Unchanged => {}
            Change::Baseline => {
                if !options.test {
                    run.ledger.push(LedgerEntry::new(
                        row.identity.clone(),
                        Some(hash),
                        None,
                        "baseline",
                        None,
                    ));
                }
            }
            Change::Send => {
                // Create mode: a row written before is not inserted again.
                let created_before = entry.as_ref().is_some_and(|e| {
                    e.hash.is_some() && matches!(e.outcome.as_str(), "inserted" | "exists")
                });
                if env.database.mode == DatabaseMode::Create && created_before && !force {
                    run.counts.total += 1;
                    let pending = Pending {
                        identity: row.identity,
                        hash,
                        prior: entry.map(Box::new),
                        values: row.values,
                        pending_filters: row.pending_filters,
                    };
                    run.record(&pending, Outcome::Exists, options.test);
                    continue;
                }
                pending.push(Pending {
                    identity: row.identity,
                    hash,
                    prior: entry.map(Box::new),
                    values: row.values,
                    pending_filters: row.pending_filters,
                });
            }
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    run.counts.total += pending.len() as i64;
    let layout = env.layout();
    let size = chunk_rows(connection.dialect(), layout.len());
    let mut rest = pending;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(size));
        let chunk = std::mem::replace(&mut rest, tail);
        write_chunk(run, env, connection, &layout, chunk).await?;
    }
    Ok(())
}

/// One chunk: a transaction, or (after a data error) one transaction per row.
async fn write_chunk(
    run: &mut DbRun,
    env: &DbEnv<'_>,
    connection: &mut TargetConnection,
    layout: &[&ColumnInfo],
    chunk: Vec<Pending>,
) -> Result<(), RunError> {
    match write_rows(env, connection, layout, &chunk).await {
        Ok(outcomes) => {
            for (row, outcome) in chunk.iter().zip(outcomes) {
                run.record(row, outcome, env.test);
            }
            Ok(())
        }
        Err(error) if is_data_error(&error) && chunk.len() > 1 => {
            tracing::info!(error = %describe_sqlx(&error), rows = chunk.len(),
                "chunk failed; writing its rows one by one");
            for row in chunk {
                let single = std::slice::from_ref(&row);
                match write_rows(env, connection, layout, single).await {
                    Ok(outcomes) => {
                        for outcome in outcomes {
                            run.record(&row, outcome, env.test);
                        }
                    }
                    Err(error) if is_data_error(&error) => {
                        run.failed(&row, env.database.mode.as_str(), &describe_sqlx(&error));
                    }
                    Err(error) => return Err(database_error(error).into()),
                }
            }
            Ok(())
        }
        Err(error) if is_data_error(&error) => {
            for row in &chunk {
                run.failed(row, env.database.mode.as_str(), &describe_sqlx(&error));
            }
            Ok(())
        }
        Err(error) => Err(database_error(error).into()),
    }
}

/// Plans and writes rows in one transaction; returns each row's outcome. A test run
/// reads which identities exist and writes nothing.
async fn write_rows(
    env: &DbEnv<'_>,
    connection: &mut TargetConnection,
    layout: &[&ColumnInfo],
    rows: &[Pending],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let dialect = connection.dialect();
    let identities: Vec<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
    let lookup = match (&env.identity, env.database.mode) {
        (Some(column), mode) if mode != DatabaseMode::Append && mode != DatabaseMode::Replace => {
            let current: Vec<&ColumnInfo> = env.filter_columns.iter().map(|(_, c)| c).collect();
            Some(lookup_statement(
                dialect,
                &env.table.name,
                column,
                &current,
                &identities,
            ))
        }
        _ => None,
    };
    connection
        .plan_and_write(lookup.as_ref(), !env.test, |existing| {
            plan_rows(env, dialect, layout, rows, &existing)
        })
        .await
}

/// Whether a matched row's current values (`current`, the texts of
/// [`DbEnv::filter_columns`]) pass the sync's target filters.
fn passes_target_filters(env: &DbEnv<'_>, row: &Pending, current: &[Option<String>]) -> bool {
    if row.pending_filters.is_none() {
        return true;
    }
    let values: Vec<(&str, Value)> = env
        .filter_columns
        .iter()
        .enumerate()
        .map(|(index, (name, column))| {
            let text = current.get(index).and_then(Option::as_deref);
            (name.as_str(), current_value(column, text))
        })
        .collect();
    crate::plan::passes_target_filters(env.sync, row.pending_filters.as_deref(), |field| {
        values
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
            .map(|(_, value)| value)
    })
}

/// Decides each row's outcome from the identities the table holds (and the current values
/// target filters test), and the statements that write them.
fn plan_rows(
    env: &DbEnv<'_>,
    dialect: Dialect,
    layout: &[&ColumnInfo],
    rows: &[Pending],
    existing: &HashMap<String, Vec<Option<String>>>,
) -> (Vec<Outcome>, Vec<Statement>) {
    let table = &env.table.name;
    let mode = env.database.mode;
    let exists = |row: &Pending| existing.contains_key(&row.identity);
    let outcomes: Vec<Outcome> = rows
        .iter()
        .map(|row| match mode {
            DatabaseMode::Create if env.identity.is_some() && exists(row) => Outcome::Exists,
            DatabaseMode::Create
            | DatabaseMode::Append
            | DatabaseMode::Replace
            | DatabaseMode::Snapshot => Outcome::Inserted,
            DatabaseMode::Update => match existing.get(&row.identity) {
                Some(current) if passes_target_filters(env, row, current) => Outcome::Updated,
                Some(_) => Outcome::TargetFiltered,
                None => Outcome::Unmatched,
            },
            DatabaseMode::UpdateOrCreate => Outcome::Upserted {
                created: !exists(row),
            },
            DatabaseMode::Remove if exists(row) => Outcome::Deleted,
            DatabaseMode::Remove => Outcome::Unmatched,
        })
        .collect();
    let chosen = |wanted: &dyn Fn(Outcome) -> bool| -> Vec<&Pending> {
        rows.iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| wanted(**outcome))
            .map(|(row, _)| row)
            .collect()
    };
    let mut statements = Vec::new();
    match (mode, &env.identity) {
        (DatabaseMode::Remove, Some(column)) => {
            let deleted: Vec<&str> = chosen(&|o| o == Outcome::Deleted)
                .iter()
                .map(|r| r.identity.as_str())
                .collect();
            if !deleted.is_empty() {
                statements.push(delete_statement(dialect, table, column, &deleted));
            }
        }
        (DatabaseMode::Update | DatabaseMode::UpdateOrCreate, Some(column)) => {
            let written = chosen(&|o| matches!(o, Outcome::Updated | Outcome::Upserted { .. }));
            if !written.is_empty() {
                let values: Vec<Vec<Value>> =
                    written.iter().map(|row| env.values(row, layout)).collect();
                let fill = env.create_only();
                statements.push(insert_statement(
                    dialect,
                    table,
                    layout,
                    &values,
                    OnConflict::UpdateFilling(&column.name, &fill),
                ));
            }
        }
        _ => {
            let written = chosen(&|o| o == Outcome::Inserted);
            if !written.is_empty() {
                let values: Vec<Vec<Value>> =
                    written.iter().map(|row| env.values(row, layout)).collect();
                statements.push(insert_statement(
                    dialect,
                    table,
                    layout,
                    &values,
                    OnConflict::Fail,
                ));
            }
        }
    }
    (outcomes, statements)
}

/// The staging table of a `replace` run.
fn staging_table(table: &TableName) -> TableName {
    let name: String = format!("{}_ferry_stage", table.name)
        .chars()
        .take(63)
        .collect();
    TableName {
        schema: table.schema.clone(),
        name,
    }
}

/// `replace` and `snapshot`: every mapped model row into a staging table, then in one
/// transaction the table is emptied and the staged rows copied in (`replace`), or the
/// staged rows are appended stamped with the run's start in [`SNAPSHOT_COLUMN`]
/// (`snapshot`).
async fn replace(
    run: &mut DbRun,
    env: &DbEnv<'_>,
    dialect: Dialect,
    connection: &mut TargetConnection,
    rows: &mut BoxStream<'static, Result<RowBatch, SourceError>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), RunError> {
    let table = &env.table.name;
    let stage = staging_table(table);
    let layout = env.layout();
    let snapshot = env.database.mode == DatabaseMode::Snapshot;
    let started_at = chrono::Utc::now();
    if !env.test {
        connection
            .execute_sql(&format!("DROP TABLE IF EXISTS {}", dialect.table(&stage)))
            .await
            .map_err(database_error)?;
        connection
            .execute_sql(&format!(
                "CREATE TABLE {} AS SELECT * FROM {} WHERE 1 = 0",
                dialect.table(&stage),
                dialect.table(table)
            ))
            .await
            .map_err(database_error)?;
    }
    let size = chunk_rows(dialect, layout.len());
    let mut written: Vec<Pending> = Vec::new();
    let mut failure: Option<RunError> = None;
    while let Some(batch) = rows.next().await {
        if cancel.is_cancelled() {
            break;
        }
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                failure = Some(error.into());
                break;
            }
        };
        let mapped = match map_batch(env.sync, &mut batch) {
            Ok(mapped) => mapped,
            Err(error) => {
                failure = Some(error.into());
                break;
            }
        };
        for rejected in &mapped.rejected {
            run.warn(rejected.identity.as_deref(), &rejected.message);
        }
        let object = table.to_string();
        let mut hasher = RowHasher::new(&object, env.database.mode.as_str());
        for chunk in mapped.rows.chunks(size) {
            let pending: Vec<Pending> = chunk
                .iter()
                .map(|row| Pending {
                    identity: row.identity.clone(),
                    hash: hasher.hash(&row.values),
                    prior: None,
                    values: row.values.clone(),
                    // Replace and snapshot take no target filters (mode update only).
                    pending_filters: None,
                })
                .collect();
            if !env.test {
                let values: Vec<Vec<Value>> =
                    pending.iter().map(|row| env.values(row, &layout)).collect();
                let statement =
                    insert_statement(dialect, &stage, &layout, &values, OnConflict::Fail);
                if let Err(error) = connection
                    .execute_all(std::slice::from_ref(&statement))
                    .await
                {
                    failure = Some(database_error(error).into());
                    break;
                }
            }
            run.counts.total += pending.len() as i64;
            written.extend(pending);
        }
        if failure.is_some() {
            break;
        }
    }
    if failure.is_none() && !cancel.is_cancelled() && !env.test {
        let names: Vec<String> = layout.iter().map(|c| dialect.quote(&c.name)).collect();
        let (targets, selected) = if snapshot {
            (
                format!("{}, {}", names.join(", "), dialect.quote(SNAPSHOT_COLUMN)),
                format!(
                    "{}, {}",
                    names.join(", "),
                    snapshot_literal(dialect, started_at)
                ),
            )
        } else {
            (names.join(", "), names.join(", "))
        };
        let mut statements = Vec::new();
        if !snapshot {
            statements.push(Statement {
                sql: format!("DELETE FROM {}", dialect.table(table)),
                binds: Vec::new(),
            });
        }
        statements.push(Statement {
            sql: format!(
                "INSERT INTO {} ({targets}) SELECT {selected} FROM {}",
                dialect.table(table),
                dialect.table(&stage)
            ),
            binds: Vec::new(),
        });
        if let Err(error) = connection.execute_all(&statements).await {
            failure = Some(database_error(error).into());
        }
    }
    if !env.test {
        let _ = connection
            .execute_sql(&format!("DROP TABLE IF EXISTS {}", dialect.table(&stage)))
            .await;
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if !cancel.is_cancelled() {
        for row in &written {
            run.counts.insert += 1;
            let mut line = json!({"identity": row.identity, "operation": "insert",
                "values": row.values});
            if env.test {
                line["test"] = Value::Bool(true);
            }
            run.log("inserts", line.clone());
            run.log("records", line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: data_type.into(),
            required: false,
            unique: false,
        }
    }

    fn table(schema: Option<&str>, name: &str) -> TableName {
        TableName {
            schema: schema.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn upserts_per_dialect() {
        let email = column("email", "text");
        let age = column("age", "bigint");
        let rows = vec![
            vec![json!("a@x"), json!(36)],
            vec![json!("b@x"), Value::Null],
        ];
        let pg = insert_statement(
            Dialect::Postgresql,
            &table(Some("public"), "people"),
            &[&email, &age],
            &rows,
            OnConflict::Update("email"),
        );
        assert_eq!(
            pg.sql,
            "INSERT INTO \"public\".\"people\" (\"email\", \"age\") VALUES ($1::text, \
             $2::bigint), ($3::text, $4::bigint) ON CONFLICT (\"email\") DO UPDATE SET \
             \"age\" = EXCLUDED.\"age\""
        );
        assert_eq!(
            pg.binds,
            vec![
                Bind::Text("a@x".into()),
                Bind::Text("36".into()),
                Bind::Text("b@x".into()),
                Bind::Null
            ]
        );
        let my = insert_statement(
            Dialect::Mysql,
            &table(Some("shop"), "people"),
            &[&email, &age],
            &rows[..1],
            OnConflict::Update("email"),
        );
        assert_eq!(
            my.sql,
            "INSERT INTO `shop`.`people` (`email`, `age`) VALUES (?, ?) ON DUPLICATE KEY \
             UPDATE `age` = VALUES(`age`)"
        );
        let lite = insert_statement(
            Dialect::Sqlite,
            &table(None, "people"),
            &[&email, &age],
            &rows[..1],
            OnConflict::Update("email"),
        );
        assert_eq!(
            lite.sql,
            "INSERT INTO \"people\" (\"email\", \"age\") VALUES (?, ?) ON CONFLICT (\"email\") \
             DO UPDATE SET \"age\" = excluded.\"age\""
        );
        assert_eq!(lite.binds, vec![Bind::Text("a@x".into()), Bind::Int(36)]);
        let only_key = insert_statement(
            Dialect::Mysql,
            &table(None, "t"),
            &[&email],
            &rows[..0],
            OnConflict::Update("email"),
        );
        assert!(
            only_key
                .sql
                .ends_with("ON DUPLICATE KEY UPDATE `email` = `email`")
        );
    }

    #[test]
    fn identifiers_are_quoted_and_lookups_cast() {
        let id = column("we\"ird", "bigint");
        let statement = existing_statement(
            Dialect::Postgresql,
            &table(Some("pub\"lic"), "t"),
            &id,
            &["1", "2"],
        );
        assert_eq!(
            statement.sql,
            "SELECT \"we\"\"ird\"::text FROM \"pub\"\"lic\".\"t\" WHERE \"we\"\"ird\" IN \
             ($1::bigint, $2::bigint)"
        );
        let delete = delete_statement(
            Dialect::Mysql,
            &table(None, "a`b"),
            &column("id", "int"),
            &["7"],
        );
        assert_eq!(delete.sql, "DELETE FROM `a``b` WHERE `id` IN (?)");
        let lite = existing_statement(
            Dialect::Sqlite,
            &table(None, "t"),
            &column("n", "INTEGER"),
            &["5"],
        );
        assert_eq!(lite.binds, vec![Bind::Int(5)]);
    }

    #[test]
    fn lookups_read_the_columns_target_filters_test() {
        let id = column("email", "text");
        let status = column("status", "varchar(20)");
        let score = column("score", "integer");
        let statement = lookup_statement(
            Dialect::Mysql,
            &table(Some("crm"), "people"),
            &id,
            &[&status, &score],
            &["a@x.com"],
        );
        assert_eq!(
            statement.sql,
            "SELECT CAST(`email` AS CHAR), CAST(`status` AS CHAR), CAST(`score` AS CHAR) \
             FROM `crm`.`people` WHERE `email` IN (?)"
        );
        let plain = lookup_statement(Dialect::Postgresql, &table(None, "t"), &id, &[], &["a"]);
        assert_eq!(
            plain.sql,
            existing_statement(Dialect::Postgresql, &table(None, "t"), &id, &["a"]).sql
        );
        // Current values, read as text, become what filters compare.
        let cases = [
            (column("n", "bigint"), Some("42"), json!(42)),
            (column("n", "numeric(10,2)"), Some("42.50"), json!("42.50")),
            (column("b", "boolean"), Some("t"), json!(true)),
            (column("b", "tinyint(1)"), Some("0"), json!(false)),
            (column("j", "jsonb"), Some("{\"a\": 1}"), json!({"a": 1})),
            (column("s", "text"), Some("Open"), json!("Open")),
            (column("s", "text"), None, Value::Null),
            (
                column("t", "timestamptz"),
                Some("2024-05-01 10:00:00+00"),
                json!("2024-05-01 10:00:00+00"),
            ),
        ];
        for (column, text, expected) in cases {
            assert_eq!(
                current_value(&column, text),
                expected,
                "{column:?} {text:?}"
            );
        }
        use crate::filter::FilterFunction;
        assert!(FilterFunction::Equality.matches(
            &current_value(&column("n", "numeric"), Some("42.50")),
            Some(&json!(42.5))
        ));
        assert!(
            FilterFunction::True.matches(&current_value(&column("b", "bool"), Some("true")), None)
        );
    }

    #[test]
    fn values_render_for_the_column() {
        assert_eq!(
            render(
                Dialect::Mysql,
                ColumnClass::Timestamp,
                &json!("2024-01-02T03:04:05.250Z")
            ),
            Bind::Text("2024-01-02 03:04:05.250000".into())
        );
        assert_eq!(
            render(Dialect::Mysql, ColumnClass::Boolean, &json!(true)),
            Bind::Text("1".into())
        );
        assert_eq!(
            render(Dialect::Sqlite, ColumnClass::Boolean, &json!(false)),
            Bind::Int(0)
        );
        assert_eq!(
            render(Dialect::Sqlite, ColumnClass::Decimal, &json!(1.5)),
            Bind::Float(1.5)
        );
        assert_eq!(
            render(Dialect::Postgresql, ColumnClass::Json, &json!("{\"a\":1}")),
            Bind::Text("{\"a\":1}".into())
        );
        assert_eq!(
            render(Dialect::Sqlite, ColumnClass::Binary, &json!("aGk=")),
            Bind::Bytes(b"hi".to_vec())
        );
    }

    #[test]
    fn column_classes_follow_declared_types() {
        assert_eq!(ColumnClass::of("bigint"), ColumnClass::Integer);
        assert_eq!(ColumnClass::of("int(11) unsigned"), ColumnClass::Integer);
        assert_eq!(ColumnClass::of("tinyint(1)"), ColumnClass::Boolean);
        assert_eq!(
            ColumnClass::of("timestamp with time zone"),
            ColumnClass::Timestamp
        );
        assert_eq!(ColumnClass::of("DATETIME(6)"), ColumnClass::Timestamp);
        assert_eq!(ColumnClass::of("numeric(10,2)"), ColumnClass::Decimal);
        assert_eq!(ColumnClass::of("interval"), ColumnClass::Text);
        assert_eq!(ColumnClass::of("jsonb"), ColumnClass::Json);
        assert_eq!(ColumnClass::of("character varying(20)"), ColumnClass::Text);
    }

    #[test]
    fn new_tables_keep_types_and_index_the_identity() {
        let columns = vec![
            NewColumn {
                name: "Id".into(),
                field_type: "string".into(),
                remote_type: "id".into(),
            },
            NewColumn {
                name: "NumberOfEmployees".into(),
                field_type: "number".into(),
                remote_type: "int".into(),
            },
            NewColumn {
                name: "AnnualRevenue".into(),
                field_type: "number".into(),
                remote_type: "currency".into(),
            },
            NewColumn {
                name: "CreatedDate".into(),
                field_type: "datetime".into(),
                remote_type: "datetime".into(),
            },
            NewColumn {
                name: "Since".into(),
                field_type: "datetime".into(),
                remote_type: "date".into(),
            },
            NewColumn {
                name: "Active".into(),
                field_type: "boolean".into(),
                remote_type: "boolean".into(),
            },
        ];
        let pg = create_table_sql(
            Dialect::Postgresql,
            &table(Some("public"), "accounts"),
            &columns,
            Some("Id"),
        );
        assert_eq!(
            pg,
            vec![
                "CREATE TABLE \"public\".\"accounts\" (\"Id\" TEXT NOT NULL, \
                 \"NumberOfEmployees\" BIGINT, \"AnnualRevenue\" NUMERIC, \"CreatedDate\" \
                 TIMESTAMPTZ, \"Since\" DATE, \"Active\" BOOLEAN)"
                    .to_string(),
                "CREATE UNIQUE INDEX \"accounts_Id_ferry_key\" ON \"public\".\"accounts\" \
                 (\"Id\")"
                    .to_string(),
            ]
        );
        let my = create_table_sql(
            Dialect::Mysql,
            &table(None, "accounts"),
            &columns,
            Some("Id"),
        );
        assert!(my[0].contains("`Id` VARCHAR(255) NOT NULL"), "{}", my[0]);
        assert!(my[0].contains("`CreatedDate` DATETIME(6)"), "{}", my[0]);
        let lite = create_table_sql(Dialect::Sqlite, &table(None, "accounts"), &columns, None);
        assert_eq!(lite.len(), 1);
        assert!(
            lite[0].contains("\"NumberOfEmployees\" INTEGER"),
            "{}",
            lite[0]
        );
    }

    #[test]
    fn chunks_respect_parameter_limits() {
        assert_eq!(chunk_rows(Dialect::Postgresql, 3), MAX_CHUNK_ROWS);
        assert_eq!(chunk_rows(Dialect::Sqlite, 300), 100);
        assert_eq!(chunk_rows(Dialect::Mysql, 100_000), 1);
    }
}
