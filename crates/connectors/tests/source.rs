//! The `ModelSource` capability against real databases: the local PostgreSQL
//! (`FERRY_TEST_POSTGRES_URL`), MySQL/MariaDB (`FERRY_TEST_MYSQL_URL`), and SQLite files.
//!
//! Each test creates its own database and drops it afterwards. An unreachable server prints
//! a `SKIPPED:` line and passes, unless `CI` or `FERRY_REQUIRE_SERVICES` is set.

use std::str::FromStr as _;

use ferry_connectors::{
    FieldType, ModelSource, RawWindow, RelationKind, Selection, SkipAnswer, SourceError,
    SourceField, WindowSkip, registry, skip_channel, source::sample,
};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

fn source(type_id: &str) -> &'static dyn ModelSource {
    let registry = Box::leak(Box::new(registry()));
    registry
        .get(type_id)
        .and_then(|connector| connector.model_source())
        .unwrap_or_else(|| panic!("{type_id} has no model source"))
}

fn field<'a>(fields: &'a [SourceField], name: &str) -> &'a SourceField {
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

/// Reads everything in batches of `batch_size`, returning (batch sizes, total rows).
async fn read_all(
    source: &dyn ModelSource,
    config: &Value,
    selection: &Selection,
    batch_size: usize,
) -> (Vec<usize>, Vec<Vec<Value>>) {
    let mut stream = source.read(config, selection, None, batch_size);
    let mut sizes = Vec::new();
    let mut rows = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("batch");
        sizes.push(batch.rows.len());
        rows.extend(batch.rows);
    }
    (sizes, rows)
}

/// Streams `count` generated rows and checks the batches are bounded and complete.
async fn stream_check(source: &dyn ModelSource, config: &Value, query: &str) {
    let selection = Selection::Query(query.to_string());
    let mut stream = source.read(config, &selection, None, 1000);
    let mut batches = 0;
    let mut total: i64 = 0;
    let mut sum: i64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("batch");
        assert!(batch.rows.len() <= 1000);
        batches += 1;
        for row in &batch.rows {
            total += 1;
            sum += row[0].as_i64().expect("integer");
        }
    }
    assert_eq!(total, 10_000);
    assert_eq!(sum, (1..=10_000).sum::<i64>());
    assert_eq!(batches, 10);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

fn postgres_config(url: &str) -> Value {
    let options = sqlx::postgres::PgConnectOptions::from_str(url).expect("url");
    json!({
        "hostname": options.get_host(),
        "port": options.get_port(),
        "database": options.get_database().unwrap_or("postgres"),
        "username": options.get_username(),
        "ssl": false,
    })
}

#[tokio::test]
async fn postgresql_model_source() {
    let Some(db) = ferry_store::testing::postgres_database("source_pg").await else {
        return;
    };
    let mut connection = sqlx::postgres::PgConnectOptions::from_str(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    connection
        .execute(
            "CREATE SCHEMA sales;
             CREATE TABLE public.people (
                 id integer PRIMARY KEY, name text, score numeric(10,2), big numeric,
                 active boolean, born date, seen_at timestamptz, local_at timestamp,
                 doc jsonb, tags text[], photo bytea, ratio double precision, uid uuid);
             INSERT INTO public.people VALUES
                 (1, 'Ada', 12.50, 12345678901234567890.123456789, true, '1815-12-10',
                  '2024-01-02 03:04:05.25+02', '2024-01-02 03:04:05', '{\"a\": [1, 2]}',
                  ARRAY['x','y'], '\\x0102ff', 0.5, '6c1f1c1e-0000-4000-8000-000000000001'),
                 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
             CREATE TABLE sales.\"Odd \"\"Name\" (id int);
             CREATE VIEW sales.active_people AS SELECT id, name FROM public.people WHERE active;
             -- Server settings a reader must not depend on: fewer float digits than exact,
             -- bytea in the old escape format.
             DO $$ BEGIN EXECUTE format(
                 'ALTER DATABASE %I SET extra_float_digits = 0', current_database());
             EXECUTE format(
                 'ALTER DATABASE %I SET bytea_output = ''escape''', current_database());
             END $$;",
        )
        .await
        .unwrap();
    connection.close().await.unwrap();

    let config = postgres_config(&db.url);
    let pg = source("postgresql");

    let relations = pg.list_relations(&config).await.unwrap();
    let names: Vec<&str> = relations.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["public.people", "sales.Odd \"Name", "sales.active_people"]
    );
    assert_eq!(relations[2].kind, RelationKind::View);

    // Describe a table, qualified or in `public`.
    let fields = pg
        .describe(&config, &Selection::Table("people".into()))
        .await
        .unwrap();
    let types: Vec<(&str, FieldType, &str)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.field_type, f.remote_type.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", FieldType::Number, "int4"),
            ("name", FieldType::String, "text"),
            ("score", FieldType::Number, "numeric"),
            ("big", FieldType::Number, "numeric"),
            ("active", FieldType::Boolean, "bool"),
            ("born", FieldType::Datetime, "date"),
            ("seen_at", FieldType::Datetime, "timestamptz"),
            ("local_at", FieldType::Datetime, "timestamp"),
            ("doc", FieldType::Object, "jsonb"),
            ("tags", FieldType::Array, "text[]"),
            ("photo", FieldType::Binary, "bytea"),
            ("ratio", FieldType::Number, "float8"),
            ("uid", FieldType::String, "uuid"),
        ]
    );

    // Sample: types preserved.
    let sampled = sample(pg, &config, &Selection::Table("public.people".into()), 10)
        .await
        .unwrap();
    assert_eq!(sampled.rows.len(), 2);
    assert_eq!(
        Value::Array(sampled.rows[0].clone()),
        json!([1, "Ada", 12.5, "12345678901234567890.123456789", true, "1815-12-10",
               "2024-01-02T01:04:05.250Z", "2024-01-02T03:04:05Z", {"a": [1, 2]},
               ["x", "y"], "AQL/", 0.5, "6c1f1c1e-0000-4000-8000-000000000001"])
    );
    assert!(sampled.rows[1][1..].iter().all(Value::is_null));

    // Floats at full precision whatever the server's `extra_float_digits`.
    let (_, rows) = read_all(
        pg,
        &config,
        &Selection::Query("SELECT 1/3::float8 AS third, 0.1::float4 AS tenth".into()),
        10,
    )
    .await;
    assert_eq!(rows, vec![vec![json!(1.0 / 3.0), json!(f64::from(0.1f32))]]);

    // Odd identifiers are quoted, views readable.
    let odd = pg
        .describe(&config, &Selection::Table("sales.Odd \"Name".into()))
        .await
        .unwrap();
    assert_eq!(odd[0].name, "id");
    let (_, rows) = read_all(
        pg,
        &config,
        &Selection::View("sales.active_people".into()),
        10,
    )
    .await;
    assert_eq!(rows, vec![vec![json!(1), json!("Ada")]]);

    // Unknown tables never reach SQL.
    let error = pg
        .describe(
            &config,
            &Selection::Table("people\"; DROP TABLE people; --".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::UnknownRelation(_)), "{error}");

    // A query is described without running it, with the database's own error otherwise.
    let fields = pg
        .describe(
            &config,
            &Selection::Query("SELECT id, name AS who, 1/0 AS boom FROM people;".into()),
        )
        .await
        .unwrap();
    assert_eq!(field(&fields, "who").field_type, FieldType::String);
    let error = pg
        .describe(&config, &Selection::Query("SELECT * FROM nope".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Query(_)), "{error:?}");
    assert_eq!(error.to_string(), "relation \"nope\" does not exist");
    let error = pg
        .describe(&config, &Selection::Query("DELETE FROM people".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Query(_)), "{error:?}");
    let error = pg
        .describe(&config, &Selection::Query("SELECT 1 AS a, 2 AS a".into()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("more than once"), "{error}");

    // Reads are read-only.
    let mut stream = pg.read(
        &config,
        &Selection::Query("SELECT nextval('x')".into()),
        None,
        10,
    );
    assert!(stream.next().await.unwrap().is_err());

    // Streaming 10k rows in bounded batches.
    stream_check(pg, &config, "SELECT n FROM generate_series(1, 10000) AS n").await;

    // An unreachable server says so.
    let mut unreachable = config.clone();
    unreachable["port"] = json!(1);
    let error = pg.list_relations(&unreachable).await.unwrap_err();
    assert!(matches!(error, SourceError::Connect(_)), "{error:?}");

    db.drop_database().await;
}

/// What a skipping read sent: per batch, (rows built, raw window).
async fn read_windows(
    source: &dyn ModelSource,
    config: &Value,
    query: &str,
    answer: impl FnOnce(SkipAnswer) + Send + 'static,
) -> Vec<(Vec<Vec<Value>>, RawWindow)> {
    let (skips, question) = skip_channel();
    let mut stream = source.read_skipping(config, &Selection::Query(query.into()), 1000, question);
    // The answer comes late: the reader must wait for it before its first window.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer(skips);
    });
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("batch");
        batches.push((batch.rows, batch.raw.expect("a raw window")));
    }
    batches
}

/// Per batch: (rows built, rows read, skipped).
fn shapes(batches: &[(Vec<Vec<Value>>, RawWindow)]) -> Vec<(usize, usize, bool)> {
    batches
        .iter()
        .map(|(rows, raw)| (rows.len(), raw.rows, raw.skipped))
        .collect()
}

/// Per batch: the source's fingerprint.
fn fingerprints(batches: &[(Vec<Vec<Value>>, RawWindow)]) -> Vec<u128> {
    batches.iter().map(|(_, raw)| raw.fingerprint).collect()
}

#[tokio::test]
async fn postgresql_leaves_skipped_windows_unbuilt() {
    let Some(db) = ferry_store::testing::postgres_database("source_pg_skip").await else {
        return;
    };
    let config = postgres_config(&db.url);
    let pg = source("postgresql");
    let query = "SELECT n, 'row ' || n AS label FROM generate_series(1, 2500) AS n ORDER BY n";

    // Unanswered: every window is built, each with its fingerprint.
    let all = read_windows(pg, &config, query, drop).await;
    assert_eq!(
        shapes(&all),
        vec![(1000, 1000, false), (1000, 1000, false), (500, 500, false)]
    );
    assert_eq!(all[2].0[499], vec![json!(2500), json!("row 2500")]);
    let prints = fingerprints(&all);
    assert!(prints[0] != prints[1] && prints[1] != prints[2]);

    // Skipping windows 0 and 2 by their fingerprints: the test sees what the reader read.
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let wanted = prints.clone();
    let skip: WindowSkip = std::sync::Arc::new(move |number, raw: &RawWindow| {
        seen.lock().unwrap().push(number);
        number != 1 && wanted.get(number) == Some(&raw.fingerprint)
    });
    let skipped = read_windows(pg, &config, query, move |skips| skips.answer(Some(skip))).await;
    assert_eq!(
        shapes(&skipped),
        vec![(0, 1000, true), (1000, 1000, false), (0, 500, true)]
    );
    assert_eq!(skipped[1].0, all[1].0);
    assert_eq!(*asked.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(fingerprints(&skipped), prints);

    // One changed value changes only its window's fingerprint; so does a changed type.
    let changed = read_windows(
        pg,
        &config,
        "SELECT n, CASE WHEN n = 1500 THEN 'changed' ELSE 'row ' || n END AS label \
         FROM generate_series(1, 2500) AS n ORDER BY n",
        |skips| skips.answer(None),
    )
    .await;
    let changed = fingerprints(&changed);
    assert_eq!((changed[0], changed[2]), (prints[0], prints[2]));
    assert_ne!(changed[1], prints[1]);
    let retyped = read_windows(
        pg,
        &config,
        "SELECT n::bigint AS n, 'row ' || n AS label FROM generate_series(1, 2500) AS n ORDER BY n",
        drop,
    )
    .await;
    assert!(
        fingerprints(&retyped)
            .iter()
            .zip(&prints)
            .all(|(print, before)| print != before)
    );

    db.drop_database().await;
}

// ---------------------------------------------------------------------------------------
// MySQL / MariaDB
// ---------------------------------------------------------------------------------------

fn services_required() -> bool {
    ferry_store::testing::services_required()
}

/// A fresh MySQL database: `(admin connection options, connection config, database name)`.
async fn mysql_database(test: &str) -> Option<(sqlx::mysql::MySqlConnectOptions, Value, String)> {
    let url = std::env::var("FERRY_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url).expect("url");
    let admin = options.clone().database("");
    let mut connection = match sqlx::MySqlConnection::connect_with(&admin).await {
        Ok(connection) => connection,
        Err(error) => {
            if services_required() {
                panic!("{test}: MySQL at {url} is required but unreachable: {error}");
            }
            eprintln!(
                "\n========\nSKIPPED: {test}: MySQL at {url} is unreachable ({error})\n========\n"
            );
            return None;
        }
    };
    let name = format!(
        "ferry_src_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    connection
        .execute(format!("CREATE DATABASE `{name}`").as_str())
        .await
        .unwrap();
    connection.close().await.unwrap();
    let mut config = json!({
        "hostname": options.get_host(),
        "port": options.get_port(),
        "account": options.get_username(),
        "dbname": name,
        "ssl": false,
    });
    if let Ok(password) = std::env::var("FERRY_TEST_MYSQL_PASSWORD") {
        config["passwd"] = json!(password);
    }
    Some((admin, config, name))
}

async fn drop_mysql_database(admin: &sqlx::mysql::MySqlConnectOptions, name: &str) {
    if let Ok(mut connection) = sqlx::MySqlConnection::connect_with(admin).await {
        let _ = connection
            .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
            .await;
    }
}

#[tokio::test]
async fn mysql_model_source() {
    let Some((admin, config, name)) = mysql_database("mysql_model_source").await else {
        return;
    };
    let mut connection = sqlx::MySqlConnection::connect_with(&admin.clone().database(&name))
        .await
        .unwrap();
    for statement in [
        "CREATE TABLE people (
             id INT PRIMARY KEY, name VARCHAR(50), score DECIMAL(10,2), active BOOLEAN,
             born DATE, seen_at DATETIME(3), stamp TIMESTAMP NULL, photo VARBINARY(10),
             ratio DOUBLE, big BIGINT UNSIGNED, zero_date DATE)",
        "SET SESSION sql_mode = ''",
        "INSERT INTO people VALUES
             (1, 'Ada', 12.50, TRUE, '1815-12-10', '2024-01-02 03:04:05.250',
              '2024-01-02 03:04:05', X'0102FF', 0.5, 18446744073709551615, '0000-00-00'),
             (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "CREATE TABLE `we``ird` (id INT)",
        "CREATE VIEW active_people AS SELECT id, name FROM people WHERE active",
        "CREATE TABLE numbers (n INT PRIMARY KEY)",
        "CREATE TABLE digits (d INT)",
        "INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)",
        "INSERT INTO numbers SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d \
         FROM digits a, digits b, digits c, digits e",
    ] {
        connection.execute(statement).await.unwrap();
    }
    connection.close().await.unwrap();

    let my = source("mysql");
    let relations = my.list_relations(&config).await.unwrap();
    let mine: Vec<(&str, RelationKind)> = relations
        .iter()
        .filter(|r| r.name.starts_with(&format!("{name}.")))
        .map(|r| (&r.name[name.len() + 1..], r.kind))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("active_people", RelationKind::View),
            ("digits", RelationKind::Table),
            ("numbers", RelationKind::Table),
            ("people", RelationKind::Table),
            ("we`ird", RelationKind::Table),
        ]
    );

    let fields = my
        .describe(&config, &Selection::Table("people".into()))
        .await
        .unwrap();
    let types: Vec<(&str, FieldType)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.field_type))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", FieldType::Number),
            ("name", FieldType::String),
            ("score", FieldType::Number),
            ("active", FieldType::Boolean),
            ("born", FieldType::Datetime),
            ("seen_at", FieldType::Datetime),
            ("stamp", FieldType::Datetime),
            ("photo", FieldType::Binary),
            ("ratio", FieldType::Number),
            ("big", FieldType::Number),
            ("zero_date", FieldType::Datetime),
        ]
    );
    assert_eq!(field(&fields, "name").remote_type, "varchar");

    let sampled = sample(my, &config, &Selection::Table(format!("{name}.people")), 10)
        .await
        .unwrap();
    assert_eq!(
        Value::Array(sampled.rows[0].clone()),
        json!([
            1,
            "Ada",
            12.5,
            true,
            "1815-12-10",
            "2024-01-02T03:04:05.250Z",
            "2024-01-02T03:04:05Z",
            "AQL/",
            0.5,
            18446744073709551615u64,
            "0000-00-00"
        ])
    );
    assert!(sampled.rows[1][1..].iter().all(Value::is_null));

    assert_eq!(
        my.describe(&config, &Selection::Table("we`ird".into()))
            .await
            .unwrap()[0]
            .name,
        "id"
    );
    let (_, rows) = read_all(my, &config, &Selection::View("active_people".into()), 5).await;
    assert_eq!(rows, vec![vec![json!(1), json!("Ada")]]);

    let error = my
        .describe(&config, &Selection::Query("SELECT * FROM nope".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Query(_)), "{error:?}");
    assert!(error.to_string().contains("nope' doesn't exist"), "{error}");
    let error = my
        .describe(&config, &Selection::Table("nope".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::UnknownRelation(_)),
        "{error:?}"
    );

    stream_check(my, &config, "SELECT n FROM numbers ORDER BY n").await;

    drop_mysql_database(&admin, &name).await;
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_model_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    connection
        .execute(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(50), score REAL,
                 active BOOLEAN, seen_at DATETIME, doc JSON, photo BLOB, amount NUMERIC);
             INSERT INTO people VALUES
                 (1, 'Ada', 12.5, 1, '2024-01-02 03:04:05', '{\"a\": 1}', X'0102FF', '10.25'),
                 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
             CREATE VIEW active_people AS SELECT id, name FROM people WHERE active;
             CREATE TABLE \"odd \"\"name\" (id INTEGER);
             CREATE TABLE numbers (n INTEGER);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000)
             INSERT INTO numbers SELECT n FROM s;",
        )
        .await
        .unwrap();
    connection.close().await.unwrap();
    let config = json!({"path": path.to_str().unwrap()});
    let lite = source("sqlite");

    let relations = lite.list_relations(&config).await.unwrap();
    let names: Vec<&str> = relations.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["active_people", "numbers", "odd \"name", "people"]
    );

    let fields = lite
        .describe(&config, &Selection::Table("people".into()))
        .await
        .unwrap();
    let types: Vec<(&str, FieldType, &str)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.field_type, f.remote_type.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", FieldType::Number, "INTEGER"),
            ("name", FieldType::String, "VARCHAR(50)"),
            ("score", FieldType::Number, "REAL"),
            ("active", FieldType::Boolean, "BOOLEAN"),
            ("seen_at", FieldType::Datetime, "DATETIME"),
            ("doc", FieldType::Object, "JSON"),
            ("photo", FieldType::Binary, "BLOB"),
            ("amount", FieldType::Number, "NUMERIC"),
        ]
    );
    let sampled = sample(lite, &config, &Selection::Table("people".into()), 1)
        .await
        .unwrap();
    assert_eq!(sampled.rows.len(), 1);
    assert_eq!(
        Value::Array(sampled.rows[0].clone()),
        json!([1, "Ada", 12.5, true, "2024-01-02T03:04:05Z", {"a": 1}, "AQL/", 10.25])
    );

    let fields = lite
        .describe(
            &config,
            &Selection::Query("SELECT id, count(*) AS n FROM people GROUP BY id".into()),
        )
        .await
        .unwrap();
    assert_eq!(field(&fields, "n").field_type, FieldType::Number);
    let error = lite
        .describe(&config, &Selection::Query("SELECT * FROM nope".into()))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no such table: nope");
    let error = lite
        .describe(&config, &Selection::Table("nope".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::UnknownRelation(_)),
        "{error:?}"
    );
    assert!(
        lite.describe(&config, &Selection::Table("odd \"name".into()))
            .await
            .is_ok()
    );
    let (_, rows) = read_all(lite, &config, &Selection::View("active_people".into()), 5).await;
    assert_eq!(rows, vec![vec![json!(1), json!("Ada")]]);

    // Read-only: a write through a query fails.
    let error = lite
        .describe(&config, &Selection::Query("DELETE FROM people".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Query(_)), "{error:?}");

    stream_check(lite, &config, "SELECT n FROM numbers ORDER BY n").await;

    // A read dropped early stops cleanly.
    let mut stream = lite.read(&config, &Selection::Table("numbers".into()), None, 100);
    assert_eq!(stream.next().await.unwrap().unwrap().rows.len(), 100);
    drop(stream);

    let error = lite
        .list_relations(&json!({"path": dir.path().join("missing.db").to_str().unwrap()}))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not found"), "{error}");
}
