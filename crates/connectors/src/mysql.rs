//! The `mysql` connection type (MySQL and MariaDB), with Polytomic's key names (spec
//! `polytomic-api.md` §2.8): `account` is the user, `passwd` the password, `dbname` the
//! database.
//!
//! - `dbname` also accepts `database`, `account` also accepts `username` (the spellings the
//!   `postgresql` type uses); the normalized configuration uses the canonical names.
//! - `dbname` is optional: without it the connection has no default database.
//! - `ssl` (default true): true means TLS is required — the connection fails if the server
//!   does not speak TLS (encrypted, certificate not verified); false means no TLS.
//! - `ssh: true` (and `ssh_host`/`ssh_private_key`) is rejected: SSH tunnelling is not
//!   supported yet. `change_detection: true` is rejected likewise.
//! - `passwd` is optional, for accounts without a password.
//!
//! `check` connects (10 s limit) and runs `SELECT 1`.

use std::sync::OnceLock;

use ferry_core::SecretString;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{Connection as _, Executor as _};

use crate::schema::{ConfigSpec, ReadOnlyKeys};
use crate::source::{
    self, Batcher, FieldType, ModelSource, QUERY_ALIAS, Relation, RelationKind, RowBatch,
    Selection, SourceError, SourceField,
};
use crate::sql;
use crate::{CheckError, FieldError};

/// The type id.
pub const TYPE_ID: &str = "mysql";

/// Alternative key spellings accepted on input: `(alias, canonical key)`.
pub const ALIASES: &[(&str, &str)] = &[("database", "dbname"), ("username", "account")];

const DEFAULT_PORT: u16 = 3306;

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_true() -> bool {
    true
}

/// Configuration of a `mysql` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "MySQL connection configuration")]
pub struct MysqlConfig {
    /// Host name or IP address of the MySQL or MariaDB server.
    #[schemars(title = "Host", length(min = 1), example = &"db.example.com")]
    pub hostname: String,

    /// TCP port the server listens on.
    #[serde(default = "default_port")]
    #[schemars(title = "Port", range(min = 1, max = 65535))]
    pub port: u16,

    /// User to connect as (`username` is accepted as another name for this key).
    #[serde(alias = "username")]
    #[schemars(title = "Account", length(min = 1))]
    pub account: String,

    /// Password of the account; leave out for an account without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "Password",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true)
    )]
    pub passwd: Option<SecretString>,

    /// Default database of the connection (`database` is accepted as another name for this
    /// key).
    #[serde(default, alias = "database", skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Database")]
    pub dbname: Option<String>,

    /// Require TLS. True: the connection fails unless the server speaks TLS. False: connect
    /// without encryption.
    #[serde(default = "default_true")]
    #[schemars(title = "Use TLS")]
    pub ssl: bool,

    /// Connect through an SSH tunnel. Not supported yet: true is rejected.
    #[serde(default)]
    #[schemars(title = "Connect over SSH")]
    pub ssh: bool,

    /// SSH user (only with `ssh`; default `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "SSH user", extend("default" = "root"))]
    pub ssh_user: Option<String>,

    /// SSH bastion host (only with `ssh`, which is not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "SSH host")]
    pub ssh_host: Option<String>,

    /// SSH port (only with `ssh`; default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "SSH port", range(min = 1, max = 65535), extend("default" = 22))]
    pub ssh_port: Option<u16>,

    /// SSH private key, PEM (only with `ssh`, which is not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "SSH private key",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true, "widget" = "textarea")
    )]
    pub ssh_private_key: Option<SecretString>,

    /// Detect changes through the binary log for bulk syncs. Not supported yet: true is
    /// rejected.
    #[serde(default)]
    #[schemars(title = "Change detection")]
    pub change_detection: bool,
}

fn spec() -> &'static ConfigSpec {
    static SPEC: OnceLock<ConfigSpec> = OnceLock::new();
    SPEC.get_or_init(|| ConfigSpec::new::<MysqlConfig>(TYPE_ID, ALIASES))
}

fn secret(value: &Option<SecretString>) -> Option<&str> {
    value.as_ref().map(SecretString::expose)
}

impl MysqlConfig {
    /// Parses and validates a configuration (this type has no read-only keys).
    pub fn from_value(config: &Value) -> Result<Self, FieldError> {
        let mut parsed: MysqlConfig = spec().parse(config, ReadOnlyKeys::Drop)?;
        parsed.hostname = parsed.hostname.trim().to_string();
        parsed.check_rules()?;
        Ok(parsed)
    }

    /// The configuration as stored: defaults applied, secrets included.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn check_rules(&self) -> Result<(), FieldError> {
        sql::check_hostname("hostname", &self.hostname)?;
        sql::reject_ssh(
            self.ssh,
            self.ssh_host.as_deref(),
            secret(&self.ssh_private_key),
        )?;
        sql::reject_change_detection(self.change_detection)?;
        Ok(())
    }

    /// The database to use, if one is set (blank counts as none).
    pub fn database(&self) -> Option<&str> {
        self.dbname.as_deref().filter(|d| !d.trim().is_empty())
    }

    /// The sqlx connection options this configuration describes.
    pub fn connect_options(&self) -> MySqlConnectOptions {
        let mut options = MySqlConnectOptions::new()
            .host(&self.hostname)
            .port(self.port)
            .username(&self.account)
            .ssl_mode(if self.ssl {
                MySqlSslMode::Required
            } else {
                MySqlSslMode::Disabled
            });
        if let Some(password) = &self.passwd {
            options = options.password(password.expose());
        }
        if let Some(database) = self.database() {
            options = options.database(database);
        }
        options
    }

    /// Connects and runs `SELECT 1`, within [`CHECK_TIMEOUT`](crate::CHECK_TIMEOUT).
    pub async fn check(&self) -> Result<(), CheckError> {
        let options = self.connect_options();
        let attempt = async {
            let mut connection = MySqlConnection::connect_with(&options).await?;
            connection.execute("SELECT 1").await?;
            connection.close().await
        };
        let outcome = tokio::time::timeout(sql::CHECK_TIMEOUT, attempt).await;
        let message = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => self.describe(&error),
            Err(_) => sql::timeout_message("MySQL", &self.hostname, self.port),
        };
        let secrets: Vec<&str> = [secret(&self.passwd), secret(&self.ssh_private_key)]
            .into_iter()
            .flatten()
            .collect();
        Err(CheckError::new(sql::scrub(message, &secrets)))
    }

    fn describe(&self, error: &sqlx::Error) -> String {
        let target = format!("{}:{}", self.hostname, self.port);
        match error {
            sqlx::Error::Database(db) => {
                let message = db.message();
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map(MySqlDatabaseError::number);
                match number {
                    Some(1045) => format!(
                        "access denied for account \"{}\" (check account and passwd): {message}",
                        self.account
                    ),
                    Some(1049) => format!(
                        "database \"{}\" does not exist on {target}",
                        self.database().unwrap_or_default()
                    ),
                    Some(1044) => format!(
                        "account \"{}\" may not use database \"{}\": {message}",
                        self.account,
                        self.database().unwrap_or_default()
                    ),
                    Some(1130) => format!("the server at {target} refused this host: {message}"),
                    Some(1040) => format!("the server at {target} has too many connections"),
                    Some(number) => format!("MySQL error {number} from {target}: {message}"),
                    None => format!("MySQL error from {target}: {message}"),
                }
            }
            sqlx::Error::Io(io) => sql::describe_io(io, "MySQL", &self.hostname, self.port),
            sqlx::Error::Tls(tls) => {
                sql::describe_tls(&tls.to_string(), "MySQL", &self.hostname, self.port)
            }
            sqlx::Error::Protocol(detail) => format!(
                "unexpected reply from {target} ({detail}); is a MySQL or MariaDB server \
                 listening there?"
            ),
            other => format!("could not connect to {target}: {other}"),
        }
    }
}

/// The `mysql` connection type.
#[derive(Debug, Clone, Copy, Default)]
pub struct MysqlConnector;

crate::sql::sql_database_connector!(MysqlConnector, MysqlConfig, "MySQL");

// ---------------------------------------------------------------------------------------
// Model source
// ---------------------------------------------------------------------------------------

/// How a MySQL column is read: the select-list expression and the decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MyRead {
    Bool,
    Int,
    UInt,
    Float,
    Bit,
    /// `CAST(.. AS CHAR)`, then a JSON number when exact.
    Decimal,
    /// `CAST(.. AS CHAR)`, then RFC 3339 UTC (the session runs in UTC).
    Timestamp,
    /// `CAST(.. AS CHAR)`, kept as text (`YYYY-MM-DD`; zero dates stay as they are).
    Date,
    /// `CAST(.. AS CHAR)`, kept as text.
    CastText,
    /// `CAST(.. AS CHAR)`, parsed as JSON.
    Json,
    Bytes,
    Text,
}

fn my_read(type_name: &str) -> MyRead {
    let upper = type_name.to_ascii_uppercase();
    if upper.ends_with(" UNSIGNED") {
        return MyRead::UInt;
    }
    match upper.as_str() {
        "BOOLEAN" => MyRead::Bool,
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => MyRead::Int,
        "FLOAT" | "DOUBLE" => MyRead::Float,
        "BIT" => MyRead::Bit,
        "DECIMAL" | "YEAR" => MyRead::Decimal,
        "DATETIME" | "TIMESTAMP" => MyRead::Timestamp,
        "DATE" => MyRead::Date,
        "TIME" => MyRead::CastText,
        "JSON" => MyRead::Json,
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            MyRead::Bytes
        }
        _ => MyRead::Text,
    }
}

fn my_field_type(type_name: &str) -> FieldType {
    match my_read(type_name) {
        MyRead::Bool => FieldType::Boolean,
        MyRead::Int | MyRead::UInt | MyRead::Float | MyRead::Bit | MyRead::Decimal => {
            FieldType::Number
        }
        MyRead::Timestamp | MyRead::Date => FieldType::Datetime,
        MyRead::Json => FieldType::Object,
        MyRead::Bytes => FieldType::Binary,
        MyRead::CastText | MyRead::Text => FieldType::String,
    }
}

fn my_select_expression(field: &SourceField) -> String {
    let column = format!(
        "{QUERY_ALIAS}.{}",
        source::quote_identifier(&field.name, '`')
    );
    match my_read(&field.remote_type) {
        MyRead::Decimal | MyRead::Timestamp | MyRead::Date | MyRead::CastText | MyRead::Json => {
            format!("CAST({column} AS CHAR)")
        }
        _ => column,
    }
}

fn my_value(row: &sqlx::mysql::MySqlRow, index: usize, read: MyRead) -> Result<Value, sqlx::Error> {
    use sqlx::{Row as _, ValueRef as _};
    if row.try_get_raw(index)?.is_null() {
        return Ok(Value::Null);
    }
    let text = |row: &sqlx::mysql::MySqlRow| row.try_get_unchecked::<String, _>(index);
    Ok(match read {
        MyRead::Bool => Value::Bool(row.try_get_unchecked::<i64, _>(index)? != 0),
        MyRead::Int => Value::from(row.try_get_unchecked::<i64, _>(index)?),
        MyRead::UInt | MyRead::Bit => Value::from(row.try_get_unchecked::<u64, _>(index)?),
        MyRead::Float => source::float(row.try_get_unchecked::<f64, _>(index)?),
        MyRead::Decimal => source::decimal(&text(row)?),
        MyRead::Timestamp => source::text_timestamp(&text(row)?),
        MyRead::Date | MyRead::CastText | MyRead::Text => Value::String(text(row)?),
        MyRead::Json => {
            let text = text(row)?;
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        MyRead::Bytes => source::base64(&row.try_get_unchecked::<Vec<u8>, _>(index)?),
    })
}

impl MysqlConfig {
    fn secrets(&self) -> Vec<&str> {
        [secret(&self.passwd), secret(&self.ssh_private_key)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Connects for model reads (UTC session), within the check timeout.
    async fn source_connection(&self) -> Result<MySqlConnection, SourceError> {
        let options = self.connect_options();
        let attempt = async {
            let mut connection = MySqlConnection::connect_with(&options).await?;
            connection.execute("SET time_zone = '+00:00'").await?;
            Ok::<_, sqlx::Error>(connection)
        };
        match tokio::time::timeout(sql::CHECK_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(SourceError::Connect(sql::scrub(
                self.describe(&error),
                &self.secrets(),
            ))),
            Err(_) => Err(SourceError::Connect(sql::timeout_message(
                "MySQL",
                &self.hostname,
                self.port,
            ))),
        }
    }

    /// `(database, table, kind)` of every readable relation outside the system databases.
    async fn relations(
        connection: &mut MySqlConnection,
    ) -> Result<Vec<(String, String, RelationKind)>, SourceError> {
        use sqlx::Row as _;
        let rows = sqlx::query(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS name, TABLE_TYPE AS kind \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(my_query_error)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get_unchecked("kind").map_err(my_query_error)?;
                Ok((
                    row.try_get_unchecked("db").map_err(my_query_error)?,
                    row.try_get_unchecked("name").map_err(my_query_error)?,
                    if kind.contains("VIEW") {
                        RelationKind::View
                    } else {
                        RelationKind::Table
                    },
                ))
            })
            .collect()
    }

    async fn selection_sql(
        &self,
        connection: &mut MySqlConnection,
        selection: &Selection,
    ) -> Result<String, SourceError> {
        match selection {
            Selection::Query(query) => Ok(source::query_text(query)?.to_string()),
            Selection::Table(_) | Selection::View(_) => {
                let relations = Self::relations(connection).await?;
                let listed: Vec<Relation> = relations.iter().map(my_relation).collect();
                let index = source::resolve_relation(&listed, selection, self.database())?;
                let (database, table, _) = &relations[index];
                Ok(format!(
                    "SELECT * FROM {}.{}",
                    source::quote_identifier(database, '`'),
                    source::quote_identifier(table, '`')
                ))
            }
        }
    }

    /// Prepares (does not run) the wrapped selection and reads its columns.
    async fn describe_sql(
        connection: &mut MySqlConnection,
        inner: &str,
    ) -> Result<Vec<SourceField>, SourceError> {
        use sqlx::{Column as _, Statement as _, TypeInfo as _};
        let wrapped = source::wrap_query("*", inner, None);
        let statement = connection.prepare(&wrapped).await.map_err(my_query_error)?;
        let fields: Vec<SourceField> = statement
            .columns()
            .iter()
            .map(|column| {
                let remote_type = column.type_info().name().to_ascii_lowercase();
                SourceField {
                    name: column.name().to_string(),
                    field_type: my_field_type(&remote_type),
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
        connection
            .execute("START TRANSACTION READ ONLY")
            .await
            .map_err(my_query_error)?;
        let inner = self.selection_sql(&mut connection, selection).await?;
        let fields = Self::describe_sql(&mut connection, &inner).await?;
        let reads: Vec<MyRead> = fields.iter().map(|f| my_read(&f.remote_type)).collect();
        let columns: Vec<String> = fields.iter().map(my_select_expression).collect();
        let sql = source::wrap_query(&columns.join(", "), &inner, limit);
        batcher.set_fields(fields);
        {
            let mut rows = sqlx::query(&sql).fetch(&mut connection);
            while let Some(row) = source::next_row(batcher, &mut rows).await {
                let row = row.map_err(my_read_error)?;
                let values = reads
                    .iter()
                    .enumerate()
                    .map(|(index, read)| my_value(&row, index, *read))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(my_read_error)?;
                if batcher.push(values).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = connection.execute("ROLLBACK").await;
        let _ = connection.close().await;
        Ok(())
    }
}

fn my_relation(relation: &(String, String, RelationKind)) -> Relation {
    Relation {
        name: format!("{}.{}", relation.0, relation.1),
        kind: relation.2,
    }
}

/// The database's own message for a rejected statement.
fn my_query_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Query(other.to_string()),
    }
}

fn my_read_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Read(other.to_string()),
    }
}

fn parse_source_config(config: &Value) -> Result<MysqlConfig, SourceError> {
    MysqlConfig::from_value(config).map_err(|e| SourceError::Configuration(e.to_string()))
}

impl ModelSource for MysqlConnector {
    fn list_relations<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Vec<Relation>, SourceError>> {
        Box::pin(async move {
            let parsed = parse_source_config(config)?;
            let mut connection = parsed.source_connection().await?;
            let relations = MysqlConfig::relations(&mut connection).await?;
            let _ = connection.close().await;
            Ok(relations.iter().map(my_relation).collect())
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
            let inner = parsed.selection_sql(&mut connection, selection).await?;
            let fields = MysqlConfig::describe_sql(&mut connection, &inner).await;
            let _ = connection.close().await;
            fields
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
    use crate::Connector;
    use crate::schema::sdk_violations;
    use serde_json::json;

    fn base() -> Value {
        json!({"hostname": "db.example.com", "account": "ferry", "passwd": "pw", "dbname": "app"})
    }

    fn with(changes: Value) -> Value {
        let mut config = base();
        if let (Some(config), Some(changes)) = (config.as_object_mut(), changes.as_object()) {
            for (key, value) in changes {
                if value.is_null() {
                    config.remove(key);
                } else {
                    config.insert(key.clone(), value.clone());
                }
            }
        }
        config
    }

    fn error(config: Value) -> FieldError {
        match MysqlConnector.validate(&config) {
            Ok(value) => panic!("expected an error, got {value}"),
            Err(error) => error,
        }
    }

    #[test]
    fn normalizes_with_defaults() {
        let normalized = MysqlConnector.validate(&base()).expect("valid");
        assert_eq!(
            normalized,
            json!({
                "hostname": "db.example.com", "port": 3306, "account": "ferry", "passwd": "pw",
                "dbname": "app", "ssl": true, "ssh": false, "change_detection": false
            })
        );
    }

    #[test]
    fn accepts_aliases_and_optional_database() {
        let normalized = MysqlConnector
            .validate(&json!({"hostname": "h", "username": "u", "database": "d"}))
            .expect("valid");
        assert_eq!(normalized["account"], "u");
        assert_eq!(normalized["dbname"], "d");
        MysqlConnector
            .validate(&json!({"hostname": "h", "account": "u"}))
            .expect("dbname is optional");
        let e = error(with(json!({"username": "other"})));
        assert_eq!(e.field, "username");
    }

    #[test]
    fn required_keys_types_and_unknown_keys() {
        for key in ["hostname", "account"] {
            let e = error(with(json!({ key: null })));
            assert_eq!(e.field, key);
            assert!(e.message.starts_with("is required"), "{e}");
        }
        let e = error(with(json!({"port": true})));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("port", "expected an integer, got a boolean")
        );
        let e = error(with(json!({"password": "pw"})));
        assert_eq!(e.field, "password");
        assert!(
            e.message
                .contains("accepted keys: hostname, port, account, passwd, dbname"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_options_are_rejected() {
        let e = error(with(json!({"ssh": true})));
        assert_eq!(e.field, "ssh");
        let e = error(with(
            json!({"ssh_private_key": "-----BEGIN PRIVATE KEY-----"}),
        ));
        assert_eq!(e.field, "ssh_private_key");
        let e = error(with(json!({"change_detection": true})));
        assert_eq!(e.field, "change_detection");
    }

    #[test]
    fn ssl_modes() {
        let mode = |changes: Value| {
            MysqlConfig::from_value(&with(changes))
                .expect("valid")
                .connect_options()
                .get_ssl_mode()
        };
        assert!(matches!(mode(json!({})), MySqlSslMode::Required));
        assert!(matches!(
            mode(json!({"ssl": false})),
            MySqlSslMode::Disabled
        ));
    }

    #[test]
    fn schema() {
        let schema = MysqlConnector.config_schema();
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        assert_eq!(schema["required"], json!(["hostname", "account"]));
        assert_eq!(schema["properties"]["port"]["default"], 3306);
        assert_eq!(
            MysqlConnector.sensitive_keys(),
            vec!["passwd", "ssh_private_key"]
        );
        assert!(MysqlConnector.read_only_keys().is_empty());
    }

    #[test]
    fn info() {
        let info = MysqlConnector.info();
        assert_eq!((info.id, info.name), ("mysql", "MySQL"));
        assert!(info.capabilities.source && info.capabilities.destination);
    }
}
