//! The `salesforce` connection type (spec `salesforce-connection.md` §1).
//!
//! Validation, beyond the schema pass (unknown keys, JSON types, `connect_mode` values,
//! `daily_api_calls >= 0`, non-empty `domain`):
//!
//! - `domain` is a bare host (`acme.my.salesforce.com`, optionally `:port`) or an `http`/`https`
//!   URL without path, query or credentials (`http://127.0.0.1:5200`); surrounding whitespace is
//!   trimmed, anything else is kept as written.
//! - `connect_mode: clientcredentials` and `connect_mode: api` need `client_id` and
//!   `client_secret`; `api` may get its `oauth_refresh_token` later.
//! - `client_id` together with `client_secret` under `browser` or `code` is rejected: the spec
//!   says a user-delegated flow with the caller's own connected app is `api`.
//! - `enforce_api_limits: true` needs a positive `daily_api_calls`.
//! - `username` and `instance_url_override` are read-only: set by Ferry after authorization, a
//!   caller's values are dropped.
//!
//! `check` authenticates for real with `ferry-salesforce`: `api` uses the refresh-token grant
//! with the caller's app, `clientcredentials` the client-credentials grant; `browser` and
//! `code` use Ferry's own connected app ([`SalesforceSettings::oauth_app`]) and the refresh
//! token stored when the user completed authorization — until then the connection reports
//! [`ConnectionStatus::Unauthorized`], never `healthy`. A successful check calls `userinfo`
//! and `/limits` (one metered call) and reports the `username` it learned.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferry_core::SecretString;
use ferry_salesforce::{
    CallBudget, ClientConfig, Credentials, OAuthApp, RetryPolicy, SalesforceClient,
    SalesforceError, TransportKind, Unlimited,
};
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::{ConfigSpec, ReadOnlyKeys};
use crate::{
    Capabilities, CheckError, ConnectionHealth, ConnectionStatus, ConnectionTypeInfo, Connector,
    FieldError,
};

/// The type id.
pub const TYPE_ID: &str = "salesforce";

/// How Ferry obtains Salesforce credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectMode {
    /// OAuth authorization-code flow through Ferry: the API answers with an `auth_url` the
    /// user opens; Ferry's callback completes it.
    #[default]
    Browser,
    /// OAuth client-credentials flow with `client_id` and `client_secret`.
    #[serde(rename = "clientcredentials")]
    ClientCredentials,
    /// Like `browser`, but the response carries an `auth_code` the user enters.
    Code,
    /// The caller supplies `client_id`, `client_secret` and `oauth_refresh_token` obtained
    /// elsewhere; Ferry uses the refresh-token grant.
    Api,
}

impl ConnectMode {
    /// Every mode, in the order the spec lists them.
    pub const ALL: [ConnectMode; 4] = [
        ConnectMode::Browser,
        ConnectMode::ClientCredentials,
        ConnectMode::Code,
        ConnectMode::Api,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectMode::Browser => "browser",
            ConnectMode::ClientCredentials => "clientcredentials",
            ConnectMode::Code => "code",
            ConnectMode::Api => "api",
        }
    }

    /// Whether the caller's own connected app (`client_id` + `client_secret`) is required.
    pub fn needs_client_credentials(self) -> bool {
        matches!(self, ConnectMode::ClientCredentials | ConnectMode::Api)
    }
}

impl fmt::Display for ConnectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration of a `salesforce` connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Salesforce connection configuration")]
pub struct SalesforceConfig {
    /// OAuth client id (consumer key) of your connected app. Required when `connect_mode` is
    /// `clientcredentials` or `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Client ID")]
    pub client_id: Option<String>,

    /// OAuth client secret (consumer secret) of your connected app. Required when
    /// `connect_mode` is `clientcredentials` or `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "Client secret",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true)
    )]
    pub client_secret: Option<SecretString>,

    /// How Ferry authorizes: `browser` (OAuth in the browser, the response carries
    /// `auth_url`), `code` (the response carries an `auth_code` to enter), `clientcredentials`
    /// (client-credentials flow with `client_id`/`client_secret`) or `api` (you supply
    /// `client_id`, `client_secret` and `oauth_refresh_token`). An empty string means `browser`.
    #[serde(default)]
    #[schemars(title = "Connect mode")]
    pub connect_mode: ConnectMode,

    /// The daily Salesforce API call cap Ferry must stay under when `enforce_api_limits` is
    /// true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Daily API calls", range(min = 0))]
    pub daily_api_calls: Option<i64>,

    /// The org's login domain, e.g. `acmecorp.my.salesforce.com`, or a full URL with scheme
    /// such as `https://acmecorp.my.salesforce.com` or `http://127.0.0.1:5200`.
    #[schemars(
        title = "Domain",
        length(min = 1),
        example = &"acmecorp.my.salesforce.com",
        example = &"https://acmecorp.my.salesforce.com"
    )]
    pub domain: String,

    /// When incremental bulk syncing of formula fields is on, also produce accurate currency
    /// conversions (multi-currency orgs).
    #[serde(default)]
    #[schemars(title = "Enable multi-currency lookup")]
    pub enable_multicurrency_lookup: bool,

    /// Expose Tooling API objects in the bulk sync source object list.
    #[serde(default)]
    #[schemars(title = "Enable Tooling API objects")]
    pub enable_tooling: bool,

    /// If true, Ferry restricts itself to `daily_api_calls` Salesforce API calls a day.
    #[serde(default)]
    #[schemars(title = "Enforce API limits")]
    pub enforce_api_limits: bool,

    /// OAuth refresh token obtained elsewhere (with `connect_mode: api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        title = "OAuth refresh token",
        with = "Option<String>",
        extend("sensitive" = true, "password" = true, "hidden" = true, "api_field" = true)
    )]
    pub oauth_refresh_token: Option<SecretString>,

    /// The Salesforce user the connection authenticated as. Set by Ferry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Username", extend("readOnly" = true))]
    pub username: Option<String>,

    /// When set, used for API requests instead of the instance URL Salesforce returned during
    /// OAuth. Set by Ferry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(title = "Instance URL override", extend("readOnly" = true))]
    pub instance_url_override: Option<String>,
}

fn spec() -> &'static ConfigSpec {
    static SPEC: OnceLock<ConfigSpec> = OnceLock::new();
    SPEC.get_or_init(|| ConfigSpec::new::<SalesforceConfig>(TYPE_ID, &[]))
}

impl SalesforceConfig {
    /// Parses and validates a caller's configuration: read-only keys are dropped.
    pub fn from_input(config: &Value) -> Result<Self, FieldError> {
        Self::parse(config, ReadOnlyKeys::Drop)
    }

    /// Parses and validates a stored configuration: read-only keys set by Ferry are kept.
    pub fn from_stored(config: &Value) -> Result<Self, FieldError> {
        Self::parse(config, ReadOnlyKeys::Keep)
    }

    fn parse(config: &Value, read_only: ReadOnlyKeys) -> Result<Self, FieldError> {
        let mut parsed: SalesforceConfig = spec().parse(config, read_only)?;
        parsed.domain = parsed.domain.trim().to_string();
        parsed.check_rules()?;
        Ok(parsed)
    }

    /// The base URL logins go to: `domain` as written when it has a scheme, otherwise
    /// `https://<domain>`; without a trailing slash.
    pub fn login_url(&self) -> Result<String, FieldError> {
        parse_domain(&self.domain)
            .map(|domain| domain.base_url())
            .map_err(|reason| FieldError::new("domain", reason))
    }

    /// The configuration as stored: defaults applied, secrets included, absent options left
    /// out.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn check_rules(&self) -> Result<(), FieldError> {
        parse_domain(&self.domain).map_err(|reason| FieldError::new("domain", reason))?;

        let client_id = non_empty(self.client_id.as_deref());
        let client_secret = non_empty(self.client_secret.as_ref().map(SecretString::expose));
        let mode = self.connect_mode;
        if mode.needs_client_credentials() {
            let needed = match mode {
                ConnectMode::Api => {
                    "your connected app's credentials (the refresh token may be added later)"
                }
                _ => "the client-credentials flow authenticates with them",
            };
            if client_id.is_none() {
                return Err(FieldError::new(
                    "client_id",
                    format!("is required when connect_mode is `{mode}`: {needed}"),
                ));
            }
            if client_secret.is_none() {
                return Err(FieldError::new(
                    "client_secret",
                    format!("is required when connect_mode is `{mode}`: {needed}"),
                ));
            }
        } else if client_id.is_some() && client_secret.is_some() {
            return Err(FieldError::new(
                "connect_mode",
                format!(
                    "is `{mode}`, but client_id and client_secret are supplied: use `api` for a \
                     user-delegated flow with your own connected app (with oauth_refresh_token) \
                     or `clientcredentials`; accepted values: {}",
                    accepted_modes()
                ),
            ));
        }

        if self.enforce_api_limits && self.daily_api_calls.unwrap_or(0) <= 0 {
            return Err(FieldError::new(
                "daily_api_calls",
                "must be a positive integer when enforce_api_limits is true (the daily cap of \
                 Salesforce API calls Ferry may make)",
            ));
        }
        Ok(())
    }
}

fn accepted_modes() -> String {
    ConnectMode::ALL
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// A parsed `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Domain {
    /// `http` or `https` (lowercase).
    scheme: String,
    /// Host as written (brackets kept for IPv6).
    host: String,
    port: Option<u16>,
}

impl Domain {
    fn base_url(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

const DOMAIN_HINT: &str = "expected a domain such as `acmecorp.my.salesforce.com` or an http(s) \
                           URL such as `https://acmecorp.my.salesforce.com`";

/// Parses a bare host (`host[:port]`) or an `http(s)://host[:port][/]` URL.
fn parse_domain(domain: &str) -> Result<Domain, String> {
    let domain = domain.trim();
    if domain.is_empty() {
        return Err("is required".into());
    }
    let fail = |reason: &str| format!("{DOMAIN_HINT}; got `{domain}` ({reason})");

    let (scheme, rest) = match domain.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(fail(&format!(
                    "scheme `{scheme}` is not supported; use http or https"
                )));
            }
            (scheme, rest)
        }
        None => ("https".to_string(), domain),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(fail("a path, query or fragment is not allowed"));
    }
    if authority.contains('@') {
        return Err(fail("credentials in the URL are not allowed"));
    }
    if authority.chars().any(|c| c.is_whitespace()) {
        return Err(fail("whitespace is not allowed"));
    }

    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(fail("unterminated IPv6 address"));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(fail("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(fail("unexpected text after the IPv6 address")),
            },
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 && text.chars().all(|c| c.is_ascii_digit()) => Some(port),
            _ => return Err(fail("the port must be a number from 1 to 65535")),
        },
    };
    if !host.starts_with('[') {
        check_host_name(&host).map_err(fail)?;
    }
    Ok(Domain { scheme, host, port })
}

fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is missing");
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("the host name has an empty label");
        }
        if label.len() > 63 {
            return Err("a host name label is longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("a host name may contain only letters, digits, `-` and `.`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a host name label cannot start or end with `-`");
        }
    }
    Ok(())
}

/// Server-wide Salesforce settings.
#[derive(Debug, Clone, Default)]
pub struct SalesforceSettings {
    /// Ferry's own connected app, used by the `browser` and `code` connect modes
    /// (`FERRY_SALESFORCE_CLIENT_ID` / `FERRY_SALESFORCE_CLIENT_SECRET`).
    pub oauth_app: Option<OAuthApp>,
    /// Extra trusted root certificates (PEM), e.g. the emulator's throwaway CA.
    pub root_certificates_pem: Vec<Vec<u8>>,
}

/// The `salesforce` connection type.
#[derive(Debug, Clone, Default)]
pub struct SalesforceConnector {
    settings: SalesforceSettings,
}

impl SalesforceConnector {
    /// A connector using `settings`.
    pub fn new(settings: SalesforceSettings) -> Self {
        SalesforceConnector { settings }
    }

    /// The server-wide settings.
    pub fn settings(&self) -> &SalesforceSettings {
        &self.settings
    }

    /// The connected app a configuration authenticates with: the caller's for `api` and
    /// `clientcredentials`, Ferry's for `browser` and `code`.
    pub fn app_for(&self, config: &SalesforceConfig) -> Option<OAuthApp> {
        if config.connect_mode.needs_client_credentials() {
            let client_id = config.client_id.clone()?;
            let secret = config.client_secret.clone()?;
            return Some(OAuthApp::new(client_id, secret));
        }
        self.settings.oauth_app.clone()
    }

    /// A client configuration for `config`, or `Err` with the reason the connection cannot
    /// authenticate yet (authorization not completed, no connected app configured).
    pub fn client_config(
        &self,
        config: &SalesforceConfig,
        budget: Arc<dyn CallBudget>,
    ) -> Result<ClientConfig, NotAuthorized> {
        let login = ferry_salesforce::auth::login_base_url(&config.domain)
            .map_err(|error| NotAuthorized(format!("domain: {error}")))?;
        let Some(app) = self.app_for(config) else {
            return Err(NotAuthorized(
                "Ferry has no Salesforce connected app for the browser and code connect modes: \
                 set FERRY_SALESFORCE_CLIENT_ID and FERRY_SALESFORCE_CLIENT_SECRET, or use \
                 connect_mode api or clientcredentials with your own app"
                    .to_string(),
            ));
        };
        let credentials = match config.connect_mode {
            ConnectMode::ClientCredentials => Credentials::ClientCredentials,
            mode => match &config.oauth_refresh_token {
                Some(token) if !token.is_empty() => Credentials::RefreshToken(token.clone()),
                _ if mode == ConnectMode::Api => {
                    return Err(NotAuthorized(
                        "connect_mode api needs an oauth_refresh_token obtained from Salesforce"
                            .to_string(),
                    ));
                }
                _ => {
                    return Err(NotAuthorized(format!(
                        "not yet authorized: open the connection's auth_url to authorize Ferry \
                         in Salesforce (connect_mode {mode})"
                    )));
                }
            },
        };
        let mut client = ClientConfig::new(login, app, credentials);
        client.instance_url_override = config.instance_url_override.clone();
        client.budget = budget;
        client.root_certificates_pem = self.settings.root_certificates_pem.clone();
        Ok(client)
    }

    /// Authenticates and calls `userinfo`; the budget counts the calls.
    pub async fn check_counted(
        &self,
        config: &Value,
        budget: Arc<dyn CallBudget>,
    ) -> Result<ConnectionHealth, CheckError> {
        let parsed = SalesforceConfig::from_stored(config)
            .map_err(|error| CheckError::new(format!("invalid configuration: {error}")))?;
        // The check's one metered call is reserved before anything is sent, so a spent
        // budget means no request at all (not even the login).
        budget
            .try_acquire(1)
            .await
            .map_err(|error| CheckError::new(error.to_string()))?;
        let mut client_config = match self.client_config(&parsed, Arc::new(Unlimited)) {
            Ok(client_config) => client_config,
            Err(NotAuthorized(message)) => {
                return Ok(ConnectionHealth {
                    status: ConnectionStatus::Unauthorized,
                    message: Some(message),
                    learned: Default::default(),
                });
            }
        };
        // A check answers now: no retries, short timeouts.
        client_config.retry = RetryPolicy::no_retries();
        client_config.connect_timeout = Duration::from_secs(10);
        client_config.request_timeout = Duration::from_secs(30);
        let client = SalesforceClient::connect(client_config)
            .await
            .map_err(|error| CheckError::new(describe_error(&parsed, &error)))?;
        let info = client
            .userinfo()
            .await
            .map_err(|error| CheckError::new(describe_error(&parsed, &error)))?;
        // One metered REST call proves API access (not just a login) and reports the org's
        // usage through `Sforce-Limit-Info`.
        client
            .limits()
            .await
            .map_err(|error| CheckError::new(describe_error(&parsed, &error)))?;
        let mut learned = std::collections::BTreeMap::new();
        if let Some(username) = info.username() {
            learned.insert("username".to_string(), Value::String(username.to_string()));
        }
        Ok(ConnectionHealth {
            status: ConnectionStatus::Healthy,
            message: None,
            learned,
        })
    }
}

/// Why a connection cannot authenticate yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAuthorized(pub String);

/// A message a user can act on for a failed authentication or call.
pub fn describe_error(config: &SalesforceConfig, error: &SalesforceError) -> String {
    match error {
        SalesforceError::OAuth {
            error: code,
            description,
            ..
        } => {
            let hint = match code.as_str() {
                "invalid_client_id" => "the client_id is not a connected app of this org",
                "invalid_client" => "the client_id or client_secret is wrong",
                "invalid_grant" if config.connect_mode == ConnectMode::ClientCredentials => {
                    "the connected app has no client-credentials run-as user, or the credentials are wrong"
                }
                "invalid_grant" => {
                    "the refresh token is invalid, expired or revoked: authorize the connection again"
                }
                "unsupported_grant_type" => "the connected app does not allow this OAuth flow",
                _ => "Salesforce refused the authorization",
            };
            format!("{hint} (Salesforce said: {code}: {description})")
        }
        SalesforceError::Transport { kind, url, .. } => match kind {
            TransportKind::Connect => format!(
                "could not connect to {url}: check the domain ({}) — the host is unreachable, \
                 refused the connection or its name does not resolve",
                config.domain
            ),
            TransportKind::Timeout => format!("{url} did not answer in time"),
            _ => format!("the connection to {url} failed: {error}"),
        },
        other => other.to_string(),
    }
}

impl Connector for SalesforceConnector {
    fn info(&self) -> ConnectionTypeInfo {
        ConnectionTypeInfo {
            id: TYPE_ID,
            name: "Salesforce",
            use_oauth: true,
            capabilities: Capabilities {
                source: true,
                destination: true,
                enrichment: false,
                orchestration: false,
            },
            operations: &[
                "FIELDSETQUERY",
                "TARGET",
                "Filters",
                "IdentityFunctions",
                "BulkSyncSource",
            ],
        }
    }

    crate::schema::config_spec_methods!(spec);

    fn validate(&self, config: &Value) -> Result<Value, FieldError> {
        SalesforceConfig::from_input(config).map(|parsed| parsed.to_value())
    }

    fn check<'a>(
        &'a self,
        config: &'a Value,
    ) -> BoxFuture<'a, Result<ConnectionHealth, CheckError>> {
        Box::pin(self.check_counted(config, Arc::new(Unlimited)))
    }

    fn check_with_budget<'a>(
        &'a self,
        config: &'a Value,
        budget: Arc<dyn CallBudget>,
    ) -> BoxFuture<'a, Result<ConnectionHealth, CheckError>> {
        Box::pin(self.check_counted(config, budget))
    }

    fn as_salesforce(&self) -> Option<&SalesforceConnector> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::sdk_violations;
    use serde_json::json;

    /// The published example's `configuration`, verbatim.
    fn published_example() -> Value {
        json!({
            "client_id": "a45gadsfdsaf47byor2ugfbhsgllpf12gf56gfds",
            "client_secret": "ay8d5hdepz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq",
            "connect_mode": "api",
            "daily_api_calls": 0,
            "domain": "http://instance.my.salesforce.com",
            "enable_multicurrency_lookup": false,
            "enable_tooling": false,
            "enforce_api_limits": false,
            "oauth_refresh_token": "dasfdasz62px8lqeoakuea2ccl4rxm13i6tbyorxhu1i20kc8ruvksmzxq"
        })
    }

    fn with(mut base: Value, changes: Value) -> Value {
        if let (Some(base), Some(changes)) = (base.as_object_mut(), changes.as_object()) {
            for (key, value) in changes {
                if value.is_null() {
                    base.remove(key);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        base
    }

    fn error(config: Value) -> FieldError {
        match SalesforceConnector::default().validate(&config) {
            Ok(value) => panic!("expected an error, got {value}"),
            Err(error) => error,
        }
    }

    #[test]
    fn accepts_the_published_example_verbatim() {
        let example = published_example();
        let normalized = SalesforceConnector::default()
            .validate(&example)
            .expect("valid");
        assert_eq!(normalized, example);
    }

    #[test]
    fn accepts_the_minimal_documented_create_and_applies_defaults() {
        let normalized = SalesforceConnector::default()
            .validate(&json!({"domain": "https://x.my.salesforce.com"}))
            .expect("valid");
        assert_eq!(
            normalized,
            json!({
                "connect_mode": "browser",
                "domain": "https://x.my.salesforce.com",
                "enable_multicurrency_lookup": false,
                "enable_tooling": false,
                "enforce_api_limits": false
            })
        );
    }

    #[test]
    fn accepts_bare_domains_and_urls() {
        for domain in [
            "acme.my.salesforce.com",
            "acme.my.salesforce.com:8443",
            "http://127.0.0.1:5200",
            "https://acme.my.salesforce.com/",
            "HTTPS://Acme.My.Salesforce.com",
            "http://localhost:5200",
            "http://[::1]:5200",
            " acme.my.salesforce.com ",
        ] {
            let result = SalesforceConnector::default().validate(&json!({ "domain": domain }));
            assert!(result.is_ok(), "{domain}: {result:?}");
        }
        let trimmed = SalesforceConnector::default()
            .validate(&json!({"domain": " acme.my.salesforce.com "}))
            .expect("valid");
        assert_eq!(trimmed["domain"], "acme.my.salesforce.com");
    }

    #[test]
    fn login_url_adds_https_to_bare_domains() {
        let config = SalesforceConfig::from_input(&json!({"domain": "acme.my.salesforce.com"}))
            .expect("valid");
        assert_eq!(
            config.login_url().expect("url"),
            "https://acme.my.salesforce.com"
        );
        let config = SalesforceConfig::from_input(&json!({"domain": "http://127.0.0.1:5200/"}))
            .expect("valid");
        assert_eq!(config.login_url().expect("url"), "http://127.0.0.1:5200");
    }

    #[test]
    fn rejects_bad_domains() {
        for domain in [
            "ftp://acme.my.salesforce.com",
            "https://acme.my.salesforce.com/services/oauth2",
            "acme my salesforce",
            "https://user:pw@acme.my.salesforce.com",
            "https://acme.my.salesforce.com:0",
            "https://acme.my.salesforce.com:99999",
            "https://",
            "acme..salesforce.com",
            "-acme.salesforce.com",
            "http://[::1",
            "acme.my.salesforce.com?x=1",
        ] {
            let e = error(json!({ "domain": domain }));
            assert_eq!(e.field, "domain", "{domain}");
            assert!(
                e.message.contains("expected a domain such as"),
                "{domain}: {e}"
            );
        }
    }

    #[test]
    fn rejects_missing_or_empty_domain() {
        let e = error(json!({}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            (
                "domain",
                "is required; for example \"acmecorp.my.salesforce.com\" or \
                 \"https://acmecorp.my.salesforce.com\""
            )
        );
        let e = error(json!({"domain": ""}));
        assert_eq!(e.field, "domain");
        assert!(
            e.message.starts_with("must not be empty; for example"),
            "{e}"
        );
        let e = error(json!({"domain": null}));
        assert_eq!(e.field, "domain");
        let e = error(json!({"domain": 5}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("domain", "expected a string, got an integer")
        );
    }

    #[test]
    fn rejects_unknown_connect_mode_listing_the_accepted_ones() {
        let e = error(with(
            published_example(),
            json!({"connect_mode": "password"}),
        ));
        assert_eq!(e.field, "connect_mode");
        assert_eq!(
            e.message,
            "must be one of: browser, clientcredentials, code, api; got \"password\""
        );
    }

    #[test]
    fn empty_connect_mode_means_browser() {
        let normalized = SalesforceConnector::default()
            .validate(&json!({"domain": "acme.my.salesforce.com", "connect_mode": ""}))
            .expect("valid");
        assert_eq!(normalized["connect_mode"], "browser");
    }

    #[test]
    fn rejects_wrong_json_types() {
        let cases = [
            (
                "daily_api_calls",
                json!("x"),
                "expected an integer, got a string",
            ),
            (
                "daily_api_calls",
                json!(1.5),
                "expected an integer, got a floating-point number",
            ),
            (
                "enable_tooling",
                json!("true"),
                "expected a boolean (true or false), got a string",
            ),
            (
                "enforce_api_limits",
                json!(1),
                "expected a boolean (true or false), got an integer",
            ),
            ("client_id", json!(42), "expected a string, got an integer"),
            (
                "client_secret",
                json!({}),
                "expected a string, got an object",
            ),
            (
                "connect_mode",
                json!(true),
                "expected a string, got a boolean",
            ),
        ];
        for (field, value, message) in cases {
            let e = error(with(published_example(), json!({ field: value })));
            assert_eq!((e.field.as_str(), e.message.as_str()), (field, message));
        }
    }

    #[test]
    fn rejects_unknown_keys_listing_the_accepted_ones() {
        let e = error(with(
            published_example(),
            json!({"instance_url": "https://x"}),
        ));
        assert_eq!(e.field, "instance_url");
        assert!(e.message.starts_with("unknown key; accepted keys: client_id, client_secret, connect_mode, daily_api_calls, domain"), "{e}");
    }

    #[test]
    fn rejects_non_object_configuration() {
        let e = error(json!("acme.my.salesforce.com"));
        assert_eq!(e.field, "");
        assert!(e.message.contains("JSON object"), "{e}");
    }

    #[test]
    fn client_credentials_needs_client_id_and_secret() {
        let base = json!({"domain": "acme.my.salesforce.com", "connect_mode": "clientcredentials"});
        let e = error(base.clone());
        assert_eq!(e.field, "client_id");
        assert!(e.message.contains("clientcredentials"), "{e}");
        let e = error(with(base.clone(), json!({"client_id": "id"})));
        assert_eq!(e.field, "client_secret");
        let e = error(with(
            base.clone(),
            json!({"client_id": " ", "client_secret": "s"}),
        ));
        assert_eq!(e.field, "client_id");
        SalesforceConnector::default()
            .validate(&with(
                base,
                json!({"client_id": "id", "client_secret": "s"}),
            ))
            .expect("valid");
    }

    #[test]
    fn api_mode_needs_client_id_and_secret_but_not_yet_the_refresh_token() {
        let e = error(with(published_example(), json!({"client_id": null})));
        assert_eq!(e.field, "client_id");
        let e = error(with(published_example(), json!({"client_secret": null})));
        assert_eq!(e.field, "client_secret");
        SalesforceConnector::default()
            .validate(&with(
                published_example(),
                json!({"oauth_refresh_token": null}),
            ))
            .expect("refresh token may come later");
    }

    #[test]
    fn user_delegated_modes_with_client_credentials_must_be_api() {
        for mode in ["browser", "code", ""] {
            let e = error(with(published_example(), json!({"connect_mode": mode})));
            assert_eq!(e.field, "connect_mode", "{mode}");
            assert!(e.message.contains("use `api`"), "{e}");
            assert!(
                e.message
                    .contains("accepted values: browser, clientcredentials, code, api")
            );
        }
        // A client id alone does not trip the rule.
        SalesforceConnector::default()
            .validate(&json!({"domain": "acme.my.salesforce.com", "connect_mode": "code", "client_id": "x"}))
            .expect("valid");
    }

    #[test]
    fn daily_api_calls_rules() {
        let e = error(with(published_example(), json!({"daily_api_calls": -1})));
        assert_eq!(e.field, "daily_api_calls");
        assert_eq!(e.message, "must be at least 0; got -1");
        for calls in [json!(0), Value::Null] {
            let e = error(with(
                published_example(),
                json!({"enforce_api_limits": true, "daily_api_calls": calls}),
            ));
            assert_eq!(e.field, "daily_api_calls");
            assert!(e.message.contains("enforce_api_limits"), "{e}");
        }
        let ok = SalesforceConnector::default()
            .validate(&with(
                published_example(),
                json!({"enforce_api_limits": true, "daily_api_calls": 5000}),
            ))
            .expect("valid");
        assert_eq!(ok["daily_api_calls"], 5000);
    }

    #[test]
    fn read_only_keys_are_dropped_from_input_and_kept_when_stored() {
        let input = with(
            published_example(),
            json!({"username": "attacker@example.com", "instance_url_override": "https://evil"}),
        );
        let normalized = SalesforceConnector::default()
            .validate(&input)
            .expect("valid");
        assert_eq!(normalized, published_example());
        let stored = with(
            published_example(),
            json!({"username": "ferry@example.com"}),
        );
        let config = SalesforceConfig::from_stored(&stored).expect("valid");
        assert_eq!(config.username.as_deref(), Some("ferry@example.com"));
    }

    #[test]
    fn schema_marks_secrets_and_read_only_keys() {
        let schema = SalesforceConnector::default().config_schema();
        assert_eq!(sdk_violations(&schema), Vec::<String>::new(), "{schema:#}");
        assert_eq!(schema["required"], json!(["domain"]));
        let props = &schema["properties"];
        assert_eq!(props["connect_mode"]["type"], "string");
        assert_eq!(
            props["connect_mode"]["enum"],
            json!(["browser", "clientcredentials", "code", "api"])
        );
        assert_eq!(props["connect_mode"]["default"], "browser");
        assert_eq!(props["daily_api_calls"]["type"], "integer");
        assert_eq!(props["daily_api_calls"]["minimum"], "0");
        assert_eq!(props["client_secret"]["sensitive"], true);
        assert_eq!(props["oauth_refresh_token"]["sensitive"], true);
        assert_eq!(props["oauth_refresh_token"]["api_field"], true);
        assert_eq!(props["username"]["readOnly"], true);
        assert_eq!(props["enable_tooling"]["default"], false);
        for (key, property) in props.as_object().expect("properties") {
            assert!(
                property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{key} has no description"
            );
        }
        assert_eq!(
            SalesforceConnector::default().sensitive_keys(),
            vec!["client_secret", "oauth_refresh_token"]
        );
        assert_eq!(
            SalesforceConnector::default().read_only_keys(),
            vec!["username", "instance_url_override"]
        );
    }

    #[test]
    fn info_describes_the_type() {
        let info = SalesforceConnector::default().info();
        assert_eq!(
            (info.id, info.name, info.use_oauth),
            ("salesforce", "Salesforce", true)
        );
        assert!(info.capabilities.source && info.capabilities.destination);
        assert!(info.operations.contains(&"BulkSyncSource"));
        assert!(!info.operations.contains(&"SupportsSQL"));
    }

    #[tokio::test]
    async fn check_reports_not_yet_authorized_honestly() {
        // api mode without its refresh token yet.
        let health = SalesforceConnector::default()
            .check(&with(
                published_example(),
                json!({"oauth_refresh_token": null}),
            ))
            .await
            .expect("check runs");
        assert_eq!(health.status, ConnectionStatus::Unauthorized);
        assert!(
            health
                .message
                .expect("message")
                .contains("oauth_refresh_token")
        );

        // browser mode: without Ferry's connected app, and with it but before authorization.
        let browser = json!({"domain": "acme.my.salesforce.com"});
        let health = SalesforceConnector::default()
            .check(&browser)
            .await
            .expect("check runs");
        assert_eq!(health.status, ConnectionStatus::Unauthorized);
        assert!(
            health
                .message
                .expect("message")
                .contains("FERRY_SALESFORCE_CLIENT_ID")
        );
        let connector = SalesforceConnector::new(SalesforceSettings {
            oauth_app: Some(OAuthApp::new("ferry-app", "secret")),
            root_certificates_pem: Vec::new(),
        });
        let health = connector.check(&browser).await.expect("check runs");
        assert_eq!(health.status, ConnectionStatus::Unauthorized);
        let message = health.message.expect("message");
        assert!(message.starts_with("not yet authorized"), "{message}");
        assert!(message.contains("auth_url"), "{message}");
    }

    #[tokio::test]
    async fn unreachable_domains_fail_with_a_useful_message() {
        let config = with(published_example(), json!({"domain": "http://127.0.0.1:1"}));
        let error = SalesforceConnector::default()
            .check(&config)
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            error.message.contains("could not connect"),
            "{}",
            error.message
        );
        assert!(error.message.contains("127.0.0.1:1"), "{}", error.message);
        assert!(
            !error.message.contains("ay8d5hdep"),
            "no secrets in messages"
        );
    }
}
