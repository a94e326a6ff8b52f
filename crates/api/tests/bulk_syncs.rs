//! Bulk syncs end to end: Salesforce objects from the in-process emulator replicated into a
//! real PostgreSQL database (one per test) through the API, with the metadata store on
//! SQLite and (when reachable) PostgreSQL. Destination rows are compared with what the
//! emulator holds, read through its own REST API.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use ferry_api::ApiSettings;
use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use ferry_store::DynStore;
use ferry_store::testing::TestDatabase;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Row as _};

mod support;

use support::{Api, sqlite_store};

struct Harness {
    api: Api,
    emulator: RunningEmulator,
    http: reqwest::Client,
    salesforce: SalesforceClient,
    dir: tempfile::TempDir,
    pg: Option<TestDatabase>,
}

impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    async fn new(store: Option<(DynStore, TestDatabase)>) -> Harness {
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let (store, pg) = match store {
            Some((store, pg)) => (store, Some(pg)),
            None => (sqlite_store(&dir).await, None),
        };
        let api = Api::new(store).await;
        let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).unwrap();
        let salesforce = SalesforceClient::connect(ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        ))
        .await
        .unwrap();
        Harness {
            api,
            emulator,
            http: reqwest::Client::new(),
            salesforce,
            dir,
            pg,
        }
    }

    /// The error of a call that must fail with `status`.
    async fn error(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let (actual, body) = self.call(method, uri, body).await;
        assert_eq!(actual, status, "{method} {uri}: {body}");
        body
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(
            method,
            format!("{}/__emulator/{path}", self.emulator.base_url()),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    async fn query(&self, soql: &str) -> Vec<serde_json::Map<String, Value>> {
        self.salesforce
            .query_all_pages(soql, QueryScope::Live)
            .await
            .unwrap()
    }

    async fn connection(&self, name: &str, type_id: &str, configuration: Value) -> String {
        let data = self
            .ok(
                "POST",
                "/api/connections",
                Some(json!({"name": name, "type": type_id, "configuration": configuration})),
            )
            .await;
        data["id"].as_str().unwrap().to_string()
    }

    async fn salesforce_connection(&self) -> String {
        self.connection(
            "salesforce",
            "salesforce",
            json!({"domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
                   "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}),
        )
        .await
    }

    async fn sqlite_connection(&self) -> String {
        let path = self.dir.path().join("warehouse.db");
        std::fs::write(&path, b"").unwrap();
        self.connection(
            "sqlite warehouse",
            "sqlite",
            json!({"path": path.to_str().unwrap()}),
        )
        .await
    }

    async fn postgres_connection(&self, database: &TestDatabase) -> String {
        let options: sqlx::postgres::PgConnectOptions = database.url.parse().unwrap();
        self.connection(
            "postgres warehouse",
            "postgresql",
            json!({"hostname": options.get_host(), "port": options.get_port(),
                   "database": options.get_database().unwrap(),
                   "username": options.get_username(), "ssl": false}),
        )
        .await
    }

    /// Seeds `count` Accounts and one Contact per Account.
    async fn seed(&self, count: u32) {
        self.admin(
            reqwest::Method::POST,
            "generate/Account",
            Some(json!({"count": count, "fields": {"Name": "Bulk {n}", "Industry": ["Energy", "Media"],
                                                    "AnnualRevenue": 1000}})),
        )
        .await;
        let accounts = self.query("SELECT Id, Name FROM Account").await;
        let contacts: Vec<Value> = accounts
            .iter()
            .map(|a| {
                json!({"LastName": format!("Contact of {}", a["Name"].as_str().unwrap()),
                            "Email": format!("{}@example.com", a["Id"].as_str().unwrap()),
                            "AccountId": a["Id"]})
            })
            .collect();
        self.admin(
            reqwest::Method::POST,
            "records/Contact",
            Some(json!(contacts)),
        )
        .await;
    }

    fn sync_body(
        &self,
        source: &str,
        destination: &str,
        configuration: Value,
        schemas: Value,
    ) -> Value {
        json!({
            "name": "salesforce replica",
            "source_connection_id": source,
            "destination_connection_id": destination,
            "destination_configuration": configuration,
            "default_schedule": {"frequency": "manual"},
            "schemas": schemas,
        })
    }

    async fn create(&self, body: Value) -> String {
        let data = self.ok("POST", "/api/bulk/syncs", Some(body)).await;
        data["id"].as_str().unwrap().to_string()
    }

    /// Polls an execution until it reaches a terminal status.
    async fn wait(&self, sync: &str, execution: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut last = Value::Null;
        while std::time::Instant::now() < deadline {
            let data = self
                .ok(
                    "GET",
                    &format!("/api/bulk/syncs/{sync}/executions/{execution}"),
                    None,
                )
                .await;
            if ["completed", "failed", "canceled", "interrupted"]
                .contains(&data["status"].as_str().unwrap())
            {
                return data;
            }
            last = data;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let job = self
            .state
            .store()
            .job_for_execution(execution.parse().unwrap())
            .await;
        panic!("execution {execution} did not finish: {last}; its job: {job:?}");
    }

    async fn run(&self, sync: &str, body: Value) -> Value {
        let started = self
            .ok(
                "POST",
                &format!("/api/bulk/syncs/{sync}/executions"),
                Some(body),
            )
            .await;
        assert_execution_shape(&started);
        self.wait(sync, started["id"].as_str().unwrap()).await
    }

    async fn finish(self) {
        self.state.local_workers().stop();
        self.state.local_workers().stopped().await;
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

/// Checks the JSON types of the keys a Polytomic schema declares (`s` string, `b` bool,
/// `i` integer, `a` array, `o` object, `t` RFC 3339 string, `?` any or null).
fn assert_types(value: &Value, keys: &[(&str, char)]) {
    for (key, kind) in keys {
        let member = &value[*key];
        let ok = match kind {
            's' => member.is_string(),
            'b' => member.is_boolean(),
            'i' => member.is_i64(),
            'a' => member.is_array(),
            'o' => member.is_object(),
            't' => member
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            _ => value.get(*key).is_some(),
        };
        assert!(ok, "{key} should be {kind}: {value}");
    }
}

/// `BulkSyncResponse`.
fn assert_sync_shape(sync: &Value) {
    assert_types(
        sync,
        &[
            ("id", 's'),
            ("name", 's'),
            ("organization_id", 's'),
            ("active", 'b'),
            ("mode", 's'),
            ("source_connection_id", 's'),
            ("destination_connection_id", 's'),
            ("destination_configuration", 'o'),
            ("source_configuration", 'o'),
            ("default_schedule", 'o'),
            ("additional_schedules", 'a'),
            ("automatically_add_new_fields", 's'),
            ("automatically_add_new_objects", 's'),
            ("normalize_names", 's'),
            ("data_cutoff_timestamp", '?'),
            ("disable_record_timestamps", 'b'),
            ("policies", 'a'),
            ("created_at", 't'),
            ("created_by", 'o'),
            ("updated_at", 't'),
        ],
    );
    assert_types(
        &sync["default_schedule"],
        &[("frequency", 's'), ("id", 's'), ("created_at", 't')],
    );
    for schedule in sync["additional_schedules"].as_array().unwrap() {
        assert_types(
            schedule,
            &[
                ("frequency", 's'),
                ("schemas", 'a'),
                ("selective_mode", 's'),
                ("resync_mode", 's'),
            ],
        );
    }
}

/// `BulkSyncExecution` with its `BulkSyncSchemaExecution`s.
fn assert_execution_shape(execution: &Value) {
    assert_types(
        execution,
        &[
            ("id", 's'),
            ("type", 's'),
            ("status", 's'),
            ("status_message", 's'),
            ("created_at", 't'),
            ("updated_at", 't'),
            ("fetch_mode", 's'),
            ("output_disposition", 's'),
            ("is_resync", 'b'),
            ("is_partial", 'b'),
            ("is_test", 'b'),
            ("record_count", 'i'),
            ("error_count", 'i'),
            ("warning_count", 'i'),
            ("schemas", 'a'),
        ],
    );
    for schema in execution["schemas"].as_array().unwrap() {
        assert_types(
            schema,
            &[
                ("schema", 's'),
                ("output_name", 's'),
                ("status", 's'),
                ("status_message", 's'),
                ("created_at", 't'),
                ("updated_at", 't'),
                ("record_count", 'i'),
                ("error_count", 'i'),
                ("warning_count", 'i'),
            ],
        );
    }
}

fn schema_of<'a>(execution: &'a Value, id: &str) -> &'a Value {
    execution["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schema"] == id)
        .unwrap_or_else(|| panic!("no schema {id}: {execution}"))
}

/// Rows of a destination table as `id → name`, ordered by id.
async fn destination_rows(database: &TestDatabase, sql: &str) -> Vec<(String, Option<String>)> {
    let mut connection = database
        .url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::query(sql)
        .fetch_all(&mut connection)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<Option<String>, _>(1)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn emulator_rows(
    records: &[serde_json::Map<String, Value>],
    name: &str,
) -> Vec<(String, Option<String>)> {
    records
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap().to_string(),
                r[name].as_str().map(str::to_string),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn validation(h: Harness) {
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.sqlite_connection().await;
    let base = h.sync_body(&salesforce, &warehouse, json!({}), json!(["Account"]));
    let field_of = |error: &Value| {
        error["metadata"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": null}), "name"),
        (
            json!({"destination_configuration": null}),
            "destination_configuration",
        ),
        (json!({"default_schedule": null}), "default_schedule"),
        (
            json!({"source_connection_id": "nope"}),
            "source_connection_id",
        ),
        (
            json!({"source_connection_id": warehouse}),
            "source_connection_id",
        ),
        (
            json!({"destination_connection_id": salesforce}),
            "destination_connection_id",
        ),
        (
            json!({"destination_connection_id": uuid::Uuid::new_v4()}),
            "destination_connection_id",
        ),
        (
            json!({"destination_configuration": {"surprise": true}}),
            "destination_configuration",
        ),
        (
            json!({"destination_configuration": {"table_prefix": "bad-prefix"}}),
            "destination_configuration.table_prefix",
        ),
        (
            json!({"destination_configuration": {"schema": "sf"}}),
            "destination_configuration.schema",
        ),
        (
            json!({"destination_configuration": {"deletes": "never"}}),
            "destination_configuration.deletes",
        ),
        (json!({"mode": "mirror"}), "mode"),
        (json!({"normalize_names": "sometimes"}), "normalize_names"),
        (
            json!({"automatically_add_new_objects": "some"}),
            "automatically_add_new_objects",
        ),
        (
            json!({"data_cutoff_timestamp": "yesterday"}),
            "data_cutoff_timestamp",
        ),
        (
            json!({"source_configuration": {"replication_slot": "x"}}),
            "source_configuration.replication_slot",
        ),
        (json!({"schemas": ["NoSuchObject__c"]}), "schemas[0].id"),
        (
            json!({"schemas": [{"id": "Account", "fields": ["Name", "NoSuchField"]}]}),
            "schemas[0].fields[1]",
        ),
        (
            json!({"schemas": [{"id": "Account", "filters": [{"field_id": "Name", "function": "IsNull"}]}]}),
            "schemas[0].filters",
        ),
        (
            json!({"default_schedule": {"frequency": "builder"}}),
            "default_schedule.frequency",
        ),
        (
            json!({"default_schedule": {"frequency": "hourly", "minute": "5"}}),
            "default_schedule.frequency",
        ),
        (
            json!({"default_schedule": {"frequency": "custom", "minute": "61"}}),
            "default_schedule.minute",
        ),
        (
            json!({"additional_schedules": [{"frequency": "manual", "schemas": ["Contact"]}]}),
            "additional_schedules[0].schemas[0]",
        ),
        (json!({"concurrency_limit": 0}), "concurrency_limit"),
        (
            json!({"disable_record_timestamps": true}),
            "disable_record_timestamps",
        ),
    ];
    for (patch, field) in cases {
        let mut body = base.clone();
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        let error = h
            .error(
                "POST",
                "/api/bulk/syncs",
                Some(body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(field_of(&error), field, "{patch}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    // Nothing was stored, and the connections are free.
    assert_eq!(h.ok("GET", "/api/bulk/syncs", None).await, json!([]));

    // The target endpoint serves the schema the configuration is checked against.
    let target = h
        .ok(
            "GET",
            &format!("/api/connections/{warehouse}/bulksync/target"),
            None,
        )
        .await;
    let properties = target["configuration"]["properties"].as_object().unwrap();
    assert!(properties.contains_key("table_prefix") && properties.contains_key("deletes"));
    assert!(!properties.contains_key("schema"), "SQLite has no schemas");
    let modes: Vec<&str> = target["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["replicate", "snapshot"]);
    assert_eq!(
        target["supported_resync_modes"],
        json!(["refetch", "resync"])
    );
    h.error(
        "GET",
        &format!("/api/connections/{salesforce}/bulksync/target"),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    h.finish().await;
}

async fn crud(h: Harness) {
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.sqlite_connection().await;
    let mut body = h.sync_body(
        &salesforce,
        &warehouse,
        json!({"table_prefix": "sf_", "deletes": "soft"}),
        json!(["Account", {"id": "Contact", "enabled": false, "fields": ["Email", {"id": "LastName", "enabled": true}]}]),
    );
    body["mode"] = json!("snapshot");
    body["data_cutoff_timestamp"] = json!("2020-01-01T00:00:00Z");
    body["automatically_add_new_fields"] = json!("none");
    body["additional_schedules"] =
        json!([{"frequency": "manual", "schemas": ["Account"], "resync_mode": "refetch"}]);
    let created = h.ok("POST", "/api/bulk/syncs", Some(body.clone())).await;
    assert_sync_shape(&created);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["mode"], "snapshot");
    assert_eq!(created["active"], false);
    assert_eq!(created["normalize_names"], "enabled");
    assert_eq!(created["automatically_add_new_objects"], "none");
    assert_eq!(created["automatically_add_new_fields"], "none");
    assert_eq!(created["data_cutoff_timestamp"], "2020-01-01T00:00:00.000Z");
    assert_eq!(created["destination_configuration"]["table_prefix"], "sf_");
    assert_eq!(created["destination_configuration"]["deletes"], "soft");
    assert_eq!(created["default_schedule"]["frequency"], "manual");
    assert_eq!(created["additional_schedules"][0]["resync_mode"], "refetch");
    assert_eq!(
        created["additional_schedules"][0]["schemas"],
        json!(["Account"])
    );

    assert_eq!(
        h.ok("GET", &format!("/api/bulk/syncs/{id}"), None).await,
        created
    );
    let listed = h.ok("GET", "/api/bulk/syncs", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        h.ok("GET", "/api/bulk/syncs?active=true", None).await,
        json!([])
    );

    // Schemas: the listed ones with their settings.
    let schemas = h
        .ok("GET", &format!("/api/bulk/syncs/{id}/schemas"), None)
        .await;
    let ids: Vec<&str> = schemas
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Account", "Contact"]);
    let enabled = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/{id}/schemas?filters[enabled]=true"),
            None,
        )
        .await;
    assert_eq!(enabled.as_array().unwrap().len(), 1);
    let contact = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/{id}/schemas/Contact"),
            None,
        )
        .await;
    assert_types(
        &contact,
        &[
            ("id", 's'),
            ("enabled", 'b'),
            ("output_name", 's'),
            ("user_output_name", 's'),
            ("partition_key", 's'),
            ("tracking_field", 's'),
            ("fields", 'a'),
            ("filters", 'a'),
        ],
    );
    let field = |name: &str| {
        contact["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no field {name}: {contact}"))
    };
    assert_eq!(field("Email")["enabled"], true);
    assert_eq!(field("LastName")["enabled"], true);
    // Not listed and automatically_add_new_fields is none: out.
    assert_eq!(field("FirstName")["enabled"], false);
    h.error(
        "GET",
        &format!("/api/bulk/syncs/{id}/schemas/Lead"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;

    // The connections are in use.
    let error = h
        .error(
            "DELETE",
            &format!("/api/connections/{warehouse}"),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("salesforce replica"),
        "{error}"
    );

    // PUT replaces: omitted options reset, the default schedule keeps its id, the
    // additional schedule is gone, and the schemas stay.
    let mut replacement = h.sync_body(&salesforce, &warehouse, json!({}), Value::Null);
    replacement.as_object_mut().unwrap().remove("schemas");
    replacement["name"] = json!("renamed");
    replacement["active"] = json!(true);
    let updated = h
        .ok("PUT", &format!("/api/bulk/syncs/{id}"), Some(replacement))
        .await;
    assert_sync_shape(&updated);
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["mode"], "replicate");
    assert_eq!(updated["active"], true);
    assert_eq!(updated["automatically_add_new_fields"], "all");
    assert_eq!(updated["data_cutoff_timestamp"], Value::Null);
    assert_eq!(
        updated["default_schedule"]["id"],
        created["default_schedule"]["id"]
    );
    assert_eq!(updated["additional_schedules"], json!([]));
    assert_eq!(
        h.ok("GET", &format!("/api/bulk/syncs/{id}/schemas"), None)
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let activated = h
        .ok(
            "POST",
            &format!("/api/bulk/syncs/{id}/activate"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(activated, json!({"id": id, "active": false}));
    assert_eq!(
        h.ok("GET", &format!("/api/bulk/syncs/{id}"), None).await["active"],
        false
    );

    let (status, _) = h
        .call("DELETE", &format!("/api/bulk/syncs/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.error(
        "GET",
        &format!("/api/bulk/syncs/{id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let (status, _) = h
        .call("DELETE", &format!("/api/connections/{warehouse}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // New source objects join per automatically_add_new_objects.
    let warehouse = h.sqlite_connection().await;
    let mut body = h.sync_body(&salesforce, &warehouse, json!({}), json!(["Account"]));
    body["automatically_add_new_objects"] = json!("all");
    let id = h.create(body).await;
    h.admin(
        reqwest::Method::POST,
        "objects",
        Some(json!({"name": "Invoice__c", "label": "Invoice",
                    "fields": [{"name": "Number__c", "type": "text", "length": 20}]})),
    )
    .await;
    let schema_ids = |schemas: &Value| -> Vec<String> {
        schemas
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = h
        .ok("GET", &format!("/api/bulk/syncs/{id}/schemas"), None)
        .await;
    assert_eq!(schema_ids(&before), ["Account"]);
    h.ok(
        "GET",
        &format!("/api/bulk/syncs/{id}?refresh_schemas=true"),
        None,
    )
    .await;
    let after = h
        .ok("GET", &format!("/api/bulk/syncs/{id}/schemas"), None)
        .await;
    assert!(
        schema_ids(&after).contains(&"Invoice__c".to_string()),
        "{after}"
    );
    h.finish().await;
}

/// Starts, polls and checks the destination against the emulator; then the schemas
/// sub-resource, a second (incremental) run, logs, status and history.
async fn replicate_into_postgres(h: Harness, pg_name: &str) {
    let Some(database) = ferry_store::testing::postgres_database(pg_name).await else {
        return h.finish().await;
    };
    h.seed(30).await;
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.postgres_connection(&database).await;
    let sync = h
        .create(h.sync_body(
            &salesforce,
            &warehouse,
            json!({"schema": "sf", "table_prefix": "raw_"}),
            json!(["Account", {"id": "Contact", "fields": ["Email", "LastName", "AccountId"]}]),
        ))
        .await;

    let execution = h.run(&sync, json!({})).await;
    assert_execution_shape(&execution);
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["type"], "manual");
    assert_eq!(execution["is_partial"], false);
    let accounts = h.query("SELECT Id, Name FROM Account ORDER BY Id").await;
    let contacts = h
        .query("SELECT Id, LastName FROM Contact ORDER BY Id")
        .await;
    assert!(accounts.len() >= 30);
    let account_schema = schema_of(&execution, "Account");
    assert_eq!(account_schema["status"], "completed");
    assert_eq!(account_schema["record_count"], accounts.len() as i64);
    assert_eq!(
        schema_of(&execution, "Contact")["record_count"],
        contacts.len() as i64
    );
    assert_eq!(
        execution["record_count"],
        (accounts.len() + contacts.len()) as i64
    );
    assert_eq!(
        destination_rows(&database, "SELECT id, name FROM sf.raw_account ORDER BY id").await,
        emulator_rows(&accounts, "Name")
    );
    assert_eq!(
        destination_rows(
            &database,
            "SELECT id, last_name FROM sf.raw_contact ORDER BY id"
        )
        .await,
        emulator_rows(&contacts, "LastName")
    );

    // The execution raised its events.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = h.ok("GET", "/api/events?limit=100", None).await;
        let types: Vec<(String, Value)> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["type"].as_str().unwrap().to_string(), e["event"].clone()))
            .collect();
        let completed = types
            .iter()
            .find(|(t, e)| t == "bulk_sync.completed" && e["execution_id"] == execution["id"]);
        if let Some((_, event)) = completed {
            assert!(
                types.iter().any(|(t, _)| t == "bulk_sync.running"),
                "{types:?}"
            );
            assert_eq!(event["sync_id"], json!(sync));
            assert_eq!(event["destination_connection_id"], json!(warehouse));
            assert_eq!(event["trigger_source"], "manual");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no bulk_sync.completed event: {types:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Schemas: rename Account's table, disable Contact.
    let patched = h
        .ok(
            "PATCH",
            &format!("/api/bulk/syncs/{sync}/schemas"),
            Some(json!({"schemas": [{"id": "Account", "user_output_name": "accounts", "fields": ["Id", "Name"]},
                                    {"id": "Contact", "enabled": false}]})),
        )
        .await;
    assert_eq!(patched[0]["output_name"], "accounts");
    assert_eq!(patched[1]["enabled"], false);
    // Omitted fields enable every field.
    assert!(
        patched[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["enabled"] == true)
    );
    let error = h
        .error(
            "PATCH",
            &format!("/api/bulk/syncs/{sync}/schemas"),
            Some(json!({"schemas": [{"id": "Account", "partition_key": "Name"}]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(error["metadata"]["field"], "schemas[0].partition_key");
    let replaced = h
        .ok(
            "PUT",
            &format!("/api/bulk/syncs/{sync}/schemas/Account"),
            Some(json!({"user_output_name": "accounts", "fields": [{"id": "Name", "enabled": true}]})),
        )
        .await;
    assert_eq!(replaced["enabled"], true);
    let error = h
        .error(
            "PUT",
            &format!("/api/bulk/syncs/{sync}/schemas/Account"),
            Some(json!({"fields": [{"id": "Nope__c"}]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(error["metadata"]["field"], "fields[0]");

    // A disabled schema cannot be started; an unknown one neither.
    for (schemas, field) in [
        (json!(["Contact"]), "schemas[0]"),
        (json!(["Nope"]), "schemas[0]"),
    ] {
        let error = h
            .error(
                "POST",
                &format!("/api/bulk/syncs/{sync}/executions"),
                Some(json!({"schemas": schemas})),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(error["metadata"]["field"], field);
    }
    for body in [
        json!({"resync": true}),
        json!({"test": true, "resync_mode": "resync"}),
        json!({"resync_mode": "rebuild"}),
    ] {
        h.error(
            "POST",
            &format!("/api/bulk/syncs/{sync}/executions"),
            Some(body),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }

    // Changes in Salesforce, then an incremental run of Account only.
    let first = &accounts[0];
    let first_id = first["Id"].as_str().unwrap();
    h.salesforce
        .update(
            "Account",
            first_id,
            &serde_json::Map::from_iter([("Name".to_string(), json!("Renamed Account"))]),
        )
        .await
        .unwrap();
    let second = h.run(&sync, json!({"fetch_mode": "incremental"})).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["schemas"].as_array().unwrap().len(), 1);
    assert_eq!(schema_of(&second, "Account")["output_name"], "accounts");
    let accounts = h.query("SELECT Id, Name FROM Account ORDER BY Id").await;
    assert_eq!(
        destination_rows(
            &database,
            "SELECT id, name FROM sf.raw_accounts ORDER BY id"
        )
        .await,
        emulator_rows(&accounts, "Name")
    );

    // A test execution writes nothing and says so.
    let test = h.run(&sync, json!({"test": true})).await;
    assert_eq!(test["status"], "completed", "{test}");
    assert_eq!(test["is_test"], true);
    assert_eq!(test["record_count"], 0);

    // History, status, logs.
    let page = h
        .call(
            "GET",
            &format!("/api/bulk/syncs/{sync}/executions?limit=2"),
            None,
        )
        .await
        .1;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], test["id"]);
    let token = page["pagination"]["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    let rest = h
        .call(
            "GET",
            &format!("/api/bulk/syncs/{sync}/executions?limit=2&page_token={token}"),
            None,
        )
        .await
        .1;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["id"], execution["id"]);
    assert!(rest["pagination"]["next_page_token"].is_null());
    let ascending = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/{sync}/executions?ascending=true&only_terminal=true"),
            None,
        )
        .await;
    assert_eq!(ascending[0]["id"], execution["id"]);

    let status = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None)
        .await;
    assert!(status["current_execution"].is_null());
    assert_eq!(status["last_execution"]["id"], test["id"]);
    assert!(
        status["next_execution_time"].is_null(),
        "manual syncs have no next time"
    );
    let statuses = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/status?sync_id={sync}"),
            None,
        )
        .await;
    assert_eq!(statuses[0]["sync_id"], json!(sync));
    assert!(
        statuses[0]
            .as_object()
            .unwrap()
            .contains_key("nextExecutionTime")
    );
    let per_schema = statuses[0]["schemas"].as_array().unwrap();
    assert_eq!(per_schema.len(), 2, "{statuses}");
    let contact_status = per_schema
        .iter()
        .find(|s| s["schema"] == "Contact")
        .unwrap();
    assert_eq!(
        contact_status["execution_id"], execution["id"],
        "Contact last ran in the first execution"
    );

    let execution_id = execution["id"].as_str().unwrap();
    let logs = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/{sync}/executions/{execution_id}/logs"),
            None,
        )
        .await;
    assert!(logs["Expires"].is_string());
    let url = logs["URLs"][0].as_str().unwrap();
    let path = url
        .strip_prefix(&ApiSettings::default().public_base_url)
        .unwrap();
    let (status, bytes) = h.call_raw("GET", path, None).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Value> = String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "Account completed"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "execution completed"),
        "{lines:?}"
    );
    let console = h
        .ok(
            "GET",
            &format!("/api/bulk/syncs/{sync}/executions/{execution_id}/schemas/Contact/consolelog"),
            None,
        )
        .await;
    assert_eq!(console["entries"].as_array().unwrap().len(), 1, "{console}");
    let export = h
        .call(
            "POST",
            &format!("/api/bulk/syncs/{sync}/executions/{execution_id}/logs/export"),
            Some(json!({})),
        )
        .await
        .1;
    assert_eq!(export["data"]["url"], logs["URLs"][0]);

    h.finish().await;
    database.drop_database().await;
}

/// 409 while an execution runs; cancel; a failed object fails its schema and the execution.
async fn conflicts_cancel_and_failures(h: Harness, pg_name: &str) {
    let Some(database) = ferry_store::testing::postgres_database(pg_name).await else {
        return h.finish().await;
    };
    h.seed(5).await;
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.postgres_connection(&database).await;
    let sync = h
        .create(h.sync_body(
            &salesforce,
            &warehouse,
            json!({}),
            json!(["Account", "Contact"]),
        ))
        .await;
    // Make every Salesforce call slow so the execution is still running below.
    h.admin(
        reqwest::Method::PUT,
        "faults",
        Some(json!({"latencyMs": 400})),
    )
    .await;
    let started = h
        .ok(
            "POST",
            &format!("/api/bulk/syncs/{sync}/executions"),
            Some(json!({})),
        )
        .await;
    let execution = started["id"].as_str().unwrap();
    let error = h
        .error(
            "POST",
            &format!("/api/bulk/syncs/{sync}/executions"),
            Some(json!({})),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(error["status"], 409);
    let status = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None)
        .await;
    assert_eq!(status["current_execution"]["id"], json!(execution));
    // Cancel Contact only, then the whole execution.
    let message = h
        .ok(
            "POST",
            &format!("/api/bulk/syncs/{sync}/schemas/Contact/cancel"),
            None,
        )
        .await;
    assert!(
        message["message"].as_str().unwrap().contains("Contact"),
        "{message}"
    );
    let message = h
        .ok("POST", &format!("/api/bulk/syncs/{sync}/cancel"), None)
        .await;
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("cancellation"),
        "{message}"
    );
    h.admin(reqwest::Method::DELETE, "faults", None).await;
    let ended = h.wait(&sync, execution).await;
    assert_eq!(ended["status"], "canceled", "{ended}");
    assert_eq!(
        schema_of(&ended, "Contact")["status"],
        "canceled",
        "{ended}"
    );
    let message = h
        .ok(
            "POST",
            &format!("/api/bulk/syncs/{sync}/executions/{execution}/cancel"),
            None,
        )
        .await;
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("already ended"),
        "{message}"
    );

    // A failing object: the destination table cannot be created (a view is in the way).
    let mut connection = database
        .url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE VIEW contact AS SELECT 1 AS id")
        .execute(&mut connection)
        .await
        .unwrap();
    let failed = h.run(&sync, json!({})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        schema_of(&failed, "Account")["status"],
        "completed",
        "{failed}"
    );
    let contact = schema_of(&failed, "Contact");
    assert_eq!(contact["status"], "failed", "{failed}");
    assert!(
        !contact["status_message"].as_str().unwrap().is_empty(),
        "{failed}"
    );
    assert!(
        failed["status_message"]
            .as_str()
            .unwrap()
            .contains("Contact"),
        "{failed}"
    );

    // Deleting the sync removes its history.
    let (status, _) = h
        .call("DELETE", &format!("/api/bulk/syncs/{sync}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.error(
        "GET",
        &format!("/api/bulk/syncs/{sync}/executions/{execution}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    h.finish().await;
    database.drop_database().await;
}

async fn schedules(h: Harness) {
    let _scheduler = h.state.sync_runner().scheduler_guard();
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.sqlite_connection().await;
    let mut body = h.sync_body(&salesforce, &warehouse, json!({}), json!(["Account"]));
    body["active"] = json!(true);
    body["default_schedule"] = json!({"frequency": "daily", "hour": "3", "minute": "30"});
    let sync = h.create(body).await;

    let listed = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/schedules"), None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let default = &listed[0];
    assert_types(
        default,
        &[
            ("frequency", 's'),
            ("hour", 's'),
            ("minute", 's'),
            ("isDefault", 'b'),
            ("syncId", 's'),
            ("createdAt", 't'),
            ("updatedAt", 't'),
            ("selectiveMode", 's'),
            ("syncMode", 's'),
            ("schemas", 'a'),
        ],
    );
    assert_eq!(default["isDefault"], true);
    assert_eq!(default["hour"], "3");

    let created = h
        .ok(
            "POST",
            &format!("/api/bulk/syncs/{sync}/schedules"),
            Some(json!({"schedule": {"frequency": "weekly", "dayOfWeek": "monday", "hour": "1", "minute": "0"}})),
        )
        .await;
    assert_eq!(created["dayOfWeek"], "monday");
    assert_eq!(created["isDefault"], false);
    let schedule_id = created["id"].as_str().unwrap();
    let error = h
        .error(
            "POST",
            &format!("/api/bulk/syncs/{sync}/schedules"),
            Some(json!({"schedule": {"frequency": "weekly", "dayOfWeek": "someday"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(error["metadata"]["field"], "schedule.day_of_week");
    let error = h
        .error(
            "POST",
            &format!("/api/bulk/syncs/{sync}/schedules"),
            Some(json!({"schedule": {"frequency": "daily", "selectiveMode": "incrementalFields"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(error["metadata"]["field"], "schedule.selective_mode");
    h.error(
        "POST",
        &format!("/api/bulk/syncs/{sync}/schedules"),
        Some(json!({})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    let replaced = h
        .ok(
            "PUT",
            &format!("/api/bulk/syncs/{sync}/schedules/{schedule_id}"),
            Some(json!({"schedule": {"frequency": "hourly", "minute": "15"}})),
        )
        .await;
    assert_eq!(replaced["frequency"], "hourly");
    assert_eq!(replaced["createdAt"], created["createdAt"]);
    assert_eq!(
        h.ok(
            "GET",
            &format!("/api/bulk/syncs/{sync}/schedules/{schedule_id}"),
            None
        )
        .await,
        replaced
    );
    let whole = h.ok("GET", &format!("/api/bulk/syncs/{sync}"), None).await;
    assert_eq!(whole["additional_schedules"][0]["frequency"], "hourly");

    // The next time is the earliest schedule's.
    let status = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None)
        .await;
    let next =
        chrono::DateTime::parse_from_rfc3339(status["next_execution_time"].as_str().unwrap())
            .unwrap();
    assert!(
        next <= chrono::Utc::now() + chrono::Duration::hours(1),
        "{status}"
    );

    // The scheduler starts the sync once a schedule is due (an hour from now it is).
    let started = ferry_api::bulk_syncs::schedules::tick(
        &h.state,
        chrono::Utc::now() + chrono::Duration::hours(2),
    )
    .await
    .unwrap();
    assert_eq!(started.len(), 1);
    let execution = h.wait(&sync, &started[0].to_string()).await;
    assert_eq!(execution["type"], "scheduled");
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(schema_of(&execution, "Account")["status"], "completed");
    // Not due again right away.
    assert!(
        ferry_api::bulk_syncs::schedules::tick(&h.state, chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
    );

    let error = h
        .error(
            "DELETE",
            &format!(
                "/api/bulk/syncs/{sync}/schedules/{}",
                default["id"].as_str().unwrap()
            ),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(error["message"].as_str().unwrap().contains("default"));
    let (status, _) = h
        .call(
            "DELETE",
            &format!("/api/bulk/syncs/{sync}/schedules/{schedule_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.error(
        "GET",
        &format!("/api/bulk/syncs/{sync}/schedules/{schedule_id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Pausing stops the schedule.
    h.ok(
        "POST",
        &format!("/api/bulk/syncs/{sync}/activate"),
        Some(json!({"active": false})),
    )
    .await;
    let status = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None)
        .await;
    assert!(status["next_execution_time"].is_null());
    h.finish().await;
}

/// The job of an execution.
async fn job_of(h: &Harness, execution: &str) -> ferry_store::Job {
    h.state
        .store()
        .job_for_execution(execution.parse().unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no job for execution {execution}"))
}

/// The job of an execution once it is done (its worker records the outcome right after
/// settling the execution).
async fn done_job_of(h: &Harness, execution: &str) -> ferry_store::Job {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = job_of(h, execution).await;
        if job.status == ferry_store::JobStatus::Done {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bulk executions are jobs: a server without workers leaves them queued (and cancels a
/// queued one on the spot), a worker runs them, and a worker that stops mid-run hands the
/// job back — the attempt `interrupted` (never `canceled`), its successor queued — for
/// another worker to finish.
async fn runs_as_jobs(h: Harness, pg_name: &str) {
    use ferry_store::{JobKind, JobStatus};
    // `ferry serve --workers 0`: no in-process worker.
    h.state.local_workers().disable();
    let Some(database) = ferry_store::testing::postgres_database(pg_name).await else {
        return h.finish().await;
    };
    h.seed(5).await;
    let salesforce = h.salesforce_connection().await;
    let warehouse = h.postgres_connection(&database).await;
    let sync = h
        .create(h.sync_body(&salesforce, &warehouse, json!({}), json!(["Account"])))
        .await;
    let start = format!("/api/bulk/syncs/{sync}/executions");

    // Queued, and nobody runs it.
    let queued = h.ok("POST", &start, Some(json!({}))).await;
    assert_execution_shape(&queued);
    assert_eq!(queued["status"], "created");
    let queued_id = queued["id"].as_str().unwrap().to_string();
    let job = job_of(&h, &queued_id).await;
    assert_eq!(job.kind, JobKind::BulkSync);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(
        job.connection_ids,
        vec![salesforce.parse::<uuid::Uuid>().unwrap()]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = h.ok("GET", &format!("{start}/{queued_id}"), None).await;
    assert_eq!(still["status"], "created", "{still}");
    assert_eq!(job_of(&h, &queued_id).await.status, JobStatus::Queued);
    // One at a time.
    let error = h
        .error("POST", &start, Some(json!({})), StatusCode::CONFLICT)
        .await;
    assert_eq!(error["status"], 409);
    // Canceling a job nobody claimed settles it at once.
    h.ok("POST", &format!("/api/bulk/syncs/{sync}/cancel"), None)
        .await;
    let canceled = h.ok("GET", &format!("{start}/{queued_id}"), None).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert_eq!(schema_of(&canceled, "Account")["status"], "canceled");
    let job = job_of(&h, &queued_id).await;
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.outcome.as_deref(), Some("canceled"));

    // A worker claims and runs the next one. Nothing here waits for a lease to expire: the
    // default lease keeps a loaded machine's heartbeat stalls from handing the job over
    // mid-test (a lost lease leaves the attempt to a new owner, and none runs here).
    let settings = ferry_api::jobs::WorkerSettings::default();
    let started = h.ok("POST", &start, Some(json!({}))).await;
    let started_id = started["id"].as_str().unwrap().to_string();
    h.state.local_workers().start(&h.state, settings.clone());
    let done = h.wait(&sync, &started_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let accounts = h.query("SELECT Id, Name FROM Account ORDER BY Id").await;
    assert_eq!(
        schema_of(&done, "Account")["record_count"],
        accounts.len() as i64
    );
    let job = done_job_of(&h, &started_id).await;
    assert_eq!(
        (job.status, job.outcome.as_deref(), job.attempts),
        (JobStatus::Done, Some("completed"), 1)
    );

    // The worker stops mid-run (SIGTERM): the attempt is interrupted, the job goes back
    // with its next execution written.
    h.admin(
        reqwest::Method::PUT,
        "faults",
        Some(json!({"latencyMs": 300})),
    )
    .await;
    let slow = h
        .ok("POST", &start, Some(json!({"fetch_mode": "full"})))
        .await;
    let slow_id = slow["id"].as_str().unwrap().to_string();
    let slow_job = job_of(&h, &slow_id).await.id;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let current = h.ok("GET", &format!("{start}/{slow_id}"), None).await;
        if schema_of(&current, "Account")["status"] == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{current}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.state.local_workers().stop();
    h.state.local_workers().stopped().await;
    let stopped = h.ok("GET", &format!("{start}/{slow_id}"), None).await;
    assert_eq!(stopped["status"], "interrupted", "{stopped}");
    assert_eq!(schema_of(&stopped, "Account")["status"], "interrupted");
    let job = h.state.store().job(slow_job).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let next_id = job.execution_id.to_string();
    assert_ne!(next_id, slow_id);
    let status = h
        .ok("GET", &format!("/api/bulk/syncs/{sync}/status"), None)
        .await;
    assert_eq!(
        status["current_execution"]["id"],
        json!(next_id),
        "{status}"
    );
    assert_eq!(status["current_execution"]["status"], "created");
    h.error("POST", &start, Some(json!({})), StatusCode::CONFLICT)
        .await;

    // Another worker continues it, with the same options.
    h.admin(reqwest::Method::DELETE, "faults", None).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(ferry_api::jobs::run_worker(
        h.state.clone(),
        ferry_api::jobs::WorkerSettings {
            owner: ferry_api::jobs::worker_id(),
            ..settings
        },
        stop.clone(),
    ));
    let next = h.wait(&sync, &next_id).await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(next["fetch_mode"], "full");
    assert_eq!(next["type"], "manual");
    let job = done_job_of(&h, &next_id).await;
    assert_eq!((job.id, job.attempts), (slow_job, 2));
    assert_eq!(
        destination_rows(&database, "SELECT id, name FROM account ORDER BY id").await,
        emulator_rows(&accounts, "Name")
    );
    // Only the execution canceled on purpose is `canceled`.
    let history = h.ok("GET", &format!("{start}?ascending=true"), None).await;
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["canceled", "completed", "interrupted", "completed"],
        "{history}"
    );
    stop.cancel();
    worker.await.unwrap();
    h.finish().await;
    database.drop_database().await;
}

async fn sqlite_harness() -> Harness {
    Harness::new(None).await
}

async fn postgres_harness(name: &str) -> Option<Harness> {
    let db = ferry_store::testing::postgres_database(name).await?;
    let store = ferry_store::PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    Some(Harness::new(Some((Arc::new(store), db))).await)
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validation() {
        super::validation(super::sqlite_harness().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crud() {
        super::crud(super::sqlite_harness().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicate_into_postgres() {
        super::replicate_into_postgres(
            super::sqlite_harness().await,
            "api_bulk_sqlite_replicate_dest",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicts_cancel_and_failures() {
        super::conflicts_cancel_and_failures(
            super::sqlite_harness().await,
            "api_bulk_sqlite_cancel_dest",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schedules() {
        super::schedules(super::sqlite_harness().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_as_jobs() {
        super::runs_as_jobs(super::sqlite_harness().await, "api_bulk_sqlite_jobs_dest").await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validation() {
        let Some(h) = super::postgres_harness("api_bulk_validation").await else {
            return;
        };
        super::validation(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crud() {
        let Some(h) = super::postgres_harness("api_bulk_crud").await else {
            return;
        };
        super::crud(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicate_into_postgres() {
        let Some(h) = super::postgres_harness("api_bulk_replicate").await else {
            return;
        };
        super::replicate_into_postgres(h, "api_bulk_pg_replicate_dest").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicts_cancel_and_failures() {
        let Some(h) = super::postgres_harness("api_bulk_cancel").await else {
            return;
        };
        super::conflicts_cancel_and_failures(h, "api_bulk_pg_cancel_dest").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schedules() {
        let Some(h) = super::postgres_harness("api_bulk_schedules").await else {
            return;
        };
        super::schedules(h).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_as_jobs() {
        let Some(h) = super::postgres_harness("api_bulk_jobs").await else {
            return;
        };
        super::runs_as_jobs(h, "api_bulk_pg_jobs_dest").await;
    }
}
