//! Target filters (`filters[].field_type: "Target"`) end to end through the API: a SQLite
//! model of people written in mode `update` into the in-process Salesforce emulator, and
//! into SQLite and PostgreSQL tables. A row is written only when the current value of the
//! tested field, in the record its identity matches, passes the filters; an excluded row
//! is not counted, raises no warning and is written on a later run once the target's
//! value passes. The metadata store is SQLite; PostgreSQL is the local service
//! (`FERRY_TEST_POSTGRES_URL`; SKIPPED when unreachable, fails when `CI` is set).

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

const PEOPLE: &str = "
    CREATE TABLE people (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, age INTEGER);
    INSERT INTO people VALUES
        ('ada@example.com', 'Ada', 'Lovelace', 36),
        ('grace@example.com', 'Grace', 'Hopper', 85),
        ('alan@example.com', 'Alan', 'Turing', 41),
        ('o''brien@example.com', 'Pat', 'O''Brien', 17),
        ('linus@example.com', 'Linus', 'Torvalds', 54);";

mod support;

use support::{Api, sqlite_store};

struct Harness {
    api: Api,
    emulator: RunningEmulator,
    http: reqwest::Client,
    salesforce: SalesforceClient,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    async fn new() -> Harness {
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let api = Api::new(sqlite_store(&dir).await).await;
        let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).unwrap();
        let salesforce = SalesforceClient::connect(ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        ))
        .await
        .unwrap();
        let h = Harness {
            api,
            emulator,
            http: reqwest::Client::new(),
            salesforce,
            dir,
        };
        h.sqlite("people.db", PEOPLE).await;
        h
    }

    /// Runs SQL on a SQLite file of the test's directory (created when missing).
    async fn sqlite(&self, file: &str, sql: &str) {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.dir.path().join(file))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        connection.execute(sql).await.unwrap();
        connection.close().await.unwrap();
    }

    /// Rows of a query on a SQLite file, every column as text.
    async fn sqlite_rows(&self, file: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.dir.path().join(file))
            .connect()
            .await
            .unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                    .collect()
            })
            .collect()
    }

    /// A refused document: 422 naming `field`, with `text` in the message.
    async fn refused(&self, body: Value, field: &str, text: &str) {
        let (status, error) = self.call("POST", "/api/syncs", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {error}");
        assert_eq!(error["metadata"]["field"], field, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(text),
            "{field}: {error}"
        );
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

    async fn salesforce_connection(&self) -> String {
        self.connection(
            "salesforce",
            json!({"domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
                   "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}),
        )
        .await
    }

    async fn people_model(&self) -> String {
        let path = self.dir.path().join("people.db");
        let connection = self
            .connection("sqlite", json!({"path": path.to_str().unwrap()}))
            .await;
        let model = self
            .ok(
                "POST",
                "/api/models",
                Some(json!({"name": "people", "connection_id": connection,
                            "configuration": {"table": "people"}, "identifier": "email"})),
            )
            .await;
        model["id"].as_str().unwrap().to_string()
    }

    async fn create_sync(&self, body: Value) -> String {
        let data = self.ok("POST", "/api/syncs", Some(body)).await;
        data["id"].as_str().unwrap().to_string()
    }

    /// Starts an execution and waits for it to end; returns the execution.
    async fn run(&self, sync: &str) -> Value {
        let started = self
            .ok(
                "POST",
                &format!("/api/syncs/{sync}/executions"),
                Some(json!({})),
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

    /// Every line of an execution's log.
    async fn log(&self, sync: &str, execution: &Value, log_type: &str) -> Vec<Value> {
        let id = execution["id"].as_str().unwrap();
        let data = self
            .ok(
                "GET",
                &format!("/api/syncs/{sync}/executions/{id}/{log_type}"),
                None,
            )
            .await;
        let mut lines = Vec::new();
        for url in data["urls"].as_array().unwrap() {
            let path = url
                .as_str()
                .unwrap()
                .strip_prefix(&ApiSettings::default().public_base_url)
                .unwrap()
                .to_string();
            let request = Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {}", self.key))
                .body(Body::empty())
                .unwrap();
            let response = self.app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            for line in String::from_utf8(bytes.to_vec()).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
        lines
    }

    /// SOQL queries made so far (identity lookups go through the query endpoint).
    async fn query_calls(&self) -> u64 {
        let calls: Value = self
            .http
            .get(format!("{}/__emulator/calls", self.emulator.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        calls["calls"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(endpoint, _)| endpoint.starts_with("GET") && endpoint.contains("/query"))
            .map(|(_, n)| n.as_u64().unwrap_or(0))
            .sum()
    }

    async fn contacts(&self) -> Vec<Map<String, Value>> {
        self.salesforce
            .query_all_pages(
                "SELECT Id, Email, FirstName, LastName, LeadSource FROM Contact ORDER BY Email",
                QueryScope::Live,
            )
            .await
            .unwrap()
    }

    /// Creates a Contact in Salesforce with an outdated name; returns its id.
    async fn contact(&self, email: &str, lead_source: Option<&str>) -> String {
        let mut fields = Map::new();
        fields.insert("Email".into(), json!(email));
        fields.insert("LastName".into(), json!("Outdated"));
        if let Some(source) = lead_source {
            fields.insert("LeadSource".into(), json!(source));
        }
        self.salesforce.create("Contact", &fields).await.unwrap()
    }

    async fn finish(self) {
        self.state
            .sync_runner()
            .shutdown(Duration::from_secs(10))
            .await;
    }
}

fn assert_counts(execution: &Value, expected: Value) {
    assert_eq!(execution["status"], "completed", "{execution}");
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&execution["counts"][key], value, "count {key}: {execution}");
    }
}

/// The people model into Salesforce Contacts, matched by email.
fn contact_sync(connection: &str, model: &str, mode: &str, filters: Value) -> Value {
    let source = |field: &str| json!({"model_id": model, "field": field});
    json!({
        "name": "people to contacts",
        "mode": mode,
        "target": {"connection_id": connection, "object": "Contact",
                   "configuration": {"ingestion_api": "rest"}},
        "identity": {"source": source("email"), "target": "Email", "function": "Equality"},
        "fields": [
            {"target": "FirstName", "source": source("first_name")},
            {"target": "LastName", "source": source("last_name")},
        ],
        "filters": filters,
        "schedule": {"frequency": "manual"},
    })
}

fn web_only() -> Value {
    json!([{"field_id": "LeadSource", "field_type": "Target", "function": "Equality",
            "value": "Web", "label": "Only Web contacts"}])
}

/// The last names Salesforce holds, by email.
fn last_names(contacts: &[Map<String, Value>]) -> Vec<(String, String)> {
    contacts
        .iter()
        .map(|c| {
            (
                c["Email"].as_str().unwrap().to_string(),
                c["LastName"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The target's discovery says target filters are supported, in mode `update` only.
async fn advertises_target_filters_in_update_only(h: &Harness, connection: &str, target: &str) {
    let described = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/target/fields?target={target}"),
            None,
        )
        .await;
    assert_eq!(described["properties"]["supports_target_filters"], true);
    for mode in described["modes"].as_array().unwrap() {
        assert_eq!(
            mode["supports_target_filters"],
            mode["mode"] == "update",
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_update_writes_only_records_whose_target_value_passes() {
    let h = Harness::new().await;
    let connection = h.salesforce_connection().await;
    let model = h.people_model().await;
    h.contact("ada@example.com", Some("Web")).await;
    let grace = h.contact("grace@example.com", Some("Phone Inquiry")).await;
    h.contact("alan@example.com", Some("Web")).await;
    h.contact("linus@example.com", None).await;
    // o'brien@example.com has no Contact.

    // The target advertises target filters in mode update only.
    advertises_target_filters_in_update_only(&h, &connection, "Contact").await;

    let sync = h
        .create_sync(contact_sync(&connection, &model, "update", web_only()))
        .await;
    let fetched = h.ok("GET", &format!("/api/syncs/{sync}"), None).await;
    assert_eq!(fetched["filters"][0]["field_type"], "Target");
    let queries_before = h.query_calls().await;
    let first = h.run(&sync).await;
    // Ada and Alan (Web) are written; Grace (Phone Inquiry) and Linus (no LeadSource) are
    // excluded without counting or warning; O'Brien matches nothing (a warning, as in
    // every update sync).
    assert_counts(
        &first,
        json!({"total": 3, "update": 2, "insert": 0, "error": 0, "warnings": 1}),
    );
    assert_eq!(
        h.query_calls().await - queries_before,
        1,
        "LeadSource rides on the identity lookup: one query for the five identities"
    );
    assert_eq!(
        last_names(&h.contacts().await),
        pairs(&[
            ("ada@example.com", "Lovelace"),
            ("alan@example.com", "Turing"),
            ("grace@example.com", "Outdated"),
            ("linus@example.com", "Outdated"),
        ])
    );
    let records = h.log(&sync, &first, "records").await;
    let mut skipped: Vec<&str> = records
        .iter()
        .filter(|line| {
            line["operation"] == "skip"
                && line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("target filters"))
        })
        .map(|line| line["identity"].as_str().unwrap())
        .collect();
    skipped.sort_unstable();
    assert_eq!(skipped, vec!["grace@example.com", "linus@example.com"]);
    let warnings = h.log(&sync, &first, "warnings").await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["identity"], "o'brien@example.com");

    // Nothing changed: the written rows are confirmed, the excluded ones are looked at
    // again and still excluded.
    let second = h.run(&sync).await;
    assert_counts(&second, json!({"total": 1, "update": 0, "warnings": 1}));

    // Grace becomes a Web contact in Salesforce: the next run writes her.
    let mut change = Map::new();
    change.insert("LeadSource".into(), json!("Web"));
    h.salesforce
        .update("Contact", &grace, &change)
        .await
        .unwrap();
    let third = h.run(&sync).await;
    assert_counts(&third, json!({"total": 2, "update": 1, "warnings": 1}));
    let updates = h.log(&sync, &third, "updates").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["identity"], "grace@example.com");
    assert_eq!(
        last_names(&h.contacts().await)[2],
        ("grace@example.com".to_string(), "Hopper".to_string())
    );
    let fourth = h.run(&sync).await;
    assert_counts(&fourth, json!({"total": 1, "update": 0}));

    // A model change for a record the filter now excludes is held back, and written
    // once the record passes again.
    let mut change = Map::new();
    change.insert("LeadSource".into(), json!("Other"));
    let ada = h.contacts().await[0]["Id"].as_str().unwrap().to_string();
    h.salesforce.update("Contact", &ada, &change).await.unwrap();
    h.sqlite(
        "people.db",
        "UPDATE people SET last_name = 'King' WHERE email = 'ada@example.com'",
    )
    .await;
    let held = h.run(&sync).await;
    assert_counts(&held, json!({"total": 1, "update": 0}));
    assert_eq!(h.contacts().await[0]["LastName"], "Lovelace");
    change.insert("LeadSource".into(), json!("Web"));
    h.salesforce.update("Contact", &ada, &change).await.unwrap();
    let released = h.run(&sync).await;
    assert_counts(&released, json!({"total": 2, "update": 1}));
    assert_eq!(h.contacts().await[0]["LastName"], "King");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_filter_logic_mixes_model_and_target_filters() {
    let h = Harness::new().await;
    let connection = h.salesforce_connection().await;
    let model = h.people_model().await;
    for (email, source) in [
        ("ada@example.com", Some("Web")),
        ("grace@example.com", Some("Phone Inquiry")),
        ("alan@example.com", Some("Partner Referral")),
        ("linus@example.com", None),
        ("o'brien@example.com", Some("Web")),
    ] {
        h.contact(email, source).await;
    }
    // 1: older than 50 (model), 2: a Web contact (target), 3: not a minor (model).
    let filters = json!([
        {"field_id": "age", "function": "GreaterThan", "value": 50},
        {"field_id": "LeadSource", "field_type": "Target", "function": "Equality", "value": "Web"},
        {"field_id": "age", "function": "GreaterThanEqual", "value": 18},
    ]);
    let mut body = contact_sync(&connection, &model, "update", filters);
    body["filter_logic"] = json!("(1 OR 2) AND 3");
    let sync = h.create_sync(body).await;
    let run = h.run(&sync).await;
    // Grace (85) and Linus (54) pass by age whatever their LeadSource; Ada (36) passes as a
    // Web contact; Alan (41, Partner Referral) is excluded by his record; O'Brien (17) is
    // dropped by filter 3 before anything is read, Web contact or not.
    assert_counts(&run, json!({"total": 3, "update": 3, "warnings": 0}));
    assert_eq!(
        last_names(&h.contacts().await),
        pairs(&[
            ("ada@example.com", "Lovelace"),
            ("alan@example.com", "Outdated"),
            ("grace@example.com", "Hopper"),
            ("linus@example.com", "Torvalds"),
            ("o'brien@example.com", "Outdated"),
        ])
    );
    let records = h.log(&sync, &run, "records").await;
    let skipped: Vec<&Value> = records
        .iter()
        .filter(|line| line["operation"] == "skip")
        .collect();
    assert_eq!(skipped.len(), 1, "{records:?}");
    assert_eq!(skipped[0]["identity"], "alan@example.com");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_target_filters_are_validated() {
    let h = Harness::new().await;
    let connection = h.salesforce_connection().await;
    let model = h.people_model().await;
    // A field Contact does not have.
    let unknown = json!([{"field_id": "Status__c", "field_type": "Target",
                          "function": "Equality", "value": "Open"}]);
    h.refused(
        contact_sync(&connection, &model, "update", unknown),
        "filters[0].field_id",
        "'Status__c' is not a field of Contact",
    )
    .await;
    // Modes that do not update existing records only.
    for mode in ["updateOrCreate", "create", "remove"] {
        h.refused(
            contact_sync(&connection, &model, mode, web_only()),
            "filters[0].field_type",
            &format!("accepted in mode {mode}: Model"),
        )
        .await;
    }
    let mut lead_or_contact = contact_sync(&connection, &model, "update", web_only());
    lead_or_contact["target"]["object"] = json!("multi:leadOrContact");
    lead_or_contact["target"]["configuration"] = json!({"ingestion_api": "rest"});
    h.refused(
        lead_or_contact,
        "filters[0].field_type",
        "multi:leadOrContact",
    )
    .await;
    let bad_type = json!([{"field_id": "LeadSource", "field_type": "Remote",
                           "function": "Equality", "value": "Web"}]);
    h.refused(
        contact_sync(&connection, &model, "update", bad_type),
        "filters[0].field_type",
        "accepted: Model, Target",
    )
    .await;
    let no_value = json!([{"field_id": "LeadSource", "field_type": "Target",
                           "function": "StringStartsWith"}]);
    h.refused(
        contact_sync(&connection, &model, "update", no_value),
        "filters[0].value",
        "comparison value",
    )
    .await;
    let mut out_of_range = contact_sync(&connection, &model, "update", web_only());
    out_of_range["filter_logic"] = json!("1 OR 2");
    h.refused(out_of_range, "filter_logic", "filter 2 does not exist")
        .await;
    // Discovery: Lead or Contact takes no target filters in any mode.
    let objects = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/targetobjects"),
            None,
        )
        .await;
    let modes_of = |id: &str| -> Vec<(String, bool)> {
        objects
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap()["modes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["supports_target_filters"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert!(
        modes_of("Contact")
            .iter()
            .all(|(mode, filters)| *filters == (mode == "update"))
    );
    assert!(
        modes_of("multi:leadOrContact")
            .iter()
            .all(|(_, filters)| !filters)
    );
    h.finish().await;
}

/// The people model into a table `crm` of `target` (a connection), matched by email, with
/// a target filter on the `status` column.
fn table_sync(target: &str, object: &str, model: &str, mode: &str, filters: Value) -> Value {
    let source = |field: &str| json!({"model_id": model, "field": field});
    json!({
        "name": "people to crm",
        "mode": mode,
        "target": {"connection_id": target, "object": object},
        "identity": {"source": source("email"), "target": "email", "function": "Equality"},
        "fields": [{"target": "last_name", "source": source("last_name")}],
        "filters": filters,
        "schedule": {"frequency": "manual"},
    })
}

fn open_only() -> Value {
    json!([{"field_id": "status", "field_type": "Target", "function": "Equality",
            "value": "open"}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_table_update_with_a_target_filter() {
    let h = Harness::new().await;
    let model = h.people_model().await;
    h.sqlite(
        "crm.db",
        "CREATE TABLE crm (email TEXT PRIMARY KEY, last_name TEXT, status TEXT, vip BOOLEAN);
         INSERT INTO crm VALUES
            ('ada@example.com', 'Outdated', 'open', 1),
            ('grace@example.com', 'Outdated', 'closed', 0),
            ('alan@example.com', 'Outdated', 'open', 0),
            ('linus@example.com', 'Outdated', NULL, 1);",
    )
    .await;
    let path = h.dir.path().join("crm.db");
    let target = h
        .connection("sqlite", json!({"path": path.to_str().unwrap()}))
        .await;
    advertises_target_filters_in_update_only(&h, &target, "crm").await;

    // Validation: a column the table lacks; a mode that does not only update.
    let unknown = json!([{"field_id": "stage", "field_type": "Target", "function": "IsNull"}]);
    h.refused(
        table_sync(&target, "crm", &model, "update", unknown),
        "filters[0].field_id",
        "'stage' is not a column of crm",
    )
    .await;
    for mode in ["updateOrCreate", "append"] {
        h.refused(
            table_sync(&target, "crm", &model, mode, open_only()),
            "filters[0].field_type",
            &format!("accepted in mode {mode}: Model"),
        )
        .await;
    }

    let sync = h
        .create_sync(table_sync(&target, "crm", &model, "update", open_only()))
        .await;
    let first = h.run(&sync).await;
    // Ada and Alan (open) are updated; Grace (closed) and Linus (NULL) are excluded
    // without counting; O'Brien has no row (unmatched, retried).
    assert_counts(&first, json!({"total": 3, "update": 2, "error": 0}));
    let crm = "SELECT email, last_name FROM crm ORDER BY email";
    let rows = |pairs: &[(&str, &str)]| -> Vec<Vec<Option<String>>> {
        pairs
            .iter()
            .map(|(a, b)| vec![Some(a.to_string()), Some(b.to_string())])
            .collect()
    };
    assert_eq!(
        h.sqlite_rows("crm.db", crm).await,
        rows(&[
            ("ada@example.com", "Lovelace"),
            ("alan@example.com", "Turing"),
            ("grace@example.com", "Outdated"),
            ("linus@example.com", "Outdated"),
        ])
    );
    let records = h.log(&sync, &first, "records").await;
    let mut skipped: Vec<&str> = records
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("target filters"))
        })
        .map(|line| line["identity"].as_str().unwrap())
        .collect();
    skipped.sort_unstable();
    assert_eq!(skipped, vec!["grace@example.com", "linus@example.com"]);

    // Grace's row opens: the next run writes it (and only it).
    h.sqlite(
        "crm.db",
        "UPDATE crm SET status = 'open' WHERE email = 'grace@example.com'",
    )
    .await;
    let second = h.run(&sync).await;
    assert_counts(&second, json!({"total": 2, "update": 1}));
    assert_eq!(
        h.sqlite_rows("crm.db", crm).await[2],
        vec![
            Some("grace@example.com".to_string()),
            Some("Hopper".to_string())
        ]
    );

    // Model and target filters mixed, on a boolean column: people over 80, or VIPs.
    let filters = json!([
        {"field_id": "age", "function": "GreaterThan", "value": 80},
        {"field_id": "vip", "field_type": "Target", "function": "True"},
    ]);
    let mut body = table_sync(&target, "crm", &model, "update", filters);
    body["name"] = json!("vips");
    body["fields"] = json!([{"target": "status", "override_value": "vip"}]);
    body["filter_logic"] = json!("1 OR 2");
    let vips = h.create_sync(body).await;
    let run = h.run(&vips).await;
    // Ada and Linus are VIPs, Grace is 85; Alan is neither.
    assert_counts(&run, json!({"total": 4, "update": 3}));
    assert_eq!(
        h.sqlite_rows(
            "crm.db",
            "SELECT email FROM crm WHERE status = 'vip' ORDER BY email"
        )
        .await,
        vec![
            vec![Some("ada@example.com".to_string())],
            vec![Some("grace@example.com".to_string())],
            vec![Some("linus@example.com".to_string())],
        ]
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_table_update_with_a_target_filter() {
    let Some(pg) = ferry_store::testing::postgres_database("target_filters_pg").await else {
        return;
    };
    let options = sqlx::postgres::PgConnectOptions::from_str(&pg.url).unwrap();
    let mut admin = options.clone().connect().await.unwrap();
    admin
        .execute(
            "CREATE TABLE public.crm (email TEXT PRIMARY KEY, last_name TEXT, status TEXT,
                                      renewed_at TIMESTAMPTZ);
             INSERT INTO public.crm VALUES
                ('ada@example.com', 'Outdated', 'open', '2024-06-01 09:00:00+00'),
                ('grace@example.com', 'Outdated', 'open', '2023-01-01 09:00:00+00'),
                ('alan@example.com', 'Outdated', 'closed', '2024-07-01 09:00:00+00');",
        )
        .await
        .unwrap();
    let h = Harness::new().await;
    let model = h.people_model().await;
    let target = h
        .connection(
            "postgresql",
            json!({"hostname": options.get_host(), "port": options.get_port(),
                   "database": options.get_database().unwrap(),
                   "username": options.get_username(), "ssl": false}),
        )
        .await;
    // Open rows renewed since 2024 (a timestamp compared as an instant).
    let filters = json!([
        {"field_id": "status", "field_type": "Target", "function": "Equality", "value": "open"},
        {"field_id": "renewed_at", "field_type": "Target", "function": "OnOrAfter",
         "value": "2024-01-01T00:00:00Z"},
    ]);
    let sync = h
        .create_sync(table_sync(&target, "public.crm", &model, "update", filters))
        .await;
    let first = h.run(&sync).await;
    // Ada passes both; Grace renewed in 2023; Alan is closed; Linus and O'Brien have no
    // row.
    assert_counts(&first, json!({"total": 3, "update": 1, "error": 0}));
    let crm = "SELECT email, last_name FROM public.crm ORDER BY email";
    let read = |sql: &'static str| {
        let options = options.clone();
        async move {
            let mut connection = options.connect().await.unwrap();
            let rows = sqlx::query(sql).fetch_all(&mut connection).await.unwrap();
            connection.close().await.unwrap();
            rows.iter()
                .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        read(crm).await,
        pairs(&[
            ("ada@example.com", "Lovelace"),
            ("alan@example.com", "Outdated"),
            ("grace@example.com", "Outdated"),
        ])
    );
    admin
        .execute("UPDATE public.crm SET renewed_at = now() WHERE email = 'grace@example.com'")
        .await
        .unwrap();
    let second = h.run(&sync).await;
    assert_counts(&second, json!({"total": 3, "update": 1}));
    assert_eq!(read(crm).await[2].1, "Hopper");
    // Unknown column: 422 naming the filter.
    let unknown = json!([{"field_id": "renewal", "field_type": "Target", "function": "IsNull"}]);
    h.refused(
        table_sync(&target, "public.crm", &model, "update", unknown),
        "filters[0].field_id",
        "'renewal' is not a column of public.crm",
    )
    .await;
    admin.close().await.unwrap();
    h.finish().await;
    pg.drop_database().await;
}
