//! The `sqlite` connection type: Ferry's own (Polytomic has none), configured with `{path}`,
//! the filesystem path of an existing SQLite database file.
//!
//! - `path` must be a filesystem path: `sqlite:` URLs, `file:` URIs and `:memory:` are
//!   rejected (an in-memory database would be empty on every connection).
//! - `check` never creates a file: a missing file is an error ("database file not found"),
//!   because silently syncing into a new, empty database in the wrong place is worse than
//!   asking. It opens the file read-write and reads the schema table, which also proves the
//!   file is a SQLite database.

use std::path::Path;
use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Executor as _};

use crate::schema::{ConfigSpec, ReadOnlyKeys};
use crate::source::{
    self, Batcher, FieldType, ModelSource, Relation, RelationKind, RowBatch, Selection,
    SourceError, SourceField,
};
use crate::sql;
use crate::{CheckError, FieldError};

/// The type id.
pub const TYPE_ID: &str = "sqlite";

/// Configuration of a `sqlite` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "SQLite connection configuration")]
pub struct SqliteConfig {
    /// Filesystem path of an existing SQLite database file, on the machine Ferry runs on
    /// (relative paths are relative to Ferry's working directory).
    #[schemars(title = "Path", length(min = 1), example = &"/var/lib/app/app.db")]
    pub path: String,
}

fn spec() -> &'static ConfigSpec {
    static SPEC: OnceLock<ConfigSpec> = OnceLock::new();
    SPEC.get_or_init(|| ConfigSpec::new::<SqliteConfig>(TYPE_ID, &[]))
}

impl SqliteConfig {
    /// Parses and validates a configuration.
    pub fn from_value(config: &Value) -> Result<Self, FieldError> {
        let parsed: SqliteConfig = spec().parse(config, ReadOnlyKeys::Drop)?;
        parsed.check_rules()?;
        Ok(parsed)
    }

    /// The configuration as stored.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn check_rules(&self) -> Result<(), FieldError> {
        let path = self.path.as_str();
        let lower = path.to_ascii_lowercase();
        let reason =
            if lower.starts_with("sqlite:") || lower.starts_with("file:") || path.contains("://") {
                Some("a URL is not accepted; give the path of the database file")
            } else if path == ":memory:" {
                Some("an in-memory database would be empty on every connection; give a file path")
            } else if path.contains('\0') {
                Some("the path contains a NUL character")
            } else if path != path.trim() {
                Some("the path starts or ends with whitespace")
            } else {
                None
            };
        match reason {
            Some(reason) => Err(FieldError::new(
                "path",
                format!("expected a filesystem path such as `/var/lib/app/app.db`: {reason}"),
            )),
            None => Ok(()),
        }
    }

    /// Opens the existing file read-write and reads its schema table, within
    /// [`CHECK_TIMEOUT`](crate::CHECK_TIMEOUT).
    pub async fn check(&self) -> Result<(), CheckError> {
        let path = Path::new(&self.path);
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(CheckError::new(format!(
                    "{} is a directory, not a SQLite database file",
                    self.path
                )));
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckError::new(format!(
                    "database file not found: {} (Ferry does not create it; create the \
                     database first or fix the path)",
                    self.path
                )));
            }
            Err(error) => {
                return Err(CheckError::new(format!(
                    "cannot access {}: {error}",
                    self.path
                )));
            }
        }

        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(false);
        let attempt = async {
            let mut connection = SqliteConnection::connect_with(&options).await?;
            connection
                .execute("SELECT count(*) FROM sqlite_master")
                .await?;
            connection.close().await
        };
        match tokio::time::timeout(sql::CHECK_TIMEOUT, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(CheckError::new(self.describe(&error))),
            Err(_) => Err(CheckError::new(format!(
                "opening {} took longer than {} s (is another process holding a lock on it?)",
                self.path,
                sql::CHECK_TIMEOUT.as_secs()
            ))),
        }
    }

    fn describe(&self, error: &sqlx::Error) -> String {
        let path = &self.path;
        match error {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("26") => format!("{path} is not a SQLite database"),
                Some("14") => format!("cannot open {path}: {}", db.message()),
                Some("5") | Some("6") => format!("{path} is locked by another process"),
                Some("23") => format!("cannot open {path}: permission denied"),
                Some("11") => format!("{path} is corrupt: {}", db.message()),
                _ => format!("SQLite error on {path}: {}", db.message()),
            },
            sqlx::Error::Io(io) => format!("cannot open {path}: {io}"),
            other => format!("cannot open {path}: {other}"),
        }
    }
}

/// The `sqlite` connection type.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteConnector;

crate::sql::sql_database_connector!(SqliteConnector, SqliteConfig, "SQLite");

// ---------------------------------------------------------------------------------------
// Model source
// ---------------------------------------------------------------------------------------

/// The field type of a SQLite declared type (SQLite's affinity rules, plus the usual
/// boolean, date/time and JSON spellings).
fn sqlite_field_type(declared: &str) -> FieldType {
    let upper = declared.to_ascii_uppercase();
    let has = |part: &str| upper.contains(part);
    if has("BOOL") {
        FieldType::Boolean
    } else if has("INT") {
        FieldType::Number
    } else if has("DATE") || has("TIME") {
        FieldType::Datetime
    } else if has("JSON") {
        FieldType::Object
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        FieldType::String
    } else if has("BLOB") {
        FieldType::Binary
    } else if has("REAL") || has("FLOA") || has("DOUB") || has("NUMERIC") || has("DECIMAL") {
        FieldType::Number
    } else if upper.trim().is_empty() || upper == "NULL" {
        FieldType::Unknown
    } else {
        FieldType::String
    }
}

fn sqlite_value(
    row: &sqlx::sqlite::SqliteRow,
    index: usize,
    field_type: FieldType,
) -> Result<Value, sqlx::Error> {
    use sqlx::{Row as _, TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    Ok(match storage.as_str() {
        "INTEGER" => {
            let value = row.try_get_unchecked::<i64, _>(index)?;
            if field_type == FieldType::Boolean {
                Value::Bool(value != 0)
            } else {
                Value::from(value)
            }
        }
        "REAL" => source::float(row.try_get_unchecked::<f64, _>(index)?),
        "BLOB" => source::base64(&row.try_get_unchecked::<Vec<u8>, _>(index)?),
        _ => {
            let text = row.try_get_unchecked::<String, _>(index)?;
            match field_type {
                FieldType::Datetime => source::text_timestamp(&text),
                FieldType::Object | FieldType::Array => {
                    serde_json::from_str(&text).unwrap_or(Value::String(text))
                }
                FieldType::Number => source::decimal(&text),
                FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
                    "true" | "t" | "1" => Value::Bool(true),
                    "false" | "f" | "0" => Value::Bool(false),
                    _ => Value::String(text),
                },
                _ => Value::String(text),
            }
        }
    })
}

impl SqliteConfig {
    /// Opens the existing file read-only (never creating it), within the check timeout.
    async fn source_connection(&self) -> Result<SqliteConnection, SourceError> {
        let path = Path::new(&self.path);
        if !path.is_file() {
            return Err(SourceError::Connect(format!(
                "database file not found: {} (Ferry does not create it)",
                self.path
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(true);
        match tokio::time::timeout(sql::CHECK_TIMEOUT, SqliteConnection::connect_with(&options))
            .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(SourceError::Connect(self.describe(&error))),
            Err(_) => Err(SourceError::Connect(format!(
                "opening {} took longer than {} s",
                self.path,
                sql::CHECK_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn relations(connection: &mut SqliteConnection) -> Result<Vec<Relation>, SourceError> {
        use sqlx::Row as _;
        let rows = sqlx::query(
            "SELECT name, type FROM sqlite_master \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(sqlite_query_error)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("type").map_err(sqlite_query_error)?;
                Ok(Relation {
                    name: row.try_get("name").map_err(sqlite_query_error)?,
                    kind: if kind == "view" {
                        RelationKind::View
                    } else {
                        RelationKind::Table
                    },
                })
            })
            .collect()
    }

    /// The SQL a selection reads and, for a table or view, its name.
    async fn selection_sql(
        connection: &mut SqliteConnection,
        selection: &Selection,
    ) -> Result<(String, Option<String>), SourceError> {
        match selection {
            Selection::Query(query) => Ok((source::query_text(query)?.to_string(), None)),
            Selection::Table(_) | Selection::View(_) => {
                let relations = Self::relations(connection).await?;
                let index = source::resolve_relation(&relations, selection, None)?;
                let name = relations[index].name.clone();
                Ok((
                    format!("SELECT * FROM {}", source::quote_identifier(&name, '"')),
                    Some(name),
                ))
            }
        }
    }

    /// Prepares (does not run) the wrapped selection and reads its columns; a table's
    /// columns carry their declared types.
    async fn describe_sql(
        connection: &mut SqliteConnection,
        inner: &str,
        relation: Option<&str>,
    ) -> Result<Vec<SourceField>, SourceError> {
        use sqlx::{Column as _, Row as _, TypeInfo as _};
        let wrapped = source::wrap_query("*", inner, None);
        let described = connection
            .describe(&wrapped)
            .await
            .map_err(sqlite_query_error)?;
        let mut declared = std::collections::HashMap::new();
        if let Some(relation) = relation {
            let rows = sqlx::query("SELECT name, type FROM pragma_table_info($1)")
                .bind(relation)
                .fetch_all(&mut *connection)
                .await
                .map_err(sqlite_query_error)?;
            for row in &rows {
                let name: String = row.try_get("name").map_err(sqlite_query_error)?;
                let declared_type: String = row.try_get("type").map_err(sqlite_query_error)?;
                if !declared_type.trim().is_empty() {
                    declared.insert(name, declared_type);
                }
            }
        }
        let fields: Vec<SourceField> = described
            .columns()
            .iter()
            .map(|column| {
                let remote_type = declared
                    .get(column.name())
                    .cloned()
                    .unwrap_or_else(|| column.type_info().name().to_string());
                SourceField {
                    name: column.name().to_string(),
                    field_type: sqlite_field_type(&remote_type),
                    remote_type,
                }
            })
            .collect();
        source::check_unique_names(&fields)?;
        Ok(fields)
    }

    async fn read_into(
        &self,
        selection: &Selection,
        limit: Option<u64>,
        batcher: &mut Batcher,
    ) -> Result<(), SourceError> {
        let mut connection = self.source_connection().await?;
        let (inner, relation) = Self::selection_sql(&mut connection, selection).await?;
        let fields = Self::describe_sql(&mut connection, &inner, relation.as_deref()).await?;
        let types: Vec<FieldType> = fields.iter().map(|f| f.field_type).collect();
        let sql = source::wrap_query("*", &inner, limit);
        batcher.set_fields(fields);
        {
            let mut rows = sqlx::query(&sql).fetch(&mut connection);
            while let Some(row) = source::next_row(batcher, &mut rows).await {
                let row = row.map_err(sqlite_read_error)?;
                let values = types
                    .iter()
                    .enumerate()
                    .map(|(index, field_type)| sqlite_value(&row, index, *field_type))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sqlite_read_error)?;
                if batcher.push(values).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = connection.close().await;
        Ok(())
    }
}

/// The database's own message for a rejected statement.
fn sqlite_query_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Query(other.to_string()),
    }
}

fn sqlite_read_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Read(other.to_string()),
    }
}

fn parse_source_config(config: &Value) -> Result<SqliteConfig, SourceError> {
    SqliteConfig::from_value(config).map_err(|e| SourceError::Configuration(e.to_string()))
}

impl ModelSource for SqliteConnector {
    fn list_relations<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Vec<Relation>, SourceError>> {
        Box::pin(async move {
            let parsed = parse_source_config(config)?;
            let mut connection = parsed.source_connection().await?;
            let relations = SqliteConfig::relations(&mut connection).await;
            let _ = connection.close().await;
            relations
        })
    }

    fn describe<'a>(
        &'a self,
        config: &'a Value,
        selection: &'a Selection,
    ) -> BoxFuture<'a, Result<Vec<SourceField>, SourceError>> {
        Box::pin(async move {
            let parsed = parse_source_config(config)?;
            let mut connection = parsed.source_connection().await?;
            let described = async {
                let (inner, relation) =
                    SqliteConfig::selection_sql(&mut connection, selection).await?;
                SqliteConfig::describe_sql(&mut connection, &inner, relation.as_deref()).await
            }
            .await;
            let _ = connection.close().await;
            described
        })
    }

    fn read(
        &self,
        config: &Value,
        selection: &Selection,
        limit: Option<u64>,
        batch_size: usize,
    ) -> BoxStream<'static, Result<RowBatch, SourceError>> {
        let config = config.clone();
        let selection = selection.clone();
        source::batched(batch_size, move |mut batcher| async move {
            let parsed = parse_source_config(&config)?;
            parsed.read_into(&selection, limit, &mut batcher).await?;
            let _ = batcher.finish().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::sdk_violations;
    use crate::{ConnectionHealth, ConnectionStatus, Connector};
    use serde_json::json;

    fn error(config: Value) -> FieldError {
        match SqliteConnector.validate(&config) {
            Ok(value) => panic!("expected an error, got {value}"),
            Err(error) => error,
        }
    }

    #[test]
    fn validation() {
        assert_eq!(
            SqliteConnector
                .validate(&json!({"path": "/tmp/x.db"}))
                .expect("valid"),
            json!({"path": "/tmp/x.db"})
        );
        let e = error(json!({}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("path", "is required; for example \"/var/lib/app/app.db\"")
        );
        let e = error(json!({"path": ""}));
        assert_eq!(e.field, "path");
        assert!(e.message.starts_with("must not be empty"), "{e}");
        let e = error(json!({"path": 1}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("path", "expected a string, got an integer")
        );
        for bad in [
            "sqlite:///tmp/x.db",
            "file:x.db?mode=ro",
            ":memory:",
            " /tmp/x.db",
        ] {
            let e = error(json!({ "path": bad }));
            assert_eq!(e.field, "path", "{bad}");
            assert!(
                e.message.starts_with("expected a filesystem path"),
                "{bad}: {e}"
            );
        }
        let e = error(json!({"path": "/tmp/x.db", "mode": "rw"}));
        assert_eq!(e.field, "mode");
        assert_eq!(e.message, "unknown key; accepted keys: path");
    }

    #[test]
    fn schema() {
        let schema = SqliteConnector.config_schema();
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        assert_eq!(schema["required"], json!(["path"]));
        assert!(SqliteConnector.sensitive_keys().is_empty());
        assert!(SqliteConnector.read_only_keys().is_empty());
    }

    async fn check(path: &Path) -> Result<ConnectionHealth, CheckError> {
        let config = json!({"path": path.to_string_lossy()});
        SqliteConnector.check(&config).await
    }

    #[tokio::test]
    async fn check_opens_an_existing_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .expect("create");
        connection
            .execute("CREATE TABLE t (id INTEGER)")
            .await
            .expect("table");
        connection.close().await.expect("close");

        let health = check(&path).await.expect("healthy");
        assert_eq!(health.status, ConnectionStatus::Healthy);
    }

    #[tokio::test]
    async fn check_rejects_missing_files_without_creating_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing.db");
        let error = check(&path).await.expect_err("missing");
        assert!(
            error.message.starts_with("database file not found: "),
            "{error}"
        );
        assert!(!path.exists(), "check created the file");
    }

    #[tokio::test]
    async fn check_rejects_directories_and_non_databases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = check(dir.path()).await.expect_err("directory");
        assert!(error.message.contains("is a directory"), "{error}");

        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "this is not a database, just some text that is long enough to fill a header page "
                .repeat(20),
        )
        .expect("write");
        let error = check(&path).await.expect_err("not a database");
        assert!(
            error.message.contains("is not a SQLite database"),
            "{error}"
        );
    }
}
