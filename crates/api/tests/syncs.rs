//! Model syncs end to end: a SQLite model of people written into the in-process Salesforce
//! emulator through the API, with the metadata store on SQLite and (when reachable)
//! PostgreSQL. Salesforce state is checked through the emulator's own REST API and its
//! call counters.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use ferry_api::ApiSettings;
use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use ferry_store::DynStore;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

const PEOPLE: &str = "
    CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, age INTEGER,
                         account TEXT);
    INSERT INTO people VALUES
        ('ada@example.com', 'Ada', 'Lovelace', 36, NULL),
        ('grace@example.com', 'Grace', 'Hopper', 85, NULL),
        ('alan@example.com', 'Alan', 'Turing', 41, NULL),
        ('o''brien@example.com', 'Pat', 'O''Brien', 17, NULL),
        ('linus@example.com', 'Linus', 'Torvalds', 54, NULL);";

mod support;

use support::{Api, sqlite_store};

struct Harness {
    api: Api,
    emulator: RunningEmulator,
    http: reqwest::Client,
    salesforce: SalesforceClient,
    source_path: String,
    _dir: tempfile::TempDir,
    pg: Option<ferry_store::testing::TestDatabase>,
}

impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    async fn new(store: Option<(DynStore, ferry_store::testing::TestDatabase)>) -> Harness {
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = match store {
            Some((store, pg)) => (store, Some(pg)),
            None => (sqlite_store(&dir).await, None),
        };
        let api = Api::new(store).await;
        let source_path = dir.path().join("people.db");
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&source_path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        connection.execute(PEOPLE).await.unwrap();
        connection.close().await.unwrap();
        let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).unwrap();
        let salesforce = SalesforceClient::connect(ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        ))
        .await
        .unwrap();
        Harness {
            api,
            emulator,
            http: reqwest::Client::new(),
            salesforce,
            source_path: source_path.to_str().unwrap().to_string(),
            _dir: dir,
            pg,
        }
    }

    async fn source(&self, sql: &str) {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.source_path)
            .connect()
            .await
            .unwrap();
        connection.execute(sql).await.unwrap();
        connection.close().await.unwrap();
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(
            method,
            format!("{}/__emulator/{path}", self.emulator.base_url()),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    /// Write calls (collections create/update/upsert/delete) made so far.
    async fn write_calls(&self) -> u64 {
        let calls = self.admin(reqwest::Method::GET, "calls", None).await;
        calls["calls"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(endpoint, _)| {
                endpoint.contains("/composite/sobjects")
                    && !endpoint.starts_with("GET")
                    && !endpoint.starts_with("POST /services/data/v62.0/composite/sobjects/")
            })
            .map(|(_, n)| n.as_u64().unwrap_or(0))
            .sum()
    }

    /// The sync's window marks, `(window number, fingerprint)` in window order.
    async fn marks(&self, sync: &str) -> Vec<(i64, String)> {
        let sync_id: uuid::Uuid = sync.parse().unwrap();
        self.state.store().window_marks(sync_id).await.unwrap()
    }

    async fn query(&self, soql: &str) -> Vec<serde_json::Map<String, Value>> {
        self.salesforce
            .query_all_pages(soql, QueryScope::Live)
            .await
            .unwrap()
    }

    async fn salesforce_connection(&self, extra: Value) -> String {
        let mut configuration = json!({
            "domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
            "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"});
        for (k, v) in extra.as_object().unwrap() {
            configuration[k] = v.clone();
        }
        let data = self
            .ok(
                "POST",
                "/api/connections",
                Some(json!({"name": "salesforce", "type": "salesforce", "configuration": configuration})),
            )
            .await;
        data["id"].as_str().unwrap().to_string()
    }

    async fn people_model(&self) -> String {
        let data = self
            .ok(
                "POST",
                "/api/connections",
                Some(json!({"name": "people db", "type": "sqlite",
                            "configuration": {"path": self.source_path}})),
            )
            .await;
        let connection = data["id"].as_str().unwrap().to_string();
        let model = self
            .ok(
                "POST",
                "/api/models",
                Some(json!({"name": "people", "connection_id": connection,
                            "configuration": {"table": "people"}, "identifier": "email"})),
            )
            .await;
        model["id"].as_str().unwrap().to_string()
    }

    /// A sync document of the people model into `object`.
    fn sync_body(
        &self,
        connection: &str,
        model: &str,
        object: &str,
        mode: &str,
        configuration: Value,
    ) -> Value {
        let source = |field: &str| json!({"model_id": model, "field": field});
        json!({
            "name": format!("people to {object}"),
            "mode": mode,
            "target": {"connection_id": connection, "object": object, "configuration": configuration},
            "identity": {"source": source("email"), "target": "Email", "function": "Equality"},
            "fields": [
                {"target": "FirstName", "source": source("first_name")},
                {"target": "LastName", "source": source("last_name")},
            ],
            "schedule": {"frequency": "manual"},
        })
    }

    async fn create_sync(&self, body: Value) -> String {
        let data = self.ok("POST", "/api/syncs", Some(body)).await;
        data["id"].as_str().unwrap().to_string()
    }

    /// Starts an execution and waits for it to end; returns the execution.
    async fn run(&self, sync: &str, body: Value) -> Value {
        let started = self
            .ok("POST", &format!("/api/syncs/{sync}/executions"), Some(body))
            .await;
        let id = started["id"].as_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let execution = self
                .ok("GET", &format!("/api/syncs/{sync}/executions/{id}"), None)
                .await;
            let status = execution["status"].as_str().unwrap();
            if ["completed", "failed", "canceled", "interrupted"].contains(&status) {
                return execution;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("execution {id} did not finish");
    }

    /// Every line of an execution's log.
    async fn log(&self, sync: &str, execution: &Value, log_type: &str) -> Vec<Value> {
        let id = execution["id"].as_str().unwrap();
        let data = self
            .ok(
                "GET",
                &format!("/api/syncs/{sync}/executions/{id}/{log_type}"),
                None,
            )
            .await;
        assert!(data["expires"].is_string());
        let mut lines = Vec::new();
        for url in data["urls"].as_array().unwrap() {
            let path = url
                .as_str()
                .unwrap()
                .strip_prefix(&ApiSettings::default().public_base_url)
                .unwrap()
                .to_string();
            let (status, bytes) = self.call_raw("GET", &path, None).await;
            assert_eq!(status, StatusCode::OK);
            for line in String::from_utf8(bytes.to_vec()).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
        lines
    }

    async fn finish(self) {
        self.state
            .sync_runner()
            .shutdown(Duration::from_secs(10))
            .await;
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

fn counts(execution: &Value) -> Value {
    execution["counts"].clone()
}

fn assert_counts(execution: &Value, expected: Value) {
    assert_eq!(execution["status"], "completed", "{execution}");
    let actual = counts(execution);
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&actual[key], value, "count {key}: {execution}");
    }
}

async fn contacts(h: &Harness) -> Vec<serde_json::Map<String, Value>> {
    h.query("SELECT Id, Email, FirstName, LastName, AccountId FROM Contact ORDER BY Email")
        .await
}

/// The main story: create, no-op rerun, one change, a rejected row retried, logs.
async fn update_or_create(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "updateOrCreate",
        json!({"ingestion_api": "rest", "rest_batch_size": 2, "insert_null_values": false,
               "invalid_relationships": "", "only_sync_different": false,
               "sort_batches_by": "LastName", "concurrency_mode": "Serial"}),
    );
    let sync = h.create_sync(body).await;
    let fetched = h.ok("GET", &format!("/api/syncs/{sync}"), None).await;
    assert_eq!(fetched["mode"], "updateOrCreate");
    assert_eq!(fetched["model_ids"], json!([model]));
    assert_eq!(fetched["target"]["object"], "Contact");
    let listed = h.ok("GET", "/api/syncs", None).await;
    assert_eq!(listed[0]["target_object"], "Contact");

    let before = h.write_calls().await;
    let first = h.run(&sync, json!({})).await;
    assert_counts(
        &first,
        json!({"total": 5, "insert": 5, "update": 0, "error": 0}),
    );
    assert_eq!(first["type"], "manual");
    assert_eq!(h.write_calls().await - before, 3, "5 rows in batches of 2");
    // The run raised its events (spec §6), with the execution's counts.
    let mut completed = Value::Null;
    for _ in 0..40 {
        let events = h.ok("GET", "/api/events?type=sync.completed", None).await;
        if let Some(event) = events.as_array().and_then(|e| e.first()) {
            completed = event.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        completed["event"]["execution_id"], first["id"],
        "{completed}"
    );
    assert_eq!(completed["event"]["inserted_count"], 5);
    assert_eq!(completed["event"]["sync_id"], json!(sync));
    let running = h.ok("GET", "/api/events?type=sync.running", None).await;
    assert_eq!(running[0]["event"]["execution_id"], first["id"]);
    let stored = contacts(&h).await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[4]["Email"], "o'brien@example.com");
    assert_eq!(stored[4]["LastName"], "O'Brien");
    let inserts = h.log(&sync, &first, "inserts").await;
    assert_eq!(inserts.len(), 5);
    // sort_batches_by LastName with Serial batches: written in LastName order.
    let order: Vec<&str> = inserts
        .iter()
        .map(|line| line["values"]["LastName"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec!["Hopper", "Lovelace", "O'Brien", "Torvalds", "Turing"]
    );
    assert!(
        inserts
            .iter()
            .all(|line| line["id"].as_str().is_some_and(|id| id.len() == 18))
    );
    let records = h.log(&sync, &first, "records").await;
    assert_eq!(records.len(), 5);
    // Every row of the one read window was confirmed: the window is marked.
    let sync_id: uuid::Uuid = sync.parse().unwrap();
    let marks = h.marks(&sync).await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].0, 0);

    // A crash between Salesforce's confirmation and the ledger commit: the ledger only
    // says the creates were in flight. The next run looks the identities up and updates
    // the existing records instead of creating duplicates. (Writing the ledger ends the
    // window's mark: marks describe the ledger as the last run left it.)
    let in_flight: Vec<ferry_store::LedgerEntry> = stored
        .iter()
        .map(|c| {
            ferry_store::LedgerEntry::new(
                c["Email"].as_str().unwrap(),
                None,
                None,
                "pending_create",
                None,
            )
        })
        .collect();
    h.state
        .store()
        .put_ledger_entries(sync_id, &in_flight)
        .await
        .unwrap();
    let recovered = h.run(&sync, json!({})).await;
    assert_counts(&recovered, json!({"total": 5, "insert": 0, "update": 5}));
    assert_eq!(contacts(&h).await.len(), 5, "no duplicates after a crash");

    // Nothing changed: nothing is sent.
    let before = h.write_calls().await;
    let second = h.run(&sync, json!({})).await;
    assert_counts(&second, json!({"total": 0, "insert": 0, "update": 0}));
    assert_eq!(
        h.write_calls().await,
        before,
        "an unchanged run writes nothing"
    );
    let marks = h.marks(&sync).await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    if h.pg.is_none() {
        // The marked window is skipped whole, its rows not even looked up: with the
        // ledger changed behind the store's back (which Ferry itself never does) the
        // next run still sends nothing, where a lookup would have retried the row.
        let meta = h._dir.path().join("meta.db");
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&meta)
            .connect()
            .await
            .unwrap();
        let behind = "UPDATE sync_ledger SET outcome = 'failed' WHERE identity = 'ada@example.com'";
        db.execute(behind).await.unwrap();
        let skipped = h.run(&sync, json!({})).await;
        assert_counts(&skipped, json!({"total": 0, "update": 0}));
        assert_eq!(h.write_calls().await, before);
        // A test run reads the marks too, and leaves them.
        let test = h.run(&sync, json!({"test": true})).await;
        assert_counts(&test, json!({"total": 0, "update": 0}));
        assert_eq!(h.marks(&sync).await, marks);
        // A resync pushes every row whatever the marks say (and marks the window again).
        let resync = h.run(&sync, json!({"resync": true})).await;
        assert_counts(&resync, json!({"total": 5, "update": 5}));
        assert_eq!(h.marks(&sync).await, marks);
        db.close().await.unwrap();
    }

    // One change: exactly one update.
    h.source("UPDATE people SET first_name = 'Augusta Ada' WHERE email = 'ada@example.com'")
        .await;
    let before = h.write_calls().await;
    let third = h.run(&sync, json!({})).await;
    assert_counts(&third, json!({"total": 1, "insert": 0, "update": 1}));
    assert_eq!(h.write_calls().await - before, 1);
    let ada = h
        .query("SELECT FirstName FROM Contact WHERE Email = 'ada@example.com'")
        .await;
    assert_eq!(ada[0]["FirstName"], "Augusta Ada");

    // A value Salesforce rejects: one error with its code and identity, retried next run.
    let long = "x".repeat(81);
    h.source(&format!(
        "UPDATE people SET last_name = '{long}' WHERE email = 'alan@example.com'"
    ))
    .await;
    let fourth = h.run(&sync, json!({})).await;
    assert_counts(&fourth, json!({"total": 1, "update": 0, "error": 1}));
    assert!(
        h.marks(&sync).await.is_empty(),
        "a window with a failed row is not marked"
    );
    let errors = h.log(&sync, &fourth, "errors").await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["identity"], "alan@example.com");
    assert_eq!(errors[0]["error_code"], "STRING_TOO_LONG");
    let fifth = h.run(&sync, json!({})).await;
    assert_counts(&fifth, json!({"total": 1, "error": 1}));
    h.source("UPDATE people SET last_name = 'Mathison Turing' WHERE email = 'alan@example.com'")
        .await;
    let sixth = h.run(&sync, json!({})).await;
    assert_counts(&sixth, json!({"total": 1, "update": 1, "error": 0}));
    let marks = h.marks(&sync).await;
    assert_eq!(marks.len(), 1, "clean again: {marks:?}");

    // Resync re-pushes everything (as updates: the records exist).
    let resync = h.run(&sync, json!({"resync": true})).await;
    assert_counts(&resync, json!({"total": 5, "update": 5, "insert": 0}));
    assert_eq!(resync["type"], "resync");

    // Executions list, newest first, and status.
    let executions = h
        .ok(
            "GET",
            &format!("/api/syncs/{sync}/executions?limit=2"),
            None,
        )
        .await;
    assert_eq!(executions.as_array().unwrap().len(), 2);
    assert_eq!(executions[0]["id"], resync["id"]);
    let (_, page) = h
        .call(
            "GET",
            &format!("/api/syncs/{sync}/executions?limit=2"),
            None,
        )
        .await;
    let token = page["pagination"]["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    let next = h
        .ok(
            "GET",
            &format!("/api/syncs/{sync}/executions?limit=2&page_token={token}"),
            None,
        )
        .await;
    assert_eq!(next[0]["id"], fifth["id"]);
    let status = h
        .ok("GET", &format!("/api/syncs/{sync}/status"), None)
        .await;
    assert_eq!(status["last_execution"]["id"], resync["id"]);
    assert!(status["current_execution"].is_null());

    // Unknown log type, delete.
    let (code, _) = h
        .call(
            "GET",
            &format!(
                "/api/syncs/{sync}/executions/{}/nope",
                first["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = h.call("DELETE", &format!("/api/syncs/{sync}"), None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = h.call("GET", &format!("/api/syncs/{sync}"), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    h.finish().await;
}

/// Validation names the field; published examples are accepted verbatim.
async fn validation(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    // Target discovery.
    let (status, objects) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/targetobjects"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{objects}");
    let contact = objects["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "Contact")
        .expect("Contact is a target")
        .clone();
    assert!(
        contact["modes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "updateOrCreate")
    );
    assert_eq!(objects["target_creation"]["supported"], false);
    let fields = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/target/fields?target=Contact"),
            None,
        )
        .await;
    let field = |name: &str| {
        fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    assert_eq!(field("Email")["supports_identity"], true);
    assert_eq!(field("Email")["type"], "string");
    assert_eq!(field("LastName")["required"], true);
    assert_eq!(field("LastName")["supports_identity"], false);
    assert_eq!(field("AccountId")["association"], true);
    let (status, error) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/target/fields?target=Nope__c"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["metadata"]["field"], "target");

    let published = json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "ingestion_api": "bulk", "insert_null_values": false, "invalid_relationships": "", "only_sync_different": false, "rest_batch_size": 200, "sort_batches_by": "AccountId"});
    h.create_sync(h.sync_body(&connection, &model, "Contact", "updateOrCreate", published))
        .await;
    let lead = json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "ignore_invalid_references": false, "ingestion_api": "bulk", "insert_null_values": false, "invalid_relationships": "", "only_sync_different": false, "rest_batch_size": 200, "skip_converted": false, "sort_batches_by": "AccountId"});
    let mut body = h.sync_body(&connection, &model, "Lead", "updateOrCreate", lead);
    body["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"target": "Company", "override_value": "Ferry"}));
    // The published Lead example names `AccountId`, which Lead does not have: accepted as
    // written (each run then warns that batches keep the model's order).
    h.create_sync(body.clone()).await;
    body["target"]["configuration"]["sort_batches_by"] = json!("Company");
    h.create_sync(body).await;

    let base = h.sync_body(&connection, &model, "Contact", "updateOrCreate", json!({}));
    type Patch = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Patch, &str, &str)> = vec![
        (
            Box::new(|b| {
                b.as_object_mut().unwrap().remove("mode");
            }),
            "mode",
            "required",
        ),
        (
            Box::new(|b| b["mode"] = json!("replace")),
            "mode",
            "not supported yet",
        ),
        (
            Box::new(|b| b["mode"] = json!("sideways")),
            "mode",
            "updateOrCreate",
        ),
        (
            Box::new(|b| b["policies"] = json!(["5b2b6a3e-0000-4000-8000-000000000000"])),
            "policies",
            "not available on this server",
        ),
        (
            Box::new(|b| b["identity"] = Value::Null),
            "identity",
            "required",
        ),
        (
            Box::new(|b| b["schedule"]["frequency"] = json!("hourly")),
            "schedule.frequency",
            "needs the scheduler",
        ),
        (
            Box::new(|b| {
                b["schedule"] =
                    json!({"frequency": "runafter", "run_after": {"bulk_sync_ids": ["x"]}})
            }),
            "schedule.run_after.bulk_sync_ids",
            "not supported yet",
        ),
        (
            Box::new(|b| b["target"]["object"] = json!("Nope__c")),
            "target.object",
            "not an object",
        ),
        (
            Box::new(|b| b["fields"][0]["target"] = json!("Nope__c")),
            "fields[0].target",
            "not a field of Contact",
        ),
        (
            Box::new(|b| b["fields"][0]["source"]["field"] = json!("nope")),
            "fields[0].source.field",
            "not an enabled field",
        ),
        (
            Box::new(|b| b["identity"]["target"] = json!("LastName")),
            "identity.target",
            "cannot identify",
        ),
        (
            Box::new(|b| b["target"]["configuration"] = json!({"ingestion_api": "soap"})),
            "target.configuration.ingestion_api",
            "automatic, bulk, rest",
        ),
        (
            Box::new(|b| b["target"]["configuration"] = json!({"rest_batch_size": 201})),
            "target.configuration.rest_batch_size",
            "1 to 200",
        ),
        (
            Box::new(|b| b["target"]["configuration"] = json!({"bulk_batch_size": 10001})),
            "target.configuration.bulk_batch_size",
            "1 to 10000",
        ),
        (
            Box::new(|b| b["target"]["configuration"] = json!({"skip_converted": true})),
            "target.configuration.skip_converted",
            "accepted:",
        ),
        (
            Box::new(|b| b["target"]["configuration"] = json!({"invalid_relationships": "drop"})),
            "target.configuration.invalid_relationships",
            "omit_values",
        ),
        (
            Box::new(|b| {
                b["filters"] = json!([{"field_id": "age", "function": "InTheLast", "value": 3}])
            }),
            "filters[0].function",
            "not supported yet",
        ),
        (
            Box::new(|b| b["filter_logic"] = json!("1 AND 2")),
            "filter_logic",
            "does not exist",
        ),
    ];
    for (patch, field, text) in cases {
        let mut body = base.clone();
        patch(&mut body);
        let (status, error) = h.call("POST", "/api/syncs", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {error}");
        assert_eq!(error["metadata"]["field"], field, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(text),
            "{field}: {error}"
        );
    }
    h.finish().await;
}

/// Options, each with its visible effect.
async fn options(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;

    // Filters: only adults are synced; test mode writes nothing.
    let mut body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "updateOrCreate",
        json!({"ingestion_api": "rest"}),
    );
    body["filters"] = json!([{"field": {"model_id": model, "field": "age"}, "function": "GreaterThanEqual", "value": 18},
                             {"field": {"model_id": model, "field": "email"}, "function": "StringEndsWith", "value": "@example.com"}]);
    body["filter_logic"] = json!("1 AND 2");
    let sync = h.create_sync(body).await;
    let before = h.write_calls().await;
    let test = h.run(&sync, json!({"test": true})).await;
    assert_counts(&test, json!({"total": 4, "insert": 4}));
    assert_eq!(test["type"], "test");
    assert_eq!(h.write_calls().await, before, "a test run writes nothing");
    assert!(contacts(&h).await.is_empty());
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"total": 4, "insert": 4}));
    assert_eq!(
        contacts(&h).await.len(),
        4,
        "the 17-year-old is filtered out"
    );

    // insert_null_values: false leaves Salesforce untouched, true clears the field.
    h.source("UPDATE people SET first_name = NULL WHERE email = 'grace@example.com'")
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"update": 1}));
    let grace = h
        .query("SELECT FirstName FROM Contact WHERE Email = 'grace@example.com'")
        .await;
    assert_eq!(grace[0]["FirstName"], "Grace");
    let mut body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "updateOrCreate",
        json!({"ingestion_api": "rest", "insert_null_values": true}),
    );
    body["filters"] = json!([{"field": {"model_id": model, "field": "age"}, "function": "GreaterThanEqual", "value": 18}]);
    h.ok("PUT", &format!("/api/syncs/{sync}"), Some(body)).await;
    let run = h
        .run(&sync, json!({"identities": ["grace@example.com"]}))
        .await;
    assert_counts(&run, json!({"total": 1, "update": 1}));
    assert_eq!(run["type"], "identities");
    let grace = h
        .query("SELECT FirstName FROM Contact WHERE Email = 'grace@example.com'")
        .await;
    assert_eq!(grace[0]["FirstName"], Value::Null);

    // only_sync_different: Salesforce already holds the new value → nothing written.
    let mut body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "update",
        json!({"ingestion_api": "rest", "only_sync_different": true}),
    );
    body["name"] = json!("different");
    let different = h.create_sync(body).await;
    let run = h.run(&different, json!({})).await;
    // First run of this sync: Linus and Ada match their current values except Grace's null
    // first name (null = empty) and the 17-year-old, who is not in Salesforce (warning).
    assert_eq!(run["status"], "completed");
    assert_eq!(counts(&run)["update"], 0, "{run}");
    assert_eq!(counts(&run)["warnings"], 1, "{run}");
    let linus = h
        .query("SELECT Id FROM Contact WHERE Email = 'linus@example.com'")
        .await;
    let id = linus[0]["Id"].as_str().unwrap();
    h.salesforce
        .update(
            "Contact",
            id,
            &json!({"LastName": "Benedict Torvalds"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    h.source("UPDATE people SET last_name = 'Benedict Torvalds' WHERE email = 'linus@example.com'")
        .await;
    let before = h.write_calls().await;
    let run = h.run(&different, json!({})).await;
    // Linus (equal now) and the unmatched 17-year-old (update mode retries her each run).
    assert_counts(&run, json!({"total": 2, "update": 0, "warnings": 1}));
    assert_eq!(h.write_calls().await, before, "an equal row is not written");

    // sync_all_records: every run pushes every row; overrides replace matching values.
    let mut body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "updateOrCreate",
        json!({"ingestion_api": "rest"}),
    );
    body["name"] = json!("all records");
    body["sync_all_records"] = json!(true);
    body["overrides"] = json!([{"field": {"model_id": model, "field": "first_name"}, "function": "IsNull", "override": "(none)"}]);
    let all = h.create_sync(body).await;
    h.run(&all, json!({})).await;
    let run = h.run(&all, json!({})).await;
    assert_counts(&run, json!({"total": 5, "update": 5, "insert": 0}));
    let grace = h
        .query("SELECT FirstName FROM Contact WHERE Email = 'grace@example.com'")
        .await;
    assert_eq!(
        grace[0]["FirstName"], "(none)",
        "the override replaced the null first name"
    );

    // skip_initial_backfill: the first run records the baseline only.
    let mut body = h.sync_body(&connection, &model, "Contact", "updateOrCreate", json!({}));
    body["name"] = json!("backfill");
    body["skip_initial_backfill"] = json!(true);
    let backfill = h.create_sync(body).await;
    let before = h.write_calls().await;
    let run = h.run(&backfill, json!({})).await;
    assert_counts(&run, json!({"total": 0}));
    assert_eq!(h.write_calls().await, before);
    h.source("UPDATE people SET first_name = 'Ada B' WHERE email = 'ada@example.com'")
        .await;
    let run = h.run(&backfill, json!({})).await;
    assert_counts(&run, json!({"total": 1, "update": 1}));
    h.finish().await;
}

/// Relationships, Leads, create and remove modes, the budget, 409 and cancel.
async fn targets(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    h.source("UPDATE people SET account = '001000000000000AAA' WHERE email = 'ada@example.com'")
        .await;
    let with_account = |configuration: Value, name: &str| {
        let mut body = h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            configuration,
        );
        body["name"] = json!(name);
        body["fields"].as_array_mut().unwrap().push(
            json!({"target": "AccountId", "source": {"model_id": model, "field": "account"}}),
        );
        body
    };
    // error: the row fails with Salesforce's reason.
    let sync = h
        .create_sync(with_account(
            json!({"invalid_relationships": "error"}),
            "error",
        ))
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"insert": 4, "error": 1}));
    let errors = h.log(&sync, &run, "errors").await;
    assert_eq!(errors[0]["identity"], "ada@example.com");
    assert_eq!(
        h.call("DELETE", &format!("/api/syncs/{sync}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // omit_records: skipped with a warning, not retried.
    let sync = h
        .create_sync(with_account(
            json!({"invalid_relationships": "omit_records"}),
            "records",
        ))
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"insert": 0, "error": 0, "warnings": 1}));
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"total": 0}));
    assert!(
        h.query("SELECT Id FROM Contact WHERE Email = 'ada@example.com'")
            .await
            .is_empty()
    );
    assert_eq!(
        h.call("DELETE", &format!("/api/syncs/{sync}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // omit_values: written without the reference, with a warning.
    let sync = h
        .create_sync(with_account(
            json!({"invalid_relationships": "omit_values"}),
            "values",
        ))
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"insert": 1, "error": 0, "warnings": 1}));
    let ada = h
        .query("SELECT AccountId, LastName FROM Contact WHERE Email = 'ada@example.com'")
        .await;
    assert_eq!(ada[0]["AccountId"], Value::Null);
    assert_eq!(ada[0]["LastName"], "Lovelace");

    // remove: deletes the matching Contacts.
    let mut body = h.sync_body(&connection, &model, "Contact", "remove", json!({}));
    body["name"] = json!("remove");
    body["filters"] = json!([{"field": {"model_id": model, "field": "email"}, "function": "StringOneOf", "value": ["ada@example.com", "alan@example.com"]}]);
    let remove = h.create_sync(body).await;
    let run = h.run(&remove, json!({})).await;
    assert_counts(&run, json!({"delete": 2}));
    assert_eq!(contacts(&h).await.len(), 3);

    // Lead with skip_converted: converted leads are skipped with a warning.
    let mut body = h.sync_body(
        &connection,
        &model,
        "Lead",
        "updateOrCreate",
        json!({"skip_converted": true}),
    );
    body["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"target": "Company", "override_value": "Ferry"}));
    let leads = h.create_sync(body).await;
    let run = h.run(&leads, json!({})).await;
    assert_counts(&run, json!({"insert": 5}));
    let lead = h
        .query("SELECT Id FROM Lead WHERE Email = 'grace@example.com'")
        .await;
    h.admin(
        reqwest::Method::POST,
        "convertLead",
        Some(json!({"leadId": lead[0]["Id"], "convertedStatus": "Closed - Converted", "doNotCreateOpportunity": true})),
    )
    .await;
    h.source("UPDATE people SET first_name = 'Amazing Grace' WHERE email = 'grace@example.com'")
        .await;
    let run = h.run(&leads, json!({})).await;
    assert_counts(&run, json!({"update": 0, "warnings": 1, "error": 0}));

    // create: insert only; existing identities are left alone.
    let mut body = h.sync_body(&connection, &model, "Contact", "create", json!({}));
    body["name"] = json!("create");
    let create = h.create_sync(body).await;
    let run = h.run(&create, json!({})).await;
    assert_counts(&run, json!({"insert": 2, "update": 0}));
    // 3 left by remove + the Contact the Lead conversion created + Ada and Alan again.
    assert_eq!(contacts(&h).await.len(), 6);
    let run = h.run(&create, json!({"resync": true})).await;
    assert_counts(&run, json!({"total": 5, "insert": 0, "update": 0}));

    // 409 while running, then cancel.
    h.admin(
        reqwest::Method::PUT,
        "faults",
        Some(json!({"latencyMs": 200})),
    )
    .await;
    let started = h
        .ok(
            "POST",
            &format!("/api/syncs/{leads}/executions"),
            Some(json!({"resync": true})),
        )
        .await;
    let (status, _) = h
        .call(
            "POST",
            &format!("/api/syncs/{leads}/executions"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = h
        .ok("POST", &format!("/api/syncs/{leads}/cancel"), None)
        .await;
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("cancellation")
    );
    let id = started["id"].as_str().unwrap();
    let mut status = String::new();
    for _ in 0..500 {
        let execution = h
            .ok("GET", &format!("/api/syncs/{leads}/executions/{id}"), None)
            .await;
        status = execution["status"].as_str().unwrap().to_string();
        if status == "canceled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "canceled");
    h.admin(reqwest::Method::DELETE, "faults", None).await;
    h.finish().await;
}

/// The daily budget: running out fails the execution clearly.
async fn budget(h: Harness) {
    let connection = h
        .salesforce_connection(json!({"enforce_api_limits": true, "daily_api_calls": 6}))
        .await;
    let model = h.people_model().await;
    let sync = h
        .create_sync(h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            json!({"rest_batch_size": 1}),
        ))
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    let errors = run["errors"].to_string();
    assert!(errors.contains("budget"), "{run}");
    let written = counts(&run)["insert"].as_i64().unwrap();
    assert!(written < 5, "{run}");
    assert_eq!(
        contacts(&h).await.len() as i64,
        written,
        "counts match what was written"
    );
    h.finish().await;
}

/// `multi:leadOrContact`: Contacts first, then Leads (a converted Lead updates its
/// Contact); new rows become Contacts when they carry an AccountId, else Leads.
async fn lead_or_contact(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let record = |v: Value| v.as_object().unwrap().clone();
    let account = h
        .salesforce
        .create("Account", &record(json!({"Name": "Acme"})))
        .await
        .unwrap();
    h.salesforce
        .create(
            "Contact",
            &record(json!({"LastName": "Old", "Email": "ada@example.com"})),
        )
        .await
        .unwrap();
    h.salesforce
        .create(
            "Lead",
            &record(json!({"LastName": "Old", "Company": "X", "Email": "grace@example.com"})),
        )
        .await
        .unwrap();
    let alan = h
        .salesforce
        .create(
            "Lead",
            &record(json!({"LastName": "Old", "Company": "X", "Email": "alan@example.com"})),
        )
        .await
        .unwrap();
    let converted = h
        .admin(
            reqwest::Method::POST,
            "convertLead",
            Some(json!({"leadId": alan, "convertedStatus": "Closed - Converted", "doNotCreateOpportunity": true})),
        )
        .await;
    let alan_contact = converted["contactId"]
        .as_str()
        .expect("contact id")
        .to_string();
    h.source(&format!(
        "UPDATE people SET account = '{account}' WHERE email = 'linus@example.com'"
    ))
    .await;

    let objects = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/targetobjects"),
            None,
        )
        .await;
    assert!(
        objects
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == "multi:leadOrContact")
    );
    let fields = h
        .ok(
            "GET",
            &format!(
                "/api/connections/{connection}/modelsync/target/fields?target=multi:leadOrContact"
            ),
            None,
        )
        .await;
    let names: Vec<&str> = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(
        names.contains(&"Company") && names.contains(&"AccountId"),
        "{names:?}"
    );

    let mut body = h.sync_body(
        &connection,
        &model,
        "multi:leadOrContact",
        "updateOrCreate",
        json!({"bulk_batch_size": 100, "concurrency_mode": "Parallel", "create_records_as": "",
               "ingestion_api": "rest", "rest_batch_size": 200}),
    );
    let fields = body["fields"].as_array_mut().unwrap();
    fields.push(json!({"target": "AccountId", "source": {"model_id": model, "field": "account"}}));
    fields.push(json!({"target": "Company", "override_value": "Ferry"}));
    let sync = h.create_sync(body).await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(
        &run,
        json!({"total": 5, "insert": 2, "update": 3, "error": 0}),
    );

    let contact_sql = |email: &str| {
        format!("SELECT Id, FirstName, LastName, AccountId FROM Contact WHERE Email = '{email}'")
    };
    let ada = h.query(&contact_sql("ada@example.com")).await;
    assert_eq!(ada.len(), 1);
    assert_eq!(ada[0]["LastName"], "Lovelace");
    let alan_now = h
        .query(&format!(
            "SELECT LastName FROM Contact WHERE Id = '{alan_contact}'"
        ))
        .await;
    assert_eq!(
        alan_now[0]["LastName"], "Turing",
        "the converted Lead's Contact is updated"
    );
    let linus = h.query(&contact_sql("linus@example.com")).await;
    assert_eq!(
        linus[0]["AccountId"],
        json!(account),
        "an AccountId makes a Contact"
    );
    let grace = h
        .query("SELECT LastName, Company FROM Lead WHERE Email = 'grace@example.com'")
        .await;
    assert_eq!(grace[0]["LastName"], "Hopper");
    let obrien = h
        .query("SELECT LastName, Company FROM Lead WHERE Email = 'o\\'brien@example.com'")
        .await;
    assert_eq!(obrien.len(), 1, "no AccountId makes a Lead");
    assert_eq!(obrien[0]["Company"], "Ferry");

    let before = h.write_calls().await;
    let again = h.run(&sync, json!({})).await;
    assert_counts(&again, json!({"total": 0}));
    assert_eq!(h.write_calls().await, before);
    h.finish().await;
}

/// A PostgreSQL model (dates, timestamps, numbers) into Contact, then an execution left
/// "running" by a dead process is reported as interrupted and does not block a new start.
async fn postgresql_model(h: Harness) {
    use std::str::FromStr as _;
    let name = if h.pg.is_some() {
        "api_syncs_pg_source_on_pg"
    } else {
        "api_syncs_pg_source_on_sqlite"
    };
    let Some(source) = ferry_store::testing::postgres_database(name).await else {
        h.finish().await;
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&source.url).unwrap();
    let mut pg = options.connect().await.unwrap();
    pg.execute(
        "CREATE TABLE people (email text PRIMARY KEY, last_name text, born date,
                              updated timestamptz, score numeric(6,2));
         INSERT INTO people VALUES
           ('a@example.com', 'Able', '1990-05-17', '2024-01-02 03:04:05+00', 12.50),
           ('b@example.com', 'Baker', NULL, NULL, NULL);",
    )
    .await
    .unwrap();
    pg.close().await.unwrap();
    let connection = h.salesforce_connection(json!({})).await;
    let database = h
        .ok(
            "POST",
            "/api/connections",
            Some(
                json!({"name": "pg", "type": "postgresql", "configuration": {
                "hostname": options.get_host(), "port": options.get_port(),
                "database": options.get_database().unwrap(),
                "username": options.get_username(), "ssl": false}}),
            ),
        )
        .await;
    let model = h
        .ok(
            "POST",
            "/api/models",
            Some(json!({"name": "pg people", "connection_id": database["id"],
                        "configuration": {"table": "public.people"}, "identifier": "email"})),
        )
        .await;
    let model = model["id"].as_str().unwrap();
    let source_ref = |field: &str| json!({"model_id": model, "field": field});
    let sync = h
        .create_sync(json!({
            "name": "pg people", "mode": "updateOrCreate",
            "target": {"connection_id": connection, "object": "Contact",
                       "configuration": {"ingestion_api": "rest"}},
            "identity": {"source": source_ref("email"), "target": "Email", "function": "Equality"},
            "fields": [
                {"target": "LastName", "source": source_ref("last_name")},
                {"target": "Birthdate", "source": source_ref("born")},
                {"target": "Description", "source": source_ref("score")},
            ],
            "schedule": {"frequency": "manual"},
        }))
        .await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"total": 2, "insert": 2, "error": 0}));
    let able = h
        .query("SELECT Birthdate, Description FROM Contact WHERE Email = 'a@example.com'")
        .await;
    assert_eq!(able[0]["Birthdate"], "1990-05-17");
    assert_eq!(
        able[0]["Description"], "12.5",
        "numbers are sent as numbers"
    );
    let again = h.run(&sync, json!({})).await;
    assert_counts(&again, json!({"total": 0}));
    // The run answers the reader with its marks, and the reader leaves the marked window
    // unbuilt: an execution run here passes the run's answer on to its reader through a
    // probe that records what the reader asked and was told.
    let sync_id: uuid::Uuid = sync.parse().unwrap();
    let store = h.state.store();
    let organization_id = store
        .authenticate(&h.key)
        .await
        .unwrap()
        .unwrap()
        .organization_id;
    let stored = store.sync(organization_id, sync_id).await.unwrap();
    let execution = store.create_execution(sync_id, "manual").await.unwrap();
    let prepared = ferry_api::syncs::prepare_model_sync(&h.state, organization_id, &stored)
        .await
        .unwrap();
    let mut context = prepared
        .into_context(
            &h.state,
            sync_id,
            execution.id,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let reader = context
        .skips
        .take()
        .expect("a run's reader waits for an answer");
    let (run_side, question) = ferry_connectors::skip_channel();
    context.skips = Some(run_side);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    let probe = tokio::spawn(async move {
        let skip = question
            .answer()
            .await
            .expect("the run answers with its marks");
        reader.answer(Some(std::sync::Arc::new(
            move |number, raw: &ferry_connectors::RawWindow| {
                let skipped = skip(number, raw);
                log.lock().unwrap().push((number, raw.rows, skipped));
                skipped
            },
        )));
    });
    let end = ferry_engine::execute(context).await;
    probe.await.unwrap();
    assert_eq!(end.status, "completed", "{:?}", end.errors);
    assert_eq!(end.counts.total, 0);
    assert_eq!(
        *asked.lock().unwrap(),
        [(0, 2, true)],
        "window 0 skipped unbuilt"
    );
    // The window is marked (from the reader's fingerprint of its COPY text); a row changed
    // in PostgreSQL changes that fingerprint, so the row is sent and the mark replaced.
    let marks = h.marks(&sync).await;
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mut pg = options.connect().await.unwrap();
    pg.execute("UPDATE people SET last_name = 'Abler' WHERE email = 'a@example.com'")
        .await
        .unwrap();
    pg.close().await.unwrap();
    let changed = h.run(&sync, json!({})).await;
    assert_counts(&changed, json!({"total": 1, "update": 1, "error": 0}));
    let able = h
        .query("SELECT LastName FROM Contact WHERE Email = 'a@example.com'")
        .await;
    assert_eq!(able[0]["LastName"], "Abler");
    let remarked = h.marks(&sync).await;
    assert_eq!(remarked.len(), 1);
    assert_ne!(remarked[0].1, marks[0].1, "the window's data changed");
    let unchanged = h.run(&sync, json!({})).await;
    assert_counts(&unchanged, json!({"total": 0}));

    // An execution a dead process left running.
    let orphan = h
        .state
        .store()
        .create_execution(sync_id, "manual")
        .await
        .unwrap();
    h.state
        .store()
        .transition_execution(orphan.id, &["created"], "running")
        .await
        .unwrap();
    let status = h
        .ok("GET", &format!("/api/syncs/{sync}/status"), None)
        .await;
    assert!(status["current_execution"].is_null(), "{status}");
    let orphan_now = h
        .ok(
            "GET",
            &format!("/api/syncs/{sync}/executions/{}", orphan.id),
            None,
        )
        .await;
    assert_eq!(orphan_now["status"], "interrupted");
    let run = h.run(&sync, json!({})).await;
    assert_eq!(run["status"], "completed");
    source.drop_database().await;
    h.finish().await;
}

/// Rows that stay locked (`UNABLE_TO_LOCK_ROW`) through the client's retries get a final
/// serial pass; if they are still locked they fail visibly and are retried next run.
/// Slow (the client backs off for real): SQLite metadata store only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_rows_get_a_final_serial_pass() {
    let h = sqlite_harness().await;
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let sync = h
        .create_sync(h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            json!({"ingestion_api": "rest"}),
        ))
        .await;
    h.admin(
        reqwest::Method::PUT,
        "faults",
        Some(json!({"lockRate": 1.0})),
    )
    .await;
    let before = h.write_calls().await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"total": 5, "insert": 0, "error": 5}));
    // One collections call plus four resubmits, then the same again in the serial pass.
    assert_eq!(h.write_calls().await - before, 10);
    let errors = h.log(&sync, &run, "errors").await;
    assert!(
        errors
            .iter()
            .all(|e| e["error_code"] == "UNABLE_TO_LOCK_ROW"),
        "{errors:?}"
    );
    h.admin(reqwest::Method::DELETE, "faults", None).await;
    let run = h.run(&sync, json!({})).await;
    assert_counts(&run, json!({"total": 5, "insert": 5, "error": 0}));
    h.finish().await;
}

/// Scheduled runs: accepted while the scheduler runs, started when due.
async fn scheduled(h: Harness) {
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let shutdown = ferry_engine::CancellationToken::new();
    let scheduler = tokio::spawn(ferry_api::syncs::scheduler::run(
        h.state.clone(),
        shutdown.clone(),
        Duration::from_secs(3600),
    ));
    while !h.state.sync_runner().scheduler_running() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let options = h.ok("GET", "/api/syncs/schedules", None).await;
    let frequencies: Vec<&str> = options["schedule_options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["frequency"].as_str())
        .collect();
    assert!(frequencies.contains(&"hourly") && frequencies.contains(&"manual"));
    let mut body = h.sync_body(&connection, &model, "Contact", "updateOrCreate", json!({}));
    body["schedule"] = json!({"frequency": "weekly", "day_of_week": "someday", "hour": "1"});
    let (status, error) = h.call("POST", "/api/syncs", Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["metadata"]["field"], "schedule.day_of_week");
    // Hourly, half an hour away from now: not due now, due in two hours.
    let minute = (chrono::Utc::now()
        .format("%M")
        .to_string()
        .parse::<u32>()
        .unwrap()
        + 30)
        % 60;
    body["schedule"] = json!({"frequency": "hourly", "minute": minute.to_string()});
    body["active"] = json!(true);
    let sync = h.create_sync(body).await;
    let status = h
        .ok("GET", &format!("/api/syncs/{sync}/status"), None)
        .await;
    assert!(status["next_execution_time"].is_string(), "{status}");
    let now = chrono::Utc::now();
    let started = ferry_api::syncs::scheduler::tick(&h.state, now)
        .await
        .unwrap();
    assert!(started.is_empty());
    let started = ferry_api::syncs::scheduler::tick(&h.state, now + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let id = started[0];
    let mut execution = Value::Null;
    for _ in 0..1000 {
        execution = h
            .ok("GET", &format!("/api/syncs/{sync}/executions/{id}"), None)
            .await;
        if execution["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_counts(&execution, json!({"insert": 5}));
    assert_eq!(execution["type"], "scheduled");

    // runafter: runs once after the sync it names finished.
    let mut body = h.sync_body(&connection, &model, "Contact", "update", json!({}));
    body["name"] = json!("after");
    body["active"] = json!(true);
    body["schedule"] = json!({"frequency": "runafter", "run_after": {"sync_ids": [sync]}});
    let after = h.create_sync(body.clone()).await;
    body["schedule"]["run_after"]["sync_ids"] = json!([uuid::Uuid::new_v4()]);
    let (status, error) = h.call("POST", "/api/syncs", Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["metadata"]["field"], "schedule.run_after.sync_ids[0]");
    let started = ferry_api::syncs::scheduler::tick(&h.state, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        started.is_empty(),
        "the sync it waits for has not run since"
    );
    h.run(&sync, json!({})).await;
    let started = ferry_api::syncs::scheduler::tick(&h.state, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let mut status = Value::Null;
    for _ in 0..1000 {
        status = h
            .ok("GET", &format!("/api/syncs/{after}/status"), None)
            .await;
        if status["last_execution"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status["last_execution"]["id"],
        json!(started[0]),
        "{status}"
    );
    let started = ferry_api::syncs::scheduler::tick(&h.state, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        started.is_empty(),
        "not again until the other sync runs again"
    );
    shutdown.cancel();
    scheduler.await.unwrap();
    assert!(!h.state.sync_runner().scheduler_running());
    h.finish().await;
}

/// `ingestion_api: bulk` (Bulk API 1.0 jobs, `bulk_batch_size` records per batch, Serial
/// jobs one at a time) gives the same Salesforce state as REST, nulls and dates included.
/// Runs once the emulator serves Bulk 1.0 (`/services/async`); until then it says SKIPPED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_matches_rest() {
    let h = sqlite_harness().await;
    let probe = h
        .http
        .get(format!(
            "{}/services/async/62.0/job/750000000000000AAA",
            h.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    if probe.status() == reqwest::StatusCode::NOT_FOUND {
        eprintln!("SKIPPED: bulk_matches_rest: the emulator does not serve Bulk API 1.0 yet");
        h.finish().await;
        return;
    }
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    h.source("UPDATE people SET first_name = NULL WHERE email = 'grace@example.com'")
        .await;
    let body = |api: &str| {
        let mut body = h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            json!({"ingestion_api": api, "bulk_batch_size": 2, "concurrency_mode": "Serial",
                   "insert_null_values": true}),
        );
        body["name"] = json!(api);
        body
    };
    let bulk = h.create_sync(body("bulk")).await;
    let run = h.run(&bulk, json!({})).await;
    assert_counts(&run, json!({"total": 5, "insert": 5, "error": 0}));
    let bulk_state = contacts(&h).await;
    let before = h.write_calls().await;
    let again = h.run(&bulk, json!({})).await;
    assert_counts(&again, json!({"total": 0}));
    assert_eq!(h.write_calls().await, before);
    // REST over the same rows (as updates) leaves the same values.
    let rest = h.create_sync(body("rest")).await;
    let run = h.run(&rest, json!({})).await;
    assert_counts(&run, json!({"total": 5, "update": 5, "error": 0}));
    let rest_state = contacts(&h).await;
    assert_eq!(bulk_state, rest_state);
    let grace = rest_state
        .iter()
        .find(|c| c["Email"] == "grace@example.com")
        .unwrap();
    assert_eq!(grace["FirstName"], Value::Null);
    h.finish().await;
}

/// Window marks per window: 4,500 people read in three REST windows of 2,000. A run
/// after one row changed sends that row and marks every window again; a row Salesforce
/// rejects keeps only its own window unmarked, so the next run retries it (and nothing
/// else is looked at again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_marks_are_per_window() {
    let h = sqlite_harness().await;
    let rows: Vec<String> = (0..4_500)
        .map(|i| {
            format!(
                "('p{i:04}@example.com', 'First{i}', 'Last{i}', {}, NULL)",
                i % 90
            )
        })
        .collect();
    h.source(&format!("INSERT INTO people VALUES {}", rows.join(", ")))
        .await;
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let body = h.sync_body(
        &connection,
        &model,
        "Contact",
        "updateOrCreate",
        json!({"ingestion_api": "rest"}),
    );
    let sync = h.create_sync(body).await;

    let first = h.run(&sync, json!({})).await;
    assert_counts(&first, json!({"total": 4_505, "insert": 4_505, "error": 0}));
    let all = h.marks(&sync).await;
    let numbers: Vec<i64> = all.iter().map(|(number, _)| *number).collect();
    assert_eq!(numbers, [0, 1, 2]);

    // One row of the middle window changes: only it is sent; that window gets a new
    // fingerprint, the others keep theirs.
    h.source("UPDATE people SET first_name = 'Changed' WHERE email = 'p3000@example.com'")
        .await;
    let before = h.write_calls().await;
    let changed = h.run(&sync, json!({})).await;
    assert_counts(&changed, json!({"total": 1, "update": 1, "error": 0}));
    assert_eq!(h.write_calls().await - before, 1);
    let after = h.marks(&sync).await;
    assert_eq!(after.len(), 3);
    assert_eq!(after[0], all[0]);
    assert_ne!(after[1], all[1]);
    assert_eq!(after[2], all[2]);

    // A row of the last window fails: that window stays unmarked and its row is retried.
    let long = "x".repeat(81);
    h.source(&format!(
        "UPDATE people SET last_name = '{long}' WHERE email = 'p4400@example.com'"
    ))
    .await;
    let failed = h.run(&sync, json!({})).await;
    assert_counts(&failed, json!({"total": 1, "update": 0, "error": 1}));
    let numbers: Vec<i64> = h
        .marks(&sync)
        .await
        .iter()
        .map(|(number, _)| *number)
        .collect();
    assert_eq!(numbers, [0, 1]);
    let retried = h.run(&sync, json!({})).await;
    assert_counts(&retried, json!({"total": 1, "error": 1}));
    let errors = h.log(&sync, &retried, "errors").await;
    assert_eq!(errors[0]["identity"], "p4400@example.com");
    h.source("UPDATE people SET last_name = 'Fixed' WHERE email = 'p4400@example.com'")
        .await;
    let fixed = h.run(&sync, json!({})).await;
    assert_counts(&fixed, json!({"total": 1, "update": 1, "error": 0}));
    assert_eq!(h.marks(&sync).await.len(), 3);
    let fixed_state = h
        .query("SELECT LastName FROM Contact WHERE Email = 'p4400@example.com'")
        .await;
    assert_eq!(fixed_state[0]["LastName"], "Fixed");

    // Nothing changed: nothing sent, every window skipped and marked again.
    let before = h.write_calls().await;
    let quiet = h.run(&sync, json!({})).await;
    assert_counts(&quiet, json!({"total": 0, "update": 0, "error": 0}));
    assert_eq!(h.write_calls().await, before);
    assert_eq!(h.marks(&sync).await.len(), 3);

    // A changed mapping changes every fingerprint: every row is compared (and sent, as
    // its mapped values changed).
    let mut body = h.ok("GET", &format!("/api/syncs/{sync}"), None).await;
    let fields = body["fields"].as_array_mut().unwrap();
    fields.retain(|field| field["target"] != "FirstName");
    let update = json!({"name": body["name"], "mode": body["mode"], "target": body["target"],
        "identity": body["identity"], "fields": body["fields"], "schedule": body["schedule"]});
    h.ok("PUT", &format!("/api/syncs/{sync}"), Some(update))
        .await;
    let remapped = h.run(&sync, json!({})).await;
    assert_counts(
        &remapped,
        json!({"total": 4_505, "update": 4_505, "error": 0}),
    );
    let remarked = h.marks(&sync).await;
    assert_eq!(remarked.len(), 3);
    assert!(remarked.iter().zip(&all).all(|(new, old)| new.1 != old.1));
    h.finish().await;
}

/// Lead parents referenced by external id (`Account__r.Ext__c`): with
/// `ignore_invalid_references` an unresolved reference is dropped (warning) and the Lead
/// written; without it the row fails with Salesforce's reason.
async fn external_id_references(h: Harness) {
    h.admin(
        reqwest::Method::POST,
        "objects/Account/fields",
        Some(json!({"name": "Ext__c", "type": "text", "length": 20, "externalId": true, "unique": true})),
    )
    .await;
    h.admin(
        reqwest::Method::POST,
        "objects/Lead/fields",
        Some(json!({"name": "Account__c", "type": "lookup", "referenceTo": "Account", "childRelationshipName": "Leads__r"})),
    )
    .await;
    let account = h
        .salesforce
        .create(
            "Account",
            json!({"Name": "Acme", "Ext__c": "A-1"})
                .as_object()
                .unwrap(),
        )
        .await
        .unwrap();
    h.source(
        "UPDATE people SET account = 'A-1' WHERE email = 'ada@example.com';
              UPDATE people SET account = 'NOPE' WHERE email = 'grace@example.com'",
    )
    .await;
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let body = |ignore: bool| {
        let mut body = h.sync_body(
            &connection,
            &model,
            "Lead",
            "updateOrCreate",
            json!({"ignore_invalid_references": ignore, "ingestion_api": "rest"}),
        );
        body["name"] = json!(format!("ignore {ignore}"));
        let fields = body["fields"].as_array_mut().unwrap();
        fields.push(json!({"target": "Company", "override_value": "Ferry"}));
        fields.push(json!({"target": "Account__r.Ext__c", "source": {"model_id": model, "field": "account"}}));
        body
    };
    let mut bad = body(false);
    bad["fields"][3]["target"] = json!("Nope__r.Ext__c");
    let (status, error) = h.call("POST", "/api/syncs", Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["metadata"]["field"], "fields[3].target");

    let strict = h.create_sync(body(false)).await;
    let run = h.run(&strict, json!({})).await;
    assert_counts(&run, json!({"insert": 4, "error": 1}));
    let errors = h.log(&strict, &run, "errors").await;
    assert_eq!(errors[0]["identity"], "grace@example.com");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("Foreign key external ID")
    );
    let ada = h
        .query("SELECT Account__c FROM Lead WHERE Email = 'ada@example.com'")
        .await;
    assert_eq!(ada[0]["Account__c"], json!(account));

    let lenient = h.create_sync(body(true)).await;
    let run = h.run(&lenient, json!({})).await;
    // Grace is new to Salesforce (created without the reference); the others are updated.
    assert_counts(
        &run,
        json!({"insert": 1, "update": 4, "error": 0, "warnings": 1}),
    );
    let grace = h
        .query("SELECT Account__c, Company FROM Lead WHERE Email = 'grace@example.com'")
        .await;
    assert_eq!(grace.len(), 1);
    assert_eq!(grace[0]["Account__c"], Value::Null);
    h.finish().await;
}

async fn sqlite_harness() -> Harness {
    Harness::new(None).await
}

async fn postgres_harness(name: &str) -> Option<Harness> {
    let db = ferry_store::testing::postgres_database(name).await?;
    let store = ferry_store::PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    Some(Harness::new(Some((Arc::new(store), db))).await)
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_harness().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = super::postgres_harness(concat!("api_syncs_", stringify!($name))).await else { return };
                    super::$name(h).await;
                }
            )*
        }
    };
}

both_stores!(
    update_or_create,
    validation,
    options,
    targets,
    budget,
    lead_or_contact,
    postgresql_model,
    scheduled,
    external_id_references,
);

/// The three write paths — REST (sObject Collections), Bulk API 1.0 (`Serial`) and Bulk API
/// 2.0 (`Parallel`) — leave the same Salesforce state for the same rows: creates, then
/// updates that change values, clear fields (nulls as JSON null / `#N/A`) and set dates;
/// a row Salesforce rejects fails with the same error code, keyed to its identity, on
/// every path. Each path writes its own copy of the people (`+<api>` in the email).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_bulk1_and_bulk2_agree() {
    let h = sqlite_harness().await;
    h.source(
        "ALTER TABLE people ADD COLUMN born TEXT;
         UPDATE people SET born = '1815-12-10' WHERE email = 'ada@example.com';
         UPDATE people SET born = '1906-12-09', first_name = NULL WHERE email = 'grace@example.com';
         UPDATE people SET born = '1912-06-23' WHERE email = 'alan@example.com';
         INSERT INTO people VALUES ('nameless@example.com', 'No', NULL, 1, NULL, '2000-01-01');",
    )
    .await;
    let sqlite = h
        .ok(
            "POST",
            "/api/connections",
            Some(json!({"name": "people db", "type": "sqlite",
                        "configuration": {"path": h.source_path}})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let connection = h.salesforce_connection(json!({})).await;
    let paths = [
        ("rest", json!({"ingestion_api": "rest"})),
        (
            "bulkone",
            json!({"ingestion_api": "bulk", "concurrency_mode": "Serial", "bulk_batch_size": 2}),
        ),
        (
            "bulktwo",
            json!({"ingestion_api": "bulk", "concurrency_mode": "Parallel"}),
        ),
    ];
    let mut syncs = Vec::new();
    for (api, configuration) in &paths {
        let model = h
            .ok(
                "POST",
                "/api/models",
                Some(json!({"name": format!("people {api}"), "connection_id": sqlite,
                    "configuration": {"query": format!(
                        "SELECT replace(email, '@', '+{api}@') AS email, first_name, last_name, born FROM people")},
                    "identifier": "email"})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut configuration = configuration.clone();
        configuration["insert_null_values"] = json!(true);
        let mut body = h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            configuration,
        );
        body["name"] = json!(api);
        body["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"target": "Birthdate", "source": {"model_id": model, "field": "born"}}));
        syncs.push((*api, h.create_sync(body).await));
    }
    let bulk1_jobs = |calls: &Value| {
        calls["calls"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("POST /services/async/") && k.ends_with("/job"))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let bulk2_jobs = |calls: &Value| {
        calls["calls"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") && k.ends_with("/jobs/ingest"))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let state = |api: &'static str| {
        let h = &h;
        async move {
            let mut rows: Vec<Value> = h
                .query(&format!(
                    "SELECT Email, FirstName, LastName, Birthdate FROM Contact \
                     WHERE Email LIKE '%+{api}@%' ORDER BY Email"
                ))
                .await
                .into_iter()
                .map(|mut record| {
                    record.remove("attributes");
                    let email = record["Email"]
                        .as_str()
                        .unwrap()
                        .replace(&format!("+{api}"), "");
                    record.insert("Email".into(), json!(email));
                    Value::Object(record)
                })
                .collect();
            rows.sort_by_key(|r| r["Email"].as_str().unwrap().to_string());
            rows
        }
    };

    // Creates (the nameless row fails: LastName is required).
    let mut first_states = Vec::new();
    for (api, sync) in &syncs {
        h.admin(reqwest::Method::DELETE, "calls", None).await;
        let run = h.run(sync, json!({})).await;
        assert_counts(&run, json!({"total": 6, "insert": 5, "error": 1}));
        let errors = h.log(sync, &run, "errors").await;
        assert_eq!(errors.len(), 1, "{api}: {errors:?}");
        assert_eq!(
            errors[0]["identity"],
            format!("nameless+{api}@example.com"),
            "{api}"
        );
        assert_eq!(errors[0]["error_code"], "REQUIRED_FIELD_MISSING", "{api}");
        let calls = h.admin(reqwest::Method::GET, "calls", None).await;
        match *api {
            "bulkone" => assert!(bulk1_jobs(&calls) > 0 && bulk2_jobs(&calls) == 0, "{calls}"),
            "bulktwo" => assert!(bulk2_jobs(&calls) > 0 && bulk1_jobs(&calls) == 0, "{calls}"),
            _ => assert!(bulk1_jobs(&calls) + bulk2_jobs(&calls) == 0, "{calls}"),
        }
        first_states.push(state(api).await);
    }
    assert_eq!(first_states[0], first_states[1], "REST vs Bulk 1.0");
    assert_eq!(first_states[0], first_states[2], "REST vs Bulk 2.0");
    let grace = first_states[0]
        .iter()
        .find(|c| c["Email"] == "grace@example.com")
        .unwrap();
    assert_eq!(grace["FirstName"], Value::Null);
    assert_eq!(grace["Birthdate"], "1906-12-09");

    // Updates: a value cleared, a date changed, a date cleared, a name set.
    h.source(
        "UPDATE people SET first_name = NULL, born = '1816-01-01' WHERE email = 'ada@example.com';
         UPDATE people SET first_name = 'Grace', born = NULL WHERE email = 'grace@example.com';",
    )
    .await;
    let mut second_states = Vec::new();
    for (api, sync) in &syncs {
        let run = h.run(sync, json!({})).await;
        // Two changed rows are updated; the nameless row is retried and fails again.
        assert_counts(&run, json!({"total": 3, "update": 2, "error": 1}));
        let errors = h.log(sync, &run, "errors").await;
        assert_eq!(errors[0]["error_code"], "REQUIRED_FIELD_MISSING", "{api}");
        second_states.push(state(api).await);
    }
    assert_eq!(second_states[0], second_states[1], "REST vs Bulk 1.0");
    assert_eq!(second_states[0], second_states[2], "REST vs Bulk 2.0");
    let ada = second_states[0]
        .iter()
        .find(|c| c["Email"] == "ada@example.com")
        .unwrap();
    assert_eq!(ada["FirstName"], Value::Null);
    assert_eq!(ada["Birthdate"], "1816-01-01");
    let grace = second_states[0]
        .iter()
        .find(|c| c["Email"] == "grace@example.com")
        .unwrap();
    assert_eq!(grace["FirstName"], "Grace");
    assert_eq!(grace["Birthdate"], Value::Null);

    // Nothing changed (and the failing row gone from the model): no path writes anything.
    h.source("DELETE FROM people WHERE email = 'nameless@example.com'")
        .await;
    for (api, sync) in &syncs {
        let before = h.admin(reqwest::Method::GET, "calls", None).await;
        let run = h.run(sync, json!({})).await;
        assert_counts(&run, json!({"total": 0, "error": 0}));
        let after = h.admin(reqwest::Method::GET, "calls", None).await;
        assert_eq!(
            bulk1_jobs(&before) + bulk2_jobs(&before),
            bulk1_jobs(&after) + bulk2_jobs(&after),
            "{api}: {after}"
        );
    }
    h.finish().await;
}

/// Bulk jobs a killed run left behind are settled before the next run looks anything up:
/// a closed job still being processed is waited for (so its rows are found and updated,
/// never created twice) and a job never closed is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_bulk_jobs_are_settled_first() {
    use ferry_salesforce::bulk2::{IngestJobRequest, IngestOperation};

    let h = sqlite_harness().await;
    let connection = h.salesforce_connection(json!({})).await;
    let model = h.people_model().await;
    let sync = h
        .create_sync(h.sync_body(
            &connection,
            &model,
            "Contact",
            "updateOrCreate",
            json!({"ingestion_api": "bulk", "concurrency_mode": "Parallel"}),
        ))
        .await;
    let sync_id: uuid::Uuid = sync.parse().unwrap();
    // A dead run's jobs: Ada's insert closed (processed only after a delay), Alan's never
    // closed.
    h.admin(
        reqwest::Method::PUT,
        "bulk",
        Some(json!({"startDelayMs": 1500})),
    )
    .await;
    let insert = IngestJobRequest::new("Contact".to_string(), IngestOperation::Insert);
    let closed = h.salesforce.create_ingest_job(&insert).await.unwrap();
    h.salesforce
        .upload_ingest_data(
            &closed.id,
            bytes::Bytes::from("Email,FirstName,LastName\nada@example.com,Ada,Lovelace\n"),
        )
        .await
        .unwrap();
    h.salesforce
        .complete_ingest_upload(&closed.id)
        .await
        .unwrap();
    let open = h.salesforce.create_ingest_job(&insert).await.unwrap();
    h.salesforce
        .upload_ingest_data(
            &open.id,
            bytes::Bytes::from("Email,FirstName,LastName\nalan@example.com,Alan,Turing\n"),
        )
        .await
        .unwrap();
    let store = h.state.store().clone();
    for job in [&closed.id, &open.id] {
        store.record_write_job(sync_id, "bulk2", job).await.unwrap();
    }

    let run = h.run(&sync, json!({})).await;
    assert_counts(
        &run,
        json!({"total": 5, "error": 0, "insert": 4, "update": 1}),
    );
    let emails: Vec<String> = contacts(&h)
        .await
        .iter()
        .map(|c| c["Email"].as_str().unwrap().to_string())
        .collect();
    let distinct: std::collections::HashSet<&String> = emails.iter().collect();
    assert_eq!(emails.len(), 5, "{emails:?}");
    assert_eq!(distinct.len(), 5, "no person twice: {emails:?}");
    let open = h.salesforce.get_ingest_job(&open.id).await.unwrap();
    assert_eq!(open.state, "Aborted");
    let closed = h.salesforce.get_ingest_job(&closed.id).await.unwrap();
    assert_eq!(closed.state, "JobComplete");
    assert!(
        store.write_jobs(sync_id).await.unwrap().is_empty(),
        "the run's own jobs and the settled ones are forgotten"
    );
    h.finish().await;
}
