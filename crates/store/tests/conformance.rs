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
    oauth_states,
    api_budget,
    models,
    events_and_webhooks,
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

async fn api_budget(store: DynStore) {
    let org = store.create_organization("acme").await.unwrap();
    let connection = store.create_connection(org.id, write("sf")).await.unwrap();
    let now = Utc::now();
    let window = now - Duration::hours(24);
    for expected_used in 0..3 {
        let reservation = store
            .reserve_api_calls(connection.id, now, 1, Some(3), window)
            .await
            .unwrap();
        assert!(reservation.granted);
        assert_eq!(reservation.used, expected_used);
    }
    let refused = store
        .reserve_api_calls(connection.id, now, 1, Some(3), window)
        .await
        .unwrap();
    assert!(!refused.granted);
    assert_eq!(refused.used, 3);
    // A refused reservation records nothing; without a cap calls are always granted.
    assert_eq!(
        store.api_calls_since(connection.id, window).await.unwrap(),
        3
    );
    assert!(
        store
            .reserve_api_calls(connection.id, now, 5, None, window)
            .await
            .unwrap()
            .granted
    );
    assert_eq!(
        store.api_calls_since(connection.id, window).await.unwrap(),
        8
    );
    // Calls outside the window no longer count.
    let tomorrow = now + Duration::hours(25);
    let later = store
        .reserve_api_calls(
            connection.id,
            tomorrow,
            1,
            Some(3),
            tomorrow - Duration::hours(24),
        )
        .await
        .unwrap();
    assert!(later.granted);
    assert_eq!(later.used, 0);
}

fn model_write(connection_id: Uuid, name: &str) -> ferry_store::ModelWrite {
    ferry_store::ModelWrite {
        connection_id,
        name: name.to_string(),
        configuration: json!({"table": "public.users"}),
        fields: json!([{"name": "id", "type": "number", "enabled": true}]),
        identifier: Some("id".to_string()),
        tracking_columns: vec!["updated_at".to_string()],
        labels: vec!["vip".to_string()],
        additional_fields: json!([]),
        relations: json!([{"from": "id", "to": {"model_id": "m", "field": "id"}}]),
        policies: vec![],
        actor: Some("key-1".to_string()),
    }
}

async fn models(store: DynStore) {
    let acme = store.create_organization("acme").await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let warehouse = store
        .create_connection(acme.id, write("warehouse"))
        .await
        .unwrap();
    let lake = store
        .create_connection(acme.id, write("lake"))
        .await
        .unwrap();
    let foreign = store
        .create_connection(other.id, write("theirs"))
        .await
        .unwrap();

    // Another organization's connection is unknown.
    assert!(matches!(
        store
            .create_model(acme.id, model_write(foreign.id, "users"))
            .await,
        Err(StoreError::NotFound {
            entity: "connection"
        })
    ));

    let created = store
        .create_model(acme.id, model_write(warehouse.id, "users"))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.identifier.as_deref(), Some("id"));
    assert_eq!(created.labels, vec!["vip"]);
    assert_eq!(created.fields[0]["name"], "id");
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        store.connection_dependents(warehouse.id).await.unwrap(),
        vec![ConnectionDependent {
            kind: "model".to_string(),
            id: created.id.to_string(),
            name: "users".to_string(),
        }]
    );

    // Tenancy.
    assert!(matches!(
        store.model(other.id, created.id).await,
        Err(StoreError::NotFound { entity: "model" })
    ));
    assert!(store.list_models(other.id).await.unwrap().is_empty());
    assert!(matches!(
        store
            .update_model(other.id, created.id, model_write(foreign.id, "x"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_model(other.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Update: version increments, the dependent link follows the connection and name.
    let mut change = model_write(lake.id, "people");
    change.identifier = None;
    change.actor = Some("key-2".to_string());
    let updated = store
        .update_model(acme.id, created.id, change)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.connection_id, lake.id);
    assert_eq!(updated.identifier, None);
    assert_eq!(updated.created_by.as_deref(), Some("key-1"));
    assert_eq!(updated.updated_by.as_deref(), Some("key-2"));
    assert!(
        store
            .connection_dependents(warehouse.id)
            .await
            .unwrap()
            .is_empty()
    );
    let dependents = store.connection_dependents(lake.id).await.unwrap();
    assert_eq!(dependents.len(), 1);
    assert_eq!(dependents[0].name, "people");

    // List: most recently updated first.
    let second = store
        .create_model(acme.id, model_write(warehouse.id, "orders"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .update_model(acme.id, created.id, model_write(lake.id, "people"))
        .await
        .unwrap();
    let listed: Vec<Uuid> = store
        .list_models(acme.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, vec![created.id, second.id]);

    // Delete removes the link.
    store.delete_model(acme.id, created.id).await.unwrap();
    assert!(matches!(
        store.model(acme.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .connection_dependents(lake.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete_model(acme.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Deleting the connection (forced) removes its models too.
    store
        .delete_connection(acme.id, warehouse.id)
        .await
        .unwrap();
    assert!(store.list_models(acme.id).await.unwrap().is_empty());
}

async fn events_and_webhooks(store: DynStore) {
    use ferry_store::{Event, EventFilter, Webhook};
    let acme = store.create_organization("acme").await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let base = Utc::now() - Duration::hours(1);
    for (i, event_type) in ["sync.running", "sync.completed", "sync.running"]
        .iter()
        .enumerate()
    {
        store
            .insert_event(&Event {
                id: Uuid::new_v4(),
                organization_id: acme.id,
                event_type: event_type.to_string(),
                payload: json!({"n": i}),
                created_at: ferry_core::time::now_millis() - Duration::minutes(10 - i as i64),
            })
            .await
            .unwrap();
    }
    let all = store
        .list_events(
            acme.id,
            &EventFilter {
                limit: 10,
                ..EventFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].payload, json!({"n": 2}), "newest first");
    let running = store
        .list_events(
            acme.id,
            &EventFilter {
                event_type: Some("sync.running".into()),
                limit: 10,
                ..EventFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    let limited = store
        .list_events(
            acme.id,
            &EventFilter {
                limit: 1,
                starting_after: Some(base),
                ..EventFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert!(
        store
            .list_events(
                other.id,
                &EventFilter {
                    limit: 10,
                    ..EventFilter::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .purge_events(Utc::now() + Duration::seconds(1))
            .await
            .unwrap(),
        3
    );

    let hook = Webhook {
        id: Uuid::new_v4(),
        organization_id: acme.id,
        endpoint: "http://127.0.0.1:9/hook".into(),
        secret: vec![1, 2, 3],
        disabled: false,
        created_at: ferry_core::time::now_millis(),
    };
    store.create_webhook(&hook).await.unwrap();
    let second = Webhook {
        id: Uuid::new_v4(),
        ..hook.clone()
    };
    assert!(matches!(
        store.create_webhook(&second).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.webhook(acme.id, hook.id).await.unwrap(), hook);
    assert!(matches!(
        store.webhook(other.id, hook.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let disabled = Webhook {
        disabled: true,
        endpoint: "http://127.0.0.1:9/other".into(),
        ..hook.clone()
    };
    store.update_webhook(&disabled).await.unwrap();
    assert_eq!(store.list_webhooks(acme.id).await.unwrap(), vec![disabled]);
    assert!(matches!(
        store.delete_webhook(other.id, hook.id).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete_webhook(acme.id, hook.id).await.unwrap();
    assert!(store.list_webhooks(acme.id).await.unwrap().is_empty());
}
