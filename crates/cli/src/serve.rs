//! `ferry serve`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use ferry_api::{ApiSettings, AppState};
use ferry_store::DynStore;
use tokio_util::sync::CancellationToken;

use crate::{StoreArgs, settings};

/// Arguments of `ferry serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:5100")]
    pub listen: SocketAddr,
    /// URL under which browsers reach this server (OAuth callbacks are built from it);
    /// defaults to http://<listen address>.
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `ferry serve`: the server's arguments plus its in-process job workers.
#[derive(Debug, clap::Args)]
pub struct ServeCommand {
    #[command(flatten)]
    pub server: ServeArgs,
    /// Jobs this process runs at once (in-process workers: model-sync and bulk-sync
    /// executions); 0 serves the API only and leaves every execution to `ferry worker`
    /// processes.
    #[arg(long, env = "FERRY_WORKERS", default_value_t = ferry_api::jobs::DEFAULT_CONCURRENCY)]
    pub workers: usize,
    #[command(flatten)]
    pub tuning: crate::worker::WorkerTuning,
}

/// Runs the API server until SIGINT or SIGTERM.
pub async fn run(command: ServeCommand) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install()?;
    let workers = (command.workers > 0).then(|| command.tuning.settings(command.workers));
    let server = Server::start_with_workers(&command.server, workers).await?;
    println!(
        "Ferry is listening on http://{} (store: {})",
        server.address,
        server.state.store().backend_name()
    );
    signal.wait().await;
    tracing::info!("shutting down");
    server.stop().await
}

/// A running API server with its background loops (scheduler, retention purge).
pub struct Server {
    /// Where it listens.
    pub address: SocketAddr,
    /// The API state (store, registry, runner).
    pub state: AppState,
    shutdown: CancellationToken,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    purge: tokio::task::JoinHandle<()>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the store (bootstrapping an empty one), binds and starts serving, with the
    /// default in-process workers.
    pub async fn start(args: &ServeArgs) -> anyhow::Result<Server> {
        Server::start_with_workers(args, Some(ferry_api::jobs::WorkerSettings::default())).await
    }

    /// [`Server::start`] with in-process workers as given (`None`: the API only; jobs are
    /// left to `ferry worker` processes).
    pub async fn start_with_workers(
        args: &ServeArgs,
        workers: Option<ferry_api::jobs::WorkerSettings>,
    ) -> anyhow::Result<Server> {
        let url = settings::database_url(&args.store)?;
        let cipher = settings::cipher(&args.store, &url)?;
        let store = ferry_store::open(&url).await.with_context(|| {
            format!(
                "opening the metadata store at {}",
                settings::redact_url(&url)
            )
        })?;
        bootstrap(&store).await?;

        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let address = listener.local_addr()?;
        let api_settings = ApiSettings {
            public_base_url: args
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{address}")),
            ..ApiSettings::default()
        };
        let registry = ferry_connectors::registry_with(settings::registry_settings()?);
        let state = AppState::new(store.clone(), registry, cipher, api_settings);
        let app = ferry_api::router(state.clone());
        match workers {
            Some(settings) => {
                tracing::info!(
                    concurrency = settings.concurrency,
                    "in-process workers enabled"
                );
                state.local_workers().start(&state, settings);
            }
            None => {
                tracing::info!("no in-process workers (--workers 0): jobs wait for ferry worker");
                state.local_workers().disable();
            }
        }

        let shutdown = CancellationToken::new();
        let purge = tokio::spawn(purge_expired_records(store.clone(), shutdown.clone()));
        state
            .background()
            .spawn(ferry_api::health::run_health_checks(
                state.clone(),
                shutdown.clone(),
            ));
        let scheduler = tokio::spawn(ferry_api::syncs::scheduler::run(
            state.clone(),
            shutdown.clone(),
            ferry_api::syncs::scheduler::DEFAULT_INTERVAL,
        ));
        let serve_token = shutdown.clone();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { serve_token.cancelled().await })
                .await
        });
        tracing::info!(%address, store = store.backend_name(), "ferry serve started");
        Ok(Server {
            address,
            state,
            shutdown,
            serve,
            purge,
            scheduler,
        })
    }

    /// Stops accepting requests, lets running executions reach a batch boundary and
    /// background work finish, then returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.serve.await;
        if let Err(error) = self.scheduler.await {
            tracing::warn!(%error, "sync scheduler ended abnormally");
        }
        // The in-process workers stop first: running executions (model and bulk syncs)
        // stop at a batch boundary, are marked `interrupted` with their successor written,
        // and their jobs go back to the queue for another worker.
        self.state.local_workers().stop();
        self.state.local_workers().stopped().await;
        self.state
            .sync_runner()
            .shutdown(Duration::from_secs(30))
            .await;
        // Let in-flight background work (webhook deliveries) finish, within reason.
        self.state.background().close();
        if tokio::time::timeout(Duration::from_secs(10), self.state.background().wait())
            .await
            .is_err()
        {
            tracing::warn!("background work still running at shutdown; abandoning it");
        }
        if let Err(error) = self.purge.await {
            tracing::warn!(%error, "retention purge task ended abnormally");
        }
        served.context("the HTTP server task")??;
        Ok(())
    }
}

/// On an empty store, creates organization `default` and its first API key, printed once.
/// `FERRY_BOOTSTRAP_API_KEY` makes that key deterministic; when set on an existing store the
/// key is registered for `default` if it is not known yet.
async fn bootstrap(store: &DynStore) -> anyhow::Result<()> {
    let fixed = std::env::var("FERRY_BOOTSTRAP_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    if let Some(key) = &fixed {
        ferry_store::api_keys::validate_key_format(key)
            .map_err(|message| anyhow::anyhow!("FERRY_BOOTSTRAP_API_KEY: {message}"))?;
    }
    let fresh = store.count_organizations().await? == 0;
    match (&fixed, fresh) {
        (Some(key), _) => {
            if store.authenticate(key).await?.is_none() {
                let organization = store.ensure_organization("default").await?;
                store.create_api_key(organization.id, Some(key)).await?;
                println!("registered FERRY_BOOTSTRAP_API_KEY for organization 'default'");
            }
        }
        (None, true) => {
            let organization = store.ensure_organization("default").await?;
            let key = store.create_api_key(organization.id, None).await?;
            println!("Created organization 'default' and its first API key (shown only once):");
            println!();
            println!("    {}", key.plaintext);
            println!();
            println!("Use it as: Authorization: Bearer <key>");
        }
        (None, false) => {}
    }
    Ok(())
}

/// Deletes idempotency records and events past their retention, hourly.
async fn purge_expired_records(store: DynStore, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let retention = chrono::Duration::from_std(ferry_store::idempotency::RETENTION)
                    .unwrap_or_else(|_| chrono::Duration::hours(48));
                match store.purge_idempotency(chrono::Utc::now() - retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged idempotency records"),
                    Err(error) => tracing::warn!(%error, "purging idempotency records failed"),
                }
                let event_retention = chrono::Duration::from_std(ferry_store::events::EVENT_RETENTION)
                    .unwrap_or_else(|_| chrono::Duration::hours(48));
                match store.purge_events(chrono::Utc::now() - event_retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged events"),
                    Err(error) => tracing::warn!(%error, "purging events failed"),
                }
            }
        }
    }
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM. The handlers are installed when this is
/// created, so a signal that arrives before [`ShutdownSignal::wait`] is polled still
/// triggers a graceful shutdown (instead of the default action, which kills the process).
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers.
    pub fn install() -> anyhow::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignal {})
        }
    }

    /// Resolves on the first signal.
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
