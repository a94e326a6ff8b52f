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
    bulk_syncs,
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

fn bulk_write(source: Uuid, destination: Uuid, name: &str) -> ferry_store::BulkSyncWrite {
    ferry_store::BulkSyncWrite {
        name: name.to_string(),
        source_connection_id: source,
        destination_connection_id: destination,
        mode: "replicate".into(),
        active: true,
        document: json!({"name": name, "destination_configuration": {"schema": "sf"}}),
        actor: Some("key-1".into()),
    }
}

fn bulk_schema(id: &str, enabled: bool) -> ferry_store::BulkSchema {
    ferry_store::BulkSchema {
        schema_id: id.to_string(),
        enabled,
        user_output_name: None,
        partition_key: None,
        tracking_field: Some("SystemModstamp".into()),
        data_cutoff_timestamp: None,
        disable_data_cutoff: false,
        fields: json!([]),
        filters: json!([]),
    }
}

async fn bulk_syncs(store: DynStore) {
    use ferry_store::{BulkExecutionPage, BulkScheduleWrite, BulkSchemaProgress, NewBulkExecution};
    let acme = store.create_organization("acme").await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let source = store
        .create_connection(acme.id, write("salesforce"))
        .await
        .unwrap();
    let destination = store
        .create_connection(acme.id, write("warehouse"))
        .await
        .unwrap();
    let foreign = store
        .create_connection(other.id, write("foreign"))
        .await
        .unwrap();
    let default_schedule = BulkScheduleWrite {
        is_default: true,
        frequency: "daily".into(),
        hour: Some("3".into()),
        minute: Some("15".into()),
        actor: Some("key-1".into()),
        ..BulkScheduleWrite::default()
    };
    // A connection of another organization is not found.
    assert!(matches!(
        store
            .create_bulk_sync(
                acme.id,
                bulk_write(source.id, foreign.id, "nope"),
                &[],
                std::slice::from_ref(&default_schedule),
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let sync = store
        .create_bulk_sync(
            acme.id,
            bulk_write(source.id, destination.id, "replica"),
            &[bulk_schema("Account", true), bulk_schema("Contact", false)],
            std::slice::from_ref(&default_schedule),
        )
        .await
        .unwrap();
    assert_eq!(sync.name, "replica");
    assert_eq!(sync.document["destination_configuration"]["schema"], "sf");
    assert_eq!(store.bulk_sync(acme.id, sync.id).await.unwrap(), sync);
    assert!(matches!(
        store.bulk_sync(other.id, sync.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_bulk_syncs(acme.id, None).await.unwrap().len(), 1);
    assert!(
        store
            .list_bulk_syncs(acme.id, Some(false))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_active_bulk_syncs().await.unwrap().len(), 1);
    // Both connections are in use.
    for connection in [source.id, destination.id] {
        let dependents = store.connection_dependents(connection).await.unwrap();
        assert_eq!(dependents.len(), 1, "{dependents:?}");
        assert_eq!(dependents[0].kind, "bulk_sync");
        assert_eq!(dependents[0].id, sync.id.to_string());
    }

    // Schemas: upsert the listed ones only.
    let schemas = store.bulk_schemas(sync.id).await.unwrap();
    assert_eq!(
        schemas
            .iter()
            .map(|s| s.schema_id.as_str())
            .collect::<Vec<_>>(),
        ["Account", "Contact"]
    );
    let mut contact = bulk_schema("Contact", true);
    contact.user_output_name = Some("people".into());
    contact.data_cutoff_timestamp = Some(ferry_core::time::now_millis());
    contact.fields = json!([{"id": "Email", "enabled": true}]);
    store
        .put_bulk_schemas(sync.id, std::slice::from_ref(&contact))
        .await
        .unwrap();
    let schemas = store.bulk_schemas(sync.id).await.unwrap();
    assert_eq!(schemas[1], contact);
    assert!(schemas[0].enabled);

    // Schedules: the default first; a second default is refused; replaced by id.
    let schedules = store.bulk_schedules(sync.id).await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert!(schedules[0].is_default);
    assert_eq!(schedules[0].hour.as_deref(), Some("3"));
    assert!(matches!(
        store.put_bulk_schedule(sync.id, &default_schedule).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let extra = store
        .put_bulk_schedule(
            sync.id,
            &BulkScheduleWrite {
                frequency: "hourly".into(),
                minute: Some("5".into()),
                schemas: vec!["Account".into()],
                sync_mode: Some("normal".into()),
                ..BulkScheduleWrite::default()
            },
        )
        .await
        .unwrap();
    assert!(!extra.is_default);
    let replaced = store
        .put_bulk_schedule(
            sync.id,
            &BulkScheduleWrite {
                id: Some(extra.id),
                frequency: "hourly".into(),
                minute: Some("45".into()),
                ..BulkScheduleWrite::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.id, extra.id);
    assert_eq!(replaced.minute.as_deref(), Some("45"));
    assert_eq!(replaced.created_at, extra.created_at);
    assert_eq!(store.bulk_schedules(sync.id).await.unwrap().len(), 2);

    // Update: replaces the document and the schedules (unlisted ones go).
    let mut renamed = bulk_write(source.id, destination.id, "renamed");
    renamed.active = false;
    let keep_default = BulkScheduleWrite {
        id: Some(schedules[0].id),
        frequency: "manual".into(),
        ..default_schedule.clone()
    };
    let updated = store
        .update_bulk_sync(
            acme.id,
            sync.id,
            renamed,
            std::slice::from_ref(&keep_default),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert!(!updated.active);
    let schedules_after = store.bulk_schedules(sync.id).await.unwrap();
    assert_eq!(schedules_after.len(), 1);
    assert_eq!(schedules_after[0].id, schedules[0].id);
    assert_eq!(schedules_after[0].frequency, "manual");
    store
        .delete_bulk_schedule(sync.id, schedules[0].id)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_bulk_schedule(sync.id, schedules[0].id).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .set_bulk_sync_active(acme.id, sync.id, true)
        .await
        .unwrap();
    assert!(store.bulk_sync(acme.id, sync.id).await.unwrap().active);

    // Executions: one unfinished at a time; counts are the schemas' sums.
    let new = NewBulkExecution {
        execution_type: "manual".into(),
        fetch_mode: "incremental".into(),
        output_disposition: "retain".into(),
        schemas: vec![
            ("Account".into(), "account".into()),
            ("Contact".into(), "people".into()),
        ],
        ..NewBulkExecution::default()
    };
    let execution = store.create_bulk_execution(sync.id, &new).await.unwrap();
    assert_eq!(execution.status, "created");
    assert_eq!(execution.schemas.len(), 2);
    assert_eq!(execution.schemas[1].output_name, "people");
    assert!(matches!(
        store.create_bulk_execution(sync.id, &new).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(
        store
            .transition_bulk_execution(execution.id, &["created"], "running", None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_bulk_execution(execution.id, &["created"], "running", None)
            .await
            .unwrap()
    );
    let now = ferry_core::time::now_millis();
    store
        .record_bulk_schema_progress(
            execution.id,
            &BulkSchemaProgress {
                schema_id: "Account".into(),
                status: "completed".into(),
                record_count: 7,
                delete_count: 1,
                started_at: Some(now),
                completed_at: Some(now),
                ..BulkSchemaProgress::default()
            },
        )
        .await
        .unwrap();
    store
        .record_bulk_schema_progress(
            execution.id,
            &BulkSchemaProgress {
                schema_id: "Contact".into(),
                status: "running".into(),
                record_count: 3,
                error_count: 2,
                started_at: Some(now),
                ..BulkSchemaProgress::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .record_bulk_schema_progress(
                execution.id,
                &BulkSchemaProgress {
                    schema_id: "Lead".into(),
                    status: "running".into(),
                    ..BulkSchemaProgress::default()
                },
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let running = store.active_bulk_execution(sync.id).await.unwrap().unwrap();
    assert_eq!(running.id, execution.id);
    assert_eq!(running.status, "running");
    assert!(running.started_at.is_some());
    assert_eq!((running.record_count, running.error_count), (10, 2));
    assert_eq!(running.schemas[0].delete_count, 1);
    assert!(
        store
            .last_finished_bulk_execution(sync.id)
            .await
            .unwrap()
            .is_none()
    );

    // A terminal status settles the unfinished schema executions.
    assert!(
        store
            .transition_bulk_execution(
                execution.id,
                &ferry_store::bulk_syncs::ACTIVE_STATUSES,
                "failed",
                Some("Contact failed"),
            )
            .await
            .unwrap()
    );
    let failed = store.bulk_execution(sync.id, execution.id).await.unwrap();
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.status_message, "Contact failed");
    assert!(failed.completed_at.is_some());
    assert_eq!(failed.schemas[0].status, "completed");
    assert_eq!(failed.schemas[1].status, "failed");
    assert!(
        store
            .active_bulk_execution(sync.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .last_finished_bulk_execution(sync.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        execution.id
    );
    let second = store.create_bulk_execution(sync.id, &new).await.unwrap();
    let page = |only_terminal, ascending| BulkExecutionPage {
        ascending,
        only_terminal,
        offset: 0,
        limit: 10,
    };
    let newest_first = store
        .list_bulk_executions(sync.id, page(false, false))
        .await
        .unwrap();
    assert_eq!(newest_first.len(), 2);
    assert!(newest_first[0].created_at >= newest_first[1].created_at);
    let terminal = store
        .list_bulk_executions(sync.id, page(true, true))
        .await
        .unwrap();
    assert_eq!(
        terminal.iter().map(|e| e.id).collect::<Vec<_>>(),
        [execution.id]
    );
    assert!(matches!(
        store.bulk_execution(Uuid::new_v4(), second.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Logs: appended in order.
    store
        .append_bulk_execution_logs(second.id, &["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    store
        .append_bulk_execution_logs(second.id, &["c".to_string()])
        .await
        .unwrap();
    assert_eq!(store.count_bulk_execution_logs(second.id).await.unwrap(), 3);
    assert_eq!(
        store.bulk_execution_logs(second.id, 1, 10).await.unwrap(),
        ["b", "c"]
    );

    // Delete: everything goes, connections are free again.
    store.delete_bulk_sync(acme.id, sync.id).await.unwrap();
    assert!(matches!(
        store.bulk_sync(acme.id, sync.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.bulk_schemas(sync.id).await.unwrap().is_empty());
    assert!(
        store
            .connection_dependents(source.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete_bulk_sync(acme.id, sync.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// The job queue: claims, leases, takeover, per-connection caps (both backends).
// ---------------------------------------------------------------------------------------

fn claim_request(
    owner: &str,
    lease_millis: u64,
    connection_limit: i64,
) -> ferry_store::ClaimRequest {
    ferry_store::ClaimRequest {
        owner: owner.to_string(),
        lease: std::time::Duration::from_millis(lease_millis),
        connection_limit,
        kinds: vec![ferry_store::JobKind::ModelSync],
    }
}

fn new_job(org: Uuid, subject: Uuid, connections: Vec<Uuid>) -> ferry_store::NewJob {
    ferry_store::NewJob {
        kind: ferry_store::JobKind::ModelSync,
        organization_id: org,
        subject_id: subject,
        execution_id: Uuid::new_v4(),
        payload: json!({"resync": false}),
        connection_ids: connections,
    }
}

/// Waits until a lease taken `lease_millis` ago has certainly expired (the store compares
/// against its own clock; this only lets that clock move past the expiry).
async fn let_lease_expire() {
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
}

async fn job_queue(store: DynStore) {
    use ferry_store::{JobKind, JobStatus, SyncWrite};
    let org = store.create_organization("acme").await.unwrap();
    let salesforce = store
        .create_connection(org.id, write("salesforce"))
        .await
        .unwrap();
    let model = store
        .create_model(org.id, model_write(salesforce.id, "people"))
        .await
        .unwrap();
    let sync = store
        .create_sync(
            org.id,
            SyncWrite {
                name: "people".into(),
                mode: "create".into(),
                target_connection_id: salesforce.id,
                target_object: Some("Contact".into()),
                model_ids: vec![model.id],
                active: true,
                document: json!({}),
                actor: None,
            },
        )
        .await
        .unwrap();

    // Enqueue: the execution and its job together; one unfinished execution per sync.
    let (execution, job) = store
        .enqueue_model_sync(new_job(org.id, sync.id, vec![salesforce.id]), "manual")
        .await
        .unwrap();
    assert_eq!(execution.status, "created");
    assert_eq!(job.execution_id, execution.id);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.connection_ids, vec![salesforce.id]);
    assert!(matches!(
        store
            .enqueue_model_sync(new_job(org.id, sync.id, vec![salesforce.id]), "manual")
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store
            .job_for_execution(execution.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        job.id
    );

    // Kinds the worker cannot run are not claimed.
    let mut bulk_only = claim_request("a", 60_000, 5);
    bulk_only.kinds = vec![JobKind::BulkSync];
    assert!(store.claim_job(&bulk_only).await.unwrap().is_none());

    // Claim, lease held: nobody else gets it.
    let claimed = store
        .claim_job(&claim_request("a", 1, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.status, JobStatus::Running);
    assert_eq!(claimed.lease_owner.as_deref(), Some("a"));
    assert_eq!(claimed.attempts, 1);
    assert!(!store.cancel_queued_job(job.id).await.unwrap());

    // Worker `a` stops heart-beating; `b` takes the job over.
    let_lease_expire().await;
    let taken = store
        .claim_job(&claim_request("b", 60_000, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, job.id);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.lease_owner.as_deref(), Some("b"));
    assert!(
        store
            .claim_job(&claim_request("c", 60_000, 5))
            .await
            .unwrap()
            .is_none(),
        "a live lease is not taken over"
    );
    let lease = std::time::Duration::from_secs(60);
    assert!(!store.heartbeat_job(job.id, "a", lease).await.unwrap());
    assert!(store.heartbeat_job(job.id, "b", lease).await.unwrap());
    assert!(
        !store
            .complete_job(job.id, "a", "completed", None)
            .await
            .unwrap()
    );
    assert!(
        store
            .restart_model_sync_attempt(job.id, "a")
            .await
            .unwrap()
            .is_none()
    );

    // The takeover continues as a new execution; the old attempt is `interrupted`.
    store
        .transition_execution(execution.id, &["created"], "running")
        .await
        .unwrap();
    let second = store
        .restart_model_sync_attempt(job.id, "b")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.id, execution.id);
    assert_eq!(second.status, "created");
    assert_eq!(second.execution_type, "manual");
    assert_eq!(
        store.execution(sync.id, execution.id).await.unwrap().status,
        "interrupted"
    );
    assert_eq!(store.job(job.id).await.unwrap().execution_id, second.id);
    assert!(
        store
            .job_for_execution(execution.id)
            .await
            .unwrap()
            .is_none()
    );

    // A clean stop hands it back; the next claim is attempt 3.
    assert!(store.release_job(job.id, "b").await.unwrap());
    assert!(!store.release_job(job.id, "b").await.unwrap());
    let third = store
        .claim_job(&claim_request("c", 60_000, 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.id, third.attempts), (job.id, 3));
    assert!(
        store
            .complete_job(job.id, "c", "completed", None)
            .await
            .unwrap()
    );
    let done = store.job(job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(done.outcome.as_deref(), Some("completed"));
    assert!(done.finished_at.is_some());
    assert!(
        store
            .claim_job(&claim_request("c", 60_000, 5))
            .await
            .unwrap()
            .is_none()
    );

    // Queued jobs can be canceled before anyone claims them.
    let queued = store
        .enqueue_job(new_job(org.id, Uuid::new_v4(), vec![]))
        .await
        .unwrap();
    assert!(store.cancel_queued_job(queued.id).await.unwrap());
    assert_eq!(
        store.job(queued.id).await.unwrap().outcome.as_deref(),
        Some("canceled")
    );

    let snapshot = store
        .queue_snapshot(Utc::now() - Duration::hours(24))
        .await
        .unwrap();
    assert!(
        snapshot
            .jobs
            .contains(&("model_sync".to_string(), "done".to_string(), 2)),
        "{snapshot:?}"
    );
    assert!(
        snapshot
            .executions
            .contains(&("interrupted".to_string(), 1)),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.records.len(), 6);
}

/// Jobs are claimed oldest first by enqueue time (milliseconds); keeps two enqueues apart.
async fn next_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

async fn job_connection_limits(store: DynStore) {
    let org = store.create_organization("acme").await.unwrap();
    let busy = Uuid::new_v4();
    let quiet = Uuid::new_v4();
    let mut busy_jobs = Vec::new();
    for _ in 0..4 {
        next_millisecond().await;
        busy_jobs.push(
            store
                .enqueue_job(new_job(org.id, Uuid::new_v4(), vec![busy]))
                .await
                .unwrap()
                .id,
        );
    }
    next_millisecond().await;
    let quiet_job = store
        .enqueue_job(new_job(org.id, Uuid::new_v4(), vec![quiet, busy]))
        .await
        .unwrap()
        .id;
    // At most two running jobs per connection; the job that also uses `busy` waits too.
    let request = claim_request("w", 60_000, 2);
    let first = store.claim_job(&request).await.unwrap().unwrap();
    let second = store.claim_job(&request).await.unwrap().unwrap();
    assert_eq!(
        [first.id, second.id],
        [busy_jobs[0], busy_jobs[1]],
        "oldest first"
    );
    assert!(store.claim_job(&request).await.unwrap().is_none());
    assert!(
        store
            .complete_job(first.id, "w", "completed", None)
            .await
            .unwrap()
    );
    let third = store.claim_job(&request).await.unwrap().unwrap();
    assert_eq!(third.id, busy_jobs[2]);
    assert!(store.claim_job(&request).await.unwrap().is_none());
    // An expired lease frees its slot.
    assert!(store.release_job(second.id, "w").await.unwrap());
    assert!(store.release_job(third.id, "w").await.unwrap());
    let short = store
        .claim_job(&claim_request("dead", 1, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(short.id, busy_jobs[1]);
    let_lease_expire().await;
    let mut claimed = Vec::new();
    while let Some(job) = store.claim_job(&request).await.unwrap() {
        claimed.push(job.id);
    }
    // The expired job is taken over first (oldest), then one more fits.
    assert_eq!(claimed, vec![busy_jobs[1], busy_jobs[2]]);
    assert!(!claimed.contains(&quiet_job));

    // Concurrent claims from many workers: each job once, and the cap holds.
    let shared = Uuid::new_v4();
    let mut shared_jobs = Vec::new();
    for _ in 0..10 {
        shared_jobs.push(
            store
                .enqueue_job(new_job(org.id, Uuid::new_v4(), vec![shared]))
                .await
                .unwrap()
                .id,
        );
    }
    let mut free_jobs = Vec::new();
    for _ in 0..10 {
        free_jobs.push(
            store
                .enqueue_job(new_job(org.id, Uuid::new_v4(), vec![]))
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = Vec::new();
    for worker in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .claim_job(&claim_request(&format!("worker-{worker}"), 60_000, 3))
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        if let Some(job) = task.await.unwrap() {
            won.push(job.id);
        }
    }
    let unique: std::collections::HashSet<_> = won.iter().copied().collect();
    assert_eq!(unique.len(), won.len(), "a job was claimed twice");
    assert_eq!(
        won.iter().filter(|id| shared_jobs.contains(id)).count(),
        3,
        "the per-connection cap holds under concurrent claims"
    );
    assert_eq!(won.iter().filter(|id| free_jobs.contains(id)).count(), 10);
}

mod jobs_sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn job_queue() {
        let (store, _dir) = super::sqlite_store().await;
        super::job_queue(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn job_connection_limits() {
        let (store, _dir) = super::sqlite_store().await;
        super::job_connection_limits(store).await;
    }
}

mod jobs_postgres {
    async fn with_postgres(name: &str, run: impl AsyncFnOnce(ferry_store::DynStore)) {
        let Some(db) = super::postgres_database(name).await else {
            return;
        };
        let store = super::PostgresStore::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        run(std::sync::Arc::new(store.clone())).await;
        store.pool().close().await;
        db.drop_database().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn job_queue() {
        with_postgres("job_queue", super::job_queue).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn job_connection_limits() {
        with_postgres("job_connection_limits", super::job_connection_limits).await;
    }
}
