//! Raw-protocol tests of Bulk API 1.0 (spec §7, §0 rules 4, 5, 14), with XML element order
//! checked against the recorded CumulusCI traffic in `shared/reference/salesforce-recordings`.

mod bulkutil;
mod common;

use bulkutil::{A, async_call, element_order, text, wait_v1_batch, xml_tag};
use common::Emu;
use ferry_salesforce_emulator::Seed;
use http::StatusCode;
use serde_json::{Value as Json, json};

const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

fn recording(name: &str) -> Option<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/salesforce-recordings");
    let alt = std::path::Path::new("/work/shared/reference/salesforce-recordings");
    std::fs::read_to_string(dir.join(name))
        .or_else(|_| std::fs::read_to_string(alt.join(name)))
        .ok()
}

/// Element order of a recorded template (the `{var}` placeholders are values).
fn template_order(name: &str, fallback: &[&str]) -> Vec<String> {
    match recording(name) {
        Some(t) => element_order(&t),
        None => fallback.iter().map(|s| (*s).to_string()).collect(),
    }
}

const JOB_ORDER: [&str; 23] = [
    "jobInfo",
    "id",
    "operation",
    "object",
    "createdById",
    "createdDate",
    "systemModstamp",
    "state",
    "concurrencyMode",
    "contentType",
    "numberBatchesQueued",
    "numberBatchesInProgress",
    "numberBatchesCompleted",
    "numberBatchesFailed",
    "numberBatchesTotal",
    "numberRecordsProcessed",
    "numberRetries",
    "apiVersion",
    "numberRecordsFailed",
    "totalProcessingTime",
    "apiActiveProcessingTime",
    "apexProcessingTime",
    "",
];

#[tokio::test]
async fn xml_csv_upsert_job_matches_the_recording() {
    let e = Emu::new(Seed::Empty).await;
    // job create exactly as the recorded CumulusCI request
    let body = format!(
        "<jobInfo xmlns=\"{NS}\"><operation>upsert</operation><object>Contact</object><externalIdFieldName>Id</externalIdFieldName><concurrencyMode>Parallel</concurrencyMode><contentType>CSV</contentType></jobInfo>"
    );
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/xml; charset=UTF-8",
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", text(&r));
    assert_eq!(r.header("content-type"), "application/xml");
    let t = text(&r);
    assert!(t.starts_with(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><jobInfo\n   xmlns=\"{NS}\">\n <id>750"
    )));
    let mut want: Vec<String> = JOB_ORDER[..22].iter().map(|s| (*s).to_string()).collect();
    want.insert(8, "externalIdFieldName".into());
    assert_eq!(
        element_order(&t),
        template_order(
            "jobInfo_upsert_xml.tpl",
            &want.iter().map(String::as_str).collect::<Vec<_>>()
        )
    );
    assert_eq!(element_order(&t), want);
    assert_eq!(xml_tag(&t, "state"), "Open");
    assert_eq!(xml_tag(&t, "apiVersion"), "59.0");
    assert!(xml_tag(&t, "createdDate").ends_with(".000Z"));
    let job = xml_tag(&t, "id");

    // the recorded batch: quoted CSV with CRLF and empty Ids (→ insert)
    let csv = "\"FirstName\",\"LastName\",\"Email\",\"Id\"\r\n\"Lindsay\",\"Sitwell\",\"lindsay.bluth@example.com\",\"\"\r\n\"Audrey\",\"Cain\",\"audrey.cain@example.com\",\"\"\r\n\"NoLast\",\"\",\"x@example.com\",\"\"\r\n";
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "text/csv",
        csv.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("content-type"), "application/xml");
    let t = text(&r);
    let batch = xml_tag(&t, "id");
    assert!(batch.starts_with("751"));
    assert_eq!(
        r.header("location"),
        format!("/services/async/59.0/job/{job}/batch/{batch}")
    );
    let border = [
        "batchInfo",
        "id",
        "jobId",
        "state",
        "createdDate",
        "systemModstamp",
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ];
    assert_eq!(
        element_order(&t),
        template_order("batchInfo_xml.tpl", &border)
    );
    assert_eq!(xml_tag(&t, "state"), "Queued");

    let info = wait_v1_batch(&e, &job, &batch).await;
    assert_eq!(xml_tag(&info, "state"), "Completed");
    assert_eq!(xml_tag(&info, "numberRecordsProcessed"), "3");
    assert_eq!(xml_tag(&info, "numberRecordsFailed"), "1");

    // close
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}"),
        "application/xml; charset=UTF-8",
        format!("<jobInfo xmlns=\"{NS}\"><state>Closed</state></jobInfo>").as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = text(&r);
    assert_eq!(xml_tag(&t, "state"), "Closed");
    assert_eq!(xml_tag(&t, "numberBatchesCompleted"), "1");
    assert_eq!(xml_tag(&t, "numberBatchesTotal"), "1");
    assert_eq!(xml_tag(&t, "numberRecordsProcessed"), "3");

    // batch list
    let r = async_call(&e, "GET", &format!("{A}/job/{job}/batch"), "", b"").await;
    let t = text(&r);
    let mut lorder = vec!["batchInfoList".to_string()];
    lorder.extend(border.iter().map(|s| (*s).to_string()));
    let lref: Vec<&str> = lorder.iter().map(String::as_str).collect();
    assert_eq!(
        element_order(&t),
        template_order("batchInfoList_xml.tpl", &lref)
    );

    // results in input order, every value quoted
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result"),
        "application/xml",
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), "text/csv");
    let t = text(&r);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "\"Id\",\"Success\",\"Created\",\"Error\"");
    assert!(lines[1].starts_with("\"003") && lines[1].ends_with("\",\"true\",\"true\",\"\""));
    assert!(lines[2].ends_with("\",\"true\",\"true\",\"\""));
    assert_eq!(
        lines[3],
        "\"\",\"false\",\"false\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\""
    );
    // the request is kept
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/request"),
        "",
        b"",
    )
    .await;
    assert_eq!(text(&r), csv);
    // closed jobs take no batches
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "text/csv",
        b"LastName\nX\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(xml_tag(&text(&r), "exceptionCode"), "InvalidJobState");
}

#[tokio::test]
async fn json_jobs_answer_json_and_accept_integer_concurrency() {
    let e = Emu::new(Seed::Empty).await;
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/json",
        br#"{"operation":"insert","object":"Account","contentType":"JSON","concurrencyMode":1}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", text(&r));
    assert_eq!(r.header("content-type"), "application/json");
    let j = r.json();
    assert_eq!(j["concurrencyMode"], "Serial");
    assert_eq!(j["contentType"], "JSON");
    assert_eq!(j["state"], "Open");
    let keys: Vec<&String> = j
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "JSON jobInfo keys are sorted like Salesforce's"
    );
    let job = j["id"].as_str().unwrap_or_default().to_string();
    // GET job with an XML content type answers XML (rule 5: /job/{id} follows the request)
    let r = async_call(&e, "GET", &format!("{A}/job/{job}"), "application/xml", b"").await;
    assert_eq!(r.header("content-type"), "application/xml");
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "application/json",
        br#"[{"Name":"J1","NumberOfEmployees":5},{"Name":null},{"Name":"J3","Phone":"1"}]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("content-type"), "application/json");
    let b = r.json();
    assert_eq!(b["state"], "Queued");
    assert!(b["stateMessage"].is_null());
    let batch = b["id"].as_str().unwrap_or_default().to_string();
    // batch resources answer in the job's family even when asked with XML
    let info = wait_v1_batch(&e, &job, &batch).await;
    let info: Json = serde_json::from_str(&info).unwrap_or(Json::Null);
    assert_eq!(info["state"], "Completed");
    assert!(
        info["createdDate"]
            .as_str()
            .is_some_and(|d| d.ends_with(".000+0000"))
    );
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result"),
        "application/xml",
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), "application/json");
    let res = r.json();
    assert_eq!(res[0]["success"], true);
    assert_eq!(res[0]["created"], true);
    assert_eq!(res[0]["errors"], json!([]));
    assert!(res[1]["id"].is_null());
    assert_eq!(res[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(res[1]["errors"][0]["fields"], json!(["Name"]));
    assert_eq!(res[2]["success"], true);
    let r = async_call(&e, "GET", &format!("{A}/job/{job}/batch"), "", b"").await;
    assert_eq!(r.json()["batchInfo"][0]["id"], json!(batch));
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}"),
        "application/json",
        br#"{"state":"Closed"}"#,
    )
    .await;
    assert_eq!(r.json()["state"], "Closed");
    assert_eq!(r.json()["numberRecordsFailed"], 1);
}

#[tokio::test]
async fn xml_batches_and_results() {
    let e = Emu::new(Seed::Empty).await;
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><operation>insert</operation><object>Account</object><contentType>XML</contentType></jobInfo>").as_bytes(),
    )
    .await;
    let job = xml_tag(&text(&r), "id");
    let batch_xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sObjects xmlns=\"{NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><sObject><Name>X &amp; Co</Name><Phone xsi:nil=\"true\"/></sObject><sObject><Phone>1</Phone></sObject></sObjects>"
    );
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "application/xml",
        batch_xml.as_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let batch = xml_tag(&text(&r), "id");
    wait_v1_batch(&e, &job, &batch).await;
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result"),
        "",
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), "application/xml");
    let t = text(&r);
    assert_eq!(
        element_order(&t),
        [
            "results",
            "result",
            "id",
            "success",
            "created",
            "result",
            "id",
            "success",
            "created",
            "errors",
            "fields",
            "message",
            "statusCode"
        ]
    );
    assert!(t.contains("<statusCode>REQUIRED_FIELD_MISSING</statusCode>"));
    let q = e.query("SELECT Id, Name FROM Account").await;
    assert_eq!(q.json()["records"][0]["Name"], "X & Co");
    let aid = q.json()["records"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    bulkutil::add_ext_id(&e, "Account").await;
    let r = e
        .api(
            "PATCH",
            &format!("/services/data/v59.0/sobjects/Account/{aid}"),
            Some(json!({"Ext__c": "X-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // parent references in XML, by external id, with a <type>
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><operation>insert</operation><object>Contact</object><contentType>XML</contentType></jobInfo>").as_bytes(),
    )
    .await;
    let job = xml_tag(&text(&r), "id");
    let batch_xml = format!(
        "<sObjects xmlns=\"{NS}\"><sObject><LastName>Kid</LastName><Account><type>Account</type><Ext__c>X-1</Ext__c></Account></sObject></sObjects>"
    );
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "application/xml",
        batch_xml.as_bytes(),
    )
    .await;
    let batch = xml_tag(&text(&r), "id");
    let info = wait_v1_batch(&e, &job, &batch).await;
    let res = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result"),
        "",
        b"",
    )
    .await;
    assert_eq!(xml_tag(&info, "numberRecordsFailed"), "0", "{}", text(&res));
    let q = e.query("SELECT Account.Name FROM Contact").await;
    assert_eq!(q.json()["records"][0]["Account"]["Name"], "X & Co");
}

#[tokio::test]
async fn query_jobs_csv_json_and_pk_chunking() {
    let e = Emu::new(Seed::Empty).await;
    for i in 0..5 {
        e.create(
            "Account",
            json!({"Name": format!("Q{i}"), "NumberOfEmployees": i}),
        )
        .await;
    }
    // tap-salesforce style: JSON job create, CSV content, SOQL posted as text/csv, XML parsing
    let r = e
        .send(
            "POST",
            &format!("{A}/job"),
            &[
                ("x-sfdc-session", e.token.as_str()),
                ("content-type", "application/json"),
                ("sforce-disable-batch-retry", "true"),
                ("sforce-enable-pkchunking", "chunkSize=2; parent=Account"),
            ],
            br#"{"operation":"queryAll","object":"Account","contentType":"CSV"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", text(&r));
    let job = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "text/csv",
        b"SELECT Id, Name, NumberOfEmployees, CreatedDate FROM Account ORDER BY Name",
    )
    .await;
    assert_eq!(r.header("content-type"), "application/xml");
    let batch = xml_tag(&text(&r), "id");
    let info = wait_v1_batch(&e, &job, &batch).await;
    assert_eq!(xml_tag(&info, "state"), "NotProcessed");
    let r = async_call(&e, "GET", &format!("{A}/job/{job}/batch"), "", b"").await;
    let list = text(&r);
    assert_eq!(list.matches("<batchInfo>").count(), 4, "{list}");
    assert_eq!(list.matches("<state>Completed</state>").count(), 3);
    // read every chunk
    let mut names = Vec::new();
    for chunk in list.split("<batchInfo>").skip(1) {
        if !chunk.contains("<state>Completed</state>") {
            continue;
        }
        let bid = xml_tag(chunk, "id");
        let r = async_call(
            &e,
            "GET",
            &format!("{A}/job/{job}/batch/{bid}/result"),
            "",
            b"",
        )
        .await;
        let rl = text(&r);
        assert!(rl.starts_with(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><result-list xmlns=\"{NS}\"><result>752"
        )));
        let rid = xml_tag(&rl, "result");
        let r = async_call(
            &e,
            "GET",
            &format!("{A}/job/{job}/batch/{bid}/result/{rid}"),
            "",
            b"",
        )
        .await;
        assert_eq!(r.header("content-type"), "text/csv");
        let csv = text(&r);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("\"Id\",\"Name\",\"NumberOfEmployees\",\"CreatedDate\"")
        );
        for l in lines {
            names.push(l.split(',').nth(1).unwrap_or("").to_string());
            assert!(l.ends_with(".000Z\""));
        }
    }
    assert_eq!(names, ["\"Q0\"", "\"Q1\"", "\"Q2\"", "\"Q3\"", "\"Q4\""]);

    // simple-salesforce style: JSON everything; dates as epoch ms
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/json",
        br#"{"operation":"query","object":"Account","contentType":"JSON","concurrencyMode":0}"#,
    )
    .await;
    let job = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}/batch"),
        "application/json",
        b"SELECT Id, Name, CreatedDate, Owner.Name FROM Account WHERE Name = 'Q1'",
    )
    .await;
    let batch = r.json()["id"].as_str().unwrap_or_default().to_string();
    wait_v1_batch(&e, &job, &batch).await;
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result"),
        "application/json",
        b"",
    )
    .await;
    let ids = r.json();
    let rid = ids[0].as_str().unwrap_or_default().to_string();
    assert!(rid.starts_with("752"));
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}/batch/{batch}/result/{rid}?format=json"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(r.header("content-type"), "application/json");
    let recs = r.json();
    assert_eq!(recs[0]["attributes"]["type"], "Account");
    assert!(
        recs[0]["attributes"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/services/data/v59.0/sobjects/Account/001"))
    );
    assert!(recs[0]["CreatedDate"].is_i64(), "{recs}");
    assert_eq!(recs[0]["Owner"]["attributes"]["type"], "User");
}

#[tokio::test]
async fn errors_sessions_and_bearer() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .send(
            "POST",
            &format!("{A}/job"),
            &[
                ("x-sfdc-session", "bad"),
                ("content-type", "application/xml"),
            ],
            b"<jobInfo/>".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("content-type"), "application/xml");
    assert_eq!(
        text(&r),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error\n   xmlns=\"{NS}\">\n <exceptionCode>InvalidSessionId</exceptionCode>\n <exceptionMessage>Invalid session id</exceptionMessage>\n</error>"
        )
    );
    let r = e
        .send(
            "GET",
            &format!("{A}/job/750000000000001AAA"),
            &[
                ("x-sfdc-session", "bad"),
                ("content-type", "application/json"),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(r.json()["exceptionCode"], "InvalidSessionId");
    // go-sfdc: Bearer on Bulk 1.0, double slash in the path
    let auth = format!("Bearer {}", e.token);
    let r = e
        .send(
            "POST",
            "//services/async/61.0/job",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            br#"{"operation":"upsert","object":"Account","contentType":"CSV"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["exceptionCode"], "InvalidJob");
    let r = e
        .send(
            "GET",
            "/services/async/61.0/job/75000000000000Z",
            &[("authorization", auth.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(xml_tag(&text(&r), "exceptionCode"), "InvalidJob");
    // zip content types are refused up front
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/json",
        br#"{"operation":"insert","object":"Account","contentType":"ZIP_CSV"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["exceptionCode"], "InvalidJob");
    // abort an open job: queued batches are never processed
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><operation>insert</operation><object>Account</object><contentType>CSV</contentType></jobInfo>").as_bytes(),
    )
    .await;
    let job = xml_tag(&text(&r), "id");
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}"),
        "application/xml",
        format!("<jobInfo xmlns=\"{NS}\"><state>Aborted</state></jobInfo>").as_bytes(),
    )
    .await;
    assert_eq!(xml_tag(&text(&r), "state"), "Aborted");
    let limits = e.api("GET", "/services/data/v59.0/limits", None).await;
    assert!(
        limits.json()["DailyBulkApiBatches"]["Remaining"]
            .as_u64()
            .is_some()
    );
}

#[tokio::test]
async fn finished_jobs_expire_after_seven_days() {
    let e = Emu::new(Seed::Empty).await;
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job"),
        "application/json",
        br#"{"operation":"insert","object":"Account","contentType":"CSV"}"#,
    )
    .await;
    let job = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = async_call(
        &e,
        "POST",
        &format!("{A}/job/{job}"),
        "application/json",
        br#"{"state":"Closed"}"#,
    )
    .await;
    assert_eq!(r.json()["state"], "Closed");
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    e.admin(
        "PUT",
        "/__emulator/clock",
        json!({"advanceSeconds": 8 * 86_400}),
    )
    .await;
    let r = async_call(
        &e,
        "GET",
        &format!("{A}/job/{job}"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["exceptionCode"], "InvalidJob");
}
