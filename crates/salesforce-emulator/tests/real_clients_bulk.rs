//! Real third-party clients, unpatched, on the Bulk APIs: simple-salesforce `bulk` (1.0) and
//! `bulk2` over the self-signed TLS listener, and jsforce `bulk`/`bulk2` over plain http.
//!
//! salesforce-bulk (1.0, `concurrency='Serial'`, CSV and JSON batches) runs over plain http,
//! and tap-salesforce extracts Account in BULK mode (its hard-coded login host is rewritten
//! by a `sitecustomize.py`, spec §11 trick T2).
//!
//! Clients are pinned and installed once under `target/emulator-clients/` (the same venv and
//! node_modules as `tests/real_clients.rs`, plus a venv for salesforce-bulk). When Python,
//! Node or the registry is unavailable the test prints a loud SKIPPED line, except when `CI`
//! is set: then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_salesforce_emulator::{EmulatorConfig, start};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this is a failure)");
    }
    eprintln!("\n*** SKIPPED real-client bulk test: {what} ***\n");
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed:\n{text}"))
    }
}

const SIMPLE_SALESFORCE: &str = "simple-salesforce==1.12.6";
const SALESFORCE_BULK: &str = "salesforce-bulk==2.2.0";
const JSFORCE: &str = "jsforce@3.6.2";
const TAP_SALESFORCE: &str = "tap-salesforce==2.8.1";

/// Creates (once) a venv under `target/emulator-clients/NAME` with a pinned package.
fn python_env(name: &str, package: &str) -> Result<PathBuf, String> {
    let dir = target_dir().join("emulator-clients").join(name);
    let python = dir.join("bin/python");
    let marker = dir.join(format!(".installed-{package}"));
    if python.exists() && marker.exists() {
        return Ok(python);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        package,
    ]))?;
    std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    Ok(python)
}

/// Installs (once) the pinned jsforce; returns the node_modules directory.
fn node_env() -> Result<PathBuf, String> {
    let dir = target_dir().join("emulator-clients/node");
    let marker = dir.join(format!(".installed-{JSFORCE}"));
    let modules = dir.join("node_modules");
    if marker.exists() && modules.join("jsforce").exists() {
        return Ok(modules);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(Command::new("node").arg("--version"))?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .arg(JSFORCE))?;
    std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    Ok(modules)
}

fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..EmulatorConfig::default()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_bulk_and_bulk2() {
    let python = match blocking(|| python_env("py", SIMPLE_SALESFORCE)).await {
        Ok(p) => p,
        Err(e) => {
            return skip_or_fail(&format!(
                "cannot prepare Python with {SIMPLE_SALESFORCE}: {e}"
            ));
        }
    };
    let tls = tempfile::tempdir().expect("tempdir");
    let emu = start(EmulatorConfig {
        tls_self_signed: Some(tls.path().to_path_buf()),
        ..cfg()
    })
    .await
    .expect("start");
    let base = emu.base_url();
    let ca = emu.ca_pem_path().map(Path::to_path_buf).expect("ca");
    let script = clients_dir().join("simple_salesforce_bulk.py");
    let res = blocking(move || {
        run(Command::new(python)
            .arg(script)
            .arg(&base)
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env_remove("CURL_CA_BUNDLE"))
    })
    .await;
    emu.shutdown().await;
    match res {
        Ok(out) => assert!(out.contains("simple-salesforce bulk OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsforce_bulk_and_bulk2() {
    let modules = match blocking(node_env).await {
        Ok(m) => m,
        Err(e) => return skip_or_fail(&format!("cannot prepare Node with {JSFORCE}: {e}")),
    };
    let emu = start(cfg()).await.expect("start");
    let base = emu.base_url();
    let script = clients_dir().join("jsforce_bulk.js");
    let res =
        blocking(move || run(Command::new("node").arg(script).arg(&base).arg(&modules))).await;
    emu.shutdown().await;
    match res {
        Ok(out) => assert!(out.contains("jsforce bulk OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_bulk_serial_csv_and_json() {
    let python = match blocking(|| python_env("py-bulk", SALESFORCE_BULK)).await {
        Ok(p) => p,
        Err(e) => {
            return skip_or_fail(&format!(
                "cannot prepare Python with {SALESFORCE_BULK}: {e}"
            ));
        }
    };
    let emu = start(cfg()).await.expect("start");
    let base = emu.base_url();
    let script = clients_dir().join("salesforce_bulk_check.py");
    let res = blocking(move || run(Command::new(python).arg(script).arg(&base))).await;
    emu.shutdown().await;
    match res {
        Ok(out) => assert!(out.contains("salesforce-bulk OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_salesforce_bulk_mode() {
    let python = match blocking(|| python_env("py-tap", TAP_SALESFORCE)).await {
        Ok(p) => p,
        Err(e) => {
            return skip_or_fail(&format!("cannot prepare Python with {TAP_SALESFORCE}: {e}"));
        }
    };
    let tap = python.with_file_name("tap-salesforce");
    let work = tempfile::tempdir().expect("tempdir");
    let emu = start(cfg()).await.expect("start");
    let base = emu.base_url();
    let script = clients_dir().join("tap_salesforce_check.py");
    let dir = work.path().to_path_buf();
    let res = blocking(move || {
        run(Command::new(python)
            .arg(script)
            .arg(&base)
            .arg(&tap)
            .arg(&dir))
    })
    .await;
    emu.shutdown().await;
    match res {
        Ok(out) => assert!(out.contains("tap-salesforce OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}
