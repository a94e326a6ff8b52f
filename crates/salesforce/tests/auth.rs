//! Every grant and connect mode against the in-process emulator.

mod common;

use common::{CLIENT_ID, Emu, USERNAME};
use ferry_salesforce::auth::{self, AuthorizeRequest, DEFAULT_SCOPE};
use ferry_salesforce::{Credentials, OAuthApp, SalesforceClient, SalesforceError, TransportKind};

#[tokio::test]
async fn password_grant_userinfo_and_version_negotiation() {
    let emu = Emu::start().await;
    let client = emu.client().await;
    assert_eq!(
        client.api_version(),
        "62.0",
        "highest version from /services/data"
    );
    assert_eq!(
        client.instance_url().as_str().trim_end_matches('/'),
        emu.base
    );
    let info = client.userinfo().await.expect("userinfo");
    assert_eq!(info.username(), Some(USERNAME));
    assert!(
        info.organization_id
            .as_deref()
            .is_some_and(|id| id.starts_with("00D"))
    );
    let identity = client.identity_url().expect("id url");
    assert!(
        identity.starts_with(&format!("{}/id/00D", emu.base)),
        "{identity}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn client_credentials_grant() {
    let emu = Emu::start().await;
    let client = SalesforceClient::connect(emu.config(Credentials::ClientCredentials))
        .await
        .expect("connect");
    assert!(
        client.refresh_token().is_none(),
        "client_credentials issues no refresh token"
    );
    assert_eq!(
        client.userinfo().await.expect("userinfo").username(),
        Some(USERNAME)
    );
    client.limits().await.expect("an API call works");
    emu.stop().await;
}

/// The browser flow: open the authorize URL, post the consent form, follow the redirect to
/// the callback, exchange the code, then keep working with the refresh-token grant.
#[tokio::test]
async fn authorization_code_flow_then_refresh_token_grant() {
    let emu = Emu::start().await;
    let redirect_uri = "http://127.0.0.1:5100/oauth/salesforce/callback";
    let url = auth::authorize_url(
        &emu.login(),
        &AuthorizeRequest {
            client_id: CLIENT_ID.into(),
            redirect_uri: redirect_uri.into(),
            state: "st-42".into(),
            scope: DEFAULT_SCOPE.into(),
            prompt: None,
            code_challenge: None,
        },
    )
    .expect("authorize url");

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    let page = browser.get(url.clone()).send().await.expect("consent page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let mut form: Vec<(String, String)> = hidden_inputs(&html);
    assert!(
        form.iter().any(|(k, v)| k == "state" && v == "st-42"),
        "state carried in the form: {html}"
    );
    form.push(("approve".into(), "allow".into()));
    let action = format!("{}/services/oauth2/authorize", emu.base);
    let decision = browser
        .post(action)
        .form(&form)
        .send()
        .await
        .expect("consent");
    assert_eq!(decision.status(), 302);
    let location = decision
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_string();
    assert!(location.starts_with(redirect_uri), "{location}");
    let callback = reqwest::Url::parse(&location).expect("callback url");
    let params: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    let code = params
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .expect("code");
    assert!(params.contains(&("state".into(), "st-42".into())));

    let http = auth::default_http_client(std::time::Duration::from_secs(10)).expect("http");
    let token = auth::exchange_code(&http, &emu.login(), &emu.app(), &code, redirect_uri)
        .await
        .expect("exchange");
    let refresh = token
        .refresh_token
        .clone()
        .expect("the code flow with refresh_token scope returns a refresh token");
    assert!(token.org_id().is_some_and(|id| id.starts_with("00D")));
    assert!(token.issued_at.is_some());

    // The code is single-use.
    let reused = auth::exchange_code(&http, &emu.login(), &emu.app(), &code, redirect_uri)
        .await
        .expect_err("code reuse");
    assert_eq!(reused.error_code(), Some("invalid_grant"));

    // Continue with the tokens we have (no extra grant), then refresh on demand.
    let client = SalesforceClient::connect_with_token(
        emu.config(Credentials::RefreshToken(refresh.clone())),
        token,
    )
    .await
    .expect("client");
    let before = emu.call_count("POST /services/oauth2/token").await;
    client
        .limits()
        .await
        .expect("call with the exchanged token");
    assert_eq!(
        emu.call_count("POST /services/oauth2/token").await,
        before,
        "no grant needed"
    );
    client.refresh_session().await.expect("refresh");
    assert_eq!(client.refresh_count(), 1);

    // A fresh client in `api` mode: refresh-token grant only.
    let api_mode = SalesforceClient::connect(emu.config(Credentials::RefreshToken(refresh)))
        .await
        .expect("refresh grant");
    assert_eq!(
        api_mode.userinfo().await.expect("userinfo").username(),
        Some(USERNAME)
    );
    emu.stop().await;
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input").skip(1) {
        let attr = |name: &str| -> Option<String> {
            let start = chunk.find(&format!("{name}=\""))? + name.len() + 2;
            let end = chunk[start..].find('"')? + start;
            Some(
                chunk[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">"),
            )
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            out.push((name, value));
        }
    }
    out
}

#[tokio::test]
async fn wrong_credentials_give_oauth_errors() {
    let emu = Emu::start().await;
    let mut config = emu.config(Credentials::ClientCredentials);
    config.app = OAuthApp::new(CLIENT_ID, "wrong-secret");
    let error = SalesforceClient::connect(config)
        .await
        .expect_err("bad secret");
    match &error {
        SalesforceError::OAuth { status, error, .. } => {
            assert_eq!((*status, error.as_str()), (400, "invalid_client"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.is_retryable());

    let bad_password = emu.config(Credentials::Password {
        username: USERNAME.into(),
        password: "nope".into(),
    });
    let error = SalesforceClient::connect(bad_password)
        .await
        .expect_err("bad password");
    assert_eq!(error.error_code(), Some("invalid_grant"));

    let bad_refresh = emu.config(Credentials::RefreshToken("5Aep-not-a-token".into()));
    let error = SalesforceClient::connect(bad_refresh)
        .await
        .expect_err("bad refresh token");
    assert!(
        error.to_string().contains("expired access/refresh token"),
        "{error}"
    );

    let mut unknown_client = emu.config(Credentials::ClientCredentials);
    unknown_client.app = OAuthApp::new("someone-else", "x");
    assert_eq!(
        SalesforceClient::connect(unknown_client)
            .await
            .expect_err("bad client")
            .error_code(),
        Some("invalid_client_id")
    );
    emu.stop().await;
}

#[tokio::test]
async fn unreachable_login_host_is_a_transport_error() {
    let login = auth::login_base_url("http://127.0.0.1:1").expect("url");
    let config = ferry_salesforce::ClientConfig::new(
        login,
        OAuthApp::new("x", "y"),
        Credentials::ClientCredentials,
    );
    match SalesforceClient::connect(config)
        .await
        .expect_err("unreachable")
    {
        SalesforceError::Transport { kind, url, .. } => {
            assert_eq!(kind, TransportKind::Connect);
            assert!(url.contains("127.0.0.1:1"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn instance_url_override_and_pinned_version() {
    let emu = Emu::start().await;
    let port = emu.base.rsplit(':').next().expect("port").to_string();
    let client = emu
        .client_with(|config| {
            config.instance_url_override = Some(format!("http://localhost:{port}"));
            config.api_version = Some("59.0".into());
        })
        .await;
    assert_eq!(client.instance_url().host_str(), Some("localhost"));
    assert_eq!(client.api_version(), "59.0");
    assert_eq!(
        emu.call_count("GET /services/data").await,
        0,
        "no negotiation when pinned"
    );
    client.limits().await.expect("call through the override");

    // An override that points nowhere: the API call goes there (and fails), proving it is used.
    let mut config = emu.config(Emu::password());
    config.instance_url_override = Some("http://127.0.0.1:1".into());
    config.retry = ferry_salesforce::RetryPolicy::no_retries();
    match SalesforceClient::connect(config)
        .await
        .expect_err("override unreachable")
    {
        SalesforceError::Transport { url, .. } => {
            assert!(url.starts_with("http://127.0.0.1:1/services/data"), "{url}")
        }
        other => panic!("{other:?}"),
    }
    emu.stop().await;
}

#[tokio::test]
async fn access_token_without_refresh_reports_expiry() {
    let emu = Emu::start().await;
    let seed = emu.client().await;
    let credentials = Credentials::AccessToken {
        access_token: seed.access_token(),
        instance_url: emu.base.clone(),
        refresh_token: None,
    };
    let client = SalesforceClient::connect(emu.config(credentials))
        .await
        .expect("token client");
    client.limits().await.expect("works while valid");
    emu.admin(reqwest::Method::POST, "faults/expireSessions", None)
        .await;
    assert!(matches!(
        client.limits().await,
        Err(SalesforceError::SessionExpired)
    ));
    emu.stop().await;
}
