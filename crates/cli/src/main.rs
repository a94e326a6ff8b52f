//! The `ferry` binary: parses commands, loads settings, sets up telemetry and wires the
//! crates together. Nothing else lives here.
//!
//! - `ferry serve`: the API server (SQLite by default, PostgreSQL with `--database-url`),
//!   with in-process job workers unless `--workers 0`.
//! - `ferry worker`: claims and runs jobs from a PostgreSQL store (scale-out).
//! - `ferry migrate`: applies the metadata store's migrations.
//! - `ferry keys create --org NAME`: prints a new API key for an organization.
//! - `ferry emulator`: the Salesforce-compatible emulator.
//! - `ferry demo`: the emulator and Ferry together, with a sample sync.
//! - `ferry bench model-sync`: end-to-end benchmarks (`bench/`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator: the sync pipeline allocates many small maps
/// and strings from several threads, where glibc's allocator cost about a fifth of the CPU
/// time and kept freed memory in per-thread arenas (measured with `ferry bench model-sync`).
/// It is built as mimalloc 2 without transparent huge pages (`Cargo.toml`): mimalloc 3 keeps
/// freed pages for a second and both back them with 2 MiB pages, which cost 40–60 MB of
/// peak RSS on the model-sync bench for no speed gain.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;
mod emulator;
mod serve;
mod settings;
mod worker;

/// Ferry: keep Salesforce and your databases in step.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    /// Log output format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FERRY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the metadata store lives; shared by every command that touches it.
#[derive(Debug, Clone, clap::Args)]
struct StoreArgs {
    /// Directory for the embedded SQLite store and the generated secret key.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = "./ferry-data")]
    data_dir: PathBuf,
    /// Metadata store URL: `postgres://...` for PostgreSQL; default SQLite in the data dir.
    #[arg(long, env = "FERRY_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server.
    Serve(serve::ServeCommand),
    /// Apply metadata store migrations and exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the Salesforce-compatible emulator.
    Emulator(emulator::EmulatorArgs),
    /// Start the emulator and Ferry, sync sample people into Salesforce, keep serving.
    Demo(demo::DemoArgs),
    /// Claim and run jobs from a PostgreSQL metadata store (scale-out workers).
    Worker(worker::WorkerArgs),
    /// Benchmarks (release builds): `ferry bench model-sync`.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key (and the organization if missing) and print it once.
    Create {
        /// Organization name.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn init_telemetry(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Only the commands that run syncs for long; the others start once and are gone.
    if matches!(
        cli.command,
        Command::Serve(_) | Command::Worker(_) | Command::Demo(_) | Command::Bench(_)
    ) {
        allocator_settings();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

/// Allocator settings read only at start-up, from the environment; unless the environment
/// already sets them, Ferry re-executes itself once with them set (if that fails it carries
/// on with the defaults):
///
/// - `MALLOC_ARENA_MAX=1`: the metadata store's SQLite is C code on the C allocator, and
///   glibc gives each thread that allocates under contention an arena of its own; with one
///   thread per pooled SQLite connection those arenas held about 45 MB of peak RSS on
///   `ferry bench model-sync`. The pipeline's own memory is on mimalloc, so one is enough.
/// - `MIMALLOC_PURGE_DELAY=500`: mimalloc gives freed pages back to the OS 10 ms after they
///   are freed by default, so each window's large buffers (Bulk CSV bodies, results, log
///   chunks) were handed back and faulted in again a few hundred milliseconds later: 2.1M
///   page faults and about a sixth of Ferry's CPU on the 1M-row bench. Kept for 500 ms
///   (longer than a window takes), they are reused: 0.3M faults, 7% less CPU, about 20 MB
///   more peak RSS.
fn allocator_settings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        const SETTINGS: [(&str, &str); 2] =
            [("MALLOC_ARENA_MAX", "1"), ("MIMALLOC_PURGE_DELAY", "500")];
        let missing: Vec<(&str, &str)> = SETTINGS
            .into_iter()
            .filter(|(var, _)| std::env::var_os(var).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        // `exec` only returns when it failed.
        let _failed = command.args(args).envs(missing).exec();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    init_telemetry(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Migrate { store } => {
            let url = settings::database_url(&store)?;
            ferry_store::open(&url).await?;
            println!("migrations applied to {}", settings::redact_url(&url));
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Create { org, store },
        } => {
            if org.trim().is_empty() {
                anyhow::bail!("--org must not be empty");
            }
            let url = settings::database_url(&store)?;
            let store = ferry_store::open(&url).await?;
            let organization = store.ensure_organization(org.trim()).await?;
            let key = store.create_api_key(organization.id, None).await?;
            println!("{}", key.plaintext);
            eprintln!(
                "created an API key for organization '{}' ({}); it is shown only once",
                organization.name, organization.id
            );
            Ok(())
        }
        Command::Emulator(args) => emulator::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
