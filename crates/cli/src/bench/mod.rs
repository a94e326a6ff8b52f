//! `ferry bench …`: end-to-end benchmarks of a release build, run by hand (never timed
//! tests). Each benchmark is one submodule; this module holds what they share:
//!
//! - [`ChildEmulator`]: `ferry emulator` started from the current executable as a separate
//!   child process on a free loopback port, so the memory measured for Ferry is Ferry's
//!   alone; with helpers for the emulator's admin API (`/__emulator/…`: call counts, custom
//!   fields, reset).
//! - [`RssSampler`]: samples this process's resident set while a phase runs and reads the
//!   kernel's high-water mark (`VmHWM`, reset per phase through `/proc/self/clear_refs`).
//! - [`Figures`]: the labelled figures a benchmark prints, aligned, in order.
//! - [`CallCounts`]: the emulator's per-endpoint call counts with record ids folded away,
//!   and the write calls among them.
//!
//! Benchmarks:
//! - `ferry bench model-sync` ([`model_sync`]): PostgreSQL rows into Salesforce (the
//!   emulator) through Ferry's API, against the emulator's own Bulk 2.0 ingest limit.
//! - `ferry bench bulk-sync` ([`bulk_sync`]): Accounts from the emulator into PostgreSQL
//!   through the bulk-sync engine, against Bulk 2.0 CSV export + `psql \copy`.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

pub mod bulk_sync;
pub mod model_sync;

/// Arguments of `ferry bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Model sync: N PostgreSQL rows into Salesforce (the emulator) through Ferry, vs the
    /// same rows as one pre-built CSV pushed straight into Bulk 2.0 (the limit).
    ModelSync(model_sync::ModelSyncArgs),
    /// Bulk sync: N Accounts (20 fields) from the emulator into PostgreSQL through the
    /// bulk-sync engine (full load and a 1% incremental), vs Bulk 2.0 CSV + `psql \copy`.
    BulkSync(bulk_sync::BulkSyncArgs),
}

/// Runs the chosen benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::ModelSync(args) => model_sync::run(args).await,
        BenchCommand::BulkSync(args) => bulk_sync::run(args).await,
    }
}

/// A free loopback port (bound, read and released; the child binds it right after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `ferry emulator` running as a child process of this one; killed (by its pid) and reaped
/// when dropped.
pub struct ChildEmulator {
    child: Child,
    base_url: String,
    http: reqwest::Client,
}

impl ChildEmulator {
    /// Starts `<current exe> emulator --listen 127.0.0.1:<free port>` and waits until it
    /// says it listens. Its logs go to this process's stderr at `warn`.
    pub async fn start() -> anyhow::Result<ChildEmulator> {
        let exe = std::env::current_exe().context("locating the ferry executable")?;
        let port = free_port()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let mut child = Command::new(exe)
            .args(["emulator", "--listen", &listen.to_string()])
            .env("FERRY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting `ferry emulator` as a child process")?;
        let stdout = child
            .stdout
            .take()
            .context("the emulator's stdout is not piped")?;
        // The first line names the address; the rest is drained so the pipe never fills.
        let (first_line, drained) = tokio::task::spawn_blocking(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let drain = std::thread::Builder::new()
                .name("emulator-stdout".into())
                .spawn(move || {
                    let mut sink = std::io::sink();
                    let _ = std::io::copy(&mut reader, &mut sink);
                });
            (read.map(|_| line), drain.is_ok())
        })
        .await?;
        let mut emulator = ChildEmulator {
            child,
            base_url: format!("http://{listen}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        };
        let line = first_line.context("reading the emulator's first output line")?;
        if !line.contains("listening on") || !drained {
            let status = emulator.child.try_wait().ok().flatten();
            anyhow::bail!(
                "the emulator did not start (first line {line:?}, exit status {status:?})"
            );
        }
        Ok(emulator)
    }

    /// `http://127.0.0.1:<port>`: instance and login URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A plain HTTP client (no Ferry code) for direct calls to the emulator.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls the admin API (`/__emulator/<path>`) and returns its JSON answer.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(
            method.clone(),
            format!("{}/__emulator/{path}", self.base_url),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} /__emulator/{path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{method} /__emulator/{path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Clears the emulator's call counters.
    pub async fn reset_calls(&self) -> anyhow::Result<()> {
        self.admin(reqwest::Method::DELETE, "calls", None).await?;
        Ok(())
    }

    /// The calls made since the last [`ChildEmulator::reset_calls`].
    pub async fn calls(&self) -> anyhow::Result<CallCounts> {
        let answer = self.admin(reqwest::Method::GET, "calls", None).await?;
        Ok(CallCounts::from_admin(&answer))
    }

    /// Resident set of the emulator process, in bytes (for context only).
    pub fn rss_bytes(&self) -> Option<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.pid()), "VmRSS:").map(|k| k * 1024)
    }

    /// CPU time the emulator process has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        // Only our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per-endpoint call counts (`"POST /services/data/v62.0/jobs/ingest": 3`), record and job
/// ids replaced by `{id}` so one endpoint is one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Endpoint → calls.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Calls counted against the daily API allowance (`apiUsed`).
    pub api_used: u64,
}

/// Whether a path segment is a Salesforce id (15 or 18 alphanumerics with a digit).
fn is_record_id(segment: &str) -> bool {
    (segment.len() == 15 || segment.len() == 18)
        && segment.chars().all(|c| c.is_ascii_alphanumeric())
        && segment.chars().any(|c| c.is_ascii_digit())
}

/// `GET /services/data/v62.0/jobs/ingest/750…/batches` → `GET /…/jobs/ingest/{id}/batches`.
pub fn fold_ids(endpoint: &str) -> String {
    endpoint
        .split('/')
        .map(|segment| {
            if is_record_id(segment) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl CallCounts {
    fn from_admin(answer: &Value) -> CallCounts {
        let mut by_endpoint = BTreeMap::new();
        if let Some(calls) = answer["calls"].as_object() {
            for (endpoint, count) in calls {
                *by_endpoint.entry(fold_ids(endpoint)).or_insert(0) += count.as_u64().unwrap_or(0);
            }
        }
        CallCounts {
            by_endpoint,
            api_used: answer["apiUsed"].as_u64().unwrap_or(0),
        }
    }

    /// Every call.
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// Calls that change records or start work: any method but GET/HEAD, except logins
    /// (`/services/oauth2/…`) and the admin API.
    pub fn writes(&self) -> u64 {
        self.by_endpoint
            .iter()
            .filter(|(endpoint, _)| is_write_call(endpoint))
            .map(|(_, n)| n)
            .sum()
    }

    /// One line per endpoint, most-called first.
    pub fn lines(&self) -> Vec<String> {
        let mut entries: Vec<(&String, &u64)> = self.by_endpoint.iter().collect();
        entries.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        entries
            .into_iter()
            .map(|(endpoint, n)| format!("{n:>8}  {endpoint}"))
            .collect()
    }
}

/// Whether `"<METHOD> <path>"` writes (see [`CallCounts::writes`]).
pub fn is_write_call(endpoint: &str) -> bool {
    let (method, path) = endpoint.split_once(' ').unwrap_or(("", endpoint));
    !matches!(method, "GET" | "HEAD") && !path.contains("/oauth2/") && !path.contains("/__emulator")
}

/// A `kB` figure of a `/proc/<pid>/status` line, e.g. `VmHWM:`.
fn proc_status_kib(path: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// This process's resident set, in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("/proc/self/status", "VmRSS:").map(|k| k * 1024)
}

/// CPU time this process has used so far (user + system, every thread), in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds("/proc/self/stat")
}

/// User + system time of a `/proc/<pid>/stat` file, in seconds. The times are fields 14
/// and 15, counted after the command name (which may hold spaces, so from its closing
/// parenthesis), in clock ticks of 1/100 s (`USER_HZ`, fixed at 100 on Linux).
fn proc_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// CPU seconds used by this process and the emulator from [`CpuUse::start`] on.
pub struct CpuUse {
    own: Option<f64>,
    emulator: Option<f64>,
}

/// What a phase used, from [`CpuUse::finish`]: less noisy than its wall time on a shared
/// machine, and it says which side did the work.
#[derive(Debug, Clone, Copy)]
pub struct CpuSpent {
    own: Option<f64>,
    emulator: Option<f64>,
}

impl CpuUse {
    /// Reads both counters now.
    pub fn start(emulator: &ChildEmulator) -> CpuUse {
        CpuUse {
            own: own_cpu_seconds(),
            emulator: emulator.cpu_seconds(),
        }
    }

    /// The CPU used since the start.
    pub fn finish(&self, emulator: &ChildEmulator) -> CpuSpent {
        let since = |start: Option<f64>, now: Option<f64>| Some(now? - start?);
        CpuSpent {
            own: since(self.own, own_cpu_seconds()),
            emulator: since(self.emulator, emulator.cpu_seconds()),
        }
    }
}

impl CpuSpent {
    /// Adds both figures.
    pub fn add_to(&self, figures: &mut Figures) {
        let seconds =
            |value: Option<f64>| value.map_or("unknown".to_string(), |s| format!("{s:.2}"));
        figures.add(
            "CPU seconds of this process (user+system)",
            seconds(self.own),
        );
        figures.add(
            "CPU seconds of the emulator (user+system)",
            seconds(self.emulator),
        );
    }
}

/// This process's resident-set high-water mark since start or the last reset, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

/// Resets the kernel's high-water mark to the current resident set (`clear_refs` value 5,
/// Linux ≥ 4.0), so a phase's peak is its own; `false` when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Samples this process's resident set every `interval` on a background thread (so a busy
/// async runtime cannot delay it) until [`RssSampler::finish`].
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    reset: bool,
    thread: Option<std::thread::JoinHandle<Vec<(Duration, u64)>>>,
}

/// What an [`RssSampler`] saw.
#[derive(Debug, Clone)]
pub struct RssReport {
    /// (time since start, bytes) per sample.
    pub samples: Vec<(Duration, u64)>,
    /// Largest sample.
    pub max_sampled: u64,
    /// The kernel's high-water mark for the phase (`VmHWM`), when readable.
    pub peak: Option<u64>,
    /// Whether the high-water mark was reset at the start of the phase.
    pub peak_is_phase_only: bool,
}

impl RssSampler {
    /// Resets the high-water mark and starts sampling.
    pub fn start(interval: Duration) -> RssSampler {
        let reset = reset_peak_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    let started = Instant::now();
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(rss) = current_rss_bytes() {
                            samples.push((started.elapsed(), rss));
                        }
                        std::thread::sleep(interval);
                    }
                    samples
                })
                .ok()
        };
        RssSampler {
            stop,
            reset,
            thread,
        }
    }

    /// Stops sampling and reports.
    pub fn finish(mut self) -> RssReport {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let max_sampled = samples.iter().map(|(_, b)| *b).max().unwrap_or(0);
        RssReport {
            samples,
            max_sampled,
            peak: peak_rss_bytes(),
            peak_is_phase_only: self.reset,
        }
    }
}

impl RssReport {
    /// Up to `points` samples spread over the phase, as `t=1.2s 45 MB` items.
    pub fn profile(&self, points: usize) -> String {
        if self.samples.is_empty() || points == 0 {
            return "no samples".into();
        }
        let step = self.samples.len().div_ceil(points).max(1);
        self.samples
            .iter()
            .step_by(step)
            .chain(self.samples.last())
            .map(|(t, b)| format!("t={:.1}s {}", t.as_secs_f64(), mb(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Bytes as megabytes (10^6), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Labelled figures printed in order, labels aligned.
#[derive(Debug, Default)]
pub struct Figures {
    title: String,
    rows: Vec<(String, String)>,
}

impl Figures {
    /// An empty table with a title.
    pub fn new(title: impl Into<String>) -> Figures {
        Figures {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn add(&mut self, label: impl Into<String>, value: impl std::fmt::Display) {
        self.rows.push((label.into(), value.to_string()));
    }

    /// Adds a section heading.
    pub fn section(&mut self, heading: impl Into<String>) {
        self.rows.push((String::new(), heading.into()));
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!("{}\n", self.title);
        for (label, value) in &self.rows {
            if label.is_empty() {
                out.push_str(&format!("\n{value}\n"));
            } else {
                out.push_str(&format!("  {label:<width$}  {value}\n"));
            }
        }
        out
    }
}

/// Rows per second, no decimals.
pub fn rate(rows: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return "n/a".into();
    }
    format!("{:.0} rows/s", rows as f64 / seconds)
}

/// A target check: `PASS`/`MISS` with what was compared.
pub fn verdict(ok: bool, detail: impl std::fmt::Display) -> String {
    format!("{} ({detail})", if ok { "PASS" } else { "MISS" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_folded_out_of_endpoints() {
        assert_eq!(
            fold_ids("GET /services/data/v62.0/jobs/ingest/7500000000001AbAAI/successfulResults"),
            "GET /services/data/v62.0/jobs/ingest/{id}/successfulResults"
        );
        assert_eq!(
            fold_ids("POST /services/async/62.0/job/750000000000001/batch"),
            "POST /services/async/62.0/job/{id}/batch"
        );
        assert_eq!(
            fold_ids("GET /services/data/v62.0/sobjects/Contact/describe"),
            "GET /services/data/v62.0/sobjects/Contact/describe"
        );
    }

    #[test]
    fn write_calls_exclude_reads_and_logins() {
        let counts = CallCounts::from_admin(&serde_json::json!({
            "apiUsed": 9,
            "calls": {
                "POST /services/oauth2/token": 1,
                "GET /services/data/v62.0/query": 3,
                "POST /services/data/v62.0/jobs/ingest": 2,
                "PATCH /services/data/v62.0/jobs/ingest/7500000000001AbAAI": 1,
                "PATCH /services/data/v62.0/jobs/ingest/7500000000002AbAAI": 1,
            }
        }));
        assert_eq!(counts.total(), 8);
        assert_eq!(counts.writes(), 4);
        assert_eq!(counts.api_used, 9);
        assert_eq!(
            counts.by_endpoint["PATCH /services/data/v62.0/jobs/ingest/{id}"],
            2
        );
    }

    #[test]
    fn figures_align_labels() {
        let mut figures = Figures::new("t");
        figures.add("a", 1);
        figures.add("longer", "x");
        assert_eq!(figures.render(), "t\n  a       1\n  longer  x\n");
        assert_eq!(rate(10, Duration::from_secs(2)), "5 rows/s");
    }
}
