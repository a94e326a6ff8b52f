//! Session expiry, the daily budget, the org-usage floor and retries, against the emulator.

mod common;

use std::sync::{Arc, Mutex};

use common::Emu;
use ferry_salesforce::sobjects::record;
use ferry_salesforce::{
    BudgetKind, CollectionOptions, QueryScope, RetryPolicy, SalesforceError, TokenResponse,
};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "POST /services/oauth2/token";

#[tokio::test]
async fn expired_session_refreshes_once_for_concurrent_requests() {
    let emu = Emu::start().await;
    emu.generate("Account", 5, json!({"Name": "A {n}"})).await;
    let seen: Arc<Mutex<Vec<TokenResponse>>> = Arc::default();
    let observer = seen.clone();
    let client = emu
        .client_with(move |config| {
            config.on_token = Some(Arc::new(move |token: &TokenResponse| {
                observer.lock().expect("lock").push(token.clone())
            }));
        })
        .await;
    client.limits().await.expect("warm up");
    let old_token = client.access_token();
    let grants_before = emu.call_count(TOKEN).await;

    emu.admin(Method::POST, "faults/expireSessions", None).await;
    let calls = (0..12).map(|_| {
        let client = client.clone();
        async move {
            client
                .query_all_pages("SELECT Id FROM Account", QueryScope::Live)
                .await
        }
    });
    let results = join_all(calls).await;
    for result in &results {
        assert_eq!(
            result
                .as_ref()
                .expect("every request succeeds after the refresh")
                .len(),
            5
        );
    }
    assert_eq!(
        emu.call_count(TOKEN).await - grants_before,
        1,
        "exactly one token request for 12 failures"
    );
    assert_eq!(client.refresh_count(), 1);
    assert_ne!(client.access_token(), old_token);
    assert_eq!(
        seen.lock().expect("lock").len(),
        2,
        "initial grant and one refresh observed"
    );
    emu.stop().await;
}

#[tokio::test]
async fn budget_cap_refuses_before_the_call() {
    let emu = Emu::start().await;
    let budget = common::budget(3);
    let shared = budget.clone();
    let client = emu.client_with(move |config| config.budget = shared).await;
    emu.admin(Method::DELETE, "calls", None).await;
    for _ in 0..3 {
        client.limits().await.expect("within the budget");
    }
    assert_eq!(emu.data_api_calls().await, 3);
    let refused = client.limits().await.expect_err("over the budget");
    match &refused {
        SalesforceError::BudgetExhausted(exceeded) => {
            assert_eq!(exceeded.kind, BudgetKind::ConnectionCap);
            assert_eq!((exceeded.used, exceeded.limit), (3, 3));
        }
        other => panic!("{other:?}"),
    }
    assert!(!refused.is_retryable());
    assert!(refused.to_string().contains("3 of 3"), "{refused}");
    assert_eq!(
        emu.data_api_calls().await,
        3,
        "nothing reached the emulator"
    );
    assert_eq!(budget.used(), 3);
    assert_eq!(
        budget.last_org_usage().map(|(_, max)| max),
        Some(100_000),
        "Sforce-Limit-Info fed to the budget"
    );
    emu.stop().await;
}

#[tokio::test]
async fn org_usage_floor_stops_before_the_org_limit() {
    let emu = Emu::start().await;
    emu.admin(
        Method::PUT,
        "limits",
        Some(json!({"dailyApiRequests": 1000, "used": 985})),
    )
    .await;
    let client = emu
        .client_with(|config| config.org_min_remaining_fraction = 0.01)
        .await;
    // The floor is 1% of 1000 = 10 remaining. Calls are allowed while the last reading
    // leaves at least 10: readings 986..=991 follow the six allowed calls.
    for _ in 0..6 {
        client.limits().await.expect("above the floor");
    }
    assert_eq!(client.last_api_usage(), Some((991, 1000)));
    let before = emu.data_api_calls().await;
    let refused = client.limits().await.expect_err("floor reached");
    assert!(
        matches!(&refused, SalesforceError::BudgetExhausted(e) if e.kind == BudgetKind::OrgFloor),
        "{refused:?}"
    );
    assert_eq!(emu.data_api_calls().await, before);

    // Without a floor, the org's own limit answers REQUEST_LIMIT_EXCEEDED, which is final.
    emu.admin(Method::PUT, "limits", Some(json!({"used": 1000})))
        .await;
    let unguarded = emu
        .client_with(|config| config.org_min_remaining_fraction = 0.0)
        .await;
    let error = unguarded.limits().await.expect_err("daily limit");
    assert_eq!(error.error_code(), Some("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(error.status(), Some(403));
    assert!(error.is_daily_limit());
    assert!(!error.is_retryable());
    emu.stop().await;
}

#[tokio::test]
async fn retries_injected_503s() {
    let emu = Emu::start().await;
    let client = emu
        .client_with(|config| {
            config.retry = RetryPolicy {
                max_attempts: 40,
                ..RetryPolicy::for_test()
            };
            config.retry.max_delay = std::time::Duration::from_millis(5);
        })
        .await;
    emu.set_faults(json!({"errorRate": 0.5, "errorStatus": 503}))
        .await;
    // 20 writes at a 50% fault rate: the chance that none hits a 503 is 2^-20.
    for i in 0..20 {
        client
            .create("Account", &record([("Name", json!(format!("r{i}")))]))
            .await
            .expect("eventually succeeds");
    }
    emu.clear_faults().await;
    assert!(client.retry_count() > 0, "some 503s were retried");
    let created = client
        .query_all_pages("SELECT Id FROM Account", QueryScope::Live)
        .await
        .expect("query");
    assert_eq!(created.len(), 20, "503s were not applied, so no duplicates");
    println!(
        "20 creates needed {} retries under a 50% 503 rate",
        client.retry_count()
    );

    // Without retries the 503 surfaces, classified retryable.
    let strict = emu
        .client_with(|config| config.retry = RetryPolicy::no_retries())
        .await;
    emu.set_faults(json!({"errorRate": 1.0, "errorStatus": 503}))
        .await;
    let error = strict.limits().await.expect_err("503");
    assert_eq!(error.status(), Some(503));
    assert!(error.is_retryable());
    emu.clear_faults().await;
    emu.stop().await;
}

#[tokio::test]
async fn retries_lock_errors() {
    let emu = Emu::start().await;
    let client = emu
        .client_with(|config| {
            config.retry = RetryPolicy {
                max_attempts: 40,
                ..RetryPolicy::for_test()
            };
            config.retry.max_delay = std::time::Duration::from_millis(5);
        })
        .await;
    let id = client
        .create("Account", &record([("Name", json!("locked"))]))
        .await
        .expect("create");
    emu.set_faults(json!({"lockRate": 0.5})).await;

    // Whole-request lock errors (single-record update) are retried.
    for i in 0..20 {
        client
            .update("Account", &id, &record([("Name", json!(format!("v{i}")))]))
            .await
            .expect("update eventually succeeds");
    }
    assert!(client.retry_count() > 0, "lock errors were retried");

    // Per-record lock errors in collections are resubmitted, only for the failed records.
    let records: Vec<_> = (0..50)
        .map(|i| record([("Name", json!(format!("bulk {i}")))]))
        .collect();
    let results = client
        .create_many("Account", records, CollectionOptions::default())
        .await
        .expect("collections");
    assert!(
        results.iter().all(|r| r.success),
        "every record eventually written: {results:?}"
    );

    // allOrNone: a lock failure rolls back everything; the whole request is resubmitted
    // (at a 10% lock rate per record, so a clean round of 5 is likely within the attempts).
    emu.set_faults(json!({"lockRate": 0.1})).await;
    let records: Vec<_> = (0..5)
        .map(|i| record([("Name", json!(format!("aon {i}")))]))
        .collect();
    let results = client
        .create_many(
            "Account",
            records,
            CollectionOptions {
                all_or_none: true,
                retry_lock_errors: true,
            },
        )
        .await
        .expect("all or none");
    assert!(results.iter().all(|r| r.success), "{results:?}");

    // Without lock retries the error is reported per record.
    emu.set_faults(json!({"lockRate": 1.0})).await;
    let records: Vec<_> = (0..3)
        .map(|i| record([("Name", json!(format!("nolock {i}")))]))
        .collect();
    let results = client
        .create_many(
            "Account",
            records,
            CollectionOptions {
                all_or_none: false,
                retry_lock_errors: false,
            },
        )
        .await
        .expect("collections");
    assert!(results.iter().all(|r| r.is_lock_failure()));
    emu.clear_faults().await;

    let total = client
        .query_all_pages("SELECT Id FROM Account", QueryScope::Live)
        .await
        .expect("query");
    assert_eq!(total.len(), 1 + 50 + 5, "no duplicates from resubmission");
    emu.stop().await;
}
