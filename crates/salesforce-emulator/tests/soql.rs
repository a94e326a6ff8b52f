//! Executor tests for each SOQL construct, through `/query` with raw JSON results.

mod common;

use common::Emu;
use ferry_salesforce_emulator::Seed;
use http::StatusCode;
use serde_json::{Value as Json, json};

async fn org() -> Emu {
    let e = Emu::new(Seed::Empty).await;
    e.admin(
        "PUT",
        "/__emulator/clock",
        json!({"now": "2030-06-15T12:00:00Z"}),
    )
    .await;
    e.admin("POST", "/__emulator/records/CurrencyType", json!([]))
        .await;
    e.send("POST", "/__emulator/schema", &[("content-type", "application/json")], serde_json::to_vec(&json!({
        "fields": {"Account": [
            {"name": "Tags__c", "type": "multipicklist", "values": ["a", "b", "c"]},
            {"name": "Ext__c", "type": "text", "externalId": true}
        ]},
        "records": {
            "CurrencyType": [{"IsoCode": "EUR", "ConversionRate": 0.5, "DecimalPlaces": 2, "IsActive": true}],
            "Account": [
                {"Name": "Acme", "Industry": "Retail", "AnnualRevenue": 100, "NumberOfEmployees": 10, "Tags__c": "a;b", "Ext__c": "A"},
                {"Name": "Globex", "Industry": "Energy", "AnnualRevenue": 300, "NumberOfEmployees": 30, "Tags__c": "c", "CurrencyIsoCode": "EUR", "Ext__c": "G"},
                {"Name": "Initech", "Industry": "Retail", "AnnualRevenue": null, "NumberOfEmployees": 20, "Ext__c": "I"},
                {"Name": "acme lower", "Industry": null, "AnnualRevenue": 50, "NumberOfEmployees": 5}
            ],
            "Contact": [
                {"LastName": "Alpha", "FirstName": "Ann", "Account": {"Ext__c": "A"}, "Birthdate": "1990-01-01"},
                {"LastName": "Beta", "Account": {"Ext__c": "A"}},
                {"LastName": "Gamma", "Account": {"Ext__c": "G"}},
                {"LastName": "Orphan"}
            ]
        }
    })).unwrap_or_default()).await;
    e
}

fn names(j: &Json, key: &str) -> Vec<String> {
    j["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r[key].as_str().unwrap_or("<null>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn field_lists_parent_paths_and_shapes() {
    let e = org().await;
    let j = e
        .query(
            "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact ORDER BY LastName",
        )
        .await
        .json();
    assert_eq!(j["totalSize"], 4);
    let r0 = &j["records"][0];
    assert_eq!(r0["attributes"]["type"], "Contact");
    assert!(
        r0["attributes"]["url"]
            .as_str()
            .unwrap_or("")
            .starts_with("/services/data/v59.0/sobjects/Contact/003")
    );
    assert_eq!(r0["Account"]["attributes"]["type"], "Account");
    assert_eq!(r0["Account"]["Name"], "Acme");
    assert_eq!(r0["Account"]["Owner"]["Name"], "Admin User");
    let keys: Vec<&String> = r0
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["attributes", "Id", "LastName", "Account"]);
    assert_eq!(j["records"][3]["Account"], Json::Null);
    // canonical field casing whatever the query used
    let j = e
        .query("select lastname, ACCOUNT.name from contact where lastname = 'alpha'")
        .await
        .json();
    assert_eq!(j["records"][0]["LastName"], "Alpha");
    assert_eq!(j["records"][0]["Account"]["Name"], "Acme");
}

#[tokio::test]
async fn where_operators() {
    let e = org().await;
    async fn e_query(e: &Emu, s: &str) -> Json {
        let r = e.query(s).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{s}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Industry = 'retail' ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Acme", "Initech"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Industry != 'Retail' ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["acme lower", "Globex"]
    );
    assert_eq!(
        names(
            &e_query(&e, "SELECT Name FROM Account WHERE Industry = null").await,
            "Name"
        ),
        vec!["acme lower"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE NumberOfEmployees >= 20 ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Globex", "Initech"]
    );
    assert_eq!(
        names(
            &e_query(&e, "SELECT Name FROM Account WHERE NumberOfEmployees < 10").await,
            "Name"
        ),
        vec!["acme lower"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Name LIKE 'acme%' ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Acme", "acme lower"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Name IN ('Acme', 'Globex') ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Acme", "Globex"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Name NOT IN ('Acme', 'Globex') ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["acme lower", "Initech"]
    );
    assert_eq!(names(&e_query(&e, "SELECT Name FROM Account WHERE (Industry = 'Retail' AND NumberOfEmployees > 10) OR Name = 'Globex' ORDER BY Name").await, "Name"), vec!["Globex", "Initech"]);
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE NOT Name LIKE 'a%' ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Globex", "Initech"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Tags__c INCLUDES ('a;b', 'c') ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Acme", "Globex"]
    );
    assert_eq!(
        names(
            &e_query(&e, "SELECT Name FROM Account WHERE Tags__c INCLUDES ('b')").await,
            "Name"
        ),
        vec!["Acme"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Tags__c EXCLUDES ('a') ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["acme lower", "Globex", "Initech"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Contact) ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Acme", "Globex"]
    );
    assert_eq!(names(&e_query(&e, "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact WHERE LastName = 'Gamma') ORDER BY Name").await, "Name"), vec!["Acme", "acme lower", "Initech"]);
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT Name FROM Account WHERE AnnualRevenue > EUR100 ORDER BY Name"
            )
            .await,
            "Name"
        ),
        vec!["Globex"],
        "EUR100 is 200 in the corporate currency"
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT LastName FROM Contact WHERE Account.Industry = 'Energy'"
            )
            .await,
            "LastName"
        ),
        vec!["Gamma"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT LastName FROM Contact WHERE Birthdate = 1990-01-01"
            )
            .await,
            "LastName"
        ),
        vec!["Alpha"]
    );
    assert_eq!(
        names(
            &e_query(
                &e,
                "SELECT LastName FROM Contact WHERE Birthdate < 2000-01-01T00:00:00Z"
            )
            .await,
            "LastName"
        ),
        vec!["Alpha"]
    );
}

#[tokio::test]
async fn indexed_lookups_match_full_scans() {
    let e = org().await;
    let all = e
        .query("SELECT Id, Name FROM Account ORDER BY Name")
        .await
        .json();
    let id18 = all["records"][0]["Id"].as_str().unwrap_or("").to_string();
    let id2 = all["records"][1]["Id"].as_str().unwrap_or("").to_string();
    let one = e
        .query(&format!("SELECT Name FROM Account WHERE Id = '{id18}'"))
        .await
        .json();
    assert_eq!(names(&one, "Name"), vec!["Acme"]);
    let one15 = e
        .query(&format!(
            "SELECT Name FROM Account WHERE Id = '{}'",
            &id18[..15]
        ))
        .await
        .json();
    assert_eq!(names(&one15, "Name"), vec!["Acme"]);
    let two = e.query(&format!("SELECT Name FROM Account WHERE Id IN ('{id18}', '{id2}', '001000000000000AAA') AND Name != 'x' ORDER BY Name")).await.json();
    assert_eq!(two["totalSize"], 2);
    // Ext__c is an external id: the value index answers, case-insensitively
    let ext = e
        .query("SELECT Name FROM Account WHERE Ext__c = 'g'")
        .await
        .json();
    assert_eq!(names(&ext, "Name"), vec!["Globex"]);
    let ext = e
        .query("SELECT Name FROM Account WHERE Ext__c IN ('a', 'I') ORDER BY Name")
        .await
        .json();
    assert_eq!(names(&ext, "Name"), vec!["Acme", "Initech"]);
    // deleted rows stay out of /query and in /queryAll
    e.api(
        "DELETE",
        &format!("/services/data/v59.0/sobjects/Account/{id18}"),
        None,
    )
    .await;
    assert_eq!(
        e.query(&format!("SELECT Id FROM Account WHERE Id = '{id18}'"))
            .await
            .json()["totalSize"],
        0
    );
    let q =
        serde_urlencoded::to_string([("q", format!("SELECT Id FROM Account WHERE Id = '{id18}'"))])
            .unwrap_or_default();
    assert_eq!(
        e.api("GET", &format!("/services/data/v59.0/queryAll?{q}"), None)
            .await
            .json()["totalSize"],
        1
    );
}

#[tokio::test]
async fn date_literals_use_the_emulator_clock() {
    let e = org().await;
    let n = |j: Json| j["totalSize"].as_u64().unwrap_or(99);
    assert_eq!(
        n(e.query("SELECT Id FROM Account WHERE CreatedDate = TODAY")
            .await
            .json()),
        4
    );
    assert_eq!(
        n(
            e.query("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:3")
                .await
                .json()
        ),
        4
    );
    assert_eq!(
        n(
            e.query("SELECT Id FROM Account WHERE CreatedDate = YESTERDAY")
                .await
                .json()
        ),
        0
    );
    assert_eq!(
        n(
            e.query("SELECT Id FROM Account WHERE CreatedDate > 2030-06-15T11:59:59Z")
                .await
                .json()
        ),
        4
    );
    e.admin(
        "PUT",
        "/__emulator/clock",
        json!({"advanceSeconds": 86400 * 2}),
    )
    .await;
    assert_eq!(
        n(e.query("SELECT Id FROM Account WHERE CreatedDate = TODAY")
            .await
            .json()),
        0
    );
    assert_eq!(
        n(
            e.query("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:3")
                .await
                .json()
        ),
        4
    );
    assert_eq!(
        n(
            e.query("SELECT Id FROM Account WHERE CreatedDate < THIS_MONTH")
                .await
                .json()
        ),
        0
    );
}

#[tokio::test]
async fn order_by_nulls_limit_offset() {
    let e = org().await;
    let j = e
        .query("SELECT Name FROM Account ORDER BY AnnualRevenue")
        .await
        .json();
    assert_eq!(
        names(&j, "Name"),
        vec!["Initech", "acme lower", "Acme", "Globex"]
    );
    let j = e
        .query("SELECT Name FROM Account ORDER BY AnnualRevenue DESC")
        .await
        .json();
    assert_eq!(
        names(&j, "Name"),
        vec!["Globex", "Acme", "acme lower", "Initech"]
    );
    let j = e
        .query("SELECT Name FROM Account ORDER BY AnnualRevenue ASC NULLS LAST")
        .await
        .json();
    assert_eq!(
        names(&j, "Name"),
        vec!["acme lower", "Acme", "Globex", "Initech"]
    );
    let j = e
        .query("SELECT Name FROM Account ORDER BY Industry DESC NULLS FIRST, Name")
        .await
        .json();
    assert_eq!(
        names(&j, "Name"),
        vec!["acme lower", "Acme", "Initech", "Globex"]
    );
    let j = e
        .query("SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1")
        .await
        .json();
    assert_eq!(names(&j, "Name"), vec!["acme lower", "Globex"]);
    assert_eq!(j["totalSize"], 2);
}

#[tokio::test]
async fn count_group_by_aggregates_and_convert_currency() {
    let e = org().await;
    let j = e
        .query("SELECT COUNT() FROM Account WHERE Industry = 'Retail'")
        .await
        .json();
    assert_eq!(j, json!({"totalSize": 2, "done": true, "records": []}));
    let j = e.query("SELECT Industry, COUNT(Id), SUM(NumberOfEmployees) total FROM Account GROUP BY Industry ORDER BY Industry NULLS LAST").await.json();
    assert_eq!(
        j["records"][0],
        json!({"attributes": {"type": "AggregateResult"}, "Industry": "Energy", "expr0": 1, "total": 30.0})
    );
    assert_eq!(
        j["records"][1],
        json!({"attributes": {"type": "AggregateResult"}, "Industry": "Retail", "expr0": 2, "total": 30.0})
    );
    assert_eq!(j["records"][2]["Industry"], Json::Null);
    let j = e
        .query("SELECT Industry, COUNT(Id) c FROM Account GROUP BY Industry HAVING COUNT(Id) > 1")
        .await
        .json();
    assert_eq!(
        j["records"],
        json!([{"attributes": {"type": "AggregateResult"}, "Industry": "Retail", "c": 2}])
    );
    let j = e.query("SELECT MAX(Name), MIN(NumberOfEmployees), AVG(NumberOfEmployees), COUNT_DISTINCT(Industry) FROM Account").await.json();
    assert_eq!(j["records"][0]["expr0"], "Initech");
    assert_eq!(j["records"][0]["expr1"], 5);
    assert_eq!(j["records"][0]["expr2"], json!(16.25));
    assert_eq!(j["records"][0]["expr3"], 2);
    // currency: aggregates and convertCurrency() use the corporate currency (EUR rate 0.5)
    let j = e
        .query("SELECT SUM(AnnualRevenue) FROM Account")
        .await
        .json();
    assert_eq!(j["records"][0]["expr0"], json!(750.0));
    let j = e.query("SELECT Name, convertCurrency(AnnualRevenue), convertCurrency(AnnualRevenue) usd FROM Account WHERE Name = 'Globex'").await.json();
    assert_eq!(j["records"][0]["AnnualRevenue"], json!(600.0));
    assert_eq!(j["records"][0]["usd"], json!(600.0));
    let j = e.query("SELECT Name, toLabel(Industry), FORMAT(AnnualRevenue) FROM Account WHERE Name = 'Globex'").await.json();
    assert_eq!(j["records"][0]["Industry"], "Energy");
    assert_eq!(j["records"][0]["AnnualRevenue"], "EUR 300.00");
}

#[tokio::test]
async fn child_subqueries_and_fields_functions() {
    let e = org().await;
    let j = e.query("SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName DESC) FROM Account ORDER BY Name").await.json();
    assert_eq!(j["records"][0]["Name"], "Acme");
    assert_eq!(j["records"][0]["Contacts"]["totalSize"], 2);
    assert_eq!(j["records"][0]["Contacts"]["done"], true);
    assert_eq!(
        names(&j["records"][0]["Contacts"], "LastName"),
        vec!["Beta", "Alpha"]
    );
    assert_eq!(
        j["records"][0]["Contacts"]["records"][0]["attributes"]["type"],
        "Contact"
    );
    assert_eq!(j["records"][1]["Contacts"], Json::Null);
    let j = e
        .query("SELECT FIELDS(STANDARD) FROM Account LIMIT 1")
        .await
        .json();
    let rec = &j["records"][0];
    assert!(
        rec.get("Name").is_some()
            && rec.get("BillingAddress").is_some()
            && rec.get("Tags__c").is_none()
    );
    let j = e
        .query("SELECT FIELDS(CUSTOM) FROM Account LIMIT 1")
        .await
        .json();
    let keys: Vec<String> = j["records"][0]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["attributes", "Tags__c", "Ext__c"]);
    let j = e
        .query("SELECT FIELDS(ALL) FROM Contact LIMIT 1")
        .await
        .json();
    assert!(j["records"][0].get("AccountId").is_some());
}

#[tokio::test]
async fn query_errors_have_salesforce_codes() {
    let e = org().await;
    let r = e.query("SELECT Id FROM Nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()[0]["errorCode"], "INVALID_TYPE");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("sObject type 'Nope' is not supported")
    );
    let r = e.query("SELECT Foo FROM Account").await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_FIELD");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("No such column 'Foo' on entity 'Account'")
    );
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ERROR at Row:1:Column:8")
    );
    let r = e.query("SELECT Bogus.Name FROM Contact").await;
    assert_eq!(r.json()[0]["errorCode"], "INVALID_FIELD");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Didn't understand relationship 'Bogus'")
    );
    let r = e
        .query("SELECT Description, COUNT(Id) FROM Account GROUP BY Description")
        .await;
    assert_eq!(r.json()[0]["errorCode"], "MALFORMED_QUERY");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("can not be grouped")
    );
    let r = e.query("SELECT Id FROM Account WHERE").await;
    assert_eq!(r.json()[0]["errorCode"], "MALFORMED_QUERY");
    let r = e.api("GET", "/services/data/v59.0/query", None).await;
    assert_eq!(r.json()[0]["errorCode"], "MALFORMED_QUERY");
}
