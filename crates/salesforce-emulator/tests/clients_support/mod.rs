//! Shared by the real-client test binaries: pinned Python venvs and node_modules under the
//! target directory, running a client script, and skipping loudly (or failing under `CI`)
//! when a toolchain or registry is unavailable.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use ferry_salesforce_emulator::EmulatorConfig;

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

pub fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (CI is set, so this is a failure)");
    }
    eprintln!("\n*** SKIPPED real-client test: {what} ***\n");
}

pub fn run(cmd: &mut Command) -> Result<String, String> {
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

/// Creates (once) a venv under `target/emulator-clients/NAME` with a pinned package.
pub fn python_env(name: &str, package: &str) -> Result<PathBuf, String> {
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

/// Installs (once) the pinned `package` (e.g. `jsforce@3.6.2`); returns node_modules.
pub fn node_env(package: &str) -> Result<PathBuf, String> {
    let dir = target_dir().join("emulator-clients/node");
    let marker = dir.join(format!(".installed-{package}"));
    let modules = dir.join("node_modules");
    if marker.exists() && modules.join("jsforce").exists() {
        return Ok(modules);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(Command::new("node").arg("--version"))?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .arg(package))?;
    std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    Ok(modules)
}

pub fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..EmulatorConfig::default()
    }
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}
