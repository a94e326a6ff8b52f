//! `ferry demo` end to end: it must sync the sample people into the emulator and keep
//! serving until SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[test]
fn demo_syncs_sample_people_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["demo", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--emulator-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("demo"))
        .env_remove("FERRY_BOOTSTRAP_API_KEY")
        .env_remove("FERRY_DATABASE_URL")
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning ferry demo");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut output = String::new();
    while Instant::now() < deadline && !output.contains("Serving until Ctrl-C") {
        if let Ok(line) = receiver.recv_timeout(Duration::from_millis(200)) {
            output.push_str(&line);
            output.push('\n');
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("demo exits");
    assert!(output.contains("Serving until Ctrl-C"), "{output}");
    assert!(output.contains("status \"completed\""), "{output}");
    assert!(output.contains("\"total\":16"), "{output}");
    // One sample person has no company, which a Lead requires: a per-record error with
    // Salesforce's code, the rest written.
    assert!(output.contains("\"insert\":15"), "{output}");
    assert!(output.contains("\"error\":1"), "{output}");
    assert!(output.contains("REQUIRED_FIELD_MISSING"), "{output}");
    assert!(status.success(), "demo exited with {status}");
}
