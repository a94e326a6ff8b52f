//! A worker that loses its job's lease while a model sync runs (another claim took the job
//! over) never shows the execution `canceled`: it hands the attempt off — `interrupted`
//! plus its successor — before stopping the engine, or finds that the new owner already
//! did. Both orders are reproduced deterministically by stealing the lease in the store
//! while the in-process worker runs; a trigger records every status the executions ever
//! take, so a `canceled` that was corrected afterwards is seen too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::jobs::WorkerSettings;
use ferry_api::{ApiSettings, AppState};
use ferry_connectors::RegistrySettings;
use ferry_connectors::salesforce::SalesforceSettings;
use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use ferry_store::secrets::Cipher;
use ferry_store::{JobStatus, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Row as _};
use tower::ServiceExt as _;
use uuid::Uuid;

/// People in the model: three REST windows of 2,000, written 200 at a time.
const PEOPLE: usize = 6_000;

/// A hang guard, not a performance assertion.
const PATIENCE: Duration = Duration::from_secs(120);

/// The thief's lease owner name.
const THIEF: &str = "another-worker/stolen";

struct Harness {
    app: Router,
    state: AppState,
    key: String,
    pool: sqlx::SqlitePool,
    emulator: RunningEmulator,
    source_path: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::connect(dir.path().join("meta.db").to_str().expect("utf-8"))
            .await
            .expect("store");
        store.migrate().await.expect("migrations");
        let pool = store.pool().clone();
        // Every status an execution ever takes, in order.
        pool.execute(
            "CREATE TABLE test_status_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             execution_id TEXT NOT NULL, status TEXT NOT NULL); \
             CREATE TRIGGER test_status_log_update AFTER UPDATE OF status ON sync_executions \
             WHEN new.status IS NOT old.status BEGIN \
             INSERT INTO test_status_log (execution_id, status) VALUES (new.id, new.status); \
             END;",
        )
        .await
        .expect("status trigger");
        let store: ferry_store::DynStore = Arc::new(store);
        let org = store.create_organization("default").await.expect("org");
        let key = store
            .create_api_key(org.id, None)
            .await
            .expect("key")
            .plaintext;
        let registry = ferry_connectors::registry_with(RegistrySettings {
            salesforce: SalesforceSettings {
                oauth_app: Some(OAuthApp::new("ferry-emulator", "ferry-emulator-secret")),
                root_certificates_pem: Vec::new(),
            },
        });
        let state = AppState::new(
            store,
            registry,
            Cipher::from_key(&[7u8; 32]),
            ApiSettings::default(),
        );
        // A short lease so the lost lease is noticed quickly (heartbeats every 300 ms).
        state.local_workers().start(
            &state,
            WorkerSettings {
                lease: Duration::from_millis(900),
                poll: Duration::from_millis(100),
                ..WorkerSettings::default()
            },
        );
        let source_path = dir.path().join("people.db");
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&source_path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("people db");
        connection
            .execute(
                "CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT)",
            )
            .await
            .expect("people table");
        let values: Vec<String> = (0..PEOPLE)
            .map(|n| format!("('person{n:05}@example.com', 'First{n}', 'Last{n}')"))
            .collect();
        connection
            .execute(format!("INSERT INTO people VALUES {}", values.join(", ")).as_str())
            .await
            .expect("people rows");
        connection.close().await.expect("close");
        Harness {
            app: ferry_api::router(state.clone()),
            state,
            key,
            pool,
            emulator,
            source_path: source_path.to_str().expect("utf-8").to_string(),
            _dir: dir,
        }
    }

    async fn ok(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.key));
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
            None => builder.body(Body::empty()).expect("request"),
        };
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {body}");
        body["data"].clone()
    }

    /// Salesforce latency per call (slows the run down so it can be caught running).
    async fn latency(&self, millis: u64) {
        let response = reqwest::Client::new()
            .put(format!("{}/__emulator/faults", self.emulator.base_url()))
            .json(&json!({"latencyMs": millis}))
            .send()
            .await
            .expect("faults");
        assert!(response.status().is_success());
    }

    /// A REST `updateOrCreate` sync of the people into Contact, by Email.
    async fn sync(&self) -> Uuid {
        let salesforce = self
            .ok(
                "POST",
                "/api/connections",
                Some(
                    json!({"name": "salesforce", "type": "salesforce", "configuration": {
                    "domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
                    "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
                ),
            )
            .await;
        let people = self
            .ok(
                "POST",
                "/api/connections",
                Some(json!({"name": "people", "type": "sqlite",
                            "configuration": {"path": self.source_path}})),
            )
            .await;
        let model = self
            .ok(
                "POST",
                "/api/models",
                Some(json!({"name": "people", "connection_id": people["id"],
                            "configuration": {"table": "people"}, "identifier": "email"})),
            )
            .await;
        let source = |field: &str| json!({"model_id": model["id"], "field": field});
        let sync = self
            .ok(
                "POST",
                "/api/syncs",
                Some(json!({
                    "name": "people",
                    "mode": "updateOrCreate",
                    "target": {"connection_id": salesforce["id"], "object": "Contact",
                               "configuration": {"ingestion_api": "rest", "rest_batch_size": 200,
                                                 "concurrency_mode": "Serial"}},
                    "identity": {"source": source("email"), "target": "Email",
                                 "function": "Equality"},
                    "fields": [
                        {"target": "FirstName", "source": source("first_name")},
                        {"target": "LastName", "source": source("last_name")},
                    ],
                    "schedule": {"frequency": "manual"},
                })),
            )
            .await;
        sync["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("sync id")
    }

    /// Starts an execution; returns it and its job.
    async fn start(&self, sync: Uuid) -> (Uuid, Uuid) {
        let started = self
            .ok(
                "POST",
                &format!("/api/syncs/{sync}/executions"),
                Some(json!({})),
            )
            .await;
        let execution: Uuid = started["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("execution id");
        let job = self
            .state
            .store()
            .job_for_execution(execution)
            .await
            .expect("job lookup")
            .expect("a job");
        (execution, job.id)
    }

    async fn status(&self, sync: Uuid, execution: Uuid) -> String {
        self.state
            .store()
            .execution(sync, execution)
            .await
            .expect("execution")
            .status
    }

    /// Waits until the execution runs and has committed its first window.
    async fn wait_running(&self, sync: Uuid, execution: Uuid) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let current = self
                .state
                .store()
                .execution(sync, execution)
                .await
                .expect("execution");
            if current.status == "running" && current.counts.total > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the execution did not start: {current:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the job's lease over in the store, as another worker's claim would.
    async fn steal(&self, job: Uuid) {
        let stolen = sqlx::query(
            "UPDATE jobs SET lease_owner = $1, attempts = attempts + 1, \
             lease_expires_at = lease_expires_at + 600000 WHERE id = $2 AND status = 'running'",
        )
        .bind(THIEF)
        .bind(job.to_string())
        .execute(&self.pool)
        .await
        .expect("stealing the lease");
        assert_eq!(stolen.rows_affected(), 1);
    }

    /// Waits until this process no longer runs an execution of the sync.
    async fn wait_stopped(&self, sync: Uuid) {
        let deadline = Instant::now() + PATIENCE;
        while self.state.sync_runner().running_execution(sync).is_some() {
            assert!(Instant::now() < deadline, "the losing run did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the job is done; returns the status of its (last) execution.
    async fn settle(&self, sync: Uuid, job: Uuid) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let current = self.state.store().job(job).await.expect("job");
            if current.status == JobStatus::Done {
                return self.status(sync, current.execution_id).await;
            }
            assert!(
                Instant::now() < deadline,
                "the job did not finish: {current:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Changes every person's last name, so the next run writes every row again.
    async fn rename_everyone(&self) {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.source_path)
            .connect()
            .await
            .expect("people db");
        connection
            .execute("UPDATE people SET last_name = last_name || ' (2)'")
            .await
            .expect("update");
        connection.close().await.expect("close");
    }

    /// Every status any execution took.
    async fn status_log(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT execution_id, status FROM test_status_log ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .expect("status log")
            .iter()
            .map(|row| (row.get("execution_id"), row.get("status")))
            .collect()
    }

    async fn contacts(&self) -> usize {
        let login =
            ferry_salesforce::auth::login_base_url(&self.emulator.base_url()).expect("login url");
        let client = SalesforceClient::connect(ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        ))
        .await
        .expect("salesforce client");
        client
            .query_all_pages("SELECT Id FROM Contact", QueryScope::Live)
            .await
            .expect("contacts")
            .len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_never_shows_canceled() {
    let h = Harness::new().await;
    h.latency(40).await;
    let sync = h.sync().await;
    let store = h.state.store();

    // 1. The losing worker notices first: it hands the attempt off itself.
    let (first, job) = h.start(sync).await;
    h.wait_running(sync, first).await;
    h.steal(job).await;
    h.wait_stopped(sync).await;
    assert_eq!(h.status(sync, first).await, "interrupted");
    let handed_off = store.job(job).await.expect("job");
    assert_ne!(
        handed_off.execution_id,
        first,
        "the successor is written: {handed_off:?} {:?}",
        h.status_log().await
    );
    assert_eq!(handed_off.lease_owner.as_deref(), Some(THIEF));
    assert_eq!(h.status(sync, handed_off.execution_id).await, "created");
    // The new owner continues with that successor rather than writing another.
    let continued = store
        .take_over_model_sync_attempt(job, THIEF, first)
        .await
        .expect("restart")
        .expect("the job continues");
    assert_eq!(continued.id, handed_off.execution_id);
    assert_eq!(continued.status, "created");
    // It hands the job back; the worker finishes it.
    assert!(store.release_job(job, THIEF).await.expect("release"));
    assert_eq!(h.settle(sync, job).await, "completed");
    assert_eq!(h.contacts().await, PEOPLE);

    // 2. The new owner restarts the attempt before the losing worker notices.
    h.rename_everyone().await;
    let (second, job) = h.start(sync).await;
    h.wait_running(sync, second).await;
    h.steal(job).await;
    let next = store
        .take_over_model_sync_attempt(job, THIEF, second)
        .await
        .expect("restart")
        .expect("the job continues");
    assert_ne!(next.id, second);
    h.wait_stopped(sync).await;
    assert_eq!(h.status(sync, second).await, "interrupted");
    assert_eq!(store.job(job).await.expect("job").execution_id, next.id);
    assert_eq!(h.status(sync, next.id).await, "created");
    assert!(store.release_job(job, THIEF).await.expect("release"));
    assert_eq!(h.settle(sync, job).await, "completed");
    assert_eq!(h.contacts().await, PEOPLE);

    // No execution ever took the status `canceled`, not even for a moment.
    let log = h.status_log().await;
    assert!(
        log.iter().all(|(_, status)| status != "canceled"),
        "{log:?}"
    );
    for stopped in [first, second] {
        let statuses: Vec<&str> = log
            .iter()
            .filter(|(id, _)| *id == stopped.to_string())
            .map(|(_, status)| status.as_str())
            .collect();
        assert_eq!(statuses, ["running", "interrupted"], "{stopped}");
    }
    h.state.local_workers().stop();
    h.state
        .sync_runner()
        .shutdown(Duration::from_secs(10))
        .await;
}
