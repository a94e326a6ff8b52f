//! Raw-JSON tests of the Tooling API (spec §8).

mod bulkutil;
mod common;

use bulkutil::{V, text};
use common::Emu;
use ferry_salesforce_emulator::Seed;
use http::StatusCode;
use serde_json::json;

async fn tq(e: &Emu, soql: &str) -> common::Resp {
    let q: String = serde_urlencoded::to_string([("q", soql)]).unwrap_or_default();
    e.api("GET", &format!("{V}/tooling/query/?{q}"), None).await
}

#[tokio::test]
async fn sobjects_and_describe() {
    let e = Emu::new(Seed::Empty).await;
    let r = e.api("GET", &format!("{V}/tooling/sobjects"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let j = r.json();
    assert!(j["sobjects"].is_array());
    let names: Vec<&str> = j["sobjects"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["name"].as_str()).collect())
        .unwrap_or_default();
    for n in [
        "ApexClass",
        "ApexTrigger",
        "CustomObject",
        "CustomField",
        "ValidationRule",
        "FlowDefinitionView",
        "EntityDefinition",
        "FieldDefinition",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let apex = j["sobjects"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == "ApexClass"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(apex["keyPrefix"], "01p");
    assert!(
        apex["urls"]["describe"]
            .as_str()
            .is_some_and(|u| u == "/services/data/v59.0/tooling/sobjects/ApexClass/describe"),
        "{apex}"
    );
    let r = e
        .api(
            "GET",
            &format!("{V}/tooling/sobjects/ApexClass/describe"),
            None,
        )
        .await;
    let d = r.json();
    assert_eq!(d["name"], "ApexClass");
    let fields: Vec<&str> = d["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    for f in [
        "Id",
        "Name",
        "Body",
        "ApiVersion",
        "Status",
        "LengthWithoutComments",
    ] {
        assert!(fields.contains(&f));
    }
    let r = e
        .api("GET", &format!("{V}/tooling/sobjects/Nope/describe"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn queries_demo_rows_and_generated_views() {
    let e = Emu::new(Seed::Empty).await;
    e.admin(
        "POST",
        "/__emulator/objects",
        json!({"name": "Invoice__c", "fields": [{"name": "Total__c", "type": "currency"}]}),
    )
    .await;
    let r = tq(
        &e,
        "SELECT Id, Name, ApiVersion, Status, Body FROM ApexClass ORDER BY Name",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let j = r.json();
    assert_eq!(j["size"], 3);
    assert_eq!(j["totalSize"], 3);
    assert_eq!(j["done"], true);
    assert!(j["queryLocator"].is_null());
    assert_eq!(j["entityTypeName"], "ApexClass");
    let rec = &j["records"][0];
    assert_eq!(rec["Name"], "AccountService");
    assert_eq!(rec["ApiVersion"], json!(59.0));
    assert!(
        rec["attributes"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/services/data/v59.0/tooling/sobjects/ApexClass/01p"))
    );
    let r = tq(
        &e,
        "SELECT Name, TableEnumOrId, UsageBeforeInsert FROM ApexTrigger",
    )
    .await;
    assert_eq!(r.json()["records"][0]["TableEnumOrId"], "Contact");
    let r = tq(&e, "SELECT ValidationName, Active, ErrorMessage FROM ValidationRule WHERE EntityDefinitionId = 'Account'").await;
    assert_eq!(r.json()["totalSize"], 1);
    let r = tq(
        &e,
        "SELECT ApiName, ProcessType, IsActive FROM FlowDefinitionView WHERE IsActive = true",
    )
    .await;
    assert_eq!(r.json()["totalSize"], 2);
    let r = tq(&e, "SELECT DeveloperName FROM CustomObject").await;
    assert_eq!(r.json()["records"][0]["DeveloperName"], "Invoice");
    let r = tq(
        &e,
        "SELECT DeveloperName, TableEnumOrId FROM CustomField WHERE DeveloperName = 'Total'",
    )
    .await;
    assert_eq!(r.json()["totalSize"], 1);
    assert!(
        r.json()["records"][0]["TableEnumOrId"]
            .as_str()
            .is_some_and(|t| t.starts_with("01I"))
    );
    let r = tq(&e, "SELECT QualifiedApiName, DataType FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName = 'Account' AND QualifiedApiName = 'Name'").await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(r.json()["records"][0]["DataType"], "Text(255)");
    let r = tq(&e, "SELECT QualifiedApiName, KeyPrefix FROM EntityDefinition WHERE QualifiedApiName = 'Contact'").await;
    assert_eq!(r.json()["records"][0]["KeyPrefix"], "003");
    // FieldDefinition needs a filter on its entity
    let r = tq(&e, "SELECT QualifiedApiName FROM FieldDefinition").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()[0]["errorCode"], "MALFORMED_QUERY");
    let r = tq(&e, "SELECT QualifiedApiName FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName IN ('Account', 'Contact', 'Lead')").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["totalSize"].as_u64().is_some_and(|n| n > 50));
    let r = tq(&e, "SELECT Nope FROM ApexClass").await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_FIELD");
}

#[tokio::test]
async fn query_more_pages_with_next_records_url() {
    let e = Emu::new(Seed::Empty).await;
    let specs: Vec<serde_json::Value> = (0..450)
        .map(|i| json!({"name": format!("F{i:03}__c"), "type": "text"}))
        .collect();
    let r = e
        .admin("POST", "/__emulator/objects/Account/fields", json!(specs))
        .await;
    assert!(r.status.is_success(), "{}", text(&r));
    let q: String =
        serde_urlencoded::to_string([("q", "SELECT Id, DeveloperName FROM CustomField")])
            .unwrap_or_default();
    let auth = format!("Bearer {}", e.token);
    let h = [
        ("authorization", auth.as_str()),
        ("sforce-query-options", "batchSize=200"),
    ];
    let r = e
        .send("GET", &format!("{V}/tooling/query?{q}"), &h, Vec::new())
        .await;
    let j = r.json();
    assert_eq!(j["size"], 200);
    assert_eq!(j["totalSize"], 450);
    assert_eq!(j["done"], false);
    let mut next = j["nextRecordsUrl"].as_str().unwrap_or_default().to_string();
    assert!(
        next.starts_with("/services/data/v59.0/tooling/query/01g"),
        "{next}"
    );
    assert_eq!(
        j["queryLocator"].as_str(),
        next.rsplit('/').next(),
        "queryLocator is the last segment of nextRecordsUrl"
    );
    let mut seen = 200;
    while !next.is_empty() {
        let r = e.api("GET", &next, None).await;
        let j = r.json();
        seen += j["size"].as_u64().unwrap_or(0);
        next = j["nextRecordsUrl"].as_str().unwrap_or_default().to_string();
        if j["done"] == true {
            assert!(j["queryLocator"].is_null());
        }
    }
    assert_eq!(seen, 450);
    let r = e
        .api("GET", &format!("{V}/tooling/query/01gBOGUS-200"), None)
        .await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_QUERY_LOCATOR");
}
