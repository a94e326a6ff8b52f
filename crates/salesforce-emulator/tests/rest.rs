//! Raw-JSON tests of the REST API, OAuth and limits, independent of any Ferry client.

mod common;

use common::Emu;
use ferry_salesforce_emulator::Seed;
use http::StatusCode;
use serde_json::json;

const V: &str = "/services/data/v59.0";

#[tokio::test]
async fn versions_list_is_an_array_of_two_digit_versions() {
    let e = Emu::new(Seed::Empty).await;
    let r = e.send("GET", "/services/data", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let arr = list.as_array().cloned().unwrap_or_default();
    assert!(
        arr.iter().any(|v| v
            == &json!({"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}))
    );
    assert!(
        arr.iter()
            .all(|v| v["version"].as_str().is_some_and(|s| s.len() == 4))
    );
    assert_eq!(r.header("content-type"), "application/json;charset=UTF-8");
    let root = e.api("GET", "/services/data/v20.0/", None).await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.json()["sobjects"], "/services/data/v20.0/sobjects");
    assert!(
        root.json()["identity"]
            .as_str()
            .unwrap_or("")
            .contains("/id/00D")
    );
}

#[tokio::test]
async fn session_errors_and_limit_header() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .send(
            "GET",
            &format!("{V}/sobjects"),
            &[("authorization", "Bearer nope")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let r = e.api("GET", &format!("{V}/sobjects"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let info = r.header("sforce-limit-info");
    let (used, max) = info
        .strip_prefix("api-usage=")
        .and_then(|s| s.split_once('/'))
        .unwrap_or(("", ""));
    assert!(used.parse::<u64>().is_ok() && max == "100000", "{info}");
    // exhaust the daily limit
    let l = e
        .admin(
            "PUT",
            "/__emulator/limits",
            json!({"dailyApiRequests": 5, "used": 5}),
        )
        .await;
    assert_eq!(l.status, StatusCode::OK);
    let r = e.api("GET", &format!("{V}/limits"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json(),
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(r.header("sforce-limit-info"), "api-usage=5/5");
    e.admin(
        "PUT",
        "/__emulator/limits",
        json!({"dailyApiRequests": 100, "used": 10}),
    )
    .await;
    let r = e.api("GET", &format!("{V}/limits"), None).await;
    assert_eq!(r.header("sforce-limit-info"), "api-usage=11/100");
    let j = r.json();
    assert_eq!(j["DailyApiRequests"], json!({"Max": 100, "Remaining": 89}));
    for k in [
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DailyBulkV2QueryFileStorageMB",
    ] {
        assert!(j[k]["Max"].is_u64() && j[k]["Remaining"].is_u64(), "{k}");
    }
    // expired sessions
    e.admin("POST", "/__emulator/faults/expireSessions", json!({}))
        .await;
    let r = e.api("GET", &format!("{V}/limits"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn not_found_and_method_not_allowed() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api("GET", &format!("{V}/sobjects/Nope/describe"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
    let r = e
        .api(
            "GET",
            &format!("{V}/sobjects/Account/001000000000000AAA"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = e
        .api("GET", &format!("{V}/sobjects/Account/NotAnId"), None)
        .await;
    assert_eq!(
        r.json()[0]["message"],
        "Provided external ID field does not exist or is not accessible: NotAnId"
    );
    let id = e.create("Account", json!({"Name": "x"})).await;
    let r = e
        .api(
            "PUT",
            &format!("{V}/sobjects/Account/{id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.json()[0]["message"],
        "HTTP Method 'PUT' not allowed. Allowed are GET,PATCH,DELETE,HEAD"
    );
    // double slashes and trailing slashes are normalised
    let r = e
        .api(
            "GET",
            &format!("/services/data//v59.0/sobjects/Account/{id}/"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn describe_honours_if_modified_since() {
    let e = Emu::new(Seed::Empty).await;
    let future = "Thu, 01 Jan 2099 00:00:00 GMT";
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    let r = e
        .api_h(
            "GET",
            &format!("{V}/sobjects/Account/describe"),
            &[("if-modified-since", future)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    let r = e
        .api_h(
            "GET",
            &format!("{V}/sobjects"),
            &[("if-modified-since", future)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = e
        .api_h(
            "GET",
            &format!("{V}/sobjects/Account/describe"),
            &[("if-modified-since", past)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = e
        .api_h(
            "GET",
            &format!("{V}/sobjects/Nope/describe"),
            &[("if-modified-since", future)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn record_crud_and_recycle_bin() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Account/"),
            Some(json!({"Name": "Acme", "AnnualRevenue": 1000})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body = r.json();
    let id = body["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(body, json!({"id": id, "success": true, "errors": []}));
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("001"));
    let r = e
        .api("GET", &format!("{V}/sobjects/Account/{id}"), None)
        .await;
    let rec = r.json();
    assert_eq!(
        rec["attributes"],
        json!({"type": "Account", "url": format!("{V}/sobjects/Account/{id}")})
    );
    assert_eq!(rec["Name"], "Acme");
    assert_eq!(rec["AnnualRevenue"], json!(1000.0));
    assert_eq!(rec["IsDeleted"], false);
    assert!(
        rec["CreatedDate"]
            .as_str()
            .unwrap_or("")
            .ends_with(".000+0000")
    );
    assert_eq!(rec["OwnerId"].as_str().map(str::len), Some(18));
    // 15-char id works too
    let r = e
        .api(
            "GET",
            &format!("{V}/sobjects/Account/{}?fields=Name", &id[..15]),
            None,
        )
        .await;
    let keys: Vec<String> = r
        .json()
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["attributes", "Id", "Name"]);
    let r = e
        .api(
            "PATCH",
            &format!("{V}/sobjects/Account/{id}"),
            Some(json!({"Name": "Acme 2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = e
        .api("DELETE", &format!("{V}/sobjects/Account/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for m in ["GET", "DELETE", "PATCH"] {
        let r = e
            .api(
                m,
                &format!("{V}/sobjects/Account/{id}"),
                Some(json!({"Name": "x"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
        assert_eq!(
            r.json(),
            json!([{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}])
        );
    }
    let q = e.query("SELECT Id FROM Account").await;
    assert_eq!(q.json()["totalSize"], 0);
    let qa = e
        .api(
            "GET",
            &format!("{V}/queryAll?q=SELECT+Id,IsDeleted+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(qa.json()["totalSize"], 1);
    assert_eq!(qa.json()["records"][0]["IsDeleted"], true);
    // the recycle bin is purged after 15 days
    e.admin(
        "PUT",
        "/__emulator/clock",
        json!({"advanceSeconds": 16 * 86400}),
    )
    .await;
    let qa = e
        .api(
            "GET",
            &format!("{V}/queryAll?q=SELECT+Id+FROM+Account"),
            None,
        )
        .await;
    assert_eq!(qa.json()["totalSize"], 0);
    let r = e
        .api("GET", &format!("{V}/sobjects/Account/{id}"), None)
        .await;
    assert_eq!(r.json()[0]["errorCode"], "NOT_FOUND");
}

#[tokio::test]
async fn write_errors_use_salesforce_codes() {
    let e = Emu::new(Seed::Empty).await;
    let post =
        |b: serde_json::Value| e.api("POST", "/services/data/v59.0/sobjects/Account", Some(b));
    let r = post(json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        json!([{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}])
    );
    let r = post(json!({"Name": "a".repeat(256)})).await;
    assert_eq!(r.json()[0]["errorCode"], "STRING_TOO_LONG");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Account Name: data value too large: aaa")
    );
    let r = post(json!({"Name": "x", "Bogus__c": 1})).await;
    assert_eq!(
        r.json()[0]["message"],
        "No such column 'Bogus__c' on sobject of type Account"
    );
    let r = post(json!({"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
    let r = post(json!({"Name": "x", "NumberOfEmployees": "lots"})).await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_TYPE_ON_FIELD_IN_RECORD");
    let r = post(json!({"Name": "x", "CurrencyIsoCode": "ZZZ"})).await;
    assert_eq!(
        r.json()[0]["errorCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Contact"),
            Some(json!({"LastName": "x", "AccountId": "001000000000000AAA"})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_CROSS_REFERENCE_KEY");
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Account"),
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "JSON_PARSER_ERROR");
}

#[tokio::test]
async fn upsert_by_external_id_and_references() {
    let e = Emu::new(Seed::Empty).await;
    let r = e.admin("POST", "/__emulator/objects/Account/fields", json!([{"name": "Ext__c", "type": "text", "length": 40, "externalId": true, "unique": true}, {"name": "Tag__c", "type": "text", "externalId": true}])).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = e
        .api(
            "PATCH",
            &format!("{V}/sobjects/Account/Ext__c/A-1"),
            Some(json!({"Name": "One"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        r.json(),
        json!({"id": id, "success": true, "errors": [], "created": true})
    );
    let r = e
        .api(
            "PATCH",
            &format!("{V}/sobjects/Account/Ext__c/A-1"),
            Some(json!({"Name": "Uno"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    let r = e
        .api(
            "PATCH",
            "/services/data/v40.0/sobjects/Account/Ext__c/A-1",
            Some(json!({"Name": "Old API"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = e
        .api("GET", &format!("{V}/sobjects/Account/Ext__c/A-1"), None)
        .await;
    assert_eq!(r.json()["Name"], "Old API");
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Account"),
            Some(json!({"Name": "dup", "Ext__c": "a-1"})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "DUPLICATE_VALUE");
    assert_eq!(
        r.json()[0]["message"],
        format!("duplicate value found: Ext__c duplicates value on record with id: {id}")
    );
    // several matches on a non-unique external id: 300
    e.create("Account", json!({"Name": "t1", "Tag__c": "T"}))
        .await;
    e.create("Account", json!({"Name": "t2", "Tag__c": "T"}))
        .await;
    let r = e
        .api(
            "PATCH",
            &format!("{V}/sobjects/Account/Tag__c/T"),
            Some(json!({"Name": "z"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    let r = e
        .api("GET", &format!("{V}/sobjects/Account/Tag__c/T"), None)
        .await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    // relationship reference by external id
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Contact"),
            Some(json!({"LastName": "Ref", "Account": {"Ext__c": "A-1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let cid = r.json()["id"].as_str().unwrap_or_default().to_string();
    let c = e
        .api("GET", &format!("{V}/sobjects/Contact/{cid}"), None)
        .await;
    assert_eq!(c.json()["AccountId"], json!(id));
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Contact"),
            Some(json!({"LastName": "Ref", "Account": {"Ext__c": "missing"}})),
        )
        .await;
    assert_eq!(
        r.json(),
        json!([{"message": "Foreign key external ID: missing not found for field Ext__c in entity Account", "errorCode": "INVALID_FIELD", "fields": []}])
    );
}

#[tokio::test]
async fn converted_leads_cannot_be_updated() {
    let e = Emu::new(Seed::Empty).await;
    let lead = e
        .create("Lead", json!({"LastName": "Smith", "Company": "Smith Co"}))
        .await;
    let r = e
        .admin("POST", "/__emulator/convertLead", json!({"leadId": lead}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let res = r.json();
    assert_eq!(res["success"], true);
    assert!(res["accountId"].as_str().unwrap_or("").starts_with("001"));
    assert!(res["contactId"].as_str().unwrap_or("").starts_with("003"));
    let l = e
        .api("GET", &format!("{V}/sobjects/Lead/{lead}"), None)
        .await
        .json();
    assert_eq!(l["IsConverted"], true);
    assert_eq!(l["ConvertedAccountId"], res["accountId"]);
    assert_eq!(l["Status"], "Closed - Converted");
    let r = e
        .api(
            "PATCH",
            &format!("{V}/sobjects/Lead/{lead}"),
            Some(json!({"LastName": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        json!([{"message": "cannot reference converted lead", "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD", "fields": []}])
    );
}

#[tokio::test]
async fn collections_create_update_upsert_delete_retrieve() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api(
            "POST",
            &format!("{V}/composite/sobjects"),
            Some(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Account"}, "Name": "A"},
                {"attributes": {"type": "Account"}},
                {"attributes": {"type": "Contact"}, "LastName": "C"}
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let res = r.json();
    assert_eq!(res[0]["success"], true);
    assert_eq!(
        res[1],
        json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}]})
    );
    assert_eq!(res[2]["success"], true);
    let a = res[0]["id"].as_str().unwrap_or_default().to_string();
    // allOrNone rollback
    let r = e
        .api(
            "POST",
            &format!("{V}/composite/sobjects"),
            Some(json!({"allOrNone": true, "records": [
                {"attributes": {"type": "Account"}, "Name": "B"},
                {"attributes": {"type": "Account"}, "Name": "x".repeat(300)}
            ]})),
        )
        .await;
    let res = r.json();
    assert_eq!(
        res[0],
        json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]})
    );
    assert_eq!(res[1]["errors"][0]["statusCode"], "STRING_TOO_LONG");
    assert_eq!(
        e.query("SELECT COUNT() FROM Account").await.json()["totalSize"],
        1
    );
    // update
    let r = e
        .api(
            "PATCH",
            &format!("{V}/composite/sobjects"),
            Some(json!({"records": [{"attributes": {"type": "Account"}, "id": a, "Name": "A2"}]})),
        )
        .await;
    assert_eq!(r.json(), json!([{"id": a, "success": true, "errors": []}]));
    // upsert with created flags
    e.admin(
        "POST",
        "/__emulator/objects/Account/fields",
        json!({"name": "Ext__c", "type": "text", "externalId": true, "unique": true}),
    )
    .await;
    let r = e
        .api(
            "PATCH",
            &format!("{V}/composite/sobjects/Account/Ext__c"),
            Some(json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Account"}, "Ext__c": "E1", "Name": "E1"},
                {"attributes": {"type": "Account"}, "Ext__c": "E1", "Name": "E1 again"}
            ]})),
        )
        .await;
    let res = r.json();
    assert_eq!(res[0]["created"], true);
    assert_eq!(res[1]["created"], false);
    assert_eq!(res[0]["id"], res[1]["id"]);
    // upsert on Id with a null Id inserts
    let r = e.api("PATCH", &format!("{V}/composite/sobjects/Account/Id"), Some(json!({"records": [{"attributes": {"type": "Account"}, "Id": null, "Name": "via Id"}]}))).await;
    assert_eq!(r.json()[0]["created"], true);
    // retrieve
    let r = e
        .api(
            "GET",
            &format!("{V}/composite/sobjects/Account?ids={a},001000000000000AAA&fields=Id,Name"),
            None,
        )
        .await;
    let res = r.json();
    assert_eq!(res[0]["Name"], "A2");
    assert_eq!(res[1], json!(null));
    let r = e
        .api(
            "POST",
            &format!("{V}/composite/sobjects/Account"),
            Some(json!({"ids": [a], "fields": ["Name"]})),
        )
        .await;
    assert_eq!(r.json()[0]["Name"], "A2");
    // delete
    let r = e
        .api(
            "DELETE",
            &format!("{V}/composite/sobjects?ids={a}&allOrNone=false"),
            None,
        )
        .await;
    assert_eq!(r.json(), json!([{"id": a, "success": true, "errors": []}]));
    let r = e
        .api("DELETE", &format!("{V}/composite/sobjects?ids={a}"), None)
        .await;
    assert_eq!(r.json()[0]["errors"][0]["statusCode"], "ENTITY_IS_DELETED");
    // over 200 records
    let many: Vec<_> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("n{i}")}))
        .collect();
    let r = e
        .api(
            "POST",
            &format!("{V}/composite/sobjects"),
            Some(json!({"records": many})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()[0]["errorCode"], "EXCEEDED_ID_LIMIT");
}

#[tokio::test]
async fn composite_batch_runs_get_subrequests() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api(
            "POST",
            "/services/data/v61.0/composite/batch",
            Some(json!({"haltOnError": false, "batchRequests": [
                {"method": "GET", "url": "/services/data/v61.0/sobjects/Account/describe"},
                {"method": "GET", "url": "v61.0/sobjects/Contact/describe"},
                {"method": "GET", "url": "/services/data/v61.0/sobjects/Nope/describe"}
            ]})),
        )
        .await;
    let j = r.json();
    assert_eq!(j["hasErrors"], true);
    assert_eq!(j["results"][0]["statusCode"], 200);
    assert_eq!(j["results"][0]["result"]["name"], "Account");
    assert_eq!(j["results"][1]["result"]["name"], "Contact");
    assert_eq!(j["results"][2]["statusCode"], 404);
    assert_eq!(
        r.header("sforce-limit-info")
            .split('=')
            .nth(1)
            .and_then(|s| s.split('/').next()),
        Some("1"),
        "a composite call counts once"
    );
}

#[tokio::test]
async fn composite_with_references_and_all_or_none() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .api("POST", &format!("{V}/composite"), Some(json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": format!("{V}/sobjects/Account"), "referenceId": "acct", "body": {"Name": "Parent"}},
            {"method": "POST", "url": format!("{V}/sobjects/Contact"), "referenceId": "con", "body": {"LastName": "Child", "AccountId": "@{acct.id}"}},
            {"method": "GET", "url": format!("{V}/sobjects/Contact/@{{con.id}}?fields=AccountId"), "referenceId": "check"}
        ]})))
        .await;
    let j = r.json();
    assert_eq!(j["compositeResponse"][0]["httpStatusCode"], 201);
    assert_eq!(
        j["compositeResponse"][2]["body"]["AccountId"],
        j["compositeResponse"][0]["body"]["id"]
    );
    let r = e
        .api("POST", &format!("{V}/composite"), Some(json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": format!("{V}/sobjects/Account"), "referenceId": "a2", "body": {"Name": "Rolled back"}},
            {"method": "POST", "url": format!("{V}/sobjects/Account"), "referenceId": "bad", "body": {}}
        ]})))
        .await;
    let j = r.json();
    assert_eq!(j["compositeResponse"][1]["httpStatusCode"], 400);
    assert_eq!(
        e.query("SELECT COUNT() FROM Account").await.json()["totalSize"],
        1
    );
}

#[tokio::test]
async fn deleted_and_updated_feeds() {
    let e = Emu::new(Seed::Empty).await;
    e.admin(
        "PUT",
        "/__emulator/clock",
        json!({"now": "2030-01-10T12:00:00Z"}),
    )
    .await;
    let a = e.create("Account", json!({"Name": "A"})).await;
    let b = e.create("Account", json!({"Name": "B"})).await;
    e.admin("PUT", "/__emulator/clock", json!({"advanceSeconds": 3600}))
        .await;
    e.api("DELETE", &format!("{V}/sobjects/Account/{b}"), None)
        .await;
    e.admin("PUT", "/__emulator/clock", json!({"advanceSeconds": 3600}))
        .await;
    let r = e.api("GET", &format!("{V}/sobjects/Account/updated/?start=2030-01-10T00%3A00%3A00%2B00%3A00&end=2030-01-11T00%3A00%3A00%2B00%3A00"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"ids": [a], "latestDateCovered": "2030-01-10T14:00:00.000+0000"})
    );
    let r = e
        .api(
            "GET",
            &format!(
                "{V}/sobjects/Account/deleted/?start=2030-01-10T00:00:00Z&end=2030-01-11T00:00:00Z"
            ),
            None,
        )
        .await;
    let j = r.json();
    assert_eq!(
        j["deletedRecords"],
        json!([{"id": b, "deletedDate": "2030-01-10T13:00:00.000+0000"}])
    );
    assert_eq!(j["latestDateCovered"], "2030-01-10T14:00:00.000+0000");
    assert!(j["earliestDateAvailable"].is_string());
}

#[tokio::test]
async fn query_paging_with_batch_size() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .admin(
            "POST",
            "/__emulator/generate/Account",
            json!({"count": 450, "fields": {"Name": "Acct {n}", "Industry": ["Retail", "Energy"]}}),
        )
        .await;
    assert_eq!(r.json()["created"], 450);
    let r = e
        .api_h(
            "GET",
            &format!("{V}/query/?q=SELECT+Id,Name+FROM+Account+ORDER+BY+Name"),
            &[("sforce-query-options", "batchSize=200")],
        )
        .await;
    let j = r.json();
    assert_eq!(j["totalSize"], 450);
    assert_eq!(j["done"], false);
    assert_eq!(j["records"].as_array().map(Vec::len), Some(200));
    let keys: Vec<String> = j
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["totalSize", "done", "nextRecordsUrl", "records"]);
    let next = j["nextRecordsUrl"].as_str().unwrap_or_default().to_string();
    assert!(
        next.starts_with("/services/data/v59.0/query/01g") && next.ends_with("-200"),
        "{next}"
    );
    // jsforce rebuilds the URL from the last segment with its own version
    let locator = next.rsplit('/').next().unwrap_or_default();
    let r2 = e
        .api(
            "GET",
            &format!("/services/data/v50.0/query/{locator}"),
            None,
        )
        .await
        .json();
    assert_eq!(r2["records"].as_array().map(Vec::len), Some(200));
    let next2 = r2["nextRecordsUrl"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r3 = e.api("GET", &next2, None).await.json();
    assert_eq!(r3["done"], true);
    assert!(r3.get("nextRecordsUrl").is_none());
    assert_eq!(r3["records"].as_array().map(Vec::len), Some(50));
    let r = e.api("GET", &format!("{V}/query/01gBOGUS-200"), None).await;
    assert_eq!(
        r.json(),
        json!([{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}])
    );
}

#[tokio::test]
async fn oauth_flows() {
    let e = Emu::new(Seed::Empty).await;
    let form = |b: &str| {
        e.send(
            "POST",
            "/services/oauth2/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            b.as_bytes().to_vec(),
        )
    };
    // password token shape
    let r = form("grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=ferry").await;
    let t = r.json();
    let access = t["access_token"].as_str().unwrap_or_default();
    let (org, rest) = access.split_once('!').unwrap_or(("", ""));
    assert!(
        org.starts_with("00D") && (15..=18).contains(&org.len()),
        "{access}"
    );
    assert!(
        rest.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    );
    assert_eq!(t["instance_url"], "http://127.0.0.1:5200");
    assert_eq!(t["token_type"], "Bearer");
    assert!(
        t["issued_at"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    let id = t["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("http://127.0.0.1:5200/id/00D"));
    assert!(t.get("refresh_token").is_none());
    // errors
    assert_eq!(form("grant_type=password&client_id=ferry-emulator&client_secret=wrong&username=admin%40ferry.local&password=ferry").await.json(), json!({"error": "invalid_client", "error_description": "invalid client credentials"}));
    assert_eq!(
        form("grant_type=password&client_id=other&client_secret=x&username=a&password=b")
            .await
            .json(),
        json!({"error": "invalid_client_id", "error_description": "client identifier invalid"})
    );
    let bad = form("grant_type=password&client_id=ferry-emulator&client_secret=ferry-emulator-secret&username=admin%40ferry.local&password=nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json(),
        json!({"error": "invalid_grant", "error_description": "authentication failure"})
    );
    assert_eq!(
        form("grant_type=magic").await.json()["error"],
        "unsupported_grant_type"
    );
    // client credentials over HTTP Basic
    let basic = format!(
        "Basic {}",
        base64_encode("ferry-emulator:ferry-emulator-secret")
    );
    let r = e
        .send(
            "POST",
            "/services/oauth2/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &basic),
            ],
            b"grant_type=client_credentials".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["access_token"].is_string());
    // web-server flow: consent page, Allow, code exchange, refresh
    let page = e.send("GET", "/services/oauth2/authorize?response_type=code&client_id=ferry-emulator&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=xyz&scope=api%20refresh_token", &[], Vec::new()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("<form") && html.contains("Allow"));
    let allow = e
        .send("POST", "/services/oauth2/authorize", &[("content-type", "application/x-www-form-urlencoded")], b"response_type=code&client_id=ferry-emulator&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=xyz&scope=api%20refresh_token&approve=allow".to_vec())
        .await;
    assert_eq!(allow.status, StatusCode::FOUND);
    let loc = allow.header("location");
    assert!(
        loc.starts_with("http://localhost/cb?code=") && loc.ends_with("&state=xyz"),
        "{loc}"
    );
    let code = loc
        .split("code=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_default();
    let r = form(&format!("grant_type=authorization_code&code={code}&client_id=ferry-emulator&client_secret=ferry-emulator-secret&redirect_uri=http%3A%2F%2Flocalhost%2Fcb")).await;
    let t = r.json();
    let refresh = t["refresh_token"].as_str().unwrap_or_default().to_string();
    assert!(!refresh.is_empty(), "{t}");
    // the code is single-use
    assert_eq!(form(&format!("grant_type=authorization_code&code={code}&client_id=ferry-emulator&client_secret=ferry-emulator-secret")).await.json()["error"], "invalid_grant");
    let r = form(&format!("grant_type=refresh_token&refresh_token={refresh}&client_id=ferry-emulator&client_secret=ferry-emulator-secret")).await;
    assert!(r.json()["access_token"].is_string());
    assert!(r.json().get("refresh_token").is_none());
    assert_eq!(
        form("grant_type=refresh_token&refresh_token=bogus&client_id=ferry-emulator")
            .await
            .json(),
        json!({"error": "invalid_grant", "error_description": "expired access/refresh token"})
    );
    // deny
    let deny = e
        .send(
            "POST",
            "/services/oauth2/authorize",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"client_id=ferry-emulator&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&approve=deny"
                .to_vec(),
        )
        .await;
    assert!(deny.header("location").contains("error=access_denied"));
    // userinfo and identity
    let ui = e.api("GET", "/services/oauth2/userinfo", None).await.json();
    for k in [
        "sub",
        "user_id",
        "organization_id",
        "preferred_username",
        "name",
        "email",
        "urls",
        "active",
        "utcOffset",
    ] {
        assert!(ui.get(k).is_some(), "userinfo {k}");
    }
    assert_eq!(ui["preferred_username"], "admin@ferry.local");
    assert_eq!(
        ui["urls"]["rest"],
        "http://127.0.0.1:5200/services/data/v{version}/"
    );
    let path = id.trim_start_matches("http://127.0.0.1:5200");
    let ident = e.api("GET", path, None).await;
    assert_eq!(ident.status, StatusCode::OK);
    assert_eq!(ident.json()["username"], "admin@ferry.local");
    let user = e
        .api(
            "GET",
            &format!(
                "/services/data/v51.0/sobjects/User/{}",
                ui["user_id"].as_str().unwrap_or("")
            ),
            None,
        )
        .await;
    assert_eq!(user.json()["Username"], "admin@ferry.local");
    // revoke
    let r = e
        .send(
            "POST",
            "/services/oauth2/revoke",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={}", e.token).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        e.api("GET", &format!("{V}/limits"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn soap_login_returns_a_session() {
    let e = Emu::new(Seed::Empty).await;
    let env = |u: &str, p: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?><env:Envelope xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body><n1:login xmlns:n1=\"urn:partner.soap.sforce.com\"><n1:username>{u}</n1:username><n1:password>{p}</n1:password></n1:login></env:Body></env:Envelope>"
        )
    };
    let r = e
        .send(
            "POST",
            "/services/Soap/u/59.0",
            &[("content-type", "text/xml"), ("soapaction", "login")],
            env("admin@ferry.local", "ferryTOKEN").into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let xml = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        xml.contains("<serverUrl>http://127.0.0.1:5200/services/Soap/u/59.0/00D"),
        "{xml}"
    );
    let session = xml
        .split("<sessionId>")
        .nth(1)
        .and_then(|s| s.split("</sessionId>").next())
        .unwrap_or_default();
    let ok = e
        .send(
            "GET",
            "/services/data/v59.0/limits",
            &[("authorization", &format!("Bearer {session}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = e
        .send(
            "POST",
            "/services/Soap/u/59.0",
            &[("content-type", "text/xml")],
            env("admin@ferry.local", "wrong").into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        String::from_utf8_lossy(&r.body)
            .contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>")
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn faults_apply_to_every_api() {
    let e = Emu::new(Seed::Empty).await;
    let r = e
        .admin(
            "PUT",
            "/__emulator/faults",
            json!({"errorRate": 1.0, "errorStatus": 500}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = e.api("GET", &format!("{V}/limits"), None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()[0]["errorCode"], "UNKNOWN_EXCEPTION");
    let r = e
        .send("POST", "/services/oauth2/token", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    e.admin("PUT", "/__emulator/faults", json!({"lockRate": 1.0}))
        .await;
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Account"),
            Some(json!({"Name": "x"})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "UNABLE_TO_LOCK_ROW");
    let r = e
        .api(
            "POST",
            &format!("{V}/composite/sobjects"),
            Some(json!({"records": [{"attributes": {"type": "Account"}, "Name": "x"}]})),
        )
        .await;
    assert_eq!(r.json()[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    // short-lived sessions
    e.admin("PUT", "/__emulator/faults", json!({"sessionTtlSeconds": 0}))
        .await;
    let r = e
        .send("POST", "/services/oauth2/token", &[("content-type", "application/x-www-form-urlencoded")], b"grant_type=client_credentials&client_id=ferry-emulator&client_secret=ferry-emulator-secret".to_vec())
        .await;
    let short = r.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = e
        .send(
            "GET",
            &format!("{V}/limits"),
            &[("authorization", &format!("Bearer {short}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = e
        .send("DELETE", "/__emulator/faults", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let calls = e
        .send("GET", "/__emulator/calls", &[], Vec::new())
        .await
        .json();
    assert!(
        calls["calls"]["POST /services/data/vXX.X/sobjects/Account"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{calls}"
    );
}

#[tokio::test]
async fn demo_seed_and_custom_schema() {
    let e = Emu::new(Seed::Demo).await;
    let n = e.query("SELECT COUNT() FROM Account").await.json()["totalSize"]
        .as_u64()
        .unwrap_or(0);
    // 200 seeded accounts plus one per converted lead
    assert_eq!(n, 230);
    let conv = e
        .query("SELECT COUNT() FROM Lead WHERE IsConverted = true")
        .await
        .json()["totalSize"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(conv, 30);
    let cur = e
        .query("SELECT IsoCode, ConversionRate FROM CurrencyType ORDER BY IsoCode")
        .await
        .json();
    assert_eq!(cur["records"][0]["IsoCode"], "EUR");
    assert_eq!(cur["records"][1]["IsoCode"], "USD");
    let r = e
        .admin("POST", "/__emulator/schema", json!({"objects": [{"name": "Invoice__c", "fields": [
            {"name": "Number__c", "type": "text", "length": 10, "externalId": true, "unique": true, "required": true},
            {"name": "Amount__c", "type": "currency"},
            {"name": "Account__c", "type": "lookup", "referenceTo": "Account", "childRelationshipName": "Invoices__r"},
            {"name": "Status__c", "type": "picklist", "values": ["Draft", "Sent"], "restricted": true},
            {"name": "Double__c", "type": "formula", "returnType": "currency", "formula": "Amount__c * 2"},
            {"name": "Label__c", "type": "formula", "returnType": "text", "formula": "Number__c & ' / ' & Account__r.Name"}
        ]}]}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let acct = e.query("SELECT Id, Name FROM Account LIMIT 1").await.json()["records"][0].clone();
    let id = e.create("Invoice__c", json!({"Number__c": "INV-1", "Amount__c": 10.5, "Account__c": acct["Id"], "Status__c": "Draft"})).await;
    assert!(id.starts_with('a'));
    let inv = e
        .api("GET", &format!("{V}/sobjects/Invoice__c/{id}"), None)
        .await
        .json();
    assert_eq!(inv["Double__c"], json!(21.0));
    assert_eq!(
        inv["Label__c"],
        json!(format!("INV-1 / {}", acct["Name"].as_str().unwrap_or("")))
    );
    let stamp = inv["SystemModstamp"].clone();
    // formula changes when the parent changes, without touching the child's SystemModstamp
    e.api(
        "PATCH",
        &format!("{V}/sobjects/Account/{}", acct["Id"].as_str().unwrap_or("")),
        Some(json!({"Name": "Renamed"})),
    )
    .await;
    let inv2 = e
        .api("GET", &format!("{V}/sobjects/Invoice__c/{id}"), None)
        .await
        .json();
    assert_eq!(inv2["Label__c"], "INV-1 / Renamed");
    assert_eq!(inv2["SystemModstamp"], stamp);
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Invoice__c"),
            Some(json!({"Number__c": "INV-2", "Status__c": "Paid"})),
        )
        .await;
    assert_eq!(
        r.json()[0]["errorCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Invoice__c"),
            Some(json!({"Amount__c": 1})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    let r = e
        .api(
            "POST",
            &format!("{V}/sobjects/Invoice__c"),
            Some(json!({"Number__c": "INV-3", "Double__c": 1})),
        )
        .await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE");
    let q = e.query("SELECT Name, (SELECT Number__c, Double__c FROM Invoices__r) FROM Account WHERE Name = 'Renamed'").await.json();
    assert_eq!(
        q["records"][0]["Invoices__r"]["records"][0]["Number__c"],
        "INV-1"
    );
    assert_eq!(q["records"][0]["Invoices__r"]["totalSize"], 1);
    let d = e
        .api("GET", &format!("{V}/sobjects/Invoice__c/describe"), None)
        .await
        .json();
    let f = d["fields"].as_array().cloned().unwrap_or_default();
    let dbl = f
        .iter()
        .find(|x| x["name"] == "Double__c")
        .cloned()
        .unwrap_or_default();
    assert_eq!(dbl["calculated"], true);
    assert_eq!(dbl["calculatedFormula"], "Amount__c * 2");
    assert_eq!(dbl["type"], "currency");
    assert_eq!(dbl["createable"], false);
}
