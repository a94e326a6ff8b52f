//! Pass-through requests (the Connection Proxy's client side) against the emulator.

mod common;

use common::Emu;
use ferry_salesforce::{RawRequest, SalesforceError};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

fn get(path: &str) -> RawRequest {
    RawRequest {
        method: Method::GET,
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
    }
}

#[tokio::test]
async fn raw_requests_pass_through_with_budget_refresh_and_caps() {
    let emu = Emu::start().await;
    let budget = common::budget(5);
    let shared = budget.clone();
    let client = emu.client_with(move |config| config.budget = shared).await;
    let path = format!("/services/data/v{}/limits", client.api_version());

    // A caller-supplied Authorization header is ignored: the stored credentials are used.
    let mut request = get(&path);
    request.headers.push((
        HeaderName::from_static("authorization"),
        HeaderValue::from_static("Bearer stolen"),
    ));
    let response = client.send_raw(request, 1 << 20).await.expect("limits");
    assert_eq!(response.status, 200);
    assert!(!response.truncated);
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert!(json["DailyApiRequests"]["Max"].is_number());

    // Errors are passed through, not turned into Err.
    let missing = client
        .send_raw(
            get(&format!(
                "/services/data/v{}/sobjects/NoSuch__c/describe",
                client.api_version()
            )),
            1 << 20,
        )
        .await
        .expect("404 passes through");
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("NOT_FOUND"));

    // The body is capped.
    let capped = client.send_raw(get(&path), 10).await.expect("capped");
    assert_eq!(capped.body.len(), 10);
    assert!(capped.truncated);

    // An expired session is refreshed once and replayed.
    emu.admin(Method::POST, "faults/expireSessions", None).await;
    let refreshed = client
        .send_raw(get(&path), 1 << 20)
        .await
        .expect("after refresh");
    assert_eq!(refreshed.status, 200);
    assert_eq!(client.refresh_count(), 1);

    // Refused paths never leave the process.
    let before = emu.data_api_calls().await;
    for bad in [
        "https://evil.example/services/data",
        "/services/data/../../id/x",
        "/services/oauth2/token",
        "/x",
    ] {
        assert!(
            matches!(
                client.send_raw(get(bad), 1024).await,
                Err(SalesforceError::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(emu.data_api_calls().await, before);

    // Every call is counted: 4 sent (the refreshed one twice = 5); the next is refused.
    assert_eq!(budget.used(), 5);
    assert!(matches!(
        client.send_raw(get(&path), 1024).await,
        Err(SalesforceError::BudgetExhausted(_))
    ));
    emu.stop().await;
}
