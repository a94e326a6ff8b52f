//! One conformance suite, run against every store implementation (SQLite and PostgreSQL).

use std::sync::Arc;

use chrono::{Duration, Utc};
use ferry_store::testing::postgres_database;
use ferry_store::{
    ConnectionDependent, ConnectionWrite, DynStore, IdempotencyBegin, PostgresStore, SqliteStore,
    StoreError, StoredResponse,
};
use serde_json::json;
use uuid::Uuid;

fn write(name: &str) -> ConnectionWrite {
    ConnectionWrite {
        name: name.to_string(),
        type_id: "postgresql".to_string(),
        configuration: json!({"hostname": "db", "port": 5432}),
        secrets: Some(vec![1, 2, 3]),
        status: "healthy".to_string(),
        status_error: None,
        healthcheck_interval: None,
        policies: vec![],
        actor: Some("key-1".to_string()),
    }
}

async fn organizations(store: DynStore) {
    assert_eq!(store.count_organizations().await.unwrap(), 0);
    let org = store.create_organization("acme").await.unwrap();
    assert!(matches!(
        store.create_organization("acme").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.ensure_organization("acme").await.unwrap().id, org.id);
    assert_eq!(store.organization(org.id).await.unwrap().name, "acme");
    assert!(matches!(
        store.organization(Uuid::new_v4()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.count_organizations().await.unwrap(), 1);
}

async fn api_keys(store: DynStore) {
    let org = store.create_organization("acme").await.unwrap();
    let generated = store.create_api_key(org.id, None).await.unwrap();
    assert!(generated.plaintext.starts_with("ferry_"));
    let found = store
        .authenticate(&generated.plaintext)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.organization_id, org.id);
    assert!(store.authenticate("ferry_wrong").await.unwrap().is_none());
    let fixed = store
        .create_api_key(org.id, Some("bootstrap-key-0123456789"))
        .await
        .unwrap();
    assert_eq!(fixed.plaintext, "bootstrap-key-0123456789");
    assert!(
        store
            .authenticate("bootstrap-key-0123456789")
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        store
            .create_api_key(org.id, Some("bootstrap-key-0123456789"))
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
}

async fn connections(store: DynStore) {
    let acme = store.create_organization("acme").await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let created = store
        .create_connection(acme.id, write("warehouse"))
        .await
        .unwrap();
    assert_eq!(created.name, "warehouse");
    assert_eq!(
        created.configuration,
        json!({"hostname": "db", "port": 5432})
    );
    assert_eq!(created.secrets, Some(vec![1, 2, 3]));
    assert_eq!(created.created_by.as_deref(), Some("key-1"));

    // Tenancy: another organization sees nothing.
    assert!(matches!(
        store.connection(other.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.list_connections(other.id).await.unwrap().is_empty());
    assert!(matches!(
        store
            .update_connection(other.id, created.id, write("x"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_connection(other.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));

    let mut change = write("renamed");
    change.secrets = None;
    change.status = "failed".to_string();
    change.status_error = Some("boom".to_string());
    let updated = store
        .update_connection(acme.id, created.id, change)
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.secrets, None);
    assert_eq!(updated.status_error.as_deref(), Some("boom"));
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);

    let second = store
        .create_connection(acme.id, write("second"))
        .await
        .unwrap();
    let listed = store.list_connections(acme.id).await.unwrap();
    assert_eq!(listed.len(), 2);

    // Dependents.
    let dependent = ConnectionDependent {
        kind: "model".to_string(),
        id: "m1".to_string(),
        name: "People".to_string(),
    };
    store
        .add_connection_dependent(second.id, &dependent)
        .await
        .unwrap();
    store
        .add_connection_dependent(second.id, &dependent)
        .await
        .unwrap();
    assert_eq!(
        store.connection_dependents(second.id).await.unwrap(),
        vec![dependent]
    );
    assert!(
        store
            .connection_dependents(created.id)
            .await
            .unwrap()
            .is_empty()
    );

    // API call accounting over a rolling window.
    let now = Utc::now();
    store.record_api_calls(second.id, now, 3).await.unwrap();
    store.record_api_calls(second.id, now, 2).await.unwrap();
    store
        .record_api_calls(second.id, now - Duration::hours(30), 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .api_calls_since(second.id, now - Duration::hours(24))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .api_calls_since(created.id, now - Duration::hours(24))
            .await
            .unwrap(),
        0
    );

    store.delete_connection(acme.id, second.id).await.unwrap();
    assert!(matches!(
        store.connection(acme.id, second.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_connections(acme.id).await.unwrap().len(), 1);
}

async fn idempotency(store: DynStore) {
    let acme = store.create_organization("acme").await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let now = Utc::now();
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0001", "fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0001", "fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::InFlight
    );
    // Keys are scoped per organization.
    assert_eq!(
        store
            .begin_idempotent(other.id, "key-0001", "fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    let response = StoredResponse {
        status: 500,
        content_type: Some("application/json".to_string()),
        body: b"{\"status\":500}".to_vec(),
    };
    store
        .complete_idempotent(acme.id, "key-0001", &response, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0001", "fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::Completed(response)
    );
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0001", "other-fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );

    // Abandoned keys can be claimed again.
    store
        .begin_idempotent(acme.id, "key-0002", "fp", now)
        .await
        .unwrap();
    store.abandon_idempotent(acme.id, "key-0002").await.unwrap();
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0002", "fp", now)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    // A stale in-flight record (its process died) is taken over.
    let later = now + Duration::minutes(11);
    assert_eq!(
        store
            .begin_idempotent(acme.id, "key-0002", "fp", later)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );

    // Purge removes old records only.
    assert_eq!(
        store
            .purge_idempotency(now - Duration::hours(1))
            .await
            .unwrap(),
        0
    );
    assert!(
        store
            .purge_idempotency(later + Duration::seconds(1))
            .await
            .unwrap()
            >= 3
    );
}

async fn sqlite_store() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::postgres_database(stringify!($name)).await else { return };
                    let store = super::PostgresStore::connect(&db.url).await.unwrap();
                    store.migrate().await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(std::sync::Arc::new(store.clone())).await;
                    store.pool().close().await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

conformance!(
    organizations,
    api_keys,
    connections,
    idempotency,
    oauth_states
);

async fn oauth_states(store: DynStore) {
    let org = store.create_organization("acme").await.unwrap();
    let connection = store.create_connection(org.id, write("sf")).await.unwrap();
    let state = ferry_store::OAuthState {
        state: "state-abc".to_string(),
        organization_id: org.id,
        connection_id: connection.id,
        auth_code: Some("CODE-1234".to_string()),
        redirect_url: Some("https://app.example.com/done".to_string()),
        created_at: ferry_core::time::now_millis(),
        consumed_at: None,
    };
    store.create_oauth_state(&state).await.unwrap();
    assert_eq!(
        store.oauth_state("state-abc").await.unwrap(),
        Some(state.clone())
    );
    assert_eq!(
        store.oauth_state_by_code("CODE-1234").await.unwrap(),
        Some(state.clone())
    );
    assert!(store.oauth_state("nope").await.unwrap().is_none());
    assert!(state.usable_at(Utc::now()));
    assert!(!state.usable_at(Utc::now() + Duration::hours(2)));
    assert!(
        store
            .consume_oauth_state("state-abc", Utc::now())
            .await
            .unwrap()
    );
    assert!(
        !store
            .consume_oauth_state("state-abc", Utc::now())
            .await
            .unwrap()
    );
    let consumed = store.oauth_state("state-abc").await.unwrap().unwrap();
    assert!(!consumed.usable_at(Utc::now()));
    // Deleting the connection removes its pending authorizations.
    store
        .delete_connection(org.id, connection.id)
        .await
        .unwrap();
    assert!(store.oauth_state("state-abc").await.unwrap().is_none());
}
