//! `ferry-salesforce-emulator`: a local server that speaks Salesforce's OAuth, REST, SOQL,
//! describe, sObject Collections and limits APIs closely enough for real clients
//! (simple-salesforce, jsforce, the sf CLI, Ferry's own client) to work against it.
//!
//! It shares no code with Ferry's Salesforce client (only `ferry-soql` for parsing), so the
//! two implementations of the wire protocol check each other.
//!
//! # Layout
//! - [`ids`]: 15/18-char record ids and key prefixes.
//! - [`value`]: cell values and Salesforce's wire formats.
//! - [`row`]: the compact per-record encoding (only non-null cells, one allocation).
//! - [`schema`]: object/field metadata (standard objects generated from recorded describes,
//!   custom objects and fields).
//! - [`formula`]: formula fields, evaluated at read time.
//! - [`store`]: the org's tables and the one write path (validation, coercion, error codes,
//!   external-id references, recycle bin, allOrNone undo log, Lead conversion).
//! - [`query`]: the SOQL executor over `ferry-soql`'s AST.
//! - [`describe`]: describeGlobal / describe JSON.
//! - [`auth`]: OAuth 2.0 and identity.
//! - [`http`]: routing, REST resources, limits and faults.
//! - [`admin`]: the `/__emulator/` control API.
//! - [`bulk`], [`bulk2`], [`bulk1`], [`locks`]: Bulk API 2.0 and 1.0 (jobs processed on
//!   background tasks) and the deterministic lock-contention model.
//! - [`tooling`]: the Tooling API (demo metadata rows, EntityDefinition/FieldDefinition views).
//! - [`bulk_bench`]: the Bulk throughput benchmark (`cargo bench --bench bulk`).
//! - [`seed`], [`persist`], [`tls`]: demo data, `--data-dir` snapshots, self-signed TLS.
#![recursion_limit = "256"]

pub mod admin;
pub mod auth;
pub mod bulk;
pub mod bulk1;
pub mod bulk2;
pub mod bulk_bench;
pub mod describe;
pub mod formula;
pub mod http;
pub mod ids;
pub mod locks;
pub mod persist;
pub mod query;
pub mod row;
pub mod schema;
pub mod seed;
pub mod state;
pub mod store;
pub mod tls;
pub mod tooling;
pub mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use crate::http::router as build_router;
pub use crate::state::AppState;
use crate::store::Org;

/// Which data a fresh org starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// Only the Organization, the API user and USD.
    Empty,
    /// The demo data set (see [`seed::demo`]).
    Demo,
    /// A JSON seed file (see [`seed::SeedFile`]).
    File(PathBuf),
}

/// Emulator settings (the `ferry emulator` flags).
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a throwaway CA written to `DIR/ca.pem`.
    pub tls_self_signed: Option<PathBuf>,
    /// Initial data.
    pub seed: Seed,
    /// Persist the org here across restarts.
    pub data_dir: Option<PathBuf>,
    /// Connected-app client id.
    pub client_id: String,
    /// Connected-app client secret.
    pub client_secret: String,
    /// API user name.
    pub username: String,
    /// API user password.
    pub password: String,
    /// `DailyApiRequests` maximum.
    pub daily_api_requests: u64,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5200)),
            tls_self_signed: None,
            seed: Seed::Empty,
            data_dir: None,
            client_id: "ferry-emulator".into(),
            client_secret: "ferry-emulator-secret".into(),
            username: "admin@ferry.local".into(),
            password: "ferry".into(),
            daily_api_requests: 100_000,
            access_token_ttl: Duration::from_secs(2 * 3600),
        }
    }
}

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding or file I/O.
    #[error("I/O error on {0}: {1}")]
    Io(String, std::io::Error),
    /// Certificate generation or TLS setup.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Seed data could not be loaded.
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    /// The data-dir snapshot could not be loaded.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
}

/// Credentials a client needs, as printed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Login / instance URL.
    pub instance_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Builds an org from a seed.
pub fn build_org(config: &EmulatorConfig, seed: &Seed, now: i64) -> Result<Org, EmulatorError> {
    let mut org = seed::base_org(&config.username, now);
    let ctx = store::WriteCtx { now };
    match seed {
        Seed::Empty => {}
        Seed::Demo => seed::demo(&mut org, now)?,
        Seed::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| seed::SeedError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let file: seed::SeedFile =
                serde_json::from_str(&text).map_err(seed::SeedError::Json)?;
            seed::apply_file(&mut org, &file, ctx)?;
        }
    }
    Ok(org)
}

/// Builds the shared state for a config (seeded, or reloaded from `data_dir`).
pub fn new_state(config: EmulatorConfig) -> Result<Arc<AppState>, EmulatorError> {
    let now = state::Clock::real_ms() / 1000 * 1000;
    let mut restored = persist::Restored::default();
    let org = match &config.data_dir {
        Some(dir) => match persist::load(dir, seed::base_org(&config.username, now))? {
            Some((org, r)) => {
                restored = r;
                org
            }
            None => build_org(&config, &config.seed, now)?,
        },
        None => build_org(&config, &config.seed, now)?,
    };
    let st = Arc::new(AppState::new(config, org));
    st.api_used.store(restored.api_used, Ordering::Relaxed);
    st.tokens().refresh.extend(restored.refresh_tokens);
    Ok(st)
}

/// The axum router over a state (for in-process tests with `tower::ServiceExt::oneshot`).
pub fn router(state: Arc<AppState>) -> axum::Router {
    http::router(state)
}

/// A running emulator.
#[derive(Debug)]
pub struct RunningEmulator {
    base_url: String,
    ca_pem: Option<PathBuf>,
    state: Arc<AppState>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    saver: tokio::task::JoinHandle<()>,
}

impl RunningEmulator {
    /// `http(s)://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The CA certificate clients must trust (TLS mode only).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca_pem.as_deref()
    }

    /// Credentials for clients.
    pub fn credentials(&self) -> Credentials {
        let c = &self.state.config;
        Credentials {
            instance_url: self.base_url.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
        }
    }

    /// Shared state (for in-process inspection).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Stops serving, then writes the data-dir snapshot.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.finish().await;
    }

    /// Serves until Ctrl-C (or SIGTERM), then shuts down like [`RunningEmulator::shutdown`].
    pub async fn wait(self) {
        let tx = self.shutdown.clone();
        tokio::select! {
            _ = shutdown_signal() => { let _ = tx.send(true); }
            _ = tx.closed() => {}
        }
        self.finish().await;
    }

    async fn finish(self) {
        let _ = self.task.await;
        self.saver.abort();
        let st = self.state.clone();
        let res = tokio::task::spawn_blocking(move || persist::snapshot_now(&st)).await;
        if let Ok(Err(e)) = res {
            tracing::error!(error = %e, "could not write the emulator snapshot");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Binds, loads or seeds the org, and spawns the server task.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| EmulatorError::Io(config.listen.to_string(), e))?;
    let local = tcp
        .local_addr()
        .map_err(|e| EmulatorError::Io(config.listen.to_string(), e))?;
    let tls = match &config.tls_self_signed {
        Some(dir) => Some(tls::self_signed(dir)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let base_url = format!("{scheme}://{host}:{}", local.port());
    let cfg = config.clone();
    let state = tokio::task::spawn_blocking(move || new_state(cfg))
        .await
        .map_err(|e| EmulatorError::Tls(format!("startup task failed: {e}")))??;
    if let Ok(mut b) = state.base_url.write() {
        *b = base_url.clone();
    }
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let signal = async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let ca_pem = tls.as_ref().map(|(_, p)| p.clone());
    let task = match tls {
        Some((cfg, _)) => {
            use axum::serve::ListenerExt;
            let listener = tls::TlsListener::new(tcp, cfg)
                .map_err(|e| EmulatorError::Io(local.to_string(), e))?
                .tap_io(|_| {});
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::error!(error = %e, "emulator server failed");
                }
            })
        }
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(tcp, app).with_graceful_shutdown(signal).await {
                tracing::error!(error = %e, "emulator server failed");
            }
        }),
    };
    let saver_state = state.clone();
    let saver = tokio::spawn(async move {
        if saver_state.config.data_dir.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if saver_state.dirty.load(Ordering::Relaxed) {
                let st = saver_state.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || persist::snapshot_now(&st)).await
                {
                    tracing::warn!(error = %e, "periodic emulator snapshot failed");
                }
            }
        }
    });
    Ok(RunningEmulator {
        base_url,
        ca_pem,
        state,
        shutdown: tx,
        task,
        saver,
    })
}
