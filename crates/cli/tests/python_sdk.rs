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
