//! Conformance: Polytomic's official Python SDK (pinned) against a spawned `ferry serve`.
//!
//! The virtualenv is created under the cargo target directory on first use. Without
//! Python or PostgreSQL the test prints a loud SKIPPED line — unless `CI` or
//! `FERRY_REQUIRE_SERVICES` is set, in which case it fails.

mod support;

use std::process::Command;

const SDK_PIN: &str = "polytomic==25.9.2";

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

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/test_connections.py");
    let output = Command::new(&python)
        .arg(script)
        .env("FERRY_URL", &server.base_url)
        .env("FERRY_API_KEY", support::BOOTSTRAP_KEY)
        .env("FERRY_PG_HOST", &pg.host)
        .env("FERRY_PG_PORT", pg.port.to_string())
        .env("FERRY_PG_USER", &pg.user)
        .env("FERRY_PG_DATABASE", &pg.database)
        .env("FERRY_SQLITE_PATH", &sqlite_path)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "python SDK test failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(stdout.contains("checks passed"));
    drop(server);
    pg_database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn polytomic_python_sdk_creates_an_api_mode_salesforce_connection() {
    let Some(python) = support::python_venv("polytomic-25.9.2", &[SDK_PIN]) else {
        return;
    };
    let emulator = ferry_salesforce_emulator::start(ferry_salesforce_emulator::EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/test_salesforce.py");
    let output = Command::new(&python)
        .arg(script)
        .env("FERRY_URL", &server.base_url)
        .env("FERRY_API_KEY", support::BOOTSTRAP_KEY)
        .env("EMULATOR_URL", emulator.base_url())
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python SDK salesforce test failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
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
    {
        use sqlx::ConnectOptions as _;
        let mut conn =
            <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&pg_database.url)
                .expect("database url")
                .connect()
                .await
                .expect("connect");
        for statement in [
            "CREATE TABLE public.people (id bigint PRIMARY KEY, email text NOT NULL, first_name text, signed_up_at timestamptz)",
            "INSERT INTO public.people VALUES (1, 'ada@example.com', 'Ada', '2024-01-01T00:00:00Z'), \
             (2, 'grace@example.com', 'Grace', NULL), (3, 'linus@example.com', NULL, '2024-03-01T12:00:00Z')",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect("seed table");
        }
    }
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/test_models.py");
    let output = Command::new(&python)
        .arg(script)
        .env("FERRY_URL", &server.base_url)
        .env("FERRY_API_KEY", support::BOOTSTRAP_KEY)
        .env("FERRY_PG_HOST", &pg.host)
        .env("FERRY_PG_PORT", pg.port.to_string())
        .env("FERRY_PG_USER", &pg.user)
        .env("FERRY_PG_DATABASE", &pg.database)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python SDK models test failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
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
    {
        use sqlx::ConnectOptions as _;
        let mut conn =
            <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&pg_database.url)
                .expect("database url")
                .connect()
                .await
                .expect("connect");
        for statement in [
            "CREATE TABLE public.leads (email text PRIMARY KEY, first_name text, last_name text NOT NULL, company text NOT NULL)",
            "INSERT INTO public.leads VALUES ('ada@example.com', 'Ada', 'Lovelace', 'Analytical Engines'), \
             ('grace@example.com', 'Grace', 'Hopper', 'Navy'), ('alan@example.com', 'Alan', 'Turing', 'Bletchley Park')",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .expect("seed table");
        }
    }
    let emulator = ferry_salesforce_emulator::start(ferry_salesforce_emulator::EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let data_dir = tempfile::tempdir().expect("tempdir");
    let server = support::FerryServer::start(data_dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/test_model_sync.py");
    let output = Command::new(&python)
        .arg(script)
        .env("FERRY_URL", &server.base_url)
        .env("FERRY_API_KEY", support::BOOTSTRAP_KEY)
        .env("EMULATOR_URL", emulator.base_url())
        .env("FERRY_PG_HOST", &pg.host)
        .env("FERRY_PG_PORT", pg.port.to_string())
        .env("FERRY_PG_USER", &pg.user)
        .env("FERRY_PG_DATABASE", &pg.database)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python SDK model sync test failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(stdout.contains("second run sent nothing"), "{stdout}");
    drop(server);
    emulator.shutdown().await;
    pg_database.drop_database().await;
}
