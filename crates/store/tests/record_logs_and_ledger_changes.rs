//! Chunked record logs (reading across chunk boundaries, counting, retention) and the
//! ledger's change query, on SQLite and PostgreSQL.

use std::sync::Arc;

use ferry_store::syncs::RECORD_LOG_EXECUTIONS_KEPT;
use ferry_store::testing::postgres_database;
use ferry_store::{
    ConnectionWrite, DynStore, LedgerEntry, PostgresStore, RecordLine, SqliteStore, SyncWrite,
};
use serde_json::json;
use uuid::Uuid;

async fn sync_of(store: &DynStore) -> Uuid {
    let acme = store.create_organization("acme").await.unwrap();
    let connection = |name: &str, type_id: &str| ConnectionWrite {
        name: name.to_string(),
        type_id: type_id.to_string(),
        configuration: json!({}),
        secrets: None,
        status: "healthy".to_string(),
        status_error: None,
        healthcheck_interval: None,
        policies: vec![],
        actor: None,
    };
    let salesforce = store
        .create_connection(acme.id, connection("sf", "salesforce"))
        .await
        .unwrap();
    let database = store
        .create_connection(acme.id, connection("db", "sqlite"))
        .await
        .unwrap();
    let model = store
        .create_model(
            acme.id,
            ferry_store::ModelWrite {
                connection_id: database.id,
                name: "people".to_string(),
                configuration: json!({"table": "people"}),
                fields: json!([]),
                identifier: None,
                tracking_columns: vec![],
                labels: vec![],
                additional_fields: json!([]),
                relations: json!([]),
                policies: vec![],
                actor: None,
            },
        )
        .await
        .unwrap();
    store
        .create_sync(
            acme.id,
            SyncWrite {
                name: "s".to_string(),
                mode: "updateOrCreate".to_string(),
                target_connection_id: salesforce.id,
                target_object: Some("Contact".to_string()),
                model_ids: vec![model.id],
                active: true,
                document: json!({"name": "s"}),
                actor: None,
            },
        )
        .await
        .unwrap()
        .id
}

fn lines(log_type: &str, from: i64, count: i64) -> Vec<RecordLine> {
    (from..from + count)
        .map(|seq| RecordLine {
            log_type: log_type.to_string(),
            seq,
            line: json!({"n": seq}).to_string(),
        })
        .collect()
}

async fn record_logs(store: DynStore) {
    let sync = sync_of(&store).await;
    let execution = store.create_execution(sync, "manual").await.unwrap();
    assert_eq!(
        store
            .count_execution_records(execution.id, "records")
            .await
            .unwrap(),
        0
    );
    // Appended in three calls (as a run flushes window by window), one with a line break.
    store
        .append_execution_records(execution.id, &lines("records", 0, 2_500))
        .await
        .unwrap();
    let mut odd = lines("records", 2_500, 1);
    odd[0].line = "{\"text\":\"a\nb\"}".to_string();
    odd.extend(lines("errors", 0, 3));
    store
        .append_execution_records(execution.id, &odd)
        .await
        .unwrap();
    store
        .append_execution_records(execution.id, &lines("records", 2_501, 1_499))
        .await
        .unwrap();
    assert_eq!(
        store
            .count_execution_records(execution.id, "records")
            .await
            .unwrap(),
        4_000
    );
    assert_eq!(
        store
            .count_execution_records(execution.id, "errors")
            .await
            .unwrap(),
        3
    );
    // A page crossing chunk boundaries, in order and complete.
    let page = store
        .execution_records(execution.id, "records", 950, 1_700)
        .await
        .unwrap();
    let seqs: Vec<i64> = page.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (950..2_650).collect::<Vec<_>>());
    assert_eq!(page[0].line, "{\"n\":950}");
    assert_eq!(page[2_500 - 950].line, "{\"text\":\"a b\"}");
    assert_eq!(page[2_600 - 950].line, "{\"n\":2600}");
    let tail = store
        .execution_records(execution.id, "records", 3_990, 100)
        .await
        .unwrap();
    assert_eq!(tail.len(), 10);
    assert!(
        store
            .execution_records(execution.id, "records", 4_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let errors = store
        .execution_records(execution.id, "errors", 1, 10)
        .await
        .unwrap();
    assert_eq!(errors.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![1, 2]);

    // Retention: when an execution ends, only the most recent executions keep their logs.
    assert!(
        store
            .transition_execution(execution.id, &["created"], "completed")
            .await
            .unwrap()
    );
    let first = execution.id;
    let mut last = first;
    for n in 0..RECORD_LOG_EXECUTIONS_KEPT {
        // Creation times are milliseconds: keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let next = store.create_execution(sync, "manual").await.unwrap();
        store
            .append_execution_records(next.id, &lines("records", 0, 2))
            .await
            .unwrap();
        let kept = store
            .count_execution_records(first, "records")
            .await
            .unwrap();
        assert_eq!(kept, 4_000, "execution {n}: the first run's logs are kept");
        assert!(
            store
                .transition_execution(next.id, &["created"], "completed")
                .await
                .unwrap()
        );
        last = next.id;
    }
    assert_eq!(
        store
            .count_execution_records(first, "records")
            .await
            .unwrap(),
        0,
        "the oldest execution's logs are gone"
    );
    assert_eq!(
        store.execution(sync, first).await.unwrap().status,
        "completed",
        "the execution itself stays"
    );
    assert_eq!(
        store
            .count_execution_records(last, "records")
            .await
            .unwrap(),
        2
    );
}

async fn ledger_changes(store: DynStore) {
    let sync = sync_of(&store).await;
    store
        .put_ledger_entries(
            sync,
            &[
                LedgerEntry::new(
                    "same",
                    Some("h1".into()),
                    Some("003A".into()),
                    "upserted",
                    None,
                ),
                LedgerEntry::new("other", Some("h2".into()), None, "inserted", None),
                LedgerEntry::new(
                    "failed",
                    Some("h3".into()),
                    None,
                    "failed",
                    Some("X".into()),
                ),
                LedgerEntry::new("nohash", None, None, "pending_create", None),
                LedgerEntry::new("o'brien\"; --", Some("h5".into()), None, "updated", None),
            ],
        )
        .await
        .unwrap();
    let rows = [
        ("same", "h1"),
        ("other", "changed"),
        ("failed", "h3"),
        ("nohash", "h4"),
        ("new", "h6"),
        ("o'brien\"; --", "h5"),
    ];
    let confirmed = ["inserted", "updated", "upserted"];
    let mut changes = store.ledger_changes(sync, &rows, &confirmed).await.unwrap();
    changes.sort_by_key(|(position, _)| *position);
    let got: Vec<(usize, Option<&str>)> = changes
        .iter()
        .map(|(position, entry)| (*position, entry.as_ref().map(|e| e.outcome.as_str())))
        .collect();
    assert_eq!(
        got,
        [
            (1, Some("inserted")),
            (2, Some("failed")),
            (3, Some("pending_create")),
            (4, None),
        ]
    );
    let other = changes[0].1.as_ref().unwrap();
    assert_eq!(other.identity, "other");
    assert_eq!(other.hash.as_deref(), Some("h2"));
    let failed = changes[1].1.as_ref().unwrap();
    assert_eq!(failed.error_code.as_deref(), Some("X"));
    assert!(
        store
            .ledger_changes(sync, &[], &confirmed)
            .await
            .unwrap()
            .is_empty()
    );
    // Many rows at once: positions stay those of the input.
    let many: Vec<LedgerEntry> = (0..12_000)
        .map(|n| {
            LedgerEntry::new(
                format!("id-{n}"),
                Some(format!("h{n}")),
                None,
                "upserted",
                None,
            )
        })
        .collect();
    store.put_ledger_entries(sync, &many).await.unwrap();
    let identities: Vec<String> = (0..12_000).map(|n| format!("id-{n}")).collect();
    let hashes: Vec<String> = (0..12_000)
        .map(|n| {
            if n % 1_000 == 7 {
                "new".to_string()
            } else {
                format!("h{n}")
            }
        })
        .collect();
    let rows: Vec<(&str, &str)> = identities
        .iter()
        .zip(&hashes)
        .map(|(i, h)| (i.as_str(), h.as_str()))
        .collect();
    let mut positions: Vec<usize> = store
        .ledger_changes(sync, &rows, &confirmed)
        .await
        .unwrap()
        .into_iter()
        .map(|(position, _)| position)
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (0..12).map(|k| k * 1_000 + 7).collect::<Vec<_>>()
    );
    assert_eq!(
        store.ledger_entries(sync, &identities).await.unwrap().len(),
        12_000
    );
}

async fn sqlite_store() -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("ferry.db").to_str().unwrap())
        .await
        .unwrap();
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
                    let name = concat!("record_logs_", stringify!($name));
                    let Some(db) = super::postgres_database(name).await else { return };
                    let store = super::PostgresStore::connect(&db.url).await.unwrap();
                    store.migrate().await.unwrap();
                    super::$name(std::sync::Arc::new(store.clone())).await;
                    store.pool().close().await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

conformance!(record_logs, ledger_changes);
