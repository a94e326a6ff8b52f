//! `LedgerStore::analyze_ledger`: on PostgreSQL it refreshes the ledger table's planner
//! statistics (an explicit `ANALYZE`, which sets `last_analyze`; autovacuum's would set
//! `last_autoanalyze`); on SQLite it succeeds without doing anything.

use ferry_store::{LedgerStore as _, PostgresStore, SqliteStore};
use sqlx::ConnectOptions as _;

#[tokio::test]
async fn analyze_ledger_refreshes_postgresql_statistics() {
    let Some(database) = ferry_store::testing::postgres_database("ledger_statistics").await else {
        return;
    };
    let store = PostgresStore::connect(&database.url)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let last_analyze = || async {
        let mut connection =
            sqlx::postgres::PgConnectOptions::from_url(&database.url.parse().expect("url"))
                .expect("options")
                .connect()
                .await
                .expect("connection");
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'sync_ledger'",
        )
        .fetch_one(&mut connection)
        .await
        .expect("statistics")
    };
    assert_eq!(last_analyze().await, None, "a new table was never analyzed");
    store.analyze_ledger().await.expect("analyze");
    assert!(last_analyze().await.is_some());
    drop(store);
    database.drop_database().await;
}

#[tokio::test]
async fn analyze_ledger_is_a_no_op_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::connect(dir.path().join("meta.db").to_str().expect("utf-8"))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store.analyze_ledger().await.expect("analyze");
}
