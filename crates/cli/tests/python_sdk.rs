//! Conformance: Polytomic's official Python SDK (pinned) against a spawned `ferry serve`.
//!
//! Each test runs one script of `tests/sdk/`. The virtualenv is created under the cargo
//! target directory on first use. Without Python or PostgreSQL a test prints a loud SKIPPED
//! line — unless `CI` or `FERRY_REQUIRE_SERVICES` is set, in which case it fails.

mod support;

use std::process::Command;

use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use sqlx::ConnectOptions as _;

const SDK_PIN: &str = "polytomic==25.9.2";

/// Runs `tests/sdk/<script>` against `server` with `env`; returns its stdout.
fn run_script(
    python: &std::path::Path,
    script: &str,
    server: &support::FerryServer,
    env: &[(&str, String)],
) -> String {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(python);
    command
        .arg(path)
        .env("FERRY_URL", &server.base_url)
        .env("FERRY_API_KEY", support::BOOTSTRAP_KEY);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    stdout
}

/// The environment naming a PostgreSQL database for the scripts.
fn pg_env(pg: &support::PgTarget) -> Vec<(&'static str, String)> {
    vec![
        ("FERRY_PG_HOST", pg.host.clone()),
        ("FERRY_PG_PORT", pg.port.to_string()),
        ("FERRY_PG_USER", pg.user.clone()),
        ("FERRY_PG_DATABASE", pg.database.clone()),
    ]
}

/// Runs `statements` in the test database.
async fn seed(database: &ferry_store::testing::TestDatabase, statements: &[&str]) {
    let mut conn = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&database.url)
        .expect("database url")
        .connect()
        .await
        .expect("connect");
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect("seed table");
    }
}

async fn emulator() -> RunningEmulator {
    ferry_salesforce_emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_drives_connections() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let Some((pg, pg_database)) = support::postgres_target("python_sdk").await else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let sqlite_path = data_dir.path().join("source.db");
    std::fs::write(&sqlite_path, b"").expect("create sqlite file");
    let server = support::FerryServer::start(data_dir.path());
    let mut env = pg_env(&pg);
    env.push(("FERRY_SQLITE_PATH", sqlite_path.display().to_string()));
    let stdout = run_script(&python, "test_connections.py", &server, &env);
    assert!(stdout.contains("checks passed"));
    drop(server);
    pg_database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_creates_an_api_mode_salesforce_connection() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let emulator = emulator().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let stdout = run_script(
        &python,
        "test_salesforce.py",
        &server,
        &[("EMULATOR_URL", emulator.base_url())],
    );
    assert!(stdout.contains("healthy as admin@ferry.local"), "{stdout}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_manages_a_postgresql_model() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let Some((pg, pg_database)) = support::postgres_target("python_sdk_models").await else {
        return;
    };
    seed(
        &pg_database,
        &[
            "CREATE TABLE public.people (id bigint PRIMARY KEY, email text NOT NULL, first_name text, signed_up_at timestamptz)",
            "INSERT INTO public.people VALUES (1, 'ada@example.com', 'Ada', '2024-01-01T00:00:00Z'), \
             (2, 'grace@example.com', 'Grace', NULL), (3, 'linus@example.com', NULL, '2024-03-01T12:00:00Z')",
        ],
    )
    .await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let stdout = run_script(&python, "test_models.py", &server, &pg_env(&pg));
    assert!(stdout.contains("created, sampled and deleted"), "{stdout}");
    drop(server);
    pg_database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_runs_a_model_sync_into_salesforce() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let Some((pg, pg_database)) = support::postgres_target("python_sdk_sync").await else {
        return;
    };
    seed(
        &pg_database,
        &[
            "CREATE TABLE public.leads (email text PRIMARY KEY, first_name text, last_name text NOT NULL, company text NOT NULL)",
            "INSERT INTO public.leads VALUES ('ada@example.com', 'Ada', 'Lovelace', 'Analytical Engines'), \
             ('grace@example.com', 'Grace', 'Hopper', 'Navy'), ('alan@example.com', 'Alan', 'Turing', 'Bletchley Park')",
        ],
    )
    .await;
    let emulator = emulator().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let mut env = pg_env(&pg);
    env.push(("EMULATOR_URL", emulator.base_url()));
    let stdout = run_script(&python, "test_model_sync.py", &server, &env);
    assert!(stdout.contains("second run sent nothing"), "{stdout}");
    drop(server);
    emulator.shutdown().await;
    pg_database.drop_database().await;
}

/// `(Id, <column>)` of every row of a destination table, ordered by Id.
async fn destination_rows(
    database: &ferry_store::testing::TestDatabase,
    sql: &str,
) -> Vec<(String, Option<String>)> {
    let mut conn = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&database.url)
        .expect("database url")
        .connect()
        .await
        .expect("connect");
    sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .expect("destination query")
        .iter()
        .map(|row| {
            use sqlx::Row as _;
            (row.get::<String, _>(0), row.get::<Option<String>, _>(1))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `(Id, <field>)` of every record of an object in the emulator, ordered by Id.
async fn emulator_rows(
    emulator: &RunningEmulator,
    soql: &str,
    field: &str,
) -> Vec<(String, Option<String>)> {
    let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).expect("login url");
    let client = ferry_salesforce::SalesforceClient::connect(ferry_salesforce::ClientConfig::new(
        login,
        ferry_salesforce::OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
        ferry_salesforce::Credentials::ClientCredentials,
    ))
    .await
    .expect("emulator client");
    client
        .query_all_pages(soql, ferry_salesforce::QueryScope::Live)
        .await
        .expect("emulator query")
        .iter()
        .map(|record| {
            (
                record["Id"].as_str().unwrap_or_default().to_string(),
                record[field].as_str().map(str::to_string),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_runs_a_bulk_sync_into_postgresql() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let Some((pg, pg_database)) = support::postgres_target("python_sdk_bulk_sync").await else {
        return;
    };
    let emulator = emulator().await;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{}/__emulator/{path}", emulator.base_url());
    let generated = http
        .post(admin("generate/Account"))
        .json(&serde_json::json!({"count": 40, "fields": {"Name": "SDK Account {n}", "Industry": ["Energy", "Media"]}}))
        .send()
        .await
        .expect("seed accounts");
    assert!(generated.status().is_success());
    let contacts: Vec<serde_json::Value> = (1..=15)
        .map(|n| serde_json::json!({"LastName": format!("Contact {n}"), "Email": format!("c{n}@example.com")}))
        .collect();
    let inserted = http
        .post(admin("records/Contact"))
        .json(&contacts)
        .send()
        .await
        .expect("seed contacts");
    assert!(inserted.status().is_success());
    let accounts = emulator_rows(
        &emulator,
        "SELECT Id, Name FROM Account ORDER BY Id",
        "Name",
    )
    .await;
    let contacts = emulator_rows(
        &emulator,
        "SELECT Id, LastName FROM Contact ORDER BY Id",
        "LastName",
    )
    .await;

    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let mut env = pg_env(&pg);
    env.push(("EMULATOR_URL", emulator.base_url()));
    env.push(("EXPECTED_ACCOUNTS", accounts.len().to_string()));
    env.push(("EXPECTED_CONTACTS", contacts.len().to_string()));
    let stdout = run_script(&python, "test_bulk_sync.py", &server, &env);
    assert!(stdout.contains("records replicated"), "{stdout}");

    // The destination holds exactly what the emulator holds.
    assert_eq!(
        destination_rows(
            &pg_database,
            "SELECT id, name FROM salesforce.account ORDER BY id"
        )
        .await,
        accounts
    );
    assert_eq!(
        destination_rows(
            &pg_database,
            "SELECT id, last_name FROM salesforce.contact ORDER BY id"
        )
        .await,
        contacts
    );
    drop(server);
    emulator.shutdown().await;
    pg_database.drop_database().await;
}
