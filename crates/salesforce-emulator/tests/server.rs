//! Over a real socket: HTTP and the self-signed TLS listener, `--data-dir` persistence,
//! shutdown. Uses a minimal HTTP/1.1 client written on tokio's TcpStream.

use std::sync::Arc;

use ferry_salesforce_emulator::{EmulatorConfig, Seed, start};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf.get(split + 4..).map(<[u8]>::to_vec).unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw { status, head, body }
}

async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let host = base.trim_start_matches("http://");
    let s = TcpStream::connect(host).await.expect("connect");
    exchange(s, host, method, path, headers, body).await
}

async fn https(
    base: &str,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let host = base.trim_start_matches("https://");
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(ca).expect("ca.pem");
    roots.add(cert).expect("add root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(host).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the emulator CA");
    exchange(tls, host, method, path, headers, body).await
}

fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..EmulatorConfig::default()
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const LOGIN: &[u8] = b"grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=ferry";

#[tokio::test]
async fn http_listener_serves_the_api() {
    let emu = start(cfg()).await.expect("start");
    let base = emu.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    let r = http(&base, "GET", "/services/data", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/json;charset=utf-8")
    );
    let t = http(&base, "POST", "/services/oauth2/token", &[FORM], LOGIN)
        .await
        .json();
    assert_eq!(t["instance_url"], json!(base));
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap_or(""));
    let r = http(
        &base,
        "GET",
        "//services/data/v59.0/query/?q=SELECT+Id+FROM+User",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["totalSize"], 1);
    assert!(
        r.head.contains("api-usage=1/100000")
            || r.head
                .to_ascii_lowercase()
                .contains("sforce-limit-info: api-usage=1/100000"),
        "{}",
        r.head
    );
    // the admin API answers loopback clients
    let r = http(&base, "GET", "/__emulator", &[], b"").await;
    assert_eq!(r.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn tls_listener_with_throwaway_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(EmulatorConfig {
        tls_self_signed: Some(dir.path().to_path_buf()),
        ..cfg()
    })
    .await
    .expect("start");
    let base = emu.base_url();
    assert!(base.starts_with("https://127.0.0.1:"));
    let ca = emu.ca_pem_path().expect("ca path").to_path_buf();
    assert_eq!(ca, dir.path().join("ca.pem"));
    let t = https(&base, &ca, "POST", "/services/oauth2/token", &[FORM], LOGIN)
        .await
        .json();
    assert_eq!(
        t["instance_url"],
        json!(base),
        "instance_url must be the https base URL"
    );
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap_or(""));
    let r = https(
        &base,
        &ca,
        "GET",
        "/services/data/v59.0/sobjects/Account/describe",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "Account");
    emu.shutdown().await;
}

#[tokio::test]
async fn data_dir_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmulatorConfig {
        data_dir: Some(dir.path().to_path_buf()),
        seed: Seed::Empty,
        ..cfg()
    };
    let emu = start(config.clone()).await.expect("start");
    let base = emu.base_url();
    let t = http(&base, "POST", "/services/oauth2/token", &[FORM], LOGIN)
        .await
        .json();
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap_or(""));
    let r = http(
        &base,
        "POST",
        "/__emulator/objects",
        &[("Content-Type", "application/json")],
        br#"{"name":"Thing__c","fields":[{"name":"Size__c","type":"number"}]}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http(
        &base,
        "POST",
        "/services/data/v59.0/sobjects/Thing__c",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"Name":"kept","Size__c":3}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap_or("").to_string();
    let r = http(
        &base,
        "DELETE",
        &format!("/services/data/v59.0/sobjects/Thing__c/{id}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    emu.state()
        .tokens()
        .refresh
        .insert("5AepRefreshForRestart".into(), "api refresh_token".into());
    emu.shutdown().await;
    assert!(dir.path().join("org.json").exists());

    let emu = start(config).await.expect("restart");
    let base = emu.base_url();
    let t = http(&base, "POST", "/services/oauth2/token", &[FORM], LOGIN)
        .await
        .json();
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap_or(""));
    let r = http(
        &base,
        "GET",
        "/services/data/v59.0/queryAll?q=SELECT+Name,Size__c,IsDeleted+FROM+Thing__c",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    let j = r.json();
    assert_eq!(j["totalSize"], 1, "{j}");
    assert_eq!(j["records"][0]["Name"], "kept");
    assert_eq!(j["records"][0]["Size__c"], json!(3.0));
    assert_eq!(j["records"][0]["IsDeleted"], true);
    let r = http(
        &base,
        "GET",
        &format!("/services/data/v59.0/sobjects/Thing__c/{id}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()[0]["errorCode"], "ENTITY_IS_DELETED");
    // refresh tokens survive the restart (tap-salesforce and Airbyte keep them in config)
    let r = http(&base, "POST", "/services/oauth2/token", &[FORM], b"grant_type=refresh_token&refresh_token=5AepRefreshForRestart&client_id=ferry-emulator&client_secret=ferry-emulator-secret").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    emu.shutdown().await;
}
