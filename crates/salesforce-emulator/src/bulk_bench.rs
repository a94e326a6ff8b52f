//! Bulk API throughput through the HTTP API (issue 4, "Performance"), as a library function
//! so that a CLI (`ferry bench emulator`) and `cargo bench --bench bulk` share it.
//!
//! [`run`] starts an emulator on a free loopback port and measures, for ROWS 10-field
//! Accounts:
//! 1. Bulk 2.0 ingest: rows/s from the first upload to `JobComplete`;
//! 2. Bulk 2.0 query export of those rows: rows/s from job create to the last result page;
//! 3. peak RSS of the process (emulator and client share it).
//!
//! The client is a minimal HTTP/1.1 implementation over a TCP socket, so the figures
//! include request parsing, routing and response writing of the real server.

use std::time::{Duration, Instant};

use crate::{EmulatorConfig, start};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
}

async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..nl])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || raw.len() < nl + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[nl + 2..nl + 2 + size]);
        raw = &raw[(nl + 4 + size).min(raw.len())..];
    }
    out
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn wait_job(addr: &str, auth: &[(&str, &str)], path: &str) -> Result<Json, String> {
    loop {
        let r = request(addr, "GET", path, auth, b"").await?;
        let j = r.json();
        match j["state"].as_str() {
            Some("JobComplete") => return Ok(j),
            Some("Failed" | "Aborted") => return Err(format!("job ended: {j}")),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Figures of one [`run`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkBenchReport {
    /// Rows ingested and exported.
    pub rows: usize,
    /// Seconds from the first upload to `JobComplete`.
    pub ingest_seconds: f64,
    /// Ingest rows per second.
    pub ingest_rows_per_sec: f64,
    /// Seconds from query-job create to the last result page.
    pub query_seconds: f64,
    /// Export rows per second.
    pub query_rows_per_sec: f64,
    /// Size of the exported CSV, bytes.
    pub query_csv_bytes: usize,
    /// Peak resident set size of the process, MB (Linux; 0 elsewhere).
    pub peak_rss_mb: f64,
}

impl std::fmt::Display for BulkBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bulk2 ingest : {} rows in {:.2} s = {:.0} rows/s (upload to JobComplete)",
            self.rows, self.ingest_seconds, self.ingest_rows_per_sec
        )?;
        writeln!(
            f,
            "bulk2 query  : {} rows ({:.0} MB CSV) in {:.2} s = {:.0} rows/s (create to last page)",
            self.rows,
            self.query_csv_bytes as f64 / 1_048_576.0,
            self.query_seconds,
            self.query_rows_per_sec
        )?;
        write!(f, "peak RSS     : {:.0} MB", self.peak_rss_mb)
    }
}

/// Runs the benchmark with `rows` Accounts (needs a multi-threaded tokio runtime).
pub async fn run(rows: usize) -> Result<BulkBenchReport, String> {
    let emu = start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let base = emu.base_url();
    let addr = base.trim_start_matches("http://").to_string();
    let tok = request(
        &addr,
        "POST",
        "/services/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=ferry",
    )
    .await?
    .json();
    let bearer = format!(
        "Bearer {}",
        tok["access_token"].as_str().unwrap_or_default()
    );
    let auth = [("Authorization", bearer.as_str())];
    let jauth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let v = "/services/data/v59.0";

    // ---- ingest
    let header = "Name,AccountNumber,Phone,Website,Industry,NumberOfEmployees,AnnualRevenue,BillingCity,BillingCountry,Description\n";
    let per_upload = 250_000usize;
    let mut uploads = Vec::new();
    let mut i = 0usize;
    while i < rows {
        let n = per_upload.min(rows - i);
        let mut csv = String::with_capacity(n * 110 + header.len());
        csv.push_str(header);
        for k in i..i + n {
            csv.push_str(&format!(
                "Account {k},AN-{k},+1 555 {:04},https://a{k}.example.com,Energy,{},{}.5,Springfield,USA,Benchmark row {k}\n",
                k % 10_000,
                k % 5000,
                k * 3
            ));
        }
        uploads.push(csv);
        i += n;
    }
    let r = request(
        &addr,
        "POST",
        &format!("{v}/jobs/ingest"),
        &jauth,
        serde_json::to_vec(&json!({"object": "Account", "operation": "insert"}))
            .unwrap_or_default()
            .as_slice(),
    )
    .await?;
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    let t0 = Instant::now();
    for u in &uploads {
        let r = request(
            &addr,
            "PUT",
            &format!("{v}/jobs/ingest/{id}/batches"),
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "text/csv"),
            ],
            u.as_bytes(),
        )
        .await?;
        if r.status != 201 {
            return Err(format!("upload: {}", r.status));
        }
    }
    drop(uploads);
    request(
        &addr,
        "PATCH",
        &format!("{v}/jobs/ingest/{id}"),
        &jauth,
        br#"{"state":"UploadComplete"}"#,
    )
    .await?;
    let info = wait_job(&addr, &auth, &format!("{v}/jobs/ingest/{id}")).await?;
    let ingest_s = t0.elapsed().as_secs_f64();
    if info["numberRecordsProcessed"].as_u64() != Some(rows as u64)
        || info["numberRecordsFailed"].as_u64() != Some(0)
    {
        return Err(format!("ingest result: {info}"));
    }

    // ---- query export
    let t1 = Instant::now();
    let r = request(
        &addr,
        "POST",
        &format!("{v}/jobs/query"),
        &jauth,
        serde_json::to_vec(&json!({"operation": "query", "query": "SELECT Id, Name, AccountNumber, Phone, Website, Industry, NumberOfEmployees, AnnualRevenue, BillingCity, Description FROM Account"}))
            .unwrap_or_default()
            .as_slice(),
    )
    .await?;
    let qid = r.json()["id"].as_str().unwrap_or_default().to_string();
    wait_job(&addr, &auth, &format!("{v}/jobs/query/{qid}")).await?;
    let mut locator: Option<String> = None;
    let mut got = 0usize;
    let mut bytes = 0usize;
    loop {
        let path = match &locator {
            None => format!("{v}/jobs/query/{qid}/results?maxRecords=100000"),
            Some(l) => format!("{v}/jobs/query/{qid}/results?locator={l}&maxRecords=100000"),
        };
        let p = request(&addr, "GET", &path, &auth, b"").await?;
        got += p
            .header("Sforce-NumberOfRecords")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        bytes += p.body.len();
        match p.header("Sforce-Locator") {
            Some("null") | None => break,
            Some(l) => locator = Some(l.to_string()),
        }
    }
    let query_s = t1.elapsed().as_secs_f64();
    if got < rows {
        return Err(format!("query returned {got} rows"));
    }
    let report = BulkBenchReport {
        rows,
        ingest_seconds: ingest_s,
        ingest_rows_per_sec: rows as f64 / ingest_s,
        query_seconds: query_s,
        query_rows_per_sec: got as f64 / query_s,
        query_csv_bytes: bytes,
        peak_rss_mb: peak_rss_mb(),
    };
    emu.shutdown().await;
    Ok(report)
}
