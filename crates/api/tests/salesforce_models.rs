//! Salesforce as a model source, end to end: models on a Salesforce connection of the
//! in-process emulator (`table`, SOQL `query` with relationship paths and aggregates,
//! `include_deleted`), preview, sample, source discovery and Salesforce's own errors for
//! bad SOQL. The metadata store is SQLite.

use axum::http::StatusCode;
use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, SalesforceClient};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

mod support;

use support::{Api, sqlite_store};

struct Harness {
    api: Api,
    emulator: RunningEmulator,
    http: reqwest::Client,
    salesforce: SalesforceClient,
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
        Harness {
            api,
            emulator,
            http: reqwest::Client::new(),
            salesforce,
            _dir: dir,
        }
    }

    /// Inserts records through the emulator's admin API; returns the first id.
    async fn seed(&self, object: &str, records: Value) -> String {
        let response = self
            .http
            .post(format!(
                "{}/__emulator/records/{object}",
                self.emulator.base_url()
            ))
            .json(&records)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["failed"], 0, "{body}");
        body["firstId"].as_str().unwrap().to_string()
    }

    async fn connection(&self) -> String {
        let data = self
            .ok(
                "POST",
                "/api/connections",
                Some(
                    json!({"name": "salesforce", "type": "salesforce", "configuration": {
                    "domain": self.emulator.base_url(), "connect_mode": "clientcredentials",
                    "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
                ),
            )
            .await;
        data["id"].as_str().unwrap().to_string()
    }
}

fn names(fields: &Value) -> Vec<String> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

fn assert_field_error(status: StatusCode, body: &Value, field: &str, contains: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["metadata"]["field"], field, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(contains),
        "expected {contains:?} in {message:?}"
    );
}

#[tokio::test]
async fn salesforce_models() {
    let h = Harness::new().await;
    let acme = h
        .seed(
            "Account",
            json!([{"Name": "Acme", "NumberOfEmployees": 12, "AnnualRevenue": 1000.5}]),
        )
        .await;
    h.seed("Account", json!([{"Name": "Globex"}])).await;
    h.seed(
        "Contact",
        json!([
            {"LastName": "Lovelace", "FirstName": "Ada", "AccountId": acme, "Email": "ada@example.com"},
            {"LastName": "Hopper", "FirstName": "Grace", "AccountId": acme},
            {"LastName": "Turing", "FirstName": "Alan"},
        ]),
    )
    .await;
    let gone = h.seed("Contact", json!([{"LastName": "Gone"}])).await;
    h.salesforce.delete("Contact", &gone).await.unwrap();
    let connection = h.connection().await;

    // Discovery: objects under `table`, a query and include_deleted.
    let meta = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source"),
            None,
        )
        .await;
    let tables = meta["items"]["table"]["items"].as_array().unwrap();
    assert!(tables.contains(&json!("Account")), "{meta}");
    assert!(tables.contains(&json!("Contact")), "{meta}");
    assert_eq!(meta["requires_one_of"], json!(["query", "table"]));
    assert!(meta["items"]["include_deleted"].is_object(), "{meta}");
    let fields = h
        .ok(
            "GET",
            &format!("/api/connections/{connection}/modelsync/source/fields?params[table]=Account"),
            None,
        )
        .await;
    assert_eq!(field(&fields, "AnnualRevenue")["type"], "number");

    // A table model: every field, typed; Id is the identifier by default.
    let model = h
        .ok(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Accounts",
                        "configuration": {"table": "Account"}})),
        )
        .await;
    assert_eq!(model["type"], "salesforce");
    assert_eq!(model["identifier"], "Id");
    assert_eq!(
        model["configuration"],
        json!({"table": "Account", "include_deleted": false})
    );
    let fields = &model["fields"];
    assert_eq!(field(fields, "Id")["type"], "string");
    assert_eq!(field(fields, "Id")["remote_type"], "id");
    assert_eq!(field(fields, "Id")["unique"], true);
    assert_eq!(field(fields, "NumberOfEmployees")["type"], "number");
    assert_eq!(field(fields, "CreatedDate")["type"], "datetime");
    assert_eq!(field(fields, "IsDeleted")["type"], "boolean");
    assert!(
        !names(fields).contains(&"BillingAddress".to_string()),
        "compound fields are left out: {fields}"
    );
    let model_id = model["id"].as_str().unwrap().to_string();
    let sample = h
        .ok("GET", &format!("/api/models/{model_id}/sample"), None)
        .await;
    let records = sample["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{sample}");
    let acme_row = records
        .iter()
        .map(|r| &r[&model_id])
        .find(|r| r["Name"] == "Acme")
        .unwrap();
    assert_eq!(acme_row["Id"], json!(acme));
    assert_eq!(acme_row["NumberOfEmployees"], json!(12));
    assert_eq!(acme_row["AnnualRevenue"], json!(1000.5));
    assert_eq!(acme_row["IsDeleted"], json!(false));
    let created = acme_row["CreatedDate"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );

    // A query model: the select list, relationship paths flattened to dotted names.
    let preview = h
        .ok(
            "POST",
            "/api/model-preview",
            Some(json!({"connection_id": connection, "name": "Contacts",
                        "configuration": {"query": "select id, lastname, account.name from contact where FirstName != null order by LastName"}})),
        )
        .await;
    assert_eq!(
        names(&preview["fields"]),
        vec!["Id", "LastName", "Account.Name"]
    );
    assert_eq!(preview["identifier"], "Id");
    assert!(preview["id"].is_null());
    let model = h
        .ok(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Contacts",
                        "configuration": {"query": "select id, lastname, account.name from contact where FirstName != null order by LastName"}})),
        )
        .await;
    let contacts_id = model["id"].as_str().unwrap().to_string();
    let sample = h
        .ok("GET", &format!("/api/models/{contacts_id}/sample"), None)
        .await;
    let rows: Vec<&Value> = sample["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[&contacts_id])
        .collect();
    assert_eq!(rows.len(), 3, "{sample}");
    assert_eq!(rows[0]["LastName"], "Hopper");
    assert_eq!(rows[0]["Account.Name"], "Acme");
    assert_eq!(rows[2]["LastName"], "Turing");
    assert_eq!(rows[2]["Account.Name"], Value::Null);

    // Aggregates are named by alias or exprN.
    let preview = h
        .ok(
            "POST",
            "/api/model-preview",
            Some(json!({"connection_id": connection, "name": "Per account",
                        "configuration": {"query": "SELECT AccountId, COUNT(Id) contacts, MAX(LastName) FROM Contact GROUP BY AccountId"}})),
        )
        .await;
    assert_eq!(
        names(&preview["fields"]),
        vec!["AccountId", "contacts", "expr0"]
    );
    assert_eq!(field(&preview["fields"], "contacts")["type"], "number");
    assert_eq!(field(&preview["fields"], "expr0")["type"], "string");
    assert!(preview["identifier"].is_null(), "{preview}");

    // include_deleted: queryAll semantics, with IsDeleted.
    let query = "SELECT Id, LastName, IsDeleted FROM Contact WHERE LastName = 'Gone'";
    let live = h
        .ok(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Live",
                        "configuration": {"query": query}})),
        )
        .await;
    let live_id = live["id"].as_str().unwrap();
    let sample = h
        .ok("GET", &format!("/api/models/{live_id}/sample"), None)
        .await;
    assert_eq!(sample["records"], json!([]), "{sample}");
    let all = h
        .ok(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "All",
                        "configuration": {"query": query, "include_deleted": true, "table": "Contact"}})),
        )
        .await;
    assert_eq!(all["configuration"]["include_deleted"], true);
    let all_id = all["id"].as_str().unwrap();
    let sample = h
        .ok("GET", &format!("/api/models/{all_id}/sample"), None)
        .await;
    assert_eq!(
        sample["records"],
        json!([{all_id: {"Id": gone, "LastName": "Gone", "IsDeleted": true}}])
    );

    // Bad SOQL: 422 with Salesforce's code and message, naming the field.
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Bad",
                        "configuration": {"query": "SELECT Nope__c FROM Contact"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.query", "INVALID_FIELD");
    assert!(
        body["message"].as_str().unwrap().contains("Nope__c"),
        "{body}"
    );
    let (status, body) = h
        .call(
            "POST",
            "/api/model-preview",
            Some(json!({"connection_id": connection, "name": "Bad",
                        "configuration": {"query": "SELECT Id FROM Contact WHERE"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.query", "MALFORMED_QUERY");
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Bad",
                        "configuration": {"table": "Nope__c"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.table", "Nope__c");
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Bad",
                        "configuration": {"view": "Contact"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.view", "accepted keys");
    let (status, body) = h
        .call(
            "POST",
            "/api/models",
            Some(json!({"connection_id": connection, "name": "Bad",
                        "configuration": {"table": "Account", "include_deleted": "yes"}})),
        )
        .await;
    assert_field_error(status, &body, "configuration.include_deleted", "boolean");
}
