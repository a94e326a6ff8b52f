//! REST against the in-process emulator: describe (and its cache), CRUD, upsert, query
//! paging, collections, limits, replication feeds.

mod common;

use common::Emu;
use ferry_salesforce::sobjects::record;
use ferry_salesforce::{CollectionOptions, QueryScope, SalesforceError};
use futures_util::TryStreamExt;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn describe_is_cached_and_invalidated() {
    let emu = Emu::start().await;
    let client = emu.client().await;
    let global = client.describe_global().await.expect("global");
    assert!(
        global
            .sobjects
            .iter()
            .any(|o| o.name == "Account" && o.queryable)
    );
    let account = client.describe("Account").await.expect("describe");
    assert_eq!(account.name, "Account");
    assert!(
        account
            .field("Name")
            .is_some_and(|f| f.field_type == "string")
    );
    assert!(account.field("Id").is_some_and(|f| f.field_type == "id"));

    let key = "GET /services/data/vXX.X/sobjects/Account/describe";
    assert_eq!(emu.call_count(key).await, 1);
    client.describe("account").await.expect("cached");
    assert_eq!(emu.call_count(key).await, 1, "served from the cache");
    client.invalidate_describe(Some("Account"));
    client.describe("Account").await.expect("refetched");
    assert_eq!(emu.call_count(key).await, 2);

    // INVALID_FIELD anywhere clears the cache.
    let error = client
        .retrieve("Account", "001000000000000AAA", Some(&["NoSuchField__c"]))
        .await
        .expect_err("bad field");
    assert!(
        matches!(&error, SalesforceError::Api(api) if api.error_code == "INVALID_FIELD" || api.status == 404),
        "{error:?}"
    );
    let bad_query = client
        .query_all_pages("SELECT NoSuchField__c FROM Account", QueryScope::Live)
        .await
        .expect_err("bad query");
    assert_eq!(bad_query.error_code(), Some("INVALID_FIELD"));
    client
        .describe("Account")
        .await
        .expect("refetched after INVALID_FIELD");
    assert_eq!(emu.call_count(key).await, 3);

    // describe_many: one composite/batch call for every uncached object, errors per object.
    client.invalidate_describe(None);
    let before = emu.data_api_calls().await;
    let names = [
        "Account",
        "Contact",
        "Lead",
        "Opportunity",
        "NoSuchObject__c",
        "User",
    ];
    let many = client.describe_many(&names).await.expect("describe many");
    assert_eq!(
        emu.data_api_calls().await - before,
        1,
        "one API call for six describes"
    );
    assert_eq!(many[1].as_ref().map(|d| d.name.as_str()), Ok("Contact"));
    assert_eq!(
        many[4]
            .as_ref()
            .map(|_| ())
            .expect_err("unknown")
            .error_code,
        "NOT_FOUND"
    );
    assert!(many[5].is_ok(), "{:?}", many[5]);
    client
        .describe("Lead")
        .await
        .expect("cached by describe_many");
    assert_eq!(
        emu.data_api_calls().await - before,
        1,
        "Lead came from the cache"
    );
    let again = client
        .describe_many(&["Account", "Lead"])
        .await
        .expect("all cached");
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(
        emu.data_api_calls().await - before,
        1,
        "served from the cache"
    );

    let missing = client
        .describe("NoSuchObject__c")
        .await
        .expect_err("unknown object");
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.error_code(), Some("NOT_FOUND"));
    assert!(matches!(
        client.describe("Account/../x").await,
        Err(SalesforceError::InvalidInput(_))
    ));
    emu.stop().await;
}

#[tokio::test]
async fn single_record_crud_and_upsert() {
    let emu = Emu::start().await;
    emu.admin(
        Method::POST,
        "objects/Account/fields",
        Some(json!({"name": "Ext__c", "type": "text", "externalId": true, "unique": true})),
    )
    .await;
    let client = emu.client().await;

    let id = client
        .create("Account", &record([("Name", json!("O'Brien & Sons"))]))
        .await
        .expect("create");
    assert_eq!(id.len(), 18);
    let fetched = client
        .retrieve("Account", &id, Some(&["Name"]))
        .await
        .expect("retrieve");
    assert_eq!(fetched["Name"], json!("O'Brien & Sons"));
    assert_eq!(fetched["attributes"]["type"], json!("Account"));
    client
        .update("Account", &id, &record([("Name", json!("Renamed"))]))
        .await
        .expect("update");
    assert_eq!(
        client
            .retrieve("Account", &id, None)
            .await
            .expect("retrieve")["Name"],
        json!("Renamed")
    );

    let required = client
        .create("Account", &record([("Description", json!("no name"))]))
        .await
        .expect_err("missing Name");
    assert_eq!(required.error_code(), Some("REQUIRED_FIELD_MISSING"));
    assert!(!required.is_retryable());

    let created = client
        .upsert(
            "Account",
            "Ext__c",
            "A/1 x",
            &record([("Name", json!("Upserted"))]),
        )
        .await
        .expect("upsert insert");
    assert!(created.created);
    let updated = client
        .upsert(
            "Account",
            "Ext__c",
            "A/1 x",
            &record([("Name", json!("Upserted again"))]),
        )
        .await
        .expect("upsert update");
    assert!(!updated.created);
    assert_eq!(updated.id, created.id);
    let by_ext = client
        .retrieve_by_external_id("Account", "Ext__c", "A/1 x")
        .await
        .expect("by external id");
    assert_eq!(by_ext["Name"], json!("Upserted again"));

    client.delete("Account", &id).await.expect("delete");
    let gone = client
        .retrieve("Account", &id, None)
        .await
        .expect_err("deleted");
    assert_eq!(gone.error_code(), Some("ENTITY_IS_DELETED"));
    assert_eq!(gone.status(), Some(404));
    emu.stop().await;
}

#[tokio::test]
async fn upsert_matching_several_records_is_multiple_matches() {
    let emu = Emu::start().await;
    emu.admin(
        Method::POST,
        "objects/Account/fields",
        Some(json!({"name": "Code__c", "type": "text", "externalId": true})),
    )
    .await;
    emu.insert(
        "Account",
        json!([{"Name": "a", "Code__c": "dup"}, {"Name": "b", "Code__c": "dup"}]),
    )
    .await;
    let client = emu.client().await;
    match client
        .upsert("Account", "Code__c", "dup", &record([("Name", json!("c"))]))
        .await
    {
        Err(SalesforceError::MultipleMatches { urls }) => assert_eq!(urls.len(), 2),
        other => panic!("expected 300 multiple matches, got {other:?}"),
    }
    emu.stop().await;
}

#[tokio::test]
async fn query_streams_pages_with_small_batch_size() {
    let emu = Emu::start().await;
    emu.generate(
        "Account",
        450,
        json!({"Name": "Acct {n}", "Industry": ["Energy", "Media"]}),
    )
    .await;
    let client = emu
        .client_with(|config| config.query_batch_size = Some(200))
        .await;
    let pages: Vec<_> = client
        .query_pages(
            "SELECT Id, Name FROM Account ORDER BY Name",
            QueryScope::Live,
        )
        .try_collect()
        .await
        .expect("pages");
    assert_eq!(
        pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(),
        vec![200, 200, 50]
    );
    assert!(pages.iter().all(|p| p.total_size == 450));
    assert!(pages[2].done && pages[2].next_records_url.is_none());
    assert_eq!(
        emu.call_count("GET /services/data/vXX.X/query/*").await,
        2,
        "two queryMore calls"
    );

    // Literals from data are escaped through ferry-soql.
    client
        .create(
            "Account",
            &record([("Name", json!("Quote ' and \\ backslash"))]),
        )
        .await
        .expect("create");
    let soql = ferry_salesforce::query::select_where_in(
        "Account",
        &["Id", "Name"],
        "Name",
        &["Quote ' and \\ backslash", "x') OR Name != ('"],
    )
    .expect("soql");
    let found = client
        .query_all_pages(&soql, QueryScope::Live)
        .await
        .expect("escaped query");
    assert_eq!(found.len(), 1, "only the literal match, no injection");

    // queryAll sees deleted rows, query does not.
    let id = found[0]["Id"].as_str().expect("id").to_string();
    client.delete("Account", &id).await.expect("delete");
    let by_id = format!(
        "SELECT Id, IsDeleted FROM Account WHERE Id = {}",
        ferry_soql::quote_string(&id)
    );
    assert!(
        client
            .query_all_pages(&by_id, QueryScope::Live)
            .await
            .expect("live")
            .is_empty()
    );
    let all = client
        .query_all_pages(&by_id, QueryScope::All)
        .await
        .expect("all rows");
    assert_eq!(all[0]["IsDeleted"], json!(true));

    let records: Vec<_> = client
        .query_records("SELECT Id FROM Account", QueryScope::Live)
        .try_collect()
        .await
        .expect("records");
    assert_eq!(records.len(), 450);
    let malformed = client
        .query_all_pages("SELECT FROM", QueryScope::Live)
        .await
        .expect_err("malformed");
    assert_eq!(malformed.error_code(), Some("MALFORMED_QUERY"));
    emu.stop().await;
}

#[tokio::test]
async fn collections_with_per_record_errors() {
    let emu = Emu::start().await;
    emu.admin(
        Method::POST,
        "objects/Account/fields",
        Some(json!({"name": "Ext__c", "type": "text", "externalId": true, "unique": true})),
    )
    .await;
    let client = emu.client().await;
    let options = CollectionOptions::default();

    let results = client
        .create_many(
            "Account",
            vec![
                record([("Name", json!("ok 1"))]),
                record([("Description", json!("no name"))]),
                record([("Name", json!("ok 2"))]),
            ],
            options,
        )
        .await
        .expect("create many");
    assert_eq!(results.len(), 3);
    assert!(results[0].success && results[2].success);
    assert!(!results[1].success && results[1].id.is_none());
    assert_eq!(results[1].errors[0].error_code, "REQUIRED_FIELD_MISSING");

    let all_or_none = CollectionOptions {
        all_or_none: true,
        ..options
    };
    let rolled = client
        .create_many(
            "Account",
            vec![
                record([("Name", json!("x"))]),
                record([("Description", json!("y"))]),
            ],
            all_or_none,
        )
        .await
        .expect("all or none");
    assert_eq!(
        rolled[0].errors[0].error_code,
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(rolled[1].errors[0].error_code, "REQUIRED_FIELD_MISSING");
    let names = client
        .query_all_pages(
            "SELECT Name FROM Account WHERE Name = 'x'",
            QueryScope::Live,
        )
        .await
        .expect("query");
    assert!(names.is_empty(), "rolled back");

    let ids: Vec<String> = [&results[0], &results[2]]
        .iter()
        .map(|r| r.id.clone().expect("id"))
        .collect();
    let updates = vec![
        record([("Id", json!(ids[0])), ("Name", json!("updated"))]),
        record([
            ("Id", json!("001000000000000AAA")),
            ("Name", json!("missing")),
        ]),
    ];
    let updated = client
        .update_many("Account", updates, options)
        .await
        .expect("update many");
    assert!(updated[0].success);
    assert!(!updated[1].success);
    assert!(matches!(
        client
            .update_many("Account", vec![record([("Name", json!("no id"))])], options)
            .await,
        Err(SalesforceError::InvalidInput(_))
    ));

    let upserts = vec![
        record([("Ext__c", json!("E-1")), ("Name", json!("new"))]),
        record([("Ext__c", json!("E-1")), ("Name", json!("again"))]),
    ];
    let upserted = client
        .upsert_many("Account", "Ext__c", upserts, options)
        .await
        .expect("upsert many");
    assert_eq!(upserted[0].created, Some(true));
    assert_eq!(upserted[1].created, Some(false));

    let too_many: Vec<_> = (0..201)
        .map(|i| record([("Name", json!(format!("n{i}")))]))
        .collect();
    let before = emu.data_api_calls().await;
    assert!(matches!(
        client.create_many("Account", too_many, options).await,
        Err(SalesforceError::InvalidInput(_))
    ));
    assert_eq!(
        emu.data_api_calls().await,
        before,
        "refused before any request"
    );

    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let missing_id = "001000000000000AAA";
    let fetched = client
        .retrieve_many("Account", &[id_refs[0], missing_id, id_refs[1]], &["Name"])
        .await
        .expect("retrieve many");
    assert_eq!(
        fetched[0].as_ref().map(|r| r["Name"].clone()),
        Some(json!("updated"))
    );
    assert!(fetched[1].is_none());
    assert!(fetched[2].is_some());
    let counts = client
        .record_counts(&["Account"])
        .await
        .expect("record counts");
    assert!(counts.get("Account").is_some_and(|n| *n >= 3), "{counts:?}");

    let deleted = client
        .delete_many(&id_refs, options)
        .await
        .expect("delete many");
    assert!(deleted.iter().all(|r| r.success));
    let again = client
        .delete_many(&id_refs, options)
        .await
        .expect("delete again");
    assert!(again.iter().all(|r| !r.success && r.id.is_some()));
    emu.stop().await;
}

#[tokio::test]
async fn limits_and_replication_feeds() {
    let emu = Emu::start().await;
    let client = emu.client().await;
    let limits = client.limits().await.expect("limits");
    let daily = limits.daily_api_requests().expect("DailyApiRequests");
    assert_eq!(daily.max, 100_000);
    assert!(limits.get("DailyBulkApiBatches").is_some());
    let (used, max) = client.last_api_usage().expect("Sforce-Limit-Info seen");
    assert_eq!(max, 100_000);
    assert!(used >= 1);

    let id = client
        .create("Account", &record([("Name", json!("feed"))]))
        .await
        .expect("create");
    let kept = client
        .create("Account", &record([("Name", json!("kept"))]))
        .await
        .expect("create");
    client.delete("Account", &id).await.expect("delete");
    // The feeds cover whole minutes up to "now": move the emulated clock past this minute.
    emu.admin(Method::PUT, "clock", Some(json!({"advanceSeconds": 120})))
        .await;
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::hours(1);
    let end = now + chrono::Duration::minutes(10);
    let deleted = client
        .get_deleted("Account", start, end)
        .await
        .expect("deleted feed");
    assert!(
        deleted.deleted_records.iter().any(|r| r.id == id),
        "{deleted:?}"
    );
    assert!(
        deleted
            .latest_date_covered
            .as_deref()
            .and_then(ferry_salesforce::datetime::parse_datetime)
            .is_some()
    );
    let updated = client
        .get_updated("Account", start, end)
        .await
        .expect("updated feed");
    assert!(updated.latest_date_covered.is_some());
    assert!(updated.ids.contains(&kept), "{updated:?}");
    emu.stop().await;
}
