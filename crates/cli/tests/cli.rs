//! The `ferry` binary end to end: first start, key creation while serving, graceful
//! shutdown, and refusing PostgreSQL without a secret key.

mod support;

use std::process::Command;

fn ferry() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .env_remove("FERRY_DATABASE_URL")
        .env_remove("FERRY_SECRET_KEY")
        .env_remove("FERRY_BOOTSTRAP_API_KEY");
    command
}

#[test]
fn first_start_creates_store_key_and_secret_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = support::FerryServer::start(dir.path());
    assert!(dir.path().join("ferry.db").exists());
    let secret = dir.path().join("secret.key");
    assert!(secret.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        server.log().contains("registered FERRY_BOOTSTRAP_API_KEY"),
        "{}",
        server.log()
    );

    // `keys create` works while `serve` runs, against the same SQLite store.
    let output = ferry()
        .args(["keys", "create", "--org", "acme", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("keys create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(key.starts_with("ferry_"), "{key}");

    // SIGTERM shuts down gracefully.
    assert!(
        server.terminate(),
        "ferry serve did not exit cleanly: {}",
        server.log()
    );
}

#[test]
fn first_start_without_bootstrap_prints_a_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server =
        support::FerryServer::start_with(dir.path(), &[("FERRY_BOOTSTRAP_API_KEY", "")]);
    let log = server.log();
    assert!(log.contains("first API key"), "{log}");
    assert!(log.contains("ferry_"), "{log}");
    assert!(server.terminate());
    // A second start on the same store prints no new key.
    let mut again =
        support::FerryServer::start_with(dir.path(), &[("FERRY_BOOTSTRAP_API_KEY", "")]);
    assert!(!again.log().contains("first API key"), "{}", again.log());
    assert!(again.terminate());
}

#[test]
fn postgres_store_requires_a_secret_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = ferry()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database-url", "postgres://postgres@127.0.0.1:1/none"])
        .output()
        .expect("serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FERRY_SECRET_KEY is required"), "{stderr}");
}

#[test]
fn bad_arguments_are_named() {
    let output = ferry()
        .args(["serve", "--listen", "nowhere"])
        .output()
        .expect("serve");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
    let output = ferry()
        .args(["keys", "create", "--org", "  "])
        .output()
        .expect("keys");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--org"));
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_on_postgres() {
    let Some(db) = ferry_store::testing::postgres_database("cli_migrate").await else {
        return;
    };
    let output = ferry()
        .args(["migrate", "--database-url", &db.url])
        .output()
        .expect("migrate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    db.drop_database().await;
}
