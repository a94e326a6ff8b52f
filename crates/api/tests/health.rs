//! Periodic connection health checks (`healthcheck_interval`) and the fields the API
//! refuses rather than store without effect (`policies`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use ferry_api::{ApiSettings, AppState};
use ferry_store::secrets::Cipher;
use ferry_store::{DynStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

struct Harness {
    app: Router,
    state: AppState,
    store: DynStore,
    key: String,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(dir.path().join("meta.db").to_str().unwrap())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let store: DynStore = Arc::new(store);
        let org = store.create_organization("default").await.unwrap();
        let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
        let state = AppState::new(
            store.clone(),
            ferry_connectors::registry(),
            Cipher::from_key(&[7u8; 32]),
            ApiSettings::default(),
        );
        Harness {
            app: ferry_api::router(state.clone()),
            state,
            store,
            key,
            dir,
        }
    }

    async fn send(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn status_of(&self, id: &str) -> (String, String) {
        let (status, body) = self
            .send("GET", &format!("/api/connections/{id}"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["data"]["status"].as_str().unwrap().to_string(),
            body["data"]["status_error"].as_str().unwrap().to_string(),
        )
    }
}

#[tokio::test]
async fn periodic_checks_follow_the_interval_and_record_health() {
    let h = Harness::new().await;
    let path = h.dir.path().join("source.db");
    std::fs::write(&path, b"").unwrap();
    let (status, body) = h
        .send(
            "POST",
            "/api/connections",
            json!({
                "name": "local file",
                "type": "sqlite",
                "configuration": {"path": path.to_str().unwrap()},
                "healthcheck_interval": "10m",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["healthcheck_interval"], "10m0s");
    assert_eq!(body["data"]["status"], "healthy");
    let id = body["data"]["id"].as_str().unwrap().to_string();

    // Within the interval nothing is checked, even though the file is gone.
    std::fs::remove_file(&path).unwrap();
    let now = Utc::now();
    let checked = ferry_api::health::check_due_connections(&h.state, now + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(checked, 0);
    assert_eq!(h.status_of(&id).await.0, "healthy");

    // Once it has passed, the check runs and its failure becomes the connection's status.
    let later = now + Duration::minutes(11);
    let checked = ferry_api::health::check_due_connections(&h.state, later)
        .await
        .unwrap();
    assert_eq!(checked, 1);
    let (status, error) = h.status_of(&id).await;
    assert_eq!(status, "failed");
    assert!(error.contains("database file not found"), "{error}");

    // The next check is an interval after that one; it sees the file back.
    std::fs::write(&path, b"").unwrap();
    let checked = ferry_api::health::check_due_connections(&h.state, later + Duration::minutes(9))
        .await
        .unwrap();
    assert_eq!(checked, 0);
    let checked = ferry_api::health::check_due_connections(&h.state, later + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(checked, 1);
    assert_eq!(
        h.status_of(&id).await,
        ("healthy".to_string(), String::new())
    );
}

#[tokio::test]
async fn a_check_is_claimed_once_across_processes() {
    let h = Harness::new().await;
    let path = h.dir.path().join("source.db");
    std::fs::write(&path, b"").unwrap();
    let (status, body) = h
        .send(
            "POST",
            "/api/connections",
            json!({"name": "f", "type": "sqlite", "configuration": {"path": path.to_str().unwrap()}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id: Uuid = body["data"]["id"].as_str().unwrap().parse().unwrap();
    let now = Utc::now();
    assert!(h.store.claim_health_check(id, None, now).await.unwrap());
    // A second process that read the same state loses the claim.
    assert!(!h.store.claim_health_check(id, None, now).await.unwrap());
    let candidates = h.store.health_check_candidates().await.unwrap();
    let last = candidates
        .iter()
        .find(|c| c.connection.id == id)
        .unwrap()
        .last_checked_at;
    assert_eq!(
        last.map(|at| at.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    // Default interval (1 h) since that claim: not due after 59 minutes, due after 61.
    let checked = ferry_api::health::check_due_connections(&h.state, now + Duration::minutes(59))
        .await
        .unwrap();
    assert_eq!(checked, 0);
    let checked = ferry_api::health::check_due_connections(&h.state, now + Duration::minutes(61))
        .await
        .unwrap();
    assert_eq!(checked, 1);
}

#[tokio::test]
async fn bad_intervals_and_policies_are_refused_naming_the_field() {
    let h = Harness::new().await;
    let path = h.dir.path().join("source.db");
    std::fs::write(&path, b"").unwrap();
    let base =
        json!({"name": "f", "type": "sqlite", "configuration": {"path": path.to_str().unwrap()}});
    for (interval, expected) in [("daily", "e.g. 90s"), ("30s", "minimum of 1m0s")] {
        let mut body = base.clone();
        body["healthcheck_interval"] = json!(interval);
        let (status, response) = h.send("POST", "/api/connections", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{response}");
        let message = response["message"].as_str().unwrap();
        assert!(message.starts_with("healthcheck_interval:"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
    let mut body = base.clone();
    body["policies"] = json!(["5b2b6a3e-0000-4000-8000-000000000000"]);
    let (status, response) = h.send("POST", "/api/connections", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{response}");
    assert!(
        response["message"]
            .as_str()
            .unwrap()
            .starts_with("policies:"),
        "{response}"
    );
    // Nothing was created by the refused requests.
    let (_, list) = h.send("GET", "/api/connections", Value::Null).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);

    let mut body = base;
    body["policies"] = json!([]);
    body["healthcheck_interval"] = json!("");
    let (status, response) = h.send("POST", "/api/connections", body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["data"]["healthcheck_interval"], "");
    assert_eq!(response["data"]["policies"], json!([]));

    // Models refuse policy ids the same way.
    let connection_id = response["data"]["id"].clone();
    let model = |policies: Value| {
        json!({"name": "one", "connection_id": connection_id,
               "configuration": {"query": "select 1 as id"}, "identifier": "id",
               "policies": policies})
    };
    let (status, response) = h
        .send(
            "POST",
            "/api/models",
            model(json!(["5b2b6a3e-0000-4000-8000-000000000000"])),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{response}");
    assert!(
        response["message"]
            .as_str()
            .unwrap()
            .starts_with("policies:"),
        "{response}"
    );
    let (status, response) = h.send("POST", "/api/models", model(json!([]))).await;
    assert_eq!(status, StatusCode::OK, "{response}");
}

#[tokio::test]
async fn claims_and_records_on_postgresql() {
    let Some(db) = ferry_store::testing::postgres_database("health_claims").await else {
        return;
    };
    let store = ferry_store::PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let store: DynStore = Arc::new(store);
    let org = store.create_organization("default").await.unwrap();
    let connection = store
        .create_connection(
            org.id,
            ferry_store::ConnectionWrite {
                name: "db".into(),
                type_id: "postgresql".into(),
                configuration: json!({}),
                secrets: None,
                status: "healthy".into(),
                status_error: None,
                healthcheck_interval: Some("5m0s".into()),
                policies: vec![],
                actor: None,
            },
        )
        .await
        .unwrap();
    let now = Utc::now();
    assert!(
        store
            .claim_health_check(connection.id, None, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_health_check(connection.id, None, now)
            .await
            .unwrap()
    );
    let later = now + Duration::minutes(5);
    assert!(
        store
            .claim_health_check(connection.id, Some(now), later)
            .await
            .unwrap()
    );
    // A stale outcome (the connection changed meanwhile) is not recorded.
    let stale = connection.updated_at - Duration::seconds(1);
    assert!(
        !store
            .record_connection_health(connection.id, stale, "failed", Some("gone"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_connection_health(connection.id, connection.updated_at, "failed", Some("gone"))
            .await
            .unwrap()
    );
    let stored = store.connection(org.id, connection.id).await.unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.status_error.as_deref()),
        ("failed", Some("gone"))
    );
    assert_eq!(stored.updated_at, connection.updated_at);
    drop(store);
    db.drop_database().await;
}
