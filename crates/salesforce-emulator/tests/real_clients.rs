//! Real third-party clients, unpatched, against a running emulator:
//! simple-salesforce (pinned, in a venv under `target/`) over the self-signed TLS listener,
//! and jsforce (pinned, node_modules under `target/`) over plain http.
//!
//! Each test prints a loud SKIPPED line when Python/pip or Node/npm (or the package
//! registry) is unavailable, except when `CI` is set: then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_salesforce_emulator::{EmulatorConfig, start};

const SIMPLE_SALESFORCE: &str = "simple-salesforce==1.12.6";
const JSFORCE: &str = "jsforce@3.6.2";

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
    eprintln!("\n*** SKIPPED real-client test: {what} ***\n");
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

/// Creates (once) the venv with the pinned simple-salesforce; returns its python.
fn python_env() -> Result<PathBuf, String> {
    let dir = target_dir().join("emulator-clients/py");
    let python = dir.join("bin/python");
    let marker = dir.join(format!(".installed-{SIMPLE_SALESFORCE}"));
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
        SIMPLE_SALESFORCE,
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
async fn simple_salesforce_over_tls() {
    let python = match blocking(python_env).await {
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
    let modules = match blocking(node_env).await {
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
