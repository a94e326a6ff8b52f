//! API integration tests, in process (`oneshot`), against SQLite and PostgreSQL.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::{ApiSettings, AppState};
use ferry_store::secrets::Cipher;
use ferry_store::{ConnectionDependent, DynStore, PostgresStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Harness {
    app: Router,
    store: DynStore,
    cipher: Cipher,
    key: String,
    other_key: String,
    sqlite_path: String,
    _dir: tempfile::TempDir,
    _store_dir: Option<tempfile::TempDir>,
    pg: Option<ferry_store::testing::TestDatabase>,
}

impl Harness {
    async fn new(store: DynStore, pg: Option<ferry_store::testing::TestDatabase>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Cipher::from_key(&[9u8; 32]);
        let org = store.create_organization("default").await.unwrap();
        let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
        let other = store.create_organization("other").await.unwrap();
        let other_key = store
            .create_api_key(other.id, None)
            .await
            .unwrap()
            .plaintext;
        let settings = ApiSettings {
            max_body_bytes: 64 * 1024,
            ..ApiSettings::default()
        };
        let state = AppState::new(
            store.clone(),
            ferry_connectors::registry(),
            cipher.clone(),
            settings,
        );
        let sqlite_path = dir.path().join("source.db");
        std::fs::write(&sqlite_path, b"").unwrap();
        Harness {
            app: ferry_api::router(state),
            store,
            cipher,
            key,
            other_key,
            sqlite_path: sqlite_path.to_str().unwrap().to_string(),
            _dir: dir,
            _store_dir: None,
            pg,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    fn request(&self, method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
        self.request_as(&self.key, method, uri, body)
    }

    fn request_as(&self, key: &str, method: &str, uri: &str, body: Option<Value>) -> Request<Body> {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"));
        match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.send(self.request(method, uri, body)).await;
        (status, body)
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_database().await;
        }
    }
}

fn assert_api_error(body: &Value, status: u16) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["key"].is_string(), "{body}");
    assert!(body["metadata"].is_object(), "{body}");
}

fn salesforce_example() -> Value {
    json!({
        "client_id": "a45gadsfdsaf47byor2ugfbhsgllpf12gf56gfds",
        "client_secret": "ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq",
        "connect_mode": "api",
        "daily_api_calls": 0,
        "domain": "http://instance.my.salesforce.com",
        "enable_multicurrency_lookup": false,
        "enable_tooling": false,
        "enforce_api_limits": false,
        "oauth_refresh_token": "dasfdasz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq"
    })
}

async fn conventions(h: Harness) {
    // 401 without or with a wrong key, in the ApiError shape.
    let (status, _, body) = h
        .send(
            Request::get("/api/connections")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_api_error(&body, 401);
    let (status, _, _) = h
        .send(h.request_as("ferry_nope", "GET", "/api/connections", None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Unknown route and wrong method.
    let (status, body) = h.call("GET", "/api/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_api_error(&body, 404);
    let (status, body) = h.call("PATCH", "/api/connections", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_api_error(&body, 405);

    // Malformed JSON says where; wrong content type; too large.
    let request = Request::post("/api/connections")
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "application/json")
        .body(Body::from("{\"name\": \"x\",\n \"type\": }"))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_api_error(&body, 400);
    assert!(
        body["message"].as_str().unwrap().contains("line 2 column"),
        "{body}"
    );
    let request = Request::post("/api/connections")
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "text/plain")
        .body(Body::from("name=x"))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_api_error(&body, 415);
    let big = json!({"name": "x".repeat(70 * 1024), "type": "sqlite", "configuration": {}});
    let (status, body) = h.call("POST", "/api/connections", Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_api_error(&body, 413);
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"type": "sqlite", "configuration": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("name"), "{body}");

    // Versions.
    let (status, headers, _) = h.send(h.request("GET", "/api/me", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-polytomic-version"], "2025-09-18");
    assert!(headers.contains_key("x-request-id"));
    let mut request = h.request("GET", "/api/me", None);
    request
        .headers_mut()
        .insert("x-polytomic-version", "2024-02-08".parse().unwrap());
    let (_, headers, _) = h.send(request).await;
    assert_eq!(headers["x-polytomic-version"], "2024-02-08");
    let mut request = h.request("GET", "/api/me", None);
    request
        .headers_mut()
        .insert("x-polytomic-version", "1999-01-01".parse().unwrap());
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("2025-09-18"));

    // Identity.
    let (status, body) = h.call("GET", "/api/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["organization_name"], "default");
    assert_eq!(body["data"]["is_organization"], true);
    h.finish().await;
}

async fn connection_types(h: Harness) {
    let (status, body) = h.call("GET", "/api/connection_types", None).await;
    assert_eq!(status, StatusCode::OK);
    let types = body["data"].as_array().unwrap();
    let ids: Vec<&str> = types.iter().map(|t| t["id"].as_str().unwrap()).collect();
    for expected in ["salesforce", "postgresql", "mysql", "sqlite"] {
        assert!(ids.contains(&expected), "{ids:?}");
    }
    for t in types {
        for capability in ["source", "destination", "enrichment", "orchestration"] {
            assert!(t["capabilities"][capability].is_boolean(), "{t}");
        }
        assert!(t["configurationForm"]["jsonschema"].is_object());
    }
    let (status, schema) = h
        .call("GET", "/api/connection_types/salesforce", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(schema.get("data").is_none(), "bare schema, no envelope");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["client_secret"]["sensitive"], true);
    assert_eq!(schema["properties"]["username"]["readOnly"], true);
    let (status, body) = h.call("GET", "/api/connection_types/oracle", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_api_error(&body, 404);
    h.finish().await;
}

async fn connections_lifecycle(h: Harness) {
    // A validated SQLite connection.
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "local", "type": "sqlite", "configuration": {"path": h.sqlite_path}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sqlite_id = body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["status"], "healthy");
    assert_eq!(body["data"]["type"]["id"], "sqlite");

    // The published Salesforce example, verbatim, without validation.
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "Salesforce connection", "type": "salesforce", "configuration": salesforce_example(), "validate": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sf = body["data"].clone();
    let sf_id = sf["id"].as_str().unwrap().to_string();
    assert_eq!(sf["status"], "unauthorized", "{sf}");
    assert_eq!(sf["configuration"]["client_secret"], "********");
    assert_eq!(sf["configuration"]["oauth_refresh_token"], "********");
    assert_eq!(
        sf["configuration"]["client_id"],
        "a45gadsfdsaf47byor2ugfbhsgllpf12gf56gfds"
    );
    assert!(
        !body
            .to_string()
            .contains("ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq")
    );

    // Secrets are encrypted at rest: neither the public JSON nor the blob holds them.
    let stored = h
        .store
        .connection(
            sf["organization_id"].as_str().unwrap().parse().unwrap(),
            sf_id.parse().unwrap(),
        )
        .await
        .unwrap();
    assert!(!stored.configuration.to_string().contains("ay8d5hdep"));
    let sealed = stored.secrets.clone().unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("ay8d5hdep"));
    let secrets: Value = serde_json::from_slice(&h.cipher.decrypt(&sealed).unwrap()).unwrap();
    assert_eq!(
        secrets["client_secret"],
        "ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq"
    );

    // Read-only values sent by a caller are ignored.
    let mut config = salesforce_example();
    config["username"] = json!("mallory@example.com");
    let (status, body) = h
        .call("POST", "/api/connections", Some(json!({"name": "sf2", "type": "salesforce", "configuration": config, "validate": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"]["configuration"]
            .get("username")
            .is_none_or(Value::is_null),
        "{body}"
    );

    // PUT with the mask echoed keeps the secret; a new value replaces it.
    let (status, got) = h
        .call("GET", &format!("/api/connections/{sf_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["data"]["api_calls_last_24_hours"], 0);
    let mut echoed = got["data"]["configuration"].clone();
    echoed["enable_tooling"] = json!(true);
    let (status, body) = h
        .call(
            "PUT",
            &format!("/api/connections/{sf_id}"),
            Some(json!({"name": "renamed", "configuration": echoed, "validate": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "renamed");
    assert_eq!(body["data"]["configuration"]["enable_tooling"], true);
    let stored = h
        .store
        .connection(stored.organization_id, stored.id)
        .await
        .unwrap();
    let secrets: Value =
        serde_json::from_slice(&h.cipher.decrypt(stored.secrets.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        secrets["client_secret"],
        "ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq"
    );
    assert_eq!(
        secrets["oauth_refresh_token"],
        "dasfdasz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq"
    );

    // Tenancy: the other organization sees 404, exactly like an unknown id.
    let (status, _, body) = h
        .send(h.request_as(
            &h.other_key,
            "GET",
            &format!("/api/connections/{sf_id}"),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_api_error(&body, 404);
    let (status, _, _) = h
        .send(h.request_as(
            &h.other_key,
            "DELETE",
            &format!("/api/connections/{sf_id}"),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = h
        .send(h.request_as(&h.other_key, "GET", "/api/connections", None))
        .await;
    assert_eq!(body["data"], json!([]));
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_api_error(&body, 404);
    let (status, body) = h.call("GET", "/api/connections/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // List.
    let (_, body) = h.call("GET", "/api/connections", None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

    // Delete refuses while in use, unless forced.
    h.store
        .add_connection_dependent(
            sqlite_id.parse().unwrap(),
            &ConnectionDependent {
                kind: "model".into(),
                id: "m-1".into(),
                name: "People".into(),
            },
        )
        .await
        .unwrap();
    let (status, body) = h
        .call("DELETE", &format!("/api/connections/{sqlite_id}"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connection in use"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("People"),
        "{body}"
    );
    let (status, _) = h
        .call(
            "DELETE",
            &format!("/api/connections/{sqlite_id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call("GET", &format!("/api/connections/{sqlite_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.finish().await;
}

async fn validation_errors(h: Harness) {
    let cases = [
        (
            json!({"name": "x", "type": "oracle", "configuration": {}}),
            "type",
        ),
        (
            json!({"name": "", "type": "sqlite", "configuration": {"path": "/tmp/x.db"}}),
            "name",
        ),
        (
            json!({"name": "x", "type": "sqlite", "configuration": []}),
            "configuration",
        ),
        (
            json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"domain": "a.my.salesforce.com", "connect_mode": "telepathy"}}),
            "connect_mode",
        ),
        (
            json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"connect_mode": "api"}}),
            "domain",
        ),
        (
            json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"domain": "a.my.salesforce.com", "daily_api_calls": "many"}}),
            "daily_api_calls",
        ),
        (
            json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"domain": "a.my.salesforce.com", "colour": "blue"}}),
            "colour",
        ),
        (
            json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"domain": "a.my.salesforce.com", "connect_mode": "clientcredentials"}}),
            "client_id",
        ),
    ];
    for (body, field) in cases {
        let (status, response) = h.call("POST", "/api/connections", Some(body.clone())).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{body} -> {status} {response}"
        );
        assert_api_error(&response, status.as_u16());
        assert!(
            response["message"].as_str().unwrap().contains(field),
            "message for {body} should name {field}: {response}"
        );
    }
    // The accepted connect modes are listed.
    let (_, response) = h
        .call("POST", "/api/connections", Some(json!({"name": "x", "type": "salesforce", "validate": false, "configuration": {"domain": "a.my.salesforce.com", "connect_mode": "telepathy"}})))
        .await;
    let message = response["message"].as_str().unwrap();
    for mode in ["browser", "clientcredentials", "code", "api"] {
        assert!(message.contains(mode), "{message}");
    }
    // A failing check saves nothing.
    let (status, response) = h
        .call("POST", "/api/connections", Some(json!({"name": "x", "type": "sqlite", "configuration": {"path": "/nonexistent/dir/x.db"}})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{response}");
    let (_, listed) = h.call("GET", "/api/connections", None).await;
    assert_eq!(listed["data"], json!([]));
    h.finish().await;
}

async fn idempotency(h: Harness) {
    let body = json!({"name": "idem", "type": "sqlite", "configuration": {"path": h.sqlite_path}});
    let with_key = |key: &str, body: &Value, api_key: &str| {
        Request::post("/api/connections")
            .header("authorization", format!("Bearer {api_key}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, headers, first) = h.send(with_key("create-0001", &body, &h.key)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("idempotent-replayed"));
    let (status, headers, second) = h.send(with_key("create-0001", &body, &h.key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(first, second);
    let (_, listed) = h.call("GET", "/api/connections", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // Scoped per organization: the same key in another org executes.
    let (status, _, other) = h.send(with_key("create-0001", &body, &h.other_key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(other["data"]["id"], first["data"]["id"]);

    // Errors are replayed too.
    let bad = json!({"name": "x", "type": "oracle", "configuration": {}});
    let (status, _, error) = h.send(with_key("create-0002", &bad, &h.key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, headers, replayed) = h.send(with_key("create-0002", &bad, &h.key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(error, replayed);

    // The same key with a different body is refused; malformed keys are rejected.
    let (status, _, mismatch) = h.send(with_key("create-0001", &bad, &h.key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        mismatch["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    let (status, _, malformed) = h.send(with_key("bad key!", &body, &h.key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        malformed["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    h.finish().await;
}

async fn openapi_covers_served_routes(h: Harness) {
    let (status, _, doc) = h
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        ("/api/connection_types", "get"),
        ("/api/connection_types/{id}", "get"),
        ("/api/connections", "get"),
        ("/api/connections", "post"),
        ("/api/connections/test", "post"),
        ("/api/connections/{id}", "get"),
        ("/api/connections/{id}", "put"),
        ("/api/connections/{id}", "delete"),
        ("/api/me", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths
                .get(expected.0)
                .and_then(|p| p.get(expected.1))
                .is_some(),
            "{expected:?} missing"
        );
    }
    // Every documented operation is really served (not the unknown-route or 405 fallback).
    let id = uuid::Uuid::new_v4().to_string();
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let uri = path.replace("{id}", &id);
            let body = matches!(method.as_str(), "post" | "put" | "patch").then(|| json!({}));
            let (status, response) = h.call(&method.to_uppercase(), &uri, body).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(
                response["metadata"]["reason"], "unknown_route",
                "{method} {path}"
            );
        }
    }
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

both_backends!(
    conventions,
    connection_types,
    connections_lifecycle,
    validation_errors,
    idempotency,
    openapi_covers_served_routes,
);

/// A second request with the same key while the first is still running gets 409; once the
/// first finishes, its outcome is replayed. The first request is held up by a PostgreSQL
/// "server" that accepts connections and never answers.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_in_flight_conflicts() {
    let h = sqlite_harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let body = json!({"name": "slow", "type": "postgresql", "configuration": {
        "hostname": "127.0.0.1", "port": port, "username": "u", "database": "d", "ssl": false}});
    let request = || {
        Request::post("/api/connections")
            .header("authorization", format!("Bearer {}", h.key))
            .header("content-type", "application/json")
            .header("idempotency-key", "slow-create-1")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first = {
        let app = h.app.clone();
        let request = request();
        tokio::spawn(async move { app.oneshot(request).await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (status, headers, conflict) = h.send(request()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_api_error(&conflict, 409);
    assert!(headers.contains_key("retry-after"));
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (status, headers, _) = h.send(request()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["idempotent-replayed"], "true");
    silent.abort();
    h.finish().await;
}
