//! Salesforce connections end to end against the emulator (started in process on a random
//! port): every connect mode, wrong credentials, and the daily API budget.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_api::{ApiSettings, AppState};
use ferry_connectors::RegistrySettings;
use ferry_connectors::salesforce::SalesforceSettings;
use ferry_salesforce::OAuthApp;
use ferry_salesforce_emulator::{EmulatorConfig, RunningEmulator};
use ferry_store::secrets::Cipher;
use ferry_store::{DynStore, SqliteStore};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PUBLIC_URL: &str = "http://ferry.test";

struct Harness {
    app: Router,
    state: AppState,
    key: String,
    emulator: RunningEmulator,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let emulator = ferry_salesforce_emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("meta.db").to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let store: DynStore = Arc::new(store);
    let org = store.create_organization("default").await.unwrap();
    let key = store.create_api_key(org.id, None).await.unwrap().plaintext;
    let registry = ferry_connectors::registry_with(RegistrySettings {
        salesforce: SalesforceSettings {
            oauth_app: Some(OAuthApp::new("ferry-emulator", "ferry-emulator-secret")),
            root_certificates_pem: Vec::new(),
        },
    });
    let settings = ApiSettings {
        public_base_url: PUBLIC_URL.to_string(),
        ..ApiSettings::default()
    };
    let state = AppState::new(store, registry, Cipher::from_key(&[3u8; 32]), settings);
    Harness {
        app: ferry_api::router(state.clone()),
        state,
        key,
        emulator,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Harness {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
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
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends a browser-style request to Ferry's public routes; returns status, Location, body.
    async fn browse(&self, request: Request<Body>) -> (StatusCode, Option<String>, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            location,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// Opens Salesforce's (the emulator's) authorize page and clicks Allow; returns the
    /// redirect the browser is sent to.
    async fn approve_at_salesforce(&self, authorize_url: &str) -> String {
        let page = self.http.get(authorize_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let mut form: Vec<(String, String)> = hidden_inputs(&html);
        form.push(("approve".into(), "allow".into()));
        let action = format!("{}/services/oauth2/authorize", self.emulator.base_url());
        let response = self.http.post(action).form(&form).send().await.unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        response.headers()["location"].to_str().unwrap().to_string()
    }

    /// Follows Salesforce's redirect back to Ferry's callback.
    async fn follow_callback(&self, location: &str) -> (StatusCode, Option<String>, String) {
        let path = location
            .strip_prefix(PUBLIC_URL)
            .unwrap_or_else(|| panic!("callback goes to Ferry: {location}"));
        self.browse(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn emulator_calls(&self) -> Value {
        self.http
            .get(format!("{}/__emulator/calls", self.emulator.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A refresh token obtained from the emulator by the web-server flow.
    async fn refresh_token(&self) -> String {
        let authorize = format!(
            "{}/services/oauth2/authorize?response_type=code&client_id=ferry-emulator&redirect_uri={}&state=s1",
            self.emulator.base_url(),
            "http%3A%2F%2Flocalhost%2Fcb"
        );
        let location = self.approve_at_salesforce(&authorize).await;
        let url = reqwest::Url::parse(&location).unwrap();
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .to_string();
        let token: Value = self
            .http
            .post(format!(
                "{}/services/oauth2/token",
                self.emulator.base_url()
            ))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", "ferry-emulator"),
                ("client_secret", "ferry-emulator-secret"),
                ("redirect_uri", "http://localhost/cb"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_string()
    }
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut inputs = Vec::new();
    for part in html.split("<input").skip(1) {
        let tag = part.split('>').next().unwrap_or("");
        let attr = |name: &str| {
            let needle = format!("{name}=\"");
            tag.find(&needle).map(|start| {
                let rest = &tag[start + needle.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&#39;", "'")
            })
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            inputs.push((name, value));
        }
    }
    inputs
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_mode_end_to_end() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "sf", "type": "salesforce", "configuration": {"domain": h.emulator.base_url()}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["status"], "unauthorized");
    assert!(
        data["status_error"].as_str().unwrap().contains("auth_url"),
        "{data}"
    );
    let id = data["id"].as_str().unwrap().to_string();
    let auth_url = data["auth_url"].as_str().expect("auth_url").to_string();
    assert!(auth_url.starts_with(&format!(
        "{}/services/oauth2/authorize?",
        h.emulator.base_url()
    )));
    assert!(
        auth_url.contains("redirect_uri=http%3A%2F%2Fferry.test%2Foauth%2Fsalesforce%2Fcallback")
    );

    let location = h.approve_at_salesforce(&auth_url).await;
    let (status, _, page) = h.follow_callback(&location).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("admin@ferry.local"), "{page}");

    let (_, body) = h.call("GET", &format!("/api/connections/{id}"), None).await;
    let data = &body["data"];
    assert_eq!(data["status"], "healthy", "{data}");
    assert_eq!(data["configuration"]["username"], "admin@ferry.local");
    assert_eq!(data["configuration"]["oauth_refresh_token"], "********");

    // The state is single use.
    let (status, _, _) = h.follow_callback(&location).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The stored refresh token works: a test with the saved connection succeeds, and a PUT
    // that leaves the token out keeps it.
    let (status, body) = h
        .call(
            "POST",
            "/api/connections/test",
            Some(json!({"type": "salesforce", "configuration": {}, "connection_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "healthy");
    let (status, body) = h
        .call(
            "PUT",
            &format!("/api/connections/{id}"),
            Some(json!({"name": "renamed", "configuration": {"domain": h.emulator.base_url()}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "healthy", "{body}");
    assert!(body["data"].get("auth_url").is_none());

    // reconnect: a fresh authorization is started.
    let (_, body) = h
        .call("PUT", &format!("/api/connections/{id}"), Some(json!({"name": "renamed", "configuration": {"domain": h.emulator.base_url()}, "reconnect": true})))
        .await;
    assert_eq!(body["data"]["status"], "unauthorized", "{body}");
    assert!(body["data"]["auth_url"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_mode_honours_redirect_url_and_denial() {
    let h = harness().await;
    let (_, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "sf", "type": "salesforce", "redirect_url": "https://app.example.com/done", "configuration": {"domain": h.emulator.base_url()}})),
        )
        .await;
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let auth_url = body["data"]["auth_url"].as_str().unwrap().to_string();
    let location = h.approve_at_salesforce(&auth_url).await;
    let (status, redirect, _) = h.follow_callback(&location).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let redirect = redirect.unwrap();
    assert!(
        redirect.starts_with("https://app.example.com/done?"),
        "{redirect}"
    );
    assert!(redirect.contains(&format!("connection_id={id}")));
    assert!(redirect.contains("status=healthy"));

    // A denied authorization leaves the connection unauthorized with the reason.
    let (_, body) = h
        .call("POST", "/api/connections", Some(json!({"name": "sf2", "type": "salesforce", "configuration": {"domain": h.emulator.base_url()}})))
        .await;
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let auth_url = reqwest::Url::parse(body["data"]["auth_url"].as_str().unwrap()).unwrap();
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (status, _, page) = h
        .browse(
            Request::get(format!("/oauth/salesforce/callback?error=access_denied&error_description=end-user+denied+authorization&state={state}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("access_denied"), "{page}");
    let (_, body) = h.call("GET", &format!("/api/connections/{id}"), None).await;
    assert_eq!(body["data"]["status"], "unauthorized");
    assert!(
        body["data"]["status_error"]
            .as_str()
            .unwrap()
            .contains("access_denied")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn code_mode_end_to_end() {
    let h = harness().await;
    let (_, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "sf", "type": "salesforce", "configuration": {"domain": h.emulator.base_url(), "connect_mode": "code"}})),
        )
        .await;
    let data = &body["data"];
    let id = data["id"].as_str().unwrap().to_string();
    let code = data["auth_code"].as_str().expect("auth_code").to_string();
    assert_eq!(data["auth_url"], "http://ferry.test/oauth/salesforce/code");

    let (status, _, page) = h
        .browse(
            Request::get("/oauth/salesforce/code")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("auth_code"));
    let (status, _, _) = h
        .browse(
            Request::post("/oauth/salesforce/code")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("auth_code=NOPE-NOPE"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, location, _) = h
        .browse(
            Request::post("/oauth/salesforce/code")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("auth_code={}", code.to_lowercase())))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let authorize = location.unwrap();
    assert!(authorize.starts_with(&h.emulator.base_url()));
    let back = h.approve_at_salesforce(&authorize).await;
    let (status, _, page) = h.follow_callback(&back).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, body) = h.call("GET", &format!("/api/connections/{id}"), None).await;
    assert_eq!(body["data"]["status"], "healthy");
    assert_eq!(
        body["data"]["configuration"]["username"],
        "admin@ferry.local"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_and_api_modes() {
    let h = harness().await;
    let base = h.emulator.base_url();
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(
                json!({"name": "cc", "type": "salesforce", "configuration": {
                "domain": base, "connect_mode": "clientcredentials",
                "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "healthy");
    assert_eq!(
        body["data"]["configuration"]["username"],
        "admin@ferry.local"
    );

    // Wrong secret: 422 with a message a user can act on, nothing saved.
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(
                json!({"name": "bad", "type": "salesforce", "configuration": {
                "domain": base, "connect_mode": "clientcredentials",
                "client_id": "ferry-emulator", "client_secret": "wrong"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("client_secret is wrong"),
        "{body}"
    );
    assert!(!body.to_string().contains("\"wrong\""));

    // api mode with a refresh token obtained from Salesforce.
    let refresh = h.refresh_token().await;
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(
                json!({"name": "api", "type": "salesforce", "configuration": {
                "domain": base, "connect_mode": "api", "client_id": "ferry-emulator",
                "client_secret": "ferry-emulator-secret", "oauth_refresh_token": refresh}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "healthy");
    assert_eq!(
        body["data"]["configuration"]["username"],
        "admin@ferry.local"
    );
    assert_eq!(
        body["data"]["configuration"]["oauth_refresh_token"],
        "********"
    );

    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "api-bad", "type": "salesforce", "configuration": {
                "domain": base, "connect_mode": "api", "client_id": "ferry-emulator",
                "client_secret": "ferry-emulator-secret", "oauth_refresh_token": "5Aep-not-a-token"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("refresh token"),
        "{body}"
    );

    // An unreachable domain.
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(
                json!({"name": "gone", "type": "salesforce", "configuration": {
                "domain": "http://127.0.0.1:1", "connect_mode": "clientcredentials",
                "client_id": "x", "client_secret": "y"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_budget_is_enforced_before_calls_reach_salesforce() {
    let h = harness().await;
    let base = h.emulator.base_url();
    let configuration = json!({
        "domain": base, "connect_mode": "clientcredentials",
        "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret",
        "enforce_api_limits": true, "daily_api_calls": 3
    });
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "capped", "type": "salesforce", "configuration": configuration})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let test = json!({"type": "salesforce", "configuration": {}, "connection_id": id});

    // Each test makes at least one metered call; keep testing until the cap refuses.
    let mut granted = 0;
    let refusal = loop {
        let (status, body) = h
            .call("POST", "/api/connections/test", Some(test.clone()))
            .await;
        if status != StatusCode::OK {
            break body;
        }
        granted += 1;
        assert!(granted <= 3, "the cap of 3 calls must stop the tests");
    };
    assert!(
        refusal["message"].as_str().unwrap().contains("budget"),
        "{refusal}"
    );
    let (_, body) = h.call("GET", &format!("/api/connections/{id}"), None).await;
    let used = body["data"]["api_calls_last_24_hours"].as_i64().unwrap();
    assert!((1..=3).contains(&used), "used {used}");

    // Once refused, nothing reaches the emulator.
    let before = h.emulator_calls().await;
    let (status, _) = h
        .call("POST", "/api/connections/test", Some(test.clone()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let after = h.emulator_calls().await;
    let total = |calls: &Value| {
        calls["calls"]
            .as_object()
            .map(|m| m.values().map(|v| v.as_i64().unwrap_or(0)).sum::<i64>())
            .unwrap_or(0)
    };
    assert_eq!(total(&before), total(&after), "{before} vs {after}");
    assert_eq!(before["apiUsed"], after["apiUsed"]);
}

async fn healthy_client_credentials_connection(h: &Harness, extra: Value) -> String {
    let mut configuration = json!({
        "domain": h.emulator.base_url(), "connect_mode": "clientcredentials",
        "client_id": "ferry-emulator", "client_secret": "ferry-emulator-secret"
    });
    for (key, value) in extra.as_object().unwrap() {
        configuration[key] = value.clone();
    }
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "sf", "type": "salesforce", "configuration": configuration})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_passes_calls_through_with_stored_credentials() {
    let h = harness().await;
    let id = healthy_client_credentials_connection(&h, json!({})).await;
    let proxy = format!("/api/connections/{id}/proxy");

    let (status, body) = h
        .call(
            "POST",
            &proxy,
            Some(json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["status"], 200);
    assert_eq!(data["truncated"], false);
    assert!(
        data["contentType"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    let limits: Value = serde_json::from_str(data["body"].as_str().unwrap()).unwrap();
    assert!(limits["DailyApiRequests"]["Max"].is_number(), "{limits}");
    assert!(data["latencyMs"].is_number() && data["proxyCallId"].is_string());

    // Structured query parameters, a JSON body, and Salesforce's own errors passed back.
    let (_, body) = h
        .call("POST", &proxy, Some(json!({"request": {"method": "GET", "path": "/services/data/v59.0/query", "query": {"q": "SELECT Id, Name FROM Organization"}}})))
        .await;
    assert_eq!(body["data"]["status"], 200, "{body}");
    assert!(
        body["data"]["body"]
            .as_str()
            .unwrap()
            .contains("\"totalSize\":1")
    );
    let (_, body) = h
        .call("POST", &proxy, Some(json!({"request": {"method": "POST", "path": "/services/data/v59.0/sobjects/Account", "body": {"Name": "Proxied"}}})))
        .await;
    assert_eq!(body["data"]["status"], 201, "{body}");
    let (_, body) = h
        .call("POST", &proxy, Some(json!({"request": {"method": "GET", "path": "/services/data/v59.0/sobjects/Nope/describe"}})))
        .await;
    assert_eq!(body["data"]["status"], 404, "{body}");
    assert!(body["data"]["body"].as_str().unwrap().contains("NOT_FOUND"));

    // Refused before anything is sent.
    let before = h.emulator_calls().await;
    for (request, field) in [
        (
            json!({"method": "GET", "path": "https://evil.example.com/services/data"}),
            "request.path",
        ),
        (
            json!({"method": "GET", "path": "//evil.example.com/services/data"}),
            "request.path",
        ),
        (
            json!({"method": "GET", "path": "/services/data/../../secret"}),
            "request.path",
        ),
        (json!({"method": "GET", "path": "/admin"}), "request.path"),
        (
            json!({"method": "GET", "path": "/services/data", "headers": {"Authorization": "Bearer stolen"}}),
            "request.headers",
        ),
        (
            json!({"method": "TRACE", "path": "/services/data"}),
            "request.method",
        ),
        (
            json!({"method": "POST", "path": "/services/data", "body": "x".repeat(300 * 1024)}),
            "request.body",
        ),
    ] {
        let (status, body) = h
            .call("POST", &proxy, Some(json!({"request": request})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request} -> {body}");
        assert_eq!(body["metadata"]["field"], field, "{body}");
    }
    assert_eq!(
        h.emulator_calls().await["calls"],
        before["calls"],
        "refused calls reached Salesforce"
    );

    // Info: the contract and the statistics.
    let (status, body) = h
        .call("GET", &format!("/api/connections/{id}/proxy/info"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let info = &body["data"];
    assert_eq!(info["backendType"], "salesforce");
    assert_eq!(info["requestContract"]["maxResponseBodyBytes"], 1024 * 1024);
    assert_eq!(info["stats"]["proxyCallsLast24h"], 4);
    assert_eq!(info["stats"]["proxy2xxLast24h"], 3);
    assert_eq!(info["stats"]["proxy4xxLast24h"], 1);
    assert!(info["stats"]["callsLast24h"].as_i64().unwrap() >= 4);
    assert_eq!(info["inheritedBase"]["lockedHeaders"][0]["redacted"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_truncates_large_responses_and_respects_the_budget() {
    let h = harness().await;
    let generate = h
        .http
        .post(format!("{}/__emulator/generate/Account", h.emulator.base_url()))
        .json(&json!({"count": 2000, "fields": {"Name": "Account {n}", "Description": "d".repeat(800)}}))
        .send()
        .await
        .unwrap();
    assert!(generate.status().is_success());
    let id = healthy_client_credentials_connection(
        &h,
        json!({"enforce_api_limits": true, "daily_api_calls": 3}),
    )
    .await;
    let proxy = format!("/api/connections/{id}/proxy");
    let (status, body) = h
        .call("POST", &proxy, Some(json!({"request": {"method": "GET", "path": "/services/data/v59.0/query", "query": {"q": "SELECT Id, Description FROM Account"}}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["truncated"], true);
    assert_eq!(body["data"]["body"].as_str().unwrap().len(), 1024 * 1024);

    // The cap of 3: the create was not counted (no connection yet), this call and two more
    // pass, then 429 without reaching Salesforce.
    let limits = json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}});
    for _ in 0..2 {
        let (status, body) = h.call("POST", &proxy, Some(limits.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let before = h.emulator_calls().await;
    let (status, body) = h.call("POST", &proxy, Some(limits.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("budget"),
        "{body}"
    );
    assert_eq!(h.emulator_calls().await["apiUsed"], before["apiUsed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_rate_limits_each_connection() {
    let h = harness().await;
    let id = healthy_client_credentials_connection(&h, json!({})).await;
    let proxy = format!("/api/connections/{id}/proxy");
    let call = json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}});
    for _ in 0..ferry_api::proxy_rules::RATE_LIMIT_PER_MINUTE {
        let (status, body) = h.call("POST", &proxy, Some(call.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = h.call("POST", &proxy, Some(call)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("rate limit"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_sync_source_lists_objects_and_tooling_only_when_enabled() {
    let h = harness().await;
    let id = healthy_client_credentials_connection(&h, json!({})).await;
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{id}/bulksync/source?include_fields=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let schemas = body["data"]["schemas"].as_array().unwrap();
    let contact = schemas
        .iter()
        .find(|s| s["id"] == "Contact")
        .expect("Contact listed");
    let fields = contact["fields"].as_array().unwrap();
    let id_field = fields.iter().find(|f| f["id"] == "Id").unwrap();
    assert_eq!(id_field["is_primary_key"], true);
    let account_id = fields.iter().find(|f| f["id"] == "AccountId").unwrap();
    assert_eq!(
        account_id["association"]["reference_to"],
        json!(["Account"])
    );
    assert_eq!(account_id["type"], "string");
    assert!(schemas.iter().all(|s| s["tooling"] == false));
    let calls = h.emulator_calls().await;
    assert!(
        !calls["calls"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("tooling")),
        "no Tooling API call without enable_tooling: {calls}"
    );

    // With enable_tooling, Tooling objects appear, marked.
    let tooling = healthy_client_credentials_connection(&h, json!({"enable_tooling": true})).await;
    let (status, body) = h
        .call(
            "GET",
            &format!("/api/connections/{tooling}/bulksync/source"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let schemas = body["data"]["schemas"].as_array().unwrap();
    let apex = schemas
        .iter()
        .find(|s| s["id"] == "tooling:ApexClass")
        .unwrap_or_else(|| panic!("ApexClass listed: {body}"));
    assert_eq!(apex["tooling"], true);
    assert!(apex["name"].as_str().unwrap().contains("Tooling API"));
    assert!(
        schemas
            .iter()
            .any(|s| s["id"] == "Account" && s["tooling"] == false)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_refreshed_transparently() {
    let h = harness().await;
    let refresh = h.refresh_token().await;
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "api", "type": "salesforce", "configuration": {
                "domain": h.emulator.base_url(), "connect_mode": "api", "client_id": "ferry-emulator",
                "client_secret": "ferry-emulator-secret", "oauth_refresh_token": refresh}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let proxy = format!("/api/connections/{id}/proxy");
    let call = json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}});
    let (_, body) = h.call("POST", &proxy, Some(call.clone())).await;
    assert_eq!(body["data"]["status"], 200, "{body}");
    let expired = h
        .http
        .post(format!(
            "{}/__emulator/faults/expireSessions",
            h.emulator.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(expired.status().is_success());
    let tokens_before = h.emulator_calls().await["calls"]["POST /services/oauth2/token"]
        .as_i64()
        .unwrap_or(0);
    let (_, body) = h.call("POST", &proxy, Some(call)).await;
    assert_eq!(
        body["data"]["status"], 200,
        "the cached client refreshed its token: {body}"
    );
    let tokens_after = h.emulator_calls().await["calls"]["POST /services/oauth2/token"]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(tokens_after, tokens_before + 1, "exactly one refresh");
}

#[tokio::test]
async fn rotated_refresh_tokens_are_stored_for_the_next_process() {
    let h = harness().await;
    let refresh = h.refresh_token().await;
    let (status, body) = h
        .call(
            "POST",
            "/api/connections",
            Some(json!({"name": "api", "type": "salesforce", "configuration": {
                "domain": h.emulator.base_url(), "connect_mode": "api", "client_id": "ferry-emulator",
                "client_secret": "ferry-emulator-secret", "oauth_refresh_token": refresh}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id: uuid::Uuid = body["data"]["id"].as_str().unwrap().parse().unwrap();
    let org: uuid::Uuid = body["data"]["organization_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let before = h.state.store().connection(org, id).await.unwrap();

    // The connected app now rotates refresh tokens: the next refresh retires `refresh`.
    let rotation = h
        .http
        .put(format!("{}/__emulator/faults", h.emulator.base_url()))
        .json(&json!({"rotateRefreshTokens": true}))
        .send()
        .await
        .unwrap();
    assert!(rotation.status().is_success());
    let proxy = format!("/api/connections/{id}/proxy");
    let call = json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}});
    let (_, body) = h.call("POST", &proxy, Some(call.clone())).await;
    assert_eq!(body["data"]["status"], 200, "{body}");

    // The rotated token reaches the store (written in the background), the configuration's
    // version does not move, and the old token is gone.
    let stored_token = |connection: &ferry_store::Connection| {
        let plaintext = h
            .state
            .cipher()
            .decrypt(connection.secrets.as_ref().unwrap())
            .unwrap();
        let secrets: Value = serde_json::from_slice(&plaintext).unwrap();
        secrets["oauth_refresh_token"].as_str().unwrap().to_string()
    };
    let mut after = before.clone();
    for _ in 0..100 {
        after = h.state.store().connection(org, id).await.unwrap();
        if stored_token(&after) != refresh {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(
        stored_token(&after),
        refresh,
        "the rotated token was stored"
    );
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(stored_token(&after).len(), refresh.len());

    // A fresh process (no cached client) authenticates with the stored token; the retired
    // one would be refused.
    let restarted = AppState::new(
        h.state.store().clone(),
        h.state.registry().clone(),
        h.state.cipher().clone(),
        h.state.settings().clone(),
    );
    let request = Request::builder()
        .method("POST")
        .uri(&proxy)
        .header("authorization", format!("Bearer {}", h.key))
        .header("content-type", "application/json")
        .body(Body::from(call.to_string()))
        .unwrap();
    let response = ferry_api::router(restarted).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], 200, "{body}");
    let retired = h
        .http
        .post(format!("{}/services/oauth2/token", h.emulator.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", "ferry-emulator"),
            ("client_secret", "ferry-emulator-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        retired.status(),
        400,
        "the emulator retired the first token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_rate_limit_and_statistics_are_shared_by_processes() {
    let h = harness().await;
    let id = healthy_client_credentials_connection(&h, json!({})).await;
    // A second Ferry process: its own state and caches, the same store.
    let other = ferry_api::router(AppState::new(
        h.state.store().clone(),
        h.state.registry().clone(),
        h.state.cipher().clone(),
        h.state.settings().clone(),
    ));
    let send_to = |app: Router, method: &str, uri: String, body: Option<Value>| {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", h.key))
            .header("content-type", "application/json");
        let request = builder
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let proxy = format!("/api/connections/{id}/proxy");
    let call = json!({"request": {"method": "GET", "path": "/services/data/v59.0/limits"}});
    let limit = ferry_api::proxy_rules::RATE_LIMIT_PER_MINUTE;
    for n in 0..limit {
        let app = if n % 2 == 0 {
            h.app.clone()
        } else {
            other.clone()
        };
        let (status, body) = send_to(app, "POST", proxy.clone(), Some(call.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for app in [h.app.clone(), other.clone()] {
        let (status, body) = send_to(app, "POST", proxy.clone(), Some(call.clone())).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
    let (status, info) = send_to(other, "GET", format!("{proxy}/info"), None).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["data"]["stats"]["proxyCallsLast24h"], limit);
    assert_eq!(info["data"]["stats"]["proxy2xxLast24h"], limit);
}
