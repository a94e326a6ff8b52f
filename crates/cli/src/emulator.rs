//! `ferry emulator`: the Salesforce-compatible emulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ferry_salesforce_emulator::{EmulatorConfig, Seed};

/// Arguments of `ferry emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5200")]
    listen: SocketAddr,
    /// Serve HTTPS with a throwaway CA written to DIR/ca.pem.
    #[arg(long, value_name = "DIR")]
    tls_self_signed: Option<PathBuf>,
    /// Initial data: `empty`, `demo`, or a path to a seed file.
    #[arg(long, default_value = "empty")]
    seed: String,
    /// Persist the org in this directory (in memory when absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// OAuth client id of the connected app.
    #[arg(long)]
    client_id: Option<String>,
    /// OAuth client secret of the connected app.
    #[arg(long)]
    client_secret: Option<String>,
    /// Username of the org's user.
    #[arg(long)]
    username: Option<String>,
    /// Password of the org's user.
    #[arg(long)]
    password: Option<String>,
    /// Daily API request allowance (`DailyApiRequests`).
    #[arg(long)]
    daily_api_requests: Option<u64>,
    /// Lifetime of access tokens, in seconds.
    #[arg(long)]
    access_token_ttl_secs: Option<u64>,
}

fn parse_seed(text: &str) -> anyhow::Result<Seed> {
    match text {
        "empty" => Ok(Seed::Empty),
        "demo" => Ok(Seed::Demo),
        path => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                anyhow::bail!(
                    "--seed: '{}' is neither 'empty', 'demo' nor an existing seed file",
                    path.display()
                );
            }
            Ok(Seed::File(path))
        }
    }
}

/// Runs the emulator until SIGINT or SIGTERM.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let defaults = EmulatorConfig::default();
    let config = EmulatorConfig {
        listen: args.listen,
        tls_self_signed: args.tls_self_signed,
        seed: parse_seed(&args.seed)?,
        data_dir: args.data_dir,
        client_id: args.client_id.unwrap_or(defaults.client_id),
        client_secret: args.client_secret.unwrap_or(defaults.client_secret),
        username: args.username.unwrap_or(defaults.username),
        password: args.password.unwrap_or(defaults.password),
        daily_api_requests: args
            .daily_api_requests
            .unwrap_or(defaults.daily_api_requests),
        access_token_ttl: args
            .access_token_ttl_secs
            .map(Duration::from_secs)
            .unwrap_or(defaults.access_token_ttl),
    };
    let signal = crate::serve::ShutdownSignal::install()?;
    let running = ferry_salesforce_emulator::start(config)
        .await
        .context("starting the Salesforce emulator")?;
    let credentials = running.credentials();
    println!("Salesforce emulator listening on {}", running.base_url());
    println!("  instance URL / login URL: {}", credentials.instance_url);
    println!("  client id:     {}", credentials.client_id);
    println!("  client secret: {}", credentials.client_secret);
    println!("  username:      {}", credentials.username);
    println!("  password:      {}", credentials.password);
    if let Some(ca) = running.ca_pem_path() {
        println!("  CA certificate: {}", ca.display());
    }
    signal.wait().await;
    running.shutdown().await;
    Ok(())
}
