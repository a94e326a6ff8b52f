//! Events and webhooks: CRUD, signed deliveries to a local receiver, retries, and dropping
//! events while a webhook is disabled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use ferry_api::{ApiSettings, AppState};
use ferry_store::secrets::Cipher;
use ferry_store::{DynStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

#[derive(Clone, Default)]
struct Receiver {
    /// (signature header, raw body) of every request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// How many requests to refuse with 500 before accepting.
    failures: Arc<Mutex<u32>>,
}

async fn receiver(failures: u32) -> (String, Receiver) {
    let state = Receiver::default();
    *state.failures.lock().unwrap() = failures;
    let handler_state = state.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = handler_state.clone();
            async move {
                let signature = headers
                    .get("polytomic-signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                state.seen.lock().unwrap().push((signature, body));
                let mut failures = state.failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, state)
}

struct Harness {
    app: Router,
    state: AppState,
    org: Uuid,
    key: String,
    other_key: String,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("meta.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store: DynStore = Arc::new(store);
    let org = store.create_organization("default").await.unwrap();
    let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
    let other = store.create_organization("other").await.unwrap();
    let other_key = store
        .create_api_key(other.id, None)
        .await
        .unwrap()
        .plaintext;
    let settings = ApiSettings {
        webhook_retry_base: Duration::from_millis(10),
        ..ApiSettings::default()
    };
    let state = AppState::new(
        store,
        ferry_connectors::registry(),
        Cipher::from_key(&[5u8; 32]),
        settings,
    );
    Harness {
        app: ferry_api::router(state.clone()),
        state,
        org: org.id,
        key,
        other_key,
        _dir: dir,
    }
}

impl Harness {
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
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.key.clone(), method, uri, body).await
    }
}

async fn wait_for(receiver: &Receiver, count: usize) -> Vec<(String, String)> {
    for _ in 0..200 {
        if receiver.seen.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_crud_and_validation() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"endpoint": "ftp://example.com/x", "secret": "s"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["metadata"]["field"], "endpoint");
    let (status, body) = h
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"endpoint": "http://127.0.0.1:9/hook", "secret": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = h
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"endpoint": "http://127.0.0.1:9/hook", "secret": "s3cret"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["secret"], "********");
    assert_eq!(body["data"]["disabled"], false);
    let (status, body) = h
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"endpoint": "http://127.0.0.1:9/two", "secret": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (_, body) = h.call("GET", "/api/webhooks", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (status, _) = h
        .call_as(
            &h.other_key.clone(),
            "GET",
            &format!("/api/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = h
        .call("POST", &format!("/api/webhooks/{id}/disable"), None)
        .await;
    assert_eq!(body["data"]["disabled"], true);
    let (_, body) = h
        .call("POST", &format!("/api/webhooks/{id}/enable"), None)
        .await;
    assert_eq!(body["data"]["disabled"], false);
    let (status, body) = h
        .call(
            "PUT",
            &format!("/api/webhooks/{id}"),
            Some(json!({"endpoint": "https://hooks.example.com/x", "secret": "********"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["endpoint"], "https://hooks.example.com/x");
    let (status, _) = h.call("DELETE", &format!("/api/webhooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", &format!("/api/webhooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, body) = h.call("GET", "/api/events_types", None).await;
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "bulk_sync.completed_with_error")
    );
    let (status, body) = h.call("GET", "/api/events?limit=500", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_signed_retried_and_dropped_while_disabled() {
    let h = harness().await;
    let (url, receiver) = receiver(2).await;
    let (_, body) = h
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"endpoint": url, "secret": "hook-secret"})),
        )
        .await;
    let id = body["data"]["id"].as_str().unwrap().to_string();

    let payload = json!({"sync_id": "s1", "execution_id": "e1", "status": "completed"});
    ferry_api::events::publish(&h.state, h.org, "sync.completed", payload.clone())
        .await
        .unwrap();
    let seen = wait_for(&receiver, 3).await;
    assert_eq!(seen.len(), 3, "two refusals, then accepted: {seen:?}");
    for (signature, body) in &seen {
        assert_eq!(
            *signature,
            ferry_api::events::sign(b"hook-secret", body.as_bytes())
        );
        let delivered: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            delivered,
            json!({"type": "sync.completed", "event": payload})
        );
    }

    // Events raised while disabled are dropped, not queued.
    h.call("POST", &format!("/api/webhooks/{id}/disable"), None)
        .await;
    ferry_api::events::publish(&h.state, h.org, "sync.failed", json!({"error": "x"}))
        .await
        .unwrap();
    h.call("POST", &format!("/api/webhooks/{id}/enable"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.seen.lock().unwrap().len(), 3);

    // Both events are listed, newest first, and filterable.
    let (_, body) = h.call("GET", "/api/events", None).await;
    let events = body["data"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["type"], "sync.failed");
    assert_eq!(events[1]["event"], payload);
    let (_, body) = h.call("GET", "/api/events?type=sync.completed", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = h
        .call_as(&h.other_key.clone(), "GET", "/api/events", None)
        .await;
    assert_eq!(body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_gives_up_after_five_retries() {
    let h = harness().await;
    let (url, receiver) = receiver(100).await;
    h.call(
        "POST",
        "/api/webhooks",
        Some(json!({"endpoint": url, "secret": "k"})),
    )
    .await;
    ferry_api::events::publish(&h.state, h.org, "sync.running", json!({}))
        .await
        .unwrap();
    let seen = wait_for(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(seen.len(), 6);
    assert_eq!(
        receiver.seen.lock().unwrap().len(),
        6,
        "1 attempt + 5 retries, then nothing"
    );
}
