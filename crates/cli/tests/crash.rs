//! Crash safety of a model sync, with the real binary: `ferry serve` (a PostgreSQL store
//! of its own; SQLite is not used here because of an intermittent lock stall seen after a
//! restart, under investigation) is killed with SIGKILL three times while a Bulk sync of 20,000
//! people into Contact is running, restarted on the same store, and the sync started again
//! until an execution completes. Afterwards Salesforce (the emulator) holds every person
//! exactly once — no duplicate, none missing — and a further run writes nothing.
//!
//! The identity is `Email` (a lookup field, not an external id), so creates are not
//! idempotent on their own: what keeps them from being duplicated is the ledger's
//! `pending_create` mark, written before a create is sent, which makes the next run look
//! the person up instead of creating it again. The kills are triggered by the emulator
//! seeing a Bulk 2.0 ingest job of the run being created ([`KILL_AT_JOB`]: the first job
//! of the first run, the second of the next, the first of the third), so each kill lands
//! with work in flight, in different windows. The server is restarted at once, while the
//! dead server's closed jobs are still being processed: the next run finds them recorded
//! in the store and waits for them before it looks anyone up (`engine::write_jobs`).

mod support;

use std::collections::HashSet;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _};
use support::{BOOTSTRAP_KEY, FerryServer};

/// People in the model (two read windows of 10,000, so two Bulk jobs per run).
const PEOPLE: usize = 20_000;

/// Kills before the run that is let finish.
const KILLS: usize = 3;

/// Which ingest job of its run (1-based) each killed run dies at.
const KILL_AT_JOB: [usize; KILLS] = [1, 2, 1];

fn email(n: usize) -> String {
    format!("person{n:05}@example.com")
}

/// Ferry's HTTP API as a user calls it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(BOOTSTRAP_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("ferry answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn id(&self, path: &str, body: Value) -> String {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "POST {path}: {answer}");
        answer["data"]["id"].as_str().expect("an id").to_string()
    }

    /// Starts an execution, or — when one is still marked unfinished — follows that one.
    async fn start(&self, sync: &str) -> String {
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/syncs/{sync}/executions"),
                Some(json!({})),
            )
            .await;
        if status == 200 {
            return answer["data"]["id"]
                .as_str()
                .expect("execution id")
                .to_string();
        }
        let (_, current) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/syncs/{sync}/status"),
                None,
            )
            .await;
        current["data"]["current_execution"]["id"]
            .as_str()
            .or_else(|| current["data"]["current_execution"].as_str())
            .unwrap_or_else(|| panic!("could not start a run ({status}: {answer}): {current}"))
            .to_string()
    }

    async fn execution(&self, sync: &str, execution: &str) -> Value {
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/syncs/{sync}/executions/{execution}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["data"].clone()
    }
}

fn finished(execution: &Value) -> bool {
    matches!(
        execution["status"].as_str(),
        Some("completed" | "failed" | "canceled" | "interrupted")
    )
}

async fn admin(
    emulator: &RunningEmulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/__emulator/{path}", emulator.base_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("emulator answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// The emulator's Bulk 2.0 ingest jobs as (id, state).
async fn ingest_jobs(emulator: &RunningEmulator) -> Vec<(String, String)> {
    admin(emulator, reqwest::Method::GET, "bulk/jobs", None)
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter(|job| job["api"] == "2.0" && job["type"] == "ingest")
        .map(|job| {
            (
                job["id"].as_str().unwrap_or_default().to_string(),
                job["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn write_people(path: &std::path::Path) {
    let mut connection =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("sqlite url")
            .create_if_missing(true)
            .connect()
            .await
            .expect("source database");
    sqlx::query(
        "CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT NOT NULL)",
    )
    .execute(&mut connection)
    .await
    .expect("create table");
    let mut tx = connection.begin().await.expect("transaction");
    for n in 0..PEOPLE {
        sqlx::query("INSERT INTO people VALUES ($1, $2, $3)")
            .bind(email(n))
            .bind(format!("First{n}"))
            .bind(format!("Last{n}"))
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
    connection.close().await.expect("close");
}

/// Secret key of the servers' shared PostgreSQL store.
const SECRET_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

async fn start_server(data_dir: std::path::PathBuf, database_url: String) -> FerryServer {
    tokio::task::spawn_blocking(move || {
        FerryServer::start_with(
            &data_dir,
            &[
                ("FERRY_DATABASE_URL", database_url.as_str()),
                ("FERRY_SECRET_KEY", SECRET_KEY),
            ],
        )
    })
    .await
    .expect("ferry serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_no_duplicates_nothing_lost() {
    let Some(database) = ferry_store::testing::postgres_database("crash_killed_mid_run").await
    else {
        return;
    };
    let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    // Closed jobs wait a little before they are processed, so a kill lands while work is
    // in flight.
    admin(
        &emulator,
        reqwest::Method::PUT,
        "bulk",
        Some(json!({"startDelayMs": 300})),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("ferry");
    let source = dir.path().join("people.db");
    write_people(&source).await;

    let mut server = Some(start_server(data_dir.clone(), database.url.clone()).await);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let mut api = Api {
        http: http.clone(),
        base: server
            .as_ref()
            .map(|s| s.base_url.clone())
            .unwrap_or_default(),
    };
    let sqlite = api
        .id(
            "/api/connections",
            json!({"name": "people", "type": "sqlite", "configuration": {"path": source}}),
        )
        .await;
    let salesforce = api
        .id(
            "/api/connections",
            json!({"name": "salesforce", "type": "salesforce", "configuration": {
                "domain": emulator.base_url(), "connect_mode": "clientcredentials",
                "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
        )
        .await;
    let model = api
        .id(
            "/api/models",
            json!({"name": "people", "connection_id": sqlite,
                   "configuration": {"table": "people"}, "identifier": "email"}),
        )
        .await;
    let field = |name: &str| json!({"model_id": model, "field": name});
    let sync = api
        .id(
            "/api/syncs",
            json!({
                "name": "people to contacts",
                "mode": "updateOrCreate",
                "schedule": {"frequency": "manual"},
                "target": {"connection_id": salesforce, "object": "Contact",
                           "configuration": {"ingestion_api": "bulk", "concurrency_mode": "Parallel"}},
                "identity": {"source": field("email"), "target": "Email", "function": "Equality"},
                "fields": [
                    {"source": field("first_name"), "target": "FirstName"},
                    {"source": field("last_name"), "target": "LastName"},
                ],
            }),
        )
        .await;

    let mut kills = 0;
    let mut last = Value::Null;
    for attempt in 0..10 {
        let jobs_before = ingest_jobs(&emulator).await.len();
        let execution = api.start(&sync).await;
        let kill_at = KILL_AT_JOB.get(kills).map(|nth| jobs_before + nth);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut killed = false;
        loop {
            if let Some(kill_at) = kill_at
                && ingest_jobs(&emulator).await.len() >= kill_at
            {
                drop(server.take()); // SIGKILL
                kills += 1;
                killed = true;
                break;
            }
            last = api.execution(&sync, &execution).await;
            if finished(&last) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {attempt} did not finish: {last}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if killed {
            let restarted = start_server(data_dir.clone(), database.url.clone()).await;
            api = Api {
                http: http.clone(),
                base: restarted.base_url.clone(),
            };
            server = Some(restarted);
            continue;
        }
        if last["status"] == "completed" {
            break;
        }
    }
    assert_eq!(kills, KILLS, "every kill happened mid-run");
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["counts"]["error"], 0, "{last}");

    // Salesforce holds every person exactly once.
    let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).expect("login url");
    let salesforce_client = SalesforceClient::connect(ClientConfig::new(
        login,
        OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
        Credentials::ClientCredentials,
    ))
    .await
    .expect("salesforce client");
    let contacts = salesforce_client
        .query_all_pages("SELECT Email, LastName FROM Contact", QueryScope::Live)
        .await
        .expect("contacts");
    let emails: Vec<String> = contacts
        .iter()
        .filter_map(|c| c.get("Email").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let distinct: HashSet<&String> = emails.iter().collect();
    assert_eq!(distinct.len(), emails.len(), "duplicates in Salesforce");
    let expected: HashSet<String> = (0..PEOPLE).map(email).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !distinct.contains(e))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "missing in Salesforce, e.g. {missing:?}"
    );
    assert_eq!(emails.len(), PEOPLE);

    // A further run sends nothing.
    let jobs_before = ingest_jobs(&emulator).await.len();
    let execution = api.start(&sync).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let again = loop {
        let execution = api.execution(&sync, &execution).await;
        if finished(&execution) {
            break execution;
        }
        assert!(Instant::now() < deadline, "the last run did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["counts"]["total"], 0, "{again}");
    assert_eq!(ingest_jobs(&emulator).await.len(), jobs_before);
    drop(server);
    emulator.shutdown().await;
    database.drop_database().await;
}
