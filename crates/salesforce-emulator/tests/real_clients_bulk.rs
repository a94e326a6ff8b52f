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

use std::path::Path;
use std::process::Command;

use ferry_salesforce_emulator::{EmulatorConfig, start};

const SIMPLE_SALESFORCE: &str = "simple-salesforce==1.12.6";
const SALESFORCE_BULK: &str = "salesforce-bulk==2.2.0";
const JSFORCE: &str = "jsforce@3.6.2";
const TAP_SALESFORCE: &str = "tap-salesforce==2.8.1";

mod clients_support;
use clients_support::*;

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
    let modules = match blocking(|| node_env(JSFORCE)).await {
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
