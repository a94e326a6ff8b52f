//! Ferry's metadata store.
//!
//! One trait, [`MetadataStore`], composed of one trait per resource, with two implementations
//! that share every SQL statement: SQLite (the embedded default) and PostgreSQL (for
//! scale-out). Each resource lives in its own module:
//!
//! - [`organizations`] — tenants.
//! - [`api_keys`] — API keys, stored as SHA-256 hashes, never in plaintext.
//! - [`connections`] — connections; configuration as JSON with secrets split out and encrypted.
//! - [`idempotency`] — `Idempotency-Key` records (first outcome replayed, in-flight locking).
//! - [`oauth`] — pending OAuth authorizations (state, user-entered codes).
//! - [`models`] — models (a table, view or query of a source connection) and their fields.
//! - [`syncs`] — model syncs, their executions and execution record logs.
//! - [`ledger`] — per-sync change tracking (identity → confirmed hash, record id, outcome).
//! - [`api_usage`] — atomic reservations against a connection's daily API budget.
//! - [`proxy_calls`] — the Connection Proxy's shared rate limit and statistics.
//! - [`events`] — events (kept 48 hours) and each organization's webhook.
//! - [`jobs`] — the job queue: leases, heartbeats, takeover, per-connection caps.
//! - [`bulk_syncs`] — bulk syncs (ELT), their schemas, schedules, executions and logs.
//!
//! Supporting modules: [`secrets`] (AEAD encryption of secret values), [`backend`] (pools,
//! embedded forward-only migrations, the SQLite/PostgreSQL store types).
//!
//! Timestamps are stored as epoch milliseconds so both backends store and sort them the same.

use std::sync::Arc;

use ferry_core::{ErrorCode, HasErrorCode};

pub mod api_keys;
pub mod api_usage;
pub mod backend;
pub mod bulk_syncs;
pub mod connections;
pub mod events;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod models;
pub mod oauth;
pub mod organizations;
pub mod proxy_calls;
pub mod secrets;
pub mod syncs;
#[cfg(feature = "testsuite")]
pub mod testing;
pub mod write_jobs;

pub use api_keys::{ApiKey, ApiKeyStore, NewApiKey};
pub use api_usage::{ApiUsageStore, Reservation};
pub use backend::{PostgresStore, SqliteStore, open};
pub use bulk_syncs::{
    BulkExecution, BulkExecutionPage, BulkSchedule, BulkScheduleWrite, BulkSchema,
    BulkSchemaExecution, BulkSchemaProgress, BulkSync, BulkSyncStore, BulkSyncWrite,
    NewBulkExecution,
};
pub use connections::{
    Connection, ConnectionDependent, ConnectionStore, ConnectionWrite, HealthCheckCandidate,
};
pub use events::{Event, EventFilter, EventStore, Webhook};
pub use idempotency::{IdempotencyBegin, IdempotencyStore, StoredResponse};
pub use jobs::{ClaimRequest, Job, JobKind, JobStatus, JobStore, NewJob, QueueSnapshot};
pub use ledger::{LedgerEntry, LedgerStore};
pub use models::{Model, ModelStore, ModelWrite};
pub use oauth::{OAuthState, OAuthStateStore};
pub use organizations::{Organization, OrganizationStore};
pub use proxy_calls::{ProxyAdmission, ProxyCallStore, ProxyStats};
pub use syncs::{
    Execution, ExecutionCounts, ExecutionPage, ModelSync, RecordLine, SyncFilter, SyncStore,
    SyncWrite,
};
pub use write_jobs::{WriteJob, WriteJobStore};

/// Everything Ferry persists about its own state.
pub trait MetadataStore:
    OrganizationStore
    + ApiKeyStore
    + ConnectionStore
    + IdempotencyStore
    + OAuthStateStore
    + ApiUsageStore
    + ProxyCallStore
    + EventStore
    + ModelStore
    + SyncStore
    + LedgerStore
    + JobStore
    + BulkSyncStore
    + WriteJobStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend_name(&self) -> &'static str;
}

/// A shared handle on the store.
pub type DynStore = Arc<dyn MetadataStore>;

/// Errors from the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist.
    #[error("{entity} not found")]
    NotFound {
        /// What was looked up.
        entity: &'static str,
    },
    /// A unique constraint was violated.
    #[error("{entity} already exists")]
    AlreadyExists {
        /// What clashed.
        entity: &'static str,
    },
    /// The database URL could not be used.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// A database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// Stored data could not be decoded (corrupt row or wrong secret key).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl HasErrorCode for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::AlreadyExists { .. } => ErrorCode::Conflict,
            StoreError::InvalidUrl(_) => ErrorCode::BadRequest,
            StoreError::Database(_) | StoreError::Migration(_) | StoreError::Corrupt(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Converts a unique-constraint violation into [`StoreError::AlreadyExists`].
pub(crate) fn map_unique(entity: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::AlreadyExists { entity }
        }
        _ => StoreError::Database(error),
    }
}

/// Converts a foreign-key violation (the parent row is gone) into
/// [`StoreError::NotFound`] for `entity`.
pub(crate) fn map_missing_parent(entity: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound { entity }
        }
        _ => StoreError::Database(error),
    }
}

/// A hash map with a fast hasher (foldhash), for maps keyed by the rows of one write.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Epoch milliseconds → timestamp.
pub(crate) fn from_millis(millis: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// Implements a resource trait for both backends from one body. The body refers to the
/// pool as `self.pool`; every statement uses `$n` placeholders, which both SQLite and
/// PostgreSQL accept.
macro_rules! for_each_backend {
    ($mac:ident) => {
        $mac!($crate::backend::SqliteStore);
        $mac!($crate::backend::PostgresStore);
    };
}
pub(crate) use for_each_backend;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map() {
        assert_eq!(
            StoreError::NotFound {
                entity: "connection"
            }
            .code(),
            ErrorCode::NotFound
        );
        assert_eq!(
            StoreError::AlreadyExists {
                entity: "organization"
            }
            .code(),
            ErrorCode::Conflict
        );
    }
}
