//! Ferry's connection types.
//!
//! Each connection type is one module with its typed configuration (serde + schemars, one
//! source of truth for validation and for the JSON Schema served at
//! `GET /api/connection_types/{id}`) and an implementation of [`Connector`]. The registry in
//! [`registry`] is the one greppable list of every type Ferry knows.
//!
//! - `validate` is pure (no IO): it parses the caller's JSON into the typed config, rejecting
//!   unknown keys, wrong types and values outside the accepted set with a [`FieldError`] that
//!   names the field and lists what is accepted. Read-only properties sent by the caller are
//!   dropped, never trusted.
//! - `check` does IO: it connects and runs a trivial call, returning a [`ConnectionHealth`] or
//!   a [`CheckError`] whose message a user can act on.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

pub use ferry_core::FieldError;

pub mod mysql;
pub mod postgresql;
pub mod salesforce;
pub mod salesforce_catalog;
pub mod salesforce_source;
mod schema;
pub mod source;
mod sql;
pub mod sqlite;

pub use schema::{json_schema_for, sensitive_and_read_only_keys};
pub use source::{
    FieldType, ModelSource, RawWindow, Relation, RelationKind, RowBatch, Selection, SkipAnswer,
    SkipQuestion, SourceError, SourceField, WindowSkip, skip_channel,
};
pub use sql::CHECK_TIMEOUT;

/// What a connection type can do, as Polytomic's `capabilities` object reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Usable as a model source.
    pub source: bool,
    /// Usable as a sync destination.
    pub destination: bool,
    /// Usable as an enrichment source.
    pub enrichment: bool,
    /// Usable for orchestration.
    pub orchestration: bool,
}

/// Static description of a connection type (`GET /api/connection_types`).
#[derive(Debug, Clone)]
pub struct ConnectionTypeInfo {
    /// Type id, e.g. `salesforce`.
    pub id: &'static str,
    /// Human name, e.g. `Salesforce`.
    pub name: &'static str,
    /// Whether creating a connection goes through OAuth.
    pub use_oauth: bool,
    /// What the type can do.
    pub capabilities: Capabilities,
    /// Polytomic operation strings (`TARGET`, `BulkSyncSource`, ...).
    pub operations: &'static [&'static str],
}

/// Health of a connection after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionHealth {
    /// `healthy`, or `unauthorized` for a Salesforce connection not yet authorized.
    pub status: ConnectionStatus,
    /// A human explanation when not healthy.
    pub message: Option<String>,
    /// Read-only properties learned by the check (e.g. Salesforce `username`), merged into
    /// the stored configuration by the caller.
    pub learned: BTreeMap<String, Value>,
}

/// The `status` a connection reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// The last check succeeded.
    Healthy,
    /// The connection needs authorization before it can be used (OAuth not completed).
    Unauthorized,
    /// The last check failed.
    Failed,
}

impl ConnectionStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Healthy => "healthy",
            ConnectionStatus::Unauthorized => "unauthorized",
            ConnectionStatus::Failed => "failed",
        }
    }
}

/// A connectivity check failed. The message is safe to show to the user (no secrets) and
/// says what to fix: wrong password, host unreachable, database missing, ...
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CheckError {
    /// What went wrong, in words a user understands.
    pub message: String,
}

impl CheckError {
    /// Builds a check error.
    pub fn new(message: impl Into<String>) -> Self {
        CheckError {
            message: message.into(),
        }
    }
}

/// A connection type. Object safe; configurations travel as `serde_json::Value` and each
/// implementation parses them into its typed struct.
pub trait Connector: Send + Sync + 'static {
    /// Static description.
    fn info(&self) -> ConnectionTypeInfo;

    /// The bare JSON Schema of the configuration (draft 2020-12 style), generated from the
    /// typed struct, with `sensitive: true` on secrets and `readOnly: true` on read-only
    /// properties, and respecting the SDK's constraints (single-string `type`, numeric
    /// keywords as strings or absent, object-valued `items`/`additionalProperties`).
    fn config_schema(&self) -> Value;

    /// Keys of the configuration whose values are secrets (masked in responses, encrypted at
    /// rest).
    fn sensitive_keys(&self) -> Vec<String>;

    /// Keys set by Ferry only; a caller's values for them are ignored.
    fn read_only_keys(&self) -> Vec<String>;

    /// Parses and validates `config` without IO. Returns the normalized configuration (typed
    /// struct serialized back, defaults applied, read-only keys removed). Errors name the
    /// field relative to the configuration object (`connect_mode`, not
    /// `configuration.connect_mode`).
    fn validate(&self, config: &Value) -> Result<Value, FieldError>;

    /// Connects with a validated configuration and performs a trivial call.
    fn check<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<ConnectionHealth, CheckError>>;

    /// [`Connector::check`] for a saved connection: metered calls count against `budget`
    /// (the connection's daily API budget). Types whose calls are not metered ignore it.
    fn check_with_budget<'a>(
        &'a self,
        config: &'a Value,
        budget: Arc<dyn ferry_salesforce::CallBudget>,
    ) -> BoxFuture<'a, Result<ConnectionHealth, CheckError>> {
        let _ = budget;
        self.check(config)
    }

    /// The Salesforce connector, for Salesforce-only operations (OAuth, proxy).
    fn as_salesforce(&self) -> Option<&salesforce::SalesforceConnector> {
        None
    }

    /// The type's model-source capability (tables, views and queries a model can read), if
    /// it has one.
    fn model_source(&self) -> Option<&dyn ModelSource> {
        None
    }
}

/// Every connection type Ferry knows, by id. Adding a type is one module plus one line here.
#[derive(Clone)]
pub struct Registry {
    connectors: Arc<BTreeMap<&'static str, Arc<dyn Connector>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.connectors.keys()).finish()
    }
}

impl Registry {
    /// The connector for a type id.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(id)
    }

    /// Every connector, ordered by id.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.connectors.values()
    }

    /// Type ids, ordered.
    pub fn ids(&self) -> Vec<&'static str> {
        self.connectors.keys().copied().collect()
    }
}

/// The registry of built-in connection types, with default settings.
pub fn registry() -> Registry {
    registry_with(RegistrySettings::default())
}

/// Server-wide settings of connection types.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Salesforce settings (Ferry's connected app, extra CAs).
    pub salesforce: salesforce::SalesforceSettings,
}

/// The registry of built-in connection types.
pub fn registry_with(settings: RegistrySettings) -> Registry {
    let list: Vec<Arc<dyn Connector>> = vec![
        Arc::new(salesforce::SalesforceConnector::new(settings.salesforce)),
        Arc::new(postgresql::PostgresqlConnector),
        Arc::new(mysql::MysqlConnector),
        Arc::new(sqlite::SqliteConnector),
    ];
    let connectors = list.into_iter().map(|c| (c.info().id, c)).collect();
    Registry {
        connectors: Arc::new(connectors),
    }
}
