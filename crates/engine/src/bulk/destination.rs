//! The destination database: one connection per object, the SQL each stage needs in each
//! dialect, and the per-dialect loaders (`postgres`: `COPY ... FROM STDIN`; `mysql` and
//! `sqlite`: batched multi-row inserts).
//!
//! Every object is loaded into temporary *staging* tables (text columns) on its own
//! connection, then merged into the target table inside one transaction that also writes
//! the object's cursor row in `_ferry_sync_state` — so the cursor can never run ahead of
//! the data. DDL (creating tables, adding or widening columns) happens before that
//! transaction (MySQL commits implicitly around DDL).

use std::str::FromStr;

use chrono::{SecondsFormat, Utc};
use ferry_connectors::mysql::MysqlConfig;
use ferry_connectors::postgresql::PostgresqlConfig;
use ferry_connectors::sqlite::SqliteConfig;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row as _};

use super::DestinationSpec;
use super::run::{BulkError, SendFuture, send};
use super::schema::{Column, DELETED_AT, SNAPSHOT_AT, SNAPSHOT_EXECUTION, SYNCED_AT, SqlType};
use super::source::Row;

/// SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

enum ConnectTo {
    Postgres(sqlx::postgres::PgConnectOptions),
    Mysql(sqlx::mysql::MySqlConnectOptions),
    Sqlite(SqliteConnectOptions),
}

/// A configured destination.
pub(crate) struct Destination {
    pub dialect: Dialect,
    connect: ConnectTo,
    /// PostgreSQL schema or MySQL database holding the tables (`None`: the default).
    schema: Option<String>,
    prefix: String,
}

/// The name of Ferry's state table.
pub(crate) const STATE_TABLE: &str = "_ferry_sync_state";

impl Destination {
    pub(crate) fn from_spec(spec: &DestinationSpec) -> Result<Destination, BulkError> {
        let schema = spec
            .schema
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let prefix = spec.table_prefix.clone().unwrap_or_default();
        let config_error =
            |e: ferry_core::FieldError| BulkError::Config(format!("destination connection: {e}"));
        let (dialect, connect) = match spec.connection_type.as_str() {
            "postgresql" => {
                let config =
                    PostgresqlConfig::from_value(&spec.connection).map_err(config_error)?;
                (
                    Dialect::Postgres,
                    ConnectTo::Postgres(config.connect_options()),
                )
            }
            "mysql" => {
                let config = MysqlConfig::from_value(&spec.connection).map_err(config_error)?;
                (Dialect::Mysql, ConnectTo::Mysql(config.connect_options()))
            }
            "sqlite" => {
                let config = SqliteConfig::from_value(&spec.connection).map_err(config_error)?;
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", config.path))
                    .map_err(|e| BulkError::Config(format!("sqlite path: {e}")))?
                    .create_if_missing(true)
                    .busy_timeout(std::time::Duration::from_secs(30));
                (Dialect::Sqlite, ConnectTo::Sqlite(options))
            }
            other => {
                return Err(BulkError::Config(format!(
                    "{other:?} cannot be a bulk sync destination (postgresql, mysql or sqlite)"
                )));
            }
        };
        if dialect == Dialect::Sqlite && schema.is_some() {
            return Err(BulkError::Config(
                "a SQLite destination has no schemas; leave the schema empty".into(),
            ));
        }
        Ok(Destination {
            dialect,
            connect,
            schema,
            prefix,
        })
    }

    pub(crate) async fn connect(&self) -> Result<Conn, BulkError> {
        let conn = match &self.connect {
            ConnectTo::Postgres(options) => options.connect().await.map(Conn::Postgres),
            ConnectTo::Mysql(options) => options.connect().await.map(Conn::Mysql),
            ConnectTo::Sqlite(options) => options.connect().await.map(Conn::Sqlite),
        };
        conn.map_err(|source| BulkError::database("connect", source))
    }

    /// Quotes an identifier.
    pub(crate) fn quote(&self, ident: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("`{}`", ident.replace('`', "``")),
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    /// A string literal (only used for Ferry's own values: ids, object names, times).
    pub(crate) fn literal(&self, value: &str) -> String {
        let escaped = value.replace('\'', "''");
        match self.dialect {
            Dialect::Mysql => format!("'{}'", escaped.replace('\\', "\\\\")),
            _ => format!("'{escaped}'"),
        }
    }

    /// A staging (temporary) table reference: MySQL puts temporary tables in a database,
    /// so they go into the destination's when one is named.
    pub(crate) fn staging_ref(&self, staging: &str) -> String {
        match (self.dialect, &self.schema) {
            (Dialect::Mysql, Some(schema)) => {
                format!("{}.{}", self.quote(schema), self.quote(staging))
            }
            _ => self.quote(staging),
        }
    }

    /// The destination table name of an output name (prefix first).
    pub(crate) fn table_name(&self, output: &str) -> String {
        format!("{}{output}", self.prefix)
    }

    /// A schema-qualified, quoted table.
    pub(crate) fn qualified(&self, table: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(table)),
            None => self.quote(table),
        }
    }

    fn now_sql(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "now()",
            Dialect::Mysql => "UTC_TIMESTAMP(3)",
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        }
    }

    /// Creates the schema / database when named, and the state table.
    pub(crate) async fn prepare(&self, conn: &mut Conn) -> Result<(), BulkError> {
        if let Some(schema) = &self.schema {
            let sql = match self.dialect {
                Dialect::Postgres => format!("CREATE SCHEMA IF NOT EXISTS {}", self.quote(schema)),
                _ => format!("CREATE DATABASE IF NOT EXISTS {}", self.quote(schema)),
            };
            conn.execute(&sql).await?;
        }
        let key = match self.dialect {
            Dialect::Mysql => ("VARCHAR(36)", "VARCHAR(255)", "VARCHAR(40)", "BIGINT"),
            _ => ("TEXT", "TEXT", "TEXT", "BIGINT"),
        };
        conn.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (sync_id {} NOT NULL, object {} NOT NULL, \
             cursor_at {}, incremental_runs {} NOT NULL DEFAULT 0, updated_at {}, \
             PRIMARY KEY (sync_id, object))",
            self.qualified(STATE_TABLE),
            key.0,
            key.1,
            key.2,
            key.3,
            key.2
        ))
        .await?;
        Ok(())
    }

    /// The object's stored cursor and incremental run count.
    pub(crate) async fn read_state(
        &self,
        conn: &mut Conn,
        sync_id: &str,
        object: &str,
    ) -> Result<Option<(Option<String>, u32)>, BulkError> {
        let as_text = match self.dialect {
            Dialect::Postgres => "incremental_runs::text",
            Dialect::Mysql => "CAST(incremental_runs AS CHAR)",
            Dialect::Sqlite => "CAST(incremental_runs AS TEXT)",
        };
        let rows = conn
            .fetch_strings(&format!(
                "SELECT cursor_at, {as_text} FROM {} WHERE sync_id = {} AND object = {}",
                self.qualified(STATE_TABLE),
                self.literal(sync_id),
                self.literal(object)
            ))
            .await?;
        Ok(rows.into_iter().next().map(|row| {
            let cursor = row.first().cloned().flatten();
            let runs = row
                .get(1)
                .cloned()
                .flatten()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (cursor, runs)
        }))
    }

    /// Upserts the object's state row (inside the merge transaction).
    pub(crate) fn write_state_sql(
        &self,
        sync_id: &str,
        object: &str,
        cursor: Option<&str>,
        incremental_runs: u32,
    ) -> String {
        let cursor = cursor.map_or_else(|| "NULL".to_string(), |c| self.literal(c));
        let now = self.literal(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
        let values = format!(
            "({}, {}, {cursor}, {incremental_runs}, {now})",
            self.literal(sync_id),
            self.literal(object)
        );
        let table = self.qualified(STATE_TABLE);
        match self.dialect {
            Dialect::Mysql => format!(
                "INSERT INTO {table} (sync_id, object, cursor_at, incremental_runs, updated_at) \
                 VALUES {values} ON DUPLICATE KEY UPDATE cursor_at = VALUES(cursor_at), \
                 incremental_runs = VALUES(incremental_runs), updated_at = VALUES(updated_at)"
            ),
            _ => format!(
                "INSERT INTO {table} (sync_id, object, cursor_at, incremental_runs, updated_at) \
                 VALUES {values} ON CONFLICT (sync_id, object) DO UPDATE SET \
                 cursor_at = excluded.cursor_at, incremental_runs = excluded.incremental_runs, \
                 updated_at = excluded.updated_at"
            ),
        }
    }

    /// The table's columns and their types, or `None` when it does not exist.
    pub(crate) async fn table_columns(
        &self,
        conn: &mut Conn,
        table: &str,
    ) -> Result<Option<Vec<(String, Option<SqlType>)>>, BulkError> {
        let sql = match self.dialect {
            Dialect::Postgres => format!(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                self.schema
                    .as_deref()
                    .map_or_else(|| "current_schema()".to_string(), |s| self.literal(s)),
                self.literal(table)
            ),
            Dialect::Mysql => format!(
                "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) \
                 FROM information_schema.columns WHERE table_schema = {} AND table_name = {} \
                 ORDER BY ordinal_position",
                self.schema
                    .as_deref()
                    .map_or_else(|| "DATABASE()".to_string(), |s| self.literal(s)),
                self.literal(table)
            ),
            Dialect::Sqlite => format!(
                "SELECT name, type FROM pragma_table_info({})",
                self.literal(table)
            ),
        };
        let rows = conn.fetch_strings(&sql).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter()
                .filter_map(|row| {
                    let mut cells = row.into_iter();
                    let name = cells.next().flatten()?;
                    let data_type = cells.next().flatten().unwrap_or_default();
                    Some((name, SqlType::from_catalog(self.dialect, &data_type)))
                })
                .collect(),
        ))
    }

    /// `CREATE TABLE` for a target (primary key on the first column) or a snapshot table
    /// (no key, plus the snapshot columns).
    pub(crate) fn create_table_sql(
        &self,
        table: &str,
        columns: &[Column],
        soft_deletes: bool,
        snapshot: bool,
    ) -> String {
        let mut defs: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", self.quote(&c.name), c.sql_type.ddl(self.dialect)))
            .collect();
        for extra in self.ferry_columns(soft_deletes, snapshot) {
            // PostgreSQL fills `_ferry_synced_at` itself for rows copied straight into a
            // new table.
            let default = if self.dialect == Dialect::Postgres && extra.0 == SYNCED_AT {
                " DEFAULT now()"
            } else {
                ""
            };
            defs.push(format!(
                "{} {}{default}",
                self.quote(extra.0),
                extra.1.ddl(self.dialect)
            ));
        }
        if !snapshot && let Some(first) = columns.first() {
            defs.push(format!("PRIMARY KEY ({})", self.quote(&first.name)));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.qualified(table),
            defs.join(", ")
        )
    }

    /// Ferry's own columns of a table.
    pub(crate) fn ferry_columns(
        &self,
        soft_deletes: bool,
        snapshot: bool,
    ) -> Vec<(&'static str, SqlType)> {
        let mut out = vec![(SYNCED_AT, SqlType::DateTime)];
        if soft_deletes {
            out.push((DELETED_AT, SqlType::DateTime));
        }
        if snapshot {
            out.push((SNAPSHOT_EXECUTION, SqlType::Text { max_chars: 36 }));
            out.push((SNAPSHOT_AT, SqlType::DateTime));
        }
        out
    }

    pub(crate) fn add_column_sql(&self, table: &str, column: &str, sql_type: SqlType) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            self.qualified(table),
            self.quote(column),
            sql_type.ddl(self.dialect)
        )
    }

    /// `None` for SQLite (its columns hold any value).
    pub(crate) fn widen_column_sql(
        &self,
        table: &str,
        column: &str,
        sql_type: SqlType,
    ) -> Option<String> {
        let ddl = sql_type.ddl(self.dialect);
        match self.dialect {
            Dialect::Postgres => Some(format!(
                "ALTER TABLE {} ALTER COLUMN {} TYPE {ddl} USING {}::{ddl}",
                self.qualified(table),
                self.quote(column),
                self.quote(column)
            )),
            Dialect::Mysql => Some(format!(
                "ALTER TABLE {} MODIFY COLUMN {} {ddl}",
                self.qualified(table),
                self.quote(column)
            )),
            Dialect::Sqlite => None,
        }
    }

    /// A staging table: one text column per column, keyed by the first (MySQL and SQLite
    /// replace duplicates on load, last row wins; PostgreSQL keeps a sequence and
    /// [`Destination::dedupe_staging_sql`] keeps the last row per key).
    pub(crate) fn create_staging_sql(&self, staging: &str, columns: &[String]) -> Vec<String> {
        let q = |c: &str| self.quote(c);
        let staging_ref = self.staging_ref(staging);
        let mut statements = vec![format!("DROP TEMPORARY TABLE IF EXISTS {staging_ref}")];
        if self.dialect != Dialect::Mysql {
            statements[0] = format!("DROP TABLE IF EXISTS {staging_ref}");
        }
        let defs: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| match (self.dialect, i) {
                (Dialect::Postgres, _) => format!("{} text", q(c)),
                (Dialect::Mysql, 0) => format!("{} VARCHAR(18) NOT NULL", q(c)),
                (Dialect::Mysql, _) => format!("{} LONGTEXT", q(c)),
                (Dialect::Sqlite, _) => format!("{} TEXT", q(c)),
            })
            .collect();
        let key = columns.first().map(|c| q(c)).unwrap_or_default();
        statements.push(match self.dialect {
            Dialect::Postgres => format!(
                "CREATE TEMPORARY TABLE {staging_ref} (_ferry_seq bigserial, {})",
                defs.join(", ")
            ),
            Dialect::Mysql => format!(
                "CREATE TEMPORARY TABLE {staging_ref} ({}, PRIMARY KEY ({key})) CHARACTER SET utf8mb4",
                defs.join(", ")
            ),
            Dialect::Sqlite => format!(
                "CREATE TEMPORARY TABLE {staging_ref} ({}, PRIMARY KEY ({key}))",
                defs.join(", ")
            ),
        });
        statements
    }

    /// PostgreSQL only: keeps the last loaded row per key (COPY cannot upsert).
    pub(crate) fn dedupe_staging_sql(&self, staging: &str, key: &str) -> Option<String> {
        (self.dialect == Dialect::Postgres).then(|| {
            let (s, k) = (self.quote(staging), self.quote(key));
            format!(
                "DELETE FROM {s} a USING {s} b WHERE a.{k} = b.{k} AND a._ferry_seq < b._ferry_seq"
            )
        })
    }

    /// The staging text → column expression (PostgreSQL casts; the others convert
    /// implicitly from the normalized text).
    fn cast(&self, expression: String, sql_type: SqlType) -> String {
        match (self.dialect, sql_type) {
            (Dialect::Postgres, SqlType::Id | SqlType::Text { .. }) => expression,
            (Dialect::Postgres, t) => format!("({expression})::{}", t.ddl(Dialect::Postgres)),
            _ => expression,
        }
    }

    /// `deleted` predicate over a staging alias (the staged `IsDeleted` text).
    fn deleted_predicate(&self, alias: &str, is_deleted: &str) -> String {
        let truth = match self.dialect {
            Dialect::Postgres => "'true'",
            _ => "'1'",
        };
        format!("{alias}.{} = {truth}", self.quote(is_deleted))
    }

    /// Upserts staged rows into the target. `hard_deletes`: deleted rows are left out
    /// (see [`Destination::hard_delete_sql`]); otherwise they land with `_ferry_deleted_at`
    /// set (kept at its first value) when `soft_deletes`.
    pub(crate) fn merge_sql(
        &self,
        table: &str,
        staging: &str,
        columns: &[Column],
        is_deleted: Option<&str>,
        hard_deletes: bool,
        soft_deletes: bool,
    ) -> String {
        let q = |c: &str| self.quote(c);
        let now = self.now_sql();
        let mut names: Vec<String> = columns.iter().map(|c| q(&c.name)).collect();
        let mut values: Vec<String> = columns
            .iter()
            .map(|c| self.cast(format!("s.{}", q(&c.name)), c.sql_type))
            .collect();
        names.push(q(SYNCED_AT));
        values.push(now.to_string());
        let deleted = is_deleted.map(|d| self.deleted_predicate("s", d));
        if soft_deletes {
            names.push(q(DELETED_AT));
            values.push(match &deleted {
                Some(predicate) => format!("CASE WHEN {predicate} THEN {now} END"),
                None => "NULL".into(),
            });
        }
        let filter = match (&deleted, hard_deletes) {
            (Some(predicate), true) => format!(" WHERE NOT ({predicate})"),
            _ => String::new(),
        };
        let key = &names[0];
        let target = self.qualified(table);
        let staging = self.staging_ref(staging);
        let select = format!("SELECT {} FROM {staging} s", values.join(", "));
        match self.dialect {
            Dialect::Postgres | Dialect::Sqlite => {
                let mut sets: Vec<String> = names[1..]
                    .iter()
                    .filter(|n| **n != q(DELETED_AT))
                    .map(|n| format!("{n} = excluded.{n}"))
                    .collect();
                if soft_deletes {
                    let d = q(DELETED_AT);
                    let current = if self.dialect == Dialect::Postgres {
                        format!("t.{d}")
                    } else {
                        d.clone()
                    };
                    sets.push(format!(
                        "{d} = CASE WHEN excluded.{d} IS NULL THEN NULL ELSE COALESCE({current}, excluded.{d}) END"
                    ));
                }
                let alias = if self.dialect == Dialect::Postgres {
                    " AS t"
                } else {
                    ""
                };
                let filter = if filter.is_empty() {
                    " WHERE true".to_string()
                } else {
                    filter
                };
                format!(
                    "INSERT INTO {target}{alias} ({}) {select}{filter} ON CONFLICT ({key}) DO UPDATE SET {}",
                    names.join(", "),
                    sets.join(", ")
                )
            }
            Dialect::Mysql => {
                let mut sets: Vec<String> = names[1..]
                    .iter()
                    .filter(|n| **n != q(DELETED_AT))
                    .map(|n| format!("{n} = VALUES({n})"))
                    .collect();
                if soft_deletes {
                    let d = q(DELETED_AT);
                    sets.push(format!(
                        "{d} = IF(VALUES({d}) IS NULL, NULL, COALESCE({d}, VALUES({d})))"
                    ));
                }
                format!(
                    "INSERT INTO {target} ({}) {select}{filter} ON DUPLICATE KEY UPDATE {}",
                    names.join(", "),
                    sets.join(", ")
                )
            }
        }
    }

    /// Deletes target rows whose staged row is deleted.
    pub(crate) fn hard_delete_sql(
        &self,
        table: &str,
        staging: &str,
        key: &str,
        is_deleted: &str,
    ) -> String {
        let k = self.quote(key);
        format!(
            "DELETE FROM {} WHERE {k} IN (SELECT s.{k} FROM {} s WHERE {})",
            self.qualified(table),
            self.staging_ref(staging),
            self.deleted_predicate("s", is_deleted)
        )
    }

    /// Sets `columns` of existing target rows from a staging table (formula refresh,
    /// backfill of new columns).
    pub(crate) fn update_from_sql(
        &self,
        table: &str,
        staging: &str,
        key: &str,
        columns: &[Column],
    ) -> String {
        let q = |c: &str| self.quote(c);
        let target = self.qualified(table);
        let staging = self.staging_ref(staging);
        let k = q(key);
        match self.dialect {
            Dialect::Postgres => {
                let sets: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{} = {}",
                            q(&c.name),
                            self.cast(format!("s.{}", q(&c.name)), c.sql_type)
                        )
                    })
                    .collect();
                format!(
                    "UPDATE {target} AS t SET {} FROM {staging} s WHERE t.{k} = s.{k}",
                    sets.join(", ")
                )
            }
            Dialect::Mysql => {
                let sets: Vec<String> = columns
                    .iter()
                    .map(|c| format!("t.{} = s.{}", q(&c.name), q(&c.name)))
                    .collect();
                format!(
                    "UPDATE {target} t JOIN {staging} s ON t.{k} = s.{k} SET {}",
                    sets.join(", ")
                )
            }
            Dialect::Sqlite => {
                let sets: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} = s.{}", q(&c.name), q(&c.name)))
                    .collect();
                format!(
                    "UPDATE {target} SET {} FROM {staging} AS s WHERE {target}.{k} = s.{k}",
                    sets.join(", ")
                )
            }
        }
    }

    /// Removes (or marks deleted) target rows whose key is not in the Id staging table.
    pub(crate) fn reconcile_sql(
        &self,
        table: &str,
        ids: &str,
        key: &str,
        soft_deletes: bool,
    ) -> String {
        let target = self.qualified(table);
        let k = self.quote(key);
        let ids = self.staging_ref(ids);
        let (head, reference) = match (self.dialect, soft_deletes) {
            (Dialect::Mysql, false) => (format!("DELETE t FROM {target} t"), "t".to_string()),
            (Dialect::Postgres, false) => (format!("DELETE FROM {target} t"), "t".to_string()),
            (Dialect::Sqlite, false) => (format!("DELETE FROM {target}"), target.clone()),
            (Dialect::Sqlite, true) => (
                format!(
                    "UPDATE {target} SET {} = {}",
                    self.quote(DELETED_AT),
                    self.now_sql()
                ),
                target.clone(),
            ),
            (_, true) => (
                format!(
                    "UPDATE {target} t SET {} = {}",
                    self.quote(DELETED_AT),
                    self.now_sql()
                ),
                "t".to_string(),
            ),
        };
        let soft = if soft_deletes {
            format!("{reference}.{} IS NULL AND ", self.quote(DELETED_AT))
        } else {
            String::new()
        };
        format!(
            "{head} WHERE {soft}NOT EXISTS (SELECT 1 FROM {ids} i WHERE i.{k} = {reference}.{k})"
        )
    }

    /// Appends the target's current rows to its snapshot table.
    pub(crate) fn snapshot_sql(
        &self,
        table: &str,
        snapshot: &str,
        columns: &[String],
        execution_id: &str,
    ) -> String {
        let names: Vec<String> = columns.iter().map(|c| self.quote(c)).collect();
        format!(
            "INSERT INTO {} ({}, {}, {}) SELECT {}, {}, {} FROM {}",
            self.qualified(snapshot),
            names.join(", "),
            self.quote(SNAPSHOT_EXECUTION),
            self.quote(SNAPSHOT_AT),
            names.join(", "),
            self.literal(execution_id),
            self.now_sql(),
            self.qualified(table)
        )
    }

    /// `SELECT COUNT(*)` of a staging table, optionally only deleted (or live) rows.
    pub(crate) fn count_staging_sql(
        &self,
        staging: &str,
        is_deleted: Option<(&str, bool)>,
    ) -> String {
        let filter = match is_deleted {
            Some((column, true)) => format!(" WHERE {}", self.deleted_predicate("s", column)),
            Some((column, false)) => format!(
                " WHERE NOT ({}) OR s.{} IS NULL",
                self.deleted_predicate("s", column),
                self.quote(column)
            ),
            None => String::new(),
        };
        format!(
            "SELECT COUNT(*) FROM {} s{filter}",
            self.staging_ref(staging)
        )
    }

    /// Encodes a canonical value for this dialect's staging text (see [`encode`]).
    pub(crate) fn encode(&self, sql_type: SqlType, value: String) -> Option<String> {
        encode(self.dialect, sql_type, value)
    }
}

/// Encodes a canonical value for a dialect's staging text (see `source` for the canonical
/// forms). Values that do not parse as their type become `None`.
pub(crate) fn encode(dialect: Dialect, sql_type: SqlType, value: String) -> Option<String> {
    match sql_type {
        SqlType::Bool => {
            let truth = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return None,
            };
            Some(
                match (dialect, truth) {
                    (Dialect::Postgres, true) => "true",
                    (Dialect::Postgres, false) => "false",
                    (_, true) => "1",
                    (_, false) => "0",
                }
                .to_string(),
            )
        }
        SqlType::DateTime => {
            let at = ferry_salesforce::datetime::parse_datetime(&value)?;
            Some(match dialect {
                Dialect::Mysql => at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                _ => at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        }
        SqlType::Date => {
            ferry_salesforce::datetime::parse_date(&value).map(|d| d.format("%Y-%m-%d").to_string())
        }
        SqlType::Time => Some(value.trim_end_matches('Z').to_string()),
        SqlType::BigInt | SqlType::Numeric => {
            let trimmed = value.trim();
            trimmed.parse::<f64>().ok().map(|_| trimmed.to_string())
        }
        SqlType::Id | SqlType::Text { .. } => Some(value),
    }
}

/// One connection to the destination.
pub(crate) enum Conn {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
    Sqlite(SqliteConnection),
}

/// A cell as text (text columns decode as `String`; some MySQL catalog columns are
/// binary strings).
macro_rules! cell_text {
    ($row:expr, $index:expr) => {
        match $row.try_get::<Option<String>, _>($index) {
            Ok(value) => value,
            Err(_) => $row
                .try_get::<Option<Vec<u8>>, _>($index)
                .ok()
                .flatten()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        }
    };
}

impl Conn {
    /// Runs one statement; returns the rows affected.
    pub(crate) fn execute<'a>(
        &'a mut self,
        sql: &'a str,
    ) -> SendFuture<'a, Result<u64, BulkError>> {
        Box::pin(async move {
            let result = match self {
                Conn::Postgres(c) => sqlx::Executor::execute(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map(|r| r.rows_affected()),
                Conn::Mysql(c) => sqlx::Executor::execute(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map(|r| r.rows_affected()),
                Conn::Sqlite(c) => sqlx::Executor::execute(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map(|r| r.rows_affected()),
            };
            result.map_err(|source| BulkError::Database {
                context: first_words(sql),
                source,
            })
        })
    }

    /// Runs a query and returns every cell as text.
    pub(crate) fn fetch_strings<'a>(
        &'a mut self,
        sql: &'a str,
    ) -> SendFuture<'a, Result<Vec<Vec<Option<String>>>, BulkError>> {
        Box::pin(async move {
            let map_error = |source| BulkError::Database {
                context: first_words(sql),
                source,
            };
            Ok(match self {
                Conn::Postgres(c) => sqlx::Executor::fetch_all(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map_err(map_error)?
                    .iter()
                    .map(|row| (0..row.len()).map(|i| cell_text!(row, i)).collect())
                    .collect(),
                Conn::Mysql(c) => sqlx::Executor::fetch_all(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map_err(map_error)?
                    .iter()
                    .map(|row| (0..row.len()).map(|i| cell_text!(row, i)).collect())
                    .collect(),
                Conn::Sqlite(c) => sqlx::Executor::fetch_all(&mut *c, sqlx::raw_sql(sql))
                    .await
                    .map_err(map_error)?
                    .iter()
                    .map(|row| (0..row.len()).map(|i| cell_text!(row, i)).collect())
                    .collect(),
            })
        })
    }

    /// A single number from a `SELECT COUNT(*)`.
    pub(crate) async fn fetch_count(&mut self, sql: &str) -> Result<u64, BulkError> {
        let rows = match self {
            Conn::Postgres(_) => self.fetch_strings(&format!("SELECT ({sql})::text")).await?,
            Conn::Mysql(_) => {
                self.fetch_strings(&format!("SELECT CAST(({sql}) AS CHAR)"))
                    .await?
            }
            Conn::Sqlite(_) => {
                self.fetch_strings(&format!("SELECT CAST(({sql}) AS TEXT)"))
                    .await?
            }
        };
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Appends rows to a table (`table`: a quoted, possibly qualified reference).
    pub(crate) async fn load(
        &mut self,
        destination: &Destination,
        table: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<(), BulkError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Conn::Postgres(c) => {
                send(super::postgres::copy_rows(
                    c,
                    destination,
                    table,
                    columns,
                    rows,
                ))
                .await
            }
            Conn::Mysql(c) => {
                send(super::mysql::insert_rows(
                    c,
                    destination,
                    table,
                    columns,
                    rows,
                ))
                .await
            }
            Conn::Sqlite(c) => {
                send(super::sqlite::insert_rows(
                    c,
                    destination,
                    table,
                    columns,
                    rows,
                ))
                .await
            }
        }
    }

    /// Appends PostgreSQL COPY CSV rows (from [`super::csv::page_to_copy`]) to a table
    /// (`table`: a quoted, possibly qualified reference). PostgreSQL only.
    pub(crate) async fn copy_csv(
        &mut self,
        destination: &Destination,
        table: &str,
        columns: &[String],
        csv: &[u8],
    ) -> Result<(), BulkError> {
        if csv.is_empty() {
            return Ok(());
        }
        match self {
            Conn::Postgres(c) => {
                send(super::postgres::copy_csv(
                    c,
                    destination,
                    table,
                    columns,
                    csv,
                ))
                .await
            }
            _ => Err(BulkError::Config(
                "COPY input is only produced for PostgreSQL destinations".into(),
            )),
        }
    }

    pub(crate) async fn close(self) {
        let _ = match self {
            Conn::Postgres(c) => c.close().await,
            Conn::Mysql(c) => c.close().await,
            Conn::Sqlite(c) => c.close().await,
        };
    }
}

/// The first words of a statement, for error context (never values: Ferry's SQL carries
/// only identifiers and its own literals before the first parenthesis).
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// `INSERT INTO <staging> (<columns>) VALUES (?, ...), ...` with `rows` placeholder groups.
pub(crate) fn multi_row_insert(
    destination: &Destination,
    table: &str,
    columns: &[String],
    rows: usize,
    head: &str,
    tail: &str,
) -> String {
    let names: Vec<String> = columns.iter().map(|c| destination.quote(c)).collect();
    let mut sql = format!("{head} {table} ({}) VALUES ", names.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..columns.len() {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Rows per multi-row insert: bounded by the driver's placeholder limit.
pub(crate) fn rows_per_insert(columns: usize, max_placeholders: usize) -> usize {
    (max_placeholders / columns.max(1)).clamp(1, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::schema::ColumnSource;
    use crate::bulk::{DeleteHandling, DestinationMode};

    fn destination(kind: &str, connection: serde_json::Value) -> Destination {
        Destination::from_spec(&DestinationSpec {
            connection_type: kind.into(),
            connection,
            schema: None,
            table_prefix: Some("sf_".into()),
            mode: DestinationMode::Replicate,
            deletes: DeleteHandling::Hard,
        })
        .expect("destination")
    }

    fn column(name: &str, sql_type: SqlType) -> Column {
        Column {
            field: name.into(),
            name: name.into(),
            sql_type,
            formula: false,
            source: ColumnSource::Field,
        }
    }

    #[test]
    fn generates_merge_sql() {
        let sqlite = destination("sqlite", serde_json::json!({"path": "/tmp/x.db"}));
        let columns = vec![
            column("Id", SqlType::Id),
            column("IsDeleted", SqlType::Bool),
            column("Name", SqlType::Text { max_chars: 80 }),
        ];
        assert_eq!(sqlite.table_name("Account"), "sf_Account");
        let sql = sqlite.merge_sql(
            "sf_Account",
            "stage",
            &columns,
            Some("IsDeleted"),
            true,
            false,
        );
        assert!(sql.starts_with("INSERT INTO \"sf_Account\" (\"Id\", \"IsDeleted\", \"Name\", \"_ferry_synced_at\") SELECT s.\"Id\""), "{sql}");
        assert!(sql.contains("WHERE NOT (s.\"IsDeleted\" = '1')"), "{sql}");
        assert!(sql.ends_with("ON CONFLICT (\"Id\") DO UPDATE SET \"IsDeleted\" = excluded.\"IsDeleted\", \"Name\" = excluded.\"Name\", \"_ferry_synced_at\" = excluded.\"_ferry_synced_at\""), "{sql}");
        assert_eq!(
            sqlite.encode(SqlType::Bool, "true".into()).as_deref(),
            Some("1")
        );
        assert_eq!(sqlite.encode(SqlType::BigInt, "x".into()), None);
        assert_eq!(sqlite.literal("it's"), "'it''s'");
        assert_eq!(rows_per_insert(20, 32_766), 1000);
        assert_eq!(rows_per_insert(100, 32_766), 327);
        assert!(
            Destination::from_spec(&DestinationSpec {
                connection_type: "salesforce".into(),
                connection: serde_json::json!({}),
                schema: None,
                table_prefix: None,
                mode: DestinationMode::Replicate,
                deletes: DeleteHandling::Hard,
            })
            .is_err()
        );
    }
}
