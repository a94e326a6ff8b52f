//! Conformance of syncs, executions, record logs (chunked reads, counts, retention) and the
//! ledger (entries and the change query), on SQLite and PostgreSQL.

use std::sync::Arc;

use ferry_store::syncs::RECORD_LOG_EXECUTIONS_KEPT;
use ferry_store::testing::postgres_database;
use ferry_store::{
    Connection, ConnectionWrite, DynStore, ExecutionCounts, ExecutionPage, LedgerEntry, Model,
    Organization, PostgresStore, RecordLine, SqliteStore, StoreError, SyncFilter, SyncWrite,
};
use serde_json::json;
use uuid::Uuid;

fn connection(name: &str, type_id: &str) -> ConnectionWrite {
    ConnectionWrite {
        name: name.to_string(),
        type_id: type_id.to_string(),
        configuration: json!({}),
        secrets: None,
        status: "healthy".to_string(),
        status_error: None,
        healthcheck_interval: None,
        policies: vec![],
        actor: None,
    }
}

fn model(connection_id: Uuid) -> ferry_store::ModelWrite {
    ferry_store::ModelWrite {
        connection_id,
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
    }
}

fn sync_write(target: Uuid, model_id: Uuid, name: &str, mode: &str) -> SyncWrite {
    SyncWrite {
        name: name.to_string(),
        mode: mode.to_string(),
        target_connection_id: target,
        target_object: Some("Contact".to_string()),
        model_ids: vec![model_id],
        active: true,
        document: json!({"name": name, "mode": mode, "fields": [{"target": "Email"}]}),
        actor: Some("key".to_string()),
    }
}

async fn syncs(store: DynStore) {
    let People {
        acme,
        salesforce,
        database,
        people,
    } = people_of(&store).await;
    let other = store.create_organization("other").await.unwrap();

    // Unknown model / another organization's connection.
    assert!(matches!(
        store
            .create_sync(
                acme.id,
                sync_write(salesforce.id, Uuid::new_v4(), "x", "create")
            )
            .await,
        Err(StoreError::NotFound { entity: "model" })
    ));
    assert!(matches!(
        store
            .create_sync(
                other.id,
                sync_write(salesforce.id, people.id, "x", "create")
            )
            .await,
        Err(StoreError::NotFound {
            entity: "connection"
        })
    ));

    let created = store
        .create_sync(
            acme.id,
            sync_write(salesforce.id, people.id, "to contacts", "updateOrCreate"),
        )
        .await
        .unwrap();
    assert_eq!(created.mode, "updateOrCreate");
    assert_eq!(created.model_ids, vec![people.id]);
    assert!(created.active);
    assert_eq!(created.document["fields"][0]["target"], "Email");
    assert_eq!(store.sync(acme.id, created.id).await.unwrap(), created);
    assert!(matches!(
        store.sync(other.id, created.id).await,
        Err(StoreError::NotFound { entity: "sync" })
    ));
    // Registered on both connections.
    for connection_id in [salesforce.id, database.id] {
        let dependents = store.connection_dependents(connection_id).await.unwrap();
        assert!(
            dependents
                .iter()
                .any(|d| d.kind == "sync" && d.name == "to contacts"),
            "{dependents:?}"
        );
    }

    let second = store
        .create_sync(
            acme.id,
            sync_write(salesforce.id, people.id, "leads", "create"),
        )
        .await
        .unwrap();
    let all = store
        .list_syncs(acme.id, &SyncFilter::default(), 0, 50)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, second.id, "most recently updated first");
    let creates = store
        .list_syncs(
            acme.id,
            &SyncFilter {
                mode: Some("create".into()),
                ..SyncFilter::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    assert_eq!(creates.len(), 1);
    store
        .set_sync_active(acme.id, second.id, false)
        .await
        .unwrap();
    let inactive = store
        .list_syncs(
            acme.id,
            &SyncFilter {
                active: Some(false),
                target_connection_id: Some(salesforce.id),
                ..SyncFilter::default()
            },
            0,
            50,
        )
        .await
        .unwrap();
    assert_eq!(inactive.len(), 1);
    assert_eq!(inactive[0].id, second.id);
    let active: Vec<Uuid> = store
        .list_active_syncs()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(active, vec![created.id]);
    let paged = store
        .list_syncs(acme.id, &SyncFilter::default(), 1, 1)
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);

    // Update renames the dependent link.
    let mut write = sync_write(salesforce.id, people.id, "renamed", "update");
    write.active = false;
    let updated = store.update_sync(acme.id, created.id, write).await.unwrap();
    assert_eq!(updated.name, "renamed");
    assert!(!updated.active);
    assert!(updated.updated_at >= created.updated_at);
    let dependents = store.connection_dependents(salesforce.id).await.unwrap();
    assert!(dependents.iter().any(|d| d.name == "renamed"));
    assert!(!dependents.iter().any(|d| d.name == "to contacts"));

    // Delete removes executions, ledger and links.
    let execution = store.create_execution(created.id, "manual").await.unwrap();
    store
        .put_ledger_entries(
            created.id,
            &[LedgerEntry::new(
                "a@x.com",
                Some("h".into()),
                None,
                "inserted",
                None,
            )],
        )
        .await
        .unwrap();
    store.delete_sync(acme.id, created.id).await.unwrap();
    assert!(matches!(
        store.execution(created.id, execution.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.count_ledger_entries(created.id).await.unwrap(), 0);
    assert!(
        !store
            .connection_dependents(salesforce.id)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == created.id.to_string())
    );
    assert!(matches!(
        store.delete_sync(acme.id, created.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn executions(store: DynStore) {
    let People {
        acme,
        salesforce,
        people,
        ..
    } = people_of(&store).await;
    let sync = store
        .create_sync(acme.id, sync_write(salesforce.id, people.id, "s", "create"))
        .await
        .unwrap();

    let first = store.create_execution(sync.id, "manual").await.unwrap();
    assert_eq!(first.status, "created");
    assert_eq!(first.counts, ExecutionCounts::default());
    assert!(first.started_at.is_none());
    // One unfinished execution per sync.
    assert!(matches!(
        store.create_execution(sync.id, "manual").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.active_execution(sync.id).await.unwrap().unwrap().id,
        first.id
    );
    assert!(
        store
            .transition_execution(first.id, &["created"], "running")
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_execution(first.id, &["created"], "running")
            .await
            .unwrap(),
        "compare-and-set refuses a stale transition"
    );
    let counts = ExecutionCounts {
        total: 3,
        insert: 2,
        update: 1,
        upserts: 0,
        delete: 0,
        error: 1,
        warnings: 2,
    };
    store
        .record_execution_progress(first.id, counts, &["boom".to_string()])
        .await
        .unwrap();
    store
        .append_execution_records(
            first.id,
            &[
                RecordLine {
                    log_type: "errors".into(),
                    seq: 0,
                    line: "{\"a\":1}".into(),
                },
                RecordLine {
                    log_type: "errors".into(),
                    seq: 1,
                    line: "{\"a\":2}".into(),
                },
                RecordLine {
                    log_type: "inserts".into(),
                    seq: 0,
                    line: "{}".into(),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .count_execution_records(first.id, "errors")
            .await
            .unwrap(),
        2
    );
    let lines = store
        .execution_records(first.id, "errors", 1, 10)
        .await
        .unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].line, "{\"a\":2}");
    assert!(
        store
            .transition_execution(first.id, &["running"], "completed")
            .await
            .unwrap()
    );
    let done = store.execution(sync.id, first.id).await.unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.counts, counts);
    assert_eq!(done.errors, vec!["boom".to_string()]);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    assert!(store.active_execution(sync.id).await.unwrap().is_none());
    assert!(matches!(
        store.execution(Uuid::new_v4(), first.id).await,
        Err(StoreError::NotFound { .. })
    ));

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = store.create_execution(sync.id, "resync").await.unwrap();
    store
        .transition_execution(second.id, &["created"], "failed")
        .await
        .unwrap();
    assert_eq!(
        store
            .last_finished_execution(sync.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        second.id
    );
    let page = |ascending, only_completed| ExecutionPage {
        ascending,
        only_completed,
        offset: 0,
        limit: 10,
    };
    let newest: Vec<Uuid> = store
        .list_executions(sync.id, page(false, false))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(newest, vec![second.id, first.id]);
    let oldest: Vec<Uuid> = store
        .list_executions(sync.id, page(true, false))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(oldest, vec![first.id, second.id]);
    let completed = store
        .list_executions(sync.id, page(false, true))
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].id, first.id);
}

async fn ledger(store: DynStore) {
    let People {
        acme,
        salesforce,
        people,
        ..
    } = people_of(&store).await;
    let sync = store
        .create_sync(acme.id, sync_write(salesforce.id, people.id, "s", "create"))
        .await
        .unwrap();

    assert!(
        store
            .ledger_entries(sync.id, &["nobody".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    let many: Vec<LedgerEntry> = (0..1_200)
        .map(|i| {
            LedgerEntry::new(
                format!("id-{i}"),
                Some(format!("h{i}")),
                None,
                "inserted",
                None,
            )
        })
        .collect();
    store.put_ledger_entries(sync.id, &many).await.unwrap();
    assert_eq!(store.count_ledger_entries(sync.id).await.unwrap(), 1_200);
    // Entries of every statement (SQLite writes 1,000 per statement) keep their values.
    for i in [0, 999, 1_000, 1_199] {
        let entry = &store
            .ledger_entries(sync.id, &[format!("id-{i}")])
            .await
            .unwrap()[0];
        assert_eq!(entry.hash.as_deref(), Some(format!("h{i}").as_str()));
        assert_eq!(entry.outcome, "inserted");
    }
    let wanted: Vec<String> = (0..1_200).step_by(2).map(|i| format!("id-{i}")).collect();
    assert_eq!(
        store.ledger_entries(sync.id, &wanted).await.unwrap().len(),
        600
    );

    // Replace: a failure keeps what the caller passes (the engine passes the old hash).
    store
        .put_ledger_entries(
            sync.id,
            &[LedgerEntry::new(
                "id-1",
                Some("h1".into()),
                Some("003000000000001AAA".into()),
                "failed",
                Some("STRING_TOO_LONG".into()),
            )],
        )
        .await
        .unwrap();
    let entry = &store
        .ledger_entries(sync.id, &["id-1".to_string()])
        .await
        .unwrap()[0];
    assert_eq!(entry.outcome, "failed");
    assert_eq!(entry.hash.as_deref(), Some("h1"));
    assert_eq!(entry.record_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(entry.error_code.as_deref(), Some("STRING_TOO_LONG"));
    assert!(entry.updated_at.timestamp() > 0);

    // Identities with quotes and unicode are plain values.
    let odd = "o'brien\"; DROP TABLE x; -- é".to_string();
    store
        .put_ledger_entries(
            sync.id,
            &[LedgerEntry::new(
                odd.clone(),
                None,
                None,
                "pending_create",
                None,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        store.ledger_entries(sync.id, &[odd]).await.unwrap()[0].outcome,
        "pending_create"
    );

    assert!(matches!(
        store
            .put_ledger_entries(
                Uuid::new_v4(),
                &[LedgerEntry::new("x", None, None, "inserted", None)]
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Window marks: replaced as a whole, read in window order, gone with the ledger.
    assert!(store.window_marks(sync.id).await.unwrap().is_empty());
    let marks = [(2, "f2".to_string()), (0, "f0".to_string())];
    store.put_window_marks(sync.id, &marks).await.unwrap();
    assert_eq!(
        store.window_marks(sync.id).await.unwrap(),
        [(0, "f0".to_string()), (2, "f2".to_string())]
    );
    store
        .put_window_marks(sync.id, &[(1, "g1".to_string())])
        .await
        .unwrap();
    assert_eq!(
        store.window_marks(sync.id).await.unwrap(),
        [(1, "g1".to_string())]
    );
    assert!(matches!(
        store
            .put_window_marks(Uuid::new_v4(), &[(0, "x".to_string())])
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Any later write of the ledger ends them.
    store
        .put_ledger_entries(
            sync.id,
            &[LedgerEntry::new("id-2", None, None, "failed", None)],
        )
        .await
        .unwrap();
    assert!(store.window_marks(sync.id).await.unwrap().is_empty());
    store.put_window_marks(sync.id, &marks).await.unwrap();
    store.clear_ledger(sync.id).await.unwrap();
    assert_eq!(store.count_ledger_entries(sync.id).await.unwrap(), 0);
    assert!(store.window_marks(sync.id).await.unwrap().is_empty());
}

/// A sync of a fresh organization (its own Salesforce and SQLite connections and model).
/// Organization `acme` with a Salesforce connection, a SQLite connection and a model of it.
struct People {
    acme: Organization,
    salesforce: Connection,
    database: Connection,
    people: Model,
}

async fn people_of(store: &DynStore) -> People {
    let acme = store.create_organization("acme").await.unwrap();
    let salesforce = store
        .create_connection(acme.id, connection("sf", "salesforce"))
        .await
        .unwrap();
    let database = store
        .create_connection(acme.id, connection("db", "sqlite"))
        .await
        .unwrap();
    let people = store
        .create_model(acme.id, model(database.id))
        .await
        .unwrap();
    People {
        acme,
        salesforce,
        database,
        people,
    }
}

async fn sync_of(store: &DynStore) -> Uuid {
    let People {
        acme,
        salesforce,
        people,
        ..
    } = people_of(store).await;
    store
        .create_sync(
            acme.id,
            sync_write(salesforce.id, people.id, "s", "updateOrCreate"),
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

/// A written record is logged twice, in its own log and in `records`, one line after the
/// other (as the engine does); every log still reads back whole and in order.
async fn record_logs_of_written_records(store: DynStore) {
    let sync = sync_of(&store).await;
    let execution = store.create_execution(sync, "manual").await.unwrap();
    let mut next: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut expected: std::collections::HashMap<&str, Vec<String>> =
        std::collections::HashMap::new();
    let mut push = |batch: &mut Vec<RecordLine>, log_type: &'static str, line: String| {
        let seq = next.entry(log_type).or_insert(0);
        batch.push(RecordLine {
            log_type: log_type.to_string(),
            seq: *seq,
            line: line.clone(),
        });
        expected.entry(log_type).or_default().push(line);
        *seq += 1;
    };
    for (from, to) in [(0, 1_500), (1_500, 3_200)] {
        let mut batch = Vec::new();
        for n in from..to {
            let line = json!({"identity": format!("id-{n}"), "n": n}).to_string();
            let own = match n % 5 {
                0 => "updates",
                4 => "errors",
                _ => "inserts",
            };
            push(&mut batch, own, line.clone());
            push(&mut batch, "records", line);
            if n % 7 == 0 {
                push(&mut batch, "warnings", json!({"warning": n}).to_string());
            }
        }
        // A line of its own log next to a different `records` line stays text.
        push(&mut batch, "errors", json!({"alone": to}).to_string());
        store
            .append_execution_records(execution.id, &batch)
            .await
            .unwrap();
    }
    for (log_type, lines) in &expected {
        let count = store
            .count_execution_records(execution.id, log_type)
            .await
            .unwrap();
        assert_eq!(count, lines.len() as i64, "{log_type}");
        let all = store
            .execution_records(execution.id, log_type, 0, 10_000)
            .await
            .unwrap();
        let got: Vec<&str> = all.iter().map(|line| line.line.as_str()).collect();
        assert_eq!(got, *lines, "{log_type}");
        assert!(all.iter().enumerate().all(|(n, line)| line.seq == n as i64));
        // A page in the middle, across chunks.
        let page = store
            .execution_records(execution.id, log_type, 7, 1_200)
            .await
            .unwrap();
        let want: Vec<&String> = lines.iter().skip(7).take(1_200).collect();
        let got: Vec<&String> = page.iter().map(|line| &line.line).collect();
        assert_eq!(got, want, "{log_type} page");
        assert_eq!(page.first().map(|line| line.seq), lines.get(7).map(|_| 7));
    }
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
    // A repeated identity: each occurrence is reported at its own position.
    let repeated = [("other", "h2"), ("same", "h1"), ("other", "changed")];
    let mut changes = store
        .ledger_changes(sync, &repeated, &confirmed)
        .await
        .unwrap();
    changes.sort_by_key(|(position, _)| *position);
    let positions: Vec<usize> = changes.iter().map(|(position, _)| *position).collect();
    assert_eq!(positions, [2]);
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

/// Transactions that read before they write (creating and updating syncs) run side by side:
/// none may fail because another committed in between (SQLite's deferred-upgrade BUSY).
async fn concurrent_writes(store: DynStore) {
    let People {
        acme,
        salesforce,
        people,
        ..
    } = people_of(&store).await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..10 {
                    let name = format!("sync {task}.{round}");
                    let created = store
                        .create_sync(
                            acme.id,
                            sync_write(salesforce.id, people.id, &name, "create"),
                        )
                        .await
                        .map_err(|error| format!("create {name}: {error}"))?;
                    store
                        .update_sync(
                            acme.id,
                            created.id,
                            sync_write(salesforce.id, people.id, &name, "update"),
                        )
                        .await
                        .map_err(|error| format!("update {name}: {error}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let all = store
        .list_syncs(acme.id, &SyncFilter::default(), 0, 500)
        .await
        .unwrap();
    assert_eq!(all.len(), 80);
    assert!(all.iter().all(|sync| sync.mode == "update"));
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
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
                    let name = concat!("syncs_", stringify!($name));
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

conformance!(
    syncs,
    executions,
    ledger,
    record_logs,
    record_logs_of_written_records,
    ledger_changes,
    concurrent_writes
);

/// Writes a log of records like the engine's and an `errors` chunk in the text form of
/// earlier versions (`packed` NULL); returns the execution and the lines of `records`.
async fn packed_and_text_chunks(store: &DynStore) -> (Uuid, Vec<String>) {
    let sync = sync_of(store).await;
    let execution = store.create_execution(sync, "manual").await.unwrap();
    let records: Vec<String> = (0..3_000)
        .map(|n| {
            json!({"identity": format!("C-{n:09}"), "id": null, "operation": "upsert",
                   "values": {"Email": format!("person{n}@example.com"), "LastName": format!("Last{n}")}})
            .to_string()
        })
        .collect();
    let batch: Vec<RecordLine> = records
        .iter()
        .enumerate()
        .map(|(seq, line)| RecordLine {
            log_type: "records".to_string(),
            seq: seq as i64,
            line: line.clone(),
        })
        .chain(lines("warnings", 0, 3))
        .collect();
    store
        .append_execution_records(execution.id, &batch)
        .await
        .unwrap();
    (execution.id, records)
}

/// What the chunks of an execution's log hold: (chunks, packed ones, text bytes in `line`,
/// bytes in `packed`).
macro_rules! stored_chunks {
    ($pool:expr, $execution:expr, $log:expr) => {{
        let row = sqlx::query(
            "SELECT COUNT(*) AS chunks, COUNT(packed) AS packed, \
             COALESCE(SUM(LENGTH(line)), 0) AS text, \
             COALESCE(SUM(LENGTH(packed)), 0) AS packed_bytes \
             FROM sync_execution_records WHERE execution_id = $1 AND log_type = $2",
        )
        .bind($execution.to_string())
        .bind($log)
        .fetch_one($pool)
        .await
        .unwrap();
        use sqlx::Row as _;
        (
            row.get::<i64, _>("chunks"),
            row.get::<i64, _>("packed"),
            row.get::<i64, _>("text"),
            row.get::<i64, _>("packed_bytes"),
        )
    }};
}

/// Checks the stored form, adds a chunk as earlier versions wrote it, and reads both back.
macro_rules! packed_record_logs {
    ($store:expr, $pool:expr) => {{
        let store: DynStore = $store;
        let (execution, records) = packed_and_text_chunks(&store).await;
        let (chunks, packed, text, packed_bytes) =
            stored_chunks!($pool, execution, "records");
        let original: usize = records.iter().map(|line| line.len() + 1).sum();
        assert!(chunks >= 3 && packed == chunks, "{chunks} chunks, {packed} packed");
        assert_eq!(text, 0, "packed chunks keep no text");
        assert!(
            (packed_bytes as usize) * 3 < original,
            "{packed_bytes} bytes packed from {original}"
        );
        // Three short lines stay text.
        assert_eq!(stored_chunks!($pool, execution, "warnings").1, 0);
        // A chunk written before packing existed.
        sqlx::query(
            "INSERT INTO sync_execution_records (execution_id, log_type, seq, line) \
             VALUES ($1, 'errors', 0, $2)",
        )
        .bind(execution.to_string())
        .bind("{\"e\":0}\n{\"e\":1}")
        .execute($pool)
        .await
        .unwrap();
        let read = store
            .execution_records(execution, "records", 0, 10_000)
            .await
            .unwrap();
        assert_eq!(read.iter().map(|l| &l.line).collect::<Vec<_>>(), records.iter().collect::<Vec<_>>());
        let page = store
            .execution_records(execution, "records", 1_234, 5)
            .await
            .unwrap();
        assert_eq!(page[0].line, records[1_234]);
        assert_eq!(store.count_execution_records(execution, "records").await.unwrap(), 3_000);
        let errors = store.execution_records(execution, "errors", 0, 10).await.unwrap();
        assert_eq!(errors.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["{\"e\":0}", "{\"e\":1}"]);
        assert_eq!(store.count_execution_records(execution, "errors").await.unwrap(), 2);
        // A damaged chunk is reported, not read as something else.
        sqlx::query("UPDATE sync_execution_records SET packed = $1 WHERE execution_id = $2 AND log_type = 'records' AND seq = 0")
            .bind(vec![200u8, 0, 0, 0, 1, 2, 3])
            .bind(execution.to_string())
            .execute($pool)
            .await
            .unwrap();
        let damaged = store.execution_records(execution, "records", 0, 10).await;
        assert!(matches!(&damaged, Err(StoreError::Corrupt(message)) if message.contains("packed record log")), "{damaged:?}");
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_record_logs_are_packed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("ferry.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    packed_record_logs!(Arc::new(store.clone()), store.pool());
}

#[tokio::test]
async fn postgres_record_logs_are_packed() {
    let Some(db) = postgres_database("syncs_record_logs_are_packed").await else {
        return;
    };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    packed_record_logs!(Arc::new(store.clone()), store.pool());
    store.pool().close().await;
    db.drop_database().await;
}
