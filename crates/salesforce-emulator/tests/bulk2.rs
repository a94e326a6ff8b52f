//! Raw-protocol tests of Bulk API 2.0 (spec §6 and §0 rules 1–3).

mod bulkutil;
mod common;

use bulkutil::{A, V, call, ingest, text, wait_v2};
use common::Emu;
use ferry_salesforce_emulator::Seed;
use http::StatusCode;
use serde_json::{Value as Json, json};

async fn limit(e: &Emu, key: &str) -> u64 {
    let r = e.api("GET", &format!("{V}/limits"), None).await;
    r.json()[key]["Remaining"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn ingest_insert_lifecycle_and_results() {
    let e = Emu::new(Seed::Empty).await;
    let batches_before = limit(&e, "DailyBulkApiBatches").await;
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Account", "operation": "insert", "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let job = r.json();
    let id = job["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("750") && id.len() == 18);
    assert_eq!(job["state"], "Open");
    assert_eq!(
        job["contentUrl"],
        format!("services/data/v59.0/jobs/ingest/{id}/batches")
    );
    assert_eq!(job["apiVersion"], json!(59.0));
    // key order of a real create response (restforce spec/fixtures/bulk/create_job_success_response.json)
    let keys: Vec<&str> = job
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "id",
            "operation",
            "object",
            "createdById",
            "createdDate",
            "systemModstamp",
            "state",
            "concurrencyMode",
            "contentType",
            "apiVersion",
            "contentUrl",
            "lineEnding",
            "columnDelimiter"
        ]
    );
    assert_eq!(job["concurrencyMode"], "Parallel");
    assert!(r.header("sforce-limit-info").starts_with("api-usage="));

    // two uploads while Open
    for part in [
        "Name,Phone\nAcme,555-0100\n\"Quote \"\"Inc\"\"\",\n",
        "Name,Phone\n,555-0199\n",
    ] {
        let r = call(
            &e,
            "PUT",
            &format!("{V}/jobs/ingest/{id}/batches"),
            "text/csv",
            part.as_bytes(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert!(r.body.is_empty());
    }
    let r = e
        .api(
            "PATCH",
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "UploadComplete"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "UploadComplete");
    // no more uploads
    let r = call(
        &e,
        "PUT",
        &format!("{V}/jobs/ingest/{id}/batches"),
        "text/csv",
        b"Name\nX\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let info = wait_v2(&e, "ingest", &id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 3);
    assert_eq!(info["numberRecordsFailed"], 1);
    assert_eq!(info["jobType"], "V2Ingest");
    for k in [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "jobType",
        "contentUrl",
        "lineEnding",
        "columnDelimiter",
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ] {
        assert!(info.get(k).is_some(), "job info lacks {k}: {info}");
    }
    assert!(
        info["createdDate"]
            .as_str()
            .is_some_and(|d| d.ends_with(".000+0000"))
    );

    let ok = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/successfulResults/"),
        "",
        b"",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("content-type"), "text/csv");
    let body = text(&ok);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "\"sf__Id\",\"sf__Created\",Name,Phone");
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with("\"001") && lines[1].ends_with(",\"true\",\"Acme\",\"555-0100\""));
    assert!(
        lines[2].ends_with(",\"true\",\"Quote \"\"Inc\"\"\",\"\""),
        "{body}"
    );

    let failed = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/FAILEDRESULTS"),
        "",
        b"",
    )
    .await;
    assert_eq!(
        text(&failed),
        "\"sf__Id\",\"sf__Error\",Name,Phone\n\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --\",\"\",\"555-0199\"\n"
    );
    let un = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/unprocessedrecords/"),
        "",
        b"",
    )
    .await;
    assert_eq!(text(&un), "Name,Phone\n");

    let q = e
        .query("SELECT Name, Phone FROM Account ORDER BY Name")
        .await;
    assert_eq!(q.json()["totalSize"], 2);
    assert!(limit(&e, "DailyBulkApiBatches").await < batches_before);

    // list and delete
    let l = e.api("GET", &format!("{V}/jobs/ingest"), None).await;
    assert_eq!(l.json()["done"], true);
    assert!(l.json()["nextRecordsUrl"].is_null());
    assert!(
        l.json()["records"]
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j["id"] == json!(id)))
    );
    let d = e
        .api("DELETE", &format!("{V}/jobs/ingest/{id}"), None)
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let g = e.api("GET", &format!("{V}/jobs/ingest/{id}"), None).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn update_semantics_null_unchanged_and_relationship_columns() {
    let e = Emu::new(Seed::Empty).await;
    bulkutil::add_ext_id(&e, "Account").await;
    let (_, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Ext__c"}),
        "Ext__c,Name,Phone,Website\nA1,Alpha,111,a.example\nA2,Beta,222,b.example\n",
    )
    .await;
    assert_eq!(info["numberRecordsProcessed"], 2, "{info}");
    assert_eq!(info["externalIdFieldName"], "Ext__c");
    // upsert again: empty cell leaves Phone alone, #N/A clears Website
    let (id, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Ext__c"}),
        "Ext__c,Name,Phone,Website\nA1,Alpha2,,#N/A\nA3,Gamma,333,\n",
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 0, "{info}");
    let ok = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/successfulResults"),
        "",
        b"",
    )
    .await;
    let body = text(&ok);
    assert!(body.contains(",\"false\",\"A1\",\"Alpha2\""), "{body}");
    assert!(body.contains(",\"true\",\"A3\",\"Gamma\""), "{body}");
    let q = e
        .query("SELECT Name, Phone, Website FROM Account WHERE Ext__c = 'A1'")
        .await;
    let rec = &q.json()["records"][0];
    assert_eq!(rec["Name"], "Alpha2");
    assert_eq!(rec["Phone"], "111");
    assert!(rec["Website"].is_null());

    // children through a relationship column
    let (id, info) = ingest(
        &e,
        json!({"object": "Contact", "operation": "insert"}),
        "LastName,Account.Ext__c\nSmith,A1\nJones,A2\nNobody,ZZZ\n",
    )
    .await;
    assert_eq!(info["numberRecordsProcessed"], 3);
    assert_eq!(info["numberRecordsFailed"], 1);
    let q = e
        .query("SELECT LastName, Account.Name FROM Contact ORDER BY LastName")
        .await;
    assert_eq!(q.json()["records"][0]["Account"]["Name"], "Beta");
    let failed = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/failedResults/"),
        "",
        b"",
    )
    .await;
    let body = text(&failed);
    assert!(body.starts_with("\"sf__Id\",\"sf__Error\",LastName,Account.Ext__c\n"));
    assert!(
        body.contains("INVALID_FIELD:Foreign key external ID: ZZZ not found"),
        "{body}"
    );

    // update by Id and delete: sf__Id echoes the id
    let q = e
        .query("SELECT Id FROM Contact WHERE LastName = 'Smith'")
        .await;
    let cid = q.json()["records"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, info) = ingest(
        &e,
        json!({"object": "Contact", "operation": "update"}),
        &format!("Id,LastName\n{cid},Smythe\n003000000000000AAA,Ghost\n"),
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 1);
    let (id, info) = ingest(
        &e,
        json!({"object": "Contact", "operation": "delete"}),
        &format!("Id\n{cid}\n"),
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 0);
    let ok = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/successfulResults"),
        "",
        b"",
    )
    .await;
    assert_eq!(
        text(&ok),
        format!("\"sf__Id\",\"sf__Created\",Id\n\"{cid}\",\"false\",\"{cid}\"\n")
    );
    let q = e.query("SELECT Id FROM Contact").await;
    assert_eq!(q.json()["totalSize"], 1);
}

#[tokio::test]
async fn create_validation_delimiters_and_line_endings() {
    let e = Emu::new(Seed::Empty).await;
    for (body, code) in [
        (
            json!({"object": "Account", "operation": "upsert"}),
            "INVALIDJOB",
        ),
        (
            json!({"object": "Nope__c", "operation": "insert"}),
            "INVALIDENTITY",
        ),
        (
            json!({"object": "Account", "operation": "merge"}),
            "INVALIDJOB",
        ),
        (
            json!({"object": "Account", "operation": "insert", "columnDelimiter": "COLON"}),
            "JSON_PARSER_ERROR",
        ),
        (
            json!({"object": "Account", "operation": "insert", "lineEnding": "CR"}),
            "JSON_PARSER_ERROR",
        ),
    ] {
        let r = e.api("POST", &format!("{V}/jobs/ingest"), Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()[0]["errorCode"], code, "{}", text(&r));
    }
    // PIPE + CRLF
    let (id, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "insert", "columnDelimiter": "PIPE", "lineEnding": "CRLF"}),
        "Name|Phone\r\nPiped|1|2\r\n",
    )
    .await;
    assert_eq!(info["state"], "Failed", "{info}");
    assert!(
        info["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("InvalidBatch"))
    );
    let un = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/unprocessedrecords"),
        "",
        b"",
    )
    .await;
    assert_eq!(text(&un), "Name|Phone\r\nPiped|1|2\r\n");
    let (id, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "insert", "columnDelimiter": "PIPE", "lineEnding": "CRLF"}),
        "Name|Phone\r\nPiped|1\r\n",
    )
    .await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    let ok = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/successfulResults"),
        "",
        b"",
    )
    .await;
    let body = text(&ok);
    assert!(
        body.starts_with("\"sf__Id\"|\"sf__Created\"|Name|Phone\r\n"),
        "{body}"
    );
    assert!(body.ends_with("|\"true\"|\"Piped\"|\"1\"\r\n"));
    // line ending mismatch fails the job
    let (_, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "insert"}),
        "Name\r\nWindows\r\n",
    )
    .await;
    assert_eq!(info["state"], "Failed");
    assert!(
        info["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("LineEnding is invalid")),
        "{info}"
    );
    // unknown column
    let (_, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "insert"}),
        "Name,Bogus__c\nX,1\n",
    )
    .await;
    assert_eq!(
        info["errorMessage"],
        "InvalidBatch : Field name not found : Bogus__c"
    );
    // every delimiter name is accepted
    for d in ["COMMA", "TAB", "PIPE", "SEMICOLON", "CARET", "BACKQUOTE"] {
        let r = e
            .api(
                "POST",
                &format!("{V}/jobs/ingest"),
                Some(json!({"object": "Account", "operation": "insert", "columnDelimiter": d})),
            )
            .await;
        assert_eq!(r.json()["columnDelimiter"], d);
    }
}

#[tokio::test]
async fn abort_before_upload_complete() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Account", "operation": "insert"})),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    call(
        &e,
        "PUT",
        &format!("{V}/jobs/ingest/{id}/batches"),
        "text/csv",
        b"Name\nA\nB\n",
    )
    .await;
    let r = e
        .api(
            "PATCH",
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "Aborted"})),
        )
        .await;
    assert_eq!(r.json()["state"], "Aborted");
    let un = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/unprocessedrecords/"),
        "",
        b"",
    )
    .await;
    assert_eq!(text(&un), "Name\nA\nB\n");
    let q = e.query("SELECT Id FROM Account").await;
    assert_eq!(q.json()["totalSize"], 0);
}

async fn seed_accounts(e: &Emu, n: usize) {
    let mut csv = String::from("Name,NumberOfEmployees,AnnualRevenue\n");
    for i in 0..n {
        csv.push_str(&format!("Acct {i:05},{i},{}.5\n", i * 10));
    }
    let (_, info) = ingest(e, json!({"object": "Account", "operation": "insert"}), &csv).await;
    assert_eq!(info["numberRecordsFailed"], 0);
}

#[tokio::test]
async fn query_job_pages_with_locator() {
    let e = Emu::new(Seed::Empty).await;
    seed_accounts(&e, 25).await;
    let jobs_before = limit(&e, "DailyBulkV2QueryJobs").await;
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/query"),
            Some(json!({"operation": "query", "query": "SELECT Id, Name, NumberOfEmployees, AnnualRevenue, CreatedDate, Owner.Name FROM Account ORDER BY Name", "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(r.json()["state"], "UploadComplete");
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(limit(&e, "DailyBulkV2QueryJobs").await, jobs_before - 1);
    let info = wait_v2(&e, "query", &id).await;
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(info["numberRecordsProcessed"], 25);
    assert!(info.get("isPkChunkingSupported").is_some());
    assert_eq!(
        limit(&e, "DailyBulkV2QueryFileStorageMB").await,
        1_048_575,
        "result storage is counted (rounded up to whole MB)"
    );

    let mut locator: Option<String> = None;
    let mut rows = Vec::new();
    let mut pages = 0;
    loop {
        let uri = match &locator {
            None => format!("{V}/jobs/query/{id}/results?maxRecords=10"),
            Some(l) => format!("{V}/jobs/query/{id}/results?locator={l}&maxRecords=10"),
        };
        let p = call(&e, "GET", &uri, "", b"").await;
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.header("content-type"), "text/csv");
        let body = text(&p);
        let mut lines = body.lines();
        assert_eq!(
            lines.next(),
            Some(
                "\"Id\",\"Name\",\"NumberOfEmployees\",\"AnnualRevenue\",\"CreatedDate\",\"Owner.Name\""
            )
        );
        let page: Vec<String> = lines.map(str::to_string).collect();
        assert_eq!(p.header("sforce-numberofrecords"), page.len().to_string());
        rows.extend(page);
        pages += 1;
        let l = p.header("sforce-locator");
        if l == "null" {
            break;
        }
        assert!(
            l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        locator = Some(l);
    }
    assert_eq!(pages, 3);
    assert_eq!(rows.len(), 25);
    let first: Vec<&str> = rows[0].split(',').collect();
    assert!(first[0].starts_with("\"001") && first[0].len() == 20);
    assert_eq!(first[1], "\"Acct 00000\"");
    assert_eq!(first[2], "\"0\"");
    assert_eq!(first[3], "\"0.5\"");
    assert!(first[4].ends_with(".000Z\""), "{}", rows[0]);
    assert!(first[5].len() > 2);
    // default page: everything, locator null
    let p = call(&e, "GET", &format!("{V}/jobs/query/{id}/results"), "", b"").await;
    assert_eq!(p.header("sforce-locator"), "null");
    assert_eq!(p.header("sforce-numberofrecords"), "25");
    // without maxRecords pages are cut by size
    e.admin("PUT", "/__emulator/bulk", json!({"defaultPageBytes": 200}))
        .await;
    let p = call(&e, "GET", &format!("{V}/jobs/query/{id}/results"), "", b"").await;
    let n: usize = p.header("sforce-numberofrecords").parse().unwrap_or(0);
    assert!((1..25).contains(&n), "{n}");
    assert_ne!(p.header("sforce-locator"), "null");
    e.admin("DELETE", "/__emulator/bulk", json!({})).await;
    // bad locator
    let p = call(
        &e,
        "GET",
        &format!("{V}/jobs/query/{id}/results?locator=%%%"),
        "",
        b"",
    )
    .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let d = e.api("DELETE", &format!("{V}/jobs/query/{id}"), None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn query_job_rejections_and_query_all() {
    let e = Emu::new(Seed::Empty).await;
    seed_accounts(&e, 3).await;
    let cases = [
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        ("SELECT COUNT(Id) FROM Account", "API_ERROR"),
        (
            "SELECT Name, COUNT(Id) FROM Account GROUP BY Name",
            "API_ERROR",
        ),
        ("SELECT Id FROM Account LIMIT 1 OFFSET 1", "API_ERROR"),
        (
            "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
            "API_ERROR",
        ),
        ("SELECT BillingAddress FROM Account", "INVALID_FIELD"),
    ];
    for (q, code) in cases {
        let r = e
            .api(
                "POST",
                &format!("{V}/jobs/query"),
                Some(json!({"operation": "query", "query": q})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        let j = r.json();
        assert!(j.is_array(), "{j}");
        if code != "INVALID_TYPE" {
            assert_eq!(j[0]["errorCode"], code, "{q}: {j}");
        } else {
            assert!(
                j[0]["errorCode"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("INVALID"))
            );
        }
    }
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/query"),
            Some(json!({"operation": "query", "query": "SELECT BillingAddress FROM Account"})),
        )
        .await;
    assert_eq!(
        r.json()[0]["message"],
        "Selecting compound data not supported in Bulk Query"
    );
    // queryAll sees deleted rows
    let q = e.query("SELECT Id FROM Account LIMIT 1").await;
    let aid = q.json()["records"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    e.api("DELETE", &format!("{V}/sobjects/Account/{aid}"), None)
        .await;
    for (op, n) in [("query", 2), ("queryAll", 3)] {
        let r = e
            .api(
                "POST",
                &format!("{V}/jobs/query"),
                Some(json!({"operation": op, "query": "SELECT Id, IsDeleted FROM Account"})),
            )
            .await;
        let id = r.json()["id"].as_str().unwrap_or_default().to_string();
        let info = wait_v2(&e, "query", &id).await;
        assert_eq!(info["numberRecordsProcessed"], n, "{op}");
    }
}

#[tokio::test]
async fn query_timeout_and_admin_faults() {
    let e = Emu::new(Seed::Empty).await;
    seed_accounts(&e, 30).await;
    let r = e
        .admin("PUT", "/__emulator/bulk", json!({"queryTimeoutRows": 10}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/query"),
            Some(json!({"operation": "query", "query": "SELECT Id FROM Account"})),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    let info = wait_v2(&e, "query", &id).await;
    assert_eq!(info["state"], "Failed");
    assert!(
        info["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("QUERY_TIMEOUT"))
    );
    e.admin("DELETE", "/__emulator/bulk", json!({})).await;

    // stall, observe InProgress/UploadComplete, then fail it
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Account", "operation": "insert"})),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = e
        .admin(
            "POST",
            &format!("/__emulator/bulk/jobs/{id}/stall"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    call(
        &e,
        "PUT",
        &format!("{V}/jobs/ingest/{id}/batches"),
        "text/csv",
        b"Name\nStalled\n",
    )
    .await;
    e.api(
        "PATCH",
        &format!("{V}/jobs/ingest/{id}"),
        Some(json!({"state": "UploadComplete"})),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let g = e.api("GET", &format!("{V}/jobs/ingest/{id}"), None).await;
    assert_eq!(g.json()["state"], "UploadComplete");
    e.admin(
        "POST",
        &format!("/__emulator/bulk/jobs/{id}/fail"),
        json!({"message": "InternalError : injected"}),
    )
    .await;
    let info = wait_v2(&e, "ingest", &id).await;
    assert_eq!(info["state"], "Failed");
    assert_eq!(info["errorMessage"], "InternalError : injected");
    let q = e
        .query("SELECT Id FROM Account WHERE Name = 'Stalled'")
        .await;
    assert_eq!(q.json()["totalSize"], 0);
    let un = call(
        &e,
        "GET",
        &format!("{V}/jobs/ingest/{id}/unprocessedrecords"),
        "",
        b"",
    )
    .await;
    assert!(text(&un).contains("Stalled"));
}

#[tokio::test]
async fn auth_and_injected_http_faults_apply() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .send(
            "GET",
            &format!("{V}/jobs/ingest"),
            &[("authorization", "Bearer bad")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()[0]["errorCode"], "INVALID_SESSION_ID");
    let r = e
        .admin(
            "PUT",
            "/__emulator/faults",
            json!({"errorRate": 1.0, "errorStatus": 503}),
        )
        .await;
    assert!(r.status.is_success());
    let r = e.api("GET", &format!("{V}/jobs/query"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = bulkutil::async_call(&e, "GET", &format!("{A}/job/750000000000001"), "", b"").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = e.admin("DELETE", "/__emulator/faults", Json::Null).await;
    assert!(r.status.is_success());
}

#[tokio::test]
async fn hard_delete_skips_the_recycle_bin() {
    let e = Emu::new(Seed::Empty).await;
    seed_accounts(&e, 3).await;
    let q = e.query("SELECT Id FROM Account ORDER BY Name").await;
    let ids: Vec<String> = q.json()["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["Id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (_, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "hardDelete"}),
        &format!("Id\n{}\n", ids[0]),
    )
    .await;
    assert_eq!(info["operation"], "hardDelete");
    assert_eq!(info["numberRecordsFailed"], 0);
    let (_, info) = ingest(
        &e,
        json!({"object": "Account", "operation": "delete"}),
        &format!("Id\n{}\n", ids[1]),
    )
    .await;
    assert_eq!(info["numberRecordsFailed"], 0);
    let q = e.query("SELECT Id FROM Account").await;
    assert_eq!(q.json()["totalSize"], 1);
    let all = e
        .api(
            "GET",
            &format!("{V}/queryAll?q=SELECT+Id+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(
        all.json()["totalSize"],
        2,
        "the soft-deleted row stays in queryAll"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_harness_runs_on_a_small_load() {
    let r = ferry_salesforce_emulator::bulk_bench::run(2_000)
        .await
        .expect("bench");
    assert_eq!(r.rows, 2_000);
    assert!(r.ingest_rows_per_sec > 0.0 && r.query_rows_per_sec > 0.0);
    assert!(r.query_csv_bytes > 2_000 * 50);
}

#[tokio::test]
async fn jobs_survive_an_org_reset_without_panicking() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .admin(
            "POST",
            "/__emulator/objects",
            json!({"name": "Invoice__c", "fields": [{"name": "Total__c", "type": "currency"}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", text(&r));
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Invoice__c", "operation": "insert"})),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    call(
        &e,
        "PUT",
        &format!("{V}/jobs/ingest/{id}/batches"),
        "text/csv",
        b"Name,Total__c\nI-1,10\n",
    )
    .await;
    let r = e
        .admin("POST", "/__emulator/reset", json!({"seed": "empty"}))
        .await;
    assert!(r.status.is_success(), "{}", text(&r));
    let r = e
        .api(
            "PATCH",
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "UploadComplete"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let info = wait_v2(&e, "ingest", &id).await;
    assert_eq!(info["state"], "Failed", "{info}");
    assert!(
        info["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Invoice__c"))
    );
}

#[tokio::test]
async fn daily_bulk_allowances_are_enforced() {
    use std::sync::atomic::Ordering;
    let e = Emu::new(Seed::Empty).await;
    e.state.bulk_batches_used.store(15_000, Ordering::Relaxed);
    e.state
        .bulk_query_jobs_used
        .store(10_000, Ordering::Relaxed);
    assert_eq!(limit(&e, "DailyBulkApiBatches").await, 0);
    assert_eq!(limit(&e, "DailyBulkV2QueryJobs").await, 0);
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/ingest"),
            Some(json!({"object": "Account", "operation": "insert"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()[0]["errorCode"], "LIMIT_EXCEEDED");
    let r = e
        .api(
            "POST",
            &format!("{V}/jobs/query"),
            Some(json!({"operation": "query", "query": "SELECT Id FROM Account"})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "LIMIT_EXCEEDED");
    let r = bulkutil::async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/json",
        br#"{"operation":"insert","object":"Account","contentType":"CSV"}"#,
    )
    .await;
    let job = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = bulkutil::async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "text/csv",
        b"Name\nX\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(text(&r).contains("<exceptionCode>ExceededQuota</exceptionCode>"));
}

#[tokio::test]
async fn multipart_create_uploads_and_closes_in_one_request() {
    let e = Emu::new(Seed::Empty).await;
    let body = "--BOUNDARY\r\nContent-Type: application/json\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n{\"object\":\"Contact\",\"contentType\":\"CSV\",\"operation\":\"insert\"}\r\n--BOUNDARY\r\nContent-Type: text/csv\r\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\r\n\r\nLastName,Email\nMulti,m@example.com\n\r\n--BOUNDARY--\r\n";
    let r = call(
        &e,
        "POST",
        &format!("{V}/jobs/ingest"),
        "multipart/form-data; boundary=BOUNDARY",
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(r.json()["state"], "UploadComplete");
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    let info = wait_v2(&e, "ingest", &id).await;
    assert_eq!(info["numberRecordsProcessed"], 1, "{info}");
    let q = e
        .query("SELECT Email FROM Contact WHERE LastName = 'Multi'")
        .await;
    assert_eq!(q.json()["records"][0]["Email"], "m@example.com");
}
