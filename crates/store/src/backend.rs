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
    (
        11,
        "window marks of model syncs",
        include_str!("../migrations/0011_sync_window_marks.sql"),
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
        // sqlx's `begin_with` is not cancel-safe on SQLite (0.8.6): after the worker ran
        // `BEGIN IMMEDIATE` it awaits once more (to check that a transaction started), and
        // a future dropped there returns the connection to the pool inside a transaction
        // holding the write lock, with no `Transaction` left to roll it back; every later
        // write then waits out the busy timeout and fails. The begin runs on a task of its
        // own, so it always completes: when the caller went away, the `Transaction` it
        // returns is dropped, which rolls back.
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
            .await
            .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)))?
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

#[cfg(test)]
mod cancel_tests {
    use super::*;

    /// A write transaction whose begin is abandoned at any point never keeps the lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_begins_leave_no_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(dir.path().join("t.db").to_str().unwrap())
            .await
            .unwrap();
        for round in 0..400u64 {
            let _ =
                tokio::time::timeout(Duration::from_micros(round * 5), store.begin_write()).await;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Every pooled connection must be able to take the write lock at once.
        for _ in 0..8 {
            let mut tx = tokio::time::timeout(Duration::from_secs(3), store.begin_write())
                .await
                .expect("the write lock is free")
                .expect("begin");
            sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}
