//! The lock-contention model (issue 4): the same 20,000 Contacts of 200 Accounts loaded
//! through Bulk 1.0 in two batches of 10,000. Parallel + unsorted → `UNABLE_TO_LOCK_ROW`;
//! Parallel + sorted by AccountId → none; Serial → none. Bulk 2.0 ingest contends too.

mod bulkutil;
mod common;

use bulkutil::{A, V, async_call, ingest, text, wait_v1_batch, xml_tag};
use common::Emu;
use ferry_salesforce_emulator::Seed;
use serde_json::json;

const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

async fn accounts(e: &Emu) -> Vec<String> {
    let mut csv = String::from("Name\n");
    for i in 0..200 {
        csv.push_str(&format!("Parent {i:03}\n"));
    }
    let (_, info) = ingest(e, json!({"object": "Account", "operation": "insert"}), &csv).await;
    assert_eq!(info["numberRecordsFailed"], 0);
    let q = e.query("SELECT Id FROM Account ORDER BY Name").await;
    q.json()["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["Id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// 20,000 contacts, 100 per account; `sorted` groups them by account, otherwise
/// round-robin over the accounts (every batch touches every account).
fn contacts(accts: &[String], sorted: bool) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(20_000);
    for i in 0..20_000usize {
        let a = if sorted { i / 100 } else { i % 200 };
        out.push((format!("C{i:05}"), accts[a].clone()));
    }
    out
}

/// Loads rows through a Bulk 1.0 CSV job in batches of 10,000; returns the lock errors.
async fn load_v1(e: &Emu, rows: &[(String, String)], mode: &str) -> usize {
    let r = async_call(
        e,
        "POST",
        &format!("{A}/job"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><operation>insert</operation><object>Contact</object><concurrencyMode>{mode}</concurrencyMode><contentType>CSV</contentType></jobInfo>").as_bytes(),
    )
    .await;
    let job = xml_tag(&text(&r), "id");
    assert_eq!(xml_tag(&text(&r), "concurrencyMode"), mode);
    let mut batches = Vec::new();
    for chunk in rows.chunks(10_000) {
        let mut csv = String::from("LastName,AccountId\n");
        for (n, a) in chunk {
            csv.push_str(&format!("{n},{a}\n"));
        }
        let r = async_call(
            e,
            "POST",
            &format!("{A}/job/{job}/batch"),
            "text/csv",
            csv.as_bytes(),
        )
        .await;
        assert_eq!(r.status.as_u16(), 201);
        batches.push(xml_tag(&text(&r), "id"));
    }
    async_call(
        e,
        "POST",
        &format!("{A}/job/{job}"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><state>Closed</state></jobInfo>").as_bytes(),
    )
    .await;
    let mut lock_errors = 0;
    for b in &batches {
        let info = wait_v1_batch(e, &job, b).await;
        assert_eq!(xml_tag(&info, "state"), "Completed", "{info}");
        let r = async_call(
            e,
            "GET",
            &format!("{A}/job/{job}/batch/{b}/result"),
            "",
            b"",
        )
        .await;
        let t = text(&r);
        assert_eq!(t.lines().count(), 10_001);
        for l in t.lines().filter(|l| l.contains("UNABLE_TO_LOCK_ROW")) {
            assert!(
                l.starts_with("\"\",\"false\",\"false\",\"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: 001"),
                "{l}"
            );
            lock_errors += 1;
        }
    }
    lock_errors
}

#[tokio::test]
async fn parallel_unsorted_contends_sorted_and_serial_do_not() {
    let e = Emu::new(Seed::Empty).await;
    // gather both batches into one window however slowly the test uploads them
    e.admin("PUT", "/__emulator/bulk", json!({"gatherMs": 60_000}))
        .await;
    let accts = accounts(&e).await;
    assert_eq!(accts.len(), 200);

    let unsorted = contacts(&accts, false);
    let errors = load_v1(&e, &unsorted, "Parallel").await;
    assert_eq!(errors, 10_000, "the second batch loses every row");

    let sorted = contacts(&accts, true);
    assert_eq!(load_v1(&e, &sorted, "Parallel").await, 0);

    assert_eq!(load_v1(&e, &unsorted, "Serial").await, 0);

    let q = e.query("SELECT COUNT() FROM Contact").await;
    assert_eq!(q.json()["totalSize"], 50_000);

    // a retry budget of one holder absorbs the contention of a two-batch window
    e.admin("PUT", "/__emulator/bulk", json!({"retryBudget": 1}))
        .await;
    assert_eq!(load_v1(&e, &unsorted, "Parallel").await, 0);
    // and the model can be switched off
    e.admin(
        "PUT",
        "/__emulator/bulk",
        json!({"retryBudget": 0, "lockContention": false}),
    )
    .await;
    assert_eq!(load_v1(&e, &unsorted, "Parallel").await, 0);
}

#[tokio::test]
async fn bulk2_ingest_batches_contend_too() {
    let e = Emu::new(Seed::Empty).await;
    let accts = accounts(&e).await;
    let mut unsorted = String::from("LastName,AccountId\n");
    for (n, a) in contacts(&accts, false) {
        unsorted.push_str(&format!("{n},{a}\n"));
    }
    let (id, info) = ingest(
        &e,
        json!({"object": "Contact", "operation": "insert"}),
        &unsorted,
    )
    .await;
    assert_eq!(info["numberRecordsProcessed"], 20_000);
    assert_eq!(info["numberRecordsFailed"], 10_000);
    let failed = bulkutil::call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/failedResults"),
        "",
        b"",
    )
    .await;
    assert!(text(&failed).contains(
        "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: 001"
    ));
    let mut sorted = String::from("LastName,AccountId\n");
    for (n, a) in contacts(&accts, true) {
        sorted.push_str(&format!("{n},{a}\n"));
    }
    let (_, info) = ingest(
        &e,
        json!({"object": "Contact", "operation": "insert"}),
        &sorted,
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 0);
}
