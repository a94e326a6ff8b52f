//! Scale-out with real processes on PostgreSQL: one `ferry serve --workers 0` (the API
//! only) and several `ferry worker` processes share a PostgreSQL metadata store; the
//! Salesforce emulator runs in this process and the model reads a SQLite file.
//!
//! - `thirty_syncs_three_workers`: 30 syncs started at once run exactly once each.
//! - `killed_workers_lose_and_duplicate_nothing`: a 100k-row model sync survives five
//!   SIGKILLs of the worker running it and one SIGTERM; the emulator ends with every
//!   record exactly once, the ledger agrees, and a further run sends nothing.
//!
//! The tests wait on what the store and the emulator show (job attempts and statuses,
//! execution statuses, record counts), never on fixed sleeps, with [`PATIENCE`] as a hang
//! guard; the lease ([`LEASE_SECONDS`]) leaves room for the stalls of a loaded machine.
//! - `bulk_sync_on_workers`: a bulk sync waits in the queue while no worker runs, is run by
//!   a `ferry worker` (whose `--metrics-listen` endpoint reports it), is taken over after
//!   its worker is killed mid-run and handed back on SIGTERM — never shown `canceled` —
//!   and the destination ends with every record once.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Row as _};
use support::{BOOTSTRAP_KEY, FerryServer};

/// base64 of 32 bytes: every process of one deployment shares the secret key.
const SECRET_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// How long anything in these tests may take before the test gives up (a hang guard,
/// not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(600);

/// The lease of the workers whose jobs are taken over: a killed worker's job waits this
/// long for another worker. Long enough that a healthy worker's renewals (every third of
/// it) survive the stalls of a loaded CI machine running debug builds — a 3 s lease was
/// seen renewed 3.6 s after the previous renewal there — and short enough to keep the
/// takeovers quick.
const LEASE_SECONDS: u64 = 8;

/// A `ferry worker` child process; killed (SIGKILL) when dropped.
struct Worker {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Worker {
    fn start(database_url: &str, lease_seconds: u64) -> Worker {
        Worker::start_with(database_url, lease_seconds, &[])
    }

    /// [`Worker::start`] with more arguments.
    fn start_with(database_url: &str, lease_seconds: u64, args: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["worker", "--concurrency", "4"])
            .args(args)
            .env("FERRY_DATABASE_URL", database_url)
            .env("FERRY_SECRET_KEY", SECRET_KEY)
            .env("FERRY_LEASE_SECONDS", lease_seconds.to_string())
            .env("FERRY_LOG", "info,sqlx=warn")
            .env_remove("FERRY_WORKER_CONCURRENCY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ferry worker");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Worker { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the worker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes and services of one test.
struct Cluster {
    database: ferry_store::testing::TestDatabase,
    emulator: RunningEmulator,
    server: FerryServer,
    http: reqwest::Client,
    salesforce: SalesforceClient,
    people_path: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// PostgreSQL, the emulator, a SQLite file of `rows` people in `groups` groups, and
    /// `ferry serve --workers 0`; `None` when PostgreSQL is unavailable (SKIPPED).
    async fn start(name: &str, rows: usize, groups: usize) -> Option<Cluster> {
        let database = ferry_store::testing::postgres_database(name).await?;
        // Migrate once up front so the processes do not all race to do it.
        ferry_store::open(&database.url).await.expect("migrating");
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let people_path = dir.path().join("people.db");
        write_people(&people_path, rows, groups).await;
        let server = FerryServer::start_with(
            dir.path(),
            &[
                ("FERRY_DATABASE_URL", database.url.as_str()),
                ("FERRY_SECRET_KEY", SECRET_KEY),
                ("FERRY_WORKERS", "0"),
            ],
        );
        let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).expect("url");
        let salesforce = SalesforceClient::connect(ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        ))
        .await
        .expect("salesforce client");
        Some(Cluster {
            database,
            emulator,
            server,
            http: reqwest::Client::new(),
            salesforce,
            people_path: people_path.to_str().expect("utf-8 path").to_string(),
            _dir: dir,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(BOOTSTRAP_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body["data"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The Salesforce connection (the emulator) and the people SQLite connection.
    async fn connections(&self) -> (String, String) {
        let salesforce = self
            .post(
                "/api/connections",
                json!({"name": "salesforce", "type": "salesforce", "configuration": {
                    "domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
                    "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
            )
            .await;
        let people = self
            .post(
                "/api/connections",
                json!({"name": "people", "type": "sqlite",
                       "configuration": {"path": self.people_path}}),
            )
            .await;
        (id_of(&salesforce), id_of(&people))
    }

    /// A model of one group of people (`None`: everyone) and a Contact sync of it
    /// (`updateOrCreate` by Email).
    async fn sync(&self, salesforce: &str, people: &str, group: Option<usize>) -> String {
        self.sync_with(salesforce, people, group, "updateOrCreate", "Email")
            .await
    }

    /// [`Cluster::sync`] with the mode and the identity's target field.
    async fn sync_with(
        &self,
        salesforce: &str,
        people: &str,
        group: Option<usize>,
        mode: &str,
        identity: &str,
    ) -> String {
        let query = match group {
            Some(group) => format!("SELECT * FROM people WHERE grp = {group}"),
            None => "SELECT * FROM people".to_string(),
        };
        let name = format!("people {group:?}");
        let model = self
            .post(
                "/api/models",
                json!({"name": name, "connection_id": people,
                       "configuration": {"query": query}, "identifier": "email"}),
            )
            .await;
        let model = id_of(&model);
        let source = |field: &str| json!({"model_id": model, "field": field});
        let mut fields = vec![
            json!({"target": "FirstName", "source": source("first_name")}),
            json!({"target": "LastName", "source": source("last_name")}),
        ];
        if identity != "Email" {
            fields.push(json!({"target": "Email", "source": source("email")}));
        }
        let sync = self
            .post(
                "/api/syncs",
                json!({
                    "name": name,
                    "mode": mode,
                    "target": {"connection_id": salesforce, "object": "Contact"},
                    "identity": {"source": source("email"), "target": identity, "function": "Equality"},
                    "fields": fields,
                    "schedule": {"frequency": "manual"},
                }),
            )
            .await;
        id_of(&sync)
    }

    async fn start_sync(&self, sync: &str) -> String {
        id_of(
            &self
                .post(&format!("/api/syncs/{sync}/executions"), json!({}))
                .await,
        )
    }

    /// Waits until the sync has no unfinished execution; returns its executions (oldest
    /// first).
    async fn settle(&self, sync: &str) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.get(&format!("/api/syncs/{sync}/status")).await;
            if status["current_execution"].is_null() && !status["last_execution"].is_null() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sync {sync} did not finish: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let executions = self
            .get(&format!("/api/syncs/{sync}/executions?ascending=true"))
            .await;
        executions.as_array().cloned().unwrap_or_default()
    }

    /// An access token for plain HTTP calls to the emulator.
    async fn emulator_token(&self) -> String {
        let token: Value = self
            .http
            .post(format!(
                "{}/services/oauth2/token",
                self.emulator.base_url()
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                "grant_type=client_credentials&client_id=ferry-emulator\
                 &client_secret=ferry-emulator-secret",
            )
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token body");
        token["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Contacts in the emulator (`/limits/recordCount`, cheap enough to poll).
    async fn contact_count(&self, token: &str) -> i64 {
        let answer: Value = self
            .http
            .get(format!(
                "{}/services/data/v62.0/limits/recordCount",
                self.emulator.base_url()
            ))
            .query(&[("sObjects", "Contact")])
            .bearer_auth(token)
            .send()
            .await
            .expect("count request")
            .json()
            .await
            .expect("count body");
        answer["sObjects"][0]["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("no count in {answer}"))
    }

    /// Email → Ids of every Contact in the emulator.
    async fn contact_emails(&self) -> HashMap<String, Vec<String>> {
        let records = self
            .salesforce
            .query_all_pages("SELECT Id, Email FROM Contact", QueryScope::Live)
            .await
            .expect("contacts query");
        let mut emails: HashMap<String, Vec<String>> = HashMap::new();
        for record in records {
            let email = record["Email"].as_str().unwrap_or_default().to_string();
            let id = record["Id"].as_str().unwrap_or_default().to_string();
            emails.entry(email).or_default().push(id);
        }
        emails
    }

    async fn pg(&self) -> sqlx::PgConnection {
        sqlx::postgres::PgConnectOptions::from_url(&self.database.url.parse().expect("url"))
            .expect("options")
            .connect()
            .await
            .expect("connecting to the test database")
    }

    async fn finish(self) {
        let Cluster {
            database, server, ..
        } = self;
        drop(server);
        database.drop_database().await;
    }
}

fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_string()
}

fn email(n: usize) -> String {
    format!("person{n:06}@example.com")
}

/// `people(email, first_name, last_name, grp)` with `rows` rows in `groups` groups.
async fn write_people(path: &Path, rows: usize, groups: usize) {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("people db");
    connection
        .execute(
            "CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, \
             grp INTEGER NOT NULL)",
        )
        .await
        .expect("people table");
    let mut transaction = connection.begin().await.expect("transaction");
    for chunk_start in (0..rows).step_by(500) {
        let chunk_end = (chunk_start + 500).min(rows);
        let values: Vec<String> = (chunk_start..chunk_end)
            .map(|n| {
                format!(
                    "('{}', 'First{n}', 'Last{n}', {})",
                    email(n),
                    n % groups.max(1)
                )
            })
            .collect();
        transaction
            .execute(
                format!(
                    "INSERT INTO people (email, first_name, last_name, grp) VALUES {}",
                    values.join(", ")
                )
                .as_str(),
            )
            .await
            .expect("people rows");
    }
    transaction.commit().await.expect("commit");
    connection.close().await.expect("close");
}

/// 30 syncs started at once with three workers: each execution runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_syncs_three_workers() {
    const SYNCS: usize = 30;
    const PER_SYNC: usize = 3;
    let Some(cluster) = Cluster::start("thirty_syncs", SYNCS * PER_SYNC, SYNCS).await else {
        return;
    };
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&cluster.database.url, 30))
        .collect();
    let (salesforce, people) = cluster.connections().await;
    let mut syncs = Vec::new();
    for group in 0..SYNCS {
        syncs.push(cluster.sync(&salesforce, &people, Some(group)).await);
    }
    // All at once.
    let starts = syncs.iter().map(|sync| cluster.start_sync(sync));
    let executions: Vec<String> = futures_util::future::join_all(starts).await;
    assert_eq!(executions.len(), SYNCS);

    for (sync, started) in syncs.iter().zip(&executions) {
        let history = cluster.settle(sync).await;
        assert_eq!(history.len(), 1, "one execution per start: {history:?}");
        let execution = &history[0];
        assert_eq!(&id_of(execution), started);
        assert_eq!(execution["status"], "completed", "{execution}");
        assert_eq!(
            execution["counts"]["insert"],
            json!(PER_SYNC),
            "{execution}"
        );
        assert_eq!(execution["counts"]["error"], json!(0), "{execution}");
    }

    // Every job was claimed once and finished; nothing ran twice.
    let mut pg = cluster.pg().await;
    let row = sqlx::query(
        "SELECT COUNT(*) AS jobs, MIN(attempts) AS min_attempts, MAX(attempts) AS max_attempts, \
         COUNT(DISTINCT split_part(lease_owner, '/', 1)) AS owners, \
         SUM(CASE WHEN status = 'done' AND outcome = 'completed' THEN 1 ELSE 0 END) AS done \
         FROM jobs",
    )
    .fetch_one(&mut pg)
    .await
    .expect("jobs");
    assert_eq!(row.get::<i64, _>("jobs"), SYNCS as i64);
    assert_eq!(row.get::<i64, _>("min_attempts"), 1);
    assert_eq!(row.get::<i64, _>("max_attempts"), 1);
    assert_eq!(row.get::<i64, _>("done"), SYNCS as i64);
    eprintln!(
        "jobs were run by {} of the 3 workers",
        row.get::<i64, _>("owners")
    );

    // The emulator holds every person exactly once.
    let emails = cluster.contact_emails().await;
    let expected: HashSet<String> = (0..SYNCS * PER_SYNC).map(email).collect();
    assert_eq!(emails.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(emails.values().all(|ids| ids.len() == 1), "duplicates");

    // The metrics every API process serves agree.
    let metrics = cluster
        .http
        .get(format!("{}/metrics", cluster.server.base_url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains(&format!(
            "ferry_sync_executions{{status=\"completed\"}} {SYNCS}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_job_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "ferry_sync_records_total{{outcome=\"insert\"}} {}",
            SYNCS * PER_SYNC
        )),
        "{metrics}"
    );
    drop(workers);
    cluster.finish().await;
}

/// The job of a sync: (attempts, status, execution id).
async fn job_state(pg: &mut sqlx::PgConnection, sync: &str) -> (i64, String, String) {
    let row = sqlx::query(
        "SELECT attempts, status, execution_id FROM jobs WHERE subject_id = $1 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(sync)
    .fetch_one(pg)
    .await
    .expect("job row");
    (
        row.get("attempts"),
        row.get("status"),
        row.get("execution_id"),
    )
}

/// A 100k-row sync whose worker is killed (SIGKILL) at five points and stopped (SIGTERM)
/// once: every record reaches Salesforce exactly once and a further run sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_and_duplicate_nothing() {
    const ROWS: usize = 100_000;
    let Some(cluster) = Cluster::start("killed_workers", ROWS, 1).await else {
        return;
    };
    // The identity is an external id, so the rows go out as Bulk upserts (no lookups),
    // which keeps 100k rows quick; the ledger decides what is sent again after a kill.
    let field = cluster
        .http
        .post(format!(
            "{}/__emulator/objects/Contact/fields",
            cluster.emulator.base_url()
        ))
        .json(
            &json!({"name": "Person_Key__c", "label": "Person key", "type": "text",
                      "length": 80, "externalId": true}),
        )
        .send()
        .await
        .expect("custom field");
    assert!(field.status().is_success(), "{:?}", field.text().await);
    let (salesforce, people) = cluster.connections().await;
    let sync = cluster
        .sync_with(
            &salesforce,
            &people,
            None,
            "updateOrCreate",
            "Person_Key__c",
        )
        .await;
    let mut pg = cluster.pg().await;
    let token = cluster.emulator_token().await;
    let mut worker = Worker::start(&cluster.database.url, LEASE_SECONDS);
    let first_execution = cluster.start_sync(&sync).await;

    // Kill the worker running the job each time the emulator has received more records —
    // at least the round's threshold, and more than at the previous kill, so every kill
    // lands at a different point — once a later attempt than the one killed before runs
    // (claimed by the worker that replaced it; a worker that lost its lease to a stall
    // and took its own job over also makes a later attempt, which is just as good).
    let thresholds = [5_000_i64, 15_000, 25_000, 35_000, 45_000];
    let mut kill_points: Vec<i64> = Vec::new();
    let mut killed_attempt = 0;
    for (round, threshold) in thresholds.iter().enumerate() {
        let deadline = Instant::now() + PATIENCE;
        let floor = kill_points
            .last()
            .map_or(*threshold, |last| (*threshold).max(last + 1));
        loop {
            let (attempts, status, _) = job_state(&mut pg, &sync).await;
            assert_ne!(status, "done", "the job finished before kill {round}");
            if attempts > killed_attempt && status == "running" {
                let count = cluster.contact_count(&token).await;
                if count >= floor {
                    worker.kill();
                    kill_points.push(count);
                    killed_attempt = job_state(&mut pg, &sync).await.0;
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no progress before kill {round}: {}",
                worker.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worker = Worker::start(&cluster.database.url, LEASE_SECONDS);
    }
    // The next attempt is stopped cleanly once its execution runs: it hands the job back
    // without waiting for the lease.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (attempts, status, execution) = job_state(&mut pg, &sync).await;
        assert_ne!(status, "done", "the job finished before the SIGTERM");
        if attempts > killed_attempt && status == "running" {
            let current = cluster
                .get(&format!("/api/syncs/{sync}/executions/{execution}"))
                .await;
            if current["status"] == "running" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the job was not taken over: {}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        worker.terminate(),
        "SIGTERM exits cleanly: {}",
        worker.log()
    );
    let (_, status, _) = job_state(&mut pg, &sync).await;
    if status == "queued" {
        let pending = cluster.get(&format!("/api/syncs/{sync}/status")).await;
        assert_eq!(
            pending["current_execution"]["status"], "created",
            "the released job's next execution is pending: {pending}"
        );
    }
    assert!(
        status == "queued" || status == "done",
        "a stopped worker releases its job (status {status}): {}",
        worker.log()
    );
    eprintln!("killed at {kill_points:?} records, then stopped with SIGTERM");
    assert_eq!(kill_points.len(), thresholds.len(), "{kill_points:?}");
    assert!(
        kill_points.windows(2).all(|pair| pair[0] < pair[1]),
        "every kill at a different point: {kill_points:?}"
    );

    // Another worker finishes the job.
    let _finisher = Worker::start(&cluster.database.url, LEASE_SECONDS);
    let history = cluster.settle(&sync).await;
    let last = history.last().expect("executions");
    assert_eq!(last["status"], "completed", "{history:?}");
    assert_eq!(id_of(&history[0]), first_execution);
    let interrupted = history
        .iter()
        .filter(|e| e["status"] == "interrupted")
        .count();
    assert!(interrupted >= thresholds.len(), "{history:?}");
    assert!(
        history.iter().all(|e| e["status"] != "canceled"),
        "a stopped or killed worker never shows its execution canceled: {history:?}"
    );
    assert!(
        history.iter().all(|e| e["type"] == "manual"),
        "attempts keep the execution type: {history:?}"
    );
    // The worker records the job's outcome right after settling the execution.
    let deadline = Instant::now() + PATIENCE;
    let attempts = loop {
        let (attempts, status, _) = job_state(&mut pg, &sync).await;
        if status == "done" {
            break attempts;
        }
        assert!(Instant::now() < deadline, "the job stays {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(attempts > thresholds.len() as i64, "attempts {attempts}");

    // Exactly the expected records: none missing, none twice.
    let emails = cluster.contact_emails().await;
    let expected: HashSet<String> = (0..ROWS).map(email).collect();
    assert_eq!(emails.len(), ROWS);
    assert_eq!(emails.keys().cloned().collect::<HashSet<_>>(), expected);
    let duplicated: Vec<_> = emails.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicated.is_empty(), "{} duplicated", duplicated.len());

    // The ledger agrees with Salesforce.
    let rows = sqlx::query("SELECT identity, record_id FROM sync_ledger WHERE sync_id = $1")
        .bind(&sync)
        .fetch_all(&mut pg)
        .await
        .expect("ledger");
    assert_eq!(rows.len(), ROWS);
    for row in &rows {
        let identity: String = row.get("identity");
        let record_id: Option<String> = row.get("record_id");
        assert_eq!(
            record_id.as_ref(),
            emails.get(&identity).and_then(|ids| ids.first()),
            "ledger entry of {identity}"
        );
    }

    // The runs that added tens of thousands of ledger entries refreshed its planner
    // statistics themselves (`last_analyze` is set by an explicit ANALYZE only, not by
    // autovacuum's).
    let analyzed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'sync_ledger'",
    )
    .fetch_one(&mut pg)
    .await
    .expect("ledger statistics");
    assert!(analyzed.is_some(), "the workers analyzed sync_ledger");

    // A further run sends nothing. (The ledger was just rewritten 100k times; vacuum it as
    // autovacuum eventually would, so the debug-build run reads it at a normal pace.)
    sqlx::query("VACUUM sync_ledger")
        .execute(&mut pg)
        .await
        .expect("vacuum");
    let again = cluster.start_sync(&sync).await;
    let history = cluster.settle(&sync).await;
    let last = history.last().expect("executions");
    assert_eq!(id_of(last), again);
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["counts"]["total"], json!(0), "{last}");
    assert_eq!(cluster.contact_emails().await.len(), ROWS);
    drop(pg);
    cluster.finish().await;
}

/// The bulk sync's executions once it has no unfinished one (oldest first).
async fn settle_bulk(cluster: &Cluster, sync: &str) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = cluster.get(&format!("/api/bulk/syncs/{sync}/status")).await;
        if status["current_execution"].is_null() && !status["last_execution"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bulk sync {sync} did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let executions = cluster
        .get(&format!("/api/bulk/syncs/{sync}/executions?ascending=true"))
        .await;
    executions.as_array().cloned().unwrap_or_default()
}

/// Waits until the bulk sync's job runs attempt `attempt` and its execution is reading
/// Account.
async fn bulk_attempt_running(
    cluster: &Cluster,
    pg: &mut sqlx::PgConnection,
    sync: &str,
    attempt: i64,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (attempts, status, execution) = job_state(pg, sync).await;
        assert_ne!(
            status, "done",
            "the bulk job finished before attempt {attempt} was stopped"
        );
        if attempts == attempt && status == "running" {
            let current = cluster
                .get(&format!("/api/bulk/syncs/{sync}/executions/{execution}"))
                .await;
            if current["schemas"][0]["status"] == "running" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "attempt {attempt} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bulk sync on `ferry worker` processes: queued while none runs, run by one (its
/// metrics endpoint reports the job), taken over after a SIGKILL, handed back on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_sync_on_workers() {
    const ACCOUNTS: i64 = 300;
    let Some(cluster) = Cluster::start("bulk_workers", 0, 1).await else {
        return;
    };
    let Some(warehouse_db) = ferry_store::testing::postgres_database("bulk_workers_dest").await
    else {
        return cluster.finish().await;
    };
    let generated = cluster
        .http
        .post(format!(
            "{}/__emulator/generate/Account",
            cluster.emulator.base_url()
        ))
        .json(&json!({"count": ACCOUNTS, "fields": {"Name": "Bulk {n}"}}))
        .send()
        .await
        .expect("seeding accounts");
    assert!(generated.status().is_success());
    let (salesforce, _) = cluster.connections().await;
    let options: sqlx::postgres::PgConnectOptions =
        warehouse_db.url.parse().expect("destination url");
    let warehouse = cluster
        .post(
            "/api/connections",
            json!({"name": "warehouse", "type": "postgresql", "configuration": {
                "hostname": options.get_host(), "port": options.get_port(),
                "database": options.get_database().expect("database"),
                "username": options.get_username(), "ssl": false}}),
        )
        .await;
    let sync = id_of(
        &cluster
            .post(
                "/api/bulk/syncs",
                json!({"name": "replica", "source_connection_id": salesforce,
                       "destination_connection_id": id_of(&warehouse),
                       "destination_configuration": {},
                       "default_schedule": {"frequency": "manual"},
                       "schemas": ["Account"]}),
            )
            .await,
    );
    let start = format!("/api/bulk/syncs/{sync}/executions");
    let mut pg = cluster.pg().await;

    // `ferry serve --workers 0` runs no bulk sync: the job waits for a worker.
    let first = id_of(&cluster.post(&start, json!({})).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (attempts, status, _) = job_state(&mut pg, &sync).await;
    assert_eq!((attempts, status.as_str()), (0, "queued"));
    let waiting = cluster.get(&format!("{start}/{first}")).await;
    assert_eq!(waiting["status"], "created", "{waiting}");

    // A worker with a metrics listener runs it.
    let metrics_address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("address").to_string()
    };
    let mut worker = Worker::start_with(
        &cluster.database.url,
        LEASE_SECONDS,
        &["--metrics-listen", &metrics_address],
    );
    let history = settle_bulk(&cluster, &sync).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["status"], "completed", "{history:?}");
    assert_eq!(history[0]["record_count"], json!(ACCOUNTS), "{history:?}");
    let mut destination =
        sqlx::postgres::PgConnectOptions::from_url(&warehouse_db.url.parse().expect("url"))
            .expect("options")
            .connect()
            .await
            .expect("destination");
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM account")
            .fetch_one(&mut destination)
            .await
            .expect("rows"),
        ACCOUNTS
    );
    let deadline = Instant::now() + PATIENCE;
    let metrics = loop {
        let metrics = cluster
            .http
            .get(format!("http://{metrics_address}/metrics"))
            .send()
            .await
            .expect("worker metrics")
            .text()
            .await
            .expect("metrics body");
        if metrics.contains(
            "ferry_job_duration_seconds_count{kind=\"bulk_sync\",outcome=\"completed\"} 1",
        ) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for family in [
        "ferry_jobs{kind=\"bulk_sync\",status=\"done\"} 1",
        "ferry_bulk_sync_executions{status=\"completed\"} 1",
        "ferry_job_queue_depth 0",
        "ferry_jobs_running_here 0",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }

    // Slow Salesforce down; the worker running a full refetch is killed, another takes
    // the job over once the lease expires and is stopped with SIGTERM, a third finishes.
    let faults = |body: Option<Value>| {
        let url = format!("{}/__emulator/faults", cluster.emulator.base_url());
        let request = match body {
            Some(body) => cluster.http.put(url).json(&body),
            None => cluster.http.delete(url),
        };
        async move {
            assert!(request.send().await.expect("faults").status().is_success());
        }
    };
    faults(Some(json!({"latencyMs": 1000}))).await;
    id_of(&cluster.post(&start, json!({"fetch_mode": "full"})).await);
    bulk_attempt_running(&cluster, &mut pg, &sync, 1).await;
    worker.kill();
    let mut second = Worker::start(&cluster.database.url, LEASE_SECONDS);
    bulk_attempt_running(&cluster, &mut pg, &sync, 2).await;
    assert!(
        second.terminate(),
        "SIGTERM exits cleanly: {}",
        second.log()
    );
    let (_, status, pending) = job_state(&mut pg, &sync).await;
    assert_eq!(status, "queued", "{}", second.log());
    let pending = cluster.get(&format!("{start}/{pending}")).await;
    assert_eq!(pending["status"], "created", "{pending}");
    faults(None).await;
    let _third = Worker::start(&cluster.database.url, LEASE_SECONDS);
    let history = settle_bulk(&cluster, &sync).await;
    let statuses: Vec<&str> = history
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["completed", "interrupted", "interrupted", "completed"],
        "{history:?}"
    );
    let last = history.last().expect("executions");
    assert_eq!(
        (last["type"].as_str(), last["fetch_mode"].as_str()),
        (Some("manual"), Some("full"))
    );
    assert_eq!(last["record_count"], json!(ACCOUNTS), "{last}");
    // The worker records the job's outcome right after settling the execution.
    let deadline = Instant::now() + PATIENCE;
    let (attempts, status) = loop {
        let (attempts, status, _) = job_state(&mut pg, &sync).await;
        if status == "done" || Instant::now() > deadline {
            break (attempts, status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((attempts, status.as_str()), (3, "done"));
    assert_eq!(
        count("SELECT COUNT(DISTINCT id) FROM account")
            .fetch_one(&mut destination)
            .await
            .expect("ids"),
        ACCOUNTS
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM account")
            .fetch_one(&mut destination)
            .await
            .expect("rows"),
        ACCOUNTS
    );
    drop(destination);
    drop(pg);
    warehouse_db.drop_database().await;
    cluster.finish().await;
}
