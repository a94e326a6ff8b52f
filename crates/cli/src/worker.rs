//! `ferry worker`: claims and runs jobs — model-sync and bulk-sync executions — from a
//! PostgreSQL metadata store, alongside any number of other workers and `ferry serve`
//! processes (`ferry_api::jobs`).
//!
//! `--metrics-listen ADDR` serves Prometheus `GET /metrics` (`ferry_api::metrics`) on its
//! own listener; off by default, since several workers often share a host.
//!
//! SIGTERM or SIGINT: no new claims; running executions stop at their next batch boundary
//! (marked `interrupted`, never `canceled`), their jobs go back to the queue with the next
//! execution already written (another worker continues them), webhook deliveries get up to
//! 10 s, then the process exits.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use ferry_api::jobs::{WorkerSettings, run_worker};
use ferry_api::{ApiSettings, AppState};
use tokio_util::sync::CancellationToken;

use crate::serve::ShutdownSignal;
use crate::{StoreArgs, settings};

/// Job-queue settings shared by `ferry serve` and `ferry worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerTuning {
    /// Lease length in seconds: a job whose worker stops heart-beating (every third of
    /// it) is taken over by another worker after this long.
    #[arg(long, env = "FERRY_LEASE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_seconds: u64,
    /// Most jobs running at once per Salesforce connection, across every worker
    /// (Salesforce limits concurrent long-running requests per org).
    #[arg(long, env = "FERRY_CONNECTION_CONCURRENCY", default_value_t = ferry_store::jobs::DEFAULT_CONNECTION_LIMIT, value_parser = clap::value_parser!(i64).range(1..))]
    pub connection_concurrency: i64,
}

impl WorkerTuning {
    /// Worker settings with `concurrency` jobs at once.
    pub fn settings(&self, concurrency: usize) -> WorkerSettings {
        WorkerSettings {
            concurrency,
            lease: Duration::from_secs(self.lease_seconds),
            connection_limit: self.connection_concurrency,
            ..WorkerSettings::default()
        }
    }
}

/// Arguments of `ferry worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Jobs this worker runs at once.
    #[arg(long, env = "FERRY_WORKER_CONCURRENCY", default_value_t = ferry_api::jobs::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Serve Prometheus metrics (GET /metrics: jobs and queue depth, executions, job
    /// durations) on this address, e.g. 0.0.0.0:9464. Off unless given.
    #[arg(long, env = "FERRY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub tuning: WorkerTuning,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs a worker until SIGINT or SIGTERM.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let signal = ShutdownSignal::install()?;
    // Checked before `database_url`, which would create the SQLite data directory.
    let url = args.store.database_url.clone().unwrap_or_default();
    if !ferry_store::backend::is_postgres_url(&url) {
        anyhow::bail!(
            "ferry worker needs a PostgreSQL metadata store (--database-url postgres://...); \
             with the embedded SQLite store, `ferry serve` runs the workers itself"
        );
    }
    let cipher = settings::cipher(&args.store, &url)?;
    let store = ferry_store::open(&url).await.with_context(|| {
        format!(
            "opening the metadata store at {}",
            settings::redact_url(&url)
        )
    })?;
    let registry = ferry_connectors::registry_with(settings::registry_settings()?);
    let state = AppState::new(store, registry, cipher, ApiSettings::default());
    // This process runs its own loop below.
    state.local_workers().disable();
    let worker_settings = args.tuning.settings(args.concurrency);
    println!(
        "ferry worker {} is claiming jobs (concurrency {}, lease {} s)",
        worker_settings.owner, worker_settings.concurrency, args.tuning.lease_seconds
    );
    let shutdown = CancellationToken::new();
    let metrics = match args.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding --metrics-listen {address}"))?;
            let bound = listener.local_addr()?;
            println!("ferry worker serves metrics on http://{bound}/metrics");
            let app = ferry_api::metrics::router(state.clone());
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }))
        }
        None => None,
    };
    let mut worker = tokio::spawn(run_worker(state.clone(), worker_settings, shutdown.clone()));
    let ended_early = tokio::select! {
        () = signal.wait() => false,
        result = &mut worker => {
            result.context("the worker loop")?;
            true
        }
    };
    if !ended_early {
        tracing::info!("shutting down");
        shutdown.cancel();
        worker.await.context("the worker loop")?;
    }
    shutdown.cancel();
    if let Some(metrics) = metrics {
        metrics
            .await
            .context("the metrics server task")?
            .context("the metrics server")?;
    }
    state.sync_runner().shutdown(Duration::from_secs(30)).await;
    state.background().close();
    if tokio::time::timeout(Duration::from_secs(10), state.background().wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running at shutdown; abandoning it");
    }
    Ok(())
}
