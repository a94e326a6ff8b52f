//! `ferry demo`: everything on one laptop in one command. It starts the Salesforce emulator
//! (demo seed) and Ferry on its embedded defaults, writes a SQLite database of sample
//! people, then — through Ferry's own HTTP API, exactly as a user would — creates a SQLite
//! connection, a Salesforce connection to the emulator, a model of the people, and a
//! Lead-or-Contact sync with the published target configuration; runs it, prints what
//! happened and how to call the API, and keeps serving until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use sqlx::ConnectOptions as _;

use crate::StoreArgs;
use crate::serve::{ServeArgs, Server, ShutdownSignal};

/// Arguments of `ferry demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address of Ferry's API.
    #[arg(long, default_value = "127.0.0.1:5100")]
    listen: SocketAddr,
    /// Address of the Salesforce emulator.
    #[arg(long, default_value = "127.0.0.1:5200")]
    emulator_listen: SocketAddr,
    /// Directory for the demo's store, secret key and sample database.
    #[arg(long, default_value = "./ferry-demo")]
    data_dir: PathBuf,
}

const PEOPLE: &[(&str, &str, &str, Option<&str>)] = &[
    ("Ada", "Lovelace", "Engineer", Some("Analytical Engines")),
    ("Grace", "Hopper", "Rear Admiral", Some("US Navy")),
    ("Alan", "Turing", "Mathematician", Some("Bletchley Park")),
    ("Katherine", "Johnson", "Mathematician", Some("NASA")),
    ("Linus", "Torvalds", "Maintainer", Some("Linux Foundation")),
    (
        "Margaret",
        "Hamilton",
        "Director",
        Some("MIT Instrumentation Lab"),
    ),
    ("Dennis", "Ritchie", "Researcher", Some("Bell Labs")),
    ("Barbara", "Liskov", "Professor", Some("MIT")),
    ("Edsger", "Dijkstra", "Professor", Some("UT Austin")),
    ("Frances", "Allen", "Fellow", Some("IBM")),
    ("Ken", "Thompson", "Engineer", Some("Google")),
    ("Radia", "Perlman", "Fellow", Some("Dell")),
    ("Donald", "Knuth", "Professor", Some("Stanford")),
    ("Hedy", "Lamarr", "Inventor", None),
    ("Tim", "Berners-Lee", "Director", Some("W3C")),
    ("Sophie", "Wilson", "Designer", Some("Acorn")),
];

async fn write_people(path: &std::path::Path) -> anyhow::Result<()> {
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .connect()
            .await
            .with_context(|| format!("creating {}", path.display()))?;
    sqlx::query("DROP TABLE IF EXISTS people")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT NOT NULL, \
         email TEXT NOT NULL UNIQUE, title TEXT, company TEXT)",
    )
    .execute(&mut conn)
    .await?;
    for (index, (first, last, title, company)) in PEOPLE.iter().enumerate() {
        let email = format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase().replace('-', "")
        );
        sqlx::query("INSERT INTO people VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(index as i64 + 1)
            .bind(first)
            .bind(last)
            .bind(email)
            .bind(title)
            .bind(company)
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("{method} {path} answered {status}: {}", body["message"]);
        }
        Ok(body["data"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn id(value: &Value) -> anyhow::Result<String> {
    value["id"]
        .as_str()
        .map(str::to_string)
        .context("the API answered without an id")
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let emulator = ferry_salesforce_emulator::start(ferry_salesforce_emulator::EmulatorConfig {
        listen: args.emulator_listen,
        seed: ferry_salesforce_emulator::Seed::Demo,
        ..Default::default()
    })
    .await
    .context("starting the Salesforce emulator")?;
    let server = Server::start(&ServeArgs {
        listen: args.listen,
        public_url: None,
        store: StoreArgs {
            data_dir: args.data_dir.clone(),
            database_url: None,
        },
    })
    .await?;
    let organization = server.state.store().ensure_organization("default").await?;
    let key = server
        .state
        .store()
        .create_api_key(organization.id, None)
        .await?
        .plaintext;
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: format!("http://{}", server.address),
        key: key.clone(),
    };
    let people = std::path::absolute(args.data_dir.join("people.db"))?;
    write_people(&people).await?;

    let sqlite = api
        .post("/api/connections", json!({"name": "Sample people (SQLite)", "type": "sqlite", "configuration": {"path": people}}))
        .await?;
    let salesforce = api
        .post(
            "/api/connections",
            json!({"name": "Salesforce (emulator)", "type": "salesforce", "configuration": {
                "domain": emulator.base_url(), "connect_mode": "clientcredentials",
                "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
        )
        .await?;
    let model = api
        .post(
            "/api/models",
            json!({"name": "People", "connection_id": id(&sqlite)?, "configuration": {"table": "people"}, "identifier": "email"}),
        )
        .await?;
    let model_id = id(&model)?;
    let field = |name: &str, target: &str| json!({"source": {"model_id": model_id, "field": name}, "target": target});
    let sync = api
        .post(
            "/api/syncs",
            json!({
                "name": "People to Salesforce Leads or Contacts",
                "mode": "updateOrCreate",
                "schedule": {"frequency": "manual"},
                "target": {
                    "connection_id": id(&salesforce)?,
                    "object": "multi:leadOrContact",
                    // The published Lead-or-Contact configuration, verbatim.
                    "configuration": {"bulk_batch_size": 100, "concurrency_mode": "Parallel", "create_records_as": "", "ingestion_api": "bulk", "rest_batch_size": 200}
                },
                "identity": {"source": {"model_id": model_id, "field": "email"}, "target": "Email", "function": "Equality"},
                "fields": [field("first_name", "FirstName"), field("last_name", "LastName"), field("title", "Title"), field("company", "Company")]
            }),
        )
        .await?;
    let sync_id = id(&sync)?;
    let started = api
        .post(&format!("/api/syncs/{sync_id}/executions"), json!({}))
        .await?;
    let execution_id = id(&started)?;
    let mut execution = Value::Null;
    for _ in 0..600 {
        execution = api
            .get(&format!("/api/syncs/{sync_id}/executions/{execution_id}"))
            .await?;
        if matches!(
            execution["status"].as_str(),
            Some("completed" | "failed" | "canceled" | "interrupted")
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let base = format!("http://{}", server.address);
    println!();
    println!("Ferry demo");
    println!(
        "  Salesforce emulator: {} (client ferry-emulator / ferry-emulator-secret, user admin@ferry.local / ferry)",
        emulator.base_url()
    );
    println!("  Ferry API:           {base}");
    println!("  API key:             {key}");
    println!();
    println!(
        "Synced {} sample people from {} to Salesforce (Lead or Contact, published configuration): status {}",
        PEOPLE.len(),
        people.display(),
        execution["status"]
    );
    println!("  counts: {}", execution["counts"]);
    if let Some(errors) = execution["errors"].as_array().filter(|e| !e.is_empty()) {
        println!("  errors: {}", Value::Array(errors.clone()));
    }
    // Per-record errors (a Lead needs a Company; one sample person has none).
    let logs = api
        .get(&format!(
            "/api/syncs/{sync_id}/executions/{execution_id}/errors"
        ))
        .await?;
    for url in logs["urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let lines = api
            .http
            .get(url)
            .bearer_auth(&api.key)
            .send()
            .await?
            .text()
            .await?;
        for line in lines.lines() {
            println!("  record error: {line}");
        }
    }
    println!();
    println!("Try:");
    println!("  curl -H 'Authorization: Bearer {key}' {base}/api/syncs/{sync_id}/executions");
    println!(
        "  curl -H 'Authorization: Bearer {key}' {base}/api/syncs/{sync_id}/executions/{execution_id}/records"
    );
    println!(
        "  curl -H 'Authorization: Bearer {key}' -H 'content-type: application/json' -X POST {base}/api/syncs/{sync_id}/executions -d '{{}}'"
    );
    println!(
        "  curl '{}/services/data' (the emulated org)",
        emulator.base_url()
    );
    println!();
    println!("Serving until Ctrl-C.");
    signal.wait().await;
    server.stop().await?;
    emulator.shutdown().await;
    Ok(())
}
