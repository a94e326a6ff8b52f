//! Test helpers (feature `testsuite`): a fresh PostgreSQL database per test.
//!
//! `FERRY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a
//! server where the test may create databases. When it is unreachable the helper returns
//! `None` after printing a loud `SKIPPED` line — unless `CI` or `FERRY_REQUIRE_SERVICES` is
//! set, in which case it panics so the run fails.

use std::str::FromStr;

use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

/// Default admin URL for test databases.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether missing services must fail the run.
pub fn services_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var_os("FERRY_REQUIRE_SERVICES").is_some()
}

/// A database created for one test; dropped (best effort) by [`TestDatabase::drop_database`].
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Drops the database.
    pub async fn drop_database(self) {
        if let Ok(options) = PgConnectOptions::from_str(&self.admin_url)
            && let Ok(mut conn) = options.connect().await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Creates a fresh PostgreSQL database named after `test_name`.
///
/// # Panics
/// When the server is unreachable and services are required (`CI`), so the test fails.
pub async fn postgres_database(test_name: &str) -> Option<TestDatabase> {
    let admin_url =
        std::env::var("FERRY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let options = match PgConnectOptions::from_str(&admin_url) {
        Ok(options) => options,
        Err(error) => panic!("FERRY_TEST_POSTGRES_URL is invalid: {error}"),
    };
    let mut conn = match options.clone().connect().await {
        Ok(conn) => conn,
        Err(error) => {
            if services_required() {
                panic!(
                    "PostgreSQL at {admin_url} is required (CI is set) but unreachable: {error}"
                );
            }
            eprintln!(
                "SKIPPED: {test_name}: PostgreSQL at {admin_url} is unreachable ({error}); \
                 set FERRY_TEST_POSTGRES_URL or start PostgreSQL"
            );
            return None;
        }
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let sanitized: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!("ferry_t_{sanitized}_{}", &suffix[..12]);
    if let Err(error) = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
    {
        panic!("could not create test database {name}: {error}");
    }
    let url = options.database(&name).to_url_lossy().to_string();
    Some(TestDatabase {
        url,
        name,
        admin_url,
    })
}
