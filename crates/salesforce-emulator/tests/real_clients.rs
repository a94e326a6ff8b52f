//! Real third-party clients, unpatched, against a running emulator:
//! simple-salesforce (pinned, in a venv under `target/`) over the self-signed TLS listener,
//! and jsforce (pinned, node_modules under `target/`) over plain http.
//!
//! Each test prints a loud SKIPPED line when Python/pip or Node/npm (or the package
//! registry) is unavailable, except when `CI` is set: then it fails.

use std::path::Path;
use std::process::Command;

use ferry_salesforce_emulator::{EmulatorConfig, start};

const SIMPLE_SALESFORCE: &str = "simple-salesforce==1.12.6";
const JSFORCE: &str = "jsforce@3.6.2";

mod clients_support;
use clients_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_over_tls() {
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
    let script = clients_dir().join("simple_salesforce_check.py");
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
        Ok(out) => assert!(out.contains("simple-salesforce OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsforce_over_http() {
    let modules = match blocking(|| node_env(JSFORCE)).await {
        Ok(m) => m,
        Err(e) => return skip_or_fail(&format!("cannot prepare Node with {JSFORCE}: {e}")),
    };
    let emu = start(cfg()).await.expect("start");
    let base = emu.base_url();
    let script = clients_dir().join("jsforce_check.js");
    let res =
        blocking(move || run(Command::new("node").arg(script).arg(&base).arg(&modules))).await;
    emu.shutdown().await;
    match res {
        Ok(out) => assert!(out.contains("jsforce OK"), "{out}"),
        Err(e) => panic!("{e}"),
    }
}
