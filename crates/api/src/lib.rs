//! Ferry's HTTP API, compatible with Polytomic's public REST API (version 2025-09-18).
//!
//! - [`router`] builds the whole application; tests drive it with `tower::ServiceExt::oneshot`.
//! - [`routes`] — route registration that documents as it registers (`/openapi.json`).
//! - [`middleware`] — request ids and spans, `X-Polytomic-Version`, bearer auth, idempotency.
//! - [`error`] / [`extract`]: the `ApiError` shape on every non-2xx and extractors that use it.
//! - One module per resource: [`connection_types`], [`connections`], [`identity`], [`meta`].

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ferry_connectors::Registry;
use ferry_store::DynStore;
use ferry_store::secrets::Cipher;

pub mod budget;
pub mod bulk_syncs;
pub mod bulksync_source;
pub mod connection_types;
pub mod connections;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod meta;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod pagination;
pub mod proxy;
pub mod proxy_rules;
pub mod routes;
pub mod salesforce_clients;
pub mod salesforce_oauth;
pub mod syncs;

use error::ApiError;
use routes::{ApiRoutes, Operation};

/// Runtime settings of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Base URL under which this server is reachable (for links such as OAuth callbacks).
    pub public_base_url: String,
    /// First backoff between webhook delivery attempts (doubles each retry).
    pub webhook_retry_base: std::time::Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 2 * 1024 * 1024,
            public_base_url: "http://127.0.0.1:5100".to_string(),
            webhook_retry_base: std::time::Duration::from_secs(1),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    store: DynStore,
    registry: Registry,
    cipher: Cipher,
    settings: ApiSettings,
    salesforce_clients: salesforce_clients::ClientCache,
    sync_runner: ferry_engine::Runner,
    bulk_runs: bulk_syncs::LocalBulkRuns,
    background: tokio_util::task::TaskTracker,
    local_workers: jobs::LocalWorkers,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store.backend_name())
            .field("registry", &self.inner.registry)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(store: DynStore, registry: Registry, cipher: Cipher, settings: ApiSettings) -> Self {
        AppState {
            inner: Arc::new(StateInner {
                store,
                registry,
                cipher,
                settings,
                salesforce_clients: salesforce_clients::ClientCache::default(),
                sync_runner: ferry_engine::Runner::default(),
                bulk_runs: bulk_syncs::LocalBulkRuns::default(),
                background: tokio_util::task::TaskTracker::new(),
                local_workers: jobs::LocalWorkers::default(),
                metrics: metrics::Metrics::default(),
            }),
        }
    }

    /// The metadata store.
    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    /// Connection types.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Secret encryption.
    pub fn cipher(&self) -> &Cipher {
        &self.inner.cipher
    }

    /// Settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.inner.settings
    }

    /// Salesforce clients of saved connections.
    pub fn salesforce_clients(&self) -> &salesforce_clients::ClientCache {
        &self.inner.salesforce_clients
    }

    /// Background work (webhook deliveries); shutdown closes and waits for it.
    pub fn background(&self) -> &tokio_util::task::TaskTracker {
        &self.inner.background
    }

    /// Model-sync executions running in this process.
    pub fn sync_runner(&self) -> &ferry_engine::Runner {
        &self.inner.sync_runner
    }

    /// Bulk-sync executions this process's workers are running.
    pub fn bulk_runs(&self) -> &bulk_syncs::LocalBulkRuns {
        &self.inner.bulk_runs
    }

    /// The in-process job workers (started on demand unless configured).
    pub fn local_workers(&self) -> &jobs::LocalWorkers {
        &self.inner.local_workers
    }

    /// This process's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }
}

/// Every authenticated API route.
pub fn api_routes() -> ApiRoutes {
    ApiRoutes::new()
        .merge(connection_types::routes())
        .merge(connections::routes())
        .merge(proxy::routes())
        .merge(events::routes())
        .merge(bulksync_source::routes())
        .merge(identity::routes())
        .merge(models::routes())
        .merge(syncs::routes())
        .merge(bulk_syncs::routes())
}

/// Every documented operation (API and public routes).
pub fn operations() -> Vec<Operation> {
    let mut operations = api_routes().operations().to_vec();
    operations.extend(meta::routes().operations().iter().cloned());
    operations.extend(metrics::routes().operations().iter().cloned());
    operations
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().into_router();
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::idempotency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    let (public, _) = meta::routes().merge(metrics::routes()).into_router();
    Router::new()
        .merge(public)
        .merge(api)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings().max_body_bytes))
        .layer(axum::middleware::from_fn(middleware::api_version))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}

async fn unknown_route(uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::new(
        ferry_core::ErrorCode::NotFound,
        format!("no route matches {}", uri.path()),
    )
    .with_metadata("reason", "unknown_route")
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> impl IntoResponse {
    ApiError::bad_request(format!("method {method} is not allowed on {}", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}
