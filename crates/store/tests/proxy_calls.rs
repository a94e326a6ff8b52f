//! The Connection Proxy's shared rate limit and statistics, on SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use ferry_store::testing::postgres_database;
use ferry_store::{ConnectionWrite, DynStore, PostgresStore, SqliteStore};
use serde_json::json;
use uuid::Uuid;

async fn connection(store: &DynStore) -> Uuid {
    let org = store.create_organization("default").await.unwrap();
    store
        .create_connection(
            org.id,
            ConnectionWrite {
                name: "sf".to_string(),
                type_id: "salesforce".to_string(),
                configuration: json!({}),
                secrets: None,
                status: "healthy".to_string(),
                status_error: None,
                healthcheck_interval: None,
                policies: vec![],
                actor: None,
            },
        )
        .await
        .unwrap()
        .id
}

async fn sliding_window_is_exact_under_concurrency(store: DynStore) {
    let id = connection(&store).await;
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 30).unwrap();
    // 40 callers race for 25 slots in the same second: exactly 25 win.
    let attempts = (0..40).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.admit_proxy_call(id, start, 25).await.unwrap() })
    });
    let mut admitted = Vec::new();
    for attempt in attempts {
        admitted.extend(attempt.await.unwrap());
    }
    assert_eq!(admitted.len(), 25);
    // The window slides: 59 s later (across a clock minute) still full, 61 s later free.
    let later = start + Duration::seconds(59);
    assert_eq!(store.admit_proxy_call(id, later, 25).await.unwrap(), None);
    let free = start + Duration::seconds(61);
    let admission = store.admit_proxy_call(id, free, 25).await.unwrap().unwrap();

    for (index, first) in admitted.iter().enumerate() {
        let status = [200, 404, 503, 302][index % 4];
        store.record_proxy_status(id, *first, status).await.unwrap();
    }
    store.record_proxy_status(id, admission, 201).await.unwrap();
    let stats = store
        .proxy_stats(id, free - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(stats.calls, 26);
    assert_eq!(stats.ok, 7 + 1);
    assert_eq!(stats.client_errors, 6);
    assert_eq!(stats.server_errors, 6);
    assert_eq!(stats.last_at, Some(free));

    // A day later the statistics no longer count them, and the rows are purged.
    let next_day = start + Duration::hours(26);
    store
        .admit_proxy_call(id, next_day, 25)
        .await
        .unwrap()
        .unwrap();
    let stats = store
        .proxy_stats(id, next_day - Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(stats.calls, 1);
    let all = store
        .proxy_stats(id, start - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(all.calls, 1, "older rows were purged");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("ferry.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    sliding_window_is_exact_under_concurrency(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres() {
    let Some(db) = postgres_database("proxy_calls_window").await else {
        return;
    };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    sliding_window_is_exact_under_concurrency(Arc::new(store.clone())).await;
    store.pool().close().await;
    db.drop_database().await;
}
