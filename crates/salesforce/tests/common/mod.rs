//! Shared helpers: an in-process emulator on `127.0.0.1:0`, its admin API, and clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, RetryPolicy, SalesforceClient, auth};
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator, Seed};
use serde_json::{Value as Json, json};

pub const CLIENT_ID: &str = "ferry-emulator";
pub const CLIENT_SECRET: &str = "ferry-emulator-secret";
pub const USERNAME: &str = "admin@ferry.local";
pub const PASSWORD: &str = "ferry";

/// A running emulator plus an HTTP client for its admin API.
pub struct Emu {
    pub running: RunningEmulator,
    pub base: String,
    pub http: reqwest::Client,
}

impl Emu {
    pub async fn start() -> Emu {
        Self::start_with(EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: Seed::Empty,
            ..EmulatorConfig::default()
        })
        .await
    }

    pub async fn start_with(config: EmulatorConfig) -> Emu {
        let running = ferry_salesforce_emulator::start(config)
            .await
            .expect("emulator starts");
        let base = running.base_url();
        Emu {
            running,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// `METHOD /__emulator/{path}` with an optional JSON body; returns the JSON answer.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> Json {
        let mut request = self
            .http
            .request(method, format!("{}/__emulator/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin call");
        let status = response.status();
        let text = response.text().await.expect("admin body");
        assert!(status.is_success(), "admin {path} failed: {status} {text}");
        if text.is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).expect("admin json")
        }
    }

    /// Per-endpoint call counts.
    pub async fn calls(&self) -> Json {
        self.admin(reqwest::Method::GET, "calls", None).await
    }

    /// The count of one endpoint key (e.g. `POST /services/oauth2/token`).
    pub async fn call_count(&self, key: &str) -> u64 {
        self.calls().await["calls"][key].as_u64().unwrap_or(0)
    }

    /// Total calls to the data API (`/services/data/vXX.X/...`).
    pub async fn data_api_calls(&self) -> u64 {
        let calls = self.calls().await;
        calls["calls"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.contains("/services/data/vXX.X"))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    pub async fn set_faults(&self, faults: Json) {
        self.admin(reqwest::Method::PUT, "faults", Some(faults))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.admin(reqwest::Method::DELETE, "faults", None).await;
    }

    pub async fn insert(&self, object: &str, records: Json) -> Json {
        self.admin(
            reqwest::Method::POST,
            &format!("records/{object}"),
            Some(records),
        )
        .await
    }

    pub async fn generate(&self, object: &str, count: u64, fields: Json) -> Json {
        self.admin(
            reqwest::Method::POST,
            &format!("generate/{object}"),
            Some(json!({"count": count, "fields": fields})),
        )
        .await
    }

    pub fn app(&self) -> OAuthApp {
        OAuthApp::new(CLIENT_ID, CLIENT_SECRET)
    }

    pub fn login(&self) -> reqwest::Url {
        auth::login_base_url(&self.base).expect("login url")
    }

    pub fn config(&self, credentials: Credentials) -> ClientConfig {
        let mut config = ClientConfig::new(self.login(), self.app(), credentials);
        config.retry = RetryPolicy::for_test();
        config
    }

    pub fn password() -> Credentials {
        Credentials::Password {
            username: USERNAME.into(),
            password: PASSWORD.into(),
        }
    }

    /// A client using the password grant.
    pub async fn client(&self) -> SalesforceClient {
        SalesforceClient::connect(self.config(Self::password()))
            .await
            .expect("connect")
    }

    pub async fn client_with(&self, tweak: impl FnOnce(&mut ClientConfig)) -> SalesforceClient {
        let mut config = self.config(Self::password());
        tweak(&mut config);
        SalesforceClient::connect(config).await.expect("connect")
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

/// A budget shared with the test.
pub fn budget(cap: u64) -> Arc<ferry_salesforce::InMemoryBudget> {
    Arc::new(ferry_salesforce::InMemoryBudget::new(Some(cap)))
}
