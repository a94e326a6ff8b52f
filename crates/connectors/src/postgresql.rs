//! The `postgresql` connection type, with Polytomic's key names (spec `polytomic-api.md` §2.8).
//!
//! - `database` also accepts `dbname`, `username` also accepts `account` (the spellings the
//!   `mysql` type uses); the normalized configuration uses the canonical names.
//! - `ssl` (default true): true means TLS is required — the connection fails if the server
//!   does not speak TLS (sslmode `require`: encrypted, certificate not verified). With a
//!   `ca_cert`, the server certificate is verified against it, including the host name
//!   (sslmode `verify-full`). false means no TLS (sslmode `disable`).
//! - `client_certs: true` authenticates with the PEM `client_certificate` and `client_key`;
//!   it needs `ssl: true`. A certificate or key given while `client_certs` is false, or a
//!   `ca_cert` while `ssl` is false, is rejected rather than silently unused.
//! - `ssh: true` (and `ssh_host`/`ssh_private_key`) is rejected: SSH tunnelling is not
//!   supported yet. `change_detection: true` (and `publication`) is rejected likewise.
//! - `password` is optional, for servers that trust the client.
//!
//! `check` connects (10 s limit) and runs `SELECT 1`.

use std::sync::OnceLock;

use ferry_core::SecretString;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection as _, Executor as _};

use crate::schema::{ConfigSpec, ReadOnlyKeys};
use crate::source::{
    self, Batcher, FieldType, ModelSource, QUERY_ALIAS, RawWindow, Relation, RelationKind,
    RowBatch, Selection, SkipQuestion, SourceError, SourceField, WindowSkip,
};
use crate::sql::{self, Pem};
use crate::{CheckError, FieldError};

/// The type id.
pub const TYPE_ID: &str = "postgresql";

/// Alternative key spellings accepted on input: `(alias, canonical key)`.
pub const ALIASES: &[(&str, &str)] = &[("dbname", "database"), ("account", "username")];

const DEFAULT_PORT: u16 = 5432;

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_true() -> bool {
    true
}

/// Configuration of a `postgresql` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "PostgreSQL connection configuration")]
pub struct PostgresqlConfig {
    /// Host name or IP address of the PostgreSQL server.
    #[schemars(title = "Host", length(min = 1), example = &"db.example.com")]
    pub hostname: String,

    /// TCP port the server listens on.
    #[serde(default = "default_port")]
    #[schemars(title = "Port", range(min = 1, max = 65535))]
    pub port: u16,

    /// Database to connect to (`dbname` is accepted as another name for this key).
    #[serde(alias = "dbname")]
    #[schemars(title = "Database", length(min = 1))]
    pub database: String,

    /// User to connect as (`account` is accepted as another name for this key).
    #[serde(alias = "account")]
    #[schemars(title = "Username", length(min = 1))]
    pub username: String,

    /// Password of the user; leave out when the server does not ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "Password",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true)
    )]
    pub password: Option<SecretString>,

    /// Require TLS. True: the connection fails unless the server speaks TLS (the certificate
    /// is verified against `ca_cert` when one is given). False: connect without encryption.
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

    /// Authenticate with a TLS client certificate (`client_certificate` and `client_key`);
    /// needs `ssl`.
    #[serde(default)]
    #[schemars(title = "Use client certificates")]
    pub client_certs: bool,

    /// Client certificate, PEM (with `client_certs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "Client certificate",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true, "widget" = "textarea")
    )]
    pub client_certificate: Option<SecretString>,

    /// Private key of the client certificate, PEM (with `client_certs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "Client key",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true, "widget" = "textarea")
    )]
    pub client_key: Option<SecretString>,

    /// CA certificate(s), PEM, to verify the server's certificate and host name against
    /// (with `ssl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "CA certificate",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true, "widget" = "textarea")
    )]
    pub ca_cert: Option<SecretString>,

    /// Detect changes through logical replication for bulk syncs. Not supported yet: true is
    /// rejected.
    #[serde(default)]
    #[schemars(title = "Change detection")]
    pub change_detection: bool,

    /// Publication to read changes from (only with `change_detection`, which is not supported
    /// yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Publication")]
    pub publication: Option<String>,
}

fn spec() -> &'static ConfigSpec {
    static SPEC: OnceLock<ConfigSpec> = OnceLock::new();
    SPEC.get_or_init(|| ConfigSpec::new::<PostgresqlConfig>(TYPE_ID, ALIASES))
}

fn secret(value: &Option<SecretString>) -> Option<&str> {
    value.as_ref().map(SecretString::expose)
}

impl PostgresqlConfig {
    /// Parses and validates a configuration (this type has no read-only keys).
    pub fn from_value(config: &Value) -> Result<Self, FieldError> {
        let mut parsed: PostgresqlConfig = spec().parse(config, ReadOnlyKeys::Drop)?;
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
        if sql::is_set(self.publication.as_deref()) {
            return Err(FieldError::new(
                "publication",
                "is only used with change_detection, which is not supported yet; leave it out",
            ));
        }

        let certificate = secret(&self.client_certificate).filter(|v| !v.trim().is_empty());
        let key = secret(&self.client_key).filter(|v| !v.trim().is_empty());
        if self.client_certs {
            if !self.ssl {
                return Err(FieldError::new(
                    "client_certs",
                    "client certificates are sent during the TLS handshake; set ssl to true",
                ));
            }
            let Some(certificate) = certificate else {
                return Err(FieldError::new(
                    "client_certificate",
                    "is required when client_certs is true (PEM certificate)",
                ));
            };
            let Some(key) = key else {
                return Err(FieldError::new(
                    "client_key",
                    "is required when client_certs is true (PEM private key)",
                ));
            };
            sql::check_pem("client_certificate", certificate, Pem::Certificate)?;
            sql::check_pem("client_key", key, Pem::PrivateKey)?;
        } else {
            for (field, value) in [("client_certificate", certificate), ("client_key", key)] {
                if value.is_some() {
                    return Err(FieldError::new(
                        field,
                        "is only used when client_certs is true; set client_certs to true or \
                         leave it out",
                    ));
                }
            }
        }

        if let Some(ca) = secret(&self.ca_cert).filter(|v| !v.trim().is_empty()) {
            if !self.ssl {
                return Err(FieldError::new(
                    "ca_cert",
                    "is only used with TLS; set ssl to true or leave it out",
                ));
            }
            sql::check_pem("ca_cert", ca, Pem::Certificate)?;
        }
        Ok(())
    }

    /// The sqlx connection options this configuration describes.
    ///
    /// Everything comes from the configuration, never from Ferry's own environment: sqlx
    /// seeds its options from `PG*` variables, so the password is always set (empty when the
    /// configuration has none) lest `PGPASSWORD` be sent to a host the user chose, and no
    /// `~/.pgpass` is read.
    pub fn connect_options(&self) -> PgConnectOptions {
        let password = secret(&self.password).unwrap_or_default();
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.hostname)
            .port(self.port)
            .username(&self.username)
            .password(password)
            .database(&self.database)
            .application_name("ferry");
        let ca = secret(&self.ca_cert).filter(|v| !v.trim().is_empty());
        options = options.ssl_mode(match (self.ssl, ca) {
            (false, _) => PgSslMode::Disable,
            (true, None) => PgSslMode::Require,
            (true, Some(_)) => PgSslMode::VerifyFull,
        });
        if let (true, Some(ca)) = (self.ssl, ca) {
            options = options.ssl_root_cert_from_pem(ca.as_bytes().to_vec());
        }
        if self.client_certs {
            if let Some(certificate) = secret(&self.client_certificate) {
                options = options.ssl_client_cert_from_pem(certificate.as_bytes());
            }
            if let Some(key) = secret(&self.client_key) {
                options = options.ssl_client_key_from_pem(key.as_bytes());
            }
        }
        options
    }

    /// Connects and runs `SELECT 1`, within [`CHECK_TIMEOUT`](crate::CHECK_TIMEOUT).
    pub async fn check(&self) -> Result<(), CheckError> {
        let options = self.connect_options();
        let attempt = async {
            let mut connection = PgConnection::connect_with(&options).await?;
            connection.execute("SELECT 1").await?;
            connection.close().await
        };
        let outcome = tokio::time::timeout(sql::CHECK_TIMEOUT, attempt).await;
        let message = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => self.describe(&error),
            Err(_) => sql::timeout_message("PostgreSQL", &self.hostname, self.port),
        };
        let secrets: Vec<&str> = [
            secret(&self.password),
            secret(&self.client_key),
            secret(&self.ssh_private_key),
        ]
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
                match db.code().as_deref() {
                    Some("28P01") => format!(
                        "password authentication failed for user \"{}\" (check username and \
                         password)",
                        self.username
                    ),
                    Some("28000") => {
                        format!("the server at {target} rejected the login: {message}")
                    }
                    Some("3D000") => {
                        format!("database \"{}\" does not exist on {target}", self.database)
                    }
                    Some("42501") => format!("permission denied: {message}"),
                    Some("53300") => {
                        format!("the server at {target} has too many connections: {message}")
                    }
                    Some(code) if code.starts_with("57P") => {
                        format!("the server at {target} is not accepting connections: {message}")
                    }
                    Some(code) => format!("PostgreSQL error {code} from {target}: {message}"),
                    None => format!("PostgreSQL error from {target}: {message}"),
                }
            }
            sqlx::Error::Io(io) => sql::describe_io(io, "PostgreSQL", &self.hostname, self.port),
            sqlx::Error::Tls(tls) => {
                sql::describe_tls(&tls.to_string(), "PostgreSQL", &self.hostname, self.port)
            }
            sqlx::Error::Protocol(detail) => format!(
                "unexpected reply from {target} ({detail}); is a PostgreSQL server listening \
                 there?"
            ),
            other => format!("could not connect to {target}: {other}"),
        }
    }
}

/// The `postgresql` connection type.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresqlConnector;

crate::sql::sql_database_connector!(PostgresqlConnector, PostgresqlConfig, "PostgreSQL");

// ---------------------------------------------------------------------------------------
// Model source
// ---------------------------------------------------------------------------------------

mod copy;

/// How a PostgreSQL column is read: the select-list expression and the Rust decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgRead {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `::text`, then a JSON number when exact.
    Decimal,
    /// `::text`, then RFC 3339 UTC.
    Timestamp,
    /// `::text` (a date stays `YYYY-MM-DD`).
    Text,
    /// `::text`, parsed as JSON.
    Json,
    /// `to_json(..)::text`, parsed as JSON.
    Array,
    Bytes,
}

fn pg_read(type_name: &str) -> PgRead {
    let upper = type_name.to_ascii_uppercase();
    if upper.ends_with("[]") {
        return PgRead::Array;
    }
    match upper.as_str() {
        "BOOL" => PgRead::Bool,
        "INT2" => PgRead::Int2,
        "INT4" => PgRead::Int4,
        "INT8" | "OID" => PgRead::Int8,
        "FLOAT4" => PgRead::Float4,
        "FLOAT8" => PgRead::Float8,
        "NUMERIC" => PgRead::Decimal,
        "TIMESTAMP" | "TIMESTAMPTZ" => PgRead::Timestamp,
        "JSON" | "JSONB" => PgRead::Json,
        "BYTEA" => PgRead::Bytes,
        _ => PgRead::Text,
    }
}

fn pg_field_type(type_name: &str) -> FieldType {
    match pg_read(type_name) {
        PgRead::Bool => FieldType::Boolean,
        PgRead::Int2
        | PgRead::Int4
        | PgRead::Int8
        | PgRead::Float4
        | PgRead::Float8
        | PgRead::Decimal => FieldType::Number,
        PgRead::Timestamp => FieldType::Datetime,
        PgRead::Text if type_name.eq_ignore_ascii_case("DATE") => FieldType::Datetime,
        PgRead::Text => FieldType::String,
        PgRead::Json => FieldType::Object,
        PgRead::Array => FieldType::Array,
        PgRead::Bytes => FieldType::Binary,
    }
}

/// The select-list expression of a column, giving the text [`copy`] reads it from.
fn pg_select_expression(field: &SourceField) -> String {
    let column = format!(
        "{QUERY_ALIAS}.{}",
        source::quote_identifier(&field.name, '"')
    );
    match pg_read(&field.remote_type) {
        PgRead::Bool | PgRead::Int2 | PgRead::Int4 | PgRead::Float4 | PgRead::Float8 => column,
        // Plain hex, whatever the server's `bytea_output`.
        PgRead::Bytes => format!("encode({column}, 'hex')"),
        PgRead::Int8 => format!("{column}::int8"),
        PgRead::Array => format!("to_json({column})::text"),
        PgRead::Decimal | PgRead::Timestamp | PgRead::Text | PgRead::Json => {
            format!("{column}::text")
        }
    }
}

/// A relation as PostgreSQL names it.
struct PgRelation {
    schema: String,
    name: String,
    kind: RelationKind,
}

impl PostgresqlConfig {
    fn secrets(&self) -> Vec<&str> {
        [
            secret(&self.password),
            secret(&self.client_key),
            secret(&self.ssh_private_key),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Connects for model reads: UTC session, ISO dates, within the check timeout. Floats
    /// come as text at full precision: sqlx's connection options ask for
    /// `extra_float_digits` 2 when the session starts.
    async fn source_connection(&self) -> Result<PgConnection, SourceError> {
        let options = self.connect_options();
        let attempt = async {
            let mut connection = PgConnection::connect_with(&options).await?;
            connection
                .execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'")
                .await?;
            Ok::<_, sqlx::Error>(connection)
        };
        match tokio::time::timeout(sql::CHECK_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(SourceError::Connect(sql::scrub(
                self.describe(&error),
                &self.secrets(),
            ))),
            Err(_) => Err(SourceError::Connect(sql::timeout_message(
                "PostgreSQL",
                &self.hostname,
                self.port,
            ))),
        }
    }

    async fn relations(connection: &mut PgConnection) -> Result<Vec<PgRelation>, SourceError> {
        use sqlx::Row as _;
        let rows = sqlx::query(
            "SELECT n.nspname::text AS schema_name, c.relname::text AS relation_name, \
                    c.relkind::text AS kind \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND has_schema_privilege(n.oid, 'USAGE') \
               AND has_table_privilege(c.oid, 'SELECT') \
             ORDER BY 1, 2",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind").map_err(query_error)?;
                Ok(PgRelation {
                    schema: row.try_get("schema_name").map_err(query_error)?,
                    name: row.try_get("relation_name").map_err(query_error)?,
                    kind: if matches!(kind.as_str(), "v" | "m") {
                        RelationKind::View
                    } else {
                        RelationKind::Table
                    },
                })
            })
            .collect()
    }

    /// The SQL a selection reads: the quoted relation or the caller's query.
    async fn selection_sql(
        connection: &mut PgConnection,
        selection: &Selection,
    ) -> Result<String, SourceError> {
        match selection {
            Selection::Query(query) => Ok(source::query_text(query)?.to_string()),
            Selection::Table(_) | Selection::View(_) => {
                let relations = Self::relations(connection).await?;
                let listed: Vec<Relation> = relations.iter().map(pg_relation).collect();
                let index = source::resolve_relation(&listed, selection, Some("public"))?;
                let relation = &relations[index];
                Ok(format!(
                    "SELECT * FROM {}.{}",
                    source::quote_identifier(&relation.schema, '"'),
                    source::quote_identifier(&relation.name, '"')
                ))
            }
        }
    }

    /// Prepares (does not run) the wrapped selection and reads its columns.
    async fn describe_sql(
        connection: &mut PgConnection,
        inner: &str,
    ) -> Result<Vec<SourceField>, SourceError> {
        use sqlx::{Column as _, Statement as _, TypeInfo as _};
        let wrapped = source::wrap_query("*", inner, None);
        let statement = connection.prepare(&wrapped).await.map_err(query_error)?;
        let fields: Vec<SourceField> = statement
            .columns()
            .iter()
            .map(|column| {
                let remote_type = column.type_info().name().to_ascii_lowercase();
                SourceField {
                    name: column.name().to_string(),
                    field_type: pg_field_type(&remote_type),
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
        question: Option<SkipQuestion>,
    ) -> Result<(), SourceError> {
        let mut connection = self.source_connection().await?;
        connection
            .execute("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(query_error)?;
        let inner = Self::selection_sql(&mut connection, selection).await?;
        let fields = Self::describe_sql(&mut connection, &inner).await?;
        let reads: Vec<PgRead> = fields.iter().map(|f| pg_read(&f.remote_type)).collect();
        let columns: Vec<String> = fields.iter().map(pg_select_expression).collect();
        let sql = source::wrap_query(&columns.join(", "), &inner, limit);
        let mut windows = CopyWindowReader {
            header: raw_header(&fields, &reads),
            parser: copy::CopyRows::new(reads),
            question,
            skip: None,
            number: 0,
        };
        batcher.set_fields(fields);
        let mut data = connection
            .copy_out_raw(&format!("COPY ({sql}) TO STDOUT"))
            .await
            .map_err(query_error)?;
        let mut split = copy::CopyWindows::new(batcher.batch_size());
        let mut full = Vec::new();
        while let Some(chunk) = source::next_row(batcher, &mut data).await {
            let chunk = chunk.map_err(read_error)?;
            split.feed(&chunk, &mut full);
            for (window, lines) in full.drain(..) {
                if windows.send(batcher, &window, lines).await?.is_err() {
                    // Nobody reads on: the connection is dropped mid-COPY, unread.
                    return Ok(());
                }
            }
        }
        if batcher.is_closed() {
            return Ok(());
        }
        if let Some((window, lines)) = split.finish()
            && windows.send(batcher, &window, lines).await?.is_err()
        {
            return Ok(());
        }
        drop(data);
        let _ = connection.execute("ROLLBACK").await;
        let _ = connection.close().await;
        Ok(())
    }
}

/// What a window's raw fingerprint covers besides its data: the version of the reading
/// rules, and each field with how it is read.
fn raw_header(fields: &[SourceField], reads: &[PgRead]) -> Vec<u8> {
    let mut header = b"ferry postgresql copy text 1\0".to_vec();
    for (field, read) in fields.iter().zip(reads) {
        for part in [
            field.name.as_str(),
            field.remote_type.as_str(),
            field.field_type.as_str(),
            &format!("{read:?}"),
        ] {
            header.extend_from_slice(&(part.len() as u64).to_le_bytes());
            header.extend_from_slice(part.as_bytes());
        }
    }
    header
}

/// Turns windows of COPY lines into batches: fingerprinted, then built into rows unless
/// the consumer skips them.
struct CopyWindowReader {
    header: Vec<u8>,
    parser: copy::CopyRows,
    /// The consumer's answer, until it is known.
    question: Option<SkipQuestion>,
    skip: Option<WindowSkip>,
    /// The number of the next window.
    number: usize,
}

impl CopyWindowReader {
    /// Sends one window of `lines` lines; the outer error is a parse failure, the inner
    /// one the consumer going away.
    async fn send(
        &mut self,
        batcher: &mut Batcher,
        window: &[u8],
        lines: usize,
    ) -> Result<Result<(), source::Closed>, SourceError> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&self.header);
        hasher.update(window);
        let raw = RawWindow {
            fingerprint: hasher.digest128(),
            rows: lines,
            skipped: false,
        };
        if let Some(question) = self.question.take() {
            self.skip = question.answer().await;
        }
        let number = self.number;
        self.number += 1;
        // A window ending inside a line is parsed, so the error is reported.
        let whole = window.last() == Some(&b'\n');
        if whole && self.skip.as_ref().is_some_and(|skip| skip(number, &raw)) {
            let skipped = RawWindow {
                skipped: true,
                ..raw
            };
            return Ok(batcher.send_window(Vec::new(), skipped).await);
        }
        // Rows are built only once the consumer has room for them.
        if let Err(closed) = batcher.reserve().await {
            return Ok(Err(closed));
        }
        let mut rows = Vec::with_capacity(lines);
        self.parser
            .read(window, &mut rows)
            .map_err(SourceError::Read)?;
        Ok(batcher.send_window(rows, raw).await)
    }
}

fn pg_relation(relation: &PgRelation) -> Relation {
    Relation {
        name: format!("{}.{}", relation.schema, relation.name),
        kind: relation.kind,
    }
}

/// The database's own message for a rejected statement.
fn query_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Query(other.to_string()),
    }
}

fn read_error(error: sqlx::Error) -> SourceError {
    match error {
        sqlx::Error::Database(db) => SourceError::Query(db.message().to_string()),
        other => SourceError::Read(other.to_string()),
    }
}

/// A read of `selection` on its own task ([`source::batched`]).
fn read_stream(
    config: &Value,
    selection: &Selection,
    limit: Option<u64>,
    batch_size: usize,
    question: Option<SkipQuestion>,
) -> BoxStream<'static, Result<RowBatch, SourceError>> {
    let config = config.clone();
    let selection = selection.clone();
    source::batched(batch_size, move |mut batcher| async move {
        let parsed = parse_source_config(&config)?;
        parsed
            .read_into(&selection, limit, &mut batcher, question)
            .await?;
        let _ = batcher.finish().await;
        Ok(())
    })
}

fn parse_source_config(config: &Value) -> Result<PostgresqlConfig, SourceError> {
    PostgresqlConfig::from_value(config).map_err(|e| SourceError::Configuration(e.to_string()))
}

impl ModelSource for PostgresqlConnector {
    fn list_relations<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<Vec<Relation>, SourceError>> {
        Box::pin(async move {
            let parsed = parse_source_config(config)?;
            let mut connection = parsed.source_connection().await?;
            let relations = PostgresqlConfig::relations(&mut connection).await?;
            let _ = connection.close().await;
            Ok(relations.iter().map(pg_relation).collect())
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
            let inner = PostgresqlConfig::selection_sql(&mut connection, selection).await?;
            let fields = PostgresqlConfig::describe_sql(&mut connection, &inner).await;
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
        read_stream(config, selection, limit, batch_size, None)
    }

    fn read_skipping(
        &self,
        config: &Value,
        selection: &Selection,
        batch_size: usize,
        question: SkipQuestion,
    ) -> BoxStream<'static, Result<RowBatch, SourceError>> {
        read_stream(config, selection, None, batch_size, Some(question))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connector;
    use crate::schema::sdk_violations;
    use serde_json::json;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn base() -> Value {
        json!({"hostname": "db.example.com", "database": "app", "username": "ferry", "password": "pw"})
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
        match PostgresqlConnector.validate(&config) {
            Ok(value) => panic!("expected an error, got {value}"),
            Err(error) => error,
        }
    }

    #[test]
    fn normalizes_with_defaults() {
        let normalized = PostgresqlConnector.validate(&base()).expect("valid");
        assert_eq!(
            normalized,
            json!({
                "hostname": "db.example.com", "port": 5432, "database": "app",
                "username": "ferry", "password": "pw", "ssl": true, "ssh": false,
                "client_certs": false, "change_detection": false
            })
        );
    }

    #[test]
    fn accepts_aliases_and_no_password() {
        let normalized = PostgresqlConnector
            .validate(&json!({"hostname": "h", "dbname": "app", "account": "u", "ssl": false}))
            .expect("valid");
        assert_eq!(normalized["database"], "app");
        assert_eq!(normalized["username"], "u");
        assert!(normalized.get("dbname").is_none());
        assert!(normalized.get("password").is_none());
        let e = error(with(json!({"dbname": "other"})));
        assert_eq!(e.field, "dbname");
    }

    #[test]
    fn required_keys() {
        let e = error(with(json!({"hostname": null})));
        assert_eq!(e.message, "is required; for example \"db.example.com\"");
        for key in ["hostname", "database", "username"] {
            let e = error(with(json!({ key: null })));
            assert_eq!(e.field, key);
            assert!(e.message.starts_with("is required"), "{e}");
            let e = error(with(json!({ key: "" })));
            assert_eq!(e.field, key);
            assert!(e.message.starts_with("must not be empty"), "{e}");
        }
    }

    #[test]
    fn wrong_types_and_ranges() {
        let e = error(with(json!({"port": "5432"})));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("port", "expected an integer, got a string")
        );
        let e = error(with(json!({"port": 0})));
        assert_eq!(e.field, "port");
        assert!(e.message.contains("between 1 and 65535"), "{e}");
        let e = error(with(json!({"ssl": "true"})));
        assert_eq!(e.field, "ssl");
        let e = error(with(json!({"password": 1234})));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("password", "expected a string, got an integer")
        );
        let e = error(with(json!({"host": "x"})));
        assert_eq!(e.field, "host");
        assert!(
            e.message
                .contains("accepted keys: hostname, port, database"),
            "{e}"
        );
    }

    #[test]
    fn bad_hostname() {
        let e = error(with(
            json!({"hostname": "postgres://db.example.com:5432/app"}),
        ));
        assert_eq!(e.field, "hostname");
        assert!(e.message.contains("URL"), "{e}");
    }

    #[test]
    fn ssh_is_rejected_not_ignored() {
        let e = error(with(
            json!({"ssh": true, "ssh_host": "bastion", "ssh_private_key": KEY}),
        ));
        assert_eq!(e.field, "ssh");
        assert!(
            e.message.contains("SSH tunnelling is not supported yet"),
            "{e}"
        );
        let e = error(with(json!({"ssh_host": "bastion"})));
        assert_eq!(e.field, "ssh_host");
        // Defaults a form sends along are fine while ssh is off.
        PostgresqlConnector
            .validate(&with(
                json!({"ssh": false, "ssh_user": "root", "ssh_port": 22, "ssh_host": ""}),
            ))
            .expect("valid");
    }

    #[test]
    fn change_detection_is_rejected_not_ignored() {
        let e = error(with(json!({"change_detection": true})));
        assert_eq!(e.field, "change_detection");
        let e = error(with(json!({"publication": "ferry_pub"})));
        assert_eq!(e.field, "publication");
    }

    #[test]
    fn client_certificates() {
        let ok = with(
            json!({"client_certs": true, "client_certificate": CERT, "client_key": KEY, "ca_cert": CERT}),
        );
        let parsed = PostgresqlConfig::from_value(&ok).expect("valid");
        let options = parsed.connect_options();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));

        let e = error(with(json!({"client_certs": true, "client_key": KEY})));
        assert_eq!(e.field, "client_certificate");
        let e = error(with(
            json!({"client_certs": true, "client_certificate": CERT}),
        ));
        assert_eq!(e.field, "client_key");
        let e = error(with(
            json!({"client_certs": true, "client_certificate": "nope", "client_key": KEY}),
        ));
        assert_eq!(e.field, "client_certificate");
        assert!(e.message.contains("PEM"), "{e}");
        let e = error(with(
            json!({"client_certs": true, "ssl": false, "client_certificate": CERT, "client_key": KEY}),
        ));
        assert_eq!(e.field, "client_certs");
        let e = error(with(json!({"client_certificate": CERT})));
        assert_eq!(e.field, "client_certificate");
        assert!(e.message.contains("client_certs"), "{e}");
        let e = error(with(json!({"ssl": false, "ca_cert": CERT})));
        assert_eq!(e.field, "ca_cert");
    }

    #[test]
    fn ssl_modes() {
        let mode = |changes: Value| {
            PostgresqlConfig::from_value(&with(changes))
                .expect("valid")
                .connect_options()
                .get_ssl_mode()
        };
        assert!(matches!(mode(json!({})), PgSslMode::Require));
        assert!(matches!(mode(json!({"ssl": false})), PgSslMode::Disable));
    }

    #[test]
    fn schema() {
        let schema = PostgresqlConnector.config_schema();
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        assert_eq!(
            schema["required"],
            json!(["hostname", "database", "username"])
        );
        let props = &schema["properties"];
        assert_eq!(props["port"]["default"], 5432);
        assert_eq!(props["ssl"]["default"], true);
        assert_eq!(props["ssh_user"]["default"], "root");
        assert_eq!(props["ssh_port"]["default"], 22);
        assert_eq!(props["ssh_port"]["type"], "integer");
        for (key, property) in props.as_object().expect("properties") {
            assert!(
                property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{key}"
            );
        }
        assert_eq!(
            PostgresqlConnector.sensitive_keys(),
            vec![
                "password",
                "ssh_private_key",
                "client_certificate",
                "client_key",
                "ca_cert"
            ]
        );
        assert!(PostgresqlConnector.read_only_keys().is_empty());
    }

    #[test]
    fn info() {
        let info = PostgresqlConnector.info();
        assert_eq!(
            (info.id, info.name, info.use_oauth),
            ("postgresql", "PostgreSQL", false)
        );
        assert!(info.operations.contains(&"SupportsSQL"));
    }

    #[test]
    fn messages_never_contain_the_password() {
        let config =
            PostgresqlConfig::from_value(&with(json!({"password": "s3cret-pw"}))).expect("valid");
        let message = config.describe(&sqlx::Error::Protocol("got s3cret-pw back".into()));
        let scrubbed = sql::scrub(message, &["s3cret-pw"]);
        assert!(!scrubbed.contains("s3cret-pw"), "{scrubbed}");
        assert!(!format!("{config:?}").contains("s3cret-pw"));
    }
}
