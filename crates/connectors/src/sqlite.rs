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
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Executor as _};

use crate::schema::{ConfigSpec, ReadOnlyKeys};
use crate::sql;
use crate::{
    Capabilities, CheckError, ConnectionHealth, ConnectionStatus, ConnectionTypeInfo, Connector,
    FieldError,
};

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

impl Connector for SqliteConnector {
    fn info(&self) -> ConnectionTypeInfo {
        ConnectionTypeInfo {
            id: TYPE_ID,
            name: "SQLite",
            use_oauth: false,
            capabilities: Capabilities {
                source: true,
                destination: true,
                enrichment: false,
                orchestration: false,
            },
            operations: sql::OPERATIONS,
        }
    }

    fn config_schema(&self) -> Value {
        spec().schema().clone()
    }

    fn sensitive_keys(&self) -> Vec<String> {
        spec().sensitive_keys()
    }

    fn read_only_keys(&self) -> Vec<String> {
        spec().read_only_keys()
    }

    fn validate(&self, config: &Value) -> Result<Value, FieldError> {
        SqliteConfig::from_value(config).map(|parsed| parsed.to_value())
    }

    fn check<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<ConnectionHealth, CheckError>> {
        Box::pin(async move {
            let parsed = SqliteConfig::from_value(config)
                .map_err(|error| CheckError::new(format!("invalid configuration: {error}")))?;
            parsed.check().await?;
            Ok(ConnectionHealth {
                status: ConnectionStatus::Healthy,
                message: None,
                learned: Default::default(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::sdk_violations;
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
