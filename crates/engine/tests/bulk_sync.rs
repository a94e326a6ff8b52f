//! Bulk syncs end to end: the Salesforce emulator (in process, random port) replicated
//! into real PostgreSQL, MySQL/MariaDB and SQLite. PostgreSQL and MySQL cases print a
//! loud SKIPPED line when the server is unreachable, and fail instead when `CI` (or
//! `FERRY_REQUIRE_SERVICES`) is set. SQLite always runs.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use ferry_engine::CancellationToken;
use ferry_engine::bulk::{
    BulkObject, BulkOptions, BulkRunRequest, DeleteHandling, DestinationMode, DestinationSpec,
    FetchMode, ObjectOutcome, ObjectStatus, run_bulk_sync,
};
use ferry_salesforce::bulk2::PollOptions;
use ferry_salesforce::{
    ClientConfig, Credentials, InMemoryBudget, OAuthApp, QueryScope, SalesforceClient,
};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use ferry_store::testing::services_required;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection, Executor, Row};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Harness: the emulator and a client.

struct Emulator {
    emulator: RunningEmulator,
    client: SalesforceClient,
    http: reqwest::Client,
}

impl Emulator {
    async fn start() -> Emulator {
        Emulator::start_with_budget(None).await
    }

    async fn start_with_budget(cap: Option<u64>) -> Emulator {
        let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let login = ferry_salesforce::auth::login_base_url(&emulator.base_url()).unwrap();
        let mut config = ClientConfig::new(
            login,
            OAuthApp::new("ferry-emulator", "ferry-emulator-secret"),
            Credentials::ClientCredentials,
        );
        if let Some(cap) = cap {
            config.budget = Arc::new(InMemoryBudget::new(Some(cap)));
        }
        let client = SalesforceClient::connect(config).await.expect("client");
        Emulator {
            emulator,
            client,
            http: reqwest::Client::new(),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(
                method,
                format!("{}/__emulator/{path}", self.emulator.base_url()),
            )
            .json(&body)
            .send()
            .await
            .expect("admin call");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "admin {path}: {status} {value}");
        value
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.admin(reqwest::Method::POST, path, body).await
    }

    async fn clock_advance(&self, seconds: i64) {
        self.admin(
            reqwest::Method::PUT,
            "clock",
            json!({"advanceSeconds": seconds}),
        )
        .await;
    }

    /// `(Id, field)` pairs of every live record, sorted by Id.
    async fn pairs(&self, object: &str, field: &str) -> Vec<(String, Option<String>)> {
        let records = self
            .client
            .query_all_pages(
                &format!("SELECT Id, {field} FROM {object}"),
                QueryScope::Live,
            )
            .await
            .expect("query");
        let mut out: Vec<(String, Option<String>)> = records
            .iter()
            .map(|r| {
                (
                    r["Id"].as_str().unwrap().to_string(),
                    match &r[field] {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    },
                )
            })
            .collect();
        out.sort();
        out
    }

    async fn ids(&self, object: &str) -> Vec<String> {
        self.pairs(object, "Id")
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    async fn rename(&self, object: &str, id: &str, name: &str) {
        let mut record = serde_json::Map::new();
        record.insert("Name".into(), json!(name));
        self.client
            .update(object, id, &record)
            .await
            .expect("update");
    }
}

// ---------------------------------------------------------------------------------------
// Destinations.

enum Db {
    Postgres {
        db: ferry_store::testing::TestDatabase,
        config: Value,
    },
    Mysql {
        admin: Box<sqlx::mysql::MySqlConnectOptions>,
        name: String,
        config: Value,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        path: String,
    },
}

impl Db {
    async fn postgres(test: &str) -> Option<Db> {
        let db = ferry_store::testing::postgres_database(test).await?;
        let options = sqlx::postgres::PgConnectOptions::from_str(&db.url).expect("url");
        let config = json!({
            "hostname": options.get_host(),
            "port": options.get_port(),
            "database": options.get_database().unwrap_or("postgres"),
            "username": options.get_username(),
            "ssl": false,
        });
        Some(Db::Postgres { db, config })
    }

    async fn mysql(test: &str) -> Option<Db> {
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
        let name = format!("ferry_bulk_{}", &Uuid::new_v4().simple().to_string()[..16]);
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
        Some(Db::Mysql {
            admin: Box::new(admin),
            name,
            config,
        })
    }

    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dest.db").to_str().unwrap().to_string();
        Db::Sqlite { _dir: dir, path }
    }

    /// SQLite, plus PostgreSQL and MySQL when reachable.
    async fn all(test: &str) -> Vec<Db> {
        let mut out = vec![Db::sqlite()];
        if let Some(db) = Db::postgres(test).await {
            out.push(db);
        }
        if let Some(db) = Db::mysql(test).await {
            out.push(db);
        }
        out
    }

    fn kind(&self) -> &'static str {
        match self {
            Db::Postgres { .. } => "postgresql",
            Db::Mysql { .. } => "mysql",
            Db::Sqlite { .. } => "sqlite",
        }
    }

    fn spec(&self, deletes: DeleteHandling, mode: DestinationMode) -> DestinationSpec {
        let connection = match self {
            Db::Postgres { config, .. } | Db::Mysql { config, .. } => config.clone(),
            Db::Sqlite { path, .. } => json!({"path": path}),
        };
        DestinationSpec {
            connection_type: self.kind().into(),
            connection,
            // PostgreSQL writes into its own schema; MySQL into the connection's database.
            schema: matches!(self, Db::Postgres { .. }).then(|| "salesforce".to_string()),
            table_prefix: Some("sf_".into()),
            mode,
            deletes,
        }
    }

    /// A column as text in this dialect.
    fn text(&self, column: &str) -> String {
        match self {
            Db::Postgres { .. } => format!("CAST(\"{column}\" AS TEXT)"),
            Db::Mysql { .. } => format!("CAST(`{column}` AS CHAR)"),
            Db::Sqlite { .. } => format!("CAST(\"{column}\" AS TEXT)"),
        }
    }

    fn table(&self, table: &str) -> String {
        match self {
            Db::Postgres { .. } => format!("\"salesforce\".\"{table}\""),
            Db::Mysql { .. } => format!("`{table}`"),
            Db::Sqlite { .. } => format!("\"{table}\""),
        }
    }

    /// Runs a query whose columns are all text.
    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        fn collect<R: Row>(rows: Vec<R>) -> Vec<Vec<Option<String>>>
        where
            usize: sqlx::ColumnIndex<R>,
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get::<Option<String>, _>(i).expect("text column"))
                        .collect()
                })
                .collect()
        }
        match self {
            Db::Postgres { db, .. } => {
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                collect(sqlx::query(sql).fetch_all(&mut c).await.expect(sql))
            }
            Db::Mysql { admin, name, .. } => {
                let mut c = admin.clone().database(name).connect().await.unwrap();
                collect(sqlx::query(sql).fetch_all(&mut c).await.expect(sql))
            }
            Db::Sqlite { path, .. } => {
                let mut c = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .connect()
                    .await
                    .unwrap();
                collect(sqlx::query(sql).fetch_all(&mut c).await.expect(sql))
            }
        }
    }

    /// `(id, value)` pairs of a table, sorted by id (rows with `_ferry_deleted_at` set are
    /// included; pass a filter to exclude them).
    async fn pairs(&self, table: &str, id: &str, field: &str) -> Vec<(String, Option<String>)> {
        let sql = format!(
            "SELECT {}, {} FROM {}",
            self.text(id),
            self.text(field),
            self.table(table)
        );
        let mut out: Vec<(String, Option<String>)> = self
            .rows(&sql)
            .await
            .into_iter()
            .map(|row| (row[0].clone().unwrap(), row[1].clone()))
            .collect();
        out.sort();
        out
    }

    async fn ids(&self, table: &str, id: &str) -> Vec<String> {
        self.pairs(table, id, id)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    async fn cursor(&self, sync_id: Uuid, object: &str) -> Option<String> {
        let sql = format!(
            "SELECT cursor_at FROM {} WHERE sync_id = '{sync_id}' AND object = '{object}'",
            self.table("_ferry_sync_state")
        );
        self.rows(&sql)
            .await
            .into_iter()
            .next()
            .and_then(|r| r[0].clone())
    }

    async fn drop(self) {
        match self {
            Db::Postgres { db, .. } => db.drop_database().await,
            Db::Mysql { admin, name, .. } => {
                if let Ok(mut c) = sqlx::MySqlConnection::connect_with(&admin).await {
                    let _ = c
                        .execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
                        .await;
                }
            }
            Db::Sqlite { .. } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runs.

fn options() -> BulkOptions {
    BulkOptions {
        lag: std::time::Duration::from_secs(5 * 60),
        poll: PollOptions::for_test(),
        ..BulkOptions::default()
    }
}

fn object(name: &str, fields: Option<&[&str]>) -> BulkObject {
    BulkObject {
        object: name.into(),
        output_name: name.trim_start_matches("tooling:").into(),
        fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
        data_cutoff: None,
    }
}

struct Sync {
    id: Uuid,
    deletes: DeleteHandling,
    mode: DestinationMode,
    normalize: bool,
    multicurrency: bool,
}

impl Sync {
    fn new() -> Sync {
        Sync {
            id: Uuid::new_v4(),
            deletes: DeleteHandling::Hard,
            mode: DestinationMode::Replicate,
            normalize: false,
            multicurrency: false,
        }
    }

    fn request(
        &self,
        emulator: &Emulator,
        db: &Db,
        objects: Vec<BulkObject>,
        fetch_mode: FetchMode,
        options: BulkOptions,
    ) -> BulkRunRequest {
        BulkRunRequest {
            sync_id: self.id,
            execution_id: Uuid::new_v4(),
            client: emulator.client.clone(),
            objects,
            fetch_mode,
            resync: false,
            destination: db.spec(self.deletes, self.mode),
            normalize_names: self.normalize,
            enable_multicurrency_lookup: self.multicurrency,
            cancel: CancellationToken::new(),
            options,
        }
    }

    async fn run(
        &self,
        emulator: &Emulator,
        db: &Db,
        objects: Vec<BulkObject>,
        fetch_mode: FetchMode,
        options: BulkOptions,
    ) -> Vec<ObjectOutcome> {
        let seen = Mutex::new(Vec::new());
        let outcomes = run_bulk_sync(
            self.request(emulator, db, objects, fetch_mode, options),
            &|o: &ObjectOutcome| seen.lock().unwrap().push(o.status),
        )
        .await;
        let seen = seen.into_inner().unwrap();
        assert!(
            seen.len() >= outcomes.len(),
            "progress reported every object: {seen:?}"
        );
        outcomes
    }
}

fn completed(outcomes: &[ObjectOutcome]) -> &ObjectOutcome {
    for outcome in outcomes {
        assert_eq!(
            outcome.status,
            ObjectStatus::Completed,
            "{}: {:?}",
            outcome.object,
            outcome.error
        );
        assert!(outcome.completed_at.is_some());
    }
    &outcomes[0]
}

async fn seed_accounts(emulator: &Emulator, count: u64) {
    emulator
        .post(
            "generate/Account",
            json!({"count": count, "fields": {"Name": "Account {n}", "Industry": ["Energy", "Banking"], "AnnualRevenue": 1000}}),
        )
        .await;
}

// ---------------------------------------------------------------------------------------
// Tests.

/// Initial load (Bulk 2.0), incremental after updates (REST window), a record committed
/// "in the past", deletes, and a recycle-bin purge caught by the Id reconciliation.
#[tokio::test]
async fn replicates_incrementally_into_every_database() {
    for db in Db::all("bulk_incremental").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 40).await;
        // The data is an hour old when the sync starts (so the cursor's overlap, which
        // covers the last minutes before a read, does not include it).
        emulator.clock_advance(3600).await;
        let mut sync = Sync::new();
        sync.normalize = matches!(db, Db::Postgres { .. });
        let (table, id, name) = if sync.normalize {
            ("sf_account", "id", "name")
        } else {
            ("sf_Account", "Id", "Name")
        };
        let accounts = || vec![object("Account", None)];

        // Initial load through Bulk 2.0 (REST disabled).
        let bulk_only = BulkOptions {
            rest_max_records: 0,
            page_records: 7,
            ..options()
        };
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                bulk_only.clone(),
            )
            .await;
        assert_eq!(completed(&outcomes).records, 40, "{}", db.kind());
        assert_eq!(
            db.pairs(table, id, name).await,
            emulator.pairs("Account", "Name").await,
            "{}",
            db.kind()
        );
        let first_cursor = db.cursor(sync.id, "Account").await.expect("cursor stored");

        // An hour later: two updates and one insert; only those three are read.
        emulator.clock_advance(3600).await;
        let ids = emulator.ids("Account").await;
        emulator.rename("Account", &ids[0], "Renamed zero").await;
        emulator.rename("Account", &ids[1], "Renamed one").await;
        emulator
            .post("records/Account", json!([{"Name": "Brand new"}]))
            .await;
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(completed(&outcomes).records, 3, "{}", db.kind());
        assert_eq!(
            db.pairs(table, id, name).await,
            emulator.pairs("Account", "Name").await
        );
        let second_cursor = db.cursor(sync.id, "Account").await.expect("cursor");
        assert!(
            second_cursor > first_cursor,
            "{second_cursor} > {first_cursor}"
        );

        // A record committed "in the past": its SystemModstamp is two minutes before the
        // cursor (a transaction that committed after later ones were read).
        emulator.clock_advance(-120).await;
        emulator
            .post("records/Account", json!([{"Name": "Committed late"}]))
            .await;
        emulator.clock_advance(120).await;
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        completed(&outcomes);
        let names: Vec<Option<String>> = db
            .pairs(table, id, name)
            .await
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert!(
            names.contains(&Some("Committed late".into())),
            "{}: late record missing",
            db.kind()
        );
        assert_eq!(
            db.pairs(table, id, name).await,
            emulator.pairs("Account", "Name").await
        );

        // A delete arrives through queryAll.
        emulator.clock_advance(600).await;
        emulator
            .client
            .delete("Account", &ids[2])
            .await
            .expect("delete");
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(completed(&outcomes).deletes, 1);
        assert_eq!(db.ids(table, id).await, emulator.ids("Account").await);

        // Deleted and purged from the recycle bin before the next run: queryAll never
        // shows it, only the Id reconciliation catches it.
        emulator.clock_advance(600).await;
        emulator
            .client
            .delete("Account", &ids[3])
            .await
            .expect("delete");
        emulator.clock_advance(16 * 86_400).await;
        let no_reconcile = BulkOptions {
            id_reconcile_every_runs: 1000,
            ..options()
        };
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                no_reconcile,
            )
            .await;
        completed(&outcomes);
        assert!(
            db.ids(table, id).await.contains(&ids[3]),
            "purged row still there without reconciliation"
        );
        let reconcile = BulkOptions {
            id_reconcile_every_runs: 1,
            ..options()
        };
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                reconcile,
            )
            .await;
        assert_eq!(completed(&outcomes).deletes, 1, "{}", db.kind());
        assert_eq!(db.ids(table, id).await, emulator.ids("Account").await);
        assert_eq!(
            db.pairs(table, id, name).await,
            emulator.pairs("Account", "Name").await
        );
        db.drop().await;
    }
}

/// Soft deletes keep the row with `_ferry_deleted_at`; snapshot mode appends a copy of the
/// table per run.
#[tokio::test]
async fn soft_deletes_and_snapshots() {
    for db in Db::all("bulk_soft_deletes").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 5).await;
        let mut sync = Sync::new();
        sync.deletes = DeleteHandling::SoftColumn;
        sync.mode = DestinationMode::Snapshot;
        let accounts = || vec![object("Account", Some(&["Name"]))];
        completed(
            &sync
                .run(
                    &emulator,
                    &db,
                    accounts(),
                    FetchMode::Incremental,
                    options(),
                )
                .await,
        );
        let ids = emulator.ids("Account").await;
        emulator.clock_advance(3600).await;
        emulator.client.delete("Account", &ids[0]).await.unwrap();
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(completed(&outcomes).deletes, 1);
        let marked = db
            .rows(&format!(
                "SELECT {} FROM {} WHERE _ferry_deleted_at IS NOT NULL",
                db.text("Id"),
                db.table("sf_Account")
            ))
            .await;
        assert_eq!(marked, vec![vec![Some(ids[0].clone())]], "{}", db.kind());
        assert_eq!(db.ids("sf_Account", "Id").await.len(), 5);
        let snapshots = db
            .rows(&format!(
                "SELECT {}, {} FROM {} GROUP BY _ferry_execution_id",
                db.text("_ferry_execution_id"),
                match &db {
                    Db::Mysql { .. } => "CAST(COUNT(*) AS CHAR)".to_string(),
                    _ => "CAST(COUNT(*) AS TEXT)".to_string(),
                },
                db.table("sf_Account_snapshots")
            ))
            .await;
        assert_eq!(snapshots.len(), 2, "one snapshot per run: {snapshots:?}");
        assert!(snapshots.iter().all(|r| r[1].as_deref() == Some("5")));
        db.drop().await;
    }
}

/// A custom field created after the first load becomes a column, backfilled for records
/// that did not change since (their values were written "long ago", outside any window).
#[tokio::test]
async fn new_custom_field_is_added_and_backfilled() {
    for db in Db::all("bulk_new_field").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 6).await;
        emulator.clock_advance(3600).await;
        let sync = Sync::new();
        let accounts = || vec![object("Account", None)];
        completed(
            &sync
                .run(
                    &emulator,
                    &db,
                    accounts(),
                    FetchMode::Incremental,
                    options(),
                )
                .await,
        );
        emulator
            .post(
                "objects/Account/fields",
                json!({"name": "Region__c", "type": "text", "length": 40}),
            )
            .await;
        // Values set with the clock a day behind: outside the next window.
        emulator.clock_advance(-86_400).await;
        for (index, account) in emulator.ids("Account").await.iter().enumerate() {
            let mut record = serde_json::Map::new();
            record.insert("Region__c".into(), json!(format!("R{index}")));
            emulator
                .client
                .update("Account", account, &record)
                .await
                .unwrap();
        }
        emulator.clock_advance(86_400 + 3600).await;
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(
            completed(&outcomes).records,
            0,
            "the window itself is empty"
        );
        assert_eq!(
            db.pairs("sf_Account", "Id", "Region__c").await,
            emulator.pairs("Account", "Region__c").await,
            "{}",
            db.kind()
        );
        db.drop().await;
    }
}

/// MySQL: a narrower existing column is widened (TEXT → MEDIUMTEXT for a 32k textarea),
/// its data kept.
#[tokio::test]
async fn mysql_widens_narrow_columns() {
    let Some(db) = Db::mysql("bulk_widen").await else {
        return;
    };
    let emulator = Emulator::start().await;
    seed_accounts(&emulator, 3).await;
    if let Db::Mysql { admin, name, .. } = &db {
        let mut c = admin.clone().database(name).connect().await.unwrap();
        c.execute(
            "CREATE TABLE sf_Account (Id VARCHAR(18) PRIMARY KEY, Description TINYTEXT, Kept TEXT)",
        )
        .await
        .unwrap();
        c.execute("INSERT INTO sf_Account VALUES ('001000000000000AAA', 'old', 'keep me')")
            .await
            .unwrap();
    }
    let sync = Sync::new();
    completed(
        &sync
            .run(
                &emulator,
                &db,
                vec![object("Account", Some(&["Name", "Description"]))],
                FetchMode::Incremental,
                options(),
            )
            .await,
    );
    let types = db
        .rows(
            "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'sf_Account' ORDER BY column_name",
        )
        .await;
    assert!(
        types.contains(&vec![Some("Description".into()), Some("mediumtext".into())]),
        "{types:?}"
    );
    assert!(
        types.contains(&vec![Some("Kept".into()), Some("text".into())]),
        "{types:?}"
    );
    // The full load's Id reconciliation removed the row Salesforce does not have.
    assert_eq!(
        db.ids("sf_Account", "Id").await,
        emulator.ids("Account").await
    );
    db.drop().await;
}

/// A formula over a parent field changes without touching the child's SystemModstamp;
/// incremental runs refresh formula columns. Currency formulas are converted with the dated
/// rate of the record's CloseDate (static rate without one).
#[tokio::test]
async fn formula_refresh_and_multicurrency_conversion() {
    for db in Db::all("bulk_formulas").await {
        let emulator = Emulator::start().await;
        emulator
            .post(
                "schema",
                json!({
                    "fields": {
                        "Contact": [{"name": "AccountName__c", "type": "formula", "returnType": "text", "formula": "Account.Name"}],
                        "Opportunity": [{"name": "Doubled__c", "type": "formula", "returnType": "currency", "formula": "Amount * 2"}]
                    },
                    "records": {
                        "CurrencyType": [{"IsoCode": "EUR", "ConversionRate": 0.8, "IsActive": true, "DecimalPlaces": 2}],
                        "DatedConversionRate": [
                            {"IsoCode": "EUR", "ConversionRate": 0.5, "StartDate": "2020-01-01"},
                            {"IsoCode": "EUR", "ConversionRate": 0.25, "StartDate": "2025-01-01"}
                        ]
                    }
                }),
            )
            .await;
        let created = emulator
            .post("records/Account", json!([{"Name": "Parent One"}]))
            .await;
        let account = created["firstId"].as_str().unwrap().to_string();
        emulator
            .post(
                "records/Contact",
                json!([{"LastName": "A", "AccountId": account}, {"LastName": "B", "AccountId": account}]),
            )
            .await;
        emulator
            .post(
                "records/Opportunity",
                json!([
                    {"Name": "Old EUR", "StageName": "Prospecting", "CloseDate": "2024-06-01", "Amount": 100, "CurrencyIsoCode": "EUR", "AccountId": account},
                    {"Name": "New EUR", "StageName": "Prospecting", "CloseDate": "2026-03-01", "Amount": 10, "CurrencyIsoCode": "EUR", "AccountId": account},
                    {"Name": "USD", "StageName": "Prospecting", "CloseDate": "2026-03-01", "Amount": 50, "CurrencyIsoCode": "USD", "AccountId": account}
                ]),
            )
            .await;
        emulator.clock_advance(3600).await;
        let mut sync = Sync::new();
        sync.multicurrency = true;
        let objects = || {
            vec![
                object(
                    "Contact",
                    Some(&["LastName", "AccountId", "AccountName__c"]),
                ),
                object("Opportunity", Some(&["Name", "Amount", "Doubled__c"])),
            ]
        };
        let outcomes = sync
            .run(&emulator, &db, objects(), FetchMode::Incremental, options())
            .await;
        completed(&outcomes);
        assert_eq!(outcomes[1].records, 3);
        let converted: Vec<(String, f64)> = db
            .pairs("sf_Opportunity", "Name", "Doubled__c_converted")
            .await
            .into_iter()
            .map(|(n, v)| (n, v.unwrap().parse::<f64>().unwrap()))
            .collect();
        let expected = [("New EUR", 80.0), ("Old EUR", 400.0), ("USD", 100.0)];
        for ((name, value), (want_name, want)) in converted.iter().zip(expected) {
            assert_eq!(name, want_name);
            assert!(
                (value - want).abs() < 1e-6,
                "{name}: {value} != {want} ({})",
                db.kind()
            );
        }
        let formula = db.pairs("sf_Contact", "Id", "AccountName__c").await;
        assert!(
            formula
                .iter()
                .all(|(_, v)| v.as_deref() == Some("Parent One"))
        );

        // The parent changes: the contacts' SystemModstamp does not move, their formula does.
        emulator.clock_advance(3600).await;
        emulator.rename("Account", &account, "Parent Renamed").await;
        let outcomes = sync
            .run(&emulator, &db, objects(), FetchMode::Incremental, options())
            .await;
        assert_eq!(completed(&outcomes).records, 0, "no contact changed");
        assert_eq!(
            db.pairs("sf_Contact", "Id", "AccountName__c").await,
            emulator.pairs("Contact", "AccountName__c").await,
            "{}",
            db.kind()
        );
        assert!(
            db.pairs("sf_Contact", "Id", "AccountName__c")
                .await
                .iter()
                .all(|(_, v)| v.as_deref() == Some("Parent Renamed"))
        );
        db.drop().await;
    }
}

/// Tooling API objects replicate like any other (read whole each run).
#[tokio::test]
async fn tooling_objects_replicate() {
    for db in Db::all("bulk_tooling").await {
        let emulator = Emulator::start().await;
        let sync = Sync::new();
        let outcomes = sync
            .run(
                &emulator,
                &db,
                vec![object("tooling:ApexClass", None)],
                FetchMode::Incremental,
                options(),
            )
            .await;
        let records = completed(&outcomes).records;
        let mut expected: Vec<String> = emulator
            .client
            .query_all_pages("SELECT Id FROM ApexClass", QueryScope::Tooling)
            .await
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(records, expected.len() as u64);
        assert_eq!(
            db.ids("sf_ApexClass", "Id").await,
            expected,
            "{}",
            db.kind()
        );
        let again = sync
            .run(
                &emulator,
                &db,
                vec![object("tooling:ApexClass", None)],
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(completed(&again).records, expected.len() as u64);
        assert_eq!(db.ids("sf_ApexClass", "Id").await, expected);
        db.drop().await;
    }
}

/// A crash after the load but before the commit leaves the cursor where it was; the next
/// run re-reads the window and ends correct.
#[tokio::test]
async fn crash_before_cursor_commit_rereads() {
    for db in Db::all("bulk_crash").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 4).await;
        emulator.clock_advance(3600).await;
        let sync = Sync::new();
        let accounts = || vec![object("Account", Some(&["Name"]))];
        completed(
            &sync
                .run(
                    &emulator,
                    &db,
                    accounts(),
                    FetchMode::Incremental,
                    options(),
                )
                .await,
        );
        let cursor = db.cursor(sync.id, "Account").await;
        emulator.clock_advance(3600).await;
        let ids = emulator.ids("Account").await;
        emulator.rename("Account", &ids[0], "After crash").await;
        let crash = BulkOptions {
            fail_before_commit: true,
            ..options()
        };
        let outcomes = sync
            .run(&emulator, &db, accounts(), FetchMode::Incremental, crash)
            .await;
        assert_eq!(outcomes[0].status, ObjectStatus::Failed);
        assert_eq!(outcomes[0].errors, 1);
        assert!(outcomes[0].error.as_deref().unwrap().contains("injected"));
        assert_eq!(
            db.cursor(sync.id, "Account").await,
            cursor,
            "cursor unchanged"
        );
        assert_ne!(
            db.pairs("sf_Account", "Id", "Name").await,
            emulator.pairs("Account", "Name").await,
            "nothing of the failed run landed"
        );
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                options(),
            )
            .await;
        assert_eq!(completed(&outcomes).records, 1);
        assert_eq!(
            db.pairs("sf_Account", "Id", "Name").await,
            emulator.pairs("Account", "Name").await
        );
        db.drop().await;
    }
}

/// Cancel: a canceled execution marks every object canceled; a cancel while a Bulk job
/// is still queued aborts the job and ends the object as canceled.
#[tokio::test]
async fn cancel_stops_the_run() {
    let emulator = Emulator::start().await;
    seed_accounts(&emulator, 3).await;
    let db = Db::sqlite();
    let sync = Sync::new();
    let request = sync.request(
        &emulator,
        &db,
        vec![object("Account", None), object("Contact", None)],
        FetchMode::Incremental,
        options(),
    );
    request.cancel.cancel();
    let outcomes = run_bulk_sync(request, &|_| {}).await;
    assert!(outcomes.iter().all(|o| o.status == ObjectStatus::Canceled));

    emulator
        .admin(
            reqwest::Method::PUT,
            "bulk",
            json!({"startDelayMs": 600_000}),
        )
        .await;
    let request = sync.request(
        &emulator,
        &db,
        vec![object("Account", None), object("Contact", None)],
        FetchMode::Incremental,
        BulkOptions {
            rest_max_records: 0,
            ..options()
        },
    );
    let cancel = request.cancel.clone();
    let run = tokio::spawn(async move { run_bulk_sync(request, &|_| {}).await });
    // Wait until the Bulk query job exists (it then stays queued for ten minutes).
    loop {
        let jobs = emulator
            .admin(reqwest::Method::GET, "bulk/jobs", Value::Null)
            .await;
        if jobs.as_array().is_some_and(|jobs| !jobs.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let outcomes = run.await.unwrap();
    assert_eq!(outcomes[0].status, ObjectStatus::Canceled);
    assert_eq!(outcomes[1].status, ObjectStatus::Canceled);
    let jobs = emulator
        .admin(reqwest::Method::GET, "bulk/jobs", Value::Null)
        .await;
    assert_eq!(jobs[0]["state"], "Aborted", "{jobs}");
}

/// The daily API budget refusing a call fails the object with a clear message; an unknown
/// object fails alone.
#[tokio::test]
async fn budget_refusal_and_unknown_objects_fail_visibly() {
    let emulator = Emulator::start_with_budget(Some(2)).await;
    seed_accounts(&emulator, 3).await;
    let db = Db::sqlite();
    let sync = Sync::new();
    let outcomes = sync
        .run(
            &emulator,
            &db,
            vec![object("Account", None)],
            FetchMode::Incremental,
            options(),
        )
        .await;
    assert_eq!(outcomes[0].status, ObjectStatus::Failed);
    let message = outcomes[0].error.clone().unwrap();
    assert!(message.contains("budget"), "{message}");

    let emulator = Emulator::start().await;
    seed_accounts(&emulator, 3).await;
    let outcomes = sync
        .run(
            &emulator,
            &db,
            vec![object("NoSuch__c", None), object("Account", None)],
            FetchMode::Incremental,
            options(),
        )
        .await;
    assert_eq!(outcomes[0].status, ObjectStatus::Failed);
    assert!(outcomes[0].error.is_some());
    assert_eq!(outcomes[1].status, ObjectStatus::Completed);
    assert_eq!(outcomes[1].records, 3);
}

/// Bulk 2.0 query jobs created since the emulator's call counts were last reset.
async fn query_jobs_created(emulator: &Emulator) -> u64 {
    let calls = emulator
        .admin(reqwest::Method::GET, "calls", Value::Null)
        .await;
    calls["calls"]["POST /services/data/vXX.X/jobs/query"]
        .as_u64()
        .unwrap_or(0)
}

/// Options that read through Bulk 2.0 in Id-range chunks of about 7 records.
fn chunked() -> BulkOptions {
    BulkOptions {
        rest_max_records: 0,
        chunk_records: 7,
        page_records: 5,
        ..options()
    }
}

/// A full load read in Id-range chunks (several Bulk jobs, some running while others are
/// read) leaves the same table as one unchunked read: every column of every record.
#[tokio::test]
async fn chunked_full_load_equals_unchunked() {
    for db in Db::all("bulk_chunked").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 45).await;
        emulator.clock_advance(3600).await;
        let fields: &[&str] = &["Name", "Industry", "AnnualRevenue", "CreatedDate"];
        let mut unchunked_sync = Sync::new();
        unchunked_sync.mode = DestinationMode::Replicate;
        let unchunked_options = BulkOptions {
            rest_max_records: 0,
            chunk_records: 1_000_000,
            ..options()
        };
        emulator
            .admin(reqwest::Method::DELETE, "calls", Value::Null)
            .await;
        let outcomes = unchunked_sync
            .run(
                &emulator,
                &db,
                vec![object("Account", Some(fields))],
                FetchMode::Full,
                unchunked_options,
            )
            .await;
        assert_eq!(completed(&outcomes).records, 45, "{}", db.kind());
        assert_eq!(query_jobs_created(&emulator).await, 1);
        let mut unchunked = Vec::new();
        for field in [
            "Name",
            "Industry",
            "AnnualRevenue",
            "CreatedDate",
            "SystemModstamp",
        ] {
            unchunked.push(db.pairs("sf_Account", "Id", field).await);
        }
        // The same object into a second table (another output name), chunked.
        emulator
            .admin(reqwest::Method::DELETE, "calls", Value::Null)
            .await;
        let chunked_sync = Sync::new();
        let mut copy = object("Account", Some(fields));
        copy.output_name = "AccountChunked".into();
        let outcomes = chunked_sync
            .run(&emulator, &db, vec![copy], FetchMode::Full, chunked())
            .await;
        assert_eq!(completed(&outcomes).records, 45, "{}", db.kind());
        assert!(
            query_jobs_created(&emulator).await >= 4,
            "{}: read in several chunks",
            db.kind()
        );
        for (index, field) in [
            "Name",
            "Industry",
            "AnnualRevenue",
            "CreatedDate",
            "SystemModstamp",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                db.pairs("sf_AccountChunked", "Id", field).await,
                unchunked[index],
                "{}: {field}",
                db.kind()
            );
        }
        assert_eq!(
            db.pairs("sf_AccountChunked", "Id", "Name").await,
            emulator.pairs("Account", "Name").await
        );
        db.drop().await;
    }
}

/// A crash in the middle of a chunked full load (after two chunks) stores no cursor; the
/// next run reads the object again from the start and ends with every record, none lost
/// and none twice.
#[tokio::test]
async fn crash_mid_chunks_rereads_never_skips() {
    for db in Db::all("bulk_chunk_crash").await {
        let emulator = Emulator::start().await;
        seed_accounts(&emulator, 40).await;
        emulator.clock_advance(3600).await;
        let sync = Sync::new();
        let accounts = || vec![object("Account", Some(&["Name"]))];
        let crash = BulkOptions {
            fail_after_chunks: Some(2),
            ..chunked()
        };
        let outcomes = sync
            .run(&emulator, &db, accounts(), FetchMode::Incremental, crash)
            .await;
        assert_eq!(outcomes[0].status, ObjectStatus::Failed, "{}", db.kind());
        assert!(outcomes[0].error.as_deref().unwrap().contains("injected"));
        assert_eq!(db.cursor(sync.id, "Account").await, None, "no cursor");
        let partial = db.ids("sf_Account", "Id").await.len();
        assert!(
            partial < 40,
            "{}: {partial} rows after the crash",
            db.kind()
        );
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                chunked(),
            )
            .await;
        assert_eq!(completed(&outcomes).records, 40, "{}", db.kind());
        assert_eq!(
            db.pairs("sf_Account", "Id", "Name").await,
            emulator.pairs("Account", "Name").await,
            "{}",
            db.kind()
        );
        assert!(db.cursor(sync.id, "Account").await.is_some());
        // Incremental from there: one change, read through a (small) chunked window.
        emulator.clock_advance(3600).await;
        let ids = emulator.ids("Account").await;
        emulator.rename("Account", &ids[5], "After the crash").await;
        let outcomes = sync
            .run(
                &emulator,
                &db,
                accounts(),
                FetchMode::Incremental,
                chunked(),
            )
            .await;
        assert_eq!(completed(&outcomes).records, 1);
        assert_eq!(
            db.pairs("sf_Account", "Id", "Name").await,
            emulator.pairs("Account", "Name").await
        );
        db.drop().await;
    }
}
