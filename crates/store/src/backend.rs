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

/// Forward-only migrations, embedded in the binary: `(version, description, SQL, PostgreSQL's
/// own SQL)`. The SQL is written once for both backends (PostgreSQL spells SQLite's `BLOB` as
/// `BYTEA`) unless PostgreSQL's own is given, for a change that only one backend can make.
/// Never edit a migration that has shipped; add a new one.
const MIGRATIONS: &[(i64, &str, &str, Option<&str>)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql"), None),
    (
        2,
        "oauth states",
        include_str!("../migrations/0002_oauth_states.sql"),
        None,
    ),
    (
        3,
        "models",
        include_str!("../migrations/0003_models.sql"),
        None,
    ),
    (
        4,
        "syncs",
        include_str!("../migrations/0004_syncs.sql"),
        None,
    ),
    (
        5,
        "events and webhooks",
        include_str!("../migrations/0005_events_webhooks.sql"),
        None,
    ),
    (
        6,
        "bulk syncs",
        include_str!("../migrations/0006_bulk_syncs.sql"),
        None,
    ),
    (7, "jobs", include_str!("../migrations/0007_jobs.sql"), None),
    (
        8,
        "connection health checks",
        include_str!("../migrations/0008_connection_health.sql"),
        None,
    ),
    (
        9,
        "proxy calls",
        include_str!("../migrations/0009_proxy_calls.sql"),
        None,
    ),
    (
        10,
        "bulk jobs of model syncs",
        include_str!("../migrations/0010_sync_write_jobs.sql"),
        None,
    ),
    (
        11,
        "window marks of model syncs",
        include_str!("../migrations/0011_sync_window_marks.sql"),
        None,
    ),
    (
        12,
        "packed record logs",
        include_str!("../migrations/0012_packed_record_logs.sql"),
        None,
    ),
    (
        13,
        "the ledger as one b-tree",
        include_str!("../migrations/0013_ledger_one_btree.sql"),
        Some(include_str!(
            "../migrations/0013_ledger_one_btree.postgres.sql"
        )),
    ),
];

fn migrator(postgres: bool) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql, postgres_sql)| {
            let sql = match (postgres, postgres_sql) {
                (true, Some(own)) => Cow::Borrowed(*own),
                (true, None) => Cow::Owned(sql.replace("BLOB", "BYTEA")),
                (false, _) => Cow::Borrowed(*sql),
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

#[cfg(test)]
mod migration_tests {
    use super::*;
    use crate::testing::postgres_database;

    /// The migrations before `version`.
    fn migrator_before(version: i64, postgres: bool) -> Migrator {
        let mut migrator = migrator(postgres);
        migrator
            .migrations
            .to_mut()
            .retain(|migration| migration.version < version);
        migrator
    }

    const PARENTS: [&str; 3] = [
        "INSERT INTO organizations (id, name, created_at) VALUES ('o', 'acme', 0)",
        "INSERT INTO connections (id, organization_id, name, type, configuration, status, \
         policies, created_at, updated_at) VALUES ('c', 'o', 'sf', 'salesforce', '{}', \
         'healthy', '[]', 0, 0)",
        "INSERT INTO syncs (id, organization_id, name, mode, target_connection_id, model_ids, \
         active, document, created_at, updated_at) VALUES ('s', 'o', 's', 'update', 'c', \
         '[]', TRUE, '{}', 0, 0)",
    ];

    const ENTRIES: &str = "INSERT INTO sync_ledger \
        (sync_id, identity, hash, record_id, outcome, error_code, updated_at) VALUES \
        ('s', 'b@x.com', 'h2', NULL, 'failed', 'REQUIRED_FIELD_MISSING', 2), \
        ('s', 'a@x.com', 'h1', '003000000000001AAA', 'inserted', NULL, 1)";

    const READ: &str = "SELECT identity, hash, record_id, outcome, error_code, updated_at \
        FROM sync_ledger ORDER BY identity";

    type Entry = (String, String, Option<String>, String, Option<String>, i64);

    fn expected() -> Vec<Entry> {
        vec![
            (
                "a@x.com".into(),
                "h1".into(),
                Some("003000000000001AAA".into()),
                "inserted".into(),
                None,
                1,
            ),
            (
                "b@x.com".into(),
                "h2".into(),
                None,
                "failed".into(),
                Some("REQUIRED_FIELD_MISSING".into()),
                2,
            ),
        ]
    }

    /// Migration 13 moves SQLite's ledger into one B-tree with every entry, and the key and
    /// the cascade from the sync still hold.
    #[tokio::test]
    async fn sqlite_ledger_keeps_its_entries_in_one_btree() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(dir.path().join("m.db").to_str().unwrap())
            .await
            .unwrap();
        migrator_before(13, false).run(&store.pool).await.unwrap();
        for statement in PARENTS.iter().chain([&ENTRIES]) {
            sqlx::query(statement).execute(&store.pool).await.unwrap();
        }
        store.migrate().await.unwrap();
        let layout: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'sync_ledger'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert!(layout.contains("WITHOUT ROWID"), "{layout}");
        let entries: Vec<Entry> = sqlx::query_as(READ).fetch_all(&store.pool).await.unwrap();
        assert_eq!(entries, expected());
        let duplicate = sqlx::query(ENTRIES).execute(&store.pool).await;
        assert!(duplicate.is_err(), "the key still holds");
        sqlx::query("DELETE FROM syncs WHERE id = 's'")
            .execute(&store.pool)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_ledger")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "deleting the sync deletes its entries");
    }

    /// On PostgreSQL migration 13 changes nothing and the entries stay.
    #[tokio::test]
    async fn postgres_ledger_is_unchanged_by_migration_13() {
        let Some(db) = postgres_database("store_migration_13").await else {
            return;
        };
        let store = PostgresStore::connect(&db.url).await.unwrap();
        migrator_before(13, true).run(&store.pool).await.unwrap();
        for statement in PARENTS.iter().chain([&ENTRIES]) {
            sqlx::query(statement).execute(&store.pool).await.unwrap();
        }
        store.migrate().await.unwrap();
        let entries: Vec<Entry> = sqlx::query_as(READ).fetch_all(&store.pool).await.unwrap();
        assert_eq!(entries, expected());
        store.pool.close().await;
        db.drop_database().await;
    }
}
