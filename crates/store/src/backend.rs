//! Connection pools, embedded migrations and the two store types.
//!
//! `sqlite:` / a bare path selects SQLite (WAL mode, a busy timeout so `ferry keys create`
//! works while `ferry serve` runs); `postgres://` or `postgresql://` selects PostgreSQL.
//! Migrations are forward-only and embedded in the binary; each backend has its own
//! directory because column types differ (BLOB vs BYTEA), while every query is shared.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::{DynStore, MetadataStore, Result, StoreError};

/// Forward-only migrations, embedded in the binary: `(version, description, SQL)`. The SQL is
/// written once for both backends; PostgreSQL spells SQLite's `BLOB` as `BYTEA`. Never edit a
/// migration that has shipped; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "oauth states",
        include_str!("../migrations/0002_oauth_states.sql"),
    ),
    (3, "models", include_str!("../migrations/0003_models.sql")),
    (4, "syncs", include_str!("../migrations/0004_syncs.sql")),
    (
        5,
        "events and webhooks",
        include_str!("../migrations/0005_events_webhooks.sql"),
    ),
    (
        6,
        "bulk syncs",
        include_str!("../migrations/0006_bulk_syncs.sql"),
    ),
    (7, "jobs", include_str!("../migrations/0007_jobs.sql")),
    (
        8,
        "connection health checks",
        include_str!("../migrations/0008_connection_health.sql"),
    ),
    (
        9,
        "proxy calls",
        include_str!("../migrations/0009_proxy_calls.sql"),
    ),
    (
        10,
        "bulk jobs of model syncs",
        include_str!("../migrations/0010_sync_write_jobs.sql"),
    ),
];

fn migrator(postgres: bool) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            let sql = if postgres {
                Cow::Owned(sql.replace("BLOB", "BYTEA"))
            } else {
                Cow::Borrowed(*sql)
            };
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql,
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite://path` or a path).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map_err(|error| StoreError::InvalidUrl(error.to_string()))?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        migrator(false)
            .run(&self.pool)
            .await
            .map_err(StoreError::Migration)
    }

    /// The underlying pool (tests and tooling).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a transaction holding the write lock from its first statement.
    ///
    /// A deferred SQLite transaction that reads and then writes fails at once with
    /// `SQLITE_BUSY` (no busy timeout applies) when another connection committed in between;
    /// one writer at a time is SQLite's rule anyway, so every store transaction asks first.
    pub(crate) async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

impl PostgresStore {
    /// Connects to PostgreSQL at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::InvalidUrl(error.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(PostgresStore { pool })
    }

    /// Applies pending migrations. Safe to run from several processes at once: sqlx takes an
    /// advisory lock while migrating.
    pub async fn migrate(&self) -> Result<()> {
        migrator(true)
            .run(&self.pool)
            .await
            .map_err(StoreError::Migration)
    }

    /// The underlying pool (tests and tooling).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a transaction (the SQLite store's counterpart takes its write lock up front).
    pub(crate) async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

impl MetadataStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

impl MetadataStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}

/// Whether `url` selects PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store at `url`, applies migrations and returns it.
pub async fn open(url: &str) -> Result<DynStore> {
    if is_postgres_url(url) {
        let store = PostgresStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if url.starts_with("mysql:") {
        Err(StoreError::InvalidUrl(
            "the metadata store supports SQLite (a path or sqlite://...) and PostgreSQL \
             (postgres://...); MySQL is supported as a connection type only"
                .to_string(),
        ))
    } else {
        let store = SqliteStore::connect(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    }
}
