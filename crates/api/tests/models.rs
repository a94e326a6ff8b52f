//! Models and model-source discovery through the API, in process (`oneshot`), on SQLite and
//! PostgreSQL metadata stores. Sources: a SQLite file per test (always), and a PostgreSQL
//! database / MySQL database per test when those servers are reachable (otherwise a loud
//! `SKIPPED:` line, or a failure when `CI`/`FERRY_REQUIRE_SERVICES` is set).

use std::str::FromStr as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::{ApiSettings, AppState};
use ferry_store::secrets::Cipher;
use ferry_store::{DynStore, PostgresStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};
use tower::ServiceExt as _;

struct Harness {
    app: Router,
    key: String,
    other_key: String,
    source_path: String,
    _dir: tempfile::TempDir,
    _store_dir: Option<tempfile::TempDir>,
    pg: Option<ferry_store::testing::TestDatabase>,
}

const SOURCE_SQL: &str = "
    CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, active BOOLEAN,
                         updated_at DATETIME);
    INSERT INTO people VALUES (1, 'Ada', 12.5, 1, '2024-01-02 03:04:05'),
                              (2, 'Grace', NULL, 0, '2024-02-03 04:05:06');
    CREATE VIEW active_people AS SELECT id, name FROM people WHERE active;
    CREATE TABLE orders (id INTEGER PRIMARY KEY, person_id INTEGER, total REAL);";

impl Harness {
    async fn new(store: DynStore, pg: Option<ferry_store::testing::TestDatabase>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let org = store.create_organization("default").await.unwrap();
        let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
        let other = store.create_organization("other").await.unwrap();
        let other_key = store
            .create_api_key(other.id, None)
            .await
            .unwrap()
            .plaintext;
        let state = AppState::new(
            store,
            ferry_connectors::registry(),
            Cipher::from_key(&[9u8; 32]),
            ApiSettings::default(),
        );
        let source_path = dir.path().join("source.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&source_path)
            .create_if_missing(true);
        let mut connection = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        connection.execute(SOURCE_SQL).await.unwrap();
        connection.close().await.unwrap();
        Harness {
            app: ferry_api::router(state),
            key,
            other_key,
            source_path: source_path.to_str().unwrap().to_string(),
            _dir: dir,
            _store_dir: None,
            pg,
        }
    }

    async fn call_as(
        &self,
        key: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"));
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.key, method, uri, body).await
    }

    /// Creates a connection and returns its id.
    async fn connection(&self, type_id: &str, configuration: Value) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/connections",
                Some(json!({"name": format!("{type_id} source"), "type": type_id,
                            "configuration": configuration})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["id"].as_str().unwrap().to_string()
    }

    async fn sqlite_connection(&self) -> String {
        self.connection("sqlite", json!({"path": self.source_path}))
            .await
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

/// A 422 naming `field`, whose message contains `text`.
fn assert_field_error(status: StatusCode, body: &Value, field: &str, text: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["status"], 422, "{body}");
    assert_eq!(body["metadata"]["field"], field, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains(text),
        "expected {text:?} in {body}"
    );
}

fn names(fields: &Value) -> Vec<&str> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect()
}

async fn lifecycle(h: Harness) {
    let connection = h.sqlite_connection().await;

    // Discovery: tables, views, then the columns of a chosen table in both spellings.
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meta = &body["data"];
    assert_eq!(meta["requires_one_of"], json!(["query", "table", "view"]));
    assert_eq!(meta["items"]["table"]["items"], json!(["orders", "people"]));
    assert_eq!(meta["items"]["table"]["has_items"], true);
    assert_eq!(meta["items"]["view"]["items"], json!(["active_people"]));
    assert_eq!(meta["items"]["query"]["has_items"], false);
    assert_eq!(meta["items"]["tracking_columns"]["has_items"], false);
    for query in [
        "params[table]=people",
        "table=people",
        "params%5Btable%5D=people",
    ] {
        let (status, body) = h
            .call(
                "GET",
                &format!("/api/connections/{connection}/modelsync/source?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"]["items"]["tracking_columns"]["items"],
            json!(["id", "name", "score", "active", "updated_at"]),
            "{query}"
        );
    }
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source/fields?params[table]=people"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let types: Vec<(&str, &str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["remote_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", "number", "INTEGER"),
            ("name", "string", "TEXT"),
            ("score", "number", "REAL"),
            ("active", "boolean", "BOOLEAN"),
            ("updated_at", "datetime", "DATETIME"),
        ]
    );
    let (status, body) = h
        .call(
            "GET",
            &format!(
                "/api/connections/{connection}/modelsync/source/fields?query=SELECT%20id%2C%20name%20AS%20who%20FROM%20people"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["data"]), vec!["id", "who"]);

    // Create.
    let request = json!({
        "connection_id": connection,
        "name": "People",
        "configuration": {"table": "people"},
        "fields": ["id", "name", "score", "updated_at"],
        "identifier": "id",
        "tracking_columns": ["updated_at"],
        "labels": ["vip"],
        "additional_fields": [{"name": "segment", "label": "Segment", "type": "string"}],
        "policies": [],
    });
    let (status, body) = h.call("POST", "/api/models", Some(request.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let model = &body["data"];
    let id = model["id"].as_str().unwrap().to_string();
    assert_eq!(model["name"], "People");
    assert_eq!(model["type"], "sqlite");
    assert_eq!(model["version"], 1);
    assert_eq!(model["connection_id"], connection);
    assert_eq!(model["configuration"], json!({"table": "people"}));
    assert_eq!(model["identifier"], "id");
    assert_eq!(model["tracking_columns"], json!(["updated_at"]));
    assert_eq!(model["labels"], json!([{"name": "vip"}]));
    assert_eq!(model["relations"], json!([]));
    assert!(model["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(model["created_by"]["type"], "organization");
    assert_eq!(
        names(&model["fields"]),
        vec!["id", "name", "score", "updated_at", "segment"]
    );
    let id_field = &model["fields"][0];
    assert_eq!(id_field["type"], "number");
    assert_eq!(id_field["remote_type"], "INTEGER");
    assert_eq!(id_field["unique"], true);
    assert_eq!(id_field["user_added"], false);
    assert_eq!(id_field["example"], 1);
    assert!(id_field["id"].is_string());
    assert_eq!(model["fields"][1]["unique"], false);
    assert_eq!(model["fields"][3]["example"], "2024-01-02T03:04:05Z");
    assert_eq!(model["fields"][4]["user_added"], true);
    assert!(model["fields"][0].get("enabled").is_none());

    // Get and list; another organization sees nothing.
    let (status, body) = h.call("GET", &format!("/api/models/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], *model);
    let (_, body) = h.call("GET", "/api/models", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    for (method, uri, body) in [
        ("GET", format!("/api/models/{id}"), None),
        ("GET", format!("/api/models/{id}/sample"), None),
        ("PUT", format!("/api/models/{id}"), Some(request.clone())),
        ("DELETE", format!("/api/models/{id}"), None),
        (
            "GET",
            format!("/api/connections/{connection}/modelsync/source"),
            None,
        ),
    ] {
        let (status, answer) = h.call_as(&h.other_key, method, &uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
    }
    let (_, body) = h.call_as(&h.other_key, "GET", "/api/models", None).await;
    assert_eq!(body["data"], json!([]));
    // Another organization cannot point a model at this connection either.
    let (status, _) = h
        .call_as(&h.other_key, "POST", "/api/models", Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Sample: records keyed by the model id, enabled fields only, types kept.
    let (status, body) = h
        .call("GET", &format!("/api/models/{id}/sample"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["warnings"], json!([]));
    assert_eq!(
        body["data"]["records"],
        json!([
            {id.clone(): {"id": 1, "name": "Ada", "score": 12.5, "updated_at": "2024-01-02T03:04:05Z"}},
            {id.clone(): {"id": 2, "name": "Grace", "score": null, "updated_at": "2024-02-03T04:05:06Z"}},
        ])
    );

    // Update: full replacement, version bump, field ids kept by name.
    let mut change = request.clone();
    change["name"] = json!("Active people");
    change["configuration"] = json!({"view": "active_people"});
    change["fields"] = Value::Null;
    change["tracking_columns"] = json!([]);
    change["labels"] = Value::Null;
    change["additional_fields"] = Value::Null;
    let (status, body) = h
        .call("PUT", &format!("/api/models/{id}"), Some(change))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let updated = &body["data"];
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["name"], "Active people");
    assert_eq!(updated["configuration"], json!({"view": "active_people"}));
    assert_eq!(names(&updated["fields"]), vec!["id", "name"]);
    assert_eq!(updated["fields"][0]["id"], model["fields"][0]["id"]);
    assert_eq!(updated["labels"], json!([]));
    assert_eq!(updated["created_at"], model["created_at"]);

    // Preview: described, not saved.
    let (status, body) = h
        .call(
            "POST",
            "/api/model-preview",
            Some(json!({"connection_id": connection, "name": "Totals",
                        "configuration": {"query": "SELECT person_id, sum(total) AS total FROM orders GROUP BY person_id;"},
                        "identifier": "person_id"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["id"].is_null());
    assert_eq!(names(&body["data"]["fields"]), vec!["person_id", "total"]);
    let (_, body) = h.call("GET", "/api/models", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    // A connection a model uses cannot be deleted; once the model is gone it can.
    let (status, body) = h
        .call("DELETE", &format!("/api/connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connection in use"),
        "{body}"
    );
    let (status, _) = h.call("DELETE", &format!("/api/models/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", &format!("/api/models/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", &format!("/api/models/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h
        .call("DELETE", &format!("/api/connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.finish().await;
}

async fn validation(h: Harness) {
    let connection = h.sqlite_connection().await;
    let base = json!({"connection_id": connection, "name": "People",
                      "configuration": {"table": "people"}});
    let with = |changes: Value| {
        let mut request = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            request[key] = value.clone();
        }
        request
    };
    let cases = [
        (
            json!({"configuration": {}}),
            "configuration",
            "one of table, view or query is required",
        ),
        (
            json!({"configuration": {"table": "people", "query": "SELECT 1"}}),
            "configuration",
            "got table and query",
        ),
        (
            json!({"configuration": {"tabel": "people"}}),
            "configuration.tabel",
            "unknown key",
        ),
        (
            json!({"configuration": {"table": 5}}),
            "configuration.table",
            "expected a string",
        ),
        (
            json!({"configuration": "people"}),
            "configuration",
            "must be a JSON object",
        ),
        (
            json!({"configuration": {"table": "nope"}}),
            "configuration.table",
            "table \"nope\" does not exist",
        ),
        (
            json!({"configuration": {"query": "SELECT * FROM nope"}}),
            "configuration.query",
            "no such table: nope",
        ),
        (
            json!({"identifier": "nope"}),
            "identifier",
            "'nope' is not a field of this model",
        ),
        (
            json!({"fields": ["id"], "identifier": "name"}),
            "identifier",
            "'name' is not a field",
        ),
        (json!({"fields": ["id", "nope"]}), "fields[1]", "'nope'"),
        (
            json!({"tracking_columns": ["nope"]}),
            "tracking_columns[0]",
            "'nope'",
        ),
        (json!({"name": " "}), "name", "must not be empty"),
        (
            json!({"additional_fields": [{"name": "id", "label": "Id", "type": "string"}]}),
            "additional_fields[0].name",
            "already exists",
        ),
        (
            json!({"relations": [{"from": "id", "to": {"model_id": uuid::Uuid::new_v4(), "field": "id"}}]}),
            "relations[0].to.model_id",
            "not found",
        ),
        (
            json!({"enricher": {"connection_id": connection}}),
            "enricher",
            "not supported",
        ),
    ];
    for (changes, field, text) in cases {
        for uri in ["/api/models", "/api/model-preview"] {
            let (status, body) = h.call("POST", uri, Some(with(changes.clone()))).await;
            assert_field_error(status, &body, field, text);
        }
    }

    // Unknown connection, malformed body, async.
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(with(json!({"connection_id": uuid::Uuid::new_v4()}))),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = h
        .call("POST", "/api/models", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = h
        .call("POST", "/api/models?async=true", Some(base.clone()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("async"),
        "{body}"
    );
    let (status, _) = h
        .call("POST", "/api/models?async=false", Some(base.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Relations to a real model's field are accepted; to a missing field are not.
    let (_, body) = h.call("GET", "/api/models", None).await;
    let people = body["data"][0]["id"].as_str().unwrap().to_string();
    let orders = json!({"connection_id": connection, "name": "Orders",
                        "configuration": {"table": "orders"},
                        "relations": [{"from": "person_id", "to": {"model_id": people, "field": "id"}}]});
    let (status, body) = h.call("POST", "/api/models", Some(orders.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["relations"],
        json!([{"from": "person_id", "to": {"model_id": people, "field": "id"}}])
    );
    let mut bad = orders.clone();
    bad["relations"][0]["to"]["field"] = json!("nope");
    let (status, body) = h.call("POST", "/api/models", Some(bad)).await;
    assert_field_error(status, &body, "relations[0].to.field", "'nope'");

    // Discovery errors.
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source/fields"),
            None,
        )
        .await;
    assert_field_error(status, &body, "params", "is required");
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source/fields?params[query]=SELECT%20*%20FROM%20nope"),
            None,
        )
        .await;
    assert_field_error(status, &body, "params[query]", "no such table: nope");
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source?table=a&query=b"),
            None,
        )
        .await;
    assert_field_error(status, &body, "params", "exactly one");
    let (status, _) = h
        .call(
            "GET",
            &format!("/api/connections/{}/modelsync/source", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The source file disappearing is reported, not a 500.
    std::fs::remove_file(&h.source_path).unwrap();
    let (status, body) = h
        .call("GET", &format!("/api/models/{people}/sample"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    h.finish().await;
}

async fn postgresql_source(h: Harness) {
    let Some(source) = ferry_store::testing::postgres_database("models_pg_source").await else {
        h.finish().await;
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&source.url).unwrap();
    let mut connection = options.connect().await.unwrap();
    connection
        .execute(
            "CREATE SCHEMA crm;
             CREATE TABLE crm.accounts (id bigint PRIMARY KEY, name text, revenue numeric(12,2),
                                        created timestamptz, meta jsonb);
             INSERT INTO crm.accounts VALUES
                 (1, 'Acme', 1000.50, '2024-01-02 03:04:05+00', '{\"tier\": \"gold\"}');",
        )
        .await
        .unwrap();
    connection.close().await.unwrap();
    let connection_id = h
        .connection(
            "postgresql",
            json!({"hostname": options.get_host(), "port": options.get_port(),
                   "database": options.get_database().unwrap(),
                   "username": options.get_username(), "ssl": false}),
        )
        .await;

    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{connection_id}/modelsync/source"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["items"]["table"]["items"],
        json!(["crm.accounts"])
    );

    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection_id, "name": "Accounts",
                        "configuration": {"query": "SELECT id, name, revenue, created, meta FROM crm.accounts"},
                        "identifier": "id"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let types: Vec<&str> = body["data"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["number", "string", "number", "datetime", "object"]
    );
    let (status, body) = h
        .call("GET", &format!("/api/models/{id}/sample"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["records"][0][&id],
        json!({"id": 1, "name": "Acme", "revenue": 1000.5,
               "created": "2024-01-02T03:04:05Z", "meta": {"tier": "gold"}})
    );

    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection_id, "name": "Bad",
                        "configuration": {"query": "SELECT * FROM nope"}})),
        )
        .await;
    assert_field_error(
        status,
        &body,
        "configuration.query",
        "relation \"nope\" does not exist",
    );
    source.drop_database().await;
    h.finish().await;
}

async fn mysql_source(h: Harness) {
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
                "\n========\nSKIPPED: mysql_source: MySQL at {url} is unreachable ({error})\n========\n"
            );
            h.finish().await;
            return;
        }
    };
    let database = format!("ferry_api_{}", uuid::Uuid::new_v4().simple());
    for statement in [
        format!("CREATE DATABASE `{database}`"),
        format!(
            "CREATE TABLE `{database}`.accounts (id INT PRIMARY KEY, name VARCHAR(20), \
             revenue DECIMAL(12,2))"
        ),
        format!("INSERT INTO `{database}`.accounts VALUES (1, 'Acme', 1000.50)"),
    ] {
        connection.execute(statement.as_str()).await.unwrap();
    }
    let connection_id = h
        .connection(
            "mysql",
            json!({"hostname": options.get_host(), "port": options.get_port(),
                   "account": options.get_username(), "dbname": database, "ssl": false}),
        )
        .await;
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection_id, "name": "Accounts",
                        "configuration": {"table": format!("{database}.accounts")},
                        "identifier": "id"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let (status, body) = h
        .call("GET", &format!("/api/models/{id}/sample"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["records"],
        json!([{id.clone(): {"id": 1, "name": "Acme", "revenue": 1000.5}}])
    );
    let (status, body) = h
        .call(
            "POST",
            "/api/model-preview",
            Some(json!({"connection_id": connection_id, "name": "Bad",
                        "configuration": {"query": "SELECT * FROM nope"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.query", "nope' doesn't exist");
    let _ = connection
        .execute(format!("DROP DATABASE `{database}`").as_str())
        .await;
    h.finish().await;
}

async fn sqlite_harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("meta.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut harness = Harness::new(Arc::new(store), None).await;
    harness._store_dir = Some(dir);
    harness
}

async fn postgres_harness(name: &str) -> Option<Harness> {
    let db = ferry_store::testing::postgres_database(name).await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    Some(Harness::new(Arc::new(store), Some(db)).await)
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqlite_harness().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(harness) = super::postgres_harness(stringify!($name)).await else { return };
                    super::$name(harness).await;
                }
            )*
        }
    };
}

both_backends!(lifecycle, validation, postgresql_source, mysql_source);
