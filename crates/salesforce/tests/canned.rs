//! The client against a tiny canned server (axum on `127.0.0.1:0`) that answers with exact
//! Salesforce wire shapes from the spec: Bulk API 2.0 ingest and query (locator paging),
//! Bulk API 1.0 (XML and JSON jobs, `X-SFDC-Session`, `InvalidSessionId`), Tooling,
//! refresh-token rotation, gzip, `Retry-After`, and connection reuse. The emulator's Bulk
//! and Tooling endpoints arrive in a later issue; `tests/emulator_bulk.rs` runs the same
//! flows against it once they exist.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use ferry_salesforce::bulk1::{Bulk1ContentType, Bulk1JobRequest, Bulk1Operation, ConcurrencyMode};
use ferry_salesforce::bulk2::{
    ColumnDelimiter, IngestJobRequest, IngestOperation, IngestResultKind, LineEnding, PollOptions,
};
use ferry_salesforce::{
    ClientConfig, Credentials, OAuthApp, RetryPolicy, SalesforceClient, SalesforceError, auth,
};
use futures_util::TryStreamExt;
use serde_json::{Value as Json, json};

#[derive(Default)]
struct Canned {
    log: Mutex<Vec<String>>,
    bodies: Mutex<HashMap<String, Vec<u8>>>,
    headers: Mutex<HashMap<String, HeaderMap>>,
    peers: Mutex<BTreeSet<SocketAddr>>,
    counters: Mutex<HashMap<String, u32>>,
    refresh_seq: Mutex<u32>,
    throttle_next: Mutex<bool>,
}

impl Canned {
    fn bump(&self, key: &str) -> u32 {
        let mut counters = self.counters.lock().expect("lock");
        let n = counters.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }
    fn body(&self, key: &str) -> Vec<u8> {
        self.bodies
            .lock()
            .expect("lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
    fn header(&self, key: &str, name: &str) -> Option<String> {
        self.headers
            .lock()
            .expect("lock")
            .get(key)
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    if !content_type.is_empty() {
        response
            .headers_mut()
            .insert("content-type", content_type.parse().expect("ct"));
    }
    response
}

fn json_reply(status: u16, value: Json) -> Response {
    reply(status, "application/json;charset=UTF-8", value.to_string())
}

const V: &str = "/services/data/v60.0";
const JOB: &str = "7505e000001AbCdAAA";
const FAILED_JOB: &str = "7505e000001FaIlAAA";
const QJOB: &str = "7505e000001QrYzAAA";
const B1JOB: &str = "750x00000000001AAA";
const B1BATCH: &str = "751x00000000001AAA";
const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

fn ingest_job(state: &str) -> Json {
    json!({"id": JOB, "operation": "upsert", "object": "Contact", "state": state, "externalIdFieldName": "Ext__c", "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": 60.0, "jobType": "V2Ingest", "contentUrl": format!("services/data/v60.0/jobs/ingest/{JOB}/batches"), "lineEnding": "LF", "columnDelimiter": "SEMICOLON", "numberRecordsProcessed": 3, "numberRecordsFailed": 1})
}

fn b1_job_xml(state: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NS}"><id>{B1JOB}</id><operation>insert</operation><object>Account</object><createdById>005x</createdById><createdDate>2024-11-21T08:31:31.000Z</createdDate><state>{state}</state><concurrencyMode>Serial</concurrencyMode><contentType>CSV</contentType><numberBatchesQueued>0</numberBatchesQueued><numberBatchesCompleted>1</numberBatchesCompleted><numberBatchesTotal>1</numberBatchesTotal><numberRecordsProcessed>2</numberRecordsProcessed><apiVersion>60.0</apiVersion></jobInfo>"#
    )
}

fn b1_batch_xml(state: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><batchInfo xmlns="{NS}"><id>{B1BATCH}</id><jobId>{B1JOB}</jobId><state>{state}</state><createdDate>2024-11-21T08:31:31.000Z</createdDate><numberRecordsProcessed>2</numberRecordsProcessed><numberRecordsFailed>1</numberRecordsFailed></batchInfo>"#
    )
}

/// A gzip stream with one stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut crc_table = [0u32; 256];
    for (n, slot) in crc_table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let crc = !data.iter().fold(!0u32, |c, b| {
        crc_table[((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8)
    });
    let len = u16::try_from(data.len()).expect("small body");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

async fn handle(
    State(st): State<Arc<Canned>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    st.peers.lock().expect("lock").insert(peer);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 24)
        .await
        .unwrap_or_default()
        .to_vec();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let method = parts.method.as_str().to_string();
    let key = format!("{method} {path}");
    st.log.lock().expect("lock").push(format!("{key}?{query}"));
    st.bodies
        .lock()
        .expect("lock")
        .insert(key.clone(), body.clone());
    st.headers
        .lock()
        .expect("lock")
        .insert(key.clone(), parts.headers.clone());
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let session = parts
        .headers
        .get("x-sfdc-session")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();

    if path == "/services/oauth2/token" {
        let form: Vec<(String, String)> = serde_urlencoded_pairs(&body);
        let grant = form
            .iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if grant != "refresh_token" {
            return json_reply(
                400,
                json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"}),
            );
        }
        let mut seq = st.refresh_seq.lock().expect("lock");
        let expected = format!("rt-{}", *seq);
        if form
            .iter()
            .all(|(k, v)| k != "refresh_token" || *v != expected)
        {
            return json_reply(
                400,
                json!({"error": "invalid_grant", "error_description": "expired access/refresh token"}),
            );
        }
        *seq += 1;
        return json_reply(
            200,
            json!({"access_token": "00D000000000001!good", "refresh_token": format!("rt-{}", *seq), "instance_url": format!("http://{}", parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("")), "id": "http://x/id/00D000000000001AAA/005000000000001AAA", "token_type": "Bearer", "issued_at": "1700000000000", "signature": "x"}),
        );
    }

    // Bulk 1.0 authenticates with X-SFDC-Session; "expired" gets InvalidSessionId (400 XML).
    if path.starts_with("/services/async/") {
        if session != "00D000000000001!good" {
            return reply(
                400,
                "application/xml",
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><error xmlns="{NS}"><exceptionCode>InvalidSessionId</exceptionCode><exceptionMessage>Invalid session id</exceptionMessage></error>"#
                ),
            );
        }
        let rest = path.trim_start_matches("/services/async/60.0/job");
        let is_json = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        return match (method.as_str(), rest) {
            ("POST", "") if is_json => json_reply(
                201,
                json!({"id": B1JOB, "operation": "insert", "object": "Account", "state": "Open", "concurrencyMode": "Parallel", "contentType": "JSON", "numberBatchesTotal": 0, "numberRecordsProcessed": 0, "apiVersion": 60.0}),
            ),
            ("POST", "") => reply(201, "application/xml", b1_job_xml("Open")),
            ("POST", r) if r == format!("/{B1JOB}") => {
                reply(200, "application/xml", b1_job_xml("Closed"))
            }
            ("POST", r) if r == format!("/{B1JOB}/batch") && is_json => json_reply(
                201,
                json!({"apexProcessingTime":0,"apiActiveProcessingTime":0,"createdDate":"2024-11-21T08:31:31.000+0000","id":B1BATCH,"jobId":B1JOB,"numberRecordsFailed":0,"numberRecordsProcessed":0,"state":"Queued","stateMessage":null,"systemModstamp":"2024-11-21T08:31:31.000+0000","totalProcessingTime":0}),
            ),
            ("POST", r) if r == format!("/{B1JOB}/batch") => {
                reply(201, "application/xml", b1_batch_xml("Queued"))
            }
            ("GET", r) if r == format!("/{B1JOB}/batch/{B1BATCH}") => {
                let n = st.bump("b1 batch poll");
                reply(
                    200,
                    "application/xml",
                    b1_batch_xml(if n < 2 { "InProgress" } else { "Completed" }),
                )
            }
            ("GET", r) if r == format!("/{B1JOB}/batch") => reply(
                200,
                "application/xml",
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><batchInfoList xmlns="{NS}">{}{}</batchInfoList>"#,
                    b1_batch_xml("Completed")
                        .replace(r#"<?xml version="1.0" encoding="UTF-8"?>"#, "")
                        .replace(&format!(r#" xmlns="{NS}""#), ""),
                    b1_batch_xml("Failed")
                        .replace(r#"<?xml version="1.0" encoding="UTF-8"?>"#, "")
                        .replace(&format!(r#" xmlns="{NS}""#), "")
                        .replace(B1BATCH, "751x00000000002AAA")
                ),
            ),
            ("GET", r)
                if r == format!("/{B1JOB}/batch/{B1BATCH}/result")
                    && query.is_empty()
                    && st.bump("b1 result kind") == 1 =>
            {
                reply(
                    200,
                    "text/csv",
                    "\"Id\",\"Success\",\"Created\",\"Error\"\n\"001x00000000001AAA\",\"true\",\"true\",\"\"\n\"\",\"false\",\"false\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --\"\n",
                )
            }
            ("GET", r) if r == format!("/{B1JOB}/batch/{B1BATCH}/result") => reply(
                200,
                "application/xml",
                format!(
                    r#"<result-list xmlns="{NS}"><result>752x00000000001</result></result-list>"#
                ),
            ),
            ("GET", r) if r == format!("/{B1JOB}/batch/{B1BATCH}/result/752x00000000001") => reply(
                200,
                "text/csv",
                "\"Id\",\"Name\"\n\"001x00000000001AAA\",\"Acme\"\n",
            ),
            _ => reply(
                404,
                "application/xml",
                format!(
                    r#"<error xmlns="{NS}"><exceptionCode>InvalidJob</exceptionCode><exceptionMessage>unknown {key}</exceptionMessage></error>"#
                ),
            ),
        };
    }

    if bearer != "Bearer 00D000000000001!good" {
        return json_reply(
            401,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        );
    }
    let Some(rest) = path.strip_prefix(V) else {
        return json_reply(
            404,
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
        );
    };
    let rest = rest.to_string();
    match (method.as_str(), rest.as_str()) {
        ("GET", "/limits") => {
            st.bump("limits");
            if std::mem::take(&mut *st.throttle_next.lock().expect("lock")) {
                let mut r = json_reply(
                    429,
                    json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}]),
                );
                r.headers_mut()
                    .insert("retry-after", "0".parse().expect("hv"));
                return r;
            }
            let mut r = json_reply(
                200,
                json!({"DailyApiRequests": {"Max": 15000, "Remaining": 14000}}),
            );
            r.headers_mut().insert(
                "sforce-limit-info",
                "api-usage=1000/15000; per-app-api-usage=17/250(appName=x)"
                    .parse()
                    .expect("hv"),
            );
            r
        }
        ("GET", "/sobjects/Account/describe") => {
            let body =
                json!({"name": "Account", "fields": [{"name": "Id", "type": "id"}]}).to_string();
            let mut r = reply(
                200,
                "application/json;charset=UTF-8",
                gzip_stored(body.as_bytes()),
            );
            r.headers_mut()
                .insert("content-encoding", "gzip".parse().expect("hv"));
            r
        }
        ("GET", "/sobjects") => {
            if st.bump("slow global") == 1 {
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            }
            json_reply(
                200,
                json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [{"name": "Account", "queryable": true}]}),
            )
        }
        ("GET", "/tooling/query") => json_reply(
            200,
            json!({"size": 1, "totalSize": 1, "done": true, "queryLocator": null, "entityTypeName": "FieldDefinition", "records": [{"attributes": {"type": "FieldDefinition"}, "QualifiedApiName": "Name", "DataType": "Text(255)"}]}),
        ),
        ("GET", "/tooling/sobjects") => json_reply(
            200,
            json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [{"name": "ApexClass", "queryable": true}]}),
        ),
        ("GET", "/tooling/sobjects/ApexClass/describe") => json_reply(
            200,
            json!({"name": "ApexClass", "fields": [{"name": "Body", "type": "textarea"}]}),
        ),
        ("POST", "/jobs/ingest") => json_reply(200, ingest_job("Open")),
        ("PUT", r) if r == format!("/jobs/ingest/{JOB}/batches") => reply(201, "", Body::empty()),
        ("PATCH", r) if r == format!("/jobs/ingest/{JOB}") => {
            json_reply(200, ingest_job("UploadComplete"))
        }
        ("GET", r) if r == format!("/jobs/ingest/{JOB}") => {
            let n = st.bump("ingest poll");
            json_reply(
                200,
                ingest_job(if n < 3 { "InProgress" } else { "JobComplete" }),
            )
        }
        ("GET", r) if r == format!("/jobs/ingest/{FAILED_JOB}") => json_reply(
            200,
            json!({"id": FAILED_JOB, "state": "Failed", "errorMessage": "InvalidBatch : Field name not found : Foo__c"}),
        ),
        ("GET", r) if r == format!("/jobs/ingest/{JOB}/successfulResults/") => reply(
            200,
            "text/csv",
            "\"sf__Id\";\"sf__Created\";Ext__c;LastName\n\"003x00000000001AAA\";\"true\";E-1;Smith\n\"003x00000000002AAA\";\"false\";E-2;\"Doe; Jr\"\n",
        ),
        ("GET", r) if r == format!("/jobs/ingest/{JOB}/failedResults/") => reply(
            200,
            "text/csv",
            "\"sf__Id\";\"sf__Error\";Ext__c;LastName\n\"\";\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\";E-3;\n",
        ),
        ("GET", r) if r == format!("/jobs/ingest/{JOB}/unprocessedrecords/") => {
            reply(200, "text/csv", "Ext__c;LastName\n")
        }
        ("POST", "/jobs/query") => json_reply(
            200,
            json!({"id": QJOB, "operation": "queryAll", "object": "Account", "state": "UploadComplete", "contentType": "CSV", "apiVersion": 60.0, "lineEnding": "LF", "columnDelimiter": "COMMA"}),
        ),
        ("GET", r) if r == format!("/jobs/query/{QJOB}") => json_reply(
            200,
            json!({"id": QJOB, "state": "JobComplete", "jobType": "V2Query", "numberRecordsProcessed": 5}),
        ),
        ("GET", r) if r == format!("/jobs/query/{QJOB}/results") => {
            let (body, locator, n) = if query.contains("locator=L2") {
                ("\"Id\",\"Name\"\n\"001x5\",\"E\"\n", "null", 1)
            } else if query.contains("locator=L1") {
                (
                    "\"Id\",\"Name\"\n\"001x3\",\"C\"\n\"001x4\",\"\"\n",
                    "L2",
                    2,
                )
            } else {
                (
                    "\"Id\",\"Name\"\n\"001x1\",\"A, with comma\"\n\"001x2\",\"B \"\"quoted\"\"\"\n",
                    "L1",
                    2,
                )
            };
            let mut r = reply(200, "text/csv", body);
            r.headers_mut()
                .insert("sforce-locator", locator.parse().expect("hv"));
            r.headers_mut()
                .insert("sforce-numberofrecords", n.to_string().parse().expect("hv"));
            r
        }
        _ => json_reply(
            404,
            json!([{"errorCode": "NOT_FOUND", "message": format!("unknown {key}")}]),
        ),
    }
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn serve() -> (String, Arc<Canned>) {
    let state = Arc::new(Canned::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (format!("http://{addr}"), state)
}

/// A client that starts with an expired access token and refresh token `rt-0`.
async fn client(base: &str) -> SalesforceClient {
    let mut config = ClientConfig::new(
        auth::login_base_url(base).expect("login"),
        OAuthApp::new("app", "secret"),
        Credentials::AccessToken {
            access_token: "expired".into(),
            instance_url: base.to_string(),
            refresh_token: Some("rt-0".into()),
        },
    );
    config.api_version = Some("60.0".into());
    config.retry = RetryPolicy::for_test();
    SalesforceClient::connect(config).await.expect("client")
}

#[tokio::test]
async fn refresh_token_rotation_is_kept_and_used() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    client.limits().await.expect("401 → refresh → replay");
    assert_eq!(client.refresh_count(), 1);
    assert_eq!(
        client.refresh_token().map(|t| t.expose().to_string()),
        Some("rt-1".into()),
        "rotated token kept"
    );
    client
        .refresh_session()
        .await
        .expect("second refresh uses the rotated token");
    assert_eq!(
        client.refresh_token().map(|t| t.expose().to_string()),
        Some("rt-2".into())
    );
    assert_eq!(
        client.last_api_usage(),
        Some((1000, 15000)),
        "api-usage parsed despite the per-app suffix"
    );
    assert_eq!(
        st.peers.lock().expect("lock").len(),
        1,
        "one reused connection for every call"
    );
}

#[tokio::test]
async fn a_refused_refresh_is_not_repeated_by_waiting_requests() {
    let (base, st) = serve().await;
    let mut config = ClientConfig::new(
        auth::login_base_url(&base).expect("login"),
        OAuthApp::new("app", "secret"),
        Credentials::AccessToken {
            access_token: "expired".into(),
            instance_url: base.clone(),
            refresh_token: Some("rt-revoked".into()),
        },
    );
    config.api_version = Some("60.0".into());
    config.retry = RetryPolicy::for_test();
    let client = SalesforceClient::connect(config).await.expect("client");
    let calls = (0..8).map(|_| {
        let client = client.clone();
        async move { client.limits().await }
    });
    for result in futures_util::future::join_all(calls).await {
        let error = result.expect_err("refresh refused");
        assert_eq!(error.error_code(), Some("invalid_grant"));
        assert!(!error.is_retryable());
    }
    assert_eq!(
        st.logged("/oauth2/token"),
        1,
        "one token request for eight failures"
    );
}

#[tokio::test]
async fn concurrency_limit_with_retry_after_is_retried() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    client.refresh_session().await.expect("refresh");
    *st.throttle_next.lock().expect("lock") = true;
    client
        .limits()
        .await
        .expect("429 ConcurrentPerOrgLongTxn, then success");
    assert_eq!(
        st.counters.lock().expect("lock").get("limits").copied(),
        Some(2)
    );
    assert_eq!(st.logged("/oauth2/token"), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let (base, _st) = serve().await;
    let mut config = ClientConfig::new(
        auth::login_base_url(&base).expect("login"),
        OAuthApp::new("app", "secret"),
        Credentials::AccessToken {
            access_token: "00D000000000001!good".into(),
            instance_url: base.clone(),
            refresh_token: None,
        },
    );
    config.api_version = Some("60.0".into());
    config.retry = RetryPolicy::for_test();
    config.request_timeout = std::time::Duration::from_millis(150);
    let client = SalesforceClient::connect(config.clone())
        .await
        .expect("client");
    let global = client
        .describe_global()
        .await
        .expect("the retry after the timeout succeeds");
    assert_eq!(global.sobjects[0].name, "Account");
    assert_eq!(client.retry_count(), 1);

    config.retry = RetryPolicy::no_retries();
    let (base, _st) = serve().await;
    config.login_url = auth::login_base_url(&base).expect("login");
    config.credentials = Credentials::AccessToken {
        access_token: "00D000000000001!good".into(),
        instance_url: base.clone(),
        refresh_token: None,
    };
    let strict = SalesforceClient::connect(config).await.expect("client");
    match strict.describe_global().await {
        Err(
            error @ SalesforceError::Transport {
                kind: ferry_salesforce::TransportKind::Timeout,
                ..
            },
        ) => assert!(error.is_retryable()),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn gzip_responses_are_decoded() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    let describe = client.describe("Account").await.expect("gzip describe");
    assert_eq!(describe.fields[0].name, "Id");
    let accept = st
        .header(
            &format!("GET {V}/sobjects/Account/describe"),
            "accept-encoding",
        )
        .unwrap_or_default();
    assert!(accept.contains("gzip"), "{accept}");
}

#[tokio::test]
async fn tooling_query_and_describe() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    let rows = client
        .tooling_field_definitions("Account")
        .await
        .expect("field definitions");
    assert_eq!(rows[0]["QualifiedApiName"], json!("Name"));
    let logged = st
        .log
        .lock()
        .expect("lock")
        .iter()
        .find(|l| l.contains("/tooling/query"))
        .cloned()
        .expect("tooling query logged");
    let url = reqwest::Url::parse(&format!(
        "http://x{}",
        logged.split_once(' ').map(|(_, p)| p).unwrap_or("")
    ))
    .expect("url");
    let q = url
        .query_pairs()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .expect("q");
    assert!(
        q.ends_with("EntityDefinition.QualifiedApiName = 'Account'"),
        "{q}"
    );
    assert!(matches!(
        client.tooling_field_definitions("Account' OR ''='").await,
        Err(SalesforceError::InvalidInput(_))
    ));
    let global = client
        .tooling_describe_global()
        .await
        .expect("tooling global");
    assert_eq!(global.sobjects[0].name, "ApexClass");
    let describe = client
        .tooling_describe("ApexClass")
        .await
        .expect("tooling describe");
    assert_eq!(describe.fields[0].name, "Body");
}

#[tokio::test]
async fn bulk2_ingest_lifecycle() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    let mut request = IngestJobRequest::new("Contact", IngestOperation::Upsert);
    request.column_delimiter = ColumnDelimiter::Semicolon;
    request.line_ending = LineEnding::Crlf;
    assert!(
        matches!(
            client.create_ingest_job(&request).await,
            Err(SalesforceError::InvalidInput(_))
        ),
        "upsert needs a key"
    );
    request.external_id_field_name = Some("Ext__c".into());
    let job = client.create_ingest_job(&request).await.expect("create");
    assert_eq!(job.id, JOB);
    assert_eq!(job.state, "Open");
    let sent: Json =
        serde_json::from_slice(&st.body(&format!("POST {V}/jobs/ingest"))).expect("json body");
    assert_eq!(
        sent,
        json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Ext__c", "contentType": "CSV", "columnDelimiter": "SEMICOLON", "lineEnding": "CRLF"})
    );

    let csv =
        Bytes::from_static(b"Ext__c;LastName\r\nE-1;Smith\r\nE-2;\"Doe; Jr\"\r\nE-3;#N/A\r\n");
    client
        .upload_ingest_data(&job.id, csv.clone())
        .await
        .expect("upload (201)");
    let key = format!("PUT {V}/jobs/ingest/{JOB}/batches");
    assert_eq!(st.body(&key), csv.to_vec());
    assert_eq!(st.header(&key, "content-type").as_deref(), Some("text/csv"));
    let closed = client
        .complete_ingest_upload(&job.id)
        .await
        .expect("upload complete");
    assert_eq!(closed.state, "UploadComplete");
    assert_eq!(
        st.body(&format!("PATCH {V}/jobs/ingest/{JOB}")),
        br#"{"state":"UploadComplete"}"#.to_vec()
    );
    let done = client
        .wait_for_ingest_job(&job.id, PollOptions::for_test())
        .await
        .expect("complete");
    assert_eq!(
        (
            done.state.as_str(),
            done.number_records_processed,
            done.number_records_failed
        ),
        ("JobComplete", 3, 1)
    );

    let ok = client
        .ingest_results(
            &job.id,
            IngestResultKind::Successful,
            ColumnDelimiter::Semicolon,
            None,
        )
        .await
        .expect("successful");
    assert_eq!(ok.rows.len(), 2);
    let by_key: HashMap<&str, &ferry_salesforce::bulk2::IngestResultRow> = ok
        .rows
        .iter()
        .map(|r| (ok.value(r, "Ext__c").unwrap_or(""), r))
        .collect();
    assert_eq!(by_key["E-2"].created, Some(false));
    assert_eq!(ok.value(by_key["E-2"], "LastName"), Some("Doe; Jr"));
    let failed = client
        .ingest_results(
            &job.id,
            IngestResultKind::Failed,
            ColumnDelimiter::Semicolon,
            None,
        )
        .await
        .expect("failed");
    let row = &failed.rows[0];
    assert_eq!(failed.value(row, "Ext__c"), Some("E-3"));
    assert_eq!(
        row.error.as_ref().map(|e| e.error_code.as_str()),
        Some("REQUIRED_FIELD_MISSING")
    );
    let unprocessed = client
        .ingest_results(
            &job.id,
            IngestResultKind::Unprocessed,
            ColumnDelimiter::Semicolon,
            None,
        )
        .await
        .expect("unprocessed");
    assert!(unprocessed.rows.is_empty());
    assert_eq!(unprocessed.columns, vec!["Ext__c", "LastName"]);
    assert_eq!(
        st.header(
            &format!("GET {V}/jobs/ingest/{JOB}/failedResults/"),
            "accept"
        )
        .as_deref(),
        Some("text/csv")
    );

    match client
        .wait_for_ingest_job(FAILED_JOB, PollOptions::for_test())
        .await
    {
        Err(SalesforceError::JobFailed { state, message, .. }) => {
            assert_eq!(state, "Failed");
            assert!(message.contains("Foo__c"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bulk2_query_streams_by_locator() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    let job = client
        .create_query_job(
            "SELECT Id, Name FROM Account",
            true,
            ColumnDelimiter::Comma,
            LineEnding::Lf,
        )
        .await
        .expect("create");
    assert_eq!(job.state, "UploadComplete");
    let sent: Json =
        serde_json::from_slice(&st.body(&format!("POST {V}/jobs/query"))).expect("body");
    assert_eq!(sent["operation"], json!("queryAll"));
    client
        .wait_for_query_job(&job.id, PollOptions::for_test())
        .await
        .expect("complete");
    let pages: Vec<_> = client
        .bulk2_query_pages(&job.id, Some(2), ColumnDelimiter::Comma)
        .try_collect()
        .await
        .expect("pages");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].columns.as_slice(), ["Id", "Name"]);
    assert_eq!(pages[0].rows[0][1], "A, with comma");
    assert_eq!(pages[0].rows[1][1], "B \"quoted\"");
    assert_eq!(pages[1].rows[1][1], "");
    assert_eq!(
        pages
            .iter()
            .map(|p| p.number_of_records)
            .collect::<Vec<_>>(),
        vec![Some(2), Some(2), Some(1)]
    );
    assert_eq!(pages[2].next_locator, None);
    let requests: Vec<String> = st
        .log
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains("/results"))
        .cloned()
        .collect();
    assert_eq!(requests.len(), 3, "stops at the literal null locator");
    assert!(requests[0].ends_with("?maxRecords=2"), "{requests:?}");
    assert!(requests[1].contains("locator=L1") && requests[2].contains("locator=L2"));
}

#[tokio::test]
async fn bulk1_csv_job_with_session_refresh() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    let request = Bulk1JobRequest {
        operation: Bulk1Operation::Insert,
        object: "Account".into(),
        external_id_field_name: None,
        concurrency_mode: ConcurrencyMode::Serial,
        content_type: Bulk1ContentType::Csv,
    };
    let job = client
        .create_bulk1_job(&request)
        .await
        .expect("create after InvalidSessionId → refresh");
    assert_eq!(client.refresh_count(), 1);
    assert_eq!(
        (
            job.id.as_str(),
            job.state.as_str(),
            job.concurrency_mode.as_deref()
        ),
        (B1JOB, "Open", Some("Serial"))
    );
    let key = "POST /services/async/60.0/job";
    assert_eq!(
        st.header(key, "x-sfdc-session").as_deref(),
        Some("00D000000000001!good")
    );
    assert_eq!(
        st.header(key, "content-type").as_deref(),
        Some("application/xml")
    );
    let sent = String::from_utf8(st.body(key)).expect("utf8");
    assert!(
        sent.contains("<concurrencyMode>Serial</concurrencyMode>")
            && sent.contains("<contentType>CSV</contentType>"),
        "{sent}"
    );

    let batch = client
        .add_bulk1_batch(
            &job.id,
            Bulk1ContentType::Csv,
            Bytes::from_static(b"Name\nAcme\n\n"),
        )
        .await
        .expect("batch");
    assert_eq!(batch.state, "Queued");
    assert_eq!(
        st.header(
            &format!("POST /services/async/60.0/job/{B1JOB}/batch"),
            "content-type"
        )
        .as_deref(),
        Some("text/csv")
    );
    let done = client
        .wait_for_bulk1_batch(&job.id, &batch.id, PollOptions::for_test())
        .await
        .expect("completed");
    assert_eq!(done.number_records_failed, 1);
    let results = client
        .bulk1_batch_results(&job.id, &batch.id)
        .await
        .expect("results");
    assert!(results[0].success && results[0].created);
    assert_eq!(results[1].errors[0].error_code, "REQUIRED_FIELD_MISSING");
    let ids = client
        .bulk1_query_result_ids(&job.id, &batch.id)
        .await
        .expect("result list");
    assert_eq!(ids, vec!["752x00000000001"]);
    let csv = client
        .bulk1_query_result(&job.id, &batch.id, &ids[0])
        .await
        .expect("result");
    let (columns, rows) =
        ferry_salesforce::bulk2::parse_csv_page(&csv, ColumnDelimiter::Comma).expect("csv");
    assert_eq!((columns[1].as_str(), rows[0][1].as_str()), ("Name", "Acme"));
    let batches = client.list_bulk1_batches(&job.id).await.expect("list");
    assert_eq!(
        batches.iter().map(|b| b.state.as_str()).collect::<Vec<_>>(),
        vec!["Completed", "Failed"]
    );
    let closed = client.close_bulk1_job(&job.id).await.expect("close");
    assert_eq!(closed.state, "Closed");
    assert!(
        String::from_utf8(st.body(&format!("POST /services/async/60.0/job/{B1JOB}")))
            .expect("utf8")
            .contains("<state>Closed</state>")
    );
}

#[tokio::test]
async fn bulk1_json_job() {
    let (base, st) = serve().await;
    let client = client(&base).await;
    client.refresh_session().await.expect("refresh");
    let request = Bulk1JobRequest {
        operation: Bulk1Operation::Insert,
        object: "Account".into(),
        external_id_field_name: None,
        concurrency_mode: ConcurrencyMode::Parallel,
        content_type: Bulk1ContentType::Json,
    };
    let job = client.create_bulk1_job(&request).await.expect("json job");
    assert_eq!(job.content_type.as_deref(), Some("JSON"));
    let sent: Json =
        serde_json::from_slice(&st.body("POST /services/async/60.0/job")).expect("json body");
    assert_eq!(
        sent,
        json!({"operation": "insert", "object": "Account", "contentType": "JSON", "concurrencyMode": "Parallel"})
    );
    let batch = client
        .add_bulk1_batch(
            &job.id,
            Bulk1ContentType::Json,
            Bytes::from_static(br#"[{"Name":"Acme"}]"#),
        )
        .await
        .expect("json batch");
    assert_eq!(
        (batch.id.as_str(), batch.state.as_str()),
        (B1BATCH, "Queued")
    );
    let upsert_without_key = Bulk1JobRequest {
        operation: Bulk1Operation::Upsert,
        ..request
    };
    assert!(matches!(
        client.create_bulk1_job(&upsert_without_key).await,
        Err(SalesforceError::InvalidInput(_))
    ));
}
