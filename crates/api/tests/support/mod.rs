//! The API in process for integration tests: a metadata store with organization `default`
//! and an API key, the connector registry trusting the emulator's OAuth app, and requests
//! sent through the router (`oneshot`).
//!
//! Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::{ApiSettings, AppState};
use ferry_connectors::RegistrySettings;
use ferry_connectors::salesforce::SalesforceSettings;
use ferry_salesforce::OAuthApp;
use ferry_store::secrets::Cipher;
use ferry_store::{DynStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// A migrated SQLite metadata store in `dir`.
pub async fn sqlite_store(dir: &tempfile::TempDir) -> DynStore {
    let store = SqliteStore::connect(dir.path().join("meta.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// The router, its state and a bearer key for it.
pub struct Api {
    pub app: Router,
    pub state: AppState,
    pub key: String,
}

impl Api {
    /// The API on `store` (migrated), with a new organization and API key.
    pub async fn new(store: DynStore) -> Api {
        let org = store.create_organization("default").await.unwrap();
        let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
        let registry = ferry_connectors::registry_with(RegistrySettings {
            salesforce: SalesforceSettings {
                oauth_app: Some(OAuthApp::new("ferry-emulator", "ferry-emulator-secret")),
                root_certificates_pem: Vec::new(),
            },
        });
        let state = AppState::new(
            store,
            registry,
            Cipher::from_key(&[7u8; 32]),
            ApiSettings::default(),
        );
        Api {
            app: ferry_api::router(state.clone()),
            state,
            key,
        }
    }

    /// Sends a request with the key; the status and the JSON body (`null` when not JSON).
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, bytes) = self.call_raw(method, uri, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// [`Api::call`] with the body as sent (downloads).
    pub async fn call_raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, bytes::Bytes) {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.key));
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
        (status, bytes)
    }

    /// [`Api::call`] answered 200: its `data`.
    pub async fn ok(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method, uri, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {body}");
        body["data"].clone()
    }
}
