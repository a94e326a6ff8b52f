//! Helpers for the binary's integration tests: spawning `ferry serve`, Python virtualenvs
//! under the target directory, and the local PostgreSQL target.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The API key every spawned server is bootstrapped with.
pub const BOOTSTRAP_KEY: &str = "ferry-test-bootstrap-key-0001";

/// Whether missing services must fail the run.
pub fn services_required() -> bool {
    ferry_store::testing::services_required()
}

/// Skips (returns `None`) or fails, depending on [`services_required`].
pub fn skip_or_fail<T>(what: &str) -> Option<T> {
    if services_required() {
        panic!("{what} (required because CI or FERRY_REQUIRE_SERVICES is set)");
    }
    eprintln!("SKIPPED: {what}");
    None
}

/// Serialises venv creation between the tests of one test binary.
static VENV_LOCK: Mutex<()> = Mutex::new(());

/// A virtualenv under the target directory with `packages` installed; its python path.
pub fn python_venv(name: &str, packages: &[&str]) -> Option<PathBuf> {
    let _guard = VENV_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("venvs");
    let venv = root.join(name);
    let python = venv.join("bin").join("python");
    if venv.join(".ferry-ready").exists() {
        return Some(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    if Command::new(&system_python)
        .arg("--version")
        .output()
        .is_err()
    {
        return skip_or_fail(&format!("{system_python} is not installed"));
    }
    std::fs::create_dir_all(&root).expect("creating the venv directory");
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = root.join(format!("{name}.tmp-{}-{unique}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new(&system_python)
        .args(["-m", "venv"])
        .arg(&staging)
        .status()
        .expect("running python -m venv");
    assert!(status.success(), "python -m venv failed");
    let output = Command::new(staging.join("bin").join("python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(packages)
        .output()
        .expect("running pip");
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        return skip_or_fail(&format!(
            "pip install {} failed: {}",
            packages.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(staging.join(".ferry-ready"), packages.join("\n")).expect("marker");
    if std::fs::rename(&staging, &venv).is_err() {
        // Another test process finished first; use its venv.
        let _ = std::fs::remove_dir_all(&staging);
    }
    Some(python)
}

/// Where the local PostgreSQL accepts connections for connection tests.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
}

/// A fresh database on the local PostgreSQL (`FERRY_TEST_POSTGRES_URL`), if reachable;
/// drop it with [`ferry_store::testing::TestDatabase::drop_database`] when done.
pub async fn postgres_target(
    test_name: &str,
) -> Option<(PgTarget, ferry_store::testing::TestDatabase)> {
    let db = ferry_store::testing::postgres_database(test_name).await?;
    let (host, port, user, database) = url_parts(&db.url);
    Some((
        PgTarget {
            host,
            port,
            user,
            database,
        },
        db,
    ))
}

fn url_parts(url: &str) -> (String, u16, String, String) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (credentials, host_part) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
    let user = credentials
        .split(':')
        .next()
        .unwrap_or("postgres")
        .to_string();
    let (host_port, database) = host_part.split_once('/').unwrap_or((host_part, "postgres"));
    let database = database.split('?').next().unwrap_or("postgres").to_string();
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    (
        host.to_string(),
        port.parse().unwrap_or(5432),
        user,
        database,
    )
}

/// A `ferry serve` child process on a random port.
pub struct FerryServer {
    pub base_url: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl FerryServer {
    /// Starts `ferry serve` with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> FerryServer {
        FerryServer::start_with(data_dir, &[])
    }

    /// Starts `ferry serve` with extra environment variables.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> FerryServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("FERRY_BOOTSTRAP_API_KEY", BOOTSTRAP_KEY)
            .env_remove("FERRY_DATABASE_URL")
            .env_remove("FERRY_SECRET_KEY")
            .env("FERRY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawning ferry serve");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr_log = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = stderr_log.lock() {
                    log.push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        let stdout_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = sender.send(url);
                }
                if let Ok(mut log) = stdout_log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base_url = loop {
            if let Ok(url) = receiver.recv_timeout(Duration::from_millis(200)) {
                break url;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "ferry serve exited with {status}: {}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ferry serve did not start in time"
            );
        };
        FerryServer {
            base_url,
            child,
            log,
        }
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FerryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
