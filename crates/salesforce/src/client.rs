//! The client: configuration, session state, and the one request path every API call goes
//! through.
//!
//! # The request path (`SalesforceClient::send`)
//! For each attempt: check the org-usage floor, ask the [`CallBudget`] for one call (so a
//! refused call never reaches Salesforce), send with the current access token, then read
//! `Sforce-Limit-Info`. On an expired session (401, or Bulk 1.0 `InvalidSessionId`) the
//! client refreshes **once per token generation** — concurrent failures wait on one
//! `tokio::sync::Mutex` and only the first does the grant; the others see the new
//! generation and simply replay — then replays the request once. Retryable failures
//! ([`SalesforceError::is_retryable`]) are retried per the [`RetryPolicy`].
//!
//! One `reqwest::Client` per [`SalesforceClient`] (cloning the client shares it), so
//! connections are reused; responses may be gzip-compressed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ferry_core::SecretString;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::auth::{self, Grant, OAuthApp, TokenResponse, UserInfo};
use crate::budget::{CallBudget, OrgUsageGuard, Unlimited, parse_limit_info};
use crate::describe::{GlobalDescribe, SObjectDescribe};
use crate::error::{Result, SalesforceError, parse_error_response};
use crate::retry::RetryPolicy;

/// How the client authenticates, by connect mode.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `refresh_token` grant (`api` mode, and `browser`/`code` after the code exchange).
    RefreshToken(SecretString),
    /// `client_credentials` grant (`clientcredentials` mode).
    ClientCredentials,
    /// `password` grant (tools and tests).
    Password {
        /// Username.
        username: String,
        /// Password plus security token.
        password: SecretString,
    },
    /// A ready access token. It cannot be refreshed unless a refresh token is supplied.
    AccessToken {
        /// The access token.
        access_token: SecretString,
        /// The instance it belongs to.
        instance_url: String,
        /// Optional refresh token used when the access token expires.
        refresh_token: Option<SecretString>,
    },
}

/// Called with every token response the client obtains (initial and refreshes), so the
/// owner can persist a rotated refresh token.
pub type TokenCallback = Arc<dyn Fn(&TokenResponse) + Send + Sync>;

/// Everything needed to build a [`SalesforceClient`].
#[derive(Clone)]
pub struct ClientConfig {
    /// Login base URL (see [`auth::login_base_url`]).
    pub login_url: Url,
    /// The connected app.
    pub app: OAuthApp,
    /// How to authenticate.
    pub credentials: Credentials,
    /// When set, API calls go here instead of the token's `instance_url`.
    pub instance_url_override: Option<String>,
    /// Pin the API version (`"59.0"`); otherwise the highest from `/services/data`.
    pub api_version: Option<String>,
    /// Retries for retryable failures.
    pub retry: RetryPolicy,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (headers and body).
    pub request_timeout: Duration,
    /// The daily call budget consulted before every API call.
    pub budget: Arc<dyn CallBudget>,
    /// Stop when the org's remaining daily API requests (from `Sforce-Limit-Info`) fall
    /// below this fraction of its maximum (`0.0` disables).
    pub org_min_remaining_fraction: f64,
    /// Extra trusted root certificates (PEM), e.g. the emulator's throwaway CA.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// `Sforce-Query-Options: batchSize=N` for REST queries (200–2000).
    pub query_batch_size: Option<u32>,
    /// Token observer.
    pub on_token: Option<TokenCallback>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("login_url", &self.login_url.as_str())
            .field("client_id", &self.app.client_id)
            .field("credentials", &self.credentials)
            .field("instance_url_override", &self.instance_url_override)
            .field("api_version", &self.api_version)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field(
                "org_min_remaining_fraction",
                &self.org_min_remaining_fraction,
            )
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with defaults: standard retries, 10 s connect and 120 s request
    /// timeouts, no budget cap, a 1 % org-usage floor.
    pub fn new(login_url: Url, app: OAuthApp, credentials: Credentials) -> Self {
        ClientConfig {
            login_url,
            app,
            credentials,
            instance_url_override: None,
            api_version: None,
            retry: RetryPolicy::standard(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            budget: Arc::new(Unlimited),
            org_min_remaining_fraction: 0.01,
            root_certificates_pem: Vec::new(),
            query_batch_size: None,
            on_token: None,
        }
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthStyle {
    /// `Authorization: Bearer` (REST, Tooling, Bulk 2.0, userinfo).
    Bearer,
    /// `X-SFDC-Session` (Bulk 1.0).
    SfdcSession,
    /// No credentials (`GET /services/data`).
    None,
}

/// One API request, rebuildable for retries.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// Absolute path on the instance, optionally with a query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<(Bytes, HeaderValue)>,
    pub auth: AuthStyle,
    /// Whether the call consumes the daily API budget.
    pub counted: bool,
    /// Short description for error messages.
    pub context: &'static str,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>, context: &'static str) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            auth: AuthStyle::Bearer,
            counted: true,
            context,
        }
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let value = HeaderValue::from_str(value)
            .map_err(|e| SalesforceError::InvalidInput(format!("header {name}: {e}")))?;
        self.headers.push((HeaderName::from_static(name), value));
        Ok(self)
    }

    pub fn json_body(mut self, body: &impl serde::Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            SalesforceError::InvalidInput(format!("cannot encode request body: {e}"))
        })?;
        self.body = Some((
            Bytes::from(bytes),
            HeaderValue::from_static("application/json"),
        ));
        Ok(self)
    }

    pub fn raw_body(mut self, body: Bytes, content_type: &'static str) -> Self {
        self.body = Some((body, HeaderValue::from_static(content_type)));
        self
    }

    pub fn auth(mut self, auth: AuthStyle) -> Self {
        self.auth = auth;
        self
    }

    pub fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }
}

#[derive(Debug)]
pub(crate) struct Session {
    access_token: SecretString,
    instance_url: Url,
    pub(crate) generation: u64,
}

#[derive(Debug, Default)]
struct DescribeCache {
    global: HashMap<bool, Arc<GlobalDescribe>>,
    objects: HashMap<(bool, String), Arc<SObjectDescribe>>,
}

struct Inner {
    config: ClientConfig,
    http: reqwest::Client,
    instance_override: Option<Url>,
    api_version: String,
    session: RwLock<Arc<Session>>,
    refresh_lock: tokio::sync::Mutex<()>,
    refresh_token: Mutex<Option<SecretString>>,
    org_guard: OrgUsageGuard,
    describe_cache: Mutex<DescribeCache>,
    refreshes: AtomicU64,
    retries: AtomicU64,
    /// A permanent refresh failure (OAuth 4xx) at a token generation, so requests waiting
    /// on the same expired session fail fast instead of each repeating the grant.
    refresh_failure: Mutex<Option<(u64, RefreshFailure)>>,
    identity: Mutex<Option<String>>,
}

/// A Salesforce API client for one connection. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("instance_url", &self.instance_url().as_str())
            .field("api_version", &self.inner.api_version)
            .finish_non_exhaustive()
    }
}

fn build_http(config: &ClientConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("ferry-salesforce/", env!("CARGO_PKG_VERSION")));
    for pem in &config.root_certificates_pem {
        let certificate = reqwest::Certificate::from_pem(pem)
            .map_err(|e| SalesforceError::Config(format!("invalid root certificate: {e}")))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| SalesforceError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Picks the highest version from a `GET /services/data` body, comparing numerically.
pub fn highest_api_version(body: &[u8]) -> Result<String> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| {
        SalesforceError::parse(
            "GET /services/data",
            format!("expected a JSON array of versions: {e}"),
        )
    })?;
    list.iter()
        .filter_map(|entry| entry.get("version").and_then(serde_json::Value::as_str))
        .filter_map(|v| {
            let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
            Some((
                (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?),
                v.to_string(),
            ))
        })
        .max_by_key(|(key, _)| *key)
        .map(|(_, v)| v)
        .ok_or_else(|| SalesforceError::parse("GET /services/data", "no API versions listed"))
}

fn validate_version(version: &str) -> Result<String> {
    let version = version.trim().trim_start_matches(['v', 'V']);
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(major), Ok(minor)) => Ok(format!("{major}.{minor}")),
        _ => Err(SalesforceError::Config(format!(
            "invalid API version {version:?} (expected e.g. 59.0)"
        ))),
    }
}

impl SalesforceClient {
    /// Authenticates with the configured credentials, then negotiates the API version.
    pub async fn connect(config: ClientConfig) -> Result<SalesforceClient> {
        let http = build_http(&config)?;
        let token = match &config.credentials {
            Credentials::AccessToken {
                access_token,
                instance_url,
                refresh_token,
            } => TokenResponse {
                access_token: access_token.clone(),
                refresh_token: refresh_token.clone(),
                instance_url: instance_url.trim_end_matches('/').to_string(),
                id: None,
                token_type: Some("Bearer".into()),
                scope: None,
                issued_at: None,
                signature: None,
            },
            other => {
                let grant = grant_for(other, None).ok_or(SalesforceError::SessionExpired)?;
                auth::request_token(&http, &config.login_url, &config.app, &grant).await?
            }
        };
        Self::build(config, http, token).await
    }

    /// Builds a client around tokens obtained elsewhere (e.g. right after
    /// [`auth::exchange_code`]), without another token request.
    pub async fn connect_with_token(
        config: ClientConfig,
        token: TokenResponse,
    ) -> Result<SalesforceClient> {
        let http = build_http(&config)?;
        Self::build(config, http, token).await
    }

    async fn build(
        config: ClientConfig,
        http: reqwest::Client,
        token: TokenResponse,
    ) -> Result<SalesforceClient> {
        let instance_override = match config
            .instance_url_override
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(text) => Some(auth::base_url(text).map_err(|e| {
                SalesforceError::Config(format!("invalid instance_url_override {text:?}: {e}"))
            })?),
            None => None,
        };
        let instance_url = auth::base_url(&token.instance_url).map_err(|e| {
            SalesforceError::parse("token response", format!("bad instance_url: {e}"))
        })?;
        let initial_refresh = match &config.credentials {
            Credentials::RefreshToken(rt) => {
                Some(token.refresh_token.clone().unwrap_or_else(|| rt.clone()))
            }
            _ => token.refresh_token.clone(),
        };
        let inner = Inner {
            org_guard: OrgUsageGuard::new(config.org_min_remaining_fraction),
            http,
            instance_override,
            api_version: String::new(),
            session: RwLock::new(Arc::new(Session {
                access_token: token.access_token.clone(),
                instance_url,
                generation: 0,
            })),
            refresh_lock: tokio::sync::Mutex::new(()),
            refresh_token: Mutex::new(initial_refresh),
            describe_cache: Mutex::new(DescribeCache::default()),
            refreshes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            refresh_failure: Mutex::new(None),
            identity: Mutex::new(token.id.clone()),
            config,
        };
        if let Some(callback) = &inner.config.on_token {
            callback(&token);
        }
        let mut client = SalesforceClient {
            inner: Arc::new(inner),
        };
        let version = match client.inner.config.api_version.clone() {
            Some(pinned) => validate_version(&pinned)?,
            None => client.negotiate_version().await?,
        };
        match Arc::get_mut(&mut client.inner) {
            Some(inner) => inner.api_version = version,
            None => {
                return Err(SalesforceError::Config(
                    "client state shared before construction finished".into(),
                ));
            }
        }
        Ok(client)
    }

    async fn negotiate_version(&self) -> Result<String> {
        let call = Call::new(Method::GET, "/services/data", "GET /services/data")
            .auth(AuthStyle::None)
            .uncounted();
        let (_, body) = self.send_bytes(call).await?;
        highest_api_version(&body)
    }

    /// The API version in use (`"62.0"`).
    pub fn api_version(&self) -> &str {
        &self.inner.api_version
    }

    /// The instance URL API calls go to (the override when set).
    pub fn instance_url(&self) -> Url {
        match &self.inner.instance_override {
            Some(url) => url.clone(),
            None => self.session().instance_url.clone(),
        }
    }

    /// The instance URL from the latest token response (ignoring any override).
    pub fn token_instance_url(&self) -> Url {
        self.session().instance_url.clone()
    }

    /// The identity URL from the token response, when known.
    pub fn identity_url(&self) -> Option<String> {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current refresh token (rotated ones included).
    pub fn refresh_token(&self) -> Option<SecretString> {
        self.inner
            .refresh_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current access token (for the Connection Proxy and tools).
    pub fn access_token(&self) -> SecretString {
        self.session().access_token.clone()
    }

    /// How many token refreshes this client performed.
    pub fn refresh_count(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// How many requests this client retried after a retryable failure.
    pub fn retry_count(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// The last org-wide API usage seen in `Sforce-Limit-Info` (`used`, `max`).
    pub fn last_api_usage(&self) -> Option<(u64, u64)> {
        self.inner.org_guard.last()
    }

    /// The configured budget.
    pub fn budget(&self) -> &Arc<dyn CallBudget> {
        &self.inner.config.budget
    }

    /// The login base URL.
    pub fn login_url(&self) -> &Url {
        &self.inner.config.login_url
    }

    pub(crate) fn org_guard(&self) -> &OrgUsageGuard {
        &self.inner.org_guard
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn session(&self) -> Arc<Session> {
        self.inner
            .session
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `/services/data/vXX.X` + `suffix`.
    pub(crate) fn data_path(&self, suffix: &str) -> String {
        format!("/services/data/v{}{suffix}", self.inner.api_version)
    }

    /// `GET /services/oauth2/userinfo` on the instance.
    pub async fn userinfo(&self) -> Result<UserInfo> {
        let call = Call::new(Method::GET, "/services/oauth2/userinfo", "GET userinfo").uncounted();
        self.send_json(call).await
    }

    /// Forces a token refresh now (as if the session had expired).
    pub async fn refresh_session(&self) -> Result<()> {
        let generation = self.session().generation;
        self.refresh(generation).await
    }

    pub(crate) async fn refresh(&self, seen_generation: u64) -> Result<()> {
        let _guard = self.inner.refresh_lock.lock().await;
        if self.session().generation != seen_generation {
            return Ok(());
        }
        if let Some((generation, failure)) = self
            .inner
            .refresh_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            && generation == seen_generation
        {
            return Err(failure.into_error());
        }
        let stored = self.refresh_token();
        let grant = grant_for(&self.inner.config.credentials, stored)
            .ok_or(SalesforceError::SessionExpired)?;
        tracing::info!(instance = %self.token_instance_url(), "refreshing the salesforce access token");
        let outcome = auth::request_token(
            &self.inner.http,
            &self.inner.config.login_url,
            &self.inner.config.app,
            &grant,
        )
        .await;
        let token = match outcome {
            Ok(token) => token,
            Err(SalesforceError::OAuth {
                status,
                error,
                description,
            }) if status < 500 => {
                let failure = RefreshFailure {
                    status,
                    error,
                    description,
                };
                *self
                    .inner
                    .refresh_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((seen_generation, failure.clone()));
                return Err(failure.into_error());
            }
            Err(other) => return Err(other),
        };
        let instance_url = auth::base_url(&token.instance_url).map_err(|e| {
            SalesforceError::parse("token response", format!("bad instance_url: {e}"))
        })?;
        if let Some(rotated) = &token.refresh_token {
            *self
                .inner
                .refresh_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rotated.clone());
        }
        if token.id.is_some() {
            *self
                .inner
                .identity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = token.id.clone();
        }
        {
            let mut session = self
                .inner
                .session
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *session = Arc::new(Session {
                access_token: token.access_token.clone(),
                instance_url,
                generation: seen_generation + 1,
            });
        }
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        if let Some(callback) = &self.inner.config.on_token {
            callback(&token);
        }
        Ok(())
    }

    /// Clears cached describes: one object (`Some("Account")`) or everything.
    pub fn invalidate_describe(&self, sobject: Option<&str>) {
        let mut cache = self
            .inner
            .describe_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match sobject {
            Some(name) => {
                let key = name.to_ascii_lowercase();
                cache.objects.retain(|(_, cached), _| *cached != key);
                cache.global.clear();
            }
            None => {
                cache.objects.clear();
                cache.global.clear();
            }
        }
    }

    pub(crate) fn cached_global(&self, tooling: bool) -> Option<Arc<GlobalDescribe>> {
        self.inner
            .describe_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .global
            .get(&tooling)
            .cloned()
    }

    pub(crate) fn cache_global(&self, tooling: bool, value: Arc<GlobalDescribe>) {
        self.inner
            .describe_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .global
            .insert(tooling, value);
    }

    pub(crate) fn cached_object(&self, tooling: bool, name: &str) -> Option<Arc<SObjectDescribe>> {
        self.inner
            .describe_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .objects
            .get(&(tooling, name.to_ascii_lowercase()))
            .cloned()
    }

    pub(crate) fn cache_object(&self, tooling: bool, name: &str, value: Arc<SObjectDescribe>) {
        self.inner
            .describe_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .objects
            .insert((tooling, name.to_ascii_lowercase()), value);
    }

    /// Sends a call through budget, auth, refresh and retries; returns a 2xx response.
    pub(crate) async fn send(&self, call: Call) -> Result<reqwest::Response> {
        let policy = &self.inner.config.retry;
        let mut retries: u32 = 0;
        let mut refreshed = false;
        loop {
            if call.counted {
                self.inner.org_guard.check()?;
                self.inner.config.budget.try_acquire(1).await?;
            }
            let session = self.session();
            let outcome = self.attempt(&call, &session).await;
            let error = match outcome {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            if error.is_invalid_session() && call.auth != AuthStyle::None && !refreshed {
                refreshed = true;
                self.refresh(session.generation).await?;
                continue;
            }
            if matches!(&error, SalesforceError::Api(api) if api.error_code == "INVALID_FIELD" || api.error_code == "INVALID_TYPE")
            {
                self.invalidate_describe(None);
            }
            if error.is_retryable() && retries + 1 < policy.max_attempts {
                let delay = policy.next_delay(retries, error.retry_after());
                tracing::warn!(%error, context = call.context, retry = retries + 1, delay_ms = delay.as_millis() as u64, "retrying salesforce call");
                retries += 1;
                self.inner.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(error);
        }
    }

    /// One HTTP exchange: builds the request, sends it, records `Sforce-Limit-Info`.
    pub(crate) async fn attempt_raw(
        &self,
        call: &Call,
        session: &Session,
    ) -> Result<reqwest::Response> {
        let base = match &self.inner.instance_override {
            Some(url) => url.clone(),
            None => session.instance_url.clone(),
        };
        let url = auth::join(&base, &call.path)?;
        let mut request = self.inner.http.request(call.method.clone(), url.clone());
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.clone());
        }
        match call.auth {
            AuthStyle::Bearer => request = request.bearer_auth(session.access_token.expose()),
            AuthStyle::SfdcSession => {
                request = request.header("X-SFDC-Session", session.access_token.expose())
            }
            AuthStyle::None => {}
        }
        if let Some((body, content_type)) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type.clone())
                .body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| SalesforceError::transport(&url, e))?;
        self.observe_limit_info(response.headers()).await;
        Ok(response)
    }

    async fn attempt(&self, call: &Call, session: &Session) -> Result<reqwest::Response> {
        let response = self.attempt_raw(call, session).await?;
        let url = response.url().clone();
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| SalesforceError::transport(&url, e))?;
        if status.as_u16() == 300
            && let Ok(urls) = serde_json::from_slice::<Vec<String>>(&body)
        {
            return Err(SalesforceError::MultipleMatches { urls });
        }
        let error =
            parse_error_response(status.as_u16(), content_type.as_deref(), &body, retry_after);
        tracing::debug!(status = status.as_u16(), context = call.context, %error, "salesforce call failed");
        Err(error)
    }

    async fn observe_limit_info(&self, headers: &HeaderMap) {
        let Some((used, max)) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        else {
            return;
        };
        self.inner.org_guard.record(used, max);
        self.inner.config.budget.record_limit_info(used, max).await;
    }

    /// Sends and returns the headers and the whole body.
    pub(crate) async fn send_bytes(&self, call: Call) -> Result<(HeaderMap, Bytes)> {
        let url_path = call.path.clone();
        let response = self.send(call).await?;
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| SalesforceError::Transport {
                kind: crate::error::TransportKind::Interrupted,
                url: url_path,
                source: e,
            })?;
        Ok((headers, body))
    }

    /// Sends and decodes a JSON body.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let context = call.context;
        let (_, body) = self.send_bytes(call).await?;
        serde_json::from_slice(&body).map_err(|e| SalesforceError::parse(context, e.to_string()))
    }

    /// Sends and ignores the body.
    pub(crate) async fn send_empty(&self, call: Call) -> Result<u16> {
        let response = self.send(call).await?;
        Ok(response.status().as_u16())
    }
}

/// A remembered OAuth refusal of a refresh.
#[derive(Debug, Clone)]
struct RefreshFailure {
    status: u16,
    error: String,
    description: String,
}

impl RefreshFailure {
    fn into_error(self) -> SalesforceError {
        SalesforceError::OAuth {
            status: self.status,
            error: self.error,
            description: self.description,
        }
    }
}

fn grant_for(credentials: &Credentials, stored_refresh: Option<SecretString>) -> Option<Grant> {
    match credentials {
        Credentials::RefreshToken(token) => Some(Grant::RefreshToken(
            stored_refresh.unwrap_or_else(|| token.clone()),
        )),
        Credentials::ClientCredentials => Some(Grant::ClientCredentials),
        Credentials::Password { username, password } => Some(Grant::Password {
            username: username.clone(),
            password: password.clone(),
        }),
        Credentials::AccessToken { refresh_token, .. } => stored_refresh
            .or_else(|| refresh_token.clone())
            .map(Grant::RefreshToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_version_numerically() {
        let body = br#"[{"version":"9.0","url":"/services/data/v9.0"},{"version":"59.0"},{"version":"62.0"},{"version":"100.0"},{"label":"x"}]"#;
        assert_eq!(highest_api_version(body).expect("versions"), "100.0");
        assert!(highest_api_version(b"{}").is_err());
        assert!(highest_api_version(b"[]").is_err());
    }

    #[test]
    fn validates_pinned_versions() {
        assert_eq!(validate_version("v59.0").expect("ok"), "59.0");
        assert_eq!(validate_version("61").expect("ok"), "61.0");
        assert!(validate_version("latest").is_err());
    }

    #[test]
    fn grants_by_credentials() {
        assert!(matches!(
            grant_for(&Credentials::ClientCredentials, None),
            Some(Grant::ClientCredentials)
        ));
        let rotated = grant_for(&Credentials::RefreshToken("old".into()), Some("new".into()));
        assert!(matches!(rotated, Some(Grant::RefreshToken(t)) if t.expose() == "new"));
        let bare = Credentials::AccessToken {
            access_token: "a".into(),
            instance_url: "http://x".into(),
            refresh_token: None,
        };
        assert!(grant_for(&bare, None).is_none());
    }
}
