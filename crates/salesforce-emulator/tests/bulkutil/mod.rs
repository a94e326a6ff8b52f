//! Helpers for the Bulk API tests (on top of `common`).
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::common::{Emu, Resp};

pub const V: &str = "/services/data/v59.0";
pub const A: &str = "/services/async/59.0";

pub fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Authenticated call with a raw body and content type.
pub async fn call(e: &Emu, method: &str, uri: &str, ct: &str, body: &[u8]) -> Resp {
    let auth = format!("Bearer {}", e.token);
    e.send(
        method,
        uri,
        &[("authorization", &auth), ("content-type", ct)],
        body.to_vec(),
    )
    .await
}

/// Bulk 1.0 call with `X-SFDC-Session`.
pub async fn async_call(e: &Emu, method: &str, uri: &str, ct: &str, body: &[u8]) -> Resp {
    e.send(
        method,
        uri,
        &[("x-sfdc-session", e.token.as_str()), ("content-type", ct)],
        body.to_vec(),
    )
    .await
}

/// Polls a Bulk 2.0 job until it reaches a final state; returns its info.
pub async fn wait_v2(e: &Emu, kind: &str, id: &str) -> Json {
    for _ in 0..3000 {
        let r = e.api("GET", &format!("{V}/jobs/{kind}/{id}"), None).await;
        let j = r.json();
        if matches!(
            j["state"].as_str(),
            Some("JobComplete" | "Failed" | "Aborted")
        ) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not finish");
}

/// Creates, fills and closes a Bulk 2.0 ingest job; returns (id, final info).
pub async fn ingest(e: &Emu, job: Json, csv: &str) -> (String, Json) {
    let r = e.api("POST", &format!("{V}/jobs/ingest"), Some(job)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", text(&r));
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    let r = call(
        e,
        "PUT",
        &format!("{V}/jobs/ingest/{id}/batches"),
        "text/csv",
        csv.as_bytes(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 201, "{}", text(&r));
    let r = e
        .api(
            "PATCH",
            &format!("{V}/jobs/ingest/{id}"),
            Some(json!({"state": "UploadComplete"})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", text(&r));
    let info = wait_v2(e, "ingest", &id).await;
    (id, info)
}

/// Polls a Bulk 1.0 batch until it is done; returns the batch info body.
pub async fn wait_v1_batch(e: &Emu, job: &str, batch: &str) -> String {
    for _ in 0..3000 {
        let r = async_call(
            e,
            "GET",
            &format!("{A}/job/{job}/batch/{batch}"),
            "application/xml",
            b"",
        )
        .await;
        let t = text(&r);
        if ["Completed", "Failed", "NotProcessed", "Not Processed"]
            .iter()
            .any(|s| {
                t.contains(&format!("<state>{s}</state>"))
                    || t.contains(&format!("\"state\":\"{s}\""))
            })
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("batch {batch} did not finish");
}

/// The text of the first `<tag>` element.
pub fn xml_tag(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// Element names of an XML body in document order (opening tags only).
pub fn element_order(body: &str) -> Vec<String> {
    body.split('<')
        .skip(1)
        .filter(|s| !s.starts_with('/') && !s.starts_with('?'))
        .map(|s| {
            s.split(|c: char| c == '>' || c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Adds `Ext__c` (external id) to an object.
pub async fn add_ext_id(e: &Emu, obj: &str) {
    let r = e
        .admin(
            "POST",
            &format!("/__emulator/objects/{obj}/fields"),
            json!({"name": "Ext__c", "type": "text", "externalId": true, "unique": true}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", text(&r));
}
