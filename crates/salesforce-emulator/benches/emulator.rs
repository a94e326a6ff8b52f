//! Emulator benchmark (`cargo bench -p ferry-salesforce-emulator`): seeds 1M Accounts of
//! 20 fields through the admin API over HTTP, pages through them with REST `/query`
//! (batchSize 2000), and reports rows/s and the process RSS.
//!
//! `EMU_BENCH_ROWS` overrides the row count (default 1,000,000).

use std::time::Instant;

use ferry_salesforce_emulator::{EmulatorConfig, start};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn call(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(host).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let status = String::from_utf8_lossy(&buf[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        buf.get(split + 4..).map(<[u8]>::to_vec).unwrap_or_default(),
    )
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn account(n: u64) -> Json {
    const IND: [&str; 5] = ["Technology", "Retail", "Energy", "Finance", "Healthcare"];
    json!({
        "Name": format!("Account {n}"), "AccountNumber": format!("AN-{n:08}"), "Site": "HQ",
        "Type": "Customer - Direct", "Industry": IND[(n % 5) as usize], "AnnualRevenue": (n % 1000) as f64 * 1000.0,
        "NumberOfEmployees": n % 5000, "Phone": format!("+1 415 555 {:04}", n % 10000), "Fax": "+1 415 555 0000",
        "Website": format!("https://a{n}.example.com"), "BillingStreet": format!("{} Market St", n % 999),
        "BillingCity": "San Francisco", "BillingState": "CA", "BillingPostalCode": "94105", "BillingCountry": "USA",
        "ShippingCity": "Oakland", "Description": "Seeded by the emulator benchmark", "Rating": "Warm",
        "Ownership": "Private", "TickerSymbol": format!("T{}", n % 10000)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::var("EMU_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let emu = start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        daily_api_requests: 10_000_000,
        ..EmulatorConfig::default()
    })
    .await
    .expect("start");
    let host = emu.base_url().trim_start_matches("http://").to_string();
    let rss0 = rss_mb();

    // 1. seed through POST /__emulator/records/Account in chunks of 10,000 JSON records
    let chunk = 10_000u64;
    let mut seed_secs = 0.0;
    let mut n = 0;
    while n < rows {
        let take = chunk.min(rows - n);
        let body =
            serde_json::to_vec(&Json::Array((n..n + take).map(account).collect())).expect("json");
        let t = Instant::now();
        let (status, resp) = call(
            &host,
            "POST",
            "/__emulator/records/Account",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
        seed_secs += t.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        n += take;
    }
    let rss_seeded = rss_mb();
    println!(
        "seed: {rows} Accounts x 20 fields via admin API in {seed_secs:.2}s = {:.0} rows/s",
        rows as f64 / seed_secs
    );
    println!(
        "rss: {rss_seeded:.0} MB with {rows} Accounts (baseline {rss0:.0} MB, delta {:.0} MB)",
        rss_seeded - rss0
    );

    // 2. REST query paging
    let (_, tok) = call(&host, "POST", "/services/oauth2/token", &[("Content-Type", "application/x-www-form-urlencoded")], b"grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=ferry").await;
    let tok: Json = serde_json::from_slice(&tok).expect("token");
    let auth = format!("Bearer {}", tok["access_token"].as_str().unwrap_or(""));
    let t = Instant::now();
    let mut url = "/services/data/v59.0/query?q=SELECT+Id,Name,Industry,AnnualRevenue,BillingCity,SystemModstamp+FROM+Account".to_string();
    let mut got = 0u64;
    loop {
        let (status, body) = call(
            &host,
            "GET",
            &url,
            &[
                ("Authorization", &auth),
                ("Sforce-Query-Options", "batchSize=2000"),
            ],
            b"",
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page: Json = serde_json::from_slice(&body).expect("page");
        got += page["records"].as_array().map_or(0, Vec::len) as u64;
        match page["nextRecordsUrl"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, rows);
    println!(
        "query: paged {got} Accounts (6 fields, batchSize 2000) in {secs:.2}s = {:.0} rows/s",
        got as f64 / secs
    );
    println!("rss: {:.0} MB after paging", rss_mb());
    emu.shutdown().await;
}
