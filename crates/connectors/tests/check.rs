//! Connectivity checks against real servers: the local PostgreSQL (`FERRY_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`) and MySQL/MariaDB
//! (`FERRY_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).
//!
//! A test whose server is unreachable prints a `SKIPPED:` line and passes, unless `CI` or
//! `FERRY_REQUIRE_SERVICES` is set: then it fails. The local servers do not speak TLS, so the
//! configurations use `ssl: false` (one test checks what `ssl: true` says about that).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ferry_connectors::{CheckError, ConnectionHealth, ConnectionStatus, registry};
use serde_json::{Value, json};

/// The parts of a `scheme://user[:password]@host[:port]/database` URL.
#[derive(Debug, Clone)]
struct Server {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
}

fn parse_url(url: &str, default_port: u16) -> Server {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((credentials, host_port)) => (credentials, host_port),
        None => ("", authority),
    };
    let (user, password) = match credentials.split_once(':') {
        Some((user, password)) => (user.to_string(), Some(password.to_string())),
        None => (credentials.to_string(), None),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(default_port)),
        None => (host_port.to_string(), default_port),
    };
    Server {
        host,
        port,
        user,
        password,
        database: database.to_string(),
    }
}

fn services_required() -> bool {
    ["CI", "FERRY_REQUIRE_SERVICES"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()))
}

/// The server from `env` (or `default`) when it accepts TCP connections; otherwise `None`
/// after printing `SKIPPED` — or a panic when services are required.
fn server(env: &str, default: &str, default_port: u16, test: &str) -> Option<Server> {
    let url = std::env::var(env).unwrap_or_else(|_| default.to_string());
    let server = parse_url(&url, default_port);
    let reachable = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(server);
    }
    let what = format!("{}:{} ({env})", server.host, server.port);
    if services_required() {
        panic!("{test}: {what} is unreachable and CI/FERRY_REQUIRE_SERVICES is set");
    }
    eprintln!("\n========\nSKIPPED: {test}: {what} is unreachable\n========\n");
    None
}

fn postgres(test: &str) -> Option<Server> {
    server(
        "FERRY_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
        5432,
        test,
    )
}

fn mysql(test: &str) -> Option<Server> {
    server(
        "FERRY_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
        3306,
        test,
    )
}

fn postgres_config(server: &Server) -> Value {
    let mut config = json!({
        "hostname": server.host,
        "port": server.port,
        "database": server.database,
        "username": server.user,
        "ssl": false,
    });
    if let Some(password) = &server.password {
        config["password"] = json!(password);
    }
    config
}

fn mysql_config(server: &Server) -> Value {
    let mut config = json!({
        "hostname": server.host,
        "port": server.port,
        "account": server.user,
        "dbname": server.database,
        "ssl": false,
    });
    if let Some(password) = &server.password {
        config["passwd"] = json!(password);
    }
    config
}

fn with(mut config: Value, changes: Value) -> Value {
    if let (Some(config), Some(changes)) = (config.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            config.insert(key.clone(), value.clone());
        }
    }
    config
}

async fn check(type_id: &str, config: &Value) -> Result<ConnectionHealth, CheckError> {
    let connector = registry()
        .get(type_id)
        .cloned()
        .unwrap_or_else(|| panic!("no connector {type_id}"));
    connector
        .validate(config)
        .unwrap_or_else(|e| panic!("test configuration is invalid: {e}"));
    connector.check(config).await
}

async fn check_error(type_id: &str, config: &Value) -> String {
    match check(type_id, config).await {
        Ok(health) => panic!("expected the check to fail, got {health:?}"),
        Err(error) => {
            eprintln!("check of {type_id} failed as expected: {}", error.message);
            error.message
        }
    }
}

#[tokio::test]
async fn postgres_check_succeeds() {
    let Some(server) = postgres("postgres_check_succeeds") else {
        return;
    };
    let health = check("postgresql", &postgres_config(&server))
        .await
        .expect("healthy");
    assert_eq!(health.status, ConnectionStatus::Healthy);
    assert_eq!(health.message, None);
}

#[tokio::test]
async fn postgres_unknown_database() {
    let Some(server) = postgres("postgres_unknown_database") else {
        return;
    };
    let config = with(
        postgres_config(&server),
        json!({"database": "ferry_no_such_database"}),
    );
    let message = check_error("postgresql", &config).await;
    assert_eq!(
        message,
        format!(
            "database \"ferry_no_such_database\" does not exist on {}:{}",
            server.host, server.port
        )
    );
}

#[tokio::test]
async fn postgres_unknown_role() {
    let Some(server) = postgres("postgres_unknown_role") else {
        return;
    };
    let config = with(
        postgres_config(&server),
        json!({"username": "ferry_no_such_role", "password": "not-the-password-123"}),
    );
    let message = check_error("postgresql", &config).await;
    assert!(
        message.contains("ferry_no_such_role"),
        "message should name the role: {message}"
    );
    assert!(!message.contains("not-the-password-123"), "{message}");
}

#[tokio::test]
async fn postgres_wrong_password() {
    let Some(server) = postgres("postgres_wrong_password") else {
        return;
    };
    let password = "ferry-wrong-password-42";
    let config = with(postgres_config(&server), json!({"password": password}));
    match check("postgresql", &config).await {
        Ok(_) => eprintln!(
            "\n========\nSKIPPED: postgres_wrong_password: the server at {}:{} does not check \
             passwords (trust authentication)\n========\n",
            server.host, server.port
        ),
        Err(error) => {
            assert_eq!(
                error.message,
                format!(
                    "password authentication failed for user \"{}\" (check username and \
                     password)",
                    server.user
                )
            );
            assert!(!error.message.contains(password));
        }
    }
}

#[tokio::test]
async fn postgres_connection_refused() {
    if postgres("postgres_connection_refused").is_none() {
        return;
    }
    let config = json!({
        "hostname": "127.0.0.1", "port": 1, "database": "postgres", "username": "postgres",
        "ssl": false
    });
    let message = check_error("postgresql", &config).await;
    assert_eq!(
        message,
        "could not connect to 127.0.0.1:1: connection refused (is PostgreSQL running and \
         listening on that port?)"
    );
}

#[tokio::test]
async fn postgres_unknown_host() {
    let config = json!({
        "hostname": "ferry-no-such-host.invalid", "database": "postgres",
        "username": "postgres", "ssl": false
    });
    let message = check_error("postgresql", &config).await;
    assert!(
        message.starts_with("could not resolve host \"ferry-no-such-host.invalid\"")
            || message.contains("no answer within"),
        "{message}"
    );
}

#[tokio::test]
async fn postgres_ssl_true_requires_tls() {
    let Some(server) = postgres("postgres_ssl_true_requires_tls") else {
        return;
    };
    let config = with(postgres_config(&server), json!({"ssl": true}));
    match check("postgresql", &config).await {
        // The server speaks TLS: the connection was encrypted.
        Ok(health) => assert_eq!(health.status, ConnectionStatus::Healthy),
        Err(error) => assert!(
            error
                .message
                .contains("does not support TLS, but ssl is true"),
            "{}",
            error.message
        ),
    }
}

/// A CA that signed nothing the test servers use.
const UNRELATED_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUEJZxvX/z9HW/MNhp9TYvSc92XlgwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXRmVycnkgdGVzdCB1bnJlbGF0ZWQgQ0EwIBcNMjYxMTI3MTg1
MzMyWhgPMjEyNjExMDMxODUzMzJaMCIxIDAeBgNVBAMMF0ZlcnJ5IHRlc3QgdW5y
ZWxhdGVkIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECuI3If4clGDlUiOy
6FQat2wKSvvHUIJkoRQqEWmZ/4p6seeeDFSODP7knEMkZT87YCZv+EYFuKpjt6RU
VdC356NTMFEwHQYDVR0OBBYEFM6O5xb+PpTs0KvRsd7Zt446XsEHMB8GA1UdIwQY
MBaAFM6O5xb+PpTs0KvRsd7Zt446XsEHMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDRwAwRAIgHccN2mlSiefWaI1dTHM+XJXt9YgfXQuqhGcbl/TSsPcCIHmW
/xncknxOzW6zqTp3P4wOU9wrlAuPcplfgwWolKV8
-----END CERTIFICATE-----
";

/// The server's own certificate and key files, when it speaks TLS and they are readable
/// here (the local server uses a self-signed certificate).
async fn postgres_tls_files(server: &Server) -> Option<(String, String)> {
    use sqlx::Connection as _;
    let options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(&server.host)
        .port(server.port)
        .username(&server.user)
        .password(server.password.as_deref().unwrap_or_default())
        .database(&server.database)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let mut connection = sqlx::PgConnection::connect_with(&options).await.ok()?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('ssl', 'ssl_cert_file', 'ssl_key_file')",
    )
    .fetch_all(&mut connection)
    .await
    .ok()?;
    let setting = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if setting("ssl").as_deref() != Some("on") {
        return None;
    }
    let cert = std::fs::read_to_string(setting("ssl_cert_file")?).ok()?;
    let key = std::fs::read_to_string(setting("ssl_key_file")?).ok()?;
    Some((cert, key))
}

#[tokio::test]
async fn postgres_ca_cert_and_client_certificates() {
    let Some(server) = postgres("postgres_ca_cert_and_client_certificates") else {
        return;
    };
    let Some((cert, key)) = postgres_tls_files(&server).await else {
        eprintln!(
            "\n========\nSKIPPED: postgres_ca_cert_and_client_certificates: the server does \
             not speak TLS or its certificate is not readable here\n========\n"
        );
        return;
    };
    // A CA that did not sign the server's certificate: verification fails.
    let config = with(
        postgres_config(&server),
        json!({"ssl": true, "ca_cert": UNRELATED_CA}),
    );
    let message = check_error("postgresql", &config).await;
    assert!(message.contains("not signed by ca_cert"), "{message}");

    // The self-signed server certificate as CA, the name it was issued for, and a client
    // certificate (which the server may or may not ask for): the PEM values are used.
    let config = with(
        postgres_config(&server),
        json!({
            "hostname": "localhost", "ssl": true, "ca_cert": cert,
            "client_certs": true, "client_certificate": cert, "client_key": key
        }),
    );
    match check("postgresql", &config).await {
        Ok(health) => assert_eq!(health.status, ConnectionStatus::Healthy),
        Err(error) if error.message.contains("not valid for") => eprintln!(
            "\n========\nSKIPPED: postgres_ca_cert_and_client_certificates: the server \
             certificate is not issued for localhost: {}\n========\n",
            error.message
        ),
        Err(error) => panic!("{}", error.message),
    }
}

#[tokio::test]
async fn mysql_check_succeeds() {
    let Some(server) = mysql("mysql_check_succeeds") else {
        return;
    };
    let health = check("mysql", &mysql_config(&server))
        .await
        .expect("healthy");
    assert_eq!(health.status, ConnectionStatus::Healthy);
    // Without a database, too.
    let mut config = mysql_config(&server);
    if let Some(config) = config.as_object_mut() {
        config.remove("dbname");
    }
    check("mysql", &config)
        .await
        .expect("healthy without dbname");
}

#[tokio::test]
async fn mysql_unknown_database() {
    let Some(server) = mysql("mysql_unknown_database") else {
        return;
    };
    let config = with(
        mysql_config(&server),
        json!({"dbname": "ferry_no_such_database"}),
    );
    let message = check_error("mysql", &config).await;
    assert_eq!(
        message,
        format!(
            "database \"ferry_no_such_database\" does not exist on {}:{}",
            server.host, server.port
        )
    );
}

#[tokio::test]
async fn mysql_wrong_password() {
    let Some(server) = mysql("mysql_wrong_password") else {
        return;
    };
    let password = "ferry-wrong-password-42";
    let config = with(
        mysql_config(&server),
        json!({"account": "ferry_no_such_account", "passwd": password}),
    );
    let message = check_error("mysql", &config).await;
    assert!(
        message.starts_with(
            "access denied for account \"ferry_no_such_account\" (check account and passwd)"
        ),
        "{message}"
    );
    assert!(!message.contains(password), "{message}");
}

#[tokio::test]
async fn mysql_wrong_password_for_a_real_account() {
    let Some(server) = mysql("mysql_wrong_password_for_a_real_account") else {
        return;
    };
    let password = "ferry-wrong-password-43";
    let config = with(mysql_config(&server), json!({"passwd": password}));
    match check("mysql", &config).await {
        Ok(_) => eprintln!(
            "\n========\nSKIPPED: mysql_wrong_password_for_a_real_account: the server at {}:{} \
             does not check passwords for {}\n========\n",
            server.host, server.port, server.user
        ),
        Err(error) => {
            assert!(
                error.message.starts_with(&format!(
                    "access denied for account \"{}\" (check account and passwd)",
                    server.user
                )),
                "{}",
                error.message
            );
            assert!(!error.message.contains(password));
        }
    }
}

#[tokio::test]
async fn mysql_connection_refused() {
    if mysql("mysql_connection_refused").is_none() {
        return;
    }
    let config = json!({"hostname": "127.0.0.1", "port": 1, "account": "root", "ssl": false});
    let message = check_error("mysql", &config).await;
    assert_eq!(
        message,
        "could not connect to 127.0.0.1:1: connection refused (is MySQL running and listening \
         on that port?)"
    );
}

#[tokio::test]
async fn mysql_tls_required_but_not_offered() {
    let Some(server) = mysql("mysql_tls_required_but_not_offered") else {
        return;
    };
    let config = with(mysql_config(&server), json!({"ssl": true}));
    match check("mysql", &config).await {
        Ok(_) => eprintln!(
            "\n========\nSKIPPED: mysql_tls_required_but_not_offered: the server speaks \
             TLS\n========\n"
        ),
        Err(error) => assert!(
            error
                .message
                .contains("does not support TLS, but ssl is true"),
            "{}",
            error.message
        ),
    }
}

#[tokio::test]
async fn salesforce_check_is_honest_about_authorization() {
    let config = json!({"domain": "acme.my.salesforce.com"});
    let health = check("salesforce", &config).await.expect("check runs");
    assert_eq!(health.status, ConnectionStatus::Unauthorized);
    assert_ne!(health.status.as_str(), "healthy");
}

#[test]
fn registry_lists_every_type() {
    assert_eq!(
        registry().ids(),
        vec!["mysql", "postgresql", "salesforce", "sqlite"]
    );
    for connector in registry().all() {
        let info = connector.info();
        let schema = connector.config_schema();
        assert_eq!(schema["type"], "object", "{}", info.id);
        assert!(
            schema["$id"]
                .as_str()
                .is_some_and(|id| id.ends_with(info.id))
        );
    }
}

#[test]
fn url_parsing() {
    let s = parse_url("postgres://u:p@h:1234/db?sslmode=disable", 5432);
    assert_eq!(
        (
            s.host.as_str(),
            s.port,
            s.user.as_str(),
            s.password.as_deref(),
            s.database.as_str()
        ),
        ("h", 1234, "u", Some("p"), "db")
    );
    let s = parse_url("mysql://root@127.0.0.1/test", 3306);
    assert_eq!((s.port, s.password), (3306, None));
}
