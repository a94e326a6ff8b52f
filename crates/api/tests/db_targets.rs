//! Model syncs into database tables, end to end through the API: a Salesforce model (the
//! in-process emulator) into a new PostgreSQL table; a PostgreSQL model into an existing
//! MySQL table (upsert, remove, a missing unique index) and into a new SQLite table.
//! PostgreSQL and MySQL are the local services (`FERRY_TEST_POSTGRES_URL`,
//! `FERRY_TEST_MYSQL_URL`); each test uses databases of its own and prints SKIPPED when a
//! service is unreachable (fails when `CI` is set). The metadata store is SQLite.

use std::str::FromStr as _;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::ApiSettings;
use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Row as _};
use tower::ServiceExt as _;

mod support;

use support::{Api, sqlite_store};

struct Harness {
    api: Api,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness {
            api: Api::new(sqlite_store(&dir).await).await,
            _dir: dir,
        }
    }

    async fn connection(&self, type_id: &str, configuration: Value) -> String {
        let data = self
            .ok(
                "POST",
                "/api/connections",
                Some(json!({"name": type_id, "type": type_id, "configuration": configuration})),
            )
            .await;
        data["id"].as_str().unwrap().to_string()
    }

    async fn model(&self, connection: &str, configuration: Value, identifier: &str) -> String {
        let data = self
            .ok(
                "POST",
                "/api/models",
                Some(json!({"connection_id": connection, "name": "model",
                            "configuration": configuration, "identifier": identifier})),
            )
            .await;
        data["id"].as_str().unwrap().to_string()
    }

    async fn create_sync(&self, body: Value) -> Value {
        self.ok("POST", "/api/syncs", Some(body)).await
    }

    /// Starts an execution and waits for it to end; returns the execution.
    async fn run(&self, sync: &str) -> Value {
        self.run_with(sync, json!({})).await
    }

    /// [`Harness::run`] with start options (`{"resync": true}`, ...).
    async fn run_with(&self, sync: &str, options: Value) -> Value {
        let started = self
            .ok(
                "POST",
                &format!("/api/syncs/{sync}/executions"),
                Some(options),
            )
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

    async fn finish(self) {
        self.state
            .sync_runner()
            .shutdown(Duration::from_secs(10))
            .await;
    }
}

fn sync_body(
    name: &str,
    mode: &str,
    target: Value,
    model: &str,
    identity: Option<(&str, &str)>,
    fields: &[(&str, &str)],
) -> Value {
    let source = |field: &str| json!({"model_id": model, "field": field});
    let mut body = json!({
        "name": name,
        "mode": mode,
        "target": target,
        "fields": fields.iter().map(|(from, to)| json!({"source": source(from), "target": to})).collect::<Vec<_>>(),
        "schedule": {"frequency": "manual"},
    });
    if let Some((from, to)) = identity {
        body["identity"] = json!({"source": source(from), "target": to, "function": "Equality"});
    }
    body
}

fn assert_counts(execution: &Value, expected: Value) {
    assert_eq!(execution["status"], "completed", "{execution}");
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&execution["counts"][key], value, "count {key}: {execution}");
    }
}

fn pg_configuration(url: &str) -> Value {
    let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap();
    json!({"hostname": options.get_host(), "port": options.get_port(),
           "database": options.get_database().unwrap(),
           "username": options.get_username(), "ssl": false})
}

async fn pg_rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut connection = sqlx::postgres::PgConnectOptions::from_str(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let rows = sqlx::query(sql).fetch_all(&mut connection).await.unwrap();
    let out = rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect();
    connection.close().await.unwrap();
    out
}

/// A database of its own on the local MySQL, or `None` (SKIPPED) when unreachable.
async fn mysql_database(test: &str) -> Option<(sqlx::MySqlConnection, Value, String)> {
    let url = std::env::var("FERRY_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url).unwrap();
    let admin = options.clone().database("");
    let mut connection = match sqlx::MySqlConnection::connect_with(&admin).await {
        Ok(connection) => connection,
        Err(error) => {
            if ferry_store::testing::services_required() {
                panic!("MySQL at {url} is required but unreachable: {error}");
            }
            eprintln!(
                "\n========\nSKIPPED: {test}: MySQL at {url} is unreachable ({error})\n========\n"
            );
            return None;
        }
    };
    let database = format!("ferry_dbt_{}", uuid::Uuid::new_v4().simple());
    connection
        .execute(format!("CREATE DATABASE `{database}`").as_str())
        .await
        .unwrap();
    let configuration = json!({"hostname": options.get_host(), "port": options.get_port(),
        "account": options.get_username(), "dbname": database, "ssl": false});
    Some((connection, configuration, database))
}

/// The MySQL target table's rows, as text, ordered by email.
async fn mysql_rows(mysql: &mut sqlx::MySqlConnection, database: &str) -> Vec<Vec<Option<String>>> {
    let sql = format!(
        "SELECT email, name, CAST(age AS CHAR), CAST(born AS CHAR), CAST(active AS CHAR), \
         CAST(score AS CHAR), CAST(updated AS CHAR), note FROM `{database}`.people \
         ORDER BY email"
    );
    let rows = sqlx::query(&sql).fetch_all(mysql).await.unwrap();
    rows.iter()
        .map(|row| {
            (0..8)
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect()
}

async fn salesforce_client(emulator: &RunningEmulator) -> SalesforceClient {
    let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).unwrap();
    SalesforceClient::connect(ClientConfig::new(
        login,
        OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
        Credentials::ClientCredentials,
    ))
    .await
    .unwrap()
}

#[tokio::test]
async fn salesforce_model_into_a_new_postgresql_table() {
    let Some(pg) = ferry_store::testing::postgres_database("dbt_sf_to_pg").await else {
        return;
    };
    let h = Harness::new().await;
    let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let http = reqwest::Client::new();
    let seeded: Value = http
        .post(format!(
            "{}/__emulator/records/Account",
            emulator.base_url()
        ))
        .json(&json!([
            {"Name": "Acme", "NumberOfEmployees": 12, "AnnualRevenue": 1000.5},
            {"Name": "Globex", "NumberOfEmployees": 300, "AnnualRevenue": 25000000},
            {"Name": "O'Hara & Sons"},
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seeded["created"], 3, "{seeded}");
    let salesforce = salesforce_client(&emulator).await;

    let sf = h
        .connection(
            "salesforce",
            json!({"domain": emulator.base_url(), "connect_mode": "clientcredentials",
                   "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}),
        )
        .await;
    let model = h
        .model(
            &sf,
            json!({"query": "SELECT Id, Name, NumberOfEmployees, AnnualRevenue, CreatedDate FROM Account"}),
            "Id",
        )
        .await;
    let target = h.connection("postgresql", pg_configuration(&pg.url)).await;

    // Target creation is offered, with the schemas to choose from.
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{target}/modelsync/targetobjects"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["target_creation"]["supported"], true, "{body}");
    let fields = [
        ("Name", "Name"),
        ("NumberOfEmployees", "NumberOfEmployees"),
        ("AnnualRevenue", "AnnualRevenue"),
        ("CreatedDate", "CreatedDate"),
    ];
    let sync = h
        .create_sync(sync_body(
            "accounts to pg",
            "updateOrCreate",
            json!({"connection_id": target, "create": {"schema": "public", "table": "sf_accounts"}}),
            &model,
            Some(("Id", "Id")),
            &fields,
        ))
        .await;
    assert_eq!(sync["target"]["object"], "public.sf_accounts", "{sync}");
    let sync_id = sync["id"].as_str().unwrap().to_string();

    // The new table: one column per mapping, types kept, a unique index on the identity.
    let columns = pg_rows(
        &pg.url,
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = 'sf_accounts' ORDER BY ordinal_position",
    )
    .await;
    let columns: Vec<(String, String)> = columns
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Id".to_string(), "text".to_string()),
            ("Name".to_string(), "text".to_string()),
            ("NumberOfEmployees".to_string(), "bigint".to_string()),
            ("AnnualRevenue".to_string(), "numeric".to_string()),
            (
                "CreatedDate".to_string(),
                "timestamp with time zone".to_string()
            ),
        ]
    );
    let described = h
        .ok(
            "GET",
            &format!("/api/connections/{target}/modelsync/target/fields?target=public.sf_accounts"),
            None,
        )
        .await;
    let id_field = described["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "Id")
        .unwrap();
    assert_eq!(id_field["supports_identity"], true, "{described}");

    let execution = h.run(&sync_id).await;
    assert_counts(
        &execution,
        json!({"total": 3, "insert": 3, "upserts": 3, "error": 0}),
    );

    // Rows equal to what the emulator holds.
    // (Id, Name, NumberOfEmployees, AnnualRevenue), sorted by Id; numbers compared as
    // numbers (Salesforce may print 25000000 as 25000000.0).
    type Row = (String, Option<String>, Option<f64>, Option<f64>);
    let compare = |expected: Vec<Map<String, Value>>, actual: Vec<Vec<Option<String>>>| {
        let mut expected: Vec<Row> = expected
            .iter()
            .map(|record| {
                (
                    record["Id"].as_str().unwrap().to_string(),
                    record["Name"].as_str().map(str::to_string),
                    record["NumberOfEmployees"].as_f64(),
                    record["AnnualRevenue"].as_f64(),
                )
            })
            .collect();
        let mut actual: Vec<Row> = actual
            .into_iter()
            .map(|row| {
                let number = |v: &Option<String>| v.as_deref().map(|t| t.parse::<f64>().unwrap());
                (
                    row[0].clone().unwrap(),
                    row[1].clone(),
                    number(&row[2]),
                    number(&row[3]),
                )
            })
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        actual.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(actual, expected);
        assert_eq!(actual.len(), 3);
    };
    let soql = "SELECT Id, Name, NumberOfEmployees, AnnualRevenue FROM Account";
    let sql = "SELECT \"Id\", \"Name\", \"NumberOfEmployees\"::text, \
               \"AnnualRevenue\"::text FROM public.sf_accounts";
    compare(
        salesforce
            .query_all_pages(soql, QueryScope::Live)
            .await
            .unwrap(),
        pg_rows(&pg.url, sql).await,
    );
    let created = pg_rows(
        &pg.url,
        "SELECT count(*)::text FROM public.sf_accounts WHERE \"CreatedDate\" IS NOT NULL",
    )
    .await;
    assert_eq!(created[0][0].as_deref(), Some("3"));

    // A second run writes nothing.
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 0, "insert": 0, "update": 0}));

    // An update in Salesforce flows through.
    let records = salesforce
        .query_all_pages(
            "SELECT Id FROM Account WHERE Name = 'Acme'",
            QueryScope::Live,
        )
        .await
        .unwrap();
    let acme = records[0]["Id"].as_str().unwrap().to_string();
    let mut change = Map::new();
    change.insert("NumberOfEmployees".into(), json!(99));
    salesforce.update("Account", &acme, &change).await.unwrap();
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 1, "update": 1, "insert": 0}));
    compare(
        salesforce
            .query_all_pages(soql, QueryScope::Live)
            .await
            .unwrap(),
        pg_rows(&pg.url, sql).await,
    );

    h.finish().await;
    pg.drop_database().await;
}

const PEOPLE: &str = "
    CREATE TABLE people (email text PRIMARY KEY, name text, age integer, born date,
                         active boolean, score numeric(6,2), updated timestamptz);
    INSERT INTO people VALUES
        ('ada@example.com', 'Ada', 36, '1815-12-10', true, 99.5, '2024-01-02 03:04:05+00'),
        ('grace@example.com', 'Grace', 85, '1906-12-09', false, 88.25, '2024-02-03 04:05:06.5+00'),
        ('alan@example.com', 'Alan', 41, '1912-06-23', true, NULL, NULL);";

#[tokio::test]
async fn postgresql_model_into_mysql_and_sqlite() {
    let Some(pg) = ferry_store::testing::postgres_database("dbt_pg_source").await else {
        return;
    };
    let Some((mut mysql, mysql_configuration, database)) =
        mysql_database("postgresql_model_into_mysql_and_sqlite").await
    else {
        pg.drop_database().await;
        return;
    };
    let mut source = sqlx::postgres::PgConnectOptions::from_str(&pg.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    source.execute(PEOPLE).await.unwrap();
    for statement in [
        format!(
            "CREATE TABLE `{database}`.people (email VARCHAR(100) PRIMARY KEY, name TEXT, \
             age INT, born DATE, active BOOLEAN, score DECIMAL(6,2), updated DATETIME(6), \
             note TEXT)"
        ),
        format!(
            "INSERT INTO `{database}`.people (email, name, note) VALUES ('ada@example.com', 'Old Ada', 'kept')"
        ),
        format!("CREATE TABLE `{database}`.nokey (email VARCHAR(100), name TEXT)"),
    ] {
        mysql.execute(statement.as_str()).await.unwrap();
    }

    let h = Harness::new().await;
    let source_connection = h.connection("postgresql", pg_configuration(&pg.url)).await;
    let model = h
        .model(
            &source_connection,
            json!({"table": "public.people"}),
            "email",
        )
        .await;
    let target = h.connection("mysql", mysql_configuration).await;
    let objects = h
        .ok(
            "GET",
            &format!("/api/connections/{target}/modelsync/targetobjects"),
            None,
        )
        .await;
    let ids: Vec<&str> = objects
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert!(
        ids.contains(&format!("{database}.people").as_str()),
        "{objects}"
    );

    let fields = [
        ("name", "name"),
        ("age", "age"),
        ("born", "born"),
        ("active", "active"),
        ("score", "score"),
        ("updated", "updated"),
    ];
    // A table without a unique index on the identity cannot be upserted into.
    let (status, body) = h
        .call(
            "POST",
            "/api/syncs",
            Some(sync_body(
                "no key",
                "updateOrCreate",
                json!({"connection_id": target, "object": format!("{database}.nokey")}),
                &model,
                Some(("email", "email")),
                &[("name", "name")],
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["metadata"]["field"], "identity.target", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("unique index"),
        "{body}"
    );
    // A mapped column the table lacks is named.
    let (status, body) = h
        .call(
            "POST",
            "/api/syncs",
            Some(sync_body(
                "bad column",
                "updateOrCreate",
                json!({"connection_id": target, "object": format!("{database}.people")}),
                &model,
                Some(("email", "email")),
                &[("name", "nickname")],
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["metadata"]["field"], "fields[0].target", "{body}");

    // updateOrCreate into the existing table.
    let sync = h
        .create_sync(sync_body(
            "people to mysql",
            "updateOrCreate",
            json!({"connection_id": target, "object": "people"}),
            &model,
            Some(("email", "email")),
            &fields,
        ))
        .await;
    assert_eq!(sync["target"]["object"], format!("{database}.people"));
    let sync_id = sync["id"].as_str().unwrap().to_string();
    let execution = h.run(&sync_id).await;
    assert_counts(
        &execution,
        json!({"total": 3, "insert": 2, "update": 1, "upserts": 3, "error": 0}),
    );
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        mysql_rows(&mut mysql, &database).await,
        vec![
            vec![
                s("ada@example.com"),
                s("Ada"),
                s("36"),
                s("1815-12-10"),
                s("1"),
                s("99.50"),
                s("2024-01-02 03:04:05.000000"),
                s("kept"),
            ],
            vec![
                s("alan@example.com"),
                s("Alan"),
                s("41"),
                s("1912-06-23"),
                s("1"),
                None,
                None,
                None,
            ],
            vec![
                s("grace@example.com"),
                s("Grace"),
                s("85"),
                s("1906-12-09"),
                s("0"),
                s("88.25"),
                s("2024-02-03 04:05:06.500000"),
                None,
            ],
        ]
    );
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 0}));
    source
        .execute(
            "UPDATE people SET age = 37 WHERE email = 'ada@example.com';
             INSERT INTO people (email, name, age) VALUES ('linus@example.com', 'Linus', 54);",
        )
        .await
        .unwrap();
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 2, "insert": 1, "update": 1}));
    let rows = mysql_rows(&mut mysql, &database).await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0][2], s("37"));

    // remove: rows whose identity the model yields are deleted.
    let old = h
        .model(
            &source_connection,
            json!({"query": "SELECT email FROM people WHERE age > 50"}),
            "email",
        )
        .await;
    let remove = h
        .create_sync(sync_body(
            "remove old",
            "remove",
            json!({"connection_id": target, "object": format!("{database}.people")}),
            &old,
            Some(("email", "email")),
            &[],
        ))
        .await;
    let execution = h.run(remove["id"].as_str().unwrap()).await;
    assert_counts(&execution, json!({"total": 2, "delete": 2, "error": 0}));
    let emails: Vec<Option<String>> = mysql_rows(&mut mysql, &database)
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(emails, vec![s("ada@example.com"), s("alan@example.com")]);

    // SQLite: a new table (create mode), types kept, a second run writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("target.db");
    let mut lite = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    lite.execute("CREATE TABLE placeholder (x INTEGER)")
        .await
        .unwrap();
    let sqlite = h
        .connection("sqlite", json!({"path": path.to_str().unwrap()}))
        .await;
    let sync = h
        .create_sync(sync_body(
            "people to sqlite",
            "create",
            json!({"connection_id": sqlite, "new_name": "people_copy"}),
            &model,
            Some(("email", "email")),
            &fields,
        ))
        .await;
    assert_eq!(sync["target"]["object"], "people_copy");
    let sync_id = sync["id"].as_str().unwrap().to_string();
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 4, "insert": 4, "error": 0}));
    let declared: Vec<(String, String)> =
        sqlx::query("SELECT name, type FROM pragma_table_info('people_copy') ORDER BY cid")
            .fetch_all(&mut lite)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    assert_eq!(
        declared,
        vec![
            ("email".to_string(), "TEXT".to_string()),
            ("name".to_string(), "TEXT".to_string()),
            ("age".to_string(), "INTEGER".to_string()),
            ("born".to_string(), "DATE".to_string()),
            ("active".to_string(), "BOOLEAN".to_string()),
            ("score".to_string(), "NUMERIC".to_string()),
            ("updated".to_string(), "DATETIME".to_string()),
        ]
    );
    let row = sqlx::query(
        "SELECT age, typeof(age), active, born, updated FROM people_copy \
         WHERE email = 'grace@example.com'",
    )
    .fetch_one(&mut lite)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>(0), 85);
    assert_eq!(row.get::<String, _>(1), "integer");
    assert_eq!(row.get::<i64, _>(2), 0);
    assert_eq!(row.get::<String, _>(3), "1906-12-09");
    assert_eq!(row.get::<String, _>(4), "2024-02-03T04:05:06.500Z");
    let execution = h.run(&sync_id).await;
    assert_counts(&execution, json!({"total": 0, "insert": 0}));

    // A resync with preserve_table_on_resync false empties the table first.
    lite.execute("INSERT INTO people_copy (email, name) VALUES ('ghost@example.com', 'Ghost')")
        .await
        .unwrap();
    let upsert = h
        .create_sync(sync_body(
            "people upsert sqlite",
            "updateOrCreate",
            json!({"connection_id": sqlite, "object": "people_copy",
                   "configuration": {"preserve_table_on_resync": false}}),
            &model,
            Some(("email", "email")),
            &fields,
        ))
        .await;
    let execution = h
        .run_with(upsert["id"].as_str().unwrap(), json!({"resync": true}))
        .await;
    assert_counts(&execution, json!({"total": 4, "insert": 4, "error": 0}));
    let emails: Vec<String> = sqlx::query("SELECT email FROM people_copy ORDER BY email")
        .fetch_all(&mut lite)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        emails,
        vec![
            "ada@example.com",
            "alan@example.com",
            "grace@example.com",
            "linus@example.com"
        ]
    );

    // replace: the table ends up holding exactly the model's rows, every run.
    lite.execute(
        "CREATE TABLE roster (email TEXT, name TEXT, extra TEXT DEFAULT 'd');
         INSERT INTO roster (email, name) VALUES ('stale@example.com', 'Stale');",
    )
    .await
    .unwrap();
    let replace = h
        .create_sync(sync_body(
            "roster",
            "replace",
            json!({"connection_id": sqlite, "object": "roster"}),
            &model,
            None,
            &[("email", "email"), ("name", "name")],
        ))
        .await;
    let replace_id = replace["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let execution = h.run(&replace_id).await;
        assert_counts(&execution, json!({"total": 4, "insert": 4, "error": 0}));
        let rows: Vec<(String, String, String)> =
            sqlx::query("SELECT email, name, extra FROM roster ORDER BY email")
                .fetch_all(&mut lite)
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(
            rows[0],
            ("ada@example.com".into(), "Ada".into(), "d".into())
        );
    }
    let staged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'roster_ferry_stage'")
            .fetch_one(&mut lite)
            .await
            .unwrap();
    assert_eq!(staged, 0, "the staging table is dropped");

    // snapshot: every run appends the model's rows, stamped with the run's time; earlier
    // snapshots stay. A new table gets the stamp column and no unique index.
    let snapshot = h
        .create_sync(sync_body(
            "roster history",
            "snapshot",
            json!({"connection_id": sqlite, "new_name": "roster_history"}),
            &model,
            Some(("email", "email")),
            &[("name", "name")],
        ))
        .await;
    let snapshot_id = snapshot["id"].as_str().unwrap().to_string();
    for run in 1..=2usize {
        let execution = h.run(&snapshot_id).await;
        assert_counts(&execution, json!({"total": 4, "insert": 4, "error": 0}));
        let stamps: Vec<(String, i64)> = sqlx::query(
            "SELECT _ferry_snapshot_at, count(*) FROM roster_history \
             GROUP BY _ferry_snapshot_at ORDER BY _ferry_snapshot_at",
        )
        .fetch_all(&mut lite)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
        assert_eq!(stamps.len(), run, "one snapshot per run: {stamps:?}");
        assert!(
            stamps.iter().all(|(at, n)| *n == 4 && at.ends_with('Z')),
            "{stamps:?}"
        );
    }
    let ada: Vec<String> =
        sqlx::query("SELECT name FROM roster_history WHERE email = 'ada@example.com'")
            .fetch_all(&mut lite)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    assert_eq!(ada, vec!["Ada".to_string(), "Ada".to_string()]);
    // An existing table with a unique index on the identity is refused for snapshots.
    let (status, body) = h
        .call(
            "POST",
            "/api/syncs",
            Some(sync_body(
                "unique snapshot",
                "snapshot",
                json!({"connection_id": sqlite, "object": "people_copy"}),
                &model,
                Some(("email", "email")),
                &[("name", "name")],
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("identity.target"), "{body}");

    // Per-field sync_mode create: `name` is only filled where the row holds NULL; `age`
    // is always written.
    lite.execute(
        "CREATE TABLE people_fill (email TEXT PRIMARY KEY, name TEXT, age INTEGER);
         INSERT INTO people_fill VALUES ('ada@example.com', NULL, 1),
                                        ('grace@example.com', 'Gracie', 2);",
    )
    .await
    .unwrap();
    let mut body = sync_body(
        "fill names",
        "updateOrCreate",
        json!({"connection_id": sqlite, "object": "people_fill"}),
        &model,
        Some(("email", "email")),
        &[("name", "name"), ("age", "age")],
    );
    body["fields"][0]["sync_mode"] = json!("create");
    let fill = h.create_sync(body).await;
    let execution = h.run(fill["id"].as_str().unwrap()).await;
    assert_counts(&execution, json!({"total": 4, "error": 0}));
    let rows: Vec<(String, Option<String>, i64)> =
        sqlx::query("SELECT email, name, age FROM people_fill ORDER BY email")
            .fetch_all(&mut lite)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
    assert_eq!(rows[0].0, "ada@example.com");
    assert_eq!(
        rows[0].1.as_deref(),
        Some("Ada"),
        "NULL is filled: {rows:?}"
    );
    assert_eq!(rows[2].0, "grace@example.com");
    assert_eq!(
        rows[2].1.as_deref(),
        Some("Gracie"),
        "a value is kept: {rows:?}"
    );
    assert_eq!(rows[2].2, 85, "age is always written: {rows:?}");
    assert_eq!(rows.len(), 4, "{rows:?}");
    lite.close().await.unwrap();

    // Per-record outcomes: a row the table refuses fails alone, the others are written,
    // and it is retried (and fails again) next run.
    source
        .execute(
            "CREATE TABLE people_checked (email text PRIMARY KEY, name text,
                                          age integer CHECK (age < 80))",
        )
        .await
        .unwrap();
    let checked = h
        .create_sync(sync_body(
            "checked",
            "updateOrCreate",
            json!({"connection_id": source_connection, "object": "public.people_checked"}),
            &model,
            Some(("email", "email")),
            &[("name", "name"), ("age", "age")],
        ))
        .await;
    let checked_id = checked["id"].as_str().unwrap().to_string();
    let execution = h.run(&checked_id).await;
    assert_counts(
        &execution,
        json!({"total": 4, "insert": 3, "upserts": 3, "error": 1}),
    );
    let written = pg_rows(&pg.url, "SELECT email FROM people_checked ORDER BY email").await;
    assert_eq!(
        written,
        vec![
            vec![s("ada@example.com")],
            vec![s("alan@example.com")],
            vec![s("linus@example.com")]
        ]
    );
    let logs = h
        .ok(
            "GET",
            &format!(
                "/api/syncs/{checked_id}/executions/{}/errors",
                execution["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let url = logs["urls"][0].as_str().unwrap();
    let path = url
        .strip_prefix(&ApiSettings::default().public_base_url)
        .unwrap();
    let request = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {}", h.key))
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let line: Value = serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["identity"], "grace@example.com", "{line}");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("check constraint"),
        "{line}"
    );
    let test_run = h.run_with(&checked_id, json!({"test": true})).await;
    assert_eq!(test_run["status"], "completed", "{test_run}");
    let execution = h.run(&checked_id).await;
    assert_counts(&execution, json!({"total": 1, "insert": 0, "error": 1}));

    // Per-field sync_mode create on PostgreSQL and MySQL upserts.
    source
        .execute(
            "CREATE TABLE people_fill (email text PRIMARY KEY, name text, age integer);
             INSERT INTO people_fill VALUES ('ada@example.com', NULL, 1),
                                            ('grace@example.com', 'Gracie', 2);",
        )
        .await
        .unwrap();
    for statement in [
        format!(
            "CREATE TABLE `{database}`.people_fill (email VARCHAR(100) PRIMARY KEY, name TEXT, \
             age INT)"
        ),
        format!(
            "INSERT INTO `{database}`.people_fill VALUES ('ada@example.com', NULL, 1), \
             ('grace@example.com', 'Gracie', 2)"
        ),
    ] {
        mysql.execute(statement.as_str()).await.unwrap();
    }
    for (connection, table) in [
        (source_connection.clone(), "public.people_fill".to_string()),
        (target.clone(), format!("{database}.people_fill")),
    ] {
        let mut body = sync_body(
            "fill names",
            "updateOrCreate",
            json!({"connection_id": connection, "object": table}),
            &model,
            Some(("email", "email")),
            &[("name", "name"), ("age", "age")],
        );
        body["fields"][0]["sync_mode"] = json!("create");
        let fill = h.create_sync(body).await;
        let execution = h.run(fill["id"].as_str().unwrap()).await;
        assert_counts(&execution, json!({"total": 4, "error": 0}));
    }
    let expected = vec![
        vec![s("ada@example.com"), s("Ada"), s("37")],
        vec![s("grace@example.com"), s("Gracie"), s("85")],
    ];
    let pg_fill = pg_rows(
        &pg.url,
        "SELECT email, name, age::text FROM people_fill \
         WHERE email IN ('ada@example.com', 'grace@example.com') ORDER BY email",
    )
    .await;
    assert_eq!(pg_fill, expected);
    let my_fill: Vec<(String, Option<String>, i32)> = sqlx::query_as(&format!(
        "SELECT email, name, age FROM `{database}`.people_fill \
         WHERE email IN ('ada@example.com', 'grace@example.com') ORDER BY email"
    ))
    .fetch_all(&mut mysql)
    .await
    .unwrap();
    assert_eq!(
        my_fill,
        vec![
            ("ada@example.com".to_string(), Some("Ada".to_string()), 37),
            (
                "grace@example.com".to_string(),
                Some("Gracie".to_string()),
                85
            ),
        ]
    );

    // snapshot into new PostgreSQL and MySQL tables: two runs, two stamped copies.
    for (connection, table) in [
        (
            source_connection.clone(),
            "public.people_snapshots".to_string(),
        ),
        (target.clone(), format!("{database}.people_snapshots")),
    ] {
        let snapshot = h
            .create_sync(sync_body(
                "snapshots",
                "snapshot",
                json!({"connection_id": connection, "new_name": table}),
                &model,
                Some(("email", "email")),
                &[("name", "name")],
            ))
            .await;
        let snapshot_id = snapshot["id"].as_str().unwrap().to_string();
        for _ in 0..2 {
            let execution = h.run(&snapshot_id).await;
            assert_counts(&execution, json!({"total": 4, "insert": 4, "error": 0}));
        }
    }
    let stamps = pg_rows(
        &pg.url,
        "SELECT count(*)::text, count(DISTINCT _ferry_snapshot_at)::text FROM people_snapshots",
    )
    .await;
    assert_eq!(stamps, vec![vec![s("8"), s("2")]]);
    let stamps: (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT _ferry_snapshot_at) FROM `{database}`.people_snapshots"
    ))
    .fetch_one(&mut mysql)
    .await
    .unwrap();
    assert_eq!(stamps, (8, 2));

    h.finish().await;
    let _ = mysql
        .execute(format!("DROP DATABASE `{database}`").as_str())
        .await;
    source.close().await.unwrap();
    pg.drop_database().await;
}
