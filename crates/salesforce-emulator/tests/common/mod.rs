//! Shared helpers: an in-process emulator driven through `tower::ServiceExt::oneshot`,
//! asserting on raw status, headers and JSON.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use ferry_salesforce_emulator::{AppState, EmulatorConfig, Seed, new_state, router};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value as Json;
use tower::ServiceExt;

/// A test org plus a valid access token.
pub struct Emu {
    pub state: Arc<AppState>,
    pub token: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

pub fn config(seed: Seed) -> EmulatorConfig {
    EmulatorConfig {
        seed,
        ..EmulatorConfig::default()
    }
}

impl Emu {
    pub async fn new(seed: Seed) -> Emu {
        Emu::with_config(config(seed)).await
    }

    pub async fn with_config(cfg: EmulatorConfig) -> Emu {
        let state = new_state(cfg).expect("state");
        if let Ok(mut b) = state.base_url.write() {
            *b = "http://127.0.0.1:5200".into();
        }
        let mut e = Emu {
            state,
            token: String::new(),
        };
        let r = e
            .send("POST", "/services/oauth2/token", &[("content-type", "application/x-www-form-urlencoded")], b"grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=ferry".to_vec())
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        e.token = r.json()["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        e
    }

    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from(body)).expect("request");
        let resp = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Authenticated REST call with an optional JSON body.
    pub async fn api(&self, method: &str, uri: &str, body: Option<Json>) -> Resp {
        let auth = format!("Bearer {}", self.token);
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        self.send(
            method,
            uri,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            bytes,
        )
        .await
    }

    pub async fn api_h(&self, method: &str, uri: &str, extra: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {}", self.token);
        let mut h: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
        h.extend_from_slice(extra);
        self.send(method, uri, &h, Vec::new()).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Json) -> Resp {
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap_or_default(),
        )
        .await
    }

    pub async fn query(&self, soql: &str) -> Resp {
        let q: String = serde_urlencoded::to_string([("q", soql)]).unwrap_or_default();
        self.api("GET", &format!("/services/data/v59.0/query?{q}"), None)
            .await
    }

    pub async fn create(&self, obj: &str, body: Json) -> String {
        let r = self
            .api(
                "POST",
                &format!("/services/data/v59.0/sobjects/{obj}"),
                Some(body),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["id"].as_str().unwrap_or_default().to_string()
    }
}
